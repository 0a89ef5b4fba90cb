package checkoutdb_test

import (
	"context"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/checkout"
	"github.com/globomantics/globomantics/internal/checkout/checkoutdb"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func started(user, key, orderID string) checkout.Attempt {
	return checkout.Attempt{UserID: user, Key: key, OrderID: orderID, RequestHash: "h-" + orderID,
		State: checkout.AttemptStarted, CreatedAt: t0, UpdatedAt: t0}
}

// TestStore is the conformance suite of checkout.Store, run on every backend.
func TestStore(t *testing.T) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s *checkoutdb.Store)
	}{
		{"BeginCreatesOnce", testBeginOnce},
		{"KeysAreScopedToUsers", testScoped},
		{"FinishSuccess", testFinishSuccess},
		{"FinishKeepsEveryErrorKind", testFinishErrorKinds},
		{"FinishTwiceKeepsFirstOutcome", testFinishTwice},
		{"FinishUnknown", testFinishUnknown},
		{"ConcurrentBeginOneWinner", testConcurrentBegin},
		{"RestartRetryable", testRestartRetryable},
		{"RestartOnlyRetryable", testRestartOnlyRetryable},
	}
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					db := b.Open(t)
					s := open(t, db)
					tc.fn(t, s)
					if _, err := checkoutdb.Open(context.Background(), db); err != nil {
						t.Errorf("second Open: %v", err)
					}
				})
			}
		})
	}
}

func open(t *testing.T, db *sqldb.DB) *checkoutdb.Store {
	t.Helper()
	s, err := checkoutdb.Open(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustBegin(t *testing.T, s *checkoutdb.Store, a checkout.Attempt) checkout.Attempt {
	t.Helper()
	got, created, err := s.Begin(context.Background(), a)
	if err != nil || !created {
		t.Fatalf("Begin = created %v, %v", created, err)
	}
	return got
}

func testBeginOnce(t *testing.T, s *checkoutdb.Store) {
	a := started("usr_1", "key-1", "ord_1")
	if got := mustBegin(t, s, a); !reflect.DeepEqual(got, a) {
		t.Errorf("Begin returned %+v, want %+v", got, a)
	}
	second := started("usr_1", "key-1", "ord_2")
	second.CreatedAt = t0.Add(time.Hour)
	got, created, err := s.Begin(context.Background(), second)
	if err != nil {
		t.Fatal(err)
	}
	if created || !reflect.DeepEqual(got, a) {
		t.Errorf("second Begin = %+v created %v, want the first attempt, not created", got, created)
	}
}

func testScoped(t *testing.T, s *checkoutdb.Store) {
	mustBegin(t, s, started("usr_1", "key-1", "ord_1"))
	got := mustBegin(t, s, started("usr_2", "key-1", "ord_2"))
	if got.OrderID != "ord_2" {
		t.Errorf("another user's attempt with the same key = %+v", got)
	}
}

func testFinishSuccess(t *testing.T, s *checkoutdb.Store) {
	ctx := context.Background()
	mustBegin(t, s, started("usr_1", "key-1", "ord_1"))
	if err := s.Finish(ctx, "usr_1", "key-1", checkout.Outcome{}, t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	got, _, err := s.Begin(ctx, started("usr_1", "key-1", "ord_x"))
	if err != nil {
		t.Fatal(err)
	}
	want := started("usr_1", "key-1", "ord_1")
	want.State, want.UpdatedAt = checkout.AttemptFinished, t0.Add(time.Second)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("finished attempt = %+v\nwant %+v", got, want)
	}
}

func testFinishErrorKinds(t *testing.T, s *checkoutdb.Store) {
	ctx := context.Background()
	kinds := []errs.Kind{errs.Other, errs.BadRequest, errs.Declined, errs.NotFound, errs.Conflict, errs.Invalid, errs.Unavailable}
	for i, k := range kinds {
		key := fmt.Sprintf("key-%d", i)
		mustBegin(t, s, started("usr_1", key, fmt.Sprintf("ord_%d", i)))
		out := checkout.Outcome{Failed: true, ErrKind: k, ErrDetail: "detail of " + k.Title()}
		if err := s.Finish(ctx, "usr_1", key, out, t0); err != nil {
			t.Fatal(err)
		}
		got, _, err := s.Begin(ctx, started("usr_1", key, "ord_x"))
		if err != nil {
			t.Fatal(err)
		}
		if got.State != checkout.AttemptFinished || got.Outcome != out {
			t.Errorf("kind %v: stored %+v, want %+v", k, got.Outcome, out)
		}
	}
}

func testFinishTwice(t *testing.T, s *checkoutdb.Store) {
	ctx := context.Background()
	mustBegin(t, s, started("usr_1", "key-1", "ord_1"))
	first := checkout.Outcome{Failed: true, ErrKind: errs.Declined, ErrDetail: "card declined"}
	if err := s.Finish(ctx, "usr_1", "key-1", first, t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := s.Finish(ctx, "usr_1", "key-1", checkout.Outcome{}, t0.Add(time.Minute)); err != nil {
		t.Fatalf("second Finish: %v", err)
	}
	got, _, _ := s.Begin(ctx, started("usr_1", "key-1", "ord_x"))
	if got.Outcome != first || !got.UpdatedAt.Equal(t0.Add(time.Second)) {
		t.Errorf("after a second Finish: %+v, want the first outcome kept", got)
	}
}

func testFinishUnknown(t *testing.T, s *checkoutdb.Store) {
	err := s.Finish(context.Background(), "usr_1", "nope", checkout.Outcome{}, t0)
	if !errs.Is(errs.NotFound, err) {
		t.Errorf("Finish unknown = %v, want NotFound", err)
	}
}

func testConcurrentBegin(t *testing.T, s *checkoutdb.Store) {
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		winners int
		orders  = map[string]bool{}
	)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, created, err := s.Begin(context.Background(), started("usr_1", "key-1", fmt.Sprintf("ord_%d", i)))
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if created {
				winners++
			}
			orders[got.OrderID] = true
		}()
	}
	wg.Wait()
	if winners != 1 || len(orders) != 1 {
		t.Errorf("%d Begins created, %d order ids seen; want exactly one", winners, len(orders))
	}
}

func testRestartRetryable(t *testing.T, s *checkoutdb.Store) {
	ctx := context.Background()
	mustBegin(t, s, started("usr_1", "key-1", "ord_1"))
	out := checkout.Outcome{Failed: true, ErrKind: errs.Unavailable, ErrDetail: "shipping is down", Retryable: true}
	if err := s.Finish(ctx, "usr_1", "key-1", out, t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Get(ctx, "usr_1", "key-1"); !reflect.DeepEqual(got.Outcome, out) {
		t.Fatalf("outcome = %+v, want %+v", got.Outcome, out)
	}
	// Of concurrent restarts, exactly one wins.
	var wins atomic.Int32
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, err := s.Restart(ctx, "usr_1", "key-1", fmt.Sprintf("ord_r%d", i), t0.Add(time.Minute))
			if err != nil {
				t.Error(err)
			}
			if ok {
				wins.Add(1)
			}
		}()
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("%d restarts won, want 1", wins.Load())
	}
	got, err := s.Get(ctx, "usr_1", "key-1")
	if err != nil {
		t.Fatal(err)
	}
	if got.State != checkout.AttemptStarted || got.OrderID == "ord_1" || got.Outcome != (checkout.Outcome{}) || got.RequestHash != "h-ord_1" {
		t.Errorf("restarted attempt = %+v", got)
	}
	// A started attempt is not restarted again.
	if ok, err := s.Restart(ctx, "usr_1", "key-1", "ord_x", t0.Add(time.Hour)); ok || err != nil {
		t.Errorf("restart of a started attempt = %v, %v", ok, err)
	}
}

func testRestartOnlyRetryable(t *testing.T, s *checkoutdb.Store) {
	ctx := context.Background()
	for i, out := range []checkout.Outcome{
		{},
		{Failed: true, ErrKind: errs.Declined, ErrDetail: "card declined"},
		{Failed: true, ErrKind: errs.Unavailable, ErrDetail: "rollback incomplete"},
	} {
		key := fmt.Sprintf("key-%d", i)
		mustBegin(t, s, started("usr_1", key, "ord_"+key))
		if err := s.Finish(ctx, "usr_1", key, out, t0); err != nil {
			t.Fatal(err)
		}
		if ok, err := s.Restart(ctx, "usr_1", key, "ord_new", t0); ok || err != nil {
			t.Errorf("outcome %+v: restart = %v, %v; want false", out, ok, err)
		}
		if got, _ := s.Get(ctx, "usr_1", key); got.OrderID != "ord_"+key || got.State != checkout.AttemptFinished {
			t.Errorf("outcome %+v: attempt changed to %+v", out, got)
		}
	}
	if _, err := s.Restart(ctx, "usr_1", "nope", "ord_new", t0); !errs.Is(errs.NotFound, err) {
		t.Errorf("restart of an unknown attempt: %v", err)
	}
}
