// Package catalog is the catalog service: categories, products and stock. It
// owns the product tables and the product images in the blob store, and emits
// an ItemListed event whenever a new item is listed.
package catalog

import (
	"context"
	"time"

	"github.com/globomantics/globomantics/internal/platform/money"
	"github.com/globomantics/globomantics/internal/platform/page"
)

// Category groups products.
type Category struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// Product is an item for sale. ImageURL and Thumbnails are URLs under /media/
// (the CDN path of the front end); Thumbnails is empty until the thumbnail
// worker has made them ("small", "medium", "large"). Version counts the changes made
// by UpdateProduct (1 when listed): it is the product's ETag ("v<version>")
// for If-Match; stock taken or put back by reservations does not change it.
// ListedAt is when the item was listed (for "newest first").
type Product struct {
	ID          string            `json:"id"`
	Name        string            `json:"name"`
	Description string            `json:"description"`
	Category    string            `json:"category"`
	Price       money.Money       `json:"price"`
	Stock       int               `json:"stock"`
	ImageURL    string            `json:"image_url"`
	Thumbnails  map[string]string `json:"thumbnails,omitempty"`
	Version     int64             `json:"version"`
	ListedAt    time.Time         `json:"listed_at"`
}

// MediaPrefix is the URL path under which blob keys are served.
const MediaPrefix = "/media/"

// ProductFilter selects a page of products, optionally of one category (by id).
type ProductFilter struct {
	Category string
	Page     page.Request
}

// ProductPage is one page of products.
type ProductPage struct {
	Items         []Product `json:"items"`
	NextPageToken string    `json:"next_page_token"`
}

// NewItem is a new item to list. Image is the original image, PNG or JPEG.
type NewItem struct {
	Name        string      `json:"name"`
	Description string      `json:"description"`
	Category    string      `json:"category"` // category id
	Price       money.Money `json:"price"`
	Stock       int         `json:"stock"`
	Image       []byte      `json:"image"` // base64 in JSON
}

// ProductChange is a partial update of a product (the body of PATCH
// products/{id}): a nil field is left as it is. Stock is the number of units
// on the shelf that reservations may take, as Product.Stock shows it (units
// held by live reservations were taken out of it already, so any stock from
// 0 up is consistent with them). IfVersion, when not 0, is the version the
// change was made against (the If-Match header over HTTP): the change is
// refused with errs.Conflict if the product is at another version.
type ProductChange struct {
	Name        *string      `json:"name,omitempty"`
	Description *string      `json:"description,omitempty"`
	Category    *string      `json:"category,omitempty"` // category id
	Price       *money.Money `json:"price,omitempty"`
	Stock       *int         `json:"stock,omitempty"`
	IfVersion   int64        `json:"-"`
}

// The names of the fields a ProductChanged event lists as changed.
const (
	FieldName        = "name"
	FieldDescription = "description"
	FieldCategory    = "category"
	FieldPrice       = "price"
	FieldStock       = "stock"
)

// Line is a quantity of one product, as reserved by checkout.
type Line struct {
	ProductID string `json:"product_id"`
	Quantity  int    `json:"quantity"`
}

// SubjectItemListed is the subject of ItemListed events.
const SubjectItemListed = "globo.catalog.item_listed"

// ItemListed is published after a new item is listed. ImageKey is the blob
// key of the original image, from which the thumbnail worker makes thumbnails.
// ListedAt is when it was listed (zero in events written before it existed).
type ItemListed struct {
	ProductID   string      `json:"product_id"`
	Name        string      `json:"name"`
	Description string      `json:"description"`
	Category    string      `json:"category"`
	Price       money.Money `json:"price"`
	ImageKey    string      `json:"image_key"`
	ListedAt    time.Time   `json:"listed_at"`
}

// SubjectThumbnailRequested is the subject of ThumbnailRequested jobs, on
// the work-queue stream GLOBO_JOBS (bus.JobSubjectPrefix): each job goes to
// one thumbnail worker.
const SubjectThumbnailRequested = "globo_jobs.thumbnail"

// ThumbnailRequested is the job of making a product's thumbnails from its
// original image, enqueued (through the outbox) in the transaction that
// lists the item. Sizes names the sizes wanted; empty means every size the
// worker makes. Its job id is "<product id>/thumbnails/<image key>", so
// that a job for the same image is enqueued once.
type ThumbnailRequested struct {
	ProductID   string    `json:"product_id"`
	ImageKey    string    `json:"image_key"`
	Sizes       []string  `json:"sizes,omitempty"`
	RequestedAt time.Time `json:"requested_at"`
}

// ThumbnailJobID is the job id of the ThumbnailRequested of a product's
// image.
func ThumbnailJobID(productID, imageKey string) string {
	return productID + "/thumbnails/" + imageKey
}

// SubjectProductChanged is the subject of ProductChanged events.
const SubjectProductChanged = "globo.catalog.product_changed"

// ProductChanged is published after UpdateProduct changed a product. It
// carries the product's fields as they are after the change (so a consumer
// such as the search index can rewrite its copy from it alone, as from
// ItemListed, whose field names it shares), which of them changed, the
// product's new version (a consumer can ignore an event older than what it
// has) and when the change was made. Its event id is "<product id>/v<version>".
type ProductChanged struct {
	ProductID   string      `json:"product_id"`
	Version     int64       `json:"version"`
	Changed     []string    `json:"changed"`
	Name        string      `json:"name"`
	Description string      `json:"description"`
	Category    string      `json:"category"`
	Price       money.Money `json:"price"`
	Stock       int         `json:"stock"`
	ChangedAt   time.Time   `json:"changed_at"`
	ListedAt    time.Time   `json:"listed_at"` // when the product was listed (zero in older events)
}

// SubjectThumbnailsReady is the subject of ThumbnailsReady events.
const SubjectThumbnailsReady = "globo.catalog.thumbnails_ready"

// ThumbnailsReady is published when SetThumbnails gave a product thumbnails
// other than those it had (the item is ready to be shown): their blob keys
// by size name, and when they were set. Its event id is
// "<product id>/thumbnails/<ready_at in Unix milliseconds>".
type ThumbnailsReady struct {
	ProductID  string            `json:"product_id"`
	Thumbnails map[string]string `json:"thumbnails"`
	ReadyAt    time.Time         `json:"ready_at"`
}

// API is the catalog service's contract, met by *Service in process and by
// *Client over HTTP.
//
//   - ListProducts: products in a stable order (by id), keyset-paginated
//     (products listed meanwhile never make a walk skip or repeat one); an
//     unknown category gives an empty page; errs.BadRequest for a page token
//     of another list (another category, say).
//   - GetProduct: errs.NotFound.
//   - GetProducts: the products that exist among ids, in the order of ids;
//     unknown ids are left out.
//   - ListItem: errs.Invalid for an empty name, a non-positive price, a
//     negative stock, an unknown category or an image that is not PNG/JPEG.
//     Stores the image in the blob store, then publishes ItemListed.
//   - UpdateProduct: applies a ProductChange, with its ProductChanged event
//     in the same transaction, and returns the product as changed (the
//     version one higher; a change that changes nothing is a no-op that
//     keeps the version and publishes nothing). Every field is validated as
//     ListItem validates it: errs.Invalid for an empty change, an empty
//     name, a price that is not positive, a negative stock, an unknown
//     category; errs.NotFound; errs.Conflict when IfVersion is set and the
//     product is at another version. Every instance's product cache drops
//     the old copy: this one at once, the others when the event reaches them.
//   - SetThumbnails: records thumbnail blob keys by size name; errs.NotFound.
//   - SetThumbnailsFailed: marks the product's thumbnails as failed for
//     good, with the reason (the original is not an image, or too large);
//     errs.Invalid for an empty reason, errs.NotFound.
//   - ThumbnailFailure: the failure recorded by SetThumbnailsFailed, or a
//     zero ThumbnailFailure when there is none (or thumbnails were made
//     since); errs.NotFound.
//   - ReserveStock: takes the quantities out of stock, all or nothing, once
//     per reservation id (a repeat with the same id is a no-op, whatever
//     became of the reservation); stock never goes negative, however many
//     reservations race for the last units. The reservation holds the stock
//     until now+hold on the server's clock (hold <= 0 means DefaultHold,
//     longer than MaxHold is cut to MaxHold), after which the sweeper
//     (ReleaseExpired) puts it back unless it was committed. errs.Conflict
//     naming a product when stock is short; errs.NotFound for an unknown
//     product; errs.Invalid for a quantity below 1.
//   - CommitStock: makes a live reservation final (the stock is sold), once;
//     committing a committed one is a no-op. errs.Conflict when it was
//     released or has expired ("the reservation has expired"), and for an
//     unknown reservation (nothing is recorded).
//   - ReleaseStock: puts a reservation's quantities back, once; releasing an
//     already released (or expired) reservation is a no-op, and releasing an
//     unknown one records it as released, so that a ReserveStock with its id
//     arriving later takes nothing. A committed reservation is released
//     too (the sale undone, by a checkout rolling back before its pivot);
//     it can then no longer be committed.
//   - StockLevels: every product's stock, live reservations and sales, from
//     one consistent read: Stock + Reserved + Sold is the stock the product
//     was listed with, or, after UpdateProduct set its stock, the stock set
//     plus the units reserved or sold at that time.
type API interface {
	ListCategories(ctx context.Context) ([]Category, error)
	ListProducts(ctx context.Context, f ProductFilter) (ProductPage, error)
	GetProduct(ctx context.Context, id string) (Product, error)
	GetProducts(ctx context.Context, ids []string) ([]Product, error)
	ListItem(ctx context.Context, item NewItem) (Product, error)
	UpdateProduct(ctx context.Context, id string, ch ProductChange) (Product, error)
	SetThumbnails(ctx context.Context, id string, keys map[string]string) error
	SetThumbnailsFailed(ctx context.Context, id, reason string) error
	ThumbnailFailure(ctx context.Context, id string) (ThumbnailFailure, error)
	ReserveStock(ctx context.Context, reservationID string, lines []Line, hold time.Duration) error
	CommitStock(ctx context.Context, reservationID string) error
	ReleaseStock(ctx context.Context, reservationID string) error
	StockLevels(ctx context.Context) ([]StockLevel, error)
}

// How long a reservation holds its stock when ReserveStock is not told, and
// at most.
const (
	DefaultHold = 15 * time.Minute
	MaxHold     = 24 * time.Hour
)

// StockLevel is the stock audit of one product: Stock units on the shelf,
// Reserved by live reservations (neither committed, released nor expired and
// swept), and Sold by committed ones not released since.
type StockLevel struct {
	ProductID string `json:"product_id"`
	Stock     int    `json:"stock"`
	Reserved  int    `json:"reserved"`
	Sold      int    `json:"sold"`
}
