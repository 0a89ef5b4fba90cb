package catalogdb_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/globomantics/globomantics/internal/catalog"
	"github.com/globomantics/globomantics/internal/catalog/catalogdb"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

// TestReservationLifecycle is the conformance suite of reservation expiry,
// commit and the stock audit, run against every backend.
func TestReservationLifecycle(t *testing.T) {
	for _, be := range testenv.Backends() {
		t.Run(be.Name, func(t *testing.T) {
			t.Parallel()
			tests := []struct {
				name string
				fn   func(t *testing.T, s *catalogdb.Store)
			}{
				{"ExpiryAndSweep", testExpiryAndSweep},
				{"CommitReleaseInterplay", testCommitReleaseInterplay},
				{"ConcurrentLastUnits", testConcurrentLastUnits},
				{"StockInvariant", testStockInvariant},
				{"ConcurrentSweepers", testConcurrentSweepers},
				{"CommitRacesSweeper", testCommitRacesSweeper},
			}
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					db := be.Open(t)
					s, err := catalogdb.Open(context.Background(), db)
					if err != nil {
						t.Fatal(err)
					}
					ensureCats(t, s)
					tc.fn(t, s)
				})
			}
		})
	}
}

func levels(t *testing.T, s *catalogdb.Store) map[string]catalog.StockLevel {
	t.Helper()
	ls, err := s.StockLevels(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]catalog.StockLevel{}
	for _, l := range ls {
		out[l.ProductID] = l
	}
	return out
}

func wantLevel(t *testing.T, s *catalogdb.Store, id string, stock, reserved, sold int) {
	t.Helper()
	got := levels(t, s)[id]
	want := catalog.StockLevel{ProductID: id, Stock: stock, Reserved: reserved, Sold: sold}
	if got != want {
		t.Fatalf("StockLevel(%s) = %+v, want %+v", id, got, want)
	}
}

// sweep releases every reservation expired at now, as the service does, and
// returns how many this call released.
func sweep(t *testing.T, s *catalogdb.Store, now time.Time) int {
	t.Helper()
	ctx := context.Background()
	n := 0
	for {
		ids, err := s.Expired(ctx, now, 7)
		if err != nil {
			t.Error(err)
			return n
		}
		for _, id := range ids {
			_, ok, err := s.ReleaseExpired(ctx, id, now)
			if err != nil {
				t.Error(err)
				return n
			}
			if ok {
				n++
			}
		}
		if len(ids) < 7 {
			return n
		}
	}
}

func testExpiryAndSweep(t *testing.T, s *catalogdb.Store) {
	ctx := context.Background()
	create(t, s, rec("prd_a", "home", 10))
	expiry := t0.Add(10 * time.Minute)
	if err := s.Reserve(ctx, "res_1", []catalog.Line{{ProductID: "prd_a", Quantity: 4}}, t0, expiry); err != nil {
		t.Fatal(err)
	}
	if err := s.Reserve(ctx, "res_2", []catalog.Line{{ProductID: "prd_a", Quantity: 1}}, t0, expiry.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	wantLevel(t, s, "prd_a", 5, 5, 0)
	// Not yet expired: nothing to sweep, and a conditional release does nothing.
	if ids, err := s.Expired(ctx, expiry.Add(-time.Millisecond), 10); err != nil || len(ids) != 0 {
		t.Fatalf("Expired before the expiry = %v, %v", ids, err)
	}
	if _, ok, err := s.ReleaseExpired(ctx, "res_1", expiry.Add(-time.Millisecond)); err != nil || ok {
		t.Fatalf("ReleaseExpired before the expiry = %v, %v", ok, err)
	}
	// At the expiry it is swept, once; res_2 lives a minute longer.
	ids, err := s.Expired(ctx, expiry, 10)
	if err != nil || fmt.Sprint(ids) != "[res_1]" {
		t.Fatalf("Expired at the expiry = %v, %v", ids, err)
	}
	lines, ok, err := s.ReleaseExpired(ctx, "res_1", expiry)
	if err != nil || !ok || fmt.Sprint(lines) != "[{prd_a 4}]" {
		t.Fatalf("ReleaseExpired = %v, %v, %v", lines, ok, err)
	}
	if _, ok, err := s.ReleaseExpired(ctx, "res_1", expiry); err != nil || ok {
		t.Fatalf("second ReleaseExpired = %v, %v", ok, err)
	}
	wantLevel(t, s, "prd_a", 9, 1, 0)
	// An expired reservation cannot be committed; releasing it is a no-op; a
	// repeat of its Reserve takes nothing.
	err = s.Commit(ctx, "res_1", expiry)
	if !errs.Is(errs.Conflict, err) || errs.Detail(err) != "the reservation has expired" {
		t.Fatalf("Commit of an expired reservation = %v, want Conflict: the reservation has expired", err)
	}
	if lines, err := s.Release(ctx, "res_1", expiry); err != nil || len(lines) != 0 {
		t.Fatalf("Release of an expired reservation = %v, %v", lines, err)
	}
	if err := s.Reserve(ctx, "res_1", []catalog.Line{{ProductID: "prd_a", Quantity: 4}}, expiry, expiry.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	wantLevel(t, s, "prd_a", 9, 1, 0)
	// Past its expiry but not swept yet: Commit refuses it all the same.
	later := expiry.Add(2 * time.Minute)
	err = s.Commit(ctx, "res_2", later)
	if !errs.Is(errs.Conflict, err) || errs.Detail(err) != "the reservation has expired" {
		t.Fatalf("Commit past the expiry = %v", err)
	}
	if n := sweep(t, s, later); n != 1 {
		t.Fatalf("sweep released %d, want 1", n)
	}
	wantLevel(t, s, "prd_a", 10, 0, 0)
}

func testCommitReleaseInterplay(t *testing.T, s *catalogdb.Store) {
	ctx := context.Background()
	create(t, s, rec("prd_a", "home", 10))
	reserve := func(id string, n int) {
		t.Helper()
		if err := s.Reserve(ctx, id, []catalog.Line{{ProductID: "prd_a", Quantity: n}}, t0, exp); err != nil {
			t.Fatal(err)
		}
	}
	reserve("res_sold", 3)
	for range 2 { // idempotent
		if err := s.Commit(ctx, "res_sold", t0); err != nil {
			t.Fatalf("Commit: %v", err)
		}
	}
	wantLevel(t, s, "prd_a", 7, 0, 3)
	// A committed reservation is never swept.
	if n := sweep(t, s, exp.Add(time.Hour)); n != 0 {
		t.Fatalf("sweep released %d committed reservations", n)
	}
	wantLevel(t, s, "prd_a", 7, 0, 3)
	// Even after its expiry, committing again is a no-op.
	if err := s.Commit(ctx, "res_sold", exp.Add(time.Hour)); err != nil {
		t.Fatalf("repeated Commit after the expiry: %v", err)
	}
	// Releasing it undoes the sale, once; then it cannot be committed.
	for range 2 {
		if _, err := s.Release(ctx, "res_sold", t0); err != nil {
			t.Fatalf("Release of a committed reservation: %v", err)
		}
	}
	wantLevel(t, s, "prd_a", 10, 0, 0)
	if err := s.Commit(ctx, "res_sold", t0); !errs.Is(errs.Conflict, err) {
		t.Fatalf("Commit after the release of a committed reservation = %v", err)
	}
	reserve("res_sold2", 3)
	if err := s.Commit(ctx, "res_sold2", t0); err != nil {
		t.Fatal(err)
	}
	wantLevel(t, s, "prd_a", 7, 0, 3)

	// A released reservation cannot be committed.
	reserve("res_back", 2)
	if _, err := s.Release(ctx, "res_back", t0); err != nil {
		t.Fatal(err)
	}
	err := s.Commit(ctx, "res_back", t0)
	if !errs.Is(errs.Conflict, err) || errs.Detail(err) != "the reservation was released" {
		t.Fatalf("Commit of a released reservation = %v", err)
	}
	wantLevel(t, s, "prd_a", 7, 0, 3)

	// An unknown reservation cannot be committed, and nothing is recorded:
	// the id can still reserve.
	if err := s.Commit(ctx, "res_new", t0); !errs.Is(errs.Conflict, err) {
		t.Fatalf("Commit of an unknown reservation = %v, want Conflict", err)
	}
	reserve("res_new", 1)
	wantLevel(t, s, "prd_a", 6, 1, 3)
	// A release remembered before its reserve: the reserve takes nothing and
	// commit refuses it.
	if _, err := s.Release(ctx, "res_late", t0); err != nil {
		t.Fatal(err)
	}
	reserve("res_late", 1)
	if err := s.Commit(ctx, "res_late", t0); !errs.Is(errs.Conflict, err) {
		t.Fatalf("Commit of a release tombstone = %v, want Conflict", err)
	}
	wantLevel(t, s, "prd_a", 6, 1, 3)
}

func testConcurrentLastUnits(t *testing.T, s *catalogdb.Store) {
	ctx := context.Background()
	create(t, s, rec("prd_a", "home", 10))
	const workers = 50
	var (
		wg       sync.WaitGroup
		ok       atomic.Int32
		mu       sync.Mutex
		failures []error
	)
	start := make(chan struct{})
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			err := s.Reserve(ctx, fmt.Sprintf("res_%d", i), []catalog.Line{{ProductID: "prd_a", Quantity: 1}}, t0, exp)
			if err == nil {
				ok.Add(1)
				return
			}
			mu.Lock()
			failures = append(failures, err)
			mu.Unlock()
		}()
	}
	close(start)
	wg.Wait()
	if ok.Load() != 10 {
		t.Fatalf("%d reservations succeeded, want 10", ok.Load())
	}
	for _, err := range failures {
		if !errs.Is(errs.Conflict, err) {
			t.Errorf("failure %v, want Conflict", err)
		}
	}
	wantLevel(t, s, "prd_a", 0, 10, 0)
}

// testStockInvariant runs reservations, commits, releases and sweeps of two
// products at once and checks that stock + reserved + sold stays the stock
// they were listed with.
func testStockInvariant(t *testing.T, s *catalogdb.Store) {
	ctx := context.Background()
	initial := map[string]int{"prd_a": 12, "prd_b": 7}
	for id, n := range initial {
		create(t, s, rec(id, "home", n))
	}
	check := func() {
		t.Helper()
		for id, l := range levels(t, s) {
			if l.Stock < 0 || l.Stock+l.Reserved+l.Sold != initial[id] {
				t.Fatalf("%s: %+v does not add up to %d", id, l, initial[id])
			}
		}
	}
	var wg sync.WaitGroup
	for i := range 24 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("res_%d", i)
			lines := []catalog.Line{{ProductID: "prd_a", Quantity: 1 + i%3}, {ProductID: "prd_b", Quantity: 1}}
			expiry := t0.Add(time.Duration(1+i%4) * time.Minute)
			if err := s.Reserve(ctx, id, lines, t0, expiry); err != nil {
				if !errs.Is(errs.Conflict, err) {
					t.Error(err)
				}
				return
			}
			var err error
			switch i % 4 {
			case 0:
				// A sweeper with a later clock may have released it first.
				if err = s.Commit(ctx, id, t0); errs.Is(errs.Conflict, err) {
					err = nil
				}
			case 1:
				_, err = s.Release(ctx, id, t0)
			case 2:
				err = s.Commit(ctx, id, t0.Add(time.Hour)) // too late
				if errs.Is(errs.Conflict, err) {
					err = nil
				}
			}
			if err != nil {
				t.Error(err)
			}
		}()
		if i%6 == 5 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sweep(t, s, t0.Add(time.Duration(i%5)*time.Minute))
			}()
		}
	}
	wg.Wait()
	check()
	sweep(t, s, t0.Add(time.Hour))
	check()
	for id, l := range levels(t, s) {
		if l.Reserved != 0 {
			t.Errorf("%s: %d units still reserved after every reservation expired", id, l.Reserved)
		}
	}
}

func testConcurrentSweepers(t *testing.T, s *catalogdb.Store) {
	ctx := context.Background()
	create(t, s, rec("prd_a", "home", 100))
	create(t, s, rec("prd_b", "home", 100))
	for i := range 30 {
		lines := []catalog.Line{{ProductID: "prd_a", Quantity: 2}, {ProductID: "prd_b", Quantity: 1}}
		if err := s.Reserve(ctx, fmt.Sprintf("res_%02d", i), lines, t0, t0.Add(time.Duration(i)*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	wantLevel(t, s, "prd_a", 40, 60, 0)
	var (
		wg    sync.WaitGroup
		total atomic.Int32
	)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			total.Add(int32(sweep(t, s, t0.Add(time.Minute))))
		}()
	}
	wg.Wait()
	if total.Load() != 30 {
		t.Fatalf("sweepers released %d reservations in all, want 30 (each once)", total.Load())
	}
	wantLevel(t, s, "prd_a", 100, 0, 0)
	wantLevel(t, s, "prd_b", 100, 0, 0)
}

// testCommitRacesSweeper: a commit just before the expiry (by its clock)
// and a sweep just after (by another instance's clock) race; exactly one
// wins, and the stock is either sold or back.
func testCommitRacesSweeper(t *testing.T, s *catalogdb.Store) {
	ctx := context.Background()
	create(t, s, rec("prd_a", "home", 40))
	const n = 20
	expiry := t0.Add(time.Minute)
	for i := range n {
		if err := s.Reserve(ctx, fmt.Sprintf("res_%d", i), []catalog.Line{{ProductID: "prd_a", Quantity: 2}}, t0, expiry); err != nil {
			t.Fatal(err)
		}
	}
	var (
		wg        sync.WaitGroup
		committed atomic.Int32
		swept     atomic.Int32
	)
	for i := range n {
		wg.Add(2)
		id := fmt.Sprintf("res_%d", i)
		go func() {
			defer wg.Done()
			err := s.Commit(ctx, id, expiry.Add(-time.Millisecond))
			switch {
			case err == nil:
				committed.Add(1)
			case !errs.Is(errs.Conflict, err):
				t.Error(err)
			}
		}()
		go func() {
			defer wg.Done()
			_, ok, err := s.ReleaseExpired(ctx, id, expiry.Add(time.Millisecond))
			if err != nil {
				t.Error(err)
			}
			if ok {
				swept.Add(1)
			}
		}()
	}
	wg.Wait()
	if c, w := committed.Load(), swept.Load(); c+w != n {
		t.Fatalf("%d committed and %d swept, want %d in all", c, w, n)
	}
	c := int(committed.Load())
	wantLevel(t, s, "prd_a", 40-2*c, 0, 2*c)
}

// TestMigrateReservations: reservations made before expiry existed migrate
// sensibly. The old checkout never released a successful reservation, so an
// unreleased one is sold (committed) and never swept; a
// released one stays released.
func TestMigrateReservations(t *testing.T) {
	ctx := context.Background()
	old := fstest.MapFS{}
	for _, f := range []string{"00001_catalog.sql", "00002_outbox.sql"} {
		b, err := os.ReadFile("migrations/" + f)
		if err != nil {
			t.Fatal(err)
		}
		old[f] = &fstest.MapFile{Data: b}
	}
	for _, be := range testenv.Backends() {
		t.Run(be.Name, func(t *testing.T) {
			db := be.Open(t)
			if err := db.Migrate(ctx, "catalog", old); err != nil {
				t.Fatal(err)
			}
			for _, q := range []string{
				`INSERT INTO categories (id, name, position) VALUES ('home', 'Home', 0)`,
				`INSERT INTO products (id, name, description, category, price_amount, price_currency, stock, image_key, created_at)
					VALUES ('prd_a', 'A', 'a', 'home', 100, 'USD', 5, 'k', 0)`,
				`INSERT INTO reservations (id, created_at, released_at) VALUES ('res_sold', 1000, NULL)`,
				`INSERT INTO reservations (id, created_at, released_at) VALUES ('res_back', 1000, 2000)`,
				`INSERT INTO reservation_lines (reservation_id, product_id, quantity) VALUES ('res_sold', 'prd_a', 3)`,
				`INSERT INTO reservation_lines (reservation_id, product_id, quantity) VALUES ('res_back', 'prd_a', 2)`,
			} {
				if _, err := db.ExecContext(ctx, q); err != nil {
					t.Fatalf("%s: %v", strings.Fields(q)[2], err)
				}
			}
			s, err := catalogdb.Open(ctx, db)
			if err != nil {
				t.Fatal(err)
			}
			wantLevel(t, s, "prd_a", 5, 0, 3)
			if n := sweep(t, s, t0.Add(1000*time.Hour)); n != 0 {
				t.Fatalf("sweep released %d migrated reservations", n)
			}
			if err := s.Commit(ctx, "res_sold", t0); err != nil {
				t.Fatalf("Commit of a migrated sold reservation = %v, want nil", err)
			}
			if err := s.Commit(ctx, "res_back", t0); !errs.Is(errs.Conflict, err) {
				t.Fatalf("Commit of a migrated released reservation = %v, want Conflict", err)
			}
			wantLevel(t, s, "prd_a", 5, 0, 3)
		})
	}
}
