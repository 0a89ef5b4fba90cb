// Package checkout places orders across cart, catalog stock, payment,
// shipping and order. In this version it runs a plain sequence of steps and
// undoes the finished ones when a later one fails, so that nothing is charged
// for an order that does not exist and stock is never lost. It owns the
// checkout attempts table that makes placing an order idempotent.
package checkout

import (
	"context"

	"github.com/globomantics/globomantics/internal/order"
	"github.com/globomantics/globomantics/internal/payment"
	"github.com/globomantics/globomantics/internal/shipping"
)

// Request is the checkout body.
type Request struct {
	ShippingAddress shipping.Address `json:"shipping_address"`
	Payment         payment.Card     `json:"payment"`
}

// Customer is who is checking out: the logged-in account.
type Customer struct {
	UserID string `json:"user_id"`
	Email  string `json:"email"`
}

// Result is the outcome of PlaceOrder: the order, and whether it has reached
// a final state (confirmed or cancelled). Done is false only when another
// request with the same key is still working on it.
type Result struct {
	Order order.Order `json:"order"`
	Done  bool        `json:"done"`
}

// API is the checkout service's contract, met by *Service and *Client.
//
// PlaceOrder checks out the customer's cart ("user:<id>") under an
// idempotency key. errs.BadRequest for an empty key or one over 200 bytes;
// errs.Invalid for a bad address or card, an empty cart, or a key used before
// by this customer with a different request; errs.Conflict when stock is
// short; errs.Declined when the card is declined (the order is left
// cancelled, nothing charged, stock as before); errs.Unavailable when a
// service stayed down (also rolled back). The same key with the same request
// returns the same order, or the same error, and never places a second order;
// the one exception is errs.Unavailable after a complete roll-back, where
// the same key runs the checkout again (under a new order id).
type API interface {
	PlaceOrder(ctx context.Context, c Customer, key string, r Request) (Result, error)
}
