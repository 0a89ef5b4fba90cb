package search

import (
	"context"
	"net/http"
	"strconv"

	"github.com/globomantics/globomantics/internal/platform/httpx"
	"github.com/globomantics/globomantics/internal/platform/page"
)

// Client is the search service's API over HTTP.
type Client struct {
	c *httpx.Client
}

var _ API = (*Client)(nil)

// NewClient returns a client of the search service reached through c.
func NewClient(c *httpx.Client) *Client { return &Client{c: c} }

// Search calls GET /svc/search/v1/search. A query Check refuses is refused
// here, without a call.
func (c *Client) Search(ctx context.Context, q Query, p page.Request) (Result, error) {
	q, err := q.Check()
	if err != nil {
		return Result{}, err
	}
	v := q.Values()
	if p.Size != 0 {
		v.Set("page_size", strconv.Itoa(p.Size))
	}
	if p.Token != "" {
		v.Set("page_token", p.Token)
	}
	var res Result
	if err := c.c.Call(ctx, http.MethodGet, "/svc/search/v1/search?"+v.Encode(), nil, &res); err != nil {
		return Result{}, err
	}
	if res.Hits == nil {
		res.Hits = []Hit{}
	}
	if res.Facets.Categories == nil {
		res.Facets.Categories = []CategoryCount{}
	}
	if res.Facets.Prices == nil {
		res.Facets.Prices = []PriceRange{}
	}
	return res, nil
}
