// Package shipping is the shipping service: quotes and shipments with
// tracking numbers. It owns the shipments table.
package shipping

import (
	"context"
	"time"

	"github.com/globomantics/globomantics/internal/platform/money"
)

// Address is a delivery address.
type Address struct {
	Name  string `json:"name"`
	Line1 string `json:"line1"`
	City  string `json:"city"`
	// Region is the state, province or territory: the code of one of the
	// country's regions where the shop lists them (US, CA, AU; see
	// ValidateAddress), free text or empty elsewhere.
	Region     string `json:"region,omitempty"`
	PostalCode string `json:"postal_code"`
	Country    string `json:"country"` // ISO 3166-1 alpha-2, e.g. "US"
}

// Shipment statuses.
const (
	StatusCreated   = "created"
	StatusCancelled = "cancelled"
)

// Shipment is a parcel for one order.
type Shipment struct {
	ID             string      `json:"id"`
	OrderID        string      `json:"order_id"`
	Status         string      `json:"status"`
	TrackingNumber string      `json:"tracking_number"`
	Cost           money.Money `json:"cost"`
	Address        Address     `json:"address"`
	CreatedAt      time.Time   `json:"created_at"`
}

// API is the shipping service's contract, met by *Service and *Client.
//
//   - Quote: the shipping cost of items (number of units) to addr, which
//     depends on its country only; errs.Invalid for a country that is not
//     two letters, a field given that is bad as for CreateShipment (fields
//     may be empty: the checkout page quotes before the address is typed),
//     or items out of 1 to MaxItems.
//   - CreateShipment: idempotent by orderID (a repeat returns the same
//     shipment, with its tracking number); errs.Invalid as for Quote;
//     errs.Conflict for a repeat with another address or size, and when the
//     order's shipment was cancelled (by CancelShipment or CancelForOrder,
//     before or after it was created): nothing is created then.
//   - CancelShipment: created → cancelled; cancelling twice is a no-op;
//     errs.NotFound for an unknown id.
//   - CancelForOrder: cancels the order's shipment, whether or not it exists
//     yet, idempotently. It returns the cancelled shipment; when the order
//     had none, it records the order's shipment as cancelled (so that any
//     later or concurrent CreateShipment for the order fails with
//     errs.Conflict) and returns a Shipment with only OrderID, Status
//     StatusCancelled and CreatedAt (the time of the cancel) set: ID and
//     TrackingNumber are empty. errs.Invalid for an empty or over-long
//     order id.
//   - GetShipment: errs.NotFound.
type API interface {
	Quote(ctx context.Context, addr Address, items int) (money.Money, error)
	CreateShipment(ctx context.Context, orderID string, addr Address, items int) (Shipment, error)
	CancelShipment(ctx context.Context, id string) (Shipment, error)
	CancelForOrder(ctx context.Context, orderID string) (Shipment, error)
	GetShipment(ctx context.Context, id string) (Shipment, error)
}
