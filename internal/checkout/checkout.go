// Package checkout places orders across cart, catalog stock, payment,
// shipping and order as an orchestrated saga: each checkout is a row of the
// saga log in checkout's own database, its steps and compensations are data
// (see steps.go), and any checkout instance resumes a saga whose driver
// died, under a lease with an epoch that fences the old driver out. A
// checkout either completes (order confirmed, payment captured, shipment
// created, the checked-out cart lines removed) or rolls back (stock
// released, payment voided, shipment and order cancelled), whatever
// crashes; nothing is charged for an order that does not exist.
package checkout

import (
	"context"
	"time"

	"github.com/globomantics/globomantics/internal/cart"
	"github.com/globomantics/globomantics/internal/order"
	"github.com/globomantics/globomantics/internal/payment"
	"github.com/globomantics/globomantics/internal/platform/money"
	"github.com/globomantics/globomantics/internal/shipping"
)

// Request is the checkout body. CallbackURL, when set, is an http(s) URL
// that is sent the checkout's final state (see Callback) once it is
// confirmed or cancelled.
type Request struct {
	ShippingAddress shipping.Address `json:"shipping_address"`
	Payment         payment.Card     `json:"payment"`
	CallbackURL     string           `json:"callback_url,omitempty"`
}

// Customer is who is checking out: the logged-in account.
type Customer struct {
	UserID string `json:"user_id"`
	Email  string `json:"email"`
}

// The states of a checkout.
const (
	// StatePending: the saga is still running (forward or rolling back).
	StatePending = "pending"
	// StateConfirmed: the order is confirmed, the payment captured.
	StateConfirmed = "confirmed"
	// StateCancelled: every finished step was undone; Result.Error says why.
	StateCancelled = "cancelled"
)

// Failure is why a checkout was cancelled: the HTTP status of its error
// kind and a message fit for the customer.
type Failure struct {
	Status int    `json:"status"`
	Detail string `json:"detail"`
}

// CallbackStatus is how the delivery of a checkout's callback stands.
type CallbackStatus struct {
	URL       string    `json:"url"`
	State     string    `json:"state"` // pending, delivered, failed
	Attempts  int       `json:"attempts"`
	LastError string    `json:"last_error,omitempty"`
	NextAt    time.Time `json:"next_at,omitzero"`
}

// Result is a checkout as its customer sees it. Order is the order placed;
// while the checkout is pending and the order not yet created it is the
// order as it will be created (status pending). Done is true once the
// checkout is confirmed or cancelled.
type Result struct {
	Key      string          `json:"key"`
	State    string          `json:"state"`
	Done     bool            `json:"done"`
	Order    order.Order     `json:"order"`
	Error    *Failure        `json:"error,omitempty"`
	Callback *CallbackStatus `json:"callback,omitempty"`
}

// QuoteRequest is what a Quote prices: the lines of a cart (product and
// quantity; names and prices are read again from the catalog) and where
// they would go. Only the address's country is required; the fields given
// are checked as a checkout checks them.
type QuoteRequest struct {
	Items   []cart.Item      `json:"items"`
	Address shipping.Address `json:"address"`
}

// Quote is what checking the lines out to the address would charge now:
// the lines priced from the catalog, their subtotal, the shipping and the
// total. A checkout charges exactly this unless the cart, the prices or
// the address change before it runs (the saga prices by the same rules).
type Quote struct {
	Items    []order.Item `json:"items"`
	Subtotal money.Money  `json:"subtotal"`
	Shipping money.Money  `json:"shipping"`
	Total    money.Money  `json:"total"`
}

// API is the checkout service's contract, met by *Service and *Client.
//
// PlaceOrder checks out the customer's cart ("user:<id>") under an
// idempotency key, as Stripe treats one: the key, a hash of the request and
// the outcome are stored for 24 hours. errs.BadRequest for an empty key or
// one over 200 bytes; errs.Invalid for a bad address, card or callback URL,
// an empty cart, or a key used before by this customer with a different
// request; errs.Conflict when stock is short or the cart is being checked
// out under another key; errs.Declined when the card is declined (nothing
// charged, stock as before, no order); errs.Unavailable when a service
// stayed down (rolled back). When the saga has not finished within a short
// budget, PlaceOrder returns a pending Result (Done false) and the saga goes
// on in the background; Checkout tells how it ends. The same key with the
// same request returns the same outcome and never places a second order;
// the one exception is errs.Unavailable after a complete roll-back, where
// the same key runs the checkout again.
//
// Checkout returns the customer's checkout under key, in any state;
// errs.NotFound when there is none (or it has expired).
//
// QuoteOrder prices a QuoteRequest as a checkout would (see Quote); it
// changes nothing. errs.Invalid for no items, a quantity below 1, or an
// address whose country the shop does not ship to or whose given fields
// are bad (the message names the field); errs.Conflict naming a product no
// longer sold.
type API interface {
	PlaceOrder(ctx context.Context, c Customer, key string, r Request) (Result, error)
	Checkout(ctx context.Context, userID, key string) (Result, error)
	QuoteOrder(ctx context.Context, r QuoteRequest) (Quote, error)
}
