// Package partner is the partner integration service: partners (sellers
// with an API key) list items in the shop's catalog, see their stock and
// sales, and receive webhooks, signed with a secret of their own, when one
// of their items is ready (its thumbnails are made) and when one sells.
//
// The service consumes the catalog's ThumbnailsReady and the order service's
// OrderPlaced events (Service.Handle, idempotent through the store's inbox),
// records sales and a row in the delivery log per webhook, and enqueues a
// WebhookRequested job for each through its outbox, in the same transaction.
// The webhooks worker (internal/worker/webhooks) takes the jobs, loads the
// delivery (Dispatch), POSTs it and records the attempt (RecordAttempt),
// which decides whether the delivery is done, refused, retried or failed.
package partner

import (
	"context"
	"encoding/json"
	"time"

	"github.com/globomantics/globomantics/internal/platform/money"
)

// SubjectWebhookJob is the subject of the webhook jobs (WebhookRequested),
// on the work-queue stream GLOBO_JOBS: each job goes to one worker.
const SubjectWebhookJob = "globo_jobs.webhook"

// Subjects the partner service consumes: the catalog's ThumbnailsReady and
// the order service's OrderPlaced (spelled here, not imported, so that the
// service depends on the events' contracts only, as decoded below).
const (
	SubjectThumbnailsReady = "globo.catalog.thumbnails_ready"
	SubjectOrderPlaced     = "globo.order.placed"
)

// Subjects are the events the partner consumer subscribes to.
var Subjects = []string{SubjectThumbnailsReady, SubjectOrderPlaced}

// ConsumerName is the durable consumer every partner instance shares (they
// share one database, whose inbox makes a redelivery change nothing).
const ConsumerName = "partner"

// WorkerConsumerName is the durable consumer the webhooks workers share on
// SubjectWebhookJob: each job goes to one of them.
const WorkerConsumerName = "webhooks"

// Webhook event types.
const (
	EventItemReady = "item.ready"
	EventItemSold  = "item.sold"
)

// Delivery statuses. A delivery is pending until a worker's attempt ends
// it: delivered (2xx), refused (4xx: the receiver does not want it, it is
// not retried) or failed (MaxAttempts attempts timed out, failed to connect
// or got 5xx, or the partner has no webhook URL).
const (
	StatusPending   = "pending"
	StatusDelivered = "delivered"
	StatusRefused   = "refused"
	StatusFailed    = "failed"
)

// Product statuses: a product is listed in the catalog once its image is
// uploaded (the catalog has no product without an image), and ready once
// the catalog made its thumbnails.
const (
	ProductAwaitingImage = "awaiting_image"
	ProductListing       = "listing" // its image is being listed right now
	ProductListed        = "listed"
	ProductReady         = "ready"
)

// Partner is a seller with an API key. Its key and webhook secret are never
// part of it: the key is shown once by Create, the secret once by
// SetWebhook.
type Partner struct {
	ID         string    `json:"id"`
	Name       string    `json:"name"`
	WebhookURL string    `json:"webhook_url"`
	CreatedAt  time.Time `json:"created_at"`
}

// Created is a partner just made, with its API key in clear: the only time
// the key is seen (only its hash is kept), and, when it was made with a
// webhook URL, the secret its webhooks are signed with.
type Created struct {
	Partner       Partner `json:"partner"`
	Key           string  `json:"key"`
	WebhookSecret string  `json:"webhook_secret,omitempty"`
}

// NewProduct is an item a partner lists. Its image comes afterwards
// (SetImage), which lists it in the catalog.
type NewProduct struct {
	Name        string      `json:"name"`
	Description string      `json:"description"`
	Category    string      `json:"category"` // a catalog category id
	Price       money.Money `json:"price"`
	Stock       int         `json:"stock"`
}

// Product is a partner's item: ID is the partner's handle of it (stable
// from creation), ProductID the catalog's product id once it is listed.
// Stock is the catalog's live stock when known (listed products), else the
// stock it will be listed with.
type Product struct {
	ID          string            `json:"id"`
	ProductID   string            `json:"product_id,omitempty"`
	Status      string            `json:"status"`
	Name        string            `json:"name"`
	Description string            `json:"description"`
	Category    string            `json:"category"`
	Price       money.Money       `json:"price"`
	Stock       int               `json:"stock"`
	Thumbnails  map[string]string `json:"thumbnails,omitempty"` // URLs, once ready
	CreatedAt   time.Time         `json:"created_at"`
}

// Sale is a quantity of a partner's product sold in one order.
type Sale struct {
	OrderID   string      `json:"order_id"`
	ProductID string      `json:"product_id"`
	ListingID string      `json:"listing_id"`
	Quantity  int         `json:"quantity"`
	Amount    money.Money `json:"amount"`
	SoldAt    time.Time   `json:"sold_at"`
}

// SalesReport is a partner's sales, newest first, and their totals.
type SalesReport struct {
	Sales    []Sale      `json:"sales"`
	Units    int         `json:"units"`
	Revenue  money.Money `json:"revenue"`
	Complete bool        `json:"complete"` // false when Sales was cut at the limit
}

// Webhook is a partner's webhook endpoint. Secret is set only in
// SetWebhook's answer: the one time the partner sees it.
type Webhook struct {
	URL    string `json:"url"`
	Secret string `json:"secret,omitempty"`
}

// Delivery is one webhook in the delivery log.
type Delivery struct {
	ID             string          `json:"id"`
	PartnerID      string          `json:"partner_id"`
	EventType      string          `json:"event_type"`
	Payload        json.RawMessage `json:"payload"` // the body POSTed
	Status         string          `json:"status"`
	Attempts       int             `json:"attempts"`
	LastStatusCode int             `json:"last_status_code,omitempty"`
	LastError      string          `json:"last_error,omitempty"`
	LastDurationMS int64           `json:"last_duration_ms,omitempty"`
	NextAttemptAt  *time.Time      `json:"next_attempt_at,omitempty"`
	CreatedAt      time.Time       `json:"created_at"`
	UpdatedAt      time.Time       `json:"updated_at"`
}

// Dispatch is what a worker needs to send a delivery: the delivery, where
// to and the secret to sign it with.
type Dispatch struct {
	Delivery Delivery `json:"delivery"`
	URL      string   `json:"url"`
	Secret   string   `json:"secret"`
}

// Attempt is the outcome of one POST of a delivery: the receiver's status
// code (0 when there was no answer) or the error, and how long it took.
type Attempt struct {
	StatusCode int           `json:"status_code"`
	Error      string        `json:"error,omitempty"`
	Duration   time.Duration `json:"duration"`
}

// WebhookRequested is the payload of SubjectWebhookJob (contract
// globo_jobs.webhook v1). Its job id is the delivery id.
type WebhookRequested struct {
	DeliveryID  string    `json:"delivery_id"`
	PartnerID   string    `json:"partner_id"`
	EventType   string    `json:"event_type"`
	RequestedAt time.Time `json:"requested_at"`
}

// WebhookBody is the JSON body of every webhook: the delivery id (also in
// the Globo-Webhook-Id header), the event type, when it happened, and the
// event's data (ItemReadyData or ItemSoldData).
type WebhookBody struct {
	ID         string    `json:"id"`
	Type       string    `json:"type"`
	OccurredAt time.Time `json:"occurred_at"`
	Data       any       `json:"data"`
}

// ItemReadyData is the data of an item.ready webhook.
type ItemReadyData struct {
	ListingID  string            `json:"listing_id"`
	ProductID  string            `json:"product_id"`
	Name       string            `json:"name"`
	Thumbnails map[string]string `json:"thumbnails"` // URL paths by size
}

// ItemSoldData is the data of an item.sold webhook: the partner's lines of
// one order.
type ItemSoldData struct {
	OrderID string     `json:"order_id"`
	Lines   []SoldLine `json:"lines"`
}

// SoldLine is one of a partner's products in an order.
type SoldLine struct {
	ListingID string      `json:"listing_id"`
	ProductID string      `json:"product_id"`
	Quantity  int         `json:"quantity"`
	Amount    money.Money `json:"amount"`
}

// ThumbnailsReadyEvent is how the partner service decodes the catalog's
// ThumbnailsReady (contract catalog.thumbnails_ready v1).
type ThumbnailsReadyEvent struct {
	ProductID  string            `json:"product_id"`
	Thumbnails map[string]string `json:"thumbnails"`
	ReadyAt    time.Time         `json:"ready_at"`
}

// OrderPlacedEvent is how the partner service decodes the order service's
// OrderPlaced (contract order.placed v1): the fields it reads.
type OrderPlacedEvent struct {
	Order struct {
		ID    string `json:"id"`
		Items []struct {
			ProductID string      `json:"product_id"`
			Quantity  int         `json:"quantity"`
			LineTotal money.Money `json:"line_total"`
		} `json:"items"`
		UpdatedAt time.Time `json:"updated_at"`
	} `json:"order"`
}

// API is the partner service, in process (*Service) or over HTTP (*Client).
//
//   - Create: a partner named name (1 to 100 characters) with an optional
//     webhook URL; returns its API key once. errs.Invalid.
//   - List: every partner, oldest first.
//   - Authenticate: the partner whose key this is; errs.Unauthorized.
//   - CreateProduct: a product awaiting its image; errs.Invalid for an
//     empty name, a price not positive, a negative stock, an unknown
//     category.
//   - SetImage: lists a product awaiting its image in the catalog with
//     image (PNG or JPEG); errs.NotFound for another partner's product;
//     errs.Conflict for one already listed (the catalog has no image
//     replacement yet) or being listed; the catalog's errs.Invalid.
//   - Products: the partner's products, newest first, with live stock.
//   - Sales: the partner's sales, newest first, at most limit.
//   - Webhook, SetWebhook: the endpoint; SetWebhook makes a new secret and
//     returns it (the only time); errs.Invalid for a URL that is not an
//     absolute http(s) URL.
//   - Deliveries: the partner's delivery log, newest first, at most limit.
//   - Dispatch, RecordAttempt: the webhooks worker's side (see Service).
type API interface {
	Create(ctx context.Context, name, webhookURL string) (Created, error)
	List(ctx context.Context) ([]Partner, error)
	Authenticate(ctx context.Context, key string) (Partner, error)
	CreateProduct(ctx context.Context, partnerID string, p NewProduct) (Product, error)
	SetImage(ctx context.Context, partnerID, listingID string, image []byte) (Product, error)
	Products(ctx context.Context, partnerID string) ([]Product, error)
	Sales(ctx context.Context, partnerID string, limit int) (SalesReport, error)
	Webhook(ctx context.Context, partnerID string) (Webhook, error)
	SetWebhook(ctx context.Context, partnerID, url string) (Webhook, error)
	Deliveries(ctx context.Context, partnerID string, limit int) ([]Delivery, error)
	Dispatch(ctx context.Context, deliveryID string) (Dispatch, error)
	RecordAttempt(ctx context.Context, deliveryID string, a Attempt) (Delivery, error)
}

// Limits of the API.
const (
	MaxNameLen        = 100
	MaxURLLen         = 2000
	MaxListLimit      = 500
	DefaultListLimit  = 100
	MaxProducts       = 1000    // listed by Products at most
	MaxImageBytes     = 8 << 20 // the catalog's limit (catalog.MaxImageBytes)
	DefaultMaxAttempt = 12
)
