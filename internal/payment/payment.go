// Package payment is the payment service: a simulated card processor with
// authorize, capture, void and refund. It owns the payments table and never
// stores a full card number, only its last four digits.
//
// Test cards: 4242424242424242 succeeds; 4000000000000002 is declined;
// 4000000000000119 fails with a transient processor error (errs.Unavailable),
// every time, so callers exercise their retry and roll-back paths. Any other
// number that passes the Luhn check succeeds.
package payment

import (
	"context"
	"time"

	"github.com/globomantics/globomantics/internal/platform/money"
)

// Card is a payment card as entered at checkout.
type Card struct {
	Number   string `json:"card_number"`
	ExpMonth int    `json:"exp_month"`
	ExpYear  int    `json:"exp_year"`
	CVC      string `json:"cvc"`
}

// Payment statuses.
const (
	StatusAuthorized = "authorized"
	StatusCaptured   = "captured"
	StatusVoided     = "voided"
	StatusRefunded   = "refunded"
	StatusDeclined   = "declined"
)

// Payment is one authorization and what became of it.
type Payment struct {
	ID        string      `json:"id"`
	OrderID   string      `json:"order_id"`
	Amount    money.Money `json:"amount"`
	Status    string      `json:"status"`
	CardLast4 string      `json:"card_last4"`
	CreatedAt time.Time   `json:"created_at"`
	UpdatedAt time.Time   `json:"updated_at"`
}

// AuthorizeRequest asks to hold Amount on Card for OrderID. OrderID is the
// idempotency key: one order gets at most one authorization.
type AuthorizeRequest struct {
	OrderID string      `json:"order_id"`
	Amount  money.Money `json:"amount"`
	Card    Card        `json:"card"`
}

// API is the payment service's contract, met by *Service and *Client.
//
//   - Authorize: errs.Invalid for a malformed card (not 12-19 digits, failing
//     Luhn, bad or past expiry, CVC not 3-4 digits) or a non-positive amount;
//     errs.Declined when the card is declined (the declined payment is
//     recorded, so a repeat returns the same decline); errs.Unavailable on a
//     transient processor error (nothing recorded, safe to retry). A repeat for
//     the same OrderID returns the existing authorization.
//   - Capture: authorized → captured; capturing a captured payment is a no-op;
//     errs.Conflict from any other status.
//   - Void: authorized → voided; voiding a voided or declined payment is a
//     no-op; errs.Conflict for a captured one (refund it instead).
//   - Refund: captured → refunded; refunding a refunded one is a no-op;
//     errs.Conflict otherwise.
//   - GetPayment, and the three above: errs.NotFound for an unknown id.
//   - PaymentForOrder: the payment of an order (including a declined one),
//     so that a caller whose Authorize answer was lost can find it;
//     errs.NotFound if the order has none.
type API interface {
	Authorize(ctx context.Context, r AuthorizeRequest) (Payment, error)
	Capture(ctx context.Context, id string) (Payment, error)
	Void(ctx context.Context, id string) (Payment, error)
	Refund(ctx context.Context, id string) (Payment, error)
	GetPayment(ctx context.Context, id string) (Payment, error)
	PaymentForOrder(ctx context.Context, orderID string) (Payment, error)
}
