package paymentdb_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/payment"
	"github.com/globomantics/globomantics/internal/payment/paymentdb"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/ids"
	"github.com/globomantics/globomantics/internal/platform/money"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestStore is the conformance suite of paymentdb.Store, run against every
// backend.
func TestStore(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			open := func(t *testing.T) *paymentdb.Store {
				t.Helper()
				st, err := paymentdb.Open(context.Background(), b.Open(t))
				if err != nil {
					t.Fatal(err)
				}
				return st
			}
			t.Run("create and get", func(t *testing.T) { testCreateGet(t, open(t)) })
			t.Run("one payment per order", func(t *testing.T) { testOnePerOrder(t, open(t)) })
			t.Run("update", func(t *testing.T) { testUpdate(t, open(t)) })
			t.Run("concurrent creates", func(t *testing.T) { testConcurrentCreates(t, open(t)) })
			t.Run("concurrent updates", func(t *testing.T) { testConcurrentUpdates(t, open(t)) })
			t.Run("migrations are idempotent", func(t *testing.T) {
				db := b.Open(t)
				for i := 0; i < 2; i++ {
					if _, err := paymentdb.Open(context.Background(), db); err != nil {
						t.Fatalf("Open #%d: %v", i+1, err)
					}
				}
			})
		})
	}
}

var t0 = time.Date(2031, 5, 17, 10, 30, 15, 123_000_000, time.UTC)

// entry is the ledger entry of kind for p, of its whole amount.
func entry(p payment.Payment, kind string) payment.Entry {
	return payment.Entry{ID: ids.New("led", t0), PaymentID: p.ID, OrderID: p.OrderID, Kind: kind, Amount: p.Amount, CreatedAt: t0}
}

// create stores p with its authorization entry.
func create(ctx context.Context, st *paymentdb.Store, p payment.Payment) error {
	return st.Create(ctx, p, entry(p, payment.KindAuthorization))
}

func newPayment(orderID string) payment.Payment {
	return payment.Payment{
		ID:        ids.New("pay", t0),
		OrderID:   orderID,
		Amount:    money.USD(12_345),
		Status:    payment.StatusAuthorized,
		CardLast4: "4242",
		CreatedAt: t0,
		UpdatedAt: t0,
	}
}

func testCreateGet(t *testing.T, st *paymentdb.Store) {
	ctx := context.Background()
	p := newPayment("ord_1")
	if err := create(ctx, st, p); err != nil {
		t.Fatal(err)
	}
	got, err := st.Get(ctx, p.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got != p {
		t.Errorf("Get = %+v, want %+v", got, p)
	}
	got, err = st.GetByOrder(ctx, "ord_1")
	if err != nil {
		t.Fatal(err)
	}
	if got != p {
		t.Errorf("GetByOrder = %+v, want %+v", got, p)
	}
	if _, err := st.Get(ctx, "pay_missing"); !errs.Is(errs.NotFound, err) {
		t.Errorf("Get(unknown) err = %v, want NotFound", err)
	}
	if _, err := st.GetByOrder(ctx, "ord_missing"); !errs.Is(errs.NotFound, err) {
		t.Errorf("GetByOrder(unknown) err = %v, want NotFound", err)
	}
}

func testOnePerOrder(t *testing.T, st *paymentdb.Store) {
	ctx := context.Background()
	p := newPayment("ord_1")
	if err := create(ctx, st, p); err != nil {
		t.Fatal(err)
	}
	dup := newPayment("ord_1")
	dup.Amount = money.USD(1)
	dup.Status = payment.StatusDeclined
	if err := create(ctx, st, dup); !errs.Is(errs.Conflict, err) {
		t.Fatalf("second Create for the order: err = %v, want Conflict", err)
	}
	if _, err := st.Get(ctx, dup.ID); !errs.Is(errs.NotFound, err) {
		t.Errorf("the rejected payment was stored: %v", err)
	}
	if got, err := st.GetByOrder(ctx, "ord_1"); err != nil || got != p {
		t.Errorf("GetByOrder = %+v, %v; want the first payment unchanged", got, err)
	}
	// Same id, other order: also a conflict.
	again := p
	again.OrderID = "ord_2"
	if err := create(ctx, st, again); !errs.Is(errs.Conflict, err) {
		t.Errorf("Create with a taken id: err = %v, want Conflict", err)
	}
}

func testUpdate(t *testing.T, st *paymentdb.Store) {
	ctx := context.Background()
	p := newPayment("ord_1")
	if err := create(ctx, st, p); err != nil {
		t.Fatal(err)
	}
	later := t0.Add(time.Hour)
	got, err := st.Update(ctx, p.ID, func(x *payment.Payment) (*payment.Entry, error) {
		if *x != p {
			return nil, fmt.Errorf("fn got %+v, want %+v", *x, p)
		}
		x.Status, x.UpdatedAt = payment.StatusCaptured, later
		e := entry(*x, payment.KindCapture)
		return &e, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := p
	want.Status, want.UpdatedAt = payment.StatusCaptured, later
	if got != want {
		t.Errorf("Update = %+v, want %+v", got, want)
	}
	if stored, _ := st.Get(ctx, p.ID); stored != want {
		t.Errorf("after Update, Get = %+v, want %+v", stored, want)
	}

	// No entry: nothing is written, whatever fn changed.
	got, err = st.Update(ctx, p.ID, func(x *payment.Payment) (*payment.Entry, error) {
		x.Status = payment.StatusRefunded
		return nil, nil
	})
	if err != nil || got != want {
		t.Errorf("Update without an entry = %+v, %v; want %+v unchanged", got, err, want)
	}
	// A second entry of a kind is a conflict and writes nothing.
	_, err = st.Update(ctx, p.ID, func(x *payment.Payment) (*payment.Entry, error) {
		x.Status = payment.StatusRefunded
		e := entry(*x, payment.KindCapture)
		return &e, nil
	})
	if !errs.Is(errs.Conflict, err) {
		t.Errorf("Update with a second capture entry: err = %v, want Conflict", err)
	}
	if stored, _ := st.Get(ctx, p.ID); stored != want {
		t.Errorf("Update without an entry changed the payment: %+v", stored)
	}
	if l, err := st.Ledger(ctx, p.ID); err != nil || len(l) != 2 || l[0].Kind != payment.KindAuthorization || l[1].Kind != payment.KindCapture {
		t.Errorf("Ledger = %+v, %v; want authorization, capture", l, err)
	}

	// An error from fn writes nothing and keeps its kind.
	_, err = st.Update(ctx, p.ID, func(x *payment.Payment) (*payment.Entry, error) {
		x.Status = payment.StatusRefunded
		e := entry(*x, payment.KindRefund)
		return &e, errs.E(errs.Conflict, errs.Msg("nope"))
	})
	if !errs.Is(errs.Conflict, err) || errs.Detail(err) != "nope" {
		t.Errorf("Update with failing fn: err = %v, want Conflict \"nope\"", err)
	}
	if stored, _ := st.Get(ctx, p.ID); stored != want {
		t.Errorf("failed Update changed the payment: %+v", stored)
	}

	called := false
	_, err = st.Update(ctx, "pay_missing", func(*payment.Payment) (*payment.Entry, error) { called = true; return nil, nil })
	if !errs.Is(errs.NotFound, err) || called {
		t.Errorf("Update(unknown): err = %v, fn called = %v; want NotFound, not called", err, called)
	}
}

func testConcurrentCreates(t *testing.T, st *paymentdb.Store) {
	ctx := context.Background()
	const n = 8
	var wg sync.WaitGroup
	results := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = create(ctx, st, newPayment("ord_race"))
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

// testConcurrentUpdates checks Update serialises read-modify-write: every
// fn captures the payment if it is still authorized, so an update that read
// a stale payment would write a second capture entry and fail.
func testConcurrentUpdates(t *testing.T, st *paymentdb.Store) {
	ctx := context.Background()
	p := newPayment("ord_1")
	if err := create(ctx, st, p); err != nil {
		t.Fatal(err)
	}
	const n = 10
	var wg sync.WaitGroup
	var mu sync.Mutex
	changed := 0
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := st.Update(ctx, p.ID, func(x *payment.Payment) (*payment.Entry, error) {
				if x.Status != payment.StatusAuthorized {
					return nil, nil
				}
				x.Status = payment.StatusCaptured
				e := entry(*x, payment.KindCapture)
				mu.Lock()
				changed++
				mu.Unlock()
				return &e, nil
			})
			if err != nil {
				t.Errorf("Update: %v", err)
			}
		}()
	}
	wg.Wait()
	if got, _ := st.Get(ctx, p.ID); got.Status != payment.StatusCaptured {
		t.Errorf("after %d concurrent captures, Status = %q", n, got.Status)
	}
	if l, err := st.Ledger(ctx, p.ID); err != nil || len(l) != 2 {
		t.Errorf("Ledger = %+v, %v; want 2 entries", l, err)
	}
}
