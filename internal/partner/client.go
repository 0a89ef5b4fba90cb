package partner

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"github.com/globomantics/globomantics/internal/platform/httpx"
)

// Client is the partner service's API over HTTP. Reads, Authenticate and
// the PUTs may be retried on another instance (httpx's policy); creating a
// partner or a product, and recording an attempt, are sent once (a retry
// after an unknown outcome could make a second one or count an attempt
// twice). A retried SetImage whose first try did list the product answers
// errs.Conflict ("listed already").
type Client struct {
	c *httpx.Client
}

var _ API = (*Client)(nil)

// NewClient returns a client of the partner service reached through c.
func NewClient(c *httpx.Client) *Client { return &Client{c: c} }

func partnerPath(pid string, rest ...string) string {
	return httpx.Path(Prefix+"partners", append([]string{pid}, rest...)...)
}

func limitQuery(limit int) string {
	if limit == 0 {
		return ""
	}
	return "?" + url.Values{"limit": {strconv.Itoa(limit)}}.Encode()
}

// Create calls POST /svc/partner/v1/partners.
func (c *Client) Create(ctx context.Context, name, webhookURL string) (Created, error) {
	var out Created
	err := c.c.Call(ctx, http.MethodPost, Prefix+"partners", createRequest{Name: name, WebhookURL: webhookURL}, &out)
	return out, err
}

// List calls GET /svc/partner/v1/partners.
func (c *Client) List(ctx context.Context) ([]Partner, error) {
	var out listResponse[Partner]
	err := c.c.Call(ctx, http.MethodGet, Prefix+"partners", nil, &out)
	return out.Items, err
}

// Authenticate calls POST /svc/partner/v1/authenticate (it changes nothing,
// so it may be retried).
func (c *Client) Authenticate(ctx context.Context, key string) (Partner, error) {
	var out Partner
	err := c.c.Call(ctx, http.MethodPost, Prefix+"authenticate", authRequest{Key: key}, &out, httpx.Retryable())
	return out, err
}

// CreateProduct calls POST /svc/partner/v1/partners/{pid}/products.
func (c *Client) CreateProduct(ctx context.Context, partnerID string, p NewProduct) (Product, error) {
	var out Product
	err := c.c.Call(ctx, http.MethodPost, partnerPath(partnerID, "products"), p, &out)
	return out, err
}

// SetImage calls PUT /svc/partner/v1/partners/{pid}/products/{id}/image.
func (c *Client) SetImage(ctx context.Context, partnerID, listingID string, image []byte) (Product, error) {
	var out Product
	err := c.c.Call(ctx, http.MethodPut, partnerPath(partnerID, "products", listingID, "image"), imageRequest{Image: image}, &out)
	return out, err
}

// Products calls GET /svc/partner/v1/partners/{pid}/products.
func (c *Client) Products(ctx context.Context, partnerID string) ([]Product, error) {
	var out listResponse[Product]
	err := c.c.Call(ctx, http.MethodGet, partnerPath(partnerID, "products"), nil, &out)
	return out.Items, err
}

// Sales calls GET /svc/partner/v1/partners/{pid}/sales.
func (c *Client) Sales(ctx context.Context, partnerID string, limit int) (SalesReport, error) {
	var out SalesReport
	err := c.c.Call(ctx, http.MethodGet, partnerPath(partnerID, "sales")+limitQuery(limit), nil, &out)
	return out, err
}

// Webhook calls GET /svc/partner/v1/partners/{pid}/webhook.
func (c *Client) Webhook(ctx context.Context, partnerID string) (Webhook, error) {
	var out Webhook
	err := c.c.Call(ctx, http.MethodGet, partnerPath(partnerID, "webhook"), nil, &out)
	return out, err
}

// SetWebhook calls PUT /svc/partner/v1/partners/{pid}/webhook. A retry
// makes another secret; the one returned is the one stored last.
func (c *Client) SetWebhook(ctx context.Context, partnerID, u string) (Webhook, error) {
	var out Webhook
	err := c.c.Call(ctx, http.MethodPut, partnerPath(partnerID, "webhook"), webhookRequest{URL: u}, &out)
	return out, err
}

// Deliveries calls GET /svc/partner/v1/partners/{pid}/deliveries.
func (c *Client) Deliveries(ctx context.Context, partnerID string, limit int) ([]Delivery, error) {
	var out listResponse[Delivery]
	err := c.c.Call(ctx, http.MethodGet, partnerPath(partnerID, "deliveries")+limitQuery(limit), nil, &out)
	return out.Items, err
}

// Dispatch calls GET /svc/partner/v1/deliveries/{id}/dispatch.
func (c *Client) Dispatch(ctx context.Context, deliveryID string) (Dispatch, error) {
	var out Dispatch
	err := c.c.Call(ctx, http.MethodGet, httpx.Path(Prefix+"deliveries", deliveryID, "dispatch"), nil, &out)
	return out, err
}

// RecordAttempt calls POST /svc/partner/v1/deliveries/{id}/attempts.
func (c *Client) RecordAttempt(ctx context.Context, deliveryID string, a Attempt) (Delivery, error) {
	var out Delivery
	err := c.c.Call(ctx, http.MethodPost, httpx.Path(Prefix+"deliveries", deliveryID, "attempts"), a, &out)
	return out, err
}
