package catalog

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"image"
	_ "image/jpeg" // registers JPEG with image.DecodeConfig
	_ "image/png"  // registers PNG with image.DecodeConfig
	"log/slog"
	"maps"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"golang.org/x/sync/singleflight"

	"github.com/globomantics/globomantics/internal/platform/blob"
	"github.com/globomantics/globomantics/internal/platform/cache"
	"github.com/globomantics/globomantics/internal/platform/clock"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/ids"
	"github.com/globomantics/globomantics/internal/platform/money"
	"github.com/globomantics/globomantics/internal/platform/page"
)

// Limits on listed items and reservations; exceeding one is errs.Invalid.
const (
	MaxImageBytes     = 8 << 20     // largest original image accepted
	MaxImageDimension = 4000        // largest width or height of an original image, in pixels
	MaxNameLen        = 200         // characters in a product name
	MaxDescriptionLen = 5000        // characters in a product description
	MaxStock          = 1_000_000   // largest stock of a product, and quantity of a line
	MaxPrice          = 100_000_000 // cents: one million dollars
	MaxLines          = 200         // lines in one reservation
)

// Record is a product as the store keeps it: with blob keys where Product has
// URLs.
type Record struct {
	ID            string
	Name          string
	Description   string
	Category      string
	Price         money.Money
	Stock         int
	ImageKey      string
	ThumbnailKeys map[string]string // size name -> blob key
	CreatedAt     time.Time
	Version       int64     // 1 when listed, one more for every UpdateProduct that changed it
	UpdatedAt     time.Time // of the last change by UpdateProduct; zero before one
}

// Store is the catalog's persistence, declared here by its consumer and
// implemented by catalogdb.Store. Every multi-row change is one transaction.
type Store interface {
	// ListCategories returns every category in display order.
	ListCategories(ctx context.Context) ([]Category, error)
	// EnsureCategories creates the categories that do not exist yet and
	// renames the ones that do; the order of cats is their display order.
	EnsureCategories(ctx context.Context, cats []Category) error
	// HasCategory reports whether a category with this id exists.
	HasCategory(ctx context.Context, id string) (bool, error)
	// ListProducts returns up to limit products by id, starting right after
	// the id afterID ("" for the first), optionally only those of category
	// (when not empty).
	ListProducts(ctx context.Context, category, afterID string, limit int) ([]Record, error)
	// GetProduct returns one product; errs.NotFound.
	GetProduct(ctx context.Context, id string) (Record, error)
	// GetProducts returns the products that exist among ids, in any order.
	GetProducts(ctx context.Context, ids []string) ([]Record, error)
	// CreateProduct inserts the product and, in the same transaction, writes
	// its ItemListed event (id = product id) and its ThumbnailRequested job
	// (id ThumbnailJobID) to the outbox. errs.Conflict if
	// the id is taken; errs.Invalid for an unknown category.
	CreateProduct(ctx context.Context, r Record) error
	// SetThumbnails replaces the product's thumbnail keys and, when they
	// change, writes a ThumbnailsReady event (ready at now) to the outbox
	// in the same transaction; keys equal to the stored ones change and
	// write nothing. errs.NotFound.
	SetThumbnails(ctx context.Context, id string, keys map[string]string, now time.Time) error
	// SetThumbnailsFailed records that the product's thumbnails cannot be
	// made, with the reason, at now; errs.NotFound.
	SetThumbnailsFailed(ctx context.Context, id, reason string, now time.Time) error
	// ThumbnailFailure returns the failure SetThumbnailsFailed recorded, a
	// zero one when there is none or the product has thumbnails;
	// errs.NotFound.
	ThumbnailFailure(ctx context.Context, id string) (ThumbnailFailure, error)
	// UpdateProduct applies the non-nil fields of ch (validated already) to
	// the product in one transaction on the primary: when a field actually
	// changes, the version goes up by one, updated_at becomes now, and a
	// ProductChanged event (id "<product id>/v<version>") is written to the
	// outbox; when nothing changes, nothing is written. It returns the
	// product as it is afterwards. errs.NotFound; errs.Conflict when
	// ch.IfVersion is not 0 and the product is at another version;
	// errs.Invalid for an unknown category. Stock is set, not added to: the
	// units reservations hold were taken out of it already.
	UpdateProduct(ctx context.Context, id string, ch ProductChange, now time.Time) (Record, error)
	// Reserve takes the lines' quantities out of stock, all or nothing, and
	// records them under reservationID, live until expiresAt; a reservation
	// id seen before (even one released) is a no-op. Stock never goes
	// negative, even under concurrent reservations. errs.Conflict when stock
	// is short, errs.NotFound for an unknown product.
	Reserve(ctx context.Context, reservationID string, lines []Line, now, expiresAt time.Time) error
	// Commit makes a live reservation final (sold) at now, once; a committed
	// one is a no-op. errs.Conflict for a released one, for one whose expiry
	// is at or before now ("the reservation has expired"), and for an
	// unknown one (nothing is recorded).
	Commit(ctx context.Context, reservationID string, now time.Time) error
	// Release puts a reservation's recorded quantities back, once. An
	// unknown reservation is remembered as released, so that a late Reserve
	// with its id does nothing. A committed reservation is released too
	// (its sale undone).
	// It returns the lines put back (none for an unknown or released one).
	Release(ctx context.Context, reservationID string, now time.Time) ([]Line, error)
	// Expired returns the ids of up to limit live reservations (neither
	// committed nor released) whose expiry is at or before now, soonest
	// expired first.
	Expired(ctx context.Context, now time.Time, limit int) ([]string, error)
	// ReleaseExpired releases the reservation, as Release does, if it is
	// still live and its expiry is at or before now, and reports whether this
	// call released it: of concurrent callers, exactly one does. It returns
	// the lines put back.
	ReleaseExpired(ctx context.Context, reservationID string, now time.Time) ([]Line, bool, error)
	// StockLevels returns every product's stock, reserved and sold units by
	// product id, from one consistent read.
	StockLevels(ctx context.Context) ([]StockLevel, error)
	// CountProducts returns the number of products.
	CountProducts(ctx context.Context) (int, error)
}

// Service implements API over a Store and a blob store.
type Service struct {
	store Store
	blobs blob.Store
	kick  func()
	clk   clock.Clock

	cache    cache.Cache // look-aside cache of single products; nil for none
	cacheTTL time.Duration
	log      *slog.Logger

	// loads collapses concurrent GetProduct misses of one id into one
	// store read (by product id).
	loads                singleflight.Group
	hits, misses, stores atomic.Int64 // see CacheStats

	// floors holds, by product id, the lowest version of a product this
	// instance may serve after learning of a change (its own, or another
	// instance's by a ProductChanged event): a copy older than that in the
	// cache is a miss, and one read from a lagging replica is read again
	// from the primary. Entries last floorTTL.
	floorMu    sync.Mutex
	floors     map[string]floor
	floorSweep time.Time // when floors was last swept of expired entries
}

// floor is the lowest version of a product that may be served, until until.
type floor struct {
	version int64
	until   time.Time
}

// Option configures a Service.
type Option func(*Service)

// WithCache puts a look-aside cache in front of GetProduct, the read behind
// every product page. Entries are deleted when the product's stock or
// thumbnails change here: with a cache shared by every instance (Redis) the
// change is seen everywhere at once; with one of each instance's own
// (Memory), ttl bounds how stale a product may look when another instance
// changed it. A change by UpdateProduct also reaches the other instances'
// own caches through its ProductChanged event (HandleProductChanged), within
// the event's delivery time rather than ttl. Either way ttl bounds the
// staleness left when a read races a write (the read's older copy landing
// after the write's delete), except after UpdateProduct: an instance that
// knows of that change serves no older copy at all.
// Concurrent misses of one product in this process make one store read,
// whose result they share. While the database cannot answer at all, the last copy read (kept
// a day) is served instead of an error. Money paths (GetProducts for
// checkout's prices, reservations) always read the primary database.
func WithCache(c cache.Cache, ttl time.Duration) Option {
	return func(s *Service) { s.cache, s.cacheTTL = c, ttl }
}

var _ API = (*Service)(nil)

// WithLogger sets the logger of RunSweeper (slog.Default() when not given).
func WithLogger(l *slog.Logger) Option {
	return func(s *Service) { s.log = l }
}

// NewService returns the catalog service. kick is called after a commit that
// wrote to the outbox, to wake the outbox relay; nil means no-op. A nil clk is
// the real clock.
func NewService(store Store, blobs blob.Store, kick func(), clk clock.Clock, opts ...Option) *Service {
	if kick == nil {
		kick = func() {}
	}
	if clk == nil {
		clk = clock.Real{}
	}
	s := &Service{store: store, blobs: blobs, kick: kick, clk: clk}
	for _, o := range opts {
		o(s)
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	return s
}

func productKey(id string) string { return "catalog:product:" + id }

// staleKey holds the last copy of a product read from the database, served
// only when the database cannot answer (the catalog chose availability).
func staleKey(id string) string { return "catalog:product:stale:" + id }

// staleTTL is how long the last known copy of a product is kept for outages.
const staleTTL = 24 * time.Hour

// CacheStats counts GetProduct calls since the service started: Hits were
// served from the cache, Misses were not (a cache error is a miss), and
// Loads are the store reads the misses made, fewer than Misses when
// concurrent misses of one product shared a read. Hits and Misses stay zero
// without a cache.
type CacheStats struct {
	Hits   int64 `json:"hits"`
	Misses int64 `json:"misses"`
	Loads  int64 `json:"loads"`
}

// HitRatio is Hits/(Hits+Misses), or 0 before any read.
func (c CacheStats) HitRatio() float64 {
	if c.Hits+c.Misses == 0 {
		return 0
	}
	return float64(c.Hits) / float64(c.Hits+c.Misses)
}

// CacheStats returns the product cache's counters. Safe for concurrent use.
func (s *Service) CacheStats() CacheStats {
	return CacheStats{Hits: s.hits.Load(), Misses: s.misses.Load(), Loads: s.stores.Load()}
}

// cached returns the product from the cache; a miss or a cache error is a miss.
func (s *Service) cached(ctx context.Context, id string) (Product, bool) {
	if s.cache == nil {
		return Product{}, false
	}
	b, ok, err := s.cache.Get(ctx, productKey(id))
	if err != nil || !ok {
		return Product{}, false
	}
	var p Product
	if json.Unmarshal(b, &p) != nil {
		return Product{}, false
	}
	if p.Version < s.floorOf(id) {
		return Product{}, false // from before a change this instance knows of
	}
	return p, true
}

func (s *Service) remember(ctx context.Context, p Product) {
	if s.cache == nil {
		return
	}
	if b, err := json.Marshal(p); err == nil {
		_ = s.cache.Set(ctx, productKey(p.ID), b, s.cacheTTL)
		_ = s.cache.Set(ctx, staleKey(p.ID), b, staleTTL)
	}
}

// forget drops the cached copies of products that just changed. A later
// GetProduct here does not join a load begun before the change either.
func (s *Service) forget(ctx context.Context, ids ...string) {
	for _, id := range ids {
		s.loads.Forget(id)
		if s.cache != nil {
			_ = s.cache.Delete(ctx, productKey(id))
		}
	}
}

var categoryIDRe = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,39}$`)

// EnsureCategories creates or renames the given categories (ids are
// lowercase slugs such as "home"), in display order. errs.Invalid for a bad id
// or an empty name.
func (s *Service) EnsureCategories(ctx context.Context, cats []Category) error {
	const op = "catalog.EnsureCategories"
	seen := make(map[string]bool, len(cats))
	clean := make([]Category, 0, len(cats))
	for _, c := range cats {
		c.Name = strings.TrimSpace(c.Name)
		if !categoryIDRe.MatchString(c.ID) {
			return errs.E(op, errs.Invalid, errs.Msg("category id %q must be 1 to 40 lowercase letters, digits or dashes", c.ID))
		}
		if c.Name == "" || utf8.RuneCountInString(c.Name) > 100 {
			return errs.E(op, errs.Invalid, errs.Msg("category %q needs a name of 1 to 100 characters", c.ID))
		}
		if seen[c.ID] {
			return errs.E(op, errs.Invalid, errs.Msg("category %q is listed twice", c.ID))
		}
		seen[c.ID] = true
		clean = append(clean, c)
	}
	if err := s.store.EnsureCategories(ctx, clean); err != nil {
		return errs.E(op, err)
	}
	return nil
}

// ListCategories returns every category in display order.
func (s *Service) ListCategories(ctx context.Context) ([]Category, error) {
	cats, err := s.store.ListCategories(ctx)
	if err != nil {
		return nil, errs.E("catalog.ListCategories", err)
	}
	if cats == nil {
		cats = []Category{}
	}
	return cats, nil
}

// productsList names the list of products by id, of one category or of all
// ("") in page tokens, so a token of one category is refused for another.
func productsList(category string) string { return "products/id/" + category }

// ListProducts returns a page of products by id. A zero page size means
// page.DefaultSize; errs.BadRequest for a negative size or one over
// page.MaxSize, or a page token that is not one of this list's. The token
// holds the last product's id, so products listed while a client pages never
// make it skip or repeat one.
func (s *Service) ListProducts(ctx context.Context, f ProductFilter) (ProductPage, error) {
	const op = "catalog.ListProducts"
	p, err := f.Page.CheckSize(op)
	if err != nil {
		return ProductPage{}, err
	}
	list := productsList(f.Category)
	var afterID string
	if key, err := p.After(list, 1); err != nil {
		return ProductPage{}, err
	} else if key != nil {
		if afterID = key[0]; afterID == "" {
			return ProductPage{}, page.BadToken(op)
		}
	}
	recs, err := s.store.ListProducts(ctx, f.Category, afterID, p.Size+1)
	if err != nil {
		return ProductPage{}, errs.E(op, err)
	}
	next := p.Next(list, len(recs), func() []string { return []string{recs[p.Size-1].ID} })
	if len(recs) > p.Size {
		recs = recs[:p.Size]
	}
	items := make([]Product, len(recs))
	for i, r := range recs {
		items[i] = r.Product()
	}
	return ProductPage{Items: items, NextPageToken: next}, nil
}

// GetProduct returns one product; errs.NotFound.
func (s *Service) GetProduct(ctx context.Context, id string) (Product, error) {
	const op = "catalog.GetProduct"
	if strings.TrimSpace(id) == "" {
		return Product{}, errs.E(op, errs.NotFound, errs.Msg("no such product"))
	}
	if s.cache != nil {
		if p, ok := s.cached(ctx, id); ok {
			s.hits.Add(1)
			return p, nil
		}
		s.misses.Add(1)
	}
	// One load per product at a time: the callers missing it meanwhile
	// wait for that load rather than each reading the store (a stampede
	// when a popular product's entry expires or is deleted). Each waits
	// only as long as its own ctx allows.
	ch := s.loads.DoChan(id, func() (any, error) {
		// The load outlives its first caller going away (others may be
		// waiting for it) but not that caller's deadline.
		lctx := context.WithoutCancel(ctx)
		dl, ok := ctx.Deadline()
		if !ok {
			dl = time.Now().Add(loadTimeout)
		}
		lctx, cancel := context.WithDeadline(lctx, dl)
		defer cancel()
		return s.load(lctx, id)
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return Product{}, errs.E(op, res.Err)
		}
		p := res.Val.(Product)
		if res.Shared {
			p.Thumbnails = maps.Clone(p.Thumbnails) // each caller its own map
		}
		return p, nil
	case <-ctx.Done():
		return Product{}, errs.E(op, ctx.Err())
	}
}

// loadTimeout bounds a product load whose first caller had no deadline.
const loadTimeout = 30 * time.Second

// load reads a product from the store and caches it. A load that starts
// right after another one finished finds that one's copy in the cache
// instead of reading the store again.
func (s *Service) load(ctx context.Context, id string) (Product, error) {
	if p, ok := s.cached(ctx, id); ok {
		return p, nil
	}
	s.stores.Add(1)
	r, err := s.store.GetProduct(ctx, id)
	if err == nil && r.Version < s.floorOf(id) {
		// A replica that has not replayed a change this instance knows of
		// yet: the primary has it. With no primary to answer, the
		// replica's copy is still better for browsing than none.
		if pr, perr := s.fromPrimary(ctx, id); !errs.Is(errs.Unavailable, perr) {
			r, err = pr, perr
		}
	}
	if errs.Is(errs.Unavailable, err) && s.cache != nil {
		// No node of the database answers: the last known copy is a
		// better answer for browsing than an error.
		if b, ok, cerr := s.cache.Get(ctx, staleKey(id)); cerr == nil && ok {
			var p Product
			if json.Unmarshal(b, &p) == nil {
				return p, nil
			}
		}
	}
	if err != nil {
		return Product{}, err
	}
	p := r.Product()
	s.remember(ctx, p)
	return p, nil
}

// GetProducts returns the products that exist among ids, in the order of ids
// (each once); unknown ids are left out.
func (s *Service) GetProducts(ctx context.Context, idList []string) ([]Product, error) {
	const op = "catalog.GetProducts"
	uniq := make([]string, 0, len(idList))
	seen := make(map[string]bool, len(idList))
	for _, id := range idList {
		if id != "" && !seen[id] {
			seen[id] = true
			uniq = append(uniq, id)
		}
	}
	out := make([]Product, 0, len(uniq))
	if len(uniq) == 0 {
		return out, nil
	}
	recs, err := s.store.GetProducts(ctx, uniq)
	if err != nil {
		return nil, errs.E(op, err)
	}
	byID := make(map[string]Record, len(recs))
	for _, r := range recs {
		byID[r.ID] = r
	}
	for _, id := range uniq {
		if r, ok := byID[id]; ok {
			out = append(out, r.Product())
		}
	}
	return out, nil
}

// ListItem validates and lists a new item: it stores the image, then creates
// the product together with its ItemListed event.
func (s *Service) ListItem(ctx context.Context, item NewItem) (Product, error) {
	return s.listItem(ctx, ids.New("prd", s.clk.Now()), item)
}

// listItem is ListItem with a chosen product id; Seed uses stable ids so that
// two processes seeding at once cannot both create the demo catalog.
func (s *Service) listItem(ctx context.Context, id string, item NewItem) (Product, error) {
	const op = "catalog.ListItem"
	item.Name = strings.TrimSpace(item.Name)
	item.Description = strings.TrimSpace(item.Description)
	item.Category = strings.TrimSpace(item.Category)
	for _, err := range []error{
		checkName(op, item.Name), checkDescription(op, item.Description),
		checkPrice(op, item.Price), checkStock(op, item.Stock), checkCategory(op, item.Category),
	} {
		if err != nil {
			return Product{}, err
		}
	}
	ext, err := checkImage(item.Image)
	if err != nil {
		return Product{}, errs.E(op, err)
	}
	ok, err := s.store.HasCategory(ctx, item.Category)
	if err != nil {
		return Product{}, errs.E(op, err)
	}
	if !ok {
		return Product{}, errs.E(op, errs.Invalid, errs.Msg("unknown category %q", item.Category))
	}

	// The image goes first: a failure after this leaves an orphan blob, which
	// is harmless, whereas a product whose image is missing is not.
	key := OriginalKey(id, ext, item.Image)
	if err := s.blobs.Put(ctx, key, bytes.NewReader(item.Image)); err != nil {
		return Product{}, errs.E(op, errs.Unavailable, errs.Msg("could not store the image"), err)
	}
	rec := Record{
		ID:          id,
		Name:        item.Name,
		Description: item.Description,
		Category:    item.Category,
		Price:       money.USD(item.Price.Amount),
		Stock:       item.Stock,
		ImageKey:    key,
		CreatedAt:   s.clk.Now(),
		Version:     1, // the column's default
	}
	if err := s.store.CreateProduct(ctx, rec); err != nil {
		return Product{}, errs.E(op, err)
	}
	s.kick()
	return rec.Product(), nil
}

// ContentTagLen is the number of hex digits of a content tag.
const ContentTagLen = 12

// ContentTag is the version a media key carries: the first ContentTagLen hex
// digits of the SHA-256 of the blob's bytes. Equal bytes give equal tags, so a
// key carrying one names the same bytes forever and may be cached as
// immutable; changed bytes give a new key.
func ContentTag(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:ContentTagLen/2])
}

// OriginalKey is the blob key of a product's original image with extension
// ext ("png", "jpg"): "products/<id>/original-<ContentTag(image)>.<ext>".
// Listing the same bytes again gives the same key; products listed before
// keys were versioned keep their "products/<id>/original.<ext>".
func OriginalKey(productID, ext string, image []byte) string {
	return "products/" + productID + "/original-" + ContentTag(image) + "." + ext
}

// checkImage detects the format of an original image from its bytes and
// returns the file extension to store it under.
func checkImage(b []byte) (string, error) {
	const op = "catalog.checkImage"
	if len(b) == 0 {
		return "", errs.E(op, errs.Invalid, errs.Msg("image must not be empty"))
	}
	if len(b) > MaxImageBytes {
		return "", errs.E(op, errs.Invalid, errs.Msg("image must be at most %d MB", MaxImageBytes>>20))
	}
	cfg, format, err := image.DecodeConfig(bytes.NewReader(b))
	if err != nil {
		return "", errs.E(op, errs.Invalid, errs.Msg("image must be a PNG or JPEG file"), err)
	}
	// Other packages of the binary may register more formats (GIF, WebP):
	// only PNG and JPEG are accepted all the same.
	ext := map[string]string{"png": "png", "jpeg": "jpg"}[format]
	if ext == "" {
		return "", errs.E(op, errs.Invalid, errs.Msg("image must be a PNG or JPEG file"))
	}
	if cfg.Width < 1 || cfg.Height < 1 || cfg.Width > MaxImageDimension || cfg.Height > MaxImageDimension {
		return "", errs.E(op, errs.Invalid, errs.Msg("image must be at most %dx%d pixels (got %dx%d)",
			MaxImageDimension, MaxImageDimension, cfg.Width, cfg.Height))
	}
	return ext, nil
}

// SetThumbnails records the thumbnail blob keys of a product by size name,
// replacing earlier ones, and publishes ThumbnailsReady (through the outbox,
// in the same transaction) when they changed: a repeat of the same keys, as
// a redelivered job makes, publishes nothing. errs.Invalid for an empty map,
// an empty size name or an invalid key; errs.NotFound for an unknown product.
func (s *Service) SetThumbnails(ctx context.Context, id string, keys map[string]string) error {
	const op = "catalog.SetThumbnails"
	if strings.TrimSpace(id) == "" {
		return errs.E(op, errs.NotFound, errs.Msg("no such product"))
	}
	if len(keys) == 0 {
		return errs.E(op, errs.Invalid, errs.Msg("no thumbnails given"))
	}
	if len(keys) > 16 {
		return errs.E(op, errs.Invalid, errs.Msg("at most 16 thumbnail sizes"))
	}
	for size, key := range keys {
		if !sizeNameRe.MatchString(size) {
			return errs.E(op, errs.Invalid, errs.Msg("thumbnail size name %q must be 1 to 20 lowercase letters or digits", size))
		}
		if !blob.ValidKey(key) || len(key) > 500 {
			return errs.E(op, errs.Invalid, errs.Msg("thumbnail %q has an invalid blob key", size))
		}
	}
	if err := s.store.SetThumbnails(ctx, id, keys, s.clk.Now()); err != nil {
		return errs.E(op, err)
	}
	s.forget(ctx, id)
	s.kick() // the ThumbnailsReady event, when the keys changed
	return nil
}

var sizeNameRe = regexp.MustCompile(`^[a-z0-9]{1,20}$`)

// ReserveStock takes the lines' quantities out of stock, all or nothing, once
// per reservation id, until now+hold (see API). Lines naming the same product
// are added together.
func (s *Service) ReserveStock(ctx context.Context, reservationID string, lines []Line, hold time.Duration) error {
	const op = "catalog.ReserveStock"
	if err := checkReservationID(op, reservationID); err != nil {
		return err
	}
	if len(lines) == 0 {
		return errs.E(op, errs.Invalid, errs.Msg("a reservation needs at least one line"))
	}
	if len(lines) > MaxLines {
		return errs.E(op, errs.Invalid, errs.Msg("a reservation has at most %d lines", MaxLines))
	}
	merged := make([]Line, 0, len(lines))
	at := make(map[string]int, len(lines))
	for _, l := range lines {
		if l.ProductID == "" {
			return errs.E(op, errs.Invalid, errs.Msg("every line needs a product_id"))
		}
		if l.Quantity < 1 {
			return errs.E(op, errs.Invalid, errs.Msg("quantity of %s must be at least 1", l.ProductID))
		}
		if l.Quantity > MaxStock {
			return errs.E(op, errs.Invalid, errs.Msg("quantity of %s must be at most %d", l.ProductID, MaxStock))
		}
		if i, ok := at[l.ProductID]; ok {
			merged[i].Quantity += l.Quantity
			continue
		}
		at[l.ProductID] = len(merged)
		merged = append(merged, l)
	}
	now := s.clk.Now()
	if err := s.store.Reserve(ctx, reservationID, merged, now, now.Add(clampHold(hold))); err != nil {
		return errs.E(op, err)
	}
	for _, l := range merged {
		s.forget(ctx, l.ProductID)
	}
	return nil
}

// clampHold is the hold a reservation gets when asked for hold.
func clampHold(hold time.Duration) time.Duration {
	switch {
	case hold <= 0:
		return DefaultHold
	case hold > MaxHold:
		return MaxHold
	}
	return hold
}

// CommitStock makes a live reservation final: its stock is sold and can no
// longer be released. Idempotent; errs.Conflict for a released, expired or
// unknown reservation.
func (s *Service) CommitStock(ctx context.Context, reservationID string) error {
	const op = "catalog.CommitStock"
	if err := checkReservationID(op, reservationID); err != nil {
		return err
	}
	if err := s.store.Commit(ctx, reservationID, s.clk.Now()); err != nil {
		return errs.E(op, err)
	}
	return nil
}

// ReleaseStock puts a reservation's quantities back, once; an already
// released or expired reservation is a no-op, an unknown one is remembered as
// released; a committed one is released too (the sale undone, by a
// checkout rolling back before it took the money).
func (s *Service) ReleaseStock(ctx context.Context, reservationID string) error {
	const op = "catalog.ReleaseStock"
	if err := checkReservationID(op, reservationID); err != nil {
		return err
	}
	lines, err := s.store.Release(ctx, reservationID, s.clk.Now())
	if err != nil {
		return errs.E(op, err)
	}
	for _, l := range lines {
		s.forget(ctx, l.ProductID)
	}
	return nil
}

// SweepBatch is how many expired reservations ReleaseExpired looks up at a
// time.
const SweepBatch = 100

// ReleaseExpired puts back the stock of every reservation whose expiry has
// passed (by the service's clock) and that was neither committed nor
// released, and returns how many it released. It works through them in
// batches of SweepBatch, each reservation in its own transaction, and is safe
// to run from several instances at once: each reservation is released by
// exactly one of them.
func (s *Service) ReleaseExpired(ctx context.Context) (int, error) {
	const op = "catalog.ReleaseExpired"
	now := s.clk.Now()
	released := 0
	for {
		batch, err := s.store.Expired(ctx, now, SweepBatch)
		if err != nil {
			return released, errs.E(op, err)
		}
		for _, id := range batch {
			lines, ok, err := s.store.ReleaseExpired(ctx, id, now)
			if err != nil {
				return released, errs.E(op, err)
			}
			if ok {
				released++
			}
			for _, l := range lines {
				s.forget(ctx, l.ProductID)
			}
		}
		if len(batch) < SweepBatch {
			return released, nil
		}
	}
}

// DefaultSweepEvery is how often RunSweeper sweeps when not told.
const DefaultSweepEvery = 30 * time.Second

// RunSweeper calls ReleaseExpired every interval (DefaultSweepEvery when
// every <= 0), first right away, until ctx ends; it logs what it released and
// any error (and carries on).
func (s *Service) RunSweeper(ctx context.Context, every time.Duration) {
	if every <= 0 {
		every = DefaultSweepEvery
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		n, err := s.ReleaseExpired(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			s.log.ErrorContext(ctx, "catalog: releasing expired reservations", "released", n, "err", err)
		case n > 0:
			s.log.InfoContext(ctx, "catalog: released expired reservations", "released", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// StockLevels returns every product's stock audit (see StockLevel), by
// product id, from one consistent read of the primary database.
func (s *Service) StockLevels(ctx context.Context) ([]StockLevel, error) {
	levels, err := s.store.StockLevels(ctx)
	if err != nil {
		return nil, errs.E("catalog.StockLevels", err)
	}
	if levels == nil {
		levels = []StockLevel{}
	}
	return levels, nil
}

func checkReservationID(op, id string) error {
	if strings.TrimSpace(id) == "" {
		return errs.E(op, errs.Invalid, errs.Msg("reservation id must not be empty"))
	}
	if len(id) > 200 {
		return errs.E(op, errs.Invalid, errs.Msg("reservation id must be at most 200 bytes"))
	}
	return nil
}

// ListedAt is when the item was listed, as Product and the catalog's events
// carry it: CreatedAt in UTC, to the millisecond the stores keep.
func (r Record) ListedAt() time.Time { return r.CreatedAt.UTC().Truncate(time.Millisecond) }

// Product is the record as clients see it, with blob keys turned into URLs
// under MediaPrefix.
func (r Record) Product() Product {
	p := Product{
		ID:          r.ID,
		Name:        r.Name,
		Description: r.Description,
		Category:    r.Category,
		Price:       r.Price,
		Stock:       r.Stock,
		ImageURL:    MediaPrefix + r.ImageKey,
		Version:     r.Version,
		ListedAt:    r.ListedAt(),
	}
	if len(r.ThumbnailKeys) > 0 {
		p.Thumbnails = make(map[string]string, len(r.ThumbnailKeys))
		for size, key := range r.ThumbnailKeys {
			p.Thumbnails[size] = MediaPrefix + key
		}
	}
	return p
}
