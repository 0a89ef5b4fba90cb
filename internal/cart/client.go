package cart

import (
	"context"
	"net/http"
	"strings"

	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/httpx"
)

// Client is the cart service's API over HTTP. Errors keep their errs kind and
// client-safe detail.
type Client struct {
	c *httpx.Client
}

var _ API = (*Client)(nil)

// NewClient returns a client of the cart service reached through c.
func NewClient(c *httpx.Client) *Client { return &Client{c: c} }

// GetCart returns a cart; see API.
func (c *Client) GetCart(ctx context.Context, owner string) (Cart, error) {
	if err := ValidateOwner(owner); err != nil {
		return Cart{}, errs.E("cart.GetCart", err)
	}
	var out Cart
	err := c.c.Call(ctx, http.MethodGet, path(owner), nil, &out)
	return out, err
}

// AddItem adds to a cart; see API. It is not retried.
func (c *Client) AddItem(ctx context.Context, owner, productID string, qty int) (Cart, error) {
	if err := ValidateOwner(owner); err != nil {
		return Cart{}, errs.E("cart.AddItem", err)
	}
	var out Cart
	err := c.c.Call(ctx, http.MethodPost, path(owner, "items"), addRequest{ProductID: productID, Quantity: qty}, &out)
	return out, err
}

// SetQuantity sets a line's quantity; see API.
func (c *Client) SetQuantity(ctx context.Context, owner, productID string, qty int) (Cart, error) {
	const op = "cart.SetQuantity"
	if err := ValidateOwner(owner); err != nil {
		return Cart{}, errs.E(op, err)
	}
	if err := validateProductID(productID); err != nil {
		return Cart{}, errs.E(op, err)
	}
	var out Cart
	err := c.c.Call(ctx, http.MethodPut, path(owner, "items", productID), quantityRequest{Quantity: qty}, &out)
	return out, err
}

// RemoveItem removes a line; see API.
func (c *Client) RemoveItem(ctx context.Context, owner, productID string) (Cart, error) {
	const op = "cart.RemoveItem"
	if err := ValidateOwner(owner); err != nil {
		return Cart{}, errs.E(op, err)
	}
	if err := validateProductID(productID); err != nil {
		return Cart{}, errs.E(op, err)
	}
	var out Cart
	err := c.c.Call(ctx, http.MethodDelete, path(owner, "items", productID), nil, &out)
	return out, err
}

// Clear empties a cart; see API.
func (c *Client) Clear(ctx context.Context, owner string) error {
	if err := ValidateOwner(owner); err != nil {
		return errs.E("cart.Clear", err)
	}
	return c.c.Call(ctx, http.MethodDelete, path(owner), nil, nil)
}

// Merge moves one cart into another; see API. It is retried on another
// instance if one is down.
func (c *Client) Merge(ctx context.Context, from, to string) (Cart, error) {
	if err := validateMerge(from, to); err != nil {
		return Cart{}, errs.E("cart.Merge", err)
	}
	var out Cart
	err := c.c.Call(ctx, http.MethodPost, path(to, "merge"), mergeRequest{From: from}, &out, httpx.Retryable())
	return out, err
}

// Lock locks a cart for a checkout and returns its snapshot; see API. It is
// retried on another instance if one is down: a repeat returns the same
// snapshot.
func (c *Client) Lock(ctx context.Context, owner, lockID string) (Cart, error) {
	if err := validateLock(owner, lockID); err != nil {
		return Cart{}, errs.E("cart.Lock", err)
	}
	var out Cart
	err := c.c.Call(ctx, http.MethodPost, path(owner, "lock"), lockRequest{LockID: lockID}, &out, httpx.Retryable())
	return out, err
}

// Unlock releases a checkout's lock; see API. It is retried on another
// instance if one is down.
func (c *Client) Unlock(ctx context.Context, owner, lockID string) error {
	if err := validateLock(owner, lockID); err != nil {
		return errs.E("cart.Unlock", err)
	}
	return c.c.Call(ctx, http.MethodPost, path(owner, "unlock"), lockRequest{LockID: lockID}, nil, httpx.Retryable())
}

// CompleteCheckout takes a checkout's snapshot out of the cart; see API. It
// is retried on another instance if one is down: it acts once.
func (c *Client) CompleteCheckout(ctx context.Context, owner, lockID string) (Cart, error) {
	if err := validateLock(owner, lockID); err != nil {
		return Cart{}, errs.E("cart.CompleteCheckout", err)
	}
	var out Cart
	err := c.c.Call(ctx, http.MethodPost, path(owner, "complete"), lockRequest{LockID: lockID}, &out, httpx.Retryable())
	return out, err
}

// path is the URL path of a cart (and sub-resources): each segment escaped
// as by httpx.Path, and "." and ".." percent-encoded so that no URL cleaning
// can remove them.
func path(segs ...string) string {
	var b strings.Builder
	b.WriteString(apiPrefix)
	for _, s := range segs {
		b.WriteByte('/')
		if s == "." || s == ".." {
			b.WriteString(strings.Repeat("%2E", len(s)))
		} else {
			b.WriteString(httpx.Path("", s)[1:])
		}
	}
	return b.String()
}
