package checkout

import (
	"context"
	"net/http"
	"net/url"

	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/httpx"
)

// Client is the checkout service's API over HTTP.
type Client struct{ c *httpx.Client }

var _ API = (*Client)(nil)

// NewClient returns a client of the checkout service's REST API.
func NewClient(c *httpx.Client) *Client { return &Client{c: c} }

// PlaceOrder checks out the customer's cart under key; see API. The key is
// checked here too, since a key that is not a valid header value cannot be
// sent. The call carries the key, so it may be sent again.
func (c *Client) PlaceOrder(ctx context.Context, cu Customer, key string, r Request) (Result, error) {
	if err := checkKey(key); err != nil {
		return Result{}, errs.E("checkout.Client.PlaceOrder", err)
	}
	var res Result
	if err := c.c.Call(ctx, http.MethodPost, Prefix+"orders", placeBody{Customer: cu, Request: r}, &res, httpx.IdempotencyKey(key)); err != nil {
		return Result{}, err
	}
	return res, nil
}

// Checkout returns the customer's checkout under key; see API.
func (c *Client) Checkout(ctx context.Context, userID, key string) (Result, error) {
	if err := checkKey(key); err != nil {
		return Result{}, errs.E("checkout.Client.Checkout", errs.NotFound, errs.Msg("no such checkout"))
	}
	var res Result
	q := url.Values{"user_id": {userID}, "key": {key}}
	if err := c.c.Call(ctx, http.MethodGet, Prefix+"checkouts?"+q.Encode(), nil, &res); err != nil {
		return Result{}, err
	}
	return res, nil
}

// QuoteOrder prices r as a checkout would; see API. It changes nothing, so
// it may be sent again.
func (c *Client) QuoteOrder(ctx context.Context, r QuoteRequest) (Quote, error) {
	var q Quote
	if err := c.c.Call(ctx, http.MethodPost, Prefix+"quotes", r, &q, httpx.Retryable()); err != nil {
		return Quote{}, err
	}
	return q, nil
}
