// Package payment is the payment service: a simulated card processor with
// authorize, capture, void and refund. It owns the payments table (each
// payment's current state) and the payment ledger (one entry per money
// movement, written in the same transaction as the change it records), and
// never stores a full card number, only its last four digits.
//
// Money is conserved per payment: captured <= authorized, captured + voided
// <= authorized (a void releases the whole uncaptured authorization) and
// refunded <= captured; Audit checks it from the ledger.
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
//
// A payment with a zero Amount, status voided and no card is a
// cancellation: VoidForOrder found no payment for its order and recorded
// this one instead, so that no authorization can follow (see Cancelled).
// VoidForOrder and PaymentForOrder return a cancellation with an empty ID:
// no payment was made, and it is known by its order alone.
type Payment struct {
	ID        string      `json:"id"`
	OrderID   string      `json:"order_id"`
	Amount    money.Money `json:"amount"`
	Status    string      `json:"status"`
	CardLast4 string      `json:"card_last4"`
	CreatedAt time.Time   `json:"created_at"`
	UpdatedAt time.Time   `json:"updated_at"`
}

// Cancelled reports whether p is the cancellation VoidForOrder records for
// an order that had no payment: it moved no money and has no ledger entry.
func (p Payment) Cancelled() bool {
	return p.Status == StatusVoided && p.Amount.Amount == 0 && p.CardLast4 == ""
}

// Ledger entry kinds: each is one money movement of a payment, recorded at
// most once per payment.
const (
	// KindAuthorization holds the payment's amount on the card.
	KindAuthorization = "authorization"
	// KindCapture takes the whole authorized amount.
	KindCapture = "capture"
	// KindVoid releases the whole uncaptured authorization.
	KindVoid = "void"
	// KindRefund gives the whole captured amount back.
	KindRefund = "refund"
	// KindDecline records a declined authorization: its amount was asked
	// for and nothing was held.
	KindDecline = "decline"
)

// Entry is one row of the payment ledger: one money movement of one
// payment. It is written in the same transaction as the payment's change
// it records, and a payment has at most one entry of each kind.
type Entry struct {
	ID        string      `json:"id"`
	PaymentID string      `json:"payment_id"`
	OrderID   string      `json:"order_id"`
	Kind      string      `json:"kind"`
	Amount    money.Money `json:"amount"`
	CreatedAt time.Time   `json:"created_at"`
}

// Audit is the payment ledger checked as a whole: totals in minor units of
// money.Currency over every entry in that currency, and every payment whose
// ledger breaks the conservation rules or disagrees with its status.
type Audit struct {
	Currency string `json:"currency"`
	// Authorized, Captured, Voided and Refunded sum the entries of each
	// kind.
	Authorized int64 `json:"authorized"`
	Captured   int64 `json:"captured"`
	Voided     int64 `json:"voided"`
	Refunded   int64 `json:"refunded"`
	// Declined counts the declined authorizations.
	Declined int64 `json:"declined"`
	// Held is authorized minus captured minus voided over the payments
	// still authorized: the money held on cards now.
	Held int64 `json:"held"`
	// NetCaptured is Captured minus Refunded: the money taken and kept.
	NetCaptured int64 `json:"net_captured"`
	// Payments counts the payments rows, Cancelled those that are
	// cancellations (Payment.Cancelled), Entries the ledger rows.
	Payments  int64 `json:"payments"`
	Cancelled int64 `json:"cancelled"`
	Entries   int64 `json:"entries"`
	// Violations lists the payments (and ledger rows without a payment)
	// that break a rule, ordered by payment id; empty when the ledger is
	// sound.
	Violations []Violation `json:"violations"`
}

// OK reports whether the audit found no violation.
func (a Audit) OK() bool { return len(a.Violations) == 0 }

// Violation is one payment whose ledger breaks a rule. Status is the
// payments row's status ("" when the ledger has rows for a payment that does
// not exist) and LedgerStatus the status its ledger entries imply.
type Violation struct {
	PaymentID    string   `json:"payment_id"`
	OrderID      string   `json:"order_id"`
	Status       string   `json:"status"`
	LedgerStatus string   `json:"ledger_status"`
	Authorized   int64    `json:"authorized"`
	Captured     int64    `json:"captured"`
	Voided       int64    `json:"voided"`
	Refunded     int64    `json:"refunded"`
	Problems     []string `json:"problems"`
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
//     the same OrderID with the same amount and card returns the existing
//     authorization (or the same decline); with another amount or card it is
//     errs.Conflict; for an order whose payment was voided (by Void or
//     VoidForOrder) it is errs.Conflict and holds no money.
//   - Capture, Void, Refund and VoidForOrder each write their ledger entry
//     in the same transaction as the change, and at most once per payment.
//   - Capture: authorized → captured, publishing PaymentCaptured (through
//     the store's outbox, with the ledger entry); capturing a captured
//     payment is a no-op and publishes nothing; errs.Conflict from any
//     other status.
//   - Void: authorized → voided; voiding a voided or declined payment is a
//     no-op; errs.Conflict for a captured one (refund it instead).
//   - Refund: captured → refunded; refunding a refunded one is a no-op;
//     errs.Conflict otherwise.
//   - VoidForOrder: voids the order's payment if authorized and returns it;
//     returns a voided or declined one unchanged; errs.Conflict for a
//     captured or refunded one. When the order has no payment it records a
//     cancellation (see Payment.Cancelled) and returns it, with status
//     voided, a zero amount and an empty ID, so that a late Authorize for
//     the order fails with errs.Conflict and holds nothing; a repeat returns
//     the same cancellation. This is how a caller undoes an authorization
//     whose answer it lost. errs.Invalid for an empty or over-long order id.
//   - GetPayment, and the three above: errs.NotFound for an unknown id.
//   - PaymentForOrder: the payment of an order (including a declined one or
//     a cancellation recorded by VoidForOrder, with an empty ID),
//     so that a caller whose Authorize answer was lost can find it;
//     errs.NotFound if the order has none.
type API interface {
	Authorize(ctx context.Context, r AuthorizeRequest) (Payment, error)
	Capture(ctx context.Context, id string) (Payment, error)
	Void(ctx context.Context, id string) (Payment, error)
	Refund(ctx context.Context, id string) (Payment, error)
	GetPayment(ctx context.Context, id string) (Payment, error)
	PaymentForOrder(ctx context.Context, orderID string) (Payment, error)
	VoidForOrder(ctx context.Context, orderID string) (Payment, error)
}

// Auditor is met by *Service and *Client: Audit checks the whole payment
// ledger (see Audit); errs.Unavailable when a database node does not
// answer, since totals without it would be wrong.
type Auditor interface {
	Audit(ctx context.Context) (Audit, error)
}
