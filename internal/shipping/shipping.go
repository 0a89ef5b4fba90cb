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
	Name       string `json:"name"`
	Line1      string `json:"line1"`
	City       string `json:"city"`
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
//   - Quote: the shipping cost of items (number of units) to addr; errs.Invalid
//     for an address with an empty field or a country that is not two letters,
//     or items below 1.
//   - CreateShipment: idempotent by orderID (a repeat returns the same
//     shipment, with its tracking number); errs.Invalid as for Quote.
//   - CancelShipment: created → cancelled; cancelling twice is a no-op;
//     errs.NotFound for an unknown id.
//   - GetShipment: errs.NotFound.
type API interface {
	Quote(ctx context.Context, addr Address, items int) (money.Money, error)
	CreateShipment(ctx context.Context, orderID string, addr Address, items int) (Shipment, error)
	CancelShipment(ctx context.Context, id string) (Shipment, error)
	GetShipment(ctx context.Context, id string) (Shipment, error)
}
