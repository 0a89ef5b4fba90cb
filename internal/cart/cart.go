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
//
// Version is set only on the snapshot a checkout locked (see API.Lock): the
// cart's revision when it was locked, the same on every answer for one lock.
// It counts the cart's updates since it was last empty, so it tells two
// snapshots of one cart apart but orders nothing across an emptying.
type Cart struct {
	Items   []Item      `json:"items"`
	Total   money.Money `json:"total"`
	Version int64       `json:"version,omitempty"`
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
//   - Lock: freezes owner's cart for the checkout lockID and returns the
//     snapshot it checks out (lines and Version); the same snapshot for a
//     repeat, even if lines were added since. errs.Conflict while another
//     lockID holds the cart (unless that lock is older than StaleLockAge,
//     when it is taken over), and for a lockID already ended by Unlock or
//     CompleteCheckout. An empty cart locks, with no lines. Lines may still be
//     added or changed while locked: they are not part of the snapshot.
//   - Unlock: releases the lock if lockID holds it, and remembers lockID as
//     ended in any case, so that a late Lock of it is refused. Idempotent.
//   - CompleteCheckout: removes the snapshot's quantities from the cart (a
//     quantity raised since keeps the difference, lines added since stay),
//     releases the lock and returns the cart, once; a repeat changes nothing
//     and returns the current cart. errs.Conflict after Unlock (or a
//     takeover) and for a lockID that never locked the cart.
//   - Lock, Unlock and CompleteCheckout may be retried freely: they are
//     idempotent by lock id. Lock ids are 1..MaxLockIDLen bytes of printable
//     text: errs.Invalid otherwise.
//   - Owners are non-empty strings of at most 200 bytes: errs.Invalid otherwise.
type API interface {
	GetCart(ctx context.Context, owner string) (Cart, error)
	AddItem(ctx context.Context, owner, productID string, qty int) (Cart, error)
	SetQuantity(ctx context.Context, owner, productID string, qty int) (Cart, error)
	RemoveItem(ctx context.Context, owner, productID string) (Cart, error)
	Clear(ctx context.Context, owner string) error
	Merge(ctx context.Context, from, to string) (Cart, error)
	Lock(ctx context.Context, owner, lockID string) (Cart, error)
	Unlock(ctx context.Context, owner, lockID string) error
	CompleteCheckout(ctx context.Context, owner, lockID string) (Cart, error)
}
