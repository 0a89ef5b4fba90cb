package cart

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/globomantics/globomantics/internal/catalog"
	"github.com/globomantics/globomantics/internal/platform/clock"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/money"
)

// MaxOwnerLen is the longest owner string, in bytes.
const MaxOwnerLen = 200

// maxProductIDLen bounds product ids before they reach the catalog or store.
const maxProductIDLen = 200

// Products is what the cart needs of the catalog: met by *catalog.Service and
// *catalog.Client.
type Products interface {
	// GetProduct returns the product. errs.NotFound for an unknown id.
	GetProduct(ctx context.Context, id string) (catalog.Product, error)
}

// Line is one cart line as the store keeps it: a product, the name and unit
// price it had when it was added, the quantity, and when it was added.
type Line struct {
	ProductID string
	Name      string
	Quantity  int
	UnitPrice money.Money
	AddedAt   time.Time
}

// Lines is a cart's lines, in the order they were added.
type Lines []Line

// Store keeps carts. Each Update or UpdatePair runs in one transaction that
// excludes every other update of the same owners, so read-modify-write
// sequences never lose an update.
type Store interface {
	// Get returns owner's lines ordered by AddedAt (then ProductID); none for
	// an owner without a cart.
	Get(ctx context.Context, owner string) (Lines, error)
	// Update calls fn with owner's current lines, ordered as Get orders
	// them, and stores what fn leaves in *lines (keeping each line's
	// AddedAt). If fn returns an error nothing is written and Update returns
	// that error unchanged.
	Update(ctx context.Context, owner string, fn func(lines *Lines) error) error
	// UpdatePair is Update over two distinct owners in one transaction: both
	// carts are written, or neither.
	UpdatePair(ctx context.Context, a, b string, fn func(a, b *Lines) error) error
	// Delete removes owner's cart; deleting an absent cart is not an error.
	// It leaves the cart's checkout locks as they are.
	Delete(ctx context.Context, owner string) error
	// UpdateLocks is Update that also shows fn the checkout locks of owner's
	// cart that concern lockID (see Locks) and stores the locks fn leaves
	// there: Held first, then Mine, each created or replaced by lock id.
	// A store refuses a second LockHeld lock on one cart.
	UpdateLocks(ctx context.Context, owner, lockID string, fn func(lines *Lines, locks *Locks) error) error
	// DeleteAbandoned deletes, on every node, in batches, the carts of
	// owners not starting "user:" last updated before updatedBefore, and
	// the ended locks that ended before endedBefore and held locks locked
	// before it. It reports how many carts and locks it deleted; a node that
	// fails does not stop the others, and its error is returned with the
	// counts. Safe to run from several instances at once.
	DeleteAbandoned(ctx context.Context, updatedBefore, endedBefore time.Time) (carts, locks int, err error)
}

// Service is the cart service. Safe for concurrent use.
type Service struct {
	store    Store
	products Products
	clock    clock.Clock
	log      *slog.Logger
}

var _ API = (*Service)(nil)

// Option configures a Service.
type Option func(*Service)

// WithLogger makes the service log to log (RunCleanup's failures); the
// default is slog.Default().
func WithLogger(log *slog.Logger) Option { return func(s *Service) { s.log = log } }

// NewService returns the cart service over store, pricing items from products
// and telling time by clk.
func NewService(store Store, products Products, clk clock.Clock, opts ...Option) *Service {
	s := &Service{store: store, products: products, clock: clk, log: slog.Default()}
	for _, o := range opts {
		o(s)
	}
	return s
}

// GetCart returns owner's cart; an owner without a cart has an empty one.
// errs.Invalid for a malformed owner.
func (s *Service) GetCart(ctx context.Context, owner string) (Cart, error) {
	const op = "cart.GetCart"
	if err := ValidateOwner(owner); err != nil {
		return Cart{}, errs.E(op, err)
	}
	lines, err := s.store.Get(ctx, owner)
	if err != nil {
		return Cart{}, errs.E(op, err)
	}
	return lines.Cart(), nil
}

// AddItem adds qty of productID to owner's cart, creating the line with the
// product's current name and price, or adding to the line's quantity (the
// line keeps the price it was added at). The line never holds more than the
// product's stock: a quantity above it is capped, and the answer carries a
// NoticeCapped saying so. errs.Invalid for a malformed owner, a qty below 1
// or a resulting quantity above MaxQuantity; errs.NotFound for a product the
// catalog does not know; errs.Conflict, naming the product, for one that is
// sold out.
func (s *Service) AddItem(ctx context.Context, owner, productID string, qty int) (Cart, error) {
	const op = "cart.AddItem"
	if err := ValidateOwner(owner); err != nil {
		return Cart{}, errs.E(op, err)
	}
	if err := validateProductID(productID); err != nil {
		return Cart{}, errs.E(op, err)
	}
	if qty < 1 || qty > MaxQuantity {
		return Cart{}, errs.E(op, errs.Invalid, errs.Msg("quantity must be from 1 to %d", MaxQuantity))
	}
	p, err := s.product(ctx, productID)
	if err != nil {
		return Cart{}, errs.E(op, err)
	}
	var (
		out    Lines
		notice *Notice
	)
	err = s.store.Update(ctx, owner, func(lines *Lines) error {
		i := lines.index(productID)
		want, name := qty, p.Name
		if i >= 0 {
			want, name = want+(*lines)[i].Quantity, (*lines)[i].Name
		}
		n, capped, err := CapToStock(p, want)
		if err != nil {
			return err
		}
		if n > MaxQuantity {
			return errs.E(errs.Invalid, errs.Msg("a cart may hold at most %d of a product; it already holds %d of %q", MaxQuantity, want-qty, name))
		}
		if i >= 0 {
			(*lines)[i].Quantity = n
		} else {
			lines.append(s.clock.Now(), Line{ProductID: p.ID, Name: p.Name, Quantity: n, UnitPrice: p.Price})
		}
		out, notice = *lines, capped
		return nil
	})
	if err != nil {
		return Cart{}, errs.E(op, err)
	}
	return out.Cart().with(notice), nil
}

// SetQuantity sets the quantity of productID in owner's cart; 0 removes the
// line. Setting a product that is not in the cart to 0 changes nothing;
// setting it above 0 adds it, priced from the catalog, so that the call is
// idempotent. A quantity above the product's stock is capped, and the answer
// carries a NoticeCapped saying so. errs.Invalid for a malformed owner or a
// qty outside 0..MaxQuantity; errs.NotFound for a product the catalog does
// not know; errs.Conflict, naming the product, for a quantity above 0 of a
// product that is sold out.
func (s *Service) SetQuantity(ctx context.Context, owner, productID string, qty int) (Cart, error) {
	const op = "cart.SetQuantity"
	if err := ValidateOwner(owner); err != nil {
		return Cart{}, errs.E(op, err)
	}
	if err := validateProductID(productID); err != nil {
		return Cart{}, errs.E(op, err)
	}
	if qty < 0 || qty > MaxQuantity {
		return Cart{}, errs.E(op, errs.Invalid, errs.Msg("quantity must be from 0 to %d", MaxQuantity))
	}
	// Removing needs no catalog; any other quantity is checked against the
	// product's stock, looked up outside the transaction.
	var (
		p      catalog.Product
		n      = qty
		notice *Notice
	)
	if qty > 0 {
		var err error
		if p, err = s.product(ctx, productID); err != nil {
			return Cart{}, errs.E(op, err)
		}
		if n, notice, err = CapToStock(p, qty); err != nil {
			return Cart{}, errs.E(op, err)
		}
	}
	var out Lines
	err := s.store.Update(ctx, owner, func(lines *Lines) error {
		switch i := lines.index(productID); {
		case i >= 0 && n == 0:
			*lines = append((*lines)[:i], (*lines)[i+1:]...)
		case i >= 0:
			(*lines)[i].Quantity = n
		case n == 0:
		default:
			lines.append(s.clock.Now(), Line{ProductID: p.ID, Name: p.Name, Quantity: n, UnitPrice: p.Price})
		}
		out = *lines
		return nil
	})
	if err != nil {
		return Cart{}, errs.E(op, err)
	}
	return out.Cart().with(notice), nil
}

// RemoveItem removes productID's line from owner's cart; removing an absent
// line is not an error. errs.Invalid for a malformed owner.
func (s *Service) RemoveItem(ctx context.Context, owner, productID string) (Cart, error) {
	const op = "cart.RemoveItem"
	if err := ValidateOwner(owner); err != nil {
		return Cart{}, errs.E(op, err)
	}
	if err := validateProductID(productID); err != nil {
		return Cart{}, errs.E(op, err)
	}
	var out Lines
	err := s.store.Update(ctx, owner, func(lines *Lines) error {
		if i := lines.index(productID); i >= 0 {
			*lines = append((*lines)[:i], (*lines)[i+1:]...)
		}
		out = *lines
		return nil
	})
	if err != nil {
		return Cart{}, errs.E(op, err)
	}
	return out.Cart(), nil
}

// Clear empties owner's cart. errs.Invalid for a malformed owner.
func (s *Service) Clear(ctx context.Context, owner string) error {
	const op = "cart.Clear"
	if err := ValidateOwner(owner); err != nil {
		return errs.E(op, err)
	}
	if err := s.store.Delete(ctx, owner); err != nil {
		return errs.E(op, err)
	}
	return nil
}

// Merge moves every line of from into to, atomically, and returns to's cart:
// a product in both carts gets the sum of the quantities, capped at
// MaxQuantity, at to's price; the others are appended in from's order. from
// ends empty. Merging an empty cart, or a cart into itself, changes nothing,
// so a repeated Merge is harmless. It does not look at the stock: a merged
// line the stock does not cover shows up in CheckStock. errs.Invalid for a
// malformed owner.
func (s *Service) Merge(ctx context.Context, from, to string) (Cart, error) {
	const op = "cart.Merge"
	if err := validateMerge(from, to); err != nil {
		return Cart{}, errs.E(op, err)
	}
	if from == to {
		return s.GetCart(ctx, to)
	}
	var out Lines
	err := s.store.UpdatePair(ctx, from, to, func(src, dst *Lines) error {
		now := s.clock.Now()
		for _, l := range *src {
			if i := dst.index(l.ProductID); i >= 0 {
				(*dst)[i].Quantity = min((*dst)[i].Quantity+l.Quantity, MaxQuantity)
			} else {
				dst.append(now, l)
			}
		}
		*src = nil
		out = *dst
		return nil
	})
	if err != nil {
		return Cart{}, errs.E(op, err)
	}
	return out.Cart(), nil
}

// product looks productID up in the catalog and checks it can be sold.
func (s *Service) product(ctx context.Context, productID string) (catalog.Product, error) {
	if len(productID) > maxProductIDLen || !printable(productID) {
		// Not an id the catalog could hold: do not send it there.
		return catalog.Product{}, errs.E(errs.NotFound, errs.Msg("product does not exist"))
	}
	p, err := s.products.GetProduct(ctx, productID)
	if err != nil {
		if errs.Is(errs.NotFound, err) {
			return catalog.Product{}, errs.E(errs.NotFound, errs.Msg("product %q does not exist", productID), err)
		}
		return catalog.Product{}, err
	}
	if p.Price.Currency != money.Currency || p.Price.Amount <= 0 {
		// The catalog promises positive USD prices; a product without one
		// must not end up in a cart at a wrong price.
		return catalog.Product{}, errs.E(errs.Other, fmt.Errorf("product %q has unusable price %+v", productID, p.Price))
	}
	return p, nil
}

// with returns c carrying notice, if there is one.
func (c Cart) with(notice *Notice) Cart {
	if notice != nil {
		c.Notices = append(c.Notices, *notice)
	}
	return c
}

// Cart is the API view of the lines, with line totals and the cart total.
func (ls Lines) Cart() Cart {
	c := Cart{Items: make([]Item, 0, len(ls)), Total: money.USD(0)}
	for _, l := range ls {
		lt := l.UnitPrice.Times(l.Quantity)
		c.Items = append(c.Items, Item{ProductID: l.ProductID, Name: l.Name, Quantity: l.Quantity, UnitPrice: l.UnitPrice, LineTotal: lt})
		c.Total = c.Total.Add(lt)
	}
	return c
}

// index is the position of productID's line, or -1.
func (ls Lines) index(productID string) int {
	for i, l := range ls {
		if l.ProductID == productID {
			return i
		}
	}
	return -1
}

// append adds l as the newest line, stamped now, or a millisecond after the
// newest line if the clock has not moved past it, so that the order lines
// were added in survives storage at millisecond precision.
func (ls *Lines) append(now time.Time, l Line) {
	at := now.Truncate(time.Millisecond)
	for _, o := range *ls {
		if !at.After(o.AddedAt) {
			at = o.AddedAt.Add(time.Millisecond)
		}
	}
	l.AddedAt = at
	*ls = append(*ls, l)
}

// ValidateOwner checks owner is 1..MaxOwnerLen bytes of printable UTF-8 text;
// errs.Invalid otherwise.
func ValidateOwner(owner string) error {
	switch {
	case owner == "":
		return errs.E(errs.Invalid, errs.Msg("owner is required"))
	case len(owner) > MaxOwnerLen:
		return errs.E(errs.Invalid, errs.Msg("owner must be at most %d bytes", MaxOwnerLen))
	case !printable(owner):
		return errs.E(errs.Invalid, errs.Msg("owner must be printable UTF-8 text"))
	}
	return nil
}

// validateMerge checks both owners of a Merge, naming the bad one.
func validateMerge(from, to string) error {
	if err := ValidateOwner(from); err != nil {
		return errs.E(errs.Invalid, errs.Msg("from: %s", errs.Detail(err)), err)
	}
	if err := ValidateOwner(to); err != nil {
		return errs.E(errs.Invalid, errs.Msg("to: %s", errs.Detail(err)), err)
	}
	return nil
}

// validateProductID rejects an empty product id. Other ids are looked up;
// ones that cannot exist are simply not found.
func validateProductID(id string) error {
	if id == "" {
		return errs.E(errs.Invalid, errs.Msg("product_id is required"))
	}
	return nil
}

func printable(s string) bool {
	return utf8.ValidString(s) && strings.IndexFunc(s, unicode.IsControl) < 0
}
