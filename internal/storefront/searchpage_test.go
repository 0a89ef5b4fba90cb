package storefront

import (
	"context"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/catalog"
	"github.com/globomantics/globomantics/internal/platform/money"
	"github.com/globomantics/globomantics/internal/search"
)

// withRealSearch adds widgets to the fake catalog and makes the env's search
// the real search service, over an index rebuilt from that catalog. Widget i
// (prd_w00 ...) costs $5 + $2·i and was listed i hours after seedTime, so
// price and listing order agree; 10 cost under $25, 13 from $25 to $50, and
// 2 from $50 to $100.
func withRealSearch(t *testing.T, widgets int) func(*Deps) {
	return func(d *Deps) {
		cat := d.Catalog.(*fakeCatalog)
		cat.mu.Lock()
		for i := range widgets {
			id := fmt.Sprintf("prd_w%02d", i)
			cat.products[id] = catalog.Product{ID: id, Name: fmt.Sprintf("Widget %d", i), Description: "A useful widget.",
				Category: "cat_tools", Price: money.USD(int64(500 + 200*i)), Stock: 5, ImageURL: "/media/products/" + id + ".png",
				ListedAt: seedTime.Add(time.Duration(i) * time.Hour)}
		}
		cat.mu.Unlock()
		idx, err := search.OpenIndex(filepath.Join(t.TempDir(), "search.bleve"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { idx.Close() })
		svc := search.NewService(idx, d.Log)
		if _, err := svc.Rebuild(context.Background(), cat); err != nil {
			t.Fatal(err)
		}
		d.Search = svc
	}
}

var (
	cardLink = regexp.MustCompile(`href="/products/(prd_\w+)"`)
	nextLink = regexp.MustCompile(`<a href="([^"]+)" rel="next">`)
	prevLink = regexp.MustCompile(`<a href="([^"]+)" rel="prev">`)
)

// productsOf lists the products a page's cards link to, in order, once each.
func productsOf(body string) []string {
	var out []string
	for _, m := range cardLink.FindAllStringSubmatch(body, -1) {
		if !slices.Contains(out, m[1]) {
			out = append(out, m[1])
		}
	}
	return out
}

func widgetIDs(order ...int) []string {
	out := make([]string, len(order))
	for i, n := range order {
		out[i] = fmt.Sprintf("prd_w%02d", n)
	}
	return out
}

func span(from, to int) []int {
	var out []int
	if from <= to {
		for i := from; i <= to; i++ {
			out = append(out, i)
		}
	} else {
		for i := from; i >= to; i-- {
			out = append(out, i)
		}
	}
	return out
}

func TestSearchPageCountFacetsAndSort(t *testing.T) {
	e := newEnv(t, withRealSearch(t, 25))
	b := e.browser()
	r := b.do("GET", "/search?q=widget", nil)
	wantStatus(t, r, http.StatusOK)
	wantContains(t, r.body,
		"25 results for “widget”", "<title>Search: widget (25 results)",
		`<label for="search-sort">Sort by</label>`, `<select id="search-sort" name="sort">`,
		`<option value="relevance" selected>Best match</option>`, `<option value="price_asc">Price: low to high</option>`,
		`<option value="newest">Newest first</option>`, `<input type="hidden" name="q" value="widget">`,
		`<a href="/search?category=cat_tools&amp;q=widget">Tools <span class="count">(25)</span></a>`,
		`<a href="/search?max_price=2500&amp;q=widget">Under $25 <span class="count">(10)</span></a>`,
		`<a href="/search?max_price=5000&amp;min_price=2500&amp;q=widget">$25 to $50 <span class="count">(13)</span></a>`,
		`<a href="/search?max_price=10000&amp;min_price=5000&amp;q=widget">$50 to $100 <span class="count">(2)</span></a>`,
		"Results 1–12 of 25", `rel="next"`)
	if strings.Contains(r.body, "$100 to $250") || strings.Contains(r.body, `rel="prev"`) || strings.Contains(r.body, "aria-current") {
		t.Error("page 1: an empty price range, a previous page or an active facet is shown")
	}
	if got := productsOf(r.body); len(got) != 12 {
		t.Errorf("page 1 shows %d products, want 12", len(got))
	}

	// The sort form submits as a plain GET.
	r = b.do("GET", "/search?q=widget&sort=price_desc", nil)
	wantContains(t, r.body, `<option value="price_desc" selected>`, "25 results")
	if got, want := productsOf(r.body), widgetIDs(span(24, 13)...); !slices.Equal(got, want) {
		t.Errorf("dearest first = %v, want %v", got, want)
	}
	r = b.do("GET", "/search?q=widget&sort=newest", nil)
	if got, want := productsOf(r.body), widgetIDs(span(24, 13)...); !slices.Equal(got, want) {
		t.Errorf("newest first = %v, want %v", got, want)
	}
}

// TestSearchPagePagination follows the Next links through every page and a
// Previous link back: each product once, in order, the query, order and
// filters kept.
func TestSearchPagePagination(t *testing.T) {
	e := newEnv(t, withRealSearch(t, 25))
	b := e.browser()
	path := "/search?q=widget&sort=price_asc&category=cat_tools"
	var seen []string
	var pages []string
	for path != "" {
		if len(pages) > 5 {
			t.Fatal("too many pages")
		}
		r := b.do("GET", path, nil)
		wantStatus(t, r, http.StatusOK)
		wantContains(t, r.body, "25 results for “widget”", `<option value="price_asc" selected>`,
			`<input type="hidden" name="category" value="cat_tools">`)
		pages = append(pages, r.body)
		seen = append(seen, productsOf(r.body)...)
		path = ""
		if m := nextLink.FindStringSubmatch(r.body); m != nil {
			path = html.UnescapeString(m[1])
			u, err := url.Parse(path)
			if err != nil || u.Query().Get("sort") != "price_asc" || u.Query().Get("category") != "cat_tools" || u.Query().Get("q") != "widget" {
				t.Fatalf("next link %q does not keep the query", path)
			}
		}
	}
	if want := widgetIDs(span(0, 24)...); !slices.Equal(seen, want) {
		t.Fatalf("pages show %v, want %v", seen, want)
	}
	if len(pages) != 3 {
		t.Fatalf("%d pages, want 3", len(pages))
	}
	wantContains(t, pages[1], "Results 13–24 of 25")
	wantContains(t, pages[2], "Results 25–25 of 25")
	m := prevLink.FindStringSubmatch(pages[2])
	if m == nil {
		t.Fatal("page 3 has no previous link")
	}
	r := b.do("GET", html.UnescapeString(m[1]), nil)
	if got := productsOf(r.body); !slices.Equal(got, widgetIDs(span(12, 23)...)) {
		t.Errorf("previous of page 3 = %v, want page 2", got)
	}
	m = prevLink.FindStringSubmatch(pages[1])
	if m == nil || strings.Contains(m[1], "page=") {
		t.Fatalf("page 2's previous link = %v, want the first page", m)
	}
}

func TestSearchPageFilters(t *testing.T) {
	e := newEnv(t, withRealSearch(t, 25))
	b := e.browser()
	r := b.do("GET", "/search?q=widget&category=cat_tools&min_price=2500&max_price=5000&sort=price_desc", nil)
	wantStatus(t, r, http.StatusOK)
	wantContains(t, r.body, "13 results for “widget”",
		// Active facets are marked and link to their removal.
		`<a href="/search?max_price=5000&amp;min_price=2500&amp;q=widget&amp;sort=price_desc" aria-current="true" title="Remove this filter">Tools <span class="count">(13)</span></a>`,
		`<a href="/search?category=cat_tools&amp;q=widget&amp;sort=price_desc" aria-current="true" title="Remove this filter">$25 to $50 <span class="count">(13)</span></a>`,
		// The other price ranges count within the category.
		`<a href="/search?category=cat_tools&amp;max_price=2500&amp;q=widget&amp;sort=price_desc">Under $25 <span class="count">(10)</span></a>`,
		// The filters in use, each removable.
		`<ul class="search-active" aria-label="Filters in use">`,
		`<a href="/search?max_price=5000&amp;min_price=2500&amp;q=widget&amp;sort=price_desc">Category: Tools`,
		`<a href="/search?category=cat_tools&amp;q=widget&amp;sort=price_desc">Price: $25 to $50`,
		`<input type="hidden" name="min_price" value="2500">`, `<input type="hidden" name="max_price" value="5000">`)
	if got, want := productsOf(r.body), widgetIDs(span(22, 11)...); !slices.Equal(got, want) {
		t.Errorf("filtered = %v, want %v", got, want)
	}
	if strings.Contains(r.body, ">cat_tools<") {
		t.Error("a category id is shown to the customer")
	}
	// A range of one's own, not one of the facet's.
	r = b.do("GET", "/search?q=lamp&min_price=2000&max_price=3000", nil)
	wantContains(t, r.body, "1 result for “lamp”", "Price: $20 to $30", "Desk Lamp")
	if strings.Contains(r.body, "Floor Lamp") {
		t.Error("a lamp outside the price range is shown")
	}
}

func TestSearchPageDidYouMean(t *testing.T) {
	e := newEnv(t, withRealSearch(t, 3))
	b := e.browser()
	r := b.do("GET", "/search?q=lamb", nil)
	wantStatus(t, r, http.StatusOK)
	wantContains(t, r.body, "0 results for “lamb”", `No products match “lamb”.`, `Did you mean <a href="/search?q=lamp">lamp</a>?`)
	// The suggestion keeps the order and filters.
	r = b.do("GET", "/search?q=lamb&sort=newest&category=cat_lamps", nil)
	wantContains(t, r.body, `with these filters.`, `Did you mean <a href="/search?category=cat_lamps&amp;q=lamp&amp;sort=newest">lamp</a>?`,
		`<a href="/search?q=lamb&amp;sort=newest">Category: Lamps`)
	r = b.do("GET", "/search?q=lamp&category=cat_gone", nil)
	wantContains(t, r.body, "0 results for “lamp”", `<a href="/search?q=lamp">Category filter`)
	if strings.Contains(r.body, "cat_gone<") || strings.Contains(r.body, "cat_gone ") {
		t.Error("an unknown category's id is shown")
	}
	r = b.do("GET", "/search?q=zeppelin", nil)
	wantContains(t, r.body, "Try a shorter or different word.")
	if strings.Contains(r.body, "Did you mean") {
		t.Error("a suggestion for a word nothing is near")
	}
}

func TestSearchPageBadParameters(t *testing.T) {
	e := newEnv(t, withRealSearch(t, 3))
	b := e.browser()
	for path, want := range map[string]string{
		"/search?q=widget&sort=cheapest":                 "sort must be one of",
		"/search?q=widget&min_price=-5":                  "prices must not be negative",
		"/search?q=widget&min_price=5000&max_price=2500": "max_price must be above min_price",
		"/search?q=widget&max_price=ten":                 "max_price must be a whole number of cents",
		"/search?q=widget&page=%25%25%25":                "that page link is not valid",
		"/search?q=widget&sort=newest&page=" + search.SearchToken(search.Query{Text: "widget"}, 2): "that page link is not valid",
	} {
		r := b.do("GET", path, nil)
		wantStatus(t, r, http.StatusBadRequest)
		wantContains(t, r.body, want, `value="widget"`, `role="alert"`)
	}
}

func TestAPISearchSortFacetsAndPages(t *testing.T) {
	e := newEnv(t, withRealSearch(t, 25))
	b := e.browser()
	var got SearchResults
	b.do("GET", "/api/v1/search?q=widget&sort=price_desc&page_size=10", nil).json(t, &got)
	if got.Total != 25 || got.Start != 0 || len(got.Items) != 10 || got.Items[0].ID != "prd_w24" || got.NextPageToken == "" || got.PrevPageToken != "" {
		t.Fatalf("page 1 = total %d, start %d, %d items from %v, next %q", got.Total, got.Start, len(got.Items), got.Items, got.NextPageToken)
	}
	if got.Query != (search.Query{Text: "widget", Sort: search.SortPriceDesc}) {
		t.Errorf("query = %+v", got.Query)
	}
	wantCats := []CategoryFacet{{ID: "cat_tools", Name: "Tools", Count: 25}}
	if !slices.Equal(got.Facets.Categories, wantCats) {
		t.Errorf("category facet = %+v, want %+v", got.Facets.Categories, wantCats)
	}
	wantPrices := []PriceFacet{{0, 2500, "Under $25", 10, false}, {2500, 5000, "$25 to $50", 13, false}, {5000, 10000, "$50 to $100", 2, false},
		{10000, 25000, "$100 to $250", 0, false}, {25000, 0, "$250 and over", 0, false}}
	if !slices.Equal(got.Facets.Prices, wantPrices) {
		t.Errorf("price facet = %+v, want %+v", got.Facets.Prices, wantPrices)
	}
	// Every page, no duplicates or gaps.
	var ids []string
	for _, it := range got.Items {
		ids = append(ids, it.ID)
	}
	for next := got.NextPageToken; next != ""; {
		var pg SearchResults
		b.do("GET", "/api/v1/search?q=widget&sort=price_desc&page_size=10&page_token="+next, nil).json(t, &pg)
		if pg.Start != len(ids) {
			t.Fatalf("page starts at %d, want %d", pg.Start, len(ids))
		}
		for _, it := range pg.Items {
			ids = append(ids, it.ID)
		}
		next = pg.NextPageToken
	}
	if want := widgetIDs(span(24, 0)...); !slices.Equal(ids, want) {
		t.Errorf("pages = %v, want %v", ids, want)
	}

	// Filters, with the facets counting around them.
	b.do("GET", "/api/v1/search?q=widget&category=cat_tools&min_price=5000", nil).json(t, &got)
	if got.Total != 2 || len(got.Items) != 2 || !got.Facets.Categories[0].Selected {
		t.Errorf("filtered = %+v", got)
	}
	for _, p := range got.Facets.Prices {
		if p.Selected {
			t.Errorf("price range %+v selected, but min_price=5000 alone is none of them", p)
		}
	}

	// Did you mean.
	r := b.do("GET", "/api/v1/search?q=lamb", nil)
	r.json(t, &got)
	if got.Suggestion != "lamp" || got.Total != 0 || !strings.Contains(r.body, `"items":[]`) {
		t.Errorf("lamb = %s, want no items and the suggestion lamp", r.body)
	}

	// Bad parameters are 400 problems saying which.
	for path, want := range map[string]string{
		"/api/v1/search?q=widget&sort=cheap":                  "sort",
		"/api/v1/search?q=widget&min_price=-1":                "negative",
		"/api/v1/search?q=widget&min_price=1.5":               "min_price",
		"/api/v1/search?q=widget&min_price=900&max_price=100": "max_price",
		"/api/v1/search?q=widget&sort=newest&page_token=" + search.SearchToken(search.Query{Text: "widget"}, 10): "page_token",
	} {
		p := wantProblem(t, b.do("GET", path, nil), http.StatusBadRequest)
		if !strings.Contains(p.Detail, want) {
			t.Errorf("GET %s: detail %q, want it to mention %s", path, p.Detail, want)
		}
	}
}
