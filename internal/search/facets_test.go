package search_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/catalog"
	"github.com/globomantics/globomantics/internal/platform/bus"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/money"
	"github.com/globomantics/globomantics/internal/platform/page"
	"github.com/globomantics/globomantics/internal/search"
)

var day0 = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)

// item is an ItemListed event of a product with a price (cents) listed on
// day0 plus days.
func item(id, name, category string, cents int64, days int) bus.Event {
	it := catalog.ItemListed{ProductID: id, Name: name, Description: "A fine " + strings.ToLower(name) + ".",
		Category: category, Price: money.USD(cents), ImageKey: "img/" + id, ListedAt: day0.AddDate(0, 0, days)}
	b, err := json.Marshal(it)
	if err != nil {
		panic(err)
	}
	return bus.Event{ID: "ev-" + id, Type: catalog.SubjectItemListed, Data: b}
}

// shop has lamps in three categories at prices across every bucket.
var shop = []bus.Event{
	item("l1", "Desk Lamp", "cat_lamps", 1999, 3),            // under $25
	item("l2", "Floor Lamp", "cat_lamps", 8900, 1),           // $50-$100
	item("l3", "Reading Lamp", "cat_lamps", 4500, 5),         // $25-$50
	item("l4", "Brass Lamp", "cat_lamps", 30000, 2),          // $250+
	item("o1", "Camping Lamp", "cat_outdoor", 2500, 4),       // $25-$50 (the bucket's lower bound)
	item("o2", "Solar Garden Lamp", "cat_outdoor", 12000, 0), // $100-$250
	item("k1", "Kitchen Lamp", "cat_kitchen", 4999, 6),       // $25-$50
	item("k2", "Kettle", "cat_kitchen", 3900, 7),             // not a lamp
}

func run(t *testing.T, api search.API, q search.Query, p page.Request) search.Result {
	t.Helper()
	r, err := api.Search(context.Background(), q, p)
	if err != nil {
		t.Fatalf("Search(%+v): %v", q, err)
	}
	return r
}

// all pages through q with pages of size n and returns every hit's id.
func all(t *testing.T, api search.API, q search.Query, n int) []string {
	t.Helper()
	var out []string
	p := page.Request{Size: n}
	for i := 0; ; i++ {
		if i > 50 {
			t.Fatal("too many pages")
		}
		r := run(t, api, q, p)
		if r.Start != len(out) {
			t.Fatalf("page %d of %+v starts at %d, want %d", i, q, r.Start, len(out))
		}
		if i > 0 {
			// The previous page is the one before.
			prev := run(t, api, q, page.Request{Size: n, Token: r.PrevPageToken})
			if prev.Start != len(out)-n || !slices.Equal(ids(prev), out[len(out)-n:]) {
				t.Fatalf("page %d of %+v: previous page %v at %d, want %v", i, q, ids(prev), prev.Start, out[len(out)-n:])
			}
		}
		out = append(out, ids(r)...)
		if r.NextPageToken == "" {
			return out
		}
		if len(r.Hits) != n {
			t.Fatalf("page %d of %+v has %d hits, want %d", i, q, len(r.Hits), n)
		}
		p.Token = r.NextPageToken
	}
}

func TestSearchSortsFiltersAndFacets(t *testing.T) {
	for name, mk := range apiModes() {
		t.Run(name, func(t *testing.T) {
			f := mk(t)
			svc, api := f.svc, f.api
			feed(t, svc, shop...)
			lamp := search.Query{Text: "lamp"}

			t.Run("count", func(t *testing.T) {
				r := run(t, api, lamp, page.Request{Size: 2})
				if r.Total != 7 || len(r.Hits) != 2 || r.NextPageToken == "" {
					t.Errorf("lamp: total %d, %d hits, next %q; want 7, 2 and a next page", r.Total, len(r.Hits), r.NextPageToken)
				}
			})

			t.Run("sorts", func(t *testing.T) {
				for _, tc := range []struct {
					sort search.Sort
					want []string
				}{
					{search.SortPriceAsc, []string{"l1", "o1", "l3", "k1", "l2", "o2", "l4"}},
					{search.SortPriceDesc, []string{"l4", "o2", "l2", "k1", "l3", "o1", "l1"}},
					{search.SortNewest, []string{"k1", "l3", "o1", "l1", "l4", "l2", "o2"}},
				} {
					q := lamp
					q.Sort = tc.sort
					// Pages of 3 join up: no duplicates, no gaps.
					if got := all(t, api, q, 3); !slices.Equal(got, tc.want) {
						t.Errorf("sort %s = %v, want %v", tc.sort, got, tc.want)
					}
				}
				// Relevance: the name match first; the default sort.
				q := search.Query{Text: "garden lamp"}
				r := run(t, api, q, page.Request{})
				q.Sort = search.SortRelevance
				r2 := run(t, api, q, page.Request{})
				if len(r.Hits) == 0 || r.Hits[0].ProductID != "o2" || !slices.Equal(ids(r), ids(r2)) {
					t.Errorf("garden lamp = %v (explicit relevance %v), want o2 first, same order", ids(r), ids(r2))
				}
				for i := 1; i < len(r.Hits); i++ {
					if r.Hits[i].Score > r.Hits[i-1].Score {
						t.Errorf("relevance order has rising scores: %v", r.Hits)
					}
				}
			})

			t.Run("price ties come in id order across pages", func(t *testing.T) {
				f := mk(t)
				svc, api := f.svc, f.api
				var want []string
				for i := range 23 {
					id := fmt.Sprintf("w%02d", i)
					want = append(want, id)
					feed(t, svc, item(id, fmt.Sprintf("Widget %d", i), "cat_w", 1000, i%3))
				}
				for _, s := range search.Sorts {
					got := all(t, api, search.Query{Text: "widget", Sort: s}, 5)
					if s == search.SortNewest || s == search.SortRelevance {
						slices.Sort(got)
					}
					if !slices.Equal(got, want) {
						t.Errorf("sort %s pages = %v, want every widget once (in id order for price ties)", s, got)
					}
				}
			})

			t.Run("facets", func(t *testing.T) {
				r := run(t, api, lamp, page.Request{})
				wantCats := []search.CategoryCount{{Category: "cat_lamps", Count: 4}, {Category: "cat_outdoor", Count: 2}, {Category: "cat_kitchen", Count: 1}}
				if !reflect.DeepEqual(r.Facets.Categories, wantCats) {
					t.Errorf("category facet = %+v, want %+v", r.Facets.Categories, wantCats)
				}
				wantPrices := []search.PriceRange{{Min: 0, Max: 2500, Count: 1}, {Min: 2500, Max: 5000, Count: 3},
					{Min: 5000, Max: 10000, Count: 1}, {Min: 10000, Max: 25000, Count: 1}, {Min: 25000, Count: 1}}
				if !reflect.DeepEqual(r.Facets.Prices, wantPrices) {
					t.Errorf("price facet = %+v, want %+v", r.Facets.Prices, wantPrices)
				}
			})

			t.Run("filters", func(t *testing.T) {
				q := lamp
				q.Category = "cat_lamps"
				r := run(t, api, q, page.Request{})
				if got := sorted(ids(r)); r.Total != 4 || !slices.Equal(got, []string{"l1", "l2", "l3", "l4"}) {
					t.Errorf("lamp in cat_lamps = %v (total %d)", got, r.Total)
				}
				// The category facet still counts the other categories;
				// the price facet counts within the category.
				if len(r.Facets.Categories) != 3 || r.Facets.Categories[1] != (search.CategoryCount{Category: "cat_outdoor", Count: 2}) {
					t.Errorf("category facet under a category filter = %+v, want all three", r.Facets.Categories)
				}
				if got := counts(r.Facets.Prices); !slices.Equal(got, []int{1, 1, 1, 0, 1}) {
					t.Errorf("price facet within cat_lamps = %v, want [1 1 1 0 1]", got)
				}

				q = search.Query{Text: "lamp", MinPrice: 2500, MaxPrice: 5000}
				r = run(t, api, q, page.Request{})
				if got := sorted(ids(r)); !slices.Equal(got, []string{"k1", "l3", "o1"}) {
					t.Errorf("lamp at $25-$50 = %v, want k1 l3 o1 (25.00 in, 50.00 out)", got)
				}
				if got := counts(r.Facets.Prices); !slices.Equal(got, []int{1, 3, 1, 1, 1}) {
					t.Errorf("price facet under a price filter = %v, want every bucket's count", got)
				}
				wantCats := []search.CategoryCount{{Category: "cat_kitchen", Count: 1}, {Category: "cat_lamps", Count: 1}, {Category: "cat_outdoor", Count: 1}}
				if !reflect.DeepEqual(r.Facets.Categories, wantCats) {
					t.Errorf("category facet within $25-$50 = %+v, want %+v", r.Facets.Categories, wantCats)
				}

				// Both filters and a sort at once.
				q = search.Query{Text: "lamp", Category: "cat_lamps", MinPrice: 4000, Sort: search.SortPriceDesc}
				r = run(t, api, q, page.Request{})
				if got := ids(r); !slices.Equal(got, []string{"l4", "l2", "l3"}) || r.Total != 3 {
					t.Errorf("lamps in cat_lamps from $40, dearest first = %v (total %d), want [l4 l2 l3]", got, r.Total)
				}
				if got := counts(r.Facets.Prices); !slices.Equal(got, []int{1, 1, 1, 0, 1}) {
					t.Errorf("price facet = %v, want cat_lamps' counts", got)
				}
				wantCats = []search.CategoryCount{{Category: "cat_lamps", Count: 3}, {Category: "cat_kitchen", Count: 1}, {Category: "cat_outdoor", Count: 1}}
				if !reflect.DeepEqual(r.Facets.Categories, wantCats) {
					t.Errorf("category facet from $40 = %+v, want %+v", r.Facets.Categories, wantCats)
				}
				// A filter nothing passes.
				r = run(t, api, search.Query{Text: "lamp", Category: "cat_none"}, page.Request{})
				if r.Total != 0 || len(r.Hits) != 0 || r.Suggestion != "" {
					t.Errorf("lamp in an unknown category = %+v", r)
				}
			})

			t.Run("did you mean", func(t *testing.T) {
				for _, tc := range []struct{ q, want string }{
					{"lamb", "lamp"},
					{"Brass Lamb", ""},             // "brass" matches: there are results
					{"lamb shade", "lamp shade"},   // a word no product is near stays
					{"kettel", ""},                 // a typo in a long word already finds the kettle
					{"kottla lamb", "kettle lamp"}, // two edits in a long word
					{"lanp", "lamp"},
					{"zeppelin", ""},
				} {
					r := run(t, api, search.Query{Text: tc.q}, page.Request{})
					if r.Suggestion != tc.want {
						t.Errorf("%q: suggestion %q (total %d), want %q", tc.q, r.Suggestion, r.Total, tc.want)
					}
					if tc.want != "" && run(t, api, search.Query{Text: tc.want}, page.Request{}).Total == 0 {
						t.Errorf("suggestion %q has no results", tc.want)
					}
				}
				// Within the filters: a lamb under $20 is a lamp only if
				// one is under $20.
				r := run(t, api, search.Query{Text: "lamb", MaxPrice: 1500}, page.Request{})
				if r.Suggestion != "" {
					t.Errorf("lamb under $15: suggestion %q, want none (no lamp is)", r.Suggestion)
				}
				r = run(t, api, search.Query{Text: "lamb", Category: "cat_outdoor"}, page.Request{})
				if r.Suggestion != "lamp" {
					t.Errorf("lamb in cat_outdoor: suggestion %q, want lamp", r.Suggestion)
				}
			})

			t.Run("tokens are bound to the order and filters", func(t *testing.T) {
				r := run(t, api, search.Query{Text: "lamp", Sort: search.SortPriceAsc}, page.Request{Size: 2})
				for _, q := range []search.Query{
					{Text: "lamp"},
					{Text: "lamp", Sort: search.SortPriceDesc},
					{Text: "lamp", Sort: search.SortPriceAsc, Category: "cat_lamps"},
					{Text: "lamp", Sort: search.SortPriceAsc, MaxPrice: 9000},
				} {
					if _, err := api.Search(context.Background(), q, page.Request{Size: 2, Token: r.NextPageToken}); !errs.Is(errs.BadRequest, err) {
						t.Errorf("%+v with a token of price_asc: err = %v, want BadRequest", q, err)
					}
				}
			})

			t.Run("bad queries", func(t *testing.T) {
				for _, q := range []search.Query{
					{Text: "lamp", Sort: "cheapest"},
					{Text: "lamp", MinPrice: -1},
					{Text: "lamp", MaxPrice: -5},
					{Text: "lamp", MinPrice: 5000, MaxPrice: 2500},
					{Text: "lamp", MinPrice: 2500, MaxPrice: 2500},
					{Text: "lamp", Category: strings.Repeat("c", 101)},
				} {
					if _, err := api.Search(context.Background(), q, page.Request{}); !errs.Is(errs.BadRequest, err) {
						t.Errorf("%+v: err = %v, want BadRequest", q, err)
					}
				}
			})
		})
	}
}

func sorted(s []string) []string { s = slices.Clone(s); slices.Sort(s); return s }

func counts(prs []search.PriceRange) []int {
	out := make([]int, len(prs))
	for i, p := range prs {
		out[i] = p.Count
	}
	return out
}

// TestSearchHTTPBadParameters: each bad parameter is a 400 problem+json
// saying what is wrong.
func TestSearchHTTPBadParameters(t *testing.T) {
	svc, _ := newService(t)
	feed(t, svc, shop...)
	srv := httptest.NewServer(search.NewHandler(svc))
	t.Cleanup(srv.Close)
	for raw, want := range map[string]string{
		"q=lamp&sort=cheapest":                "sort",
		"q=lamp&min_price=-1":                 "negative",
		"q=lamp&min_price=10.50":              "min_price",
		"q=lamp&max_price=abc":                "max_price",
		"q=lamp&min_price=5000&max_price=100": "max_price",
		"q=lamp&sort=newest&page_token=" + search.SearchToken(search.Query{Text: "lamp"}, 2): "page_token",
	} {
		resp, err := http.Get(srv.URL + "/svc/search/v1/search?" + raw)
		if err != nil {
			t.Fatal(err)
		}
		var p errs.Problem
		err = json.NewDecoder(resp.Body).Decode(&p)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || err != nil || !strings.Contains(p.Detail, want) {
			t.Errorf("GET ?%s = %d %+v (%v); want 400 whose detail mentions %q", raw, resp.StatusCode, p, err, want)
		}
	}
	// And good ones are read as such.
	v := url.Values{"q": {"lamp"}, "sort": {"price_desc"}, "category": {"cat_lamps"}, "min_price": {"2500"}}
	resp, err := http.Get(srv.URL + "/svc/search/v1/search?" + v.Encode())
	if err != nil {
		t.Fatal(err)
	}
	var r search.Result
	err = json.NewDecoder(resp.Body).Decode(&r)
	resp.Body.Close()
	if err != nil || !slices.Equal(ids(r), []string{"l4", "l2", "l3"}) {
		t.Errorf("GET ?%s = %v, %v; want [l4 l2 l3]", v.Encode(), ids(r), err)
	}
}

// TestListingTimeKept: an event without a listing time (one written before
// events carried it) keeps the time the index has, so "newest" does not
// change when an old ProductChanged is redelivered.
func TestListingTimeKept(t *testing.T) {
	svc, _ := newService(t)
	feed(t, svc, item("a", "Lamp A", "c", 1000, 1), item("b", "Lamp B", "c", 1000, 2))
	old := bus.Event{ID: "pc-a", Type: catalog.SubjectProductChanged,
		Data: []byte(`{"product_id":"a","version":2,"changed":["price"],"name":"Lamp A","description":"","category":"c","price":{"amount":900,"currency":"USD"},"stock":1}`)}
	feed(t, svc, old)
	newest := all(t, svc, search.Query{Text: "lamp", Sort: search.SortNewest}, 10)
	cheapest := all(t, svc, search.Query{Text: "lamp", Sort: search.SortPriceAsc}, 10)
	if !slices.Equal(newest, []string{"b", "a"}) || !slices.Equal(cheapest, []string{"a", "b"}) {
		t.Errorf("newest %v, cheapest %v; want [b a] and [a b]", newest, cheapest)
	}
}
