package catalog

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/httpx"
)

// Client is the catalog API over HTTP. Errors keep their errs kind and
// client-safe message across the wire.
type Client struct {
	c *httpx.Client
}

var _ API = (*Client)(nil)

// NewClient returns a catalog client calling the instances behind c.
func NewClient(c *httpx.Client) *Client { return &Client{c: c} }

const productsPath = PathPrefix + "products"

// ListCategories returns every category in display order.
func (c *Client) ListCategories(ctx context.Context) ([]Category, error) {
	var out CategoryList
	if err := c.c.Call(ctx, http.MethodGet, PathPrefix+"categories", nil, &out); err != nil {
		return nil, err
	}
	if out.Categories == nil {
		out.Categories = []Category{}
	}
	return out.Categories, nil
}

// ListProducts returns a page of products by id.
func (c *Client) ListProducts(ctx context.Context, f ProductFilter) (ProductPage, error) {
	q := url.Values{}
	if f.Category != "" {
		q.Set("category", f.Category)
	}
	if f.Page.Size != 0 {
		q.Set("page_size", strconv.Itoa(f.Page.Size))
	}
	if f.Page.Token != "" {
		q.Set("page_token", f.Page.Token)
	}
	path := productsPath
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var out ProductPage
	if err := c.c.Call(ctx, http.MethodGet, path, nil, &out); err != nil {
		return ProductPage{}, err
	}
	if out.Items == nil {
		out.Items = []Product{}
	}
	return out, nil
}

// GetProduct returns one product; errs.NotFound.
func (c *Client) GetProduct(ctx context.Context, id string) (Product, error) {
	var out Product
	err := c.c.Call(ctx, http.MethodGet, httpx.Path(productsPath, seg(id)), nil, &out)
	return out, err
}

// GetProducts returns the products that exist among ids, in the order of
// ids; it asks in batches of MaxBatchIDs.
func (c *Client) GetProducts(ctx context.Context, idList []string) ([]Product, error) {
	out := []Product{}
	seen := make(map[string]bool, len(idList))
	var uniq []string
	for _, id := range idList {
		if id != "" && !seen[id] {
			seen[id] = true
			uniq = append(uniq, id)
		}
	}
	for len(uniq) > 0 {
		n := min(len(uniq), MaxBatchIDs)
		batch := uniq[:n]
		uniq = uniq[n:]
		var res ProductPage
		q := url.Values{"ids": {strings.Join(batch, ",")}}
		if err := c.c.Call(ctx, http.MethodGet, productsPath+"?"+q.Encode(), nil, &res); err != nil {
			return nil, err
		}
		out = append(out, res.Items...)
	}
	return out, nil
}

// ListItem lists a new item. It is not retried on another instance: a
// repeat would list the item twice.
func (c *Client) ListItem(ctx context.Context, item NewItem) (Product, error) {
	var out Product
	err := c.c.Call(ctx, http.MethodPost, productsPath, item, &out)
	return out, err
}

// UpdateProduct changes a product (see API), sending ch.IfVersion as the
// If-Match header. It is not sent again after a failure that leaves its fate
// unknown: PATCH is not idempotent (a repeat would find the version moved).
func (c *Client) UpdateProduct(ctx context.Context, id string, ch ProductChange) (Product, error) {
	var opts []httpx.CallOption
	if ch.IfVersion < 0 {
		return Product{}, errs.E("catalog.Client.UpdateProduct", errs.Invalid, errs.Msg("version must not be negative"))
	}
	if ch.IfVersion != 0 {
		opts = append(opts, httpx.WithHeader("If-Match", ETag(ch.IfVersion)))
	}
	var out Product
	err := c.c.Call(ctx, http.MethodPatch, httpx.Path(productsPath, seg(id)), ch, &out, opts...)
	return out, err
}

// SetThumbnails records thumbnail blob keys by size name.
func (c *Client) SetThumbnails(ctx context.Context, id string, keys map[string]string) error {
	return c.c.Call(ctx, http.MethodPut, httpx.Path(productsPath, seg(id), "thumbnails"), ThumbnailsBody{Thumbnails: keys}, nil)
}

// ReserveStock takes the quantities out of stock, once per reservation id,
// for hold (see API), by an idempotent PUT that may be retried.
func (c *Client) ReserveStock(ctx context.Context, reservationID string, lines []Line, hold time.Duration) error {
	body := ReservationBody{Lines: lines}
	if hold > 0 {
		// Rounded up, so that a positive hold never becomes 0 (the default).
		body.HoldMillis = int64((min(hold, MaxHold) + time.Millisecond - 1) / time.Millisecond)
	}
	return c.c.Call(ctx, http.MethodPut, httpx.Path(PathPrefix+"reservations", seg(reservationID)), body, nil)
}

// CommitStock makes a live reservation final, by a POST marked retryable
// (committing twice is a no-op).
func (c *Client) CommitStock(ctx context.Context, reservationID string) error {
	return c.c.Call(ctx, http.MethodPost, httpx.Path(PathPrefix+"reservations", seg(reservationID), "commit"), nil, nil, httpx.Retryable())
}

// ReleaseStock puts a reservation's quantities back, once.
func (c *Client) ReleaseStock(ctx context.Context, reservationID string) error {
	return c.c.Call(ctx, http.MethodDelete, httpx.Path(PathPrefix+"reservations", seg(reservationID)), nil, nil)
}

// StockLevels returns every product's stock audit, by product id.
func (c *Client) StockLevels(ctx context.Context) ([]StockLevel, error) {
	var out StockLevelList
	if err := c.c.Call(ctx, http.MethodGet, PathPrefix+"admin/stock", nil, &out); err != nil {
		return nil, err
	}
	if out.Items == nil {
		out.Items = []StockLevel{}
	}
	return out.Items, nil
}

// seg is an id as a path segment. An empty id is sent as a blank one, so that
// the service (not the router) rejects it, with the same error kind as in
// process.
func seg(id string) string {
	if id == "" {
		return " "
	}
	return id
}
