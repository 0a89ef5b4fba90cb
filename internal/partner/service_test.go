package partner_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/catalog"
	"github.com/globomantics/globomantics/internal/partner"
	"github.com/globomantics/globomantics/internal/partner/partnerdb"
	"github.com/globomantics/globomantics/internal/platform/bus"
	"github.com/globomantics/globomantics/internal/platform/clock"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/money"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var t0 = time.Date(2031, 5, 17, 10, 30, 0, 0, time.UTC)

// fakeCatalog is the catalog the service lists items in: it keeps what it
// was given, and fails ListItem when fail is set.
type fakeCatalog struct {
	mu    sync.Mutex
	items map[string]catalog.NewItem
	stock map[string]int
	fail  error
	n     int
}

func (c *fakeCatalog) ListCategories(context.Context) ([]catalog.Category, error) {
	return []catalog.Category{{ID: "home", Name: "Home"}, {ID: "books", Name: "Books"}}, nil
}

func (c *fakeCatalog) ListItem(_ context.Context, it catalog.NewItem) (catalog.Product, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fail != nil {
		return catalog.Product{}, c.fail
	}
	c.n++
	id := fmt.Sprintf("prd_%d", c.n)
	c.items[id] = it
	c.stock[id] = it.Stock
	return catalog.Product{ID: id, Name: it.Name, Stock: it.Stock, Price: it.Price}, nil
}

func (c *fakeCatalog) GetProducts(_ context.Context, ids []string) ([]catalog.Product, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []catalog.Product
	for _, id := range ids {
		if n, ok := c.stock[id]; ok {
			out = append(out, catalog.Product{ID: id, Stock: n})
		}
	}
	return out, nil
}

type env struct {
	svc   *partner.Service
	cat   *fakeCatalog
	db    *sqldb.DB
	clock *clock.Fake
	kicks int
}

func newEnv(t *testing.T, opts ...partner.Option) *env {
	t.Helper()
	db := testenv.SQLite(t)
	st, err := partnerdb.Open(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{cat: &fakeCatalog{items: map[string]catalog.NewItem{}, stock: map[string]int{}}, db: db, clock: clock.NewFake(t0)}
	e.svc = partner.NewService(st, e.cat, func() { e.kicks++ }, e.clock, opts...)
	return e
}

var png = []byte("\x89PNG\r\n\x1a\n fake bytes: the fake catalog does not decode them")

// listed creates a partner with a webhook URL and one listed product.
func (e *env) listed(t *testing.T, url string) (partner.Created, partner.Product) {
	t.Helper()
	ctx := context.Background()
	c, err := e.svc.Create(ctx, "Acme Lamps", url)
	if err != nil {
		t.Fatal(err)
	}
	p, err := e.svc.CreateProduct(ctx, c.Partner.ID, partner.NewProduct{Name: "Brass lamp", Category: "home", Price: money.USD(4500), Stock: 5})
	if err != nil {
		t.Fatal(err)
	}
	p, err = e.svc.SetImage(ctx, c.Partner.ID, p.ID, png)
	if err != nil {
		t.Fatal(err)
	}
	return c, p
}

func TestCreateAndAuthenticate(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	c, err := e.svc.Create(ctx, "  Acme  ", "")
	if err != nil || c.Partner.Name != "Acme" || !strings.HasPrefix(c.Key, partner.KeyPrefix) || len(c.Key) < 40 {
		t.Fatalf("Create = %+v, %v", c, err)
	}
	got, err := e.svc.Authenticate(ctx, c.Key)
	if err != nil || got.ID != c.Partner.ID {
		t.Fatalf("Authenticate = %+v, %v", got, err)
	}
	for _, bad := range []string{"", "gpk_nope", c.Key + "x", strings.TrimPrefix(c.Key, partner.KeyPrefix)} {
		if _, err := e.svc.Authenticate(ctx, bad); !errs.Is(errs.Unauthorized, err) {
			t.Errorf("Authenticate(%q) = %v, want Unauthorized", bad, err)
		}
	}
	// The key is kept hashed: it appears nowhere in the database.
	var n int
	if err := e.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM partners WHERE key_hash = ? OR name = ?`, c.Key, c.Key).Scan(&n); err != nil || n != 0 {
		t.Fatalf("the key in clear in the database: %d, %v", n, err)
	}
	for _, tc := range []struct{ name, url string }{{"", ""}, {strings.Repeat("x", 101), ""}, {"A", "ftp://x"}, {"A", "/relative"}, {"A", "https://u:p@x/"}} {
		if _, err := e.svc.Create(ctx, tc.name, tc.url); !errs.Is(errs.Invalid, err) {
			t.Errorf("Create(%q, %q) = %v, want Invalid", tc.name, tc.url, err)
		}
	}
	list, err := e.svc.List(ctx)
	if err != nil || len(list) != 1 {
		t.Fatalf("List = %+v, %v", list, err)
	}
}

func TestProducts(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	c, p := e.listed(t, "")
	if p.Status != partner.ProductListed || p.ProductID == "" || p.Stock != 5 {
		t.Fatalf("listed product = %+v", p)
	}
	if it := e.cat.items[p.ProductID]; it.Name != "Brass lamp" || it.Price != money.USD(4500) || string(it.Image) != string(png) {
		t.Fatalf("catalog got %+v", it)
	}
	// Listed once: a second upload is refused, nothing listed again.
	if _, err := e.svc.SetImage(ctx, c.Partner.ID, p.ID, png); !errs.Is(errs.Conflict, err) {
		t.Fatalf("second SetImage = %v, want Conflict", err)
	}
	other, _ := e.svc.Create(ctx, "Other", "")
	if _, err := e.svc.SetImage(ctx, other.Partner.ID, p.ID, png); !errs.Is(errs.NotFound, err) {
		t.Fatalf("SetImage of another partner's product = %v, want NotFound", err)
	}
	for _, bad := range []partner.NewProduct{
		{Name: "", Category: "home", Price: money.USD(1)},
		{Name: "x", Category: "home", Price: money.USD(0)},
		{Name: "x", Category: "home", Price: money.USD(1), Stock: -1},
		{Name: "x", Category: "garden", Price: money.USD(1)},
		{Name: "x", Category: "home", Price: money.Money{Amount: 1, Currency: "EUR"}},
	} {
		if _, err := e.svc.CreateProduct(ctx, c.Partner.ID, bad); !errs.Is(errs.Invalid, err) {
			t.Errorf("CreateProduct(%+v) = %v, want Invalid", bad, err)
		}
	}
	// A failed listing puts the product back, for another try.
	e.clock.Advance(time.Second)
	draft, err := e.svc.CreateProduct(ctx, c.Partner.ID, partner.NewProduct{Name: "Shade", Category: "home", Price: money.USD(900)})
	if err != nil || draft.Status != partner.ProductAwaitingImage {
		t.Fatalf("CreateProduct = %+v, %v", draft, err)
	}
	e.cat.fail = errs.E(errs.Invalid, errs.Msg("image must be a PNG or JPEG file"))
	if _, err := e.svc.SetImage(ctx, c.Partner.ID, draft.ID, png); !errs.Is(errs.Invalid, err) {
		t.Fatalf("SetImage with a refused image = %v, want the catalog's Invalid", err)
	}
	e.cat.fail = nil
	if _, err := e.svc.SetImage(ctx, c.Partner.ID, draft.ID, png); err != nil {
		t.Fatalf("SetImage after a failed one: %v", err)
	}
	// Live stock from the catalog, newest first.
	e.cat.stock[p.ProductID] = 2
	list, err := e.svc.Products(ctx, c.Partner.ID)
	if err != nil || len(list) != 2 || list[0].ID != draft.ID || list[1].Stock != 2 {
		t.Fatalf("Products = %+v, %v", list, err)
	}
	if list, _ := e.svc.Products(ctx, other.Partner.ID); len(list) != 0 {
		t.Fatalf("another partner's products = %+v", list)
	}
}

func TestSetWebhook(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	c, _ := e.svc.Create(ctx, "Acme", "")
	wh, err := e.svc.SetWebhook(ctx, c.Partner.ID, "https://acme.example/hooks")
	if err != nil || wh.URL != "https://acme.example/hooks" || !strings.HasPrefix(wh.Secret, partner.SecretPrefix) {
		t.Fatalf("SetWebhook = %+v, %v", wh, err)
	}
	got, err := e.svc.Webhook(ctx, c.Partner.ID)
	if err != nil || got.URL != wh.URL || got.Secret != "" {
		t.Fatalf("Webhook = %+v, %v (the secret is shown once)", got, err)
	}
	again, _ := e.svc.SetWebhook(ctx, c.Partner.ID, "https://acme.example/hooks")
	if again.Secret == wh.Secret {
		t.Error("setting the webhook again kept the secret")
	}
	if _, err := e.svc.SetWebhook(ctx, c.Partner.ID, "javascript:alert(1)"); !errs.Is(errs.Invalid, err) {
		t.Errorf("SetWebhook(bad URL) = %v, want Invalid", err)
	}
	d, err := e.svc.Dispatch(ctx, "whd_nope")
	if !errs.Is(errs.NotFound, err) {
		t.Errorf("Dispatch(unknown) = %+v, %v", d, err)
	}
}

func event(t *testing.T, subject, id string, data any) bus.Event {
	t.Helper()
	b, err := json.Marshal(data)
	if err != nil {
		t.Fatal(err)
	}
	return bus.Event{ID: id, Type: subject, Time: t0, Data: b}
}

func ready(t *testing.T, productID, id string, at time.Time) bus.Event {
	return event(t, partner.SubjectThumbnailsReady, id, catalog.ThumbnailsReady{ProductID: productID,
		Thumbnails: map[string]string{"small": "products/" + productID + "/small.jpg"}, ReadyAt: at})
}

func placed(t *testing.T, orderID string, lines map[string]int) bus.Event {
	t.Helper()
	var items []map[string]any
	for id, q := range lines {
		items = append(items, map[string]any{"product_id": id, "name": "n", "quantity": q,
			"unit_price": money.USD(100), "line_total": money.USD(int64(100 * q))})
	}
	return event(t, partner.SubjectOrderPlaced, orderID, map[string]any{"order": map[string]any{"id": orderID, "items": items, "updated_at": t0}})
}

func outboxCount(t *testing.T, db *sqldb.DB) int {
	t.Helper()
	var n int
	if err := db.QueryRowContext(context.Background(), `SELECT COUNT(*) FROM outbox WHERE subject = ?`, partner.SubjectWebhookJob).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestHandleEvents(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	c, p := e.listed(t, "https://acme.example/hooks")
	// item.ready, once however often delivered.
	for i, want := range []bool{true, false} {
		fresh, err := e.svc.Apply(ctx, ready(t, p.ProductID, "r1", t0))
		if err != nil || fresh != want {
			t.Fatalf("Apply ready #%d = %v, %v", i+1, fresh, err)
		}
	}
	// Not a partner's product: nothing.
	if _, err := e.svc.Apply(ctx, ready(t, "prd_shop", "r2", t0)); err != nil {
		t.Fatal(err)
	}
	// item.sold: the partner's line only.
	if _, err := e.svc.Apply(ctx, placed(t, "ord_1", map[string]int{p.ProductID: 2, "prd_shop": 1})); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Apply(ctx, placed(t, "ord_1", map[string]int{p.ProductID: 2})); err != nil { // redelivered
		t.Fatal(err)
	}
	if _, err := e.svc.Apply(ctx, placed(t, "ord_2", map[string]int{"prd_shop": 1})); err != nil {
		t.Fatal(err)
	}
	ds, err := e.svc.Deliveries(ctx, c.Partner.ID, 0)
	if err != nil || len(ds) != 2 {
		t.Fatalf("Deliveries = %+v, %v", ds, err)
	}
	if n := outboxCount(t, e.db); n != 2 || e.kicks != 2 {
		t.Fatalf("%d jobs in the outbox, %d kicks; want 2 and 2", n, e.kicks)
	}
	var sold, rdy partner.WebhookBody
	for _, d := range ds {
		var b partner.WebhookBody
		if err := json.Unmarshal(d.Payload, &b); err != nil || b.ID != d.ID || d.Status != partner.StatusPending {
			t.Fatalf("delivery %+v: %v", d, err)
		}
		if d.EventType == partner.EventItemSold {
			sold = b
		} else {
			rdy = b
		}
	}
	if s := fmt.Sprint(sold.Data); !strings.Contains(s, "ord_1") || !strings.Contains(s, p.ProductID) || strings.Contains(s, "prd_shop") {
		t.Errorf("item.sold data = %s", s)
	}
	if s := fmt.Sprint(rdy.Data); !strings.Contains(s, "/media/products/"+p.ProductID+"/small.jpg") || !strings.Contains(s, p.ID) {
		t.Errorf("item.ready data = %s", s)
	}
	rep, err := e.svc.Sales(ctx, c.Partner.ID, 0)
	if err != nil || rep.Units != 2 || rep.Revenue != money.USD(200) || len(rep.Sales) != 1 || !rep.Complete {
		t.Fatalf("Sales = %+v, %v", rep, err)
	}
	list, _ := e.svc.Products(ctx, c.Partner.ID)
	if list[0].Status != partner.ProductReady || list[0].Thumbnails["small"] == "" {
		t.Fatalf("product after ready = %+v", list[0])
	}
	// A partner without a webhook URL: the delivery is logged as failed,
	// nothing enqueued.
	c2, p2 := e.listed(t, "")
	if _, err := e.svc.Apply(ctx, ready(t, p2.ProductID, "r3", t0)); err != nil {
		t.Fatal(err)
	}
	ds, _ = e.svc.Deliveries(ctx, c2.Partner.ID, 0)
	if len(ds) != 1 || ds[0].Status != partner.StatusFailed || outboxCount(t, e.db) != 2 {
		t.Fatalf("deliveries without a URL = %+v", ds)
	}
	// Undecodable and foreign events are dead letters.
	for _, ev := range []bus.Event{
		{ID: "x", Type: partner.SubjectOrderPlaced, Data: json.RawMessage(`{"order":"nope"}`)},
		{ID: "y", Type: "globo.nobody.nothing", Data: json.RawMessage(`{}`)},
	} {
		if err := e.svc.Handle(ctx, ev); !bus.IsPermanent(err) {
			t.Errorf("Handle(%s) = %v, want a permanent failure", ev.Type, err)
		}
	}
}

// TestReadyWhileListing: thumbnails may be made before SetImage recorded
// which catalog product it listed; the event is retried meanwhile, not
// taken as another seller's.
func TestReadyWhileListing(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	c, _ := e.svc.Create(ctx, "Acme", "https://acme.example/")
	p, _ := e.svc.CreateProduct(ctx, c.Partner.ID, partner.NewProduct{Name: "Lamp", Category: "home", Price: money.USD(100)})
	// An upload in flight: the catalog is listing the item right now.
	slow := &blockingCatalog{fakeCatalog: e.cat, entered: make(chan struct{}), release: make(chan struct{})}
	svc := partner.NewService(storeOf(t, e), slow, nil, e.clock)
	done := make(chan error, 1)
	go func() { _, err := svc.SetImage(ctx, c.Partner.ID, p.ID, png); done <- err }()
	<-slow.entered
	err := e.svc.Handle(ctx, ready(t, "prd_unknown", "r-early", t0))
	if !errs.Is(errs.Unavailable, err) {
		t.Fatalf("ready of an unknown product while a listing is in flight = %v, want a retry (Unavailable)", err)
	}
	// An old event is not held back.
	if err := e.svc.Handle(ctx, ready(t, "prd_unknown", "r-old", t0.Add(-time.Hour))); err != nil {
		t.Fatalf("old ready event = %v", err)
	}
	close(slow.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := e.svc.Handle(ctx, ready(t, "prd_unknown", "r-late", t0)); err != nil {
		t.Fatalf("ready of an unknown product with no listing in flight = %v", err)
	}
}

type blockingCatalog struct {
	*fakeCatalog
	entered, release chan struct{}
}

func (b *blockingCatalog) ListItem(ctx context.Context, it catalog.NewItem) (catalog.Product, error) {
	close(b.entered)
	<-b.release
	return b.fakeCatalog.ListItem(ctx, it)
}

func storeOf(t *testing.T, e *env) *partnerdb.Store {
	t.Helper()
	st, err := partnerdb.Open(context.Background(), e.db)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestRecordAttempt(t *testing.T) {
	e := newEnv(t, partner.WithMaxAttempts(3))
	ctx := context.Background()
	c, p := e.listed(t, "https://acme.example/")
	for i := range 4 {
		if _, err := e.svc.Apply(ctx, placed(t, fmt.Sprintf("ord_%d", i), map[string]int{p.ProductID: 1})); err != nil {
			t.Fatal(err)
		}
	}
	ds, _ := e.svc.Deliveries(ctx, c.Partner.ID, 0)
	if len(ds) != 4 {
		t.Fatalf("%d deliveries", len(ds))
	}
	rec := func(id string, a partner.Attempt) partner.Delivery {
		t.Helper()
		d, err := e.svc.RecordAttempt(ctx, id, a)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	// 5xx then 2xx: delivered on the second attempt.
	d := rec(ds[0].ID, partner.Attempt{StatusCode: 503, Duration: 5 * time.Millisecond})
	if d.Status != partner.StatusPending || d.Attempts != 1 || d.NextAttemptAt == nil || !d.NextAttemptAt.Equal(t0.Add(partner.RetryDelay(1))) {
		t.Fatalf("after a 503: %+v", d)
	}
	d = rec(ds[0].ID, partner.Attempt{StatusCode: 204})
	if d.Status != partner.StatusDelivered || d.Attempts != 2 || d.NextAttemptAt != nil || d.LastStatusCode != 204 {
		t.Fatalf("after a 204: %+v", d)
	}
	// A late duplicate attempt changes nothing.
	if d = rec(ds[0].ID, partner.Attempt{StatusCode: 500}); d.Status != partner.StatusDelivered || d.Attempts != 2 {
		t.Fatalf("attempt after delivery: %+v", d)
	}
	// 4xx: refused at once; 429 is retried.
	if d = rec(ds[1].ID, partner.Attempt{StatusCode: 410}); d.Status != partner.StatusRefused || d.Attempts != 1 {
		t.Fatalf("after a 410: %+v", d)
	}
	if d = rec(ds[2].ID, partner.Attempt{StatusCode: 429}); d.Status != partner.StatusPending {
		t.Fatalf("after a 429: %+v", d)
	}
	// Timeouts up to the limit: failed.
	for i := 1; i <= 3; i++ {
		d = rec(ds[3].ID, partner.Attempt{Error: "timed out", Duration: 10 * time.Second})
	}
	if d.Status != partner.StatusFailed || d.Attempts != 3 || d.LastError != "timed out" || d.LastDurationMS != 10000 {
		t.Fatalf("after 3 timeouts: %+v", d)
	}
	disp, err := e.svc.Dispatch(ctx, ds[2].ID)
	if err != nil || disp.URL != "https://acme.example/" || !strings.HasPrefix(disp.Secret, partner.SecretPrefix) || disp.Delivery.Status != partner.StatusPending {
		t.Fatalf("Dispatch = %+v, %v", disp, err)
	}
}
