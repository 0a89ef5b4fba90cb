package shipping

import (
	"context"
	"net/http"

	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/httpx"
	"github.com/globomantics/globomantics/internal/platform/money"
)

// Client is the shipping service's API over HTTP. Every call is idempotent
// and may be retried on another instance.
type Client struct {
	c *httpx.Client
}

var _ API = (*Client)(nil)

// NewClient returns a client of the shipping service reached through c.
func NewClient(c *httpx.Client) *Client { return &Client{c: c} }

const basePath = "/svc/shipping/v1"

// Quote calls POST /svc/shipping/v1/quotes (retryable: it changes nothing).
func (c *Client) Quote(ctx context.Context, addr Address, items int) (money.Money, error) {
	var out QuoteResponse
	if err := c.c.Call(ctx, http.MethodPost, basePath+"/quotes", QuoteRequest{Address: addr, Items: items}, &out, httpx.Retryable()); err != nil {
		return money.Money{}, err
	}
	return out.Cost, nil
}

// CreateShipment calls POST /svc/shipping/v1/shipments with the order id as
// Idempotency-Key.
func (c *Client) CreateShipment(ctx context.Context, orderID string, addr Address, items int) (Shipment, error) {
	var sh Shipment
	in := CreateShipmentRequest{OrderID: orderID, Address: addr, Items: items}
	if err := c.c.Call(ctx, http.MethodPost, basePath+"/shipments", in, &sh, httpx.IdempotencyKey(orderID)); err != nil {
		return Shipment{}, err
	}
	return sh, nil
}

// CancelShipment calls POST /svc/shipping/v1/shipments/{id}/cancel.
func (c *Client) CancelShipment(ctx context.Context, id string) (Shipment, error) {
	if id == "" { // an empty path segment would not reach the handler
		return Shipment{}, errs.E("shipping.CancelShipment", errs.NotFound, errs.Msg("shipment not found"))
	}
	var sh Shipment
	if err := c.c.Call(ctx, http.MethodPost, httpx.Path(basePath+"/shipments", id)+"/cancel", nil, &sh, httpx.Retryable()); err != nil {
		return Shipment{}, err
	}
	return sh, nil
}

// CancelForOrder calls POST /svc/shipping/v1/orders/{id}/cancel, marked
// retryable (cancelling again is a no-op).
func (c *Client) CancelForOrder(ctx context.Context, orderID string) (Shipment, error) {
	if orderID == "" { // an empty path segment would not reach the handler
		return Shipment{}, errs.E("shipping.CancelForOrder", errs.Invalid, errs.Msg("order_id is required"))
	}
	var sh Shipment
	if err := c.c.Call(ctx, http.MethodPost, httpx.Path(basePath+"/orders", orderID, "cancel"), nil, &sh, httpx.Retryable()); err != nil {
		return Shipment{}, err
	}
	return sh, nil
}

// GetShipment calls GET /svc/shipping/v1/shipments/{id}.
func (c *Client) GetShipment(ctx context.Context, id string) (Shipment, error) {
	if id == "" {
		return Shipment{}, errs.E("shipping.GetShipment", errs.NotFound, errs.Msg("shipment not found"))
	}
	var sh Shipment
	if err := c.c.Call(ctx, http.MethodGet, httpx.Path(basePath+"/shipments", id), nil, &sh); err != nil {
		return Shipment{}, err
	}
	return sh, nil
}
