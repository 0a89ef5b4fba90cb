package payment

import (
	"time"

	"github.com/globomantics/globomantics/internal/platform/money"
)

// SubjectPaymentCaptured is the subject of PaymentCaptured events (stream
// GLOBO); its contract is in internal/contracts.
const SubjectPaymentCaptured = "globo.payment.captured"

// PaymentCaptured is the payload of SubjectPaymentCaptured: a payment's
// whole authorized amount was taken. The store writes it to its outbox in
// the transaction that records the capture in the ledger, so it is
// published once per payment captured, never for a repeated capture. The
// payment service does not know the order's user, so there is no user id.
type PaymentCaptured struct {
	PaymentID  string      `json:"payment_id"`
	OrderID    string      `json:"order_id"`
	Amount     money.Money `json:"amount"`
	CapturedAt time.Time   `json:"captured_at"`
}

// CapturedEventID is the event id of the capture of order orderID's
// payment: stable, so the broker's de-duplication drops a republished copy
// (an order has at most one payment, and a payment one capture).
func CapturedEventID(orderID string) string { return orderID + "/captured" }

// Event is an event the store writes to its outbox in the transaction of
// the ledger entry it comes from.
type Event struct {
	Subject string
	ID      string
	Data    any
}

// EventOf returns the event that ledger entry e of payment p publishes, or
// nil when its kind publishes none (only a capture does). The store calls
// it for every entry it writes, so what is published is decided here and
// written atomically there.
func EventOf(p Payment, e Entry) *Event {
	if e.Kind != KindCapture {
		return nil
	}
	return &Event{
		Subject: SubjectPaymentCaptured,
		ID:      CapturedEventID(p.OrderID),
		Data: PaymentCaptured{
			PaymentID:  p.ID,
			OrderID:    p.OrderID,
			Amount:     e.Amount,
			CapturedAt: e.CreatedAt.UTC(),
		},
	}
}
