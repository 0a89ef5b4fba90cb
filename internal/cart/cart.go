// Package cart is the cart service: the shopping cart of a session or a user.
// It owns the carts table. A cart is identified by an owner string:
// "user:<account id>" for a logged-in customer, "anon:<token>" for a visitor.
package cart

import (
	"context"

	"github.com/globomantics/globomantics/internal/platform/money"
)

// Item is one line of a cart, priced from the catalog when it was added.
type Item struct {
	ProductID string      `json:"product_id"`
	Name      string      `json:"name"`
	Quantity  int         `json:"quantity"`
	UnitPrice money.Money `json:"unit_price"`
	LineTotal money.Money `json:"line_total"`
}

// Cart is a cart's contents; an owner with no cart has an empty one.
type Cart struct {
	Items []Item      `json:"items"`
	Total money.Money `json:"total"`
}

// MaxQuantity is the most of one product a cart may hold.
const MaxQuantity = 99

// API is the cart service's contract, met by *Service and *Client.
//
//   - AddItem: adds qty to the line of productID (creating it);
//     errs.NotFound for an unknown product; errs.Invalid for qty below 1 or a
//     resulting quantity above MaxQuantity.
//   - SetQuantity: sets the line's quantity, 0 removes it; errs.NotFound for an
//     unknown product; errs.Invalid for qty outside 0..MaxQuantity.
//   - RemoveItem: removing an absent line is not an error.
//   - Merge: moves every line of from into to (adding quantities, capped at
//     MaxQuantity) and empties from; used when a visitor logs in.
//   - Owners are non-empty strings of at most 200 bytes: errs.Invalid otherwise.
type API interface {
	GetCart(ctx context.Context, owner string) (Cart, error)
	AddItem(ctx context.Context, owner, productID string, qty int) (Cart, error)
	SetQuantity(ctx context.Context, owner, productID string, qty int) (Cart, error)
	RemoveItem(ctx context.Context, owner, productID string) (Cart, error)
	Clear(ctx context.Context, owner string) error
	Merge(ctx context.Context, from, to string) (Cart, error)
}
