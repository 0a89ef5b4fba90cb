// Package analytics summarises what visitors do: the storefront counts the
// product pages it serves and the searches it answers in memory (Emitter)
// and publishes, once a second, one summary of each (PageViewsCounted,
// SearchesCounted) on the buffered analytics stream; the analytics service
// consumes them (Service.Handle), idempotently, into hourly counts (views
// per product, searches and searches with no result per normalised query),
// and answers what is popular now and what people search for (the API, over
// HTTP with NewHandler and Client). It still accepts the per-event messages
// (PageViewed, SearchMade) that storefronts before the summaries published,
// for one version, so that a rolling upgrade loses nothing.
//
// These counts may be lost (a crash loses the window being counted, a
// broker down loses the summaries it refuses, a power failure before the
// stream's fsync): the counts are a guide, never a ledger.
//
// It also counts revenue: the payment service's PaymentCaptured events
// (the synced GLOBO stream, published through its outbox, so none is lost)
// are added, once each, to the captured amount and the number of payments
// captured per hour (Revenue). Refunds are not subtracted: the payment
// ledger's audit is the account of money kept.
package analytics

import (
	"context"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/globomantics/globomantics/internal/platform/money"
)

// Subjects of the analytics events, on the GLOBO_ANALYTICS stream (see
// bus.Streams), not the synced GLOBO stream: their contracts are in
// internal/contracts.
//
// The summaries are new subjects rather than v2 of the per-event ones: a
// summary is another fact (what one storefront counted in a window), not a
// page view with a new shape, and a consumer of page views could not read
// it as one. The per-event subjects are deprecated: no storefront of this
// version publishes them, the consumer still counts them for one version.
const (
	SubjectPageViewsCounted = "globo_analytics.page_views_counted"
	SubjectSearchesCounted  = "globo_analytics.searches_counted"
	// The per-event subjects, published by storefronts before the
	// summaries: no longer produced, still counted until the next version
	// (not marked Deprecated: the consumer and its tests must name them).
	SubjectPageViewed = "globo_analytics.page_viewed"
	SubjectSearchMade = "globo_analytics.search_made"
)

// Subjects are the subjects the analytics consumer subscribes to.
var Subjects = []string{SubjectPageViewsCounted, SubjectSearchesCounted, SubjectPageViewed, SubjectSearchMade}

// ConsumerName is the durable consumer every analytics instance shares: the
// instances share one database, so each event is counted by one of them.
const ConsumerName = "analytics"

// SubjectPaymentCaptured is the payment service's event of a capture, on
// the GLOBO stream (contract in internal/contracts).
const SubjectPaymentCaptured = "globo.payment.captured"

// PaymentSubjects are the subjects of PaymentsConsumerName. They are on
// another stream than Subjects, so they need a consumer of their own.
var PaymentSubjects = []string{SubjectPaymentCaptured}

// PaymentsConsumerName is the durable consumer of PaymentSubjects that
// every analytics instance shares (and the inbox's name for what it
// applied).
const PaymentsConsumerName = "analytics-payments"

// PaymentCaptured is what the analytics consumer reads of a
// SubjectPaymentCaptured payload: the amount taken and when. The message
// id (the payment service's "<order id>/captured") makes it count once.
type PaymentCaptured struct {
	OrderID    string      `json:"order_id"`
	Amount     money.Money `json:"amount"`
	CapturedAt time.Time   `json:"captured_at"`
}

// HourlyRevenue is what was captured in one hour, in one currency: the sum
// of the amounts and how many payments.
type HourlyRevenue struct {
	Hour     time.Time   `json:"hour"`
	Captured money.Money `json:"captured"`
	Payments int64       `json:"payments"`
}

// RevenueReport is the revenue of a window, hour by hour, newest first;
// hours with no capture are left out.
type RevenueReport struct {
	Window string          `json:"window"`
	Hours  []HourlyRevenue `json:"hours"`
}

// PageViewsCounted is the payload of SubjectPageViewsCounted: the product
// pages storefront instance Instance served from WindowStart (inclusive) to
// WindowEnd (exclusive), counted per product. The message id is made of the
// instance and the window (SummaryID), so a summary is counted once however
// often it is delivered. A window's counts may be split over several
// messages (Part) to keep each small. Dropped is how many views were not
// counted because the window already had MaxKeys distinct products (the
// first part carries it).
type PageViewsCounted struct {
	Instance    string         `json:"instance"`
	WindowStart time.Time      `json:"window_start"`
	WindowEnd   time.Time      `json:"window_end"`
	Part        int            `json:"part,omitempty"`
	Counts      []ProductViews `json:"counts"`
	Dropped     int64          `json:"dropped,omitempty"`
}

// SearchCount is how often a normalised query was searched in a window, and
// how many of those searches found nothing.
type SearchCount struct {
	Query    string `json:"query"`
	Searches int64  `json:"searches"`
	NoResult int64  `json:"no_result"`
}

// SearchesCounted is the payload of SubjectSearchesCounted: the searches a
// storefront instance answered in a window, per normalised query, as
// PageViewsCounted.
type SearchesCounted struct {
	Instance    string        `json:"instance"`
	WindowStart time.Time     `json:"window_start"`
	WindowEnd   time.Time     `json:"window_end"`
	Part        int           `json:"part,omitempty"`
	Counts      []SearchCount `json:"counts"`
	Dropped     int64         `json:"dropped,omitempty"`
}

// SummaryID is the message id of part part of the summary of kind ("pv" or
// "sq") that instance counted in the window starting at start: the same
// window always gets the same id, which is what makes applying it
// idempotent (the bus's de-duplication and the consumer's inbox).
func SummaryID(kind, instance string, start time.Time, part int) string {
	return kind + "_" + instance + "_" + strconv.FormatInt(start.UnixNano(), 36) + "_" + strconv.Itoa(part)
}

// PageViewed is the payload of SubjectPageViewed (deprecated): a product
// page was served.
type PageViewed struct {
	ProductID string    `json:"product_id"`
	ViewedAt  time.Time `json:"viewed_at"`
}

// SearchMade is the payload of SubjectSearchMade (deprecated): a search was
// answered.
// Query is normalised (NormalizeQuery); Results is how many products the
// first page showed (0: a search with no result).
type SearchMade struct {
	Query      string    `json:"query"`
	Results    int       `json:"results"`
	SearchedAt time.Time `json:"searched_at"`
}

// MaxQueryLen is the longest normalised query kept, in runes.
const MaxQueryLen = 100

// NormalizeQuery folds a search query to the form it is counted under:
// lower case, every run of white space one space, no leading or trailing
// space, at most MaxQueryLen runes, invalid UTF-8 dropped.
func NormalizeQuery(q string) string {
	q = strings.ToValidUTF8(q, "")
	var b strings.Builder
	n := 0
	space := false
	for _, r := range strings.TrimSpace(q) {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			space = true
			continue
		}
		if space && b.Len() > 0 {
			if n++; n > MaxQueryLen {
				break
			}
			b.WriteByte(' ')
		}
		space = false
		if n++; n > MaxQueryLen {
			break
		}
		b.WriteRune(unicode.ToLower(r))
	}
	out := strings.TrimSpace(b.String())
	if !utf8.ValidString(out) {
		return ""
	}
	return out
}

// ProductViews is how often a product's page was seen in a window.
type ProductViews struct {
	ProductID string `json:"product_id"`
	Views     int64  `json:"views"`
}

// QueryCount is how often a normalised query was searched in a window.
type QueryCount struct {
	Query    string `json:"query"`
	Searches int64  `json:"searches"`
}

// SearchReport is the searches of a window: the most frequent, and the most
// frequent that found nothing.
type SearchReport struct {
	Window   string       `json:"window"`
	Top      []QueryCount `json:"top"`
	NoResult []QueryCount `json:"no_result"`
}

// API is the analytics service's read side, in process (Service) or over
// HTTP (Client).
type API interface {
	// Popular lists the most viewed products of the last window (rounded
	// out to whole hours), most viewed first, at most limit.
	Popular(ctx context.Context, window time.Duration, limit int) ([]ProductViews, error)
	// Searches reports the top searches and top searches with no result of
	// the last window, at most limit of each.
	Searches(ctx context.Context, window time.Duration, limit int) (SearchReport, error)
	// PopularProductIDs is Popular's product ids alone.
	PopularProductIDs(ctx context.Context, window time.Duration, limit int) ([]string, error)
	// Revenue reports the payments captured in the last window (rounded
	// out to whole hours), per hour.
	Revenue(ctx context.Context, window time.Duration) (RevenueReport, error)
}

// Store keeps the hourly counts; analyticsdb.Store is the SQL one. Each
// Apply records msgID in the inbox in the transaction that counts the
// event, and returns fresh = false (counting nothing) for an id already
// applied.
type Store interface {
	ApplyPageView(ctx context.Context, msgID string, ev PageViewed, now time.Time) (fresh bool, err error)
	ApplySearch(ctx context.Context, msgID string, ev SearchMade, now time.Time) (fresh bool, err error)
	// ApplyPageViews and ApplySearches add a summary's counts to the hour
	// of its WindowStart, as the per-event Applies.
	ApplyPageViews(ctx context.Context, msgID string, s PageViewsCounted, now time.Time) (fresh bool, err error)
	ApplySearches(ctx context.Context, msgID string, s SearchesCounted, now time.Time) (fresh bool, err error)
	// ApplyPaymentCaptured adds the capture to the revenue of the hour of
	// its CapturedAt, recording msgID under PaymentsConsumerName.
	ApplyPaymentCaptured(ctx context.Context, msgID string, p PaymentCaptured, now time.Time) (fresh bool, err error)
	// The reads count the hours that start at or after since.
	Popular(ctx context.Context, since time.Time, limit int) ([]ProductViews, error)
	TopSearches(ctx context.Context, since time.Time, limit int, noResultOnly bool) ([]QueryCount, error)
	// Revenue lists the hours' revenue, newest first (then by currency).
	Revenue(ctx context.Context, since time.Time) ([]HourlyRevenue, error)
	// Forget deletes counts of hours before countsBefore and inbox records
	// older than inboxBefore.
	Forget(ctx context.Context, countsBefore, inboxBefore time.Time) error
}

// Limits on the reads.
const (
	MaxWindow     = 30 * 24 * time.Hour
	DefaultWindow = 24 * time.Hour
	MaxLimit      = 100
)
