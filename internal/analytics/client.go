package analytics

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/globomantics/globomantics/internal/platform/httpx"
)

// Client is the analytics service's API over HTTP. Every call only reads and
// may be retried on another instance.
type Client struct {
	c *httpx.Client
}

var _ API = (*Client)(nil)

// NewClient returns a client of the analytics service reached through c.
func NewClient(c *httpx.Client) *Client { return &Client{c: c} }

func query(window time.Duration, limit int) string {
	v := url.Values{}
	v.Set("window", window.String())
	v.Set("limit", strconv.Itoa(limit))
	return "?" + v.Encode()
}

// Popular calls GET /svc/analytics/v1/popular.
func (c *Client) Popular(ctx context.Context, window time.Duration, limit int) ([]ProductViews, error) {
	var out PopularResponse
	if err := c.c.Call(ctx, http.MethodGet, Prefix+"popular"+query(window, limit), nil, &out, httpx.Retryable()); err != nil {
		return nil, err
	}
	return out.Products, nil
}

// PopularProductIDs lists the ids of the most viewed products of the last
// window, most viewed first (what the storefront's "Popular now" needs).
func (c *Client) PopularProductIDs(ctx context.Context, window time.Duration, limit int) ([]string, error) {
	return productIDs(c.Popular(ctx, window, limit))
}

// Searches calls GET /svc/analytics/v1/searches.
func (c *Client) Searches(ctx context.Context, window time.Duration, limit int) (SearchReport, error) {
	var out SearchReport
	if err := c.c.Call(ctx, http.MethodGet, Prefix+"searches"+query(window, limit), nil, &out, httpx.Retryable()); err != nil {
		return SearchReport{}, err
	}
	return out, nil
}

// Revenue calls GET /svc/analytics/v1/revenue.
func (c *Client) Revenue(ctx context.Context, window time.Duration) (RevenueReport, error) {
	var out RevenueReport
	v := url.Values{}
	v.Set("window", window.String())
	if err := c.c.Call(ctx, http.MethodGet, Prefix+"revenue?"+v.Encode(), nil, &out, httpx.Retryable()); err != nil {
		return RevenueReport{}, err
	}
	return out, nil
}
