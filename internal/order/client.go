package order

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/httpx"
	"github.com/globomantics/globomantics/internal/platform/page"
)

// Client is the order service's API over HTTP.
type Client struct{ c *httpx.Client }

var _ API = (*Client)(nil)

// NewClient returns a client of the order service's REST API.
func NewClient(c *httpx.Client) *Client { return &Client{c: c} }

const ordersPath = Prefix + "orders"

func notFound(op string) error { return errs.E(op, errs.NotFound, errs.Msg("order not found")) }

// CreateOrder creates a pending order, or returns the existing one with the same id.
func (c *Client) CreateOrder(ctx context.Context, n NewOrder) (Order, error) {
	const op = "order.Client.CreateOrder"
	if n.ID == "" {
		return Order{}, errs.E(op, errs.Invalid, errs.Msg("id is required"))
	}
	var o Order
	if err := c.c.Call(ctx, http.MethodPut, httpx.Path(ordersPath, n.ID), n, &o); err != nil {
		return Order{}, err
	}
	return o, nil
}

// GetOrder returns the order; errs.NotFound.
func (c *Client) GetOrder(ctx context.Context, id string) (Order, error) {
	if id == "" {
		return Order{}, notFound("order.Client.GetOrder")
	}
	var o Order
	if err := c.c.Call(ctx, http.MethodGet, httpx.Path(ordersPath, id), nil, &o); err != nil {
		return Order{}, err
	}
	return o, nil
}

// ListOrders returns a page of the user's orders, newest first.
func (c *Client) ListOrders(ctx context.Context, userID string, p page.Request) (OrderPage, error) {
	p = clampPage(p)
	q := url.Values{"user_id": {userID}, "page_size": {strconv.Itoa(p.Size)}}
	if p.Token != "" {
		q.Set("page_token", p.Token)
	}
	var pg OrderPage
	if err := c.c.Call(ctx, http.MethodGet, ordersPath+"?"+q.Encode(), nil, &pg); err != nil {
		return OrderPage{}, err
	}
	return pg, nil
}

// SetPayment records the payment's id and status on the order.
func (c *Client) SetPayment(ctx context.Context, id string, p PaymentInfo) (Order, error) {
	if id == "" {
		return Order{}, notFound("order.Client.SetPayment")
	}
	var o Order
	if err := c.c.Call(ctx, http.MethodPut, httpx.Path(ordersPath, id, "payment"), p, &o); err != nil {
		return Order{}, err
	}
	return o, nil
}

// Confirm moves a pending order to confirmed. The call is idempotent and is
// marked retryable: it may be sent again, to another instance.
func (c *Client) Confirm(ctx context.Context, id string, p PaymentInfo, s ShipmentInfo) (Order, error) {
	if id == "" {
		return Order{}, notFound("order.Client.Confirm")
	}
	var o Order
	if err := c.c.Call(ctx, http.MethodPost, httpx.Path(ordersPath, id, "confirm"), confirmBody{Payment: p, Shipment: s}, &o, httpx.Retryable()); err != nil {
		return Order{}, err
	}
	return o, nil
}

// Cancel moves a pending order to cancelled. The call is idempotent and is
// marked retryable: it may be sent again, to another instance.
func (c *Client) Cancel(ctx context.Context, id, reason string, p PaymentInfo) (Order, error) {
	if id == "" {
		return Order{}, notFound("order.Client.Cancel")
	}
	var o Order
	if err := c.c.Call(ctx, http.MethodPost, httpx.Path(ordersPath, id, "cancel"), cancelBody{Reason: reason, Payment: p}, &o, httpx.Retryable()); err != nil {
		return Order{}, err
	}
	return o, nil
}
