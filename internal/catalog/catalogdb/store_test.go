package catalogdb_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/catalog"
	"github.com/globomantics/globomantics/internal/catalog/catalogdb"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/money"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// exp is the expiry of the reservations of tests that do not let them expire.
var exp = t0.Add(time.Hour)

// TestStore is the conformance suite, run against every backend.
func TestStore(t *testing.T) {
	for _, be := range testenv.Backends() {
		t.Run(be.Name, func(t *testing.T) {
			t.Parallel()
			tests := []struct {
				name string
				fn   func(t *testing.T, s *catalogdb.Store, db *sqldb.DB)
			}{
				{"Categories", testCategories},
				{"CreateAndGet", testCreateAndGet},
				{"CreateRejects", testCreateRejects},
				{"ListAndBatch", testListAndBatch},
				{"Thumbnails", testThumbnails},
				{"ReserveRelease", testReserveRelease},
				{"ReserveAllOrNothing", testReserveAllOrNothing},
				{"ShortageNamesProduct", testShortageNamesProduct},
				{"ReleaseBeforeReserve", testReleaseBeforeReserve},
				{"ConcurrentReserve", testConcurrentReserve},
				{"UpdateProduct", testUpdateProduct},
				{"UpdateProductRejects", testUpdateProductRejects},
				{"ConcurrentUpdate", testConcurrentUpdate},
				{"UpdateStockWithReservations", testUpdateStockWithReservations},
			}
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					db := be.Open(t) // a fresh database per case
					s, err := catalogdb.Open(context.Background(), db)
					if err != nil {
						t.Fatal(err)
					}
					tc.fn(t, s, db)
				})
			}
		})
	}
}

func TestOpenTwice(t *testing.T) {
	db := testenv.SQLite(t)
	ctx := context.Background()
	if _, err := catalogdb.Open(ctx, db); err != nil {
		t.Fatal(err)
	}
	s, err := catalogdb.Open(ctx, db)
	if err != nil {
		t.Fatalf("second Open (migrations already applied): %v", err)
	}
	if n, err := s.CountProducts(ctx); err != nil || n != 0 {
		t.Fatalf("CountProducts = %d, %v", n, err)
	}
}

func ensureCats(t *testing.T, s *catalogdb.Store) {
	t.Helper()
	err := s.EnsureCategories(context.Background(), []catalog.Category{{ID: "home", Name: "Home"}, {ID: "books", Name: "Books"}})
	if err != nil {
		t.Fatal(err)
	}
}

func rec(id, cat string, stock int) catalog.Record {
	return catalog.Record{
		ID: id, Name: "Item " + id, Description: "about " + id, Category: cat,
		Price: money.USD(1250), Stock: stock, ImageKey: "products/" + id + "/original.png", CreatedAt: t0,
	}
}

func create(t *testing.T, s *catalogdb.Store, r catalog.Record) {
	t.Helper()
	if err := s.CreateProduct(context.Background(), r); err != nil {
		t.Fatalf("CreateProduct(%s): %v", r.ID, err)
	}
}

func stockOf(t *testing.T, s *catalogdb.Store, id string) int {
	t.Helper()
	r, err := s.GetProduct(context.Background(), id)
	if err != nil {
		t.Fatalf("GetProduct(%s): %v", id, err)
	}
	return r.Stock
}

type outboxRow struct {
	id, subject string
	ev          catalog.ItemListed
}

func outboxRows(t *testing.T, db *sqldb.DB) []outboxRow {
	t.Helper()
	rows, err := db.QueryContext(context.Background(), `SELECT seq_id, subject, payload FROM outbox ORDER BY seq_id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []outboxRow
	for rows.Next() {
		var r outboxRow
		var payload string
		if err := rows.Scan(&r.id, &r.subject, &payload); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(payload), &r.ev); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func testCategories(t *testing.T, s *catalogdb.Store, _ *sqldb.DB) {
	ctx := context.Background()
	cats, err := s.ListCategories(ctx)
	if err != nil || len(cats) != 0 {
		t.Fatalf("empty store: %v, %v", cats, err)
	}
	want := []catalog.Category{{ID: "outdoors", Name: "Outdoors"}, {ID: "books", Name: "Books"}, {ID: "home", Name: "Home"}}
	if err := s.EnsureCategories(ctx, want); err != nil {
		t.Fatal(err)
	}
	// Again, with a rename: no duplicates, the new name wins.
	want[2].Name = "Home & Kitchen"
	if err := s.EnsureCategories(ctx, want); err != nil {
		t.Fatal(err)
	}
	got, err := s.ListCategories(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("categories = %v, want %v (display order)", got, want)
	}
	for id, want := range map[string]bool{"books": true, "nope": false, "": false} {
		if ok, err := s.HasCategory(ctx, id); err != nil || ok != want {
			t.Errorf("HasCategory(%q) = %v, %v; want %v", id, ok, err, want)
		}
	}
}

func testCreateAndGet(t *testing.T, s *catalogdb.Store, db *sqldb.DB) {
	ctx := context.Background()
	ensureCats(t, s)
	r := rec("prd_1", "home", 7)
	r.Name = "Zürich “mug” — 'quoted'"
	create(t, s, r)
	got, err := s.GetProduct(ctx, "prd_1")
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != r.ID || got.Name != r.Name || got.Description != r.Description || got.Category != "home" ||
		got.Price != money.USD(1250) || got.Stock != 7 || got.ImageKey != r.ImageKey || !got.CreatedAt.Equal(t0) || len(got.ThumbnailKeys) != 0 {
		t.Fatalf("GetProduct = %+v, want %+v", got, r)
	}
	if _, err := s.GetProduct(ctx, "prd_missing"); !errs.Is(errs.NotFound, err) {
		t.Fatalf("GetProduct(missing) = %v, want NotFound", err)
	}
	// The ItemListed event was written with the product, keyed by its id,
	// and the thumbnail job with them.
	rows := outboxRows(t, db)
	if len(rows) != 2 {
		t.Fatalf("outbox has %d rows, want 2", len(rows))
	}
	if j := rows[1]; j.id != catalog.ThumbnailJobID("prd_1", r.ImageKey) || j.subject != catalog.SubjectThumbnailRequested ||
		j.ev.ProductID != "prd_1" || j.ev.ImageKey != r.ImageKey {
		t.Fatalf("outbox row = %+v, want the thumbnail job of prd_1's image %s", j, r.ImageKey)
	}
	want := catalog.ItemListed{ProductID: "prd_1", Name: r.Name, Description: r.Description, Category: "home",
		Price: money.USD(1250), ImageKey: r.ImageKey, ListedAt: t0}
	if rows[0].id != "prd_1" || rows[0].subject != catalog.SubjectItemListed || rows[0].ev != want {
		t.Fatalf("outbox row = %+v, want id prd_1, subject %s, event %+v", rows[0], catalog.SubjectItemListed, want)
	}
	if n, err := s.CountProducts(ctx); err != nil || n != 1 {
		t.Fatalf("CountProducts = %d, %v", n, err)
	}
}

func testCreateRejects(t *testing.T, s *catalogdb.Store, db *sqldb.DB) {
	ctx := context.Background()
	ensureCats(t, s)
	create(t, s, rec("prd_1", "home", 3))

	dup := rec("prd_1", "books", 9)
	dup.Name = "Other"
	if err := s.CreateProduct(ctx, dup); !errs.Is(errs.Conflict, err) {
		t.Fatalf("duplicate id: %v, want Conflict", err)
	}
	if err := s.CreateProduct(ctx, rec("prd_2", "nope", 3)); !errs.Is(errs.Invalid, err) {
		t.Fatalf("unknown category: %v, want Invalid", err)
	}
	// Nothing of either was written: not the product, not an event.
	if got, _ := s.GetProduct(ctx, "prd_1"); got.Name != "Item prd_1" || got.Stock != 3 {
		t.Fatalf("original product changed: %+v", got)
	}
	if _, err := s.GetProduct(ctx, "prd_2"); !errs.Is(errs.NotFound, err) {
		t.Fatalf("rejected product exists: %v", err)
	}
	if rows := outboxRows(t, db); len(rows) != 2 { // prd_1's ItemListed and thumbnail job
		t.Fatalf("outbox has %d rows after rejected creates, want 2", len(rows))
	}
	if n, _ := s.CountProducts(ctx); n != 1 {
		t.Fatalf("CountProducts = %d, want 1", n)
	}
}

func testListAndBatch(t *testing.T, s *catalogdb.Store, _ *sqldb.DB) {
	ctx := context.Background()
	ensureCats(t, s)
	for i, id := range []string{"prd_c", "prd_a", "prd_e", "prd_b", "prd_d"} {
		cat := "home"
		if i%2 == 1 {
			cat = "books"
		}
		create(t, s, rec(id, cat, i))
	}
	ids := func(rs []catalog.Record) string {
		var out []string
		for _, r := range rs {
			out = append(out, r.ID)
		}
		return fmt.Sprint(out)
	}
	for _, tc := range []struct {
		cat, after string
		limit      int
		want       string
	}{
		{"", "", 10, "[prd_a prd_b prd_c prd_d prd_e]"},
		{"", "", 2, "[prd_a prd_b]"},
		{"", "prd_b", 2, "[prd_c prd_d]"},
		{"", "prd_d", 2, "[prd_e]"},
		{"", "prd_e", 2, "[]"},
		{"", "prd_bb", 2, "[prd_c prd_d]"}, // a key between rows (one deleted, say)
		{"home", "", 10, "[prd_c prd_d prd_e]"},
		{"home", "prd_a", 10, "[prd_c prd_d prd_e]"},
		{"books", "prd_a", 10, "[prd_b]"},
		{"nope", "", 10, "[]"},
	} {
		got, err := s.ListProducts(ctx, tc.cat, tc.after, tc.limit)
		if err != nil {
			t.Fatal(err)
		}
		if ids(got) != tc.want {
			t.Errorf("ListProducts(%q, %q, %d) = %s, want %s", tc.cat, tc.after, tc.limit, ids(got), tc.want)
		}
	}
	got, err := s.GetProducts(ctx, []string{"prd_e", "prd_x", "prd_a"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("GetProducts = %s, want prd_a and prd_e", ids(got))
	}
	// More ids than one query carries.
	many := make([]string, 0, 450)
	for i := range 448 {
		many = append(many, fmt.Sprintf("prd_none_%d", i))
	}
	many = append(many, "prd_b", "prd_d")
	got, err = s.GetProducts(ctx, many)
	if err != nil || ids(got) != "[prd_b prd_d]" {
		t.Fatalf("GetProducts(450 ids) = %s, %v", ids(got), err)
	}
}

func testThumbnails(t *testing.T, s *catalogdb.Store, db *sqldb.DB) {
	ctx := context.Background()
	ensureCats(t, s)
	create(t, s, rec("prd_1", "home", 1))
	keys := map[string]string{"small": "products/prd_1/thumb-small.jpg", "medium": "products/prd_1/thumb-medium.jpg"}
	if err := s.SetThumbnails(ctx, "prd_1", keys, t0); err != nil {
		t.Fatal(err)
	}
	if err := s.SetThumbnails(ctx, "prd_1", keys, t0.Add(time.Second)); err != nil { // idempotent
		t.Fatal(err)
	}
	// One ThumbnailsReady, written with the first change only.
	var ready int
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM outbox WHERE subject = ?`, catalog.SubjectThumbnailsReady).Scan(&ready); err != nil || ready != 1 {
		t.Fatalf("ThumbnailsReady events in the outbox = %d, %v; want 1", ready, err)
	}
	got, _ := s.GetProduct(ctx, "prd_1")
	if fmt.Sprint(got.ThumbnailKeys) != fmt.Sprint(keys) {
		t.Fatalf("ThumbnailKeys = %v, want %v", got.ThumbnailKeys, keys)
	}
	list, _ := s.ListProducts(ctx, "", "", 10)
	if len(list) != 1 || fmt.Sprint(list[0].ThumbnailKeys) != fmt.Sprint(keys) {
		t.Fatalf("ListProducts thumbnails = %+v", list)
	}
	if err := s.SetThumbnails(ctx, "prd_missing", keys, t0); !errs.Is(errs.NotFound, err) {
		t.Fatalf("SetThumbnails(missing) = %v, want NotFound", err)
	}
}

func testReserveRelease(t *testing.T, s *catalogdb.Store, _ *sqldb.DB) {
	ctx := context.Background()
	ensureCats(t, s)
	create(t, s, rec("prd_a", "home", 10))
	create(t, s, rec("prd_b", "home", 4))

	lines := []catalog.Line{{ProductID: "prd_a", Quantity: 3}, {ProductID: "prd_b", Quantity: 4}}
	if err := s.Reserve(ctx, "res_1", lines, t0, exp); err != nil {
		t.Fatal(err)
	}
	if a, b := stockOf(t, s, "prd_a"), stockOf(t, s, "prd_b"); a != 7 || b != 0 {
		t.Fatalf("stock after reserve = %d, %d; want 7, 0", a, b)
	}
	// A repeat is a no-op, even with other lines.
	if err := s.Reserve(ctx, "res_1", []catalog.Line{{ProductID: "prd_a", Quantity: 5}}, t0, exp); err != nil {
		t.Fatal(err)
	}
	if a := stockOf(t, s, "prd_a"); a != 7 {
		t.Fatalf("stock after repeated reserve = %d, want 7", a)
	}
	// Lines of the same product add up.
	if err := s.Reserve(ctx, "res_2", []catalog.Line{{ProductID: "prd_a", Quantity: 1}, {ProductID: "prd_a", Quantity: 2}}, t0, exp); err != nil {
		t.Fatal(err)
	}
	if a := stockOf(t, s, "prd_a"); a != 4 {
		t.Fatalf("stock after merged reserve = %d, want 4", a)
	}
	// Release puts back exactly the reserved quantities, once.
	for range 2 {
		if _, err := s.Release(ctx, "res_1", t0); err != nil {
			t.Fatal(err)
		}
		if a, b := stockOf(t, s, "prd_a"), stockOf(t, s, "prd_b"); a != 7 || b != 4 {
			t.Fatalf("stock after release = %d, %d; want 7, 4", a, b)
		}
	}
	// A released reservation cannot be reserved again.
	if err := s.Reserve(ctx, "res_1", lines, t0, exp); err != nil {
		t.Fatal(err)
	}
	if a := stockOf(t, s, "prd_a"); a != 7 {
		t.Fatalf("reserve after release changed stock to %d", a)
	}
	if _, err := s.Release(ctx, "res_2", t0); err != nil {
		t.Fatal(err)
	}
	if a := stockOf(t, s, "prd_a"); a != 10 {
		t.Fatalf("stock after releasing everything = %d, want 10", a)
	}
}

func testReserveAllOrNothing(t *testing.T, s *catalogdb.Store, _ *sqldb.DB) {
	ctx := context.Background()
	ensureCats(t, s)
	create(t, s, rec("prd_a", "home", 10))
	create(t, s, rec("prd_b", "home", 2))

	err := s.Reserve(ctx, "res_1", []catalog.Line{{ProductID: "prd_a", Quantity: 5}, {ProductID: "prd_b", Quantity: 3}}, t0, exp)
	if !errs.Is(errs.Conflict, err) {
		t.Fatalf("short stock: %v, want Conflict", err)
	}
	if d := errs.Detail(err); d != `only 2 of Item prd_b left in stock, 3 wanted` {
		t.Errorf("detail = %q", d)
	}
	err = s.Reserve(ctx, "res_1", []catalog.Line{{ProductID: "prd_a", Quantity: 5}, {ProductID: "prd_zzz", Quantity: 1}}, t0, exp)
	if !errs.Is(errs.NotFound, err) {
		t.Fatalf("unknown product: %v, want NotFound", err)
	}
	if a, b := stockOf(t, s, "prd_a"), stockOf(t, s, "prd_b"); a != 10 || b != 2 {
		t.Fatalf("failed reservations changed stock: %d, %d", a, b)
	}
	// The failed attempts left no reservation behind: the id is still usable.
	if err := s.Reserve(ctx, "res_1", []catalog.Line{{ProductID: "prd_b", Quantity: 2}}, t0, exp); err != nil {
		t.Fatal(err)
	}
	if b := stockOf(t, s, "prd_b"); b != 0 {
		t.Fatalf("stock = %d, want 0", b)
	}
	err = s.Reserve(ctx, "res_2", []catalog.Line{{ProductID: "prd_b", Quantity: 1}}, t0, exp)
	if !errs.Is(errs.Conflict, err) || errs.Detail(err) != `Item prd_b is sold out` {
		t.Fatalf("out of stock: %v", err)
	}
}

// testShortageNamesProduct checks that a refused reservation names the
// product as its customer knows it, never by its id: the message reaches the
// checkout page.
func testShortageNamesProduct(t *testing.T, s *catalogdb.Store, _ *sqldb.DB) {
	ctx := context.Background()
	ensureCats(t, s)
	r := rec("prd_home_07", "home", 3)
	r.Name = "Desk Lamp"
	create(t, s, r)
	for _, c := range []struct {
		id     string
		qty    int
		kind   errs.Kind
		detail string
	}{
		{"prd_home_07", 40, errs.Conflict, "only 3 of Desk Lamp left in stock, 40 wanted"},
		{"prd_gone_01", 1, errs.NotFound, "a product in the order is no longer sold"},
	} {
		err := s.Reserve(ctx, "res_"+c.id, []catalog.Line{{ProductID: c.id, Quantity: c.qty}}, t0, exp)
		if !errs.Is(c.kind, err) || errs.Detail(err) != c.detail {
			t.Errorf("Reserve %d of %s: %v (detail %q), want %v %q", c.qty, c.id, err, errs.Detail(err), c.kind, c.detail)
		}
	}
	if err := s.Reserve(ctx, "res_all", []catalog.Line{{ProductID: "prd_home_07", Quantity: 3}}, t0, exp); err != nil {
		t.Fatal(err)
	}
	err := s.Reserve(ctx, "res_more", []catalog.Line{{ProductID: "prd_home_07", Quantity: 1}}, t0, exp)
	if !errs.Is(errs.Conflict, err) || errs.Detail(err) != "Desk Lamp is sold out" {
		t.Errorf("sold out: %v (detail %q)", err, errs.Detail(err))
	}
}

func testReleaseBeforeReserve(t *testing.T, s *catalogdb.Store, _ *sqldb.DB) {
	ctx := context.Background()
	ensureCats(t, s)
	create(t, s, rec("prd_a", "home", 5))
	// A release overtaking its reservation (a retried request arriving late)
	// must not let the reservation take stock afterwards.
	if _, err := s.Release(ctx, "res_late", t0); err != nil {
		t.Fatal(err)
	}
	if err := s.Reserve(ctx, "res_late", []catalog.Line{{ProductID: "prd_a", Quantity: 2}}, t0, exp); err != nil {
		t.Fatal(err)
	}
	if a := stockOf(t, s, "prd_a"); a != 5 {
		t.Fatalf("stock = %d, want 5", a)
	}
}

func testConcurrentReserve(t *testing.T, s *catalogdb.Store, _ *sqldb.DB) {
	ctx := context.Background()
	ensureCats(t, s)
	create(t, s, rec("prd_a", "home", 5))
	create(t, s, rec("prd_b", "home", 100))

	const workers = 10
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		ok       int
		failures []error
	)
	start := make(chan struct{})
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			// Lines in opposite orders in half the calls, to catch lock-order deadlocks.
			lines := []catalog.Line{{ProductID: "prd_a", Quantity: 1}, {ProductID: "prd_b", Quantity: 1}}
			if i%2 == 1 {
				lines[0], lines[1] = lines[1], lines[0]
			}
			err := s.Reserve(ctx, fmt.Sprintf("res_%d", i), lines, t0, exp)
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				ok++
			} else {
				failures = append(failures, err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if ok != 5 {
		t.Fatalf("%d reservations succeeded, want 5; failures: %v", ok, failures)
	}
	for _, err := range failures {
		if !errs.Is(errs.Conflict, err) {
			t.Errorf("failure %v, want Conflict", err)
		}
	}
	if a, b := stockOf(t, s, "prd_a"), stockOf(t, s, "prd_b"); a != 0 || b != 95 {
		t.Fatalf("stock = %d, %d; want 0, 95", a, b)
	}
	// Concurrent releases of every reservation put back exactly what was taken.
	for i := range workers {
		wg.Add(2)
		for range 2 {
			go func() {
				defer wg.Done()
				if _, err := s.Release(ctx, fmt.Sprintf("res_%d", i), t0); err != nil {
					t.Error(err)
				}
			}()
		}
	}
	wg.Wait()
	if a, b := stockOf(t, s, "prd_a"), stockOf(t, s, "prd_b"); a != 5 || b != 100 {
		t.Fatalf("stock after releases = %d, %d; want 5, 100", a, b)
	}
}

// TestReleaseWhileReserveInFlight: checkout registers the release before it
// calls reserve, so a release may run while the reserve's transaction is
// still open (a timed-out call, a slow instance). On PostgreSQL the release
// must then put back what that reservation takes, not remember the id as
// released-without-lines and leave the stock taken for good. (SQLite
// serializes writers, so it cannot interleave.)
func TestReleaseWhileReserveInFlight(t *testing.T) {
	db := testenv.Postgres(t)
	ctx := context.Background()
	s, err := catalogdb.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	ensureCats(t, s)
	create(t, s, rec("prd_a", "home", 5))

	// Hold the product's row lock so that the reserve stops after recording
	// its id, inside its transaction.
	lock, err := db.DB.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Rollback()
	if _, err := lock.ExecContext(ctx, `SELECT stock FROM products WHERE id = $1 FOR UPDATE`, "prd_a"); err != nil {
		t.Fatal(err)
	}
	waiters := func(want int) func() error {
		return func() error {
			var n int
			if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM pg_stat_activity
				WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&n); err != nil {
				return err
			}
			if n != want {
				return fmt.Errorf("%d sessions wait on a lock, want %d", n, want)
			}
			return nil
		}
	}
	reserved := make(chan error, 1)
	go func() {
		reserved <- s.Reserve(ctx, "res_1", []catalog.Line{{ProductID: "prd_a", Quantity: 2}}, t0, exp)
	}()
	testenv.CheckFor(t, 10*time.Second, waiters(1))
	released := make(chan error, 1)
	go func() {
		_, err := s.Release(ctx, "res_1", t0)
		released <- err
	}()
	testenv.CheckFor(t, 10*time.Second, waiters(2)) // the release waits on the reserve's id
	if err := lock.Rollback(); err != nil {
		t.Fatal(err)
	}
	if err := <-reserved; err != nil {
		t.Fatalf("Reserve: %v", err)
	}
	if err := <-released; err != nil {
		t.Fatalf("Release: %v", err)
	}
	if a := stockOf(t, s, "prd_a"); a != 5 {
		t.Fatalf("stock = %d after the reservation was released, want 5", a)
	}
}
