package storefront

import (
	"net/http"
	"strings"
	"testing"

	"github.com/globomantics/globomantics/internal/catalog"
	"github.com/globomantics/globomantics/internal/platform/money"
)

func TestProductSrcset(t *testing.T) {
	for _, tc := range []struct {
		thumbs map[string]string
		want   string
	}{
		{nil, ""},
		{map[string]string{"small": "/media/s.jpg"}, "/media/s.jpg 160w"},
		{map[string]string{"large": "/media/l.jpg", "small": "/media/s.jpg", "medium": "/media/m.jpg"},
			"/media/s.jpg 160w, /media/m.jpg 480w, /media/l.jpg 1024w"},
		{map[string]string{"medium": "/media/m.jpg", "huge": "/media/h.jpg"}, "/media/m.jpg 480w"}, // unknown sizes are left out
	} {
		if got := productSrcset(catalog.Product{Thumbnails: tc.thumbs}); got != tc.want {
			t.Errorf("productSrcset(%v) = %q, want %q", tc.thumbs, got, tc.want)
		}
	}
}

// TestSrcsetPages: product cards and the product page offer the three
// thumbnails in srcset with sizes; products without thumbnails show the
// original alone, and the product page keeps the original for a product
// without a large thumbnail (made before there was one).
func TestSrcsetPages(t *testing.T) {
	e := newEnv(t)
	e.catalog.products["prd_05"] = catalog.Product{ID: "prd_05", Name: "Spirit Level", Description: "Sixty centimetres.",
		Category: "cat_tools", Price: money.USD(2200), Stock: 4, ImageURL: "/media/products/prd_05/original-0123456789ab.png",
		Thumbnails: map[string]string{
			"small":  "/media/products/prd_05/thumb-small-111111111111.jpg",
			"medium": "/media/products/prd_05/thumb-medium-222222222222.jpg",
			"large":  "/media/products/prd_05/thumb-large-333333333333.jpg",
		}}
	const set = `srcset="/media/products/prd_05/thumb-small-111111111111.jpg 160w, /media/products/prd_05/thumb-medium-222222222222.jpg 480w, /media/products/prd_05/thumb-large-333333333333.jpg 1024w"`
	b := e.browser()

	r := b.do("GET", "/category/cat_tools", nil)
	wantStatus(t, r, http.StatusOK)
	wantContains(t, r.body,
		`<img src="/media/products/prd_05/thumb-medium-222222222222.jpg" `+set+` sizes="(max-width: 559px) calc(50vw - 2.5rem), (max-width: 859px) calc(33vw - 3rem), (max-width: 1151px) calc(25vw - 3rem), 240px" width="480" height="360" alt="" loading="lazy">`,
		`<img src="/media/products/prd_04.png" width="480" height="360" alt="" loading="lazy">`) // no thumbnails: the original alone

	r = b.do("GET", "/products/prd_05", nil)
	wantStatus(t, r, http.StatusOK)
	wantContains(t, r.body,
		`<img src="/media/products/prd_05/original-0123456789ab.png" `+set+` sizes="(min-width: 1152px) 544px, (min-width: 760px) calc(50vw - 2rem), calc(100vw - 2rem)" width="800" height="600" alt="Spirit Level">`)

	for _, id := range []string{"prd_01", "prd_04"} { // small and medium only; none
		r = b.do("GET", "/products/"+id, nil)
		wantStatus(t, r, http.StatusOK)
		if strings.Contains(r.body, "srcset=") {
			t.Errorf("%s: the product page offers a srcset without a large thumbnail", id)
		}
	}
}
