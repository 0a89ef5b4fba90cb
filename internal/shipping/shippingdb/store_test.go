package shippingdb_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/ids"
	"github.com/globomantics/globomantics/internal/platform/money"
	"github.com/globomantics/globomantics/internal/platform/testenv"
	"github.com/globomantics/globomantics/internal/shipping"
	"github.com/globomantics/globomantics/internal/shipping/shippingdb"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestStore is the conformance suite of shippingdb.Store, run against every
// backend.
func TestStore(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			open := func(t *testing.T) *shippingdb.Store {
				t.Helper()
				st, err := shippingdb.Open(context.Background(), b.Open(t))
				if err != nil {
					t.Fatal(err)
				}
				return st
			}
			t.Run("create and get", func(t *testing.T) { testCreateGet(t, open(t)) })
			t.Run("unique order, id and tracking number", func(t *testing.T) { testUnique(t, open(t)) })
			t.Run("update", func(t *testing.T) { testUpdate(t, open(t)) })
			t.Run("concurrent creates", func(t *testing.T) { testConcurrentCreates(t, open(t)) })
			t.Run("cancel by order before create", func(t *testing.T) { testCancelBeforeCreate(t, open(t)) })
			t.Run("cancel by order after create", func(t *testing.T) { testCancelAfterCreate(t, open(t)) })
			t.Run("cancel by order races create", func(t *testing.T) { testCancelRacesCreate(t, open(t)) })
			t.Run("migrations are idempotent", func(t *testing.T) {
				db := b.Open(t)
				for i := 0; i < 2; i++ {
					if _, err := shippingdb.Open(context.Background(), db); err != nil {
						t.Fatalf("Open #%d: %v", i+1, err)
					}
				}
			})
		})
	}
}

var t0 = time.Date(2031, 5, 17, 10, 30, 15, 123_000_000, time.UTC)

var seq int

func newShipment(orderID string) shipping.Shipment {
	seq++
	return shipping.Shipment{
		ID:             ids.New("shp", t0),
		OrderID:        orderID,
		Status:         shipping.StatusCreated,
		TrackingNumber: fmt.Sprintf("GLBTEST%08d", seq),
		Cost:           money.USD(700),
		Address:        shipping.Address{Name: "Ada Lovelace", Line1: "12 Ockham Road", City: "Zürich", Region: "ZH", PostalCode: "8001", Country: "CH"},
		CreatedAt:      t0,
	}
}

func testCreateGet(t *testing.T, st *shippingdb.Store) {
	ctx := context.Background()
	sh := newShipment("ord_1")
	if err := st.Create(ctx, sh); err != nil {
		t.Fatal(err)
	}
	if got, err := st.Get(ctx, sh.ID); err != nil || got != sh {
		t.Errorf("Get = %+v, %v; want %+v", got, err, sh)
	}
	if got, err := st.GetByOrder(ctx, "ord_1"); err != nil || got != sh {
		t.Errorf("GetByOrder = %+v, %v; want %+v", got, err, sh)
	}
	if _, err := st.Get(ctx, "shp_missing"); !errs.Is(errs.NotFound, err) {
		t.Errorf("Get(unknown) err = %v, want NotFound", err)
	}
	if _, err := st.GetByOrder(ctx, "ord_missing"); !errs.Is(errs.NotFound, err) {
		t.Errorf("GetByOrder(unknown) err = %v, want NotFound", err)
	}
}

func testUnique(t *testing.T, st *shippingdb.Store) {
	ctx := context.Background()
	sh := newShipment("ord_1")
	if err := st.Create(ctx, sh); err != nil {
		t.Fatal(err)
	}
	sameOrder := newShipment("ord_1")
	sameID := newShipment("ord_2")
	sameID.ID = sh.ID
	sameTracking := newShipment("ord_3")
	sameTracking.TrackingNumber = sh.TrackingNumber
	for name, dup := range map[string]shipping.Shipment{"order": sameOrder, "id": sameID, "tracking number": sameTracking} {
		if err := st.Create(ctx, dup); !errs.Is(errs.Conflict, err) {
			t.Errorf("Create with a taken %s: err = %v, want Conflict", name, err)
		}
	}
	for _, o := range []string{"ord_2", "ord_3"} {
		if _, err := st.GetByOrder(ctx, o); !errs.Is(errs.NotFound, err) {
			t.Errorf("rejected shipment for %s was stored: %v", o, err)
		}
	}
	if got, _ := st.GetByOrder(ctx, "ord_1"); got != sh {
		t.Errorf("GetByOrder = %+v, want the first shipment unchanged", got)
	}
}

func testUpdate(t *testing.T, st *shippingdb.Store) {
	ctx := context.Background()
	sh := newShipment("ord_1")
	if err := st.Create(ctx, sh); err != nil {
		t.Fatal(err)
	}
	got, err := st.Update(ctx, sh.ID, func(x *shipping.Shipment) error {
		if *x != sh {
			return fmt.Errorf("fn got %+v, want %+v", *x, sh)
		}
		x.Status = shipping.StatusCancelled
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := sh
	want.Status = shipping.StatusCancelled
	if got != want {
		t.Errorf("Update = %+v, want %+v", got, want)
	}
	if stored, _ := st.Get(ctx, sh.ID); stored != want {
		t.Errorf("after Update, Get = %+v", stored)
	}

	_, err = st.Update(ctx, sh.ID, func(x *shipping.Shipment) error {
		x.Status = shipping.StatusCreated
		return errs.E(errs.Conflict, errs.Msg("nope"))
	})
	if !errs.Is(errs.Conflict, err) || errs.Detail(err) != "nope" {
		t.Errorf("Update with failing fn: err = %v, want Conflict \"nope\"", err)
	}
	if stored, _ := st.Get(ctx, sh.ID); stored != want {
		t.Errorf("failed Update changed the shipment: %+v", stored)
	}

	called := false
	_, err = st.Update(ctx, "shp_missing", func(*shipping.Shipment) error { called = true; return nil })
	if !errs.Is(errs.NotFound, err) || called {
		t.Errorf("Update(unknown): err = %v, fn called = %v; want NotFound, not called", err, called)
	}
}

func testConcurrentCreates(t *testing.T, st *shippingdb.Store) {
	ctx := context.Background()
	const n = 8
	shipments := make([]shipping.Shipment, n)
	for i := range shipments {
		shipments[i] = newShipment("ord_race")
	}
	var wg sync.WaitGroup
	results := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = st.Create(ctx, shipments[i])
		}()
	}
	wg.Wait()
	ok := 0
	for _, err := range results {
		switch {
		case err == nil:
			ok++
		case !errs.Is(errs.Conflict, err):
			t.Errorf("concurrent Create: %v", err)
		}
	}
	if ok != 1 {
		t.Errorf("%d concurrent Creates for one order succeeded, want 1", ok)
	}
}

func tombstone(orderID string, at time.Time) shipping.Shipment {
	return shipping.Shipment{OrderID: orderID, Status: shipping.StatusCancelled, CreatedAt: at}
}

func testCancelBeforeCreate(t *testing.T, st *shippingdb.Store) {
	ctx := context.Background()
	want := tombstone("ord_1", t0)
	for i := range 2 { // idempotent: the second keeps the first's time
		got, err := st.CancelByOrder(ctx, "ord_1", t0.Add(time.Duration(i)*time.Second))
		if err != nil || got != want {
			t.Fatalf("CancelByOrder #%d = %+v, %v; want %+v", i+1, got, err, want)
		}
	}
	if got, err := st.GetByOrder(ctx, "ord_1"); err != nil || got != want {
		t.Fatalf("GetByOrder of a tombstone = %+v, %v; want %+v", got, err, want)
	}
	// A later create for the order is refused, and records nothing.
	sh := newShipment("ord_1")
	if err := st.Create(ctx, sh); !errs.Is(errs.Conflict, err) {
		t.Fatalf("Create after CancelByOrder = %v, want Conflict", err)
	}
	if _, err := st.Get(ctx, sh.ID); !errs.Is(errs.NotFound, err) {
		t.Fatalf("the refused shipment was stored: %v", err)
	}
	// The tombstone is no shipment, whatever its internal id.
	for _, id := range []string{"", "void:ord_1"} {
		if _, err := st.Get(ctx, id); !errs.Is(errs.NotFound, err) {
			t.Errorf("Get(%q) = %v, want NotFound", id, err)
		}
		if _, err := st.Update(ctx, id, func(*shipping.Shipment) error { return nil }); !errs.Is(errs.NotFound, err) {
			t.Errorf("Update(%q) = %v, want NotFound", id, err)
		}
	}
	// Other orders are unaffected.
	if err := st.Create(ctx, newShipment("ord_2")); err != nil {
		t.Fatal(err)
	}
}

func testCancelAfterCreate(t *testing.T, st *shippingdb.Store) {
	ctx := context.Background()
	sh := newShipment("ord_1")
	if err := st.Create(ctx, sh); err != nil {
		t.Fatal(err)
	}
	want := sh
	want.Status = shipping.StatusCancelled
	for i := range 2 {
		got, err := st.CancelByOrder(ctx, "ord_1", t0.Add(time.Hour))
		if err != nil || got != want {
			t.Fatalf("CancelByOrder #%d = %+v, %v; want %+v", i+1, got, err, want)
		}
	}
	if got, err := st.Get(ctx, sh.ID); err != nil || got != want {
		t.Fatalf("Get = %+v, %v; want %+v", got, err, want)
	}
	if got, err := st.GetByOrder(ctx, "ord_1"); err != nil || got != want {
		t.Fatalf("GetByOrder = %+v, %v; want %+v", got, err, want)
	}
}

// testCancelRacesCreate: for each order a Create and a CancelByOrder run at
// once. Whichever wins, the order ends with its shipment cancelled: either
// the shipment was created and then cancelled, or the create was refused
// and the tombstone stands.
func testCancelRacesCreate(t *testing.T, st *shippingdb.Store) {
	ctx := context.Background()
	const n = 20
	shipments := make([]shipping.Shipment, n)
	for i := range shipments {
		shipments[i] = newShipment(fmt.Sprintf("ord_%d", i))
	}
	var wg sync.WaitGroup
	created := make([]error, n)
	cancelled := make([]shipping.Shipment, n)
	cancelErr := make([]error, n)
	for i := range n {
		wg.Add(2)
		go func() {
			defer wg.Done()
			created[i] = st.Create(ctx, shipments[i])
		}()
		go func() {
			defer wg.Done()
			cancelled[i], cancelErr[i] = st.CancelByOrder(ctx, shipments[i].OrderID, t0)
		}()
	}
	wg.Wait()
	wins := 0
	for i, sh := range shipments {
		if cancelErr[i] != nil {
			t.Fatalf("CancelByOrder: %v", cancelErr[i])
		}
		got, err := st.GetByOrder(ctx, sh.OrderID)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case created[i] == nil: // created first, then cancelled
			wins++
			want := sh
			want.Status = shipping.StatusCancelled
			if got != want || cancelled[i] != want {
				t.Errorf("%s: stored %+v, cancel returned %+v; want %+v", sh.OrderID, got, cancelled[i], want)
			}
		case errs.Is(errs.Conflict, created[i]): // the tombstone won
			want := tombstone(sh.OrderID, t0)
			if got != want || cancelled[i] != want {
				t.Errorf("%s: stored %+v, cancel returned %+v; want the tombstone", sh.OrderID, got, cancelled[i])
			}
		default:
			t.Errorf("Create: %v", created[i])
		}
	}
	t.Logf("%d of %d creates won the race", wins, n)
}
