// Package order is the order service: orders and order history. It owns the
// orders tables and publishes OrderPlaced when an order is confirmed and
// OrderCancelled when one is cancelled.
package order

import (
	"context"
	"time"

	"github.com/globomantics/globomantics/internal/platform/money"
	"github.com/globomantics/globomantics/internal/platform/page"
	"github.com/globomantics/globomantics/internal/shipping"
)

// Order statuses.
const (
	StatusPending   = "pending"
	StatusConfirmed = "confirmed"
	StatusCancelled = "cancelled"
)

// Item is one line of an order, priced when the order was placed.
type Item struct {
	ProductID string      `json:"product_id"`
	Name      string      `json:"name"`
	Quantity  int         `json:"quantity"`
	UnitPrice money.Money `json:"unit_price"`
	LineTotal money.Money `json:"line_total"`
}

// PaymentInfo is the order's view of its payment.
type PaymentInfo struct {
	ID     string `json:"id,omitempty"`
	Status string `json:"status"` // "", or a payment status
}

// ShipmentInfo is the order's view of its shipment.
type ShipmentInfo struct {
	ID             string `json:"id,omitempty"`
	Status         string `json:"status"` // "", or a shipment status
	TrackingNumber string `json:"tracking_number,omitempty"`
}

// Order is a customer's order.
type Order struct {
	ID string `json:"id"`
	// Number is the short number the customer knows the order by (see
	// NewNumber), unique across shards; GetOrder accepts it for the id.
	Number          string           `json:"number"`
	UserID          string           `json:"user_id"`
	Email           string           `json:"email"`
	Status          string           `json:"status"`
	Items           []Item           `json:"items"`
	Subtotal        money.Money      `json:"subtotal"`
	ShippingCost    money.Money      `json:"shipping_cost"`
	Total           money.Money      `json:"total"`
	ShippingAddress shipping.Address `json:"shipping_address"`
	Payment         PaymentInfo      `json:"payment"`
	Shipment        ShipmentInfo     `json:"shipment"`
	CancelReason    string           `json:"cancel_reason,omitempty"`
	CreatedAt       time.Time        `json:"created_at"`
	UpdatedAt       time.Time        `json:"updated_at"`
}

// NewOrder is the input to CreateOrder. ID is chosen by the caller so that
// creating is idempotent.
type NewOrder struct {
	ID              string           `json:"id"`
	UserID          string           `json:"user_id"`
	Email           string           `json:"email"`
	Items           []Item           `json:"items"`
	ShippingCost    money.Money      `json:"shipping_cost"`
	ShippingAddress shipping.Address `json:"shipping_address"`
}

// OrderPage is one page of a user's orders, newest first.
type OrderPage struct {
	Items         []Order `json:"items"`
	NextPageToken string  `json:"next_page_token"`
}

// SubjectOrderPlaced is the subject of OrderPlaced events.
const SubjectOrderPlaced = "globo.order.placed"

// OrderPlaced is published once when an order is confirmed.
type OrderPlaced struct {
	Order Order `json:"order"`
}

// SubjectOrderCancelled is the subject of OrderCancelled events.
const SubjectOrderCancelled = "globo.order.cancelled"

// OrderCancelled is published once when an existing order is cancelled, with
// the order as cancelled: its CancelReason and the payment's status then
// (voided, declined or none: the customer was not charged; refunded: the
// money went back). An id cancelled before any order was created with it
// publishes nothing: there is no order, and no customer to tell.
type OrderCancelled struct {
	Order Order `json:"order"`
}

// SubjectEmailRequested is the subject of EmailRequested jobs, on the
// work-queue stream GLOBO_JOBS (bus.JobSubjectPrefix): each job goes to one
// mail worker.
const SubjectEmailRequested = "globo_jobs.email"

// EmailKind is which e-mail an EmailRequested asks for.
type EmailKind string

// The e-mails the order service asks for.
const (
	EmailOrderConfirmation EmailKind = "order_confirmation" // with OrderPlaced
	EmailOrderCancellation EmailKind = "order_cancellation" // with OrderCancelled
)

// EmailRequested is the job of sending the customer an e-mail about an
// order, enqueued (through the outbox) in the transaction that confirms or
// cancels it, next to OrderPlaced or OrderCancelled. It carries the order as
// it was then, which the mail worker renders: the worker needs nothing
// else. To is the recipient (the order's e-mail). Its job id is EmailJobID.
type EmailRequested struct {
	Kind        EmailKind `json:"kind"`
	OrderID     string    `json:"order_id"`
	To          string    `json:"to"`
	Order       Order     `json:"order"`
	RequestedAt time.Time `json:"requested_at"`
}

// EmailJobID is the job id of the EmailRequested of kind about order id:
// "<order id>/email/<kind>", one per order and kind.
func EmailJobID(id string, kind EmailKind) string { return id + "/email/" + string(kind) }

// CancelledEventID is the event id (the outbox's de-duplication key) of the
// OrderCancelled of order id: distinct from OrderPlaced's, which is the id.
func CancelledEventID(id string) string { return id + "/cancelled" }

// API is the order service's contract, met by *Service and *Client.
//
//   - CreateOrder: a pending order with Subtotal and Total computed from the
//     items and a new order Number; errs.Invalid for a missing id, user or email, no items, or a
//     quantity below 1. A repeat with the same id returns the existing order
//     (whatever its status) when it has the same user, items, shipping cost
//     and total, and is errs.Conflict otherwise; errs.Conflict, creating
//     nothing, for an id that was cancelled before it was created.
//   - GetOrder: the order with this id, or with this order number (any
//     string ParseNumber reads); errs.NotFound.
//   - ListOrders: the user's orders, newest first, keyset-paginated (orders
//     placed meanwhile never make a walk skip or repeat one); errs.BadRequest
//     for a page token that is not of this user's list.
//   - SetPayment: records the payment's id and status on the order.
//   - Confirm: pending → confirmed with the payment and shipment; publishes
//     OrderPlaced (exactly once per order, retried until the broker accepts
//     it); confirming a confirmed order is a no-op; errs.Conflict for a
//     cancelled one.
//   - Cancel: pending → cancelled with a reason and the payment's status;
//     publishes OrderCancelled (exactly once per order, through the outbox in
//     the same transaction); cancelling a cancelled order is a no-op;
//     errs.Conflict for a confirmed one.
//     errs.NotFound for an id with no order, which is then recorded as
//     cancelled-before-created (a tombstone on the id's shard, never listed):
//     a later or concurrent CreateOrder with that id fails with errs.Conflict
//     or, if it won the race, its order is cancelled.
type API interface {
	CreateOrder(ctx context.Context, o NewOrder) (Order, error)
	GetOrder(ctx context.Context, id string) (Order, error)
	ListOrders(ctx context.Context, userID string, p page.Request) (OrderPage, error)
	SetPayment(ctx context.Context, id string, p PaymentInfo) (Order, error)
	Confirm(ctx context.Context, id string, p PaymentInfo, s ShipmentInfo) (Order, error)
	Cancel(ctx context.Context, id, reason string, p PaymentInfo) (Order, error)
}
