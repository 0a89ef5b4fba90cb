package partner

import (
	"context"
	"time"
)

// PartnerRecord is a partner as the store keeps it: with the hash of its API
// key and its webhook signing secret.
type PartnerRecord struct {
	Partner
	KeyHash       string
	WebhookSecret string
}

// ProductRecord is a partner's product as the store keeps it: with its
// owner, the catalog's thumbnail blob keys, and since when it is being
// listed (status ProductListing).
type ProductRecord struct {
	Product
	PartnerID     string
	ThumbnailKeys map[string]string
	ListingSince  time.Time
}

// SaleRecord is a sale as the store keeps it.
type SaleRecord struct {
	Sale
	PartnerID string
}

// Store keeps partners, their products, sales and the delivery log;
// partnerdb.Store is the SQL one. NotFound errors are errs.NotFound.
type Store interface {
	// CreatePartner inserts p; errs.Conflict for a taken id or key hash.
	CreatePartner(ctx context.Context, p PartnerRecord) error
	// Partners lists every partner, oldest first.
	Partners(ctx context.Context) ([]Partner, error)
	// Partner returns one partner; errs.NotFound.
	Partner(ctx context.Context, id string) (PartnerRecord, error)
	// PartnerByKeyHash returns the partner whose key has this hash;
	// errs.NotFound.
	PartnerByKeyHash(ctx context.Context, hash string) (Partner, error)
	// SetWebhook sets a partner's webhook URL and secret; errs.NotFound.
	SetWebhook(ctx context.Context, partnerID, url, secret string) error

	// CreateProduct inserts a product; errs.Conflict for a taken id.
	CreateProduct(ctx context.Context, p ProductRecord) error
	// Product returns a partner's product by its listing id; errs.NotFound
	// also when it is another partner's.
	Product(ctx context.Context, partnerID, listingID string) (ProductRecord, error)
	// Products lists a partner's products, newest first, at most limit.
	Products(ctx context.Context, partnerID string, limit int) ([]ProductRecord, error)
	// UpdateProduct changes a partner's product in one transaction (the row
	// locked): fn gets the product as stored and changes it; its error
	// aborts. It returns the product as changed. errs.NotFound.
	UpdateProduct(ctx context.Context, partnerID, listingID string, fn func(*ProductRecord) error) (ProductRecord, error)

	// Apply runs fn in one transaction with the inbox record of consumer
	// ConsumerName's message msgID: fresh = false (fn not run) when the
	// message was applied before.
	Apply(ctx context.Context, msgID string, now time.Time, fn func(tx Tx) error) (fresh bool, err error)

	// Sales lists a partner's sales, newest first, at most limit, and the
	// totals of all its sales.
	Sales(ctx context.Context, partnerID string, limit int) (sales []Sale, units int, revenue int64, err error)
	// Deliveries lists a partner's delivery log, newest first, at most
	// limit.
	Deliveries(ctx context.Context, partnerID string, limit int) ([]Delivery, error)
	// Delivery returns one delivery; errs.NotFound.
	Delivery(ctx context.Context, id string) (Delivery, error)
	// UpdateDelivery changes a delivery in one transaction (the row locked):
	// fn gets it as stored and changes it; its error aborts. errs.NotFound.
	UpdateDelivery(ctx context.Context, id string, fn func(*Delivery) error) (Delivery, error)
	// Forget deletes inbox records of messages applied before cutoff.
	Forget(ctx context.Context, cutoff time.Time) error
}

// Tx is what an event's effect may do inside Store.Apply's transaction.
type Tx interface {
	// ProductsByCatalogID returns the partners' products among the catalog
	// product ids (a product not owned by a partner is left out).
	ProductsByCatalogID(ctx context.Context, productIDs []string) ([]ProductRecord, error)
	// ListingInFlight reports whether a product has been being listed
	// (status ProductListing) since after since.
	ListingInFlight(ctx context.Context, since time.Time) (bool, error)
	// SetThumbnails records a product's thumbnail keys and makes it ready.
	SetThumbnails(ctx context.Context, listingID string, keys map[string]string) error
	// Partner returns one partner; errs.NotFound.
	Partner(ctx context.Context, id string) (PartnerRecord, error)
	// AddSale records a sale; a sale of the same order and product
	// recorded before is left as it is.
	AddSale(ctx context.Context, s SaleRecord) error
	// AddDelivery adds d to the delivery log and, when job is not nil,
	// writes the webhook job (job id: the delivery id) to the outbox.
	AddDelivery(ctx context.Context, d Delivery, job *WebhookRequested) error
}
