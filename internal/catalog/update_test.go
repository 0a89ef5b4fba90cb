package catalog_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/catalog"
	"github.com/globomantics/globomantics/internal/platform/blob"
	"github.com/globomantics/globomantics/internal/platform/bus"
	"github.com/globomantics/globomantics/internal/platform/cache"
	"github.com/globomantics/globomantics/internal/platform/clock"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/money"
	"github.com/globomantics/globomantics/internal/platform/outbox"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

func ptr[T any](v T) *T { return &v }

func newBlobs(t *testing.T) *blob.FS {
	t.Helper()
	blobs, err := blob.NewFS(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return blobs
}

func (e *env) changedCount(t *testing.T) int {
	t.Helper()
	var n int
	if err := e.db.QueryRowContext(context.Background(), `SELECT COUNT(*) FROM outbox WHERE subject = ?`, catalog.SubjectProductChanged).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// testUpdateProduct is UpdateProduct's contract, in process and over HTTP.
func testUpdateProduct(t *testing.T, e *env) {
	ctx := context.Background()
	p := e.list(t, newItem(t, "Teapot", "home", 5))
	if p.Version != 1 {
		t.Fatalf("a new product is at version %d, want 1", p.Version)
	}
	if _, err := e.api.GetProduct(ctx, p.ID); err != nil { // cached, in the cached mode
		t.Fatal(err)
	}
	kicks := e.kicks.Load()

	got, err := e.api.UpdateProduct(ctx, p.ID, catalog.ProductChange{Price: &money.Money{Amount: 1500}, IfVersion: 1})
	if err != nil {
		t.Fatal(err)
	}
	want := p
	want.Price, want.Version = money.USD(1500), 2
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("UpdateProduct = %+v, want %+v", got, want)
	}
	// The next read shows the change at once, cache or not.
	read, err := e.api.GetProduct(ctx, p.ID)
	if err != nil || fmt.Sprint(read) != fmt.Sprint(want) {
		t.Fatalf("GetProduct after the change = %+v, %v; want %+v", read, err, want)
	}
	if n, k := e.changedCount(t), e.kicks.Load(); n != 1 || k != kicks+1 {
		t.Fatalf("ProductChanged rows %d, kicks %d; want 1 and %d", n, k, kicks+1)
	}

	// Name, description, category and stock, trimmed as ListItem trims.
	got, err = e.api.UpdateProduct(ctx, p.ID, catalog.ProductChange{
		Name: ptr("  Big Teapot "), Description: ptr(" For six. "), Category: ptr("books"), Stock: ptr(9),
	})
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != "Big Teapot" || got.Description != "For six." || got.Category != "books" || got.Stock != 9 ||
		got.Price != money.USD(1500) || got.Version != 3 {
		t.Fatalf("UpdateProduct = %+v", got)
	}
	if read, err := e.api.GetProduct(ctx, p.ID); err != nil || read.Name != "Big Teapot" || read.Stock != 9 || read.Version != 3 {
		t.Fatalf("GetProduct = %+v, %v", read, err)
	}
	// A change against an old version is refused and changes nothing.
	_, err = e.api.UpdateProduct(ctx, p.ID, catalog.ProductChange{Price: ptr(money.USD(1)), IfVersion: 2})
	wantKind(t, "stale version", err, errs.Conflict)
	if read, err := e.api.GetProduct(ctx, p.ID); err != nil || read.Price != money.USD(1500) || read.Version != 3 {
		t.Fatalf("GetProduct after a refused change = %+v, %v", read, err)
	}
	// Stock set under reservations: they keep what they hold.
	if err := e.api.ReserveStock(ctx, "res-1", []catalog.Line{{ProductID: p.ID, Quantity: 4}}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := e.api.UpdateProduct(ctx, p.ID, catalog.ProductChange{Stock: ptr(1)}); err != nil {
		t.Fatal(err)
	}
	e.wantLevel(t, p.ID, 1, 4, 0)
	if e.stock(t, p.ID) != 1 {
		t.Fatalf("stock = %d, want 1", e.stock(t, p.ID))
	}
}

// testUpdateProductInvalid: every refusal, with nothing written.
func testUpdateProductInvalid(t *testing.T, e *env) {
	ctx := context.Background()
	p := e.list(t, newItem(t, "Teapot", "home", 5))
	cases := []struct {
		name   string
		ch     catalog.ProductChange
		kind   errs.Kind
		detail string
	}{
		{"nothing", catalog.ProductChange{}, errs.Invalid, "nothing to change: give name, description, category, price or stock"},
		{"empty name", catalog.ProductChange{Name: ptr(" ")}, errs.Invalid, "name must not be empty"},
		{"long name", catalog.ProductChange{Name: ptr(strings.Repeat("x", 201))}, errs.Invalid, "name must be at most 200 characters"},
		{"control characters", catalog.ProductChange{Name: ptr("a\nb")}, errs.Invalid, "name must not contain control characters"},
		{"long description", catalog.ProductChange{Description: ptr(strings.Repeat("x", 5001))}, errs.Invalid, "description must be at most 5000 characters"},
		{"negative price", catalog.ProductChange{Price: ptr(money.USD(-1))}, errs.Invalid, "price must be positive"},
		{"zero price", catalog.ProductChange{Price: ptr(money.USD(0))}, errs.Invalid, "price must be positive"},
		{"huge price", catalog.ProductChange{Price: ptr(money.USD(catalog.MaxPrice + 1))}, errs.Invalid, "price must be at most $1,000,000.00"},
		{"other currency", catalog.ProductChange{Price: &money.Money{Amount: 5, Currency: "EUR"}}, errs.Invalid, "price must be in USD"},
		{"negative stock", catalog.ProductChange{Stock: ptr(-1)}, errs.Invalid, "stock must not be negative"},
		{"empty category", catalog.ProductChange{Category: ptr("")}, errs.Invalid, "category must not be empty"},
		{"unknown category", catalog.ProductChange{Category: ptr("garden")}, errs.Invalid, `unknown category "garden"`},
		{"one bad field of two", catalog.ProductChange{Name: ptr("Fine"), Price: ptr(money.USD(-1))}, errs.Invalid, "price must be positive"},
		{"negative version", catalog.ProductChange{Name: ptr("Fine"), IfVersion: -1}, errs.Invalid, "version must not be negative"},
		{"stale version", catalog.ProductChange{Name: ptr("Fine"), IfVersion: 7}, errs.Conflict, "the product was changed meanwhile: it is at version 1, not 7"},
	}
	for _, tc := range cases {
		_, err := e.api.UpdateProduct(ctx, p.ID, tc.ch)
		wantKind(t, tc.name, err, tc.kind)
		if d := errs.Detail(err); d != tc.detail {
			t.Errorf("%s: detail %q, want %q", tc.name, d, tc.detail)
		}
	}
	for _, id := range []string{"prd_missing", ""} {
		_, err := e.api.UpdateProduct(ctx, id, catalog.ProductChange{Name: ptr("x")})
		wantKind(t, fmt.Sprintf("UpdateProduct(%q)", id), err, errs.NotFound)
	}
	if got, err := e.api.GetProduct(ctx, p.ID); err != nil || fmt.Sprint(got) != fmt.Sprint(p) {
		t.Fatalf("product after refused changes = %+v, %v; want %+v", got, err, p)
	}
	if n := e.changedCount(t); n != 0 {
		t.Fatalf("refused changes wrote %d events", n)
	}
}

// TestUpdateProductHTTP checks what only PATCH can get wrong: strict bodies,
// ETag and If-Match, and the status of each refusal.
func TestUpdateProductHTTP(t *testing.T) {
	e := newEnv(t, true, false)
	p := e.list(t, newItem(t, "Teapot", "home", 5))
	url := e.server.URL + catalog.PathPrefix + "products/"
	do := func(method, id, ifMatch, body string) (int, http.Header, string) {
		t.Helper()
		req, err := http.NewRequest(method, url+id, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		if ifMatch != "" {
			req.Header.Set("If-Match", ifMatch)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(b)
	}
	st, h, _ := do("GET", p.ID, "", "")
	if st != 200 || h.Get("ETag") != `"v1"` {
		t.Fatalf("GET: %d, ETag %q; want 200, \"v1\"", st, h.Get("ETag"))
	}
	for _, tc := range []struct {
		name, id, ifMatch, body string
		status                  int
	}{
		{"unknown field", p.ID, "", `{"price":{"amount":100},"colour":"red"}`, 400},
		{"bad json", p.ID, "", `{"price":`, 400},
		{"wrong type", p.ID, "", `{"stock":"many"}`, 400},
		{"version in the body", p.ID, "", `{"name":"x","version":1}`, 400},
		{"negative price", p.ID, "", `{"price":{"amount":-100,"currency":"USD"}}`, 422},
		{"empty name", p.ID, "", `{"name":""}`, 422},
		{"empty body", p.ID, "", `{}`, 422},
		{"unknown product", "prd_nope", "", `{"name":"x"}`, 404},
		{"weak etag", p.ID, `W/"v1"`, `{"name":"x"}`, 400},
		{"foreign etag", p.ID, `"abc"`, `{"name":"x"}`, 400},
		{"two etags", p.ID, `"v1", "v2"`, `{"name":"x"}`, 400},
		{"stale etag", p.ID, `"v2"`, `{"name":"x"}`, 409},
	} {
		st, h, body := do("PATCH", tc.id, tc.ifMatch, tc.body)
		if st != tc.status {
			t.Errorf("%s: status %d, want %d: %s", tc.name, st, tc.status, body)
			continue
		}
		if ct := h.Get("Content-Type"); ct != "application/problem+json" {
			t.Errorf("%s: content type %q, want problem+json", tc.name, ct)
		}
	}
	// A change with the right ETag: 200, the product and its new ETag.
	st, h, body := do("PATCH", p.ID, `"v1"`, `{"price":{"amount":1234,"currency":"USD"},"name":"Tea Pot"}`)
	var got catalog.Product
	if st != 200 || json.Unmarshal([]byte(body), &got) != nil || got.Price != money.USD(1234) || got.Name != "Tea Pot" || got.Version != 2 {
		t.Fatalf("PATCH: %d %s", st, body)
	}
	if h.Get("ETag") != `"v2"` {
		t.Fatalf("PATCH ETag %q, want \"v2\"", h.Get("ETag"))
	}
	// "*" matches any version; no If-Match at all too.
	if st, h, body := do("PATCH", p.ID, "*", `{"stock":3}`); st != 200 || h.Get("ETag") != `"v3"` {
		t.Fatalf("PATCH If-Match *: %d %q %s", st, h.Get("ETag"), body)
	}
	if st, _, body := do("PATCH", p.ID, `"v1"`, `{"stock":4}`); st != 409 {
		t.Fatalf("PATCH with the first ETag again: %d %s", st, body)
	}
}

func TestParseIfMatch(t *testing.T) {
	for in, want := range map[string]int64{"": 0, "*": 0, ` "v7" `: 7, `"v1"`: 1, `"v9007199254740993"`: 9007199254740993} {
		if got, err := catalog.ParseIfMatch(in); err != nil || got != want {
			t.Errorf("ParseIfMatch(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{`"v0"`, `"v-1"`, `"v01"`, `v1`, `"v1`, `W/"v1"`, `"1"`, `"v1","v2"`, `"vx"`} {
		if _, err := catalog.ParseIfMatch(in); !errs.Is(errs.BadRequest, err) {
			t.Errorf("ParseIfMatch(%q) = %v, want BadRequest", in, err)
		}
	}
	if catalog.ETag(12) != `"v12"` {
		t.Errorf("ETag(12) = %s", catalog.ETag(12))
	}
}

// laggingStore is a store whose GetProduct (the bounded read, from a replica)
// still returns what frozen holds, as a replica that has not replayed the
// latest changes does; GetProducts reads the primary. With gate set, a
// GetProduct waits for it after reading, closing entered first.
type laggingStore struct {
	catalog.Store
	mu      sync.Mutex
	frozen  map[string]catalog.Record
	gate    chan struct{}
	entered chan struct{}
	reads   int // GetProducts calls, the reads of the primary
}

func (s *laggingStore) freeze(t *testing.T, id string) {
	t.Helper()
	r, err := s.Store.GetProduct(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.frozen[id] = r
}

func (s *laggingStore) GetProduct(ctx context.Context, id string) (catalog.Record, error) {
	s.mu.Lock()
	r, ok := s.frozen[id]
	gate, entered := s.gate, s.entered
	s.mu.Unlock()
	var err error
	if !ok {
		r, err = s.Store.GetProduct(ctx, id)
	}
	if gate != nil {
		close(entered)
		<-gate
	}
	return r, err
}

func (s *laggingStore) GetProducts(ctx context.Context, ids []string) ([]catalog.Record, error) {
	s.mu.Lock()
	s.reads++
	s.mu.Unlock()
	return s.Store.GetProducts(ctx, ids)
}

func changedEvent(t *testing.T, id string, version int64) bus.Event {
	t.Helper()
	b, err := json.Marshal(catalog.ProductChanged{ProductID: id, Version: version, Changed: []string{catalog.FieldPrice}})
	if err != nil {
		t.Fatal(err)
	}
	return bus.Event{ID: fmt.Sprintf("%s/v%d", id, version), Type: catalog.SubjectProductChanged, Data: b}
}

// TestProductChangedWithLaggingReplica: once an instance knows of a change
// (its own, or another's by the event), it serves no older copy: not one
// that a load racing the change read, not one another instance that has not
// heard of the change yet put in a shared cache, not one a replica that has
// not caught up returns.
func TestProductChangedWithLaggingReplica(t *testing.T) {
	ctx := context.Background()
	db := testenv.SQLite(t)
	a := cachedService(t, openStore(t, db), cache.NewMemory(clock.Real{}, 100), nil)
	shared := cache.NewMemory(clock.Real{}, 100) // as Redis is
	lagB := &laggingStore{Store: openStore(t, db), frozen: map[string]catalog.Record{}}
	lagC := &laggingStore{Store: openStore(t, db), frozen: map[string]catalog.Record{}}
	b := cachedService(t, lagB, shared, nil)
	c := cachedService(t, lagC, shared, nil)
	p := listOne(t, a, 5)
	lagB.freeze(t, p.ID)
	lagC.freeze(t, p.ID)

	// b starts a load that reads the replica's old row and is slow to
	// finish; a changes the price and b hears of it meanwhile.
	gate := make(chan struct{})
	lagB.gate, lagB.entered = gate, make(chan struct{})
	first := make(chan catalog.Product, 1)
	go func() {
		got, err := b.GetProduct(ctx, p.ID)
		if err != nil {
			t.Error(err)
		}
		first <- got
	}()
	<-lagB.entered
	lagB.mu.Lock()
	lagB.gate = nil
	lagB.mu.Unlock()
	if _, err := a.UpdateProduct(ctx, p.ID, catalog.ProductChange{Price: ptr(money.USD(4321))}); err != nil {
		t.Fatal(err)
	}
	if err := b.HandleProductChanged(ctx, changedEvent(t, p.ID, 2)); err != nil {
		t.Fatal(err)
	}
	close(gate)
	if got := <-first; got.Price != money.USD(4321) || got.Version != 2 {
		t.Fatalf("the load that read the old row after b heard of the change returned %+v; want the new price, from the primary", got)
	}
	if lagB.reads != 1 {
		t.Fatalf("b read the primary %d times, want 1", lagB.reads)
	}

	// Another product: c, which has not heard of its change yet (or whose
	// load raced it), put the old copy in the shared cache. b, which has,
	// does not serve that copy, nor the replica's old row.
	q := listOne(t, a, 7)
	lagB.freeze(t, q.ID)
	lagC.freeze(t, q.ID)
	if got, err := c.GetProduct(ctx, q.ID); err != nil || got.Price != money.USD(1999) {
		t.Fatalf("c before the change: %+v, %v", got, err)
	}
	if _, err := a.UpdateProduct(ctx, q.ID, catalog.ProductChange{Price: ptr(money.USD(1234))}); err != nil {
		t.Fatal(err)
	}
	if err := b.HandleProductChanged(ctx, changedEvent(t, q.ID, 2)); err != nil {
		t.Fatal(err)
	}
	got, err := b.GetProduct(ctx, q.ID)
	if err != nil || got.Price != money.USD(1234) || got.Version != 2 {
		t.Fatalf("b with the old copy in the shared cache: %+v, %v; want $12.34 at version 2", got, err)
	}
	if lagB.reads != 2 {
		t.Fatalf("b read the primary %d times, want 2", lagB.reads)
	}
	// b's load put the new copy in the shared cache: once c hears of the
	// change, it serves that (a hit), without reading the primary.
	if err := c.HandleProductChanged(ctx, changedEvent(t, q.ID, 2)); err != nil {
		t.Fatal(err)
	}
	before := c.CacheStats()
	if got, err := c.GetProduct(ctx, q.ID); err != nil || got.Price != money.USD(1234) {
		t.Fatalf("c after the event: %+v, %v", got, err)
	}
	if after := c.CacheStats(); after.Hits != before.Hits+1 || lagC.reads != 0 {
		t.Fatalf("c after the event: stats %+v then %+v, %d primary reads", before, after, lagC.reads)
	}

	// Events an instance cannot use are dropped without an error, and
	// change nothing.
	for _, ev := range []bus.Event{
		{ID: "x", Type: catalog.SubjectItemListed, Data: []byte(`{"product_id":"` + p.ID + `"}`)},
		{ID: "y", Type: catalog.SubjectProductChanged, Data: []byte(`{"product_id":`)},
		{ID: "z", Type: catalog.SubjectProductChanged, Data: []byte(`{"version":3}`)},
	} {
		if err := b.HandleProductChanged(ctx, ev); err != nil {
			t.Errorf("event %s: %v", ev.ID, err)
		}
	}
	if got, err := b.GetProduct(ctx, p.ID); err != nil || got.Version != 2 {
		t.Fatalf("b after unusable events: %+v, %v", got, err)
	}
}

// TestPriceChangeReachesEveryInstance runs two instances, each with its own
// in-process cache (the default without Redis) and its own durable consumer
// of the embedded broker, the way the app wires them, and an outbox relay:
// a price change on one is served by the other within a second.
func TestPriceChangeReachesEveryInstance(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	db := testenv.SQLite(t)
	b := testenv.Bus(t)
	relay := outbox.NewRelay(db, b, testenv.Logger(t))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); relay.Run(ctx) }()
	t.Cleanup(func() { cancel(); wg.Wait() })

	blobs := newBlobs(t)
	mk := func(name string) *catalog.Service {
		svc := catalog.NewService(openStore(t, db), blobs, relay.Kick, nil,
			catalog.WithCache(cache.NewMemory(clock.Real{}, 100), time.Hour), catalog.WithLogger(testenv.Logger(t)))
		if err := b.Subscribe(ctx, "catalog-"+name, []string{catalog.SubjectProductChanged}, svc.HandleProductChanged,
			bus.ForgetAfter(time.Hour)); err != nil {
			t.Fatal(err)
		}
		return svc
	}
	one, two := mk("one"), mk("two")
	p := listOne(t, one, 5)
	for _, svc := range []*catalog.Service{one, two} {
		for range 2 { // the second read is a hit
			if _, err := svc.GetProduct(ctx, p.ID); err != nil {
				t.Fatal(err)
			}
		}
	}
	if st := two.CacheStats(); st.Hits != 1 {
		t.Fatalf("two's stats %+v, want one hit", st)
	}

	var worst time.Duration
	for i, price := range []int64{1500, 1490, 1600} {
		start := time.Now()
		changer, other := one, two
		if i%2 == 1 {
			changer, other = two, one
		}
		if _, err := changer.UpdateProduct(ctx, p.ID, catalog.ProductChange{Price: ptr(money.USD(price))}); err != nil {
			t.Fatal(err)
		}
		if got, err := changer.GetProduct(ctx, p.ID); err != nil || got.Price != money.USD(price) {
			t.Fatalf("the changing instance reads %+v, %v right after the change", got, err)
		}
		testenv.CheckFor(t, time.Second, func() error {
			got, err := other.GetProduct(ctx, p.ID)
			if err != nil {
				return err
			}
			if got.Price != money.USD(price) {
				return fmt.Errorf("the other instance serves %v, want %v", got.Price, money.USD(price))
			}
			return nil
		})
		worst = max(worst, time.Since(start))
	}
	t.Logf("a price change reached the other instance's cache within %v (worst of 3)", worst)
}
