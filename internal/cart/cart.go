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
//
// Notices are set on the answer of AddItem and SetQuantity when they capped
// a quantity to the stock, and by CheckStock for lines that hold more than
// is in stock now; a stored cart has none.
type Cart struct {
	Items   []Item      `json:"items"`
	Total   money.Money `json:"total"`
	Version int64       `json:"version,omitempty"`
	Notices []Notice    `json:"notices,omitempty" doc:"Lines not as asked (a quantity capped to the stock) or that the stock no longer covers; absent when there are none."`
}

// The codes of a Notice.
const (
	// NoticeCapped: the quantity asked for was more than is in stock, so
	// the line holds what is in stock (Available) instead of Requested.
	NoticeCapped = "quantity_capped"
	// NoticeShort: the line holds more (Requested) than is in stock now
	// (Available, 0 when sold out), because the stock fell since it was
	// added; a checkout of the cart as it is would be refused.
	NoticeShort = "exceeds_stock"
)

// Notice tells the customer that a cart line is not as they asked, or will
// not check out as it is. Stock is only reserved at checkout: a notice
// reports the stock when the cart was answered.
type Notice struct {
	// Code is NoticeCapped or NoticeShort.
	Code string `json:"code" enum:"quantity_capped,exceeds_stock" doc:"quantity_capped: the quantity asked for was more than is in stock, so the line holds what is in stock; exceeds_stock: the line holds more than is in stock now, and a checkout of the cart as it is would be refused."`
	// ProductID is the line's product.
	ProductID string `json:"product_id" doc:"The line's product."`
	// Name is the product's name, as the line shows it.
	Name string `json:"name" doc:"The product's name."`
	// Requested is the quantity asked for (NoticeCapped) or held in the
	// cart (NoticeShort).
	Requested int `json:"requested" doc:"The quantity asked for (quantity_capped) or held in the cart (exceeds_stock)."`
	// Available is the number of units in stock.
	Available int `json:"available" doc:"The units in stock (0: sold out)."`
	// Message says it to the customer in one sentence, naming the product
	// by its name.
	Message string `json:"message" doc:"The notice in one sentence for the customer, naming the product."`
}

// MaxQuantity is the most of one product a cart may hold.
const MaxQuantity = 99

// API is the cart service's contract, met by *Service and *Client.
//
//   - AddItem: adds qty to the line of productID (creating it), capped at
//     the product's stock (the answer then carries a NoticeCapped);
//     errs.NotFound for an unknown product; errs.Conflict for a product that
//     is sold out (nothing changes); errs.Invalid for qty below 1 or a
//     resulting quantity above MaxQuantity.
//   - SetQuantity: sets the line's quantity, 0 removes it, capped at the
//     product's stock as AddItem caps; errs.NotFound for an unknown product;
//     errs.Conflict for a quantity above 0 of a sold-out product;
//     errs.Invalid for qty outside 0..MaxQuantity.
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
