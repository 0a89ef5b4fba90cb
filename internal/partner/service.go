package partner

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/globomantics/globomantics/internal/catalog"
	"github.com/globomantics/globomantics/internal/platform/bus"
	"github.com/globomantics/globomantics/internal/platform/clock"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/ids"
	"github.com/globomantics/globomantics/internal/platform/money"
)

// Catalog is what the partner service needs of the catalog: its categories
// (to check a product's), listing an item, and live stock.
type Catalog interface {
	ListCategories(ctx context.Context) ([]catalog.Category, error)
	ListItem(ctx context.Context, item catalog.NewItem) (catalog.Product, error)
	GetProducts(ctx context.Context, ids []string) ([]catalog.Product, error)
}

var _ Catalog = catalog.API(nil)

// Service is the partner service over a Store and the catalog.
type Service struct {
	store       Store
	cat         Catalog
	kick        func() // wakes the outbox relay
	clock       clock.Clock
	log         *slog.Logger
	maxAttempts int
}

var _ API = (*Service)(nil)

// Option adjusts a Service.
type Option func(*Service)

// WithMaxAttempts sets how many failed attempts (timeouts, connection
// errors, 5xx) make a delivery failed (n > 0; DefaultMaxAttempt).
func WithMaxAttempts(n int) Option {
	return func(s *Service) {
		if n > 0 {
			s.maxAttempts = n
		}
	}
}

// WithLogger sets the service's logger.
func WithLogger(l *slog.Logger) Option {
	return func(s *Service) {
		if l != nil {
			s.log = l
		}
	}
}

// NewService returns the partner service. kick wakes the relay of the
// store's outbox after a webhook job was written (nil: nothing to wake);
// clk nil is the real clock.
func NewService(store Store, cat Catalog, kick func(), clk clock.Clock, opts ...Option) *Service {
	if kick == nil {
		kick = func() {}
	}
	if clk == nil {
		clk = clock.Real{}
	}
	s := &Service{store: store, cat: cat, kick: kick, clock: clk, log: slog.Default(), maxAttempts: DefaultMaxAttempt}
	for _, o := range opts {
		o(s)
	}
	return s
}

// KeyPrefix starts every partner API key, so that a leaked key is
// recognisable (by secret scanners, in logs).
const KeyPrefix = "gpk_"

// HashKey is the hash under which a key is stored. A plain SHA-256 is
// enough, and the right choice: the key is 256 random bits, so unlike a
// password it cannot be guessed from a dictionary, and a slow hash (bcrypt,
// argon2) would only make every API request pay for protection that a
// 256-bit secret does not need. Being deterministic, the hash is also the
// index the key is looked up by.
func HashKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// randomSecret is prefix followed by 32 random bytes, base64url.
func randomSecret(prefix string) string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand never fails on supported platforms
	return prefix + base64.RawURLEncoding.EncodeToString(b)
}

func checkName(op, name string) error {
	if name == "" {
		return errs.E(op, errs.Invalid, errs.Msg("name must not be empty"))
	}
	if utf8.RuneCountInString(name) > MaxNameLen || !utf8.ValidString(name) {
		return errs.E(op, errs.Invalid, errs.Msg("name must be valid UTF-8 of at most %d characters", MaxNameLen))
	}
	return nil
}

// CheckWebhookURL checks that u is an absolute http or https URL without
// credentials, of at most MaxURLLen bytes; "" is allowed (no webhooks).
func CheckWebhookURL(op, u string) error {
	if u == "" {
		return nil
	}
	if len(u) > MaxURLLen {
		return errs.E(op, errs.Invalid, errs.Msg("webhook URL must be at most %d bytes", MaxURLLen))
	}
	p, err := url.Parse(u)
	if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" || p.User != nil || p.Fragment != "" {
		return errs.E(op, errs.Invalid, errs.Msg("webhook URL must be an absolute http or https URL without credentials or fragment"))
	}
	return nil
}

// Create makes a partner and returns its API key (and webhook secret, if
// it has a webhook URL): the only time they are seen.
func (s *Service) Create(ctx context.Context, name, webhookURL string) (Created, error) {
	const op = "partner.Create"
	name = strings.TrimSpace(name)
	webhookURL = strings.TrimSpace(webhookURL)
	if err := checkName(op, name); err != nil {
		return Created{}, err
	}
	if err := CheckWebhookURL(op, webhookURL); err != nil {
		return Created{}, err
	}
	now := s.clock.Now()
	key := randomSecret(KeyPrefix)
	rec := PartnerRecord{
		Partner: Partner{ID: ids.New("ptn", now), Name: name, WebhookURL: webhookURL, CreatedAt: now},
		KeyHash: HashKey(key),
	}
	if webhookURL != "" {
		rec.WebhookSecret = randomSecret(SecretPrefix)
	}
	if err := s.store.CreatePartner(ctx, rec); err != nil {
		return Created{}, errs.E(op, err)
	}
	return Created{Partner: rec.Partner, Key: key, WebhookSecret: rec.WebhookSecret}, nil
}

// SecretPrefix starts every webhook signing secret.
const SecretPrefix = "whsec_"

// List lists every partner, oldest first.
func (s *Service) List(ctx context.Context) ([]Partner, error) {
	out, err := s.store.Partners(ctx)
	if err != nil {
		return nil, errs.E("partner.List", err)
	}
	return nonNil(out), nil
}

// Authenticate returns the partner whose API key key is. errs.Unauthorized
// for a missing or unknown key; the message never says which.
func (s *Service) Authenticate(ctx context.Context, key string) (Partner, error) {
	const op = "partner.Authenticate"
	unauthorized := errs.E(op, errs.Unauthorized, errs.Msg("a valid partner API key is required"))
	if !strings.HasPrefix(key, KeyPrefix) || len(key) > 200 {
		return Partner{}, unauthorized
	}
	p, err := s.store.PartnerByKeyHash(ctx, HashKey(key))
	if errs.Is(errs.NotFound, err) {
		return Partner{}, unauthorized
	}
	if err != nil {
		return Partner{}, errs.E(op, err)
	}
	return p, nil
}

// CreateProduct records a partner's new product, awaiting its image.
func (s *Service) CreateProduct(ctx context.Context, partnerID string, np NewProduct) (Product, error) {
	const op = "partner.CreateProduct"
	np.Name = strings.TrimSpace(np.Name)
	np.Description = strings.TrimSpace(np.Description)
	np.Category = strings.TrimSpace(np.Category)
	if err := checkName(op, np.Name); err != nil {
		return Product{}, err
	}
	switch {
	case len(np.Description) > 5000:
		return Product{}, errs.E(op, errs.Invalid, errs.Msg("description must be at most 5000 bytes"))
	case np.Price.Amount <= 0:
		return Product{}, errs.E(op, errs.Invalid, errs.Msg("price must be positive"))
	case np.Price.Currency != "" && np.Price.Currency != money.Currency:
		return Product{}, errs.E(op, errs.Invalid, errs.Msg("price must be in %s", money.Currency))
	case np.Stock < 0 || np.Stock > 1_000_000:
		return Product{}, errs.E(op, errs.Invalid, errs.Msg("stock must be between 0 and 1000000"))
	case np.Category == "":
		return Product{}, errs.E(op, errs.Invalid, errs.Msg("category must not be empty"))
	}
	cats, err := s.cat.ListCategories(ctx)
	if err != nil {
		return Product{}, errs.E(op, err)
	}
	if !slices.ContainsFunc(cats, func(c catalog.Category) bool { return c.ID == np.Category }) {
		return Product{}, errs.E(op, errs.Invalid, errs.Msg("unknown category %q", np.Category))
	}
	now := s.clock.Now()
	rec := ProductRecord{
		Product: Product{
			ID: ids.New("pl", now), Status: ProductAwaitingImage, Name: np.Name, Description: np.Description,
			Category: np.Category, Price: money.USD(np.Price.Amount), Stock: np.Stock, CreatedAt: now,
		},
		PartnerID: partnerID,
	}
	if err := s.store.CreateProduct(ctx, rec); err != nil {
		return Product{}, errs.E(op, err)
	}
	return rec.Product, nil
}

// listingTimeout is how long a product stays claimed by an image upload
// that lists it; a claim older than this is from an upload that died and
// may be taken over.
const listingTimeout = 2 * time.Minute

// SetImage lists a product awaiting its image in the catalog, with image.
// The product is claimed first (status listing), so that two uploads at
// once list it once: the second gets errs.Conflict.
func (s *Service) SetImage(ctx context.Context, partnerID, listingID string, image []byte) (Product, error) {
	const op = "partner.SetImage"
	if len(image) == 0 {
		return Product{}, errs.E(op, errs.Invalid, errs.Msg("image must not be empty"))
	}
	if len(image) > MaxImageBytes {
		return Product{}, errs.E(op, errs.TooLarge, errs.Msg("image must be at most %d MB", MaxImageBytes>>20))
	}
	now := s.clock.Now()
	rec, err := s.store.UpdateProduct(ctx, partnerID, listingID, func(p *ProductRecord) error {
		switch {
		case p.Status == ProductAwaitingImage:
		case p.Status == ProductListing && now.Sub(p.ListingSince) > listingTimeout:
		case p.Status == ProductListing:
			return errs.E(errs.Conflict, errs.Msg("the product's image is being uploaded"))
		default:
			return errs.E(errs.Conflict, errs.Msg("the product is listed already; its image cannot be replaced"))
		}
		p.Status, p.ListingSince = ProductListing, now
		return nil
	})
	if err != nil {
		return Product{}, errs.E(op, err)
	}
	listed, err := s.cat.ListItem(ctx, catalog.NewItem{
		Name: rec.Name, Description: rec.Description, Category: rec.Category, Price: rec.Price, Stock: rec.Stock, Image: image,
	})
	if err != nil {
		// Back to awaiting its image, for another try.
		if _, uerr := s.store.UpdateProduct(ctx, partnerID, listingID, func(p *ProductRecord) error {
			if p.Status == ProductListing && p.ListingSince.Equal(rec.ListingSince) {
				p.Status, p.ListingSince = ProductAwaitingImage, time.Time{}
			}
			return nil
		}); uerr != nil {
			s.log.Warn("partner product left claimed after a failed listing; it may be retried after the claim expires",
				"listing", listingID, "err", uerr)
		}
		return Product{}, errs.E(op, err)
	}
	rec, err = s.store.UpdateProduct(ctx, partnerID, listingID, func(p *ProductRecord) error {
		p.Status, p.ProductID, p.ListingSince = ProductListed, listed.ID, time.Time{}
		return nil
	})
	if err != nil {
		// The catalog has the product but not its owner: logged with
		// both ids, for the operator.
		s.log.Error("a partner product was listed in the catalog but its ownership was not recorded",
			"listing", listingID, "partner", partnerID, "product", listed.ID, "err", err)
		return Product{}, errs.E(op, err)
	}
	rec.Stock = listed.Stock
	return rec.Product, nil
}

// Products lists a partner's products, newest first, with the catalog's
// live stock for the listed ones.
func (s *Service) Products(ctx context.Context, partnerID string) ([]Product, error) {
	const op = "partner.Products"
	recs, err := s.store.Products(ctx, partnerID, MaxProducts)
	if err != nil {
		return nil, errs.E(op, err)
	}
	var listed []string
	for _, r := range recs {
		if r.ProductID != "" {
			listed = append(listed, r.ProductID)
		}
	}
	stock := map[string]int{}
	if len(listed) > 0 {
		ps, err := s.cat.GetProducts(ctx, listed)
		if err != nil {
			return nil, errs.E(op, err)
		}
		for _, p := range ps {
			stock[p.ID] = p.Stock
		}
	}
	out := make([]Product, 0, len(recs))
	for _, r := range recs {
		p := r.Product
		if n, ok := stock[r.ProductID]; ok {
			p.Stock = n
		}
		p.Thumbnails = thumbnailURLs(r.ThumbnailKeys)
		out = append(out, p)
	}
	return out, nil
}

func thumbnailURLs(keys map[string]string) map[string]string {
	if len(keys) == 0 {
		return nil
	}
	out := make(map[string]string, len(keys))
	for size, k := range keys {
		out[size] = catalog.MediaPrefix + k
	}
	return out
}

func checkLimit(op string, limit int) (int, error) {
	if limit == 0 {
		return DefaultListLimit, nil
	}
	if limit < 0 || limit > MaxListLimit {
		return 0, errs.E(op, errs.BadRequest, errs.Msg("limit must be between 1 and %d", MaxListLimit))
	}
	return limit, nil
}

// Sales reports a partner's sales, newest first, at most limit (0:
// DefaultListLimit), with the totals of all of them.
func (s *Service) Sales(ctx context.Context, partnerID string, limit int) (SalesReport, error) {
	const op = "partner.Sales"
	limit, err := checkLimit(op, limit)
	if err != nil {
		return SalesReport{}, err
	}
	sales, units, revenue, err := s.store.Sales(ctx, partnerID, limit+1)
	if err != nil {
		return SalesReport{}, errs.E(op, err)
	}
	complete := len(sales) <= limit
	if !complete {
		sales = sales[:limit]
	}
	return SalesReport{Sales: nonNil(sales), Units: units, Revenue: money.USD(revenue), Complete: complete}, nil
}

// Webhook returns a partner's webhook endpoint, without its secret.
func (s *Service) Webhook(ctx context.Context, partnerID string) (Webhook, error) {
	p, err := s.store.Partner(ctx, partnerID)
	if err != nil {
		return Webhook{}, errs.E("partner.Webhook", err)
	}
	return Webhook{URL: p.WebhookURL}, nil
}

// SetWebhook sets a partner's webhook URL ("" turns webhooks off) with a
// new signing secret, returned here only.
func (s *Service) SetWebhook(ctx context.Context, partnerID, u string) (Webhook, error) {
	const op = "partner.SetWebhook"
	u = strings.TrimSpace(u)
	if err := CheckWebhookURL(op, u); err != nil {
		return Webhook{}, err
	}
	secret := ""
	if u != "" {
		secret = randomSecret(SecretPrefix)
	}
	if err := s.store.SetWebhook(ctx, partnerID, u, secret); err != nil {
		return Webhook{}, errs.E(op, err)
	}
	return Webhook{URL: u, Secret: secret}, nil
}

// Deliveries lists a partner's delivery log, newest first, at most limit
// (0: DefaultListLimit).
func (s *Service) Deliveries(ctx context.Context, partnerID string, limit int) ([]Delivery, error) {
	const op = "partner.Deliveries"
	limit, err := checkLimit(op, limit)
	if err != nil {
		return nil, err
	}
	out, err := s.store.Deliveries(ctx, partnerID, limit)
	if err != nil {
		return nil, errs.E(op, err)
	}
	return nonNil(out), nil
}

// Dispatch returns a delivery with where to send it and the secret to sign
// it with (the partner's current ones). errs.NotFound.
func (s *Service) Dispatch(ctx context.Context, deliveryID string) (Dispatch, error) {
	const op = "partner.Dispatch"
	d, err := s.store.Delivery(ctx, deliveryID)
	if err != nil {
		return Dispatch{}, errs.E(op, err)
	}
	p, err := s.store.Partner(ctx, d.PartnerID)
	if err != nil {
		return Dispatch{}, errs.E(op, err)
	}
	return Dispatch{Delivery: d, URL: p.WebhookURL, Secret: p.WebhookSecret}, nil
}

// RecordAttempt records the outcome of one POST of a pending delivery and
// returns the delivery as it is then:
//
//   - 2xx: delivered;
//   - 4xx but 408 and 429: refused (the receiver will not take it; it is
//     not sent again);
//   - anything else (no answer, 408, 429, 5xx): pending again, with the
//     time of the next attempt, or failed once MaxAttempts attempts were
//     made.
//
// An attempt at a delivery no longer pending (a late duplicate of a job
// already done) changes nothing. errs.NotFound.
func (s *Service) RecordAttempt(ctx context.Context, deliveryID string, a Attempt) (Delivery, error) {
	const op = "partner.RecordAttempt"
	now := s.clock.Now()
	d, err := s.store.UpdateDelivery(ctx, deliveryID, func(d *Delivery) error {
		if d.Status != StatusPending {
			return nil
		}
		d.Attempts++
		d.LastStatusCode, d.LastError, d.LastDurationMS = a.StatusCode, truncate(a.Error, 500), a.Duration.Milliseconds()
		d.UpdatedAt, d.NextAttemptAt = now, nil
		switch c := a.StatusCode; {
		case c >= 200 && c < 300:
			d.Status, d.LastError = StatusDelivered, ""
		case c >= 400 && c < 500 && c != 408 && c != 429:
			d.Status = StatusRefused
		case d.Attempts >= s.maxAttempts:
			d.Status = StatusFailed
		default:
			next := now.Add(RetryDelay(d.Attempts))
			d.NextAttemptAt = &next
		}
		return nil
	})
	if err != nil {
		return Delivery{}, errs.E(op, err)
	}
	return d, nil
}

// retryDelays mirror the bus's redelivery delays (a failed job is offered
// again after these): NextAttemptAt is when the next attempt is expected.
var retryDelays = []time.Duration{200 * time.Millisecond, time.Second, 2 * time.Second, 5 * time.Second,
	10 * time.Second, 30 * time.Second, time.Minute, 2 * time.Minute, 5 * time.Minute}

// RetryDelay is the expected wait before attempt n+1 after n failed ones.
func RetryDelay(n int) time.Duration {
	return retryDelays[min(max(n, 1), len(retryDelays))-1]
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// Handle is the bus handler of Subjects. Each event is applied once,
// however often it is delivered (its id goes into the store's inbox in the
// transaction of its effect):
//
//   - ThumbnailsReady of a partner's product: the product is ready, and
//     an item.ready webhook is recorded and enqueued;
//   - OrderPlaced: each line of a partner's product is recorded as a sale,
//     and one item.sold webhook per partner is recorded and enqueued.
//
// Events of products no partner owns change nothing. An undecodable event
// is a permanent failure (a dead letter); a store error asks for
// redelivery.
func (s *Service) Handle(ctx context.Context, ev bus.Event) error {
	_, err := s.Apply(ctx, ev)
	return err
}

// Apply is Handle that also reports whether the event was applied now.
func (s *Service) Apply(ctx context.Context, ev bus.Event) (fresh bool, err error) {
	const op = "partner.Handle"
	now := s.clock.Now()
	bad := func(err error) error {
		return bus.Permanent(errs.E(op, errs.Invalid, errs.Msg("undecodable %s %s: %v", ev.Type, ev.ID, err)))
	}
	var enqueued bool
	switch ev.Type {
	case SubjectThumbnailsReady:
		var tr ThumbnailsReadyEvent
		if err := ev.Decode(&tr); err != nil || tr.ProductID == "" {
			return false, bad(err)
		}
		fresh, err = s.store.Apply(ctx, ev.ID, now, func(tx Tx) error {
			var err error
			enqueued, err = s.applyReady(ctx, tx, tr, now)
			return err
		})
	case SubjectOrderPlaced:
		var placed OrderPlacedEvent
		if err := ev.Decode(&placed); err != nil || placed.Order.ID == "" {
			return false, bad(err)
		}
		fresh, err = s.store.Apply(ctx, ev.ID, now, func(tx Tx) error {
			var err error
			enqueued, err = s.applySold(ctx, tx, placed, now)
			return err
		})
	default:
		return false, bus.Permanent(errs.E(op, errs.Invalid, errs.Msg("the partner service does not handle %q", ev.Type)))
	}
	if err != nil {
		return false, errs.E(op, err)
	}
	if fresh && enqueued {
		s.kick()
	}
	return fresh, nil
}

func (s *Service) applyReady(ctx context.Context, tx Tx, ev ThumbnailsReadyEvent, now time.Time) (bool, error) {
	recs, err := tx.ProductsByCatalogID(ctx, []string{ev.ProductID})
	if err != nil {
		return false, err
	}
	if len(recs) == 0 {
		// SetImage records the catalog's product id once ListItem has
		// returned; the thumbnails may be quicker. While a listing is in
		// flight, a recent event of an unknown product is retried (the
		// bus redelivers it after a moment) rather than taken as another
		// seller's.
		if now.Sub(ev.ReadyAt) > listingTimeout {
			return false, nil
		}
		busy, err := tx.ListingInFlight(ctx, now.Add(-listingTimeout))
		if err != nil {
			return false, err
		}
		if busy {
			return false, errs.E(errs.Unavailable, errs.Msg("product %s may be a partner's being listed: retry", ev.ProductID))
		}
		return false, nil
	}
	r := recs[0]
	if err := tx.SetThumbnails(ctx, r.ID, ev.Thumbnails); err != nil {
		return false, err
	}
	data := ItemReadyData{ListingID: r.ID, ProductID: r.ProductID, Name: r.Name, Thumbnails: thumbnailURLs(ev.Thumbnails)}
	return s.addDelivery(ctx, tx, r.PartnerID, EventItemReady, ev.ReadyAt, data, now)
}

func (s *Service) applySold(ctx context.Context, tx Tx, ev OrderPlacedEvent, now time.Time) (bool, error) {
	ids := make([]string, 0, len(ev.Order.Items))
	for _, it := range ev.Order.Items {
		ids = append(ids, it.ProductID)
	}
	recs, err := tx.ProductsByCatalogID(ctx, ids)
	if err != nil || len(recs) == 0 {
		return false, err
	}
	owned := make(map[string]ProductRecord, len(recs))
	for _, r := range recs {
		owned[r.ProductID] = r
	}
	soldAt := ev.Order.UpdatedAt
	if soldAt.IsZero() {
		soldAt = now
	}
	byPartner := map[string][]SoldLine{}
	var partners []string // in order of first line, for stable delivery order
	for _, it := range ev.Order.Items {
		r, ok := owned[it.ProductID]
		if !ok {
			continue
		}
		line := SoldLine{ListingID: r.ID, ProductID: r.ProductID, Quantity: it.Quantity, Amount: it.LineTotal}
		if err := tx.AddSale(ctx, SaleRecord{PartnerID: r.PartnerID, Sale: Sale{
			OrderID: ev.Order.ID, ProductID: r.ProductID, ListingID: r.ID, Quantity: it.Quantity, Amount: it.LineTotal, SoldAt: soldAt,
		}}); err != nil {
			return false, err
		}
		if _, seen := byPartner[r.PartnerID]; !seen {
			partners = append(partners, r.PartnerID)
		}
		byPartner[r.PartnerID] = append(byPartner[r.PartnerID], line)
	}
	enqueued := false
	for _, pid := range partners {
		e, err := s.addDelivery(ctx, tx, pid, EventItemSold, soldAt, ItemSoldData{OrderID: ev.Order.ID, Lines: byPartner[pid]}, now)
		if err != nil {
			return false, err
		}
		enqueued = enqueued || e
	}
	return enqueued, nil
}

// addDelivery records a webhook for partner pid in the delivery log and
// enqueues its job; a partner without a webhook URL gets the delivery
// recorded as failed, with nothing enqueued.
func (s *Service) addDelivery(ctx context.Context, tx Tx, pid, eventType string, occurred time.Time, data any, now time.Time) (bool, error) {
	p, err := tx.Partner(ctx, pid)
	if err != nil {
		return false, err
	}
	id := ids.New("whd", now)
	body, err := json.Marshal(WebhookBody{ID: id, Type: eventType, OccurredAt: occurred.UTC(), Data: data})
	if err != nil {
		return false, err
	}
	d := Delivery{ID: id, PartnerID: pid, EventType: eventType, Payload: body, Status: StatusPending, CreatedAt: now, UpdatedAt: now}
	if p.WebhookURL == "" {
		d.Status, d.LastError = StatusFailed, "the partner has no webhook URL"
		return false, tx.AddDelivery(ctx, d, nil)
	}
	next := now
	d.NextAttemptAt = &next
	job := &WebhookRequested{DeliveryID: id, PartnerID: pid, EventType: eventType, RequestedAt: now.UTC()}
	return true, tx.AddDelivery(ctx, d, job)
}

// inboxRetention is how long applied event ids are kept: longer than the
// GLOBO stream keeps a message (a week), so every redelivery the broker can
// still make is recognised.
const inboxRetention = 8 * 24 * time.Hour

// RunSweeper deletes expired inbox records every interval until ctx ends.
func (s *Service) RunSweeper(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if err := s.store.Forget(ctx, s.clock.Now().Add(-inboxRetention)); err != nil && ctx.Err() == nil {
			s.log.Warn("partner inbox sweep failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
