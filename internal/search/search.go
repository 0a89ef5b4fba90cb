// Package search is the search service: full-text product search over a bleve
// index that it owns and feeds from catalog events.
package search

import (
	"context"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/page"
)

// Sort is the order of a search's results.
type Sort string

// The orders a search can have. Ties (equal scores, prices or listing times)
// come in product-id order, so pages never overlap.
const (
	SortRelevance Sort = "relevance"  // best match first (the default)
	SortPriceAsc  Sort = "price_asc"  // cheapest first
	SortPriceDesc Sort = "price_desc" // dearest first
	SortNewest    Sort = "newest"     // most recently listed first
)

// Sorts lists the orders in the order a shop offers them.
var Sorts = []Sort{SortRelevance, SortPriceAsc, SortPriceDesc, SortNewest}

// maxCategoryLen bounds a category filter.
const maxCategoryLen = 100

// Query is one search: the words, the order, and the filters. A zero MinPrice
// or MaxPrice is no bound.
type Query struct {
	// Text is what the customer typed: 1 to MaxQueryLen characters.
	Text string `json:"q"`
	// Sort is the order of the results; "" is SortRelevance.
	Sort Sort `json:"sort,omitempty"`
	// Category keeps only products of this category id.
	Category string `json:"category,omitempty"`
	// MinPrice keeps products costing at least this many cents.
	MinPrice int64 `json:"min_price,omitempty"`
	// MaxPrice keeps products costing less than this many cents.
	MaxPrice int64 `json:"max_price,omitempty"`
}

// Check returns q normalised (text and category trimmed, the default sort
// made explicit); errs.BadRequest for an empty or over-long query, an
// unknown sort, a negative price, a price range whose maximum is not above
// its minimum, or an over-long category.
func (q Query) Check() (Query, error) {
	const op = "search.Query"
	q.Text = strings.TrimSpace(q.Text)
	q.Category = strings.TrimSpace(q.Category)
	if q.Sort == "" {
		q.Sort = SortRelevance
	}
	switch {
	case q.Text == "":
		return Query{}, errs.E(op, errs.BadRequest, errs.Msg("query must not be empty"))
	case !utf8.ValidString(q.Text):
		return Query{}, errs.E(op, errs.BadRequest, errs.Msg("query must be valid UTF-8"))
	case utf8.RuneCountInString(q.Text) > MaxQueryLen:
		return Query{}, errs.E(op, errs.BadRequest, errs.Msg("query must be at most %d characters", MaxQueryLen))
	case !slices.Contains(Sorts, q.Sort):
		return Query{}, errs.E(op, errs.BadRequest, errs.Msg("sort must be one of relevance, price_asc, price_desc or newest"))
	case q.MinPrice < 0 || q.MaxPrice < 0:
		return Query{}, errs.E(op, errs.BadRequest, errs.Msg("prices must not be negative"))
	case q.MaxPrice != 0 && q.MaxPrice <= q.MinPrice:
		return Query{}, errs.E(op, errs.BadRequest, errs.Msg("max_price must be above min_price"))
	case !utf8.ValidString(q.Category) || utf8.RuneCountInString(q.Category) > maxCategoryLen:
		return Query{}, errs.E(op, errs.BadRequest, errs.Msg("category must be a category id of at most %d characters", maxCategoryLen))
	}
	return q, nil
}

// Filtered reports whether q keeps only some categories or prices.
func (q Query) Filtered() bool { return q.Category != "" || q.MinPrice != 0 || q.MaxPrice != 0 }

// ParseQuery reads a Query from the parameters q, sort, category, min_price
// and max_price (whole cents) of a query string, and checks it;
// errs.BadRequest for a price that is not a whole number and as Check.
func ParseQuery(v url.Values) (Query, error) {
	q := Query{Text: v.Get("q"), Sort: Sort(v.Get("sort")), Category: v.Get("category")}
	for _, f := range []struct {
		name string
		dst  *int64
	}{{"min_price", &q.MinPrice}, {"max_price", &q.MaxPrice}} {
		s := strings.TrimSpace(v.Get(f.name))
		if s == "" {
			continue
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return Query{}, errs.E("search.ParseQuery", errs.BadRequest, errs.Msg("%s must be a whole number of cents", f.name))
		}
		*f.dst = n
	}
	return q.Check()
}

// Values is q as the query-string parameters ParseQuery reads, leaving out
// the defaults.
func (q Query) Values() url.Values {
	v := url.Values{"q": {q.Text}}
	if q.Sort != "" && q.Sort != SortRelevance {
		v.Set("sort", string(q.Sort))
	}
	if q.Category != "" {
		v.Set("category", q.Category)
	}
	if q.MinPrice != 0 {
		v.Set("min_price", strconv.FormatInt(q.MinPrice, 10))
	}
	if q.MaxPrice != 0 {
		v.Set("max_price", strconv.FormatInt(q.MaxPrice, 10))
	}
	return v
}

// Hit is one matching product with its relevance score.
type Hit struct {
	ProductID string  `json:"product_id"`
	Score     float64 `json:"score"`
}

// CategoryCount is how many results are in one category.
type CategoryCount struct {
	// Category is the category id.
	Category string `json:"category"`
	Count    int    `json:"count"`
}

// PriceRange is one bucket of the price facet: products costing at least
// Min cents and less than Max cents (no upper bound when Max is 0).
type PriceRange struct {
	Min   int64 `json:"min_price"`
	Max   int64 `json:"max_price,omitempty"`
	Count int   `json:"count"`
}

// PriceRanges are the fixed buckets of the price facet, in cents: under $25,
// $25 to $50, $50 to $100, $100 to $250, and $250 and over.
var PriceRanges = []PriceRange{{0, 2500, 0}, {2500, 5000, 0}, {5000, 10000, 0}, {10000, 25000, 0}, {25000, 0, 0}}

// Facets count the results by category and by price range. Each facet counts
// within the query and the other facet's filter, not its own, so choosing a
// category still shows how many results the other categories have.
type Facets struct {
	// Categories is every category with results, most results first
	// (ties by id).
	Categories []CategoryCount `json:"categories"`
	// Prices is every bucket of PriceRanges, in that order, with its count
	// (possibly zero).
	Prices []PriceRange `json:"prices"`
}

// Result is one page of hits in the order asked for, with the number of all
// results, the facets, and, when nothing matched, a suggested query.
type Result struct {
	Hits  []Hit `json:"hits"`
	Total int   `json:"total"`
	// Start is the position of the page's first hit among all results
	// (0 on the first page).
	Start         int    `json:"start"`
	NextPageToken string `json:"next_page_token"`
	// PrevPageToken is the token of the page of the same size before this
	// one, when Start is above 0; "" is the first page.
	PrevPageToken string `json:"prev_page_token"`
	Facets        Facets `json:"facets"`
	// Suggestion is a corrected query that has results ("lamp" for
	// "lamb"), given only on the first page of a query with none.
	Suggestion string `json:"suggestion,omitempty"`
}

// API is the search service's contract, met by *Service and *Client.
//
//   - Search: errs.BadRequest for a query Check refuses. Matches product
//     names, descriptions and category, tolerating stems ("lamps" finds
//     "lamp") and prefixes of the last word; keeps the products q's filters
//     allow, in q's order. errs.BadRequest for a page token of another query
//     (other words, order or filters).
type API interface {
	Search(ctx context.Context, q Query, p page.Request) (Result, error)
}
