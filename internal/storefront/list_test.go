package storefront

import (
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/globomantics/globomantics/internal/catalog"
	"github.com/globomantics/globomantics/internal/platform/money"
	"github.com/globomantics/globomantics/internal/platform/page"
)

// TestAPIProductsTokensSurviveInserts: products listed between page fetches
// neither repeat nor hide the products of the walk; the token is passed
// through unchanged.
func TestAPIProductsTokensSurviveInserts(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	add := func(id string) {
		e.catalog.mu.Lock()
		defer e.catalog.mu.Unlock()
		e.catalog.products[id] = catalog.Product{ID: id, Name: id, Category: "cat_tools", Price: money.USD(100), Stock: 1}
	}
	var seen []string
	path := "/api/v1/products?category=cat_tools&page_size=1"
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("paging does not end")
		}
		r := b.do("GET", path, nil)
		wantStatus(t, r, http.StatusOK)
		var pg List[catalog.Product]
		r.json(t, &pg)
		for _, p := range pg.Items {
			seen = append(seen, p.ID)
		}
		if pg.NextPageToken == "" {
			break
		}
		add("prd_00" + string(rune('a'+pages))) // before the position: not in this walk
		path = "/api/v1/products?category=cat_tools&page_size=1&page_token=" + pg.NextPageToken
	}
	if strings.Join(seen, " ") != "prd_03 prd_04" {
		t.Errorf("walked %v, want [prd_03 prd_04]", seen)
	}
}

// TestBadQueryStringsAndTokens: a query string that does not parse, or a page
// token of another list, is a 400 problem+json from the API and a 400 page
// from the HTML pages, never the first page.
func TestBadQueryStringsAndTokens(t *testing.T) {
	e := newEnv(t)
	ada := e.browser()
	ada.signUp("ada@example.com", "Ada")
	allProducts := page.Token("products/id/", "prd_01")
	for _, path := range []string{
		"/api/v1/products?page_token=%%%%",
		"/api/v1/products?category=cat_tools&page_token=%zz",
		"/api/v1/products?category=cat_tools&page_token=" + allProducts,
		"/api/v1/products?category=cat_tools;page_size=1",
		"/api/v1/search?q=%zz",
		"/api/v1/search?q=tool&page_token=%%%%",
		"/api/v1/search?q=tool&page_token=" + allProducts,
		"/api/v1/orders?page_token=%%%%",
		"/api/v1/orders?page_size=%",
		"/api/v1/orders?page_token=" + allProducts,
	} {
		p := wantProblem(t, ada.do("GET", path, nil), http.StatusBadRequest)
		if p.Detail == "" {
			t.Errorf("GET %s: problem without a detail", path)
		}
	}
	for _, path := range []string{
		"/category/cat_tools?page=%%%%",
		"/category/cat_tools?page=" + allProducts,
		"/orders?page=" + allProducts,
		"/search?q=%zz",
	} {
		r := ada.do("GET", path, nil)
		wantStatus(t, r, http.StatusBadRequest)
		if path != "/search?q=%zz" && !regexp.MustCompile(`that page link is not valid|query string is not valid`).MatchString(r.body) {
			t.Errorf("GET %s: the page does not say the link is bad", path)
		}
	}
}
