package storefront

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/globomantics/globomantics/internal/catalog"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/money"
)

func TestPickFeatured(t *testing.T) {
	p := func(id, cat string, stock int) catalog.Product {
		return catalog.Product{ID: id, Category: cat, Stock: stock}
	}
	ids := func(pp []catalog.Product) string {
		var s []string
		for _, p := range pp {
			s = append(s, p.ID)
		}
		return strings.Join(s, " ")
	}
	books := []catalog.Product{p("b1", "books", 5), p("b2", "books", 0), p("b3", "books", 2), p("b4", "books", 1)}
	lamps := []catalog.Product{p("l1", "lamps", 0), p("l2", "lamps", 3)}
	tools := []catalog.Product{p("t1", "tools", 9)}
	for _, tc := range []struct {
		name   string
		groups [][]catalog.Product
		n      int
		want   string
	}{
		{"round robin, in stock first", [][]catalog.Product{books, lamps, tools}, 12, "b1 l2 t1 b3 b4 b2 l1"},
		{"cut at n", [][]catalog.Product{books, lamps, tools}, 4, "b1 l2 t1 b3"},
		{"an empty category is skipped", [][]catalog.Product{nil, tools, lamps}, 3, "t1 l2 l1"},
		{"a product listed twice shows once", [][]catalog.Product{tools, tools}, 5, "t1"},
		{"nothing", nil, 5, ""},
	} {
		if got := ids(pickFeatured(tc.groups, tc.n)); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
	if got := groupByCategory([]catalog.Product{p("a", "x", 1), p("b", "y", 1), p("c", "x", 1)}); len(got) != 2 || ids(got[0]) != "a c" || ids(got[1]) != "b" {
		t.Errorf("groupByCategory: %v", got)
	}
}

// addProducts lists n more products of category cat, ids prefix01...,
// with the given stock.
func addProducts(e *env, prefix, cat string, n, stock int) {
	e.catalog.mu.Lock()
	defer e.catalog.mu.Unlock()
	for i := 1; i <= n; i++ {
		id := fmt.Sprintf("%s%02d", prefix, i)
		e.catalog.products[id] = catalog.Product{ID: id, Name: "Item " + id, Category: cat, Price: money.USD(1000), Stock: stock}
	}
}

var cardIDRe = regexp.MustCompile(`<a class="card" href="/products/([^"]+)">`)

// TestFeaturedSpansCategories: the home page's featured products take
// turns across the categories, in stock first, although the first twelve
// products by id are all lamps.
func TestFeaturedSpansCategories(t *testing.T) {
	e := newEnv(t)
	addProducts(e, "prd_00", "cat_lamps", 14, 5) // prd_0001.. sort before prd_01
	r := e.browser().do("GET", "/", nil)
	wantStatus(t, r, http.StatusOK)
	var got []string
	for _, m := range cardIDRe.FindAllStringSubmatch(r.body, -1) {
		got = append(got, m[1])
	}
	// Lamps and tools alternate while both have products in stock (tools:
	// prd_03, prd_04); then the lamps in stock fill the twelve.
	want := []string{"prd_0001", "prd_03", "prd_0002", "prd_04", "prd_0003", "prd_0004", "prd_0005", "prd_0006", "prd_0007", "prd_0008", "prd_0009", "prd_0010"}
	if !slices.Equal(got, want) {
		t.Fatalf("featured products %v, want %v", got, want)
	}
	if strings.Contains(r.body, "Sold out") {
		t.Errorf("a sold-out product is featured while others are in stock")
	}
}

// TestFeaturedSurvivesAFailingCategory: a category whose list fails is left
// out; the others still fill the home page.
func TestFeaturedSurvivesAFailingCategory(t *testing.T) {
	e := newEnv(t, func(d *Deps) {
		fc := &failingListCatalog{fakeCatalog: d.Catalog.(*fakeCatalog), fail: "cat_lamps"}
		d.Catalog = fc
	})
	r := e.browser().do("GET", "/", nil)
	wantStatus(t, r, http.StatusOK)
	wantContains(t, r.body, `href="/products/prd_03"`, `href="/products/prd_04"`)
	if strings.Contains(r.body, `href="/products/prd_01"`) {
		t.Errorf("a product of the failing category is featured")
	}
	// When every category fails, the page says the shop is unavailable.
	e.catalog.mu.Lock()
	e.catalog.down = true
	e.catalog.mu.Unlock()
	e.clock.Advance(homeListTTL)
	wantStatus(t, e.browser().do("GET", "/", nil), http.StatusServiceUnavailable)
}

type failingListCatalog struct {
	*fakeCatalog
	fail string
}

func (f *failingListCatalog) ListProducts(ctx context.Context, flt catalog.ProductFilter) (catalog.ProductPage, error) {
	if flt.Category == f.fail {
		return catalog.ProductPage{}, errs.E(errs.Unavailable, errs.Msg("shard down"))
	}
	return f.fakeCatalog.ListProducts(ctx, flt)
}

// TestCategoryStripMarksCurrent: the category page marks its category as
// the current page, a product page marks its product's category, and the
// home page marks none; shared (cached) pages alike.
func TestCategoryStripMarksCurrent(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	for range 2 { // rendered, then from the page cache
		r := b.do("GET", "/category/cat_tools", nil)
		wantStatus(t, r, http.StatusOK)
		wantContains(t, r.body, `<a href="/category/cat_tools" aria-current="page">Tools</a>`, `<a href="/category/cat_lamps">Lamps</a>`)
		r = b.do("GET", "/products/prd_01", nil)
		wantStatus(t, r, http.StatusOK)
		wantContains(t, r.body, `<a href="/category/cat_lamps" aria-current="true">Lamps</a>`, `<a href="/category/cat_tools">Tools</a>`)
		r = b.do("GET", "/", nil)
		wantStatus(t, r, http.StatusOK)
		if strings.Contains(r.body, "aria-current") {
			t.Errorf("the home page marks a category as current")
		}
	}
}

// cardSizesRe is the sizes attribute of a product card's image.
var cardSizesRe = regexp.MustCompile(`<a class="card" href="[^"]+"><img [^>]*sizes="([^"]+)"`)

// evalSizes picks the width a sizes attribute gives at a viewport width,
// for the forms the templates use: "(max-width: Npx) <len>, ..., <len>"
// where <len> is "Npx" or "calc(Avw - Brem)" (1rem = 16px).
func evalSizes(t *testing.T, sizes string, viewport float64) float64 {
	t.Helper()
	length := func(s string) float64 {
		s = strings.TrimSpace(s)
		var vw, rem float64
		if n, ok := strings.CutSuffix(s, "px"); ok {
			if px, err := strconv.ParseFloat(n, 64); err == nil {
				return px
			}
		}
		if _, err := fmt.Sscanf(s, "calc(%fvw - %frem)", &vw, &rem); err == nil {
			return viewport*vw/100 - rem*16
		}
		t.Fatalf("sizes: cannot read length %q", s)
		return 0
	}
	for _, part := range strings.Split(sizes, ", ") {
		cond, l, ok := strings.Cut(part, ") ")
		if !ok {
			return length(part)
		}
		max, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimPrefix(cond, "(max-width: "), "px"), 64)
		if err != nil {
			t.Fatalf("sizes: cannot read condition %q", cond)
		}
		if viewport <= max {
			return length(l)
		}
	}
	t.Fatalf("sizes %q has no default", sizes)
	return 0
}

// TestCardSizes: the cards' sizes attribute says how wide a card image is
// shown (two columns on a phone, up to four on a desktop, style.css), so a
// phone at 1x picks the 160 px thumbnail and a desktop the 480 px one; the
// width and height attributes reserve the 4:3 box before the image loads.
func TestCardSizes(t *testing.T) {
	e := newEnv(t)
	r := e.browser().do("GET", "/", nil)
	wantStatus(t, r, http.StatusOK)
	m := cardSizesRe.FindStringSubmatch(r.body)
	if m == nil {
		t.Fatalf("no card image with sizes on the home page:\n%s", r.body)
	}
	wantContains(t, r.body, `width="480" height="360" alt="" loading="lazy">`)
	// The widths style.css gives a card image: the wrap is the viewport less
	// 2rem (at most 1120px); the columns' gaps and the cards' padding and
	// border come off.
	shown := func(viewport float64) float64 {
		wrap := min(viewport-32, 1120)
		cols, gap, pad := 2.0, 12.0, 8.0
		switch {
		case viewport >= 860:
			cols, gap, pad = 4, 20, 12
		case viewport >= 560:
			cols, gap, pad = 3, 16, 12
		}
		return (wrap-(cols-1)*gap)/cols - 2*pad - 2
	}
	for _, vw := range []float64{320, 360, 390, 430, 559, 560, 768, 859, 860, 1024, 1151, 1152, 1280, 1920} {
		got, want := evalSizes(t, m[1], vw), shown(vw)
		if got < want-8 || got > want+8 {
			t.Errorf("viewport %.0f: sizes gives %.0f px, the card image is %.0f px", vw, got, want)
		}
	}
	if w := evalSizes(t, m[1], 390); w > 160 {
		t.Errorf("a 390 px phone is told the card image is %.0f px: it will not pick the 160w thumbnail", w)
	}
}
