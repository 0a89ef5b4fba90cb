package checkout

import (
	"context"
	"net/http"

	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/httpx"
)

// Client is the checkout service's API over HTTP.
type Client struct{ c *httpx.Client }

var _ API = (*Client)(nil)

// NewClient returns a client of the checkout service's REST API.
func NewClient(c *httpx.Client) *Client { return &Client{c: c} }

// PlaceOrder checks out the customer's cart under key; see API. The key is
// checked here too, since a key that is not a valid header value cannot be sent.
func (c *Client) PlaceOrder(ctx context.Context, cu Customer, key string, r Request) (Result, error) {
	if err := checkKey(key); err != nil {
		return Result{}, errs.E("checkout.Client.PlaceOrder", err)
	}
	var res Result
	hdr := http.Header{"Idempotency-Key": {key}}
	if err := c.c.CallHeader(ctx, http.MethodPost, Prefix+"orders", hdr, placeBody{Customer: cu, Request: r}, &res); err != nil {
		return Result{}, err
	}
	return res, nil
}
