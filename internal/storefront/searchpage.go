package storefront

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/globomantics/globomantics/internal/catalog"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/httpx"
	"github.com/globomantics/globomantics/internal/platform/money"
	"github.com/globomantics/globomantics/internal/platform/page"
	"github.com/globomantics/globomantics/internal/search"
)

// SearchResults is the answer of GET /api/v1/search: one page of products in
// the order asked for, how many results there are in all, the facets that
// refine them, and, when nothing matched, a suggested query.
type SearchResults struct {
	// Items are the page's products; a result whose product has gone
	// since it was indexed is left out.
	Items []catalog.Product `json:"items"`
	// Total is the number of results of the query within its filters.
	Total int `json:"total"`
	// Start is the position of the page's first result (0 on the first page).
	Start int `json:"start"`
	// NextPageToken is the page_token of the next page; "" on the last.
	NextPageToken string `json:"next_page_token"`
	// PrevPageToken is the page_token of the page before when Start is
	// above 0 ("" then means the first page).
	PrevPageToken string `json:"prev_page_token"`
	// Query is the query as understood: its words, order and filters.
	Query search.Query `json:"query"`
	// Facets count the results by category and by price range.
	Facets SearchFacets `json:"facets"`
	// Suggestion is a corrected query that has results, given on the first
	// page of a query without any ("lamp" for "lamb").
	Suggestion string `json:"suggestion,omitempty"`
}

// SearchFacets count a search's results by category and by price range.
// Each facet counts within the query and the other facet's filter, not its
// own, so that choosing one category still shows the others' counts.
type SearchFacets struct {
	// Categories lists the categories with results, most first.
	Categories []CategoryFacet `json:"categories"`
	// Prices lists the fixed price ranges in ascending order, each with
	// its count (possibly zero).
	Prices []PriceFacet `json:"prices"`
}

// CategoryFacet is one category of a search's results.
type CategoryFacet struct {
	// ID is the category id, the value of the category parameter.
	ID   string `json:"id"`
	Name string `json:"name"`
	// Count is the number of results in the category.
	Count int `json:"count"`
	// Selected is true for the category the query is filtered by.
	Selected bool `json:"selected"`
}

// PriceFacet is one price range of a search's results: at least MinPrice
// and under MaxPrice cents (no upper bound when MaxPrice is 0), the values
// of the min_price and max_price parameters.
type PriceFacet struct {
	MinPrice int64  `json:"min_price"`
	MaxPrice int64  `json:"max_price,omitempty"`
	Label    string `json:"label"`
	Count    int    `json:"count"`
	// Selected is true for the range the query is filtered by.
	Selected bool `json:"selected"`
}

// searchOutcome is a search with its hits turned into products.
type searchOutcome struct {
	search.Result
	Query    search.Query
	Products []catalog.Product
	Facets   SearchFacets
	// CategoryName names q's category filter ("" for none, or one the
	// catalog does not have).
	CategoryName string
}

// runSearch runs q, hydrates the hits into products in hit order (hits
// whose product has gone since it was indexed are left out), and names the
// facets' categories (a category the catalog no longer has is left out).
func (s *Server) runSearch(ctx context.Context, q search.Query, p page.Request) (searchOutcome, error) {
	const op = "storefront.search"
	res, err := s.d.Search.Search(ctx, q, p)
	if err != nil {
		return searchOutcome{}, errs.E(op, err)
	}
	out := searchOutcome{Result: res, Query: q, Products: []catalog.Product{}}
	if len(res.Hits) > 0 {
		idList := make([]string, len(res.Hits))
		for i, h := range res.Hits {
			idList[i] = h.ProductID
		}
		found, err := s.d.Catalog.GetProducts(ctx, idList)
		if err != nil {
			return searchOutcome{}, errs.E(op, err)
		}
		byID := make(map[string]catalog.Product, len(found))
		for _, p := range found {
			byID[p.ID] = p
		}
		for _, h := range res.Hits {
			if p, ok := byID[h.ProductID]; ok {
				out.Products = append(out.Products, p)
				delete(byID, h.ProductID) // a duplicate hit shows once
			}
		}
	}
	out.Facets = SearchFacets{Categories: []CategoryFacet{}, Prices: []PriceFacet{}}
	if len(res.Facets.Categories) > 0 || q.Category != "" {
		cats, err := s.categories(ctx)
		if err != nil {
			return searchOutcome{}, errs.E(op, err)
		}
		names := make(map[string]string, len(cats))
		for _, c := range cats {
			names[c.ID] = c.Name
		}
		out.CategoryName = names[q.Category]
		for _, c := range res.Facets.Categories {
			if name, ok := names[c.Category]; ok {
				out.Facets.Categories = append(out.Facets.Categories, CategoryFacet{ID: c.Category, Name: name, Count: c.Count, Selected: c.Category == q.Category})
			}
		}
	}
	for _, r := range res.Facets.Prices {
		out.Facets.Prices = append(out.Facets.Prices, PriceFacet{
			MinPrice: r.Min, MaxPrice: r.Max, Label: priceRangeLabel(r.Min, r.Max), Count: r.Count,
			Selected: r.Min == q.MinPrice && r.Max == q.MaxPrice && (q.MinPrice != 0 || q.MaxPrice != 0),
		})
	}
	return out, nil
}

// dollars writes cents as money.Money does, without cents when they are
// whole: "$25", "$1,250", "$12.50".
func dollars(cents int64) string {
	return strings.TrimSuffix(money.USD(cents).String(), ".00")
}

// priceRangeLabel words a price range of cents [lo, hi) for a customer.
func priceRangeLabel(lo, hi int64) string {
	switch {
	case hi == 0:
		return dollars(lo) + " and over"
	case lo == 0:
		return "Under " + dollars(hi)
	default:
		return dollars(lo) + " to " + dollars(hi)
	}
}

func (s *Server) apiSearch(w http.ResponseWriter, r *http.Request) error {
	v, err := httpx.Query(r)
	if err != nil {
		return err
	}
	q, err := search.ParseQuery(v)
	if err != nil {
		return err
	}
	p, err := page.Parse(v.Get("page_size"), v.Get("page_token"))
	if err != nil {
		return err
	}
	out, err := s.runSearch(r.Context(), q, p)
	if err != nil {
		return err
	}
	return s.writeCacheable(w, r, SearchResults{
		Items: out.Products, Total: out.Total, Start: out.Start,
		NextPageToken: out.NextPageToken, PrevPageToken: out.PrevPageToken,
		Query: out.Query, Facets: out.Facets, Suggestion: out.Suggestion,
	})
}

// searchLink is a link of the search page: a facet, a filter to remove, a
// sort order or a page.
type searchLink struct {
	Label  string
	Count  int
	URL    string
	Value  string // a sort order's parameter value
	Active bool
}

type searchData struct {
	Query  string // what the customer typed, kept in the page
	Search search.Query
	Total  int
	// Shown is the range of results on this page, "13–24", when there is
	// more than one page.
	Shown      string
	Products   []catalog.Product
	Sorts      []searchLink
	Categories []searchLink
	Prices     []searchLink
	Filters    []searchLink // the filters in force, each with its removal link
	Suggestion *searchLink
	Prev, Next string // page URLs; "" for none
	Error      string
}

// searchURL is the search page of q, at the page of token ("" the first).
func searchURL(q search.Query, token string) string {
	v := q.Values()
	if token != "" {
		v.Set("page", token)
	}
	return "/search?" + v.Encode()
}

var sortLabels = map[search.Sort]string{
	search.SortRelevance: "Best match",
	search.SortPriceAsc:  "Price: low to high",
	search.SortPriceDesc: "Price: high to low",
	search.SortNewest:    "Newest first",
}

// searchPage is the HTML search: results in the order chosen, facets and
// filters as links, a sort form that works without JavaScript, "did you
// mean" when nothing matched, and previous and next page links that keep
// the query, order and filters. A bad parameter is a 400 page saying what
// is wrong, with the query kept in the search box.
func (s *Server) searchPage(w http.ResponseWriter, r *http.Request) error {
	v, err := httpx.Query(r)
	if err != nil {
		return err
	}
	typed := strings.TrimSpace(v.Get("q"))
	if typed == "" {
		s.publicPage(w, r)
		return s.render(w, r, http.StatusOK, "search", "Search", searchData{})
	}
	q, err := search.ParseQuery(v)
	if err != nil {
		return s.render(w, r, http.StatusBadRequest, "search", "Search", searchData{Query: typed, Error: errs.Detail(err)})
	}
	p, err := pageParam(r, searchPageSize)
	if err != nil {
		return s.render(w, r, http.StatusBadRequest, "search", "Search", searchData{Query: typed, Error: errs.Detail(err)})
	}
	out, err := s.runSearch(r.Context(), q, p)
	if errs.Is(errs.BadRequest, err) {
		return s.render(w, r, http.StatusBadRequest, "search", "Search", searchData{Query: typed, Error: errs.Detail(badPageLink(err))})
	}
	if err != nil {
		return err
	}
	if p.Token == "" { // a search, not a further page of it
		s.searchMade(q.Text, len(out.Products))
	}
	s.publicPage(w, r)
	// The title, which screen readers announce first, carries the count.
	title := fmt.Sprintf("Search: %s (%d results)", q.Text, out.Total)
	if out.Total == 1 {
		title = fmt.Sprintf("Search: %s (1 result)", q.Text)
	}
	return s.render(w, r, http.StatusOK, "search", title, searchView(out))
}

// searchView lays out a search's outcome for the page.
func searchView(out searchOutcome) searchData {
	q := out.Query
	d := searchData{Query: q.Text, Search: q, Total: out.Total, Products: out.Products}
	if out.Start > 0 || out.NextPageToken != "" {
		d.Shown = fmt.Sprintf("%d–%d", out.Start+1, out.Start+len(out.Hits))
	}
	for _, srt := range search.Sorts {
		d.Sorts = append(d.Sorts, searchLink{Label: sortLabels[srt], Value: string(srt), Active: srt == q.Sort})
	}
	for _, c := range out.Facets.Categories {
		alt := q
		alt.Category = c.ID
		if c.Selected {
			alt.Category = ""
		}
		d.Categories = append(d.Categories, searchLink{Label: c.Name, Count: c.Count, URL: searchURL(alt, ""), Active: c.Selected})
	}
	priceShown := false
	for _, pr := range out.Facets.Prices {
		if pr.Count == 0 && !pr.Selected {
			continue
		}
		alt := q
		alt.MinPrice, alt.MaxPrice = pr.MinPrice, pr.MaxPrice
		if pr.Selected {
			alt.MinPrice, alt.MaxPrice = 0, 0
			priceShown = true
		}
		d.Prices = append(d.Prices, searchLink{Label: pr.Label, Count: pr.Count, URL: searchURL(alt, ""), Active: pr.Selected})
	}
	if q.Category != "" {
		alt := q
		alt.Category = ""
		label := "Category: " + out.CategoryName
		if out.CategoryName == "" {
			label = "Category filter" // one the catalog does not have: never its id
		}
		d.Filters = append(d.Filters, searchLink{Label: label, URL: searchURL(alt, "")})
	}
	if q.MinPrice != 0 || q.MaxPrice != 0 {
		alt := q
		alt.MinPrice, alt.MaxPrice = 0, 0
		d.Filters = append(d.Filters, searchLink{Label: "Price: " + priceRangeLabel(q.MinPrice, q.MaxPrice), URL: searchURL(alt, "")})
		if !priceShown {
			d.Prices = append(d.Prices, searchLink{Label: priceRangeLabel(q.MinPrice, q.MaxPrice), Count: out.Total, URL: searchURL(alt, ""), Active: true})
		}
	}
	if out.Suggestion != "" {
		alt := q
		alt.Text = out.Suggestion
		d.Suggestion = &searchLink{Label: out.Suggestion, URL: searchURL(alt, "")}
	}
	if out.Start > 0 {
		d.Prev = searchURL(q, out.PrevPageToken)
	}
	if out.NextPageToken != "" {
		d.Next = searchURL(q, out.NextPageToken)
	}
	return d
}
