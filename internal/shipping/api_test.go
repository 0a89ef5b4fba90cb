package shipping_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/platform/clock"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/httpx"
	"github.com/globomantics/globomantics/internal/platform/money"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
	"github.com/globomantics/globomantics/internal/platform/testenv"
	"github.com/globomantics/globomantics/internal/shipping"
	"github.com/globomantics/globomantics/internal/shipping/shippingdb"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// fixture is the API under test (the service, or a client of it over HTTP)
// with the store and clock behind it.
type fixture struct {
	api   shipping.API
	store *shippingdb.Store
	db    *sqldb.DB
	clk   *clock.Fake
	url   string // the HTTP server's URL, in http mode
}

var now0 = time.Date(2030, 3, 15, 9, 0, 0, 0, time.UTC)

func newFixture(t *testing.T, overHTTP bool) fixture {
	t.Helper()
	db := testenv.SQLite(t)
	st, err := shippingdb.Open(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	f := fixture{store: st, db: db, clk: clock.NewFake(now0)}
	svc := shipping.NewService(st, f.clk)
	f.api = svc
	if overHTTP {
		srv := httptest.NewServer(shipping.NewHandler(svc))
		t.Cleanup(srv.Close)
		f.url = srv.URL
		f.api = shipping.NewClient(httpx.NewClient("shipping", []string{srv.URL}, nil))
	}
	return f
}

// TestAPI runs the contract suite against *Service and against *Client over
// HTTP.
func TestAPI(t *testing.T) {
	for _, mode := range []struct {
		name     string
		overHTTP bool
	}{{"service", false}, {"http", true}} {
		t.Run(mode.name, func(t *testing.T) {
			mk := func(t *testing.T) fixture { return newFixture(t, mode.overHTTP) }
			t.Run("quote", func(t *testing.T) { testQuote(t, mk(t)) })
			t.Run("invalid requests", func(t *testing.T) { testInvalid(t, mk(t)) })
			t.Run("create shipment", func(t *testing.T) { testCreate(t, mk(t)) })
			t.Run("cancel", func(t *testing.T) { testCancel(t, mk(t)) })
			t.Run("cancel for order", func(t *testing.T) { testCancelForOrder(t, mk(t)) })
			t.Run("unknown shipment", func(t *testing.T) { testUnknown(t, mk(t)) })
			t.Run("concurrent creates", func(t *testing.T) { testConcurrent(t, mk(t)) })
		})
	}
}

func addr(country string) shipping.Address {
	return shipping.Address{Name: "Grace Hopper", Line1: "1 Navy Way", City: "Arlington", Region: "VA", PostalCode: "22201", Country: country}
}

func wantKind(t *testing.T, what string, err error, k errs.Kind) {
	t.Helper()
	if !errs.Is(k, err) {
		t.Errorf("%s: err = %v (%v), want %v", what, err, errs.KindOf(err), k)
	}
}

func testQuote(t *testing.T, f fixture) {
	ctx := context.Background()
	for _, tc := range []struct {
		country string
		items   int
		want    int64
	}{
		{"US", 1, 500},
		{"US", 3, 700},
		{" us ", 2, 600},
		{"FR", 1, 1500},
		{"fr", 3, 2000},
		{"JP", shipping.MaxItems, 1500 + 250*(shipping.MaxItems-1)},
	} {
		got, err := f.api.Quote(ctx, addr(tc.country), tc.items)
		if err == nil {
			// The country alone gets the same quote.
			var only money.Money
			only, err = f.api.Quote(ctx, shipping.Address{Country: tc.country}, tc.items)
			if err == nil && only != got {
				t.Errorf("Quote(country %q only, %d) = %v, want %v", tc.country, tc.items, only, got)
			}
		}
		if err != nil {
			t.Errorf("Quote(%q, %d): %v", tc.country, tc.items, err)
			continue
		}
		if got != money.USD(tc.want) {
			t.Errorf("Quote(%q, %d) = %v, want %v", tc.country, tc.items, got, money.USD(tc.want))
		}
	}
}

// badAddresses are addresses Quote and CreateShipment must refuse.
func badAddresses() map[string]shipping.Address {
	with := func(mod func(a *shipping.Address)) shipping.Address { a := addr("US"); mod(&a); return a }
	long := strings.Repeat("x", shipping.MaxFieldLen+1)
	return map[string]shipping.Address{
		"empty name":       with(func(a *shipping.Address) { a.Name = "" }),
		"blank line1":      with(func(a *shipping.Address) { a.Line1 = "  \t" }),
		"empty city":       with(func(a *shipping.Address) { a.City = "" }),
		"empty postcode":   with(func(a *shipping.Address) { a.PostalCode = "" }),
		"empty country":    with(func(a *shipping.Address) { a.Country = "" }),
		"three letters":    with(func(a *shipping.Address) { a.Country = "USA" }),
		"digit in country": with(func(a *shipping.Address) { a.Country = "U1" }),
		"non-ASCII":        with(func(a *shipping.Address) { a.Country = "ÜS" }),
		"long name":        with(func(a *shipping.Address) { a.Name = long }),
		"long line1":       with(func(a *shipping.Address) { a.Line1 = long }),
		"control char":     with(func(a *shipping.Address) { a.City = "Arling\x00ton" }),
		"newline inside":   with(func(a *shipping.Address) { a.Line1 = "1 Navy\nWay" }),
	}
}

func testInvalid(t *testing.T, f fixture) {
	ctx := context.Background()
	for name, a := range badAddresses() {
		_, err := f.api.Quote(ctx, a, 1)
		if strings.HasPrefix(name, "empty") && name != "empty country" || name == "blank line1" {
			// A quote needs only the country.
			if err != nil {
				t.Errorf("Quote, %s: %v, want a quote", name, err)
			}
		} else {
			wantKind(t, "Quote, "+name, err, errs.Invalid)
		}
		_, err = f.api.CreateShipment(ctx, "ord_1", a, 1)
		wantKind(t, "CreateShipment, "+name, err, errs.Invalid)
	}
	for _, n := range []int{0, -1, shipping.MaxItems + 1} {
		_, err := f.api.Quote(ctx, addr("US"), n)
		wantKind(t, fmt.Sprintf("Quote, %d items", n), err, errs.Invalid)
		_, err = f.api.CreateShipment(ctx, "ord_1", addr("US"), n)
		wantKind(t, fmt.Sprintf("CreateShipment, %d items", n), err, errs.Invalid)
	}
	for _, id := range []string{"", "   ", strings.Repeat("o", shipping.MaxOrderIDLen+1)} {
		_, err := f.api.CreateShipment(ctx, id, addr("US"), 1)
		wantKind(t, fmt.Sprintf("CreateShipment(order %q)", id), err, errs.Invalid)
	}
	// None of it was recorded.
	var n int
	if err := f.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM shipments`).Scan(&n); err != nil || n != 0 {
		t.Errorf("shipments after invalid requests: %d, %v; want 0", n, err)
	}
	// Exactly MaxFieldLen characters (not bytes) is fine.
	a := addr("US")
	a.Name = strings.Repeat("é", shipping.MaxFieldLen)
	if _, err := f.api.CreateShipment(ctx, "ord_1", a, 1); err != nil {
		t.Errorf("name of %d characters: %v", shipping.MaxFieldLen, err)
	}
}

var trackingRE = regexp.MustCompile(`^GLB[A-Z2-7]{12}$`)

func testCreate(t *testing.T, f fixture) {
	ctx := context.Background()
	messy := shipping.Address{Name: "  Grace Hopper ", Line1: "1 Navy Way\t", City: " Arlington", Region: " VA ", PostalCode: "22201 ", Country: "us"}
	sh, err := f.api.CreateShipment(ctx, "ord_1", messy, 3)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(sh.ID, "shp_") || sh.OrderID != "ord_1" || sh.Status != shipping.StatusCreated ||
		!trackingRE.MatchString(sh.TrackingNumber) || sh.Cost != money.USD(700) || sh.Address != addr("US") ||
		!sh.CreatedAt.Equal(now0) {
		t.Errorf("CreateShipment = %+v", sh)
	}
	if got, err := f.api.GetShipment(ctx, sh.ID); err != nil || got != sh {
		t.Errorf("GetShipment = %+v, %v; want %+v", got, err, sh)
	}

	// A repeat for the order, however spelled, returns the same shipment.
	f.clk.Advance(time.Hour)
	for _, a := range []shipping.Address{messy, addr("US")} {
		again, err := f.api.CreateShipment(ctx, "ord_1", a, 3)
		if err != nil || again != sh {
			t.Errorf("repeat CreateShipment = %+v, %v; want %+v", again, err, sh)
		}
	}
	// One to another address, or of another size, is a conflict.
	_, err = f.api.CreateShipment(ctx, "ord_1", addr("CA"), 3)
	wantKind(t, "repeat to another address", err, errs.Conflict)
	_, err = f.api.CreateShipment(ctx, "ord_1", addr("US"), 4)
	wantKind(t, "repeat of another size", err, errs.Conflict)
	if got, _ := f.api.GetShipment(ctx, sh.ID); got != sh {
		t.Errorf("conflicting repeats changed the shipment: %+v", got)
	}

	// Other orders get their own shipments and tracking numbers.
	seen := map[string]bool{sh.TrackingNumber: true}
	for i := 2; i <= 6; i++ {
		o, err := f.api.CreateShipment(ctx, fmt.Sprintf("ord_%d", i), addr("DE"), 1)
		if err != nil {
			t.Fatal(err)
		}
		if o.ID == sh.ID || seen[o.TrackingNumber] || !trackingRE.MatchString(o.TrackingNumber) || o.Cost != money.USD(1500) {
			t.Errorf("shipment for ord_%d = %+v", i, o)
		}
		seen[o.TrackingNumber] = true
	}
}

func testCancel(t *testing.T, f fixture) {
	ctx := context.Background()
	sh, err := f.api.CreateShipment(ctx, "ord_1", addr("US"), 1)
	if err != nil {
		t.Fatal(err)
	}
	cancelled, err := f.api.CancelShipment(ctx, sh.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := sh
	want.Status = shipping.StatusCancelled
	if cancelled != want {
		t.Errorf("CancelShipment = %+v, want %+v", cancelled, want)
	}
	if again, err := f.api.CancelShipment(ctx, sh.ID); err != nil || again != want {
		t.Errorf("second CancelShipment = %+v, %v; want a no-op", again, err)
	}
	if got, _ := f.api.GetShipment(ctx, sh.ID); got != want {
		t.Errorf("GetShipment = %+v, want %+v", got, want)
	}
	// The order keeps its (cancelled) shipment: creating again is refused
	// (a late, in-flight create must not look like a success).
	_, err = f.api.CreateShipment(ctx, "ord_1", addr("US"), 1)
	wantKind(t, "CreateShipment after cancel", err, errs.Conflict)
	if d := errs.Detail(err); d != "the order's shipment was cancelled" {
		t.Errorf("detail = %q", d)
	}
	if got, _ := f.api.GetShipment(ctx, sh.ID); got != want {
		t.Errorf("GetShipment = %+v, want %+v", got, want)
	}
}

func testCancelForOrder(t *testing.T, f fixture) {
	ctx := context.Background()
	// After the create: the shipment is cancelled, idempotently.
	sh, err := f.api.CreateShipment(ctx, "ord_1", addr("US"), 1)
	if err != nil {
		t.Fatal(err)
	}
	want := sh
	want.Status = shipping.StatusCancelled
	for range 2 {
		if got, err := f.api.CancelForOrder(ctx, "ord_1"); err != nil || got != want {
			t.Fatalf("CancelForOrder = %+v, %v; want %+v", got, err, want)
		}
	}
	if got, err := f.api.GetShipment(ctx, sh.ID); err != nil || got != want {
		t.Fatalf("GetShipment = %+v, %v; want %+v", got, err, want)
	}
	_, err = f.api.CreateShipment(ctx, "ord_1", addr("US"), 1)
	wantKind(t, "CreateShipment after CancelForOrder", err, errs.Conflict)

	// Before the create: a tombstone with no id; the create is refused and
	// creates nothing.
	none := shipping.Shipment{OrderID: "ord_2", Status: shipping.StatusCancelled, CreatedAt: now0}
	for range 2 {
		if got, err := f.api.CancelForOrder(ctx, "ord_2"); err != nil || got != none {
			t.Fatalf("CancelForOrder of an order without shipment = %+v, %v; want %+v", got, err, none)
		}
		f.clk.Advance(time.Minute)
	}
	_, err = f.api.CreateShipment(ctx, "ord_2", addr("US"), 1)
	wantKind(t, "CreateShipment after CancelForOrder of no shipment", err, errs.Conflict)
	if d := errs.Detail(err); d != "the order's shipment was cancelled" {
		t.Errorf("detail = %q", d)
	}
	var count int
	if err := f.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM shipments WHERE tombstone = 0`).Scan(&count); err != nil || count != 1 {
		t.Errorf("shipments = %d, %v; want only ord_1's", count, err)
	}
	for _, id := range []string{"", strings.Repeat("x", shipping.MaxOrderIDLen+1)} {
		_, err := f.api.CancelForOrder(ctx, id)
		wantKind(t, fmt.Sprintf("CancelForOrder(%.10q)", id), err, errs.Invalid)
	}

	// Racing: whichever wins, nothing stays shippable.
	const n = 10
	var wg sync.WaitGroup
	for i := range n {
		id := fmt.Sprintf("ord_race_%d", i)
		wg.Add(2)
		go func() {
			defer wg.Done()
			if _, err := f.api.CreateShipment(ctx, id, addr("US"), 1); err != nil && !errs.Is(errs.Conflict, err) {
				t.Error(err)
			}
		}()
		go func() {
			defer wg.Done()
			if got, err := f.api.CancelForOrder(ctx, id); err != nil || got.Status != shipping.StatusCancelled {
				t.Errorf("CancelForOrder = %+v, %v", got, err)
			}
		}()
	}
	wg.Wait()
	if err := f.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM shipments WHERE status <> ?`, shipping.StatusCancelled).Scan(&count); err != nil || count != 0 {
		t.Errorf("%d shipments left uncancelled after the races, %v", count, err)
	}
}

func testUnknown(t *testing.T, f fixture) {
	ctx := context.Background()
	for _, id := range []string{"shp_nope", "", "a/b"} {
		_, err := f.api.GetShipment(ctx, id)
		wantKind(t, fmt.Sprintf("GetShipment(%q)", id), err, errs.NotFound)
		_, err = f.api.CancelShipment(ctx, id)
		wantKind(t, fmt.Sprintf("CancelShipment(%q)", id), err, errs.NotFound)
	}
}

func testConcurrent(t *testing.T, f fixture) {
	ctx := context.Background()
	const n = 8
	var wg sync.WaitGroup
	got := make([]shipping.Shipment, n)
	errList := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], errList[i] = f.api.CreateShipment(ctx, "ord_race", addr("US"), 2)
		}()
	}
	wg.Wait()
	for i := range n {
		if errList[i] != nil {
			t.Fatalf("concurrent CreateShipment: %v", errList[i])
		}
		if got[i] != got[0] {
			t.Errorf("concurrent CreateShipment #%d = %+v, want %+v", i, got[i], got[0])
		}
	}
	var count int
	if err := f.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM shipments`).Scan(&count); err != nil || count != 1 {
		t.Errorf("shipments rows = %d, %v; want 1", count, err)
	}
}

// TestHTTPIdempotencyKey checks the shipments endpoint refuses a key that is
// not the order id.
func TestHTTPIdempotencyKey(t *testing.T) {
	f := newFixture(t, true)
	body := `{"order_id":"ord_1","address":{"name":"G","line1":"1 Way","city":"X","postal_code":"1","country":"US"},"items":1}`
	post := func(key string) int {
		r, _ := http.NewRequest(http.MethodPost, f.url+"/svc/shipping/v1/shipments", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Idempotency-Key", key)
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if s := post("ord_2"); s != http.StatusBadRequest {
		t.Errorf("mismatched key: status %d, want 400", s)
	}
	if _, err := f.store.GetByOrder(context.Background(), "ord_1"); !errs.Is(errs.NotFound, err) {
		t.Errorf("rejected request recorded a shipment: %v", err)
	}
	if s := post("ord_1"); s != http.StatusOK {
		t.Errorf("matching key: status %d, want 200", s)
	}
}
