// Package search is the search service: full-text product search over a bleve
// index that it owns and feeds from catalog events.
package search

import (
	"context"

	"github.com/globomantics/globomantics/internal/platform/page"
)

// Hit is one matching product with its relevance score.
type Hit struct {
	ProductID string  `json:"product_id"`
	Score     float64 `json:"score"`
}

// Result is one page of hits, best first.
type Result struct {
	Hits          []Hit  `json:"hits"`
	Total         int    `json:"total"`
	NextPageToken string `json:"next_page_token"`
}

// API is the search service's contract, met by *Service and *Client.
//
//   - Search: errs.BadRequest for an empty (or all-space) query or one over
//     200 characters. Matches product names, descriptions and category,
//     tolerating stems ("lamps" finds "lamp") and prefixes of the last word.
//     errs.BadRequest for a page token of another query.
type API interface {
	Search(ctx context.Context, query string, p page.Request) (Result, error)
}
