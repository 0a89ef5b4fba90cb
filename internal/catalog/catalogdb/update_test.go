package catalogdb_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/catalog"
	"github.com/globomantics/globomantics/internal/catalog/catalogdb"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/money"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
)

func ptr[T any](v T) *T { return &v }

type changedRow struct {
	id        string
	createdAt int64
	ev        catalog.ProductChanged
}

// changedRows are the outbox's ProductChanged events, oldest first.
func changedRows(t *testing.T, db *sqldb.DB) []changedRow {
	t.Helper()
	rows, err := db.QueryContext(context.Background(), `SELECT seq_id, payload, created_at FROM outbox WHERE subject = ? ORDER BY created_at, seq_id`,
		catalog.SubjectProductChanged)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []changedRow
	for rows.Next() {
		var (
			r       changedRow
			payload string
		)
		if err := rows.Scan(&r.id, &payload, &r.createdAt); err != nil {
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

func testUpdateProduct(t *testing.T, s *catalogdb.Store, db *sqldb.DB) {
	ctx := context.Background()
	ensureCats(t, s)
	create(t, s, rec("prd_1", "home", 7))
	if got, err := s.GetProduct(ctx, "prd_1"); err != nil || got.Version != 1 || !got.UpdatedAt.IsZero() {
		t.Fatalf("a new product: version %d, updated %v, %v; want version 1, never updated", got.Version, got.UpdatedAt, err)
	}

	// A price change, made against the version it read.
	t1 := t0.Add(time.Minute)
	got, err := s.UpdateProduct(ctx, "prd_1", catalog.ProductChange{Price: ptr(money.USD(999)), IfVersion: 1}, t1)
	if err != nil {
		t.Fatal(err)
	}
	if got.Price != money.USD(999) || got.Version != 2 || !got.UpdatedAt.Equal(t1) || got.Name != "Item prd_1" || got.Stock != 7 {
		t.Fatalf("UpdateProduct = %+v; want price $9.99, version 2, the rest as it was", got)
	}
	read, err := s.GetProduct(ctx, "prd_1")
	if err != nil {
		t.Fatal(err)
	}
	if read.Price != money.USD(999) || read.Version != 2 || !read.UpdatedAt.Equal(t1) || !read.CreatedAt.Equal(t0) {
		t.Fatalf("GetProduct after the change = %+v", read)
	}
	rows := changedRows(t, db)
	if len(rows) != 1 {
		t.Fatalf("%d ProductChanged rows, want 1", len(rows))
	}
	want := catalog.ProductChanged{ProductID: "prd_1", Version: 2, Changed: []string{catalog.FieldPrice},
		Name: "Item prd_1", Description: "about prd_1", Category: "home", Price: money.USD(999), Stock: 7, ChangedAt: t1, ListedAt: t0}
	if rows[0].id != "prd_1/v2" || rows[0].createdAt != sqldb.Millis(t1) || fmt.Sprint(rows[0].ev) != fmt.Sprint(want) {
		t.Fatalf("outbox row = %+v, want id prd_1/v2 at %v, event %+v", rows[0], t1, want)
	}

	// Several fields at once, without a version: name, description,
	// category and stock change, the price given is the same and is not
	// listed as changed.
	t2 := t1.Add(time.Minute)
	got, err = s.UpdateProduct(ctx, "prd_1", catalog.ProductChange{
		Name: ptr("Big mug"), Description: ptr("holds more"), Category: ptr("books"), Price: ptr(money.USD(999)), Stock: ptr(40),
	}, t2)
	if err != nil {
		t.Fatal(err)
	}
	if got.Name != "Big mug" || got.Description != "holds more" || got.Category != "books" || got.Stock != 40 || got.Version != 3 {
		t.Fatalf("UpdateProduct = %+v", got)
	}
	rows = changedRows(t, db)
	if len(rows) != 2 || rows[1].id != "prd_1/v3" ||
		!slices.Equal(rows[1].ev.Changed, []string{catalog.FieldName, catalog.FieldDescription, catalog.FieldCategory, catalog.FieldStock}) ||
		rows[1].ev.Name != "Big mug" || rows[1].ev.Stock != 40 || rows[1].ev.Version != 3 {
		t.Fatalf("outbox rows = %+v", rows)
	}
	// The category index follows.
	if recs, err := s.ListProducts(ctx, "books", "", 10); err != nil || len(recs) != 1 || recs[0].ID != "prd_1" || recs[0].Version != 3 {
		t.Fatalf("ListProducts(books) = %+v, %v", recs, err)
	}

	// A change that changes nothing writes nothing, and keeps the version.
	got, err = s.UpdateProduct(ctx, "prd_1", catalog.ProductChange{Name: ptr("Big mug"), IfVersion: 3}, t2.Add(time.Minute))
	if err != nil || got.Version != 3 || !got.UpdatedAt.Equal(t2) {
		t.Fatalf("no-op change = %+v, %v; want version 3 updated at %v", got, err, t2)
	}
	if rows := changedRows(t, db); len(rows) != 2 {
		t.Fatalf("a no-op change wrote an event: %d rows", len(rows))
	}
	// The ItemListed row and the thumbnail job are still the only others.
	if n := len(outboxRows(t, db)); n != 4 {
		t.Fatalf("outbox has %d rows, want 4", n)
	}
}

func testUpdateProductRejects(t *testing.T, s *catalogdb.Store, db *sqldb.DB) {
	ctx := context.Background()
	ensureCats(t, s)
	create(t, s, rec("prd_1", "home", 7))
	t1 := t0.Add(time.Minute)

	_, err := s.UpdateProduct(ctx, "prd_nope", catalog.ProductChange{Price: ptr(money.USD(5))}, t1)
	if !errs.Is(errs.NotFound, err) {
		t.Fatalf("unknown product: %v, want NotFound", err)
	}
	// A stale version: someone changed it since it was read.
	_, err = s.UpdateProduct(ctx, "prd_1", catalog.ProductChange{Price: ptr(money.USD(5)), IfVersion: 2}, t1)
	if !errs.Is(errs.Conflict, err) {
		t.Fatalf("stale version: %v, want Conflict", err)
	}
	_, err = s.UpdateProduct(ctx, "prd_1", catalog.ProductChange{Category: ptr("garden"), Price: ptr(money.USD(5))}, t1)
	if !errs.Is(errs.Invalid, err) {
		t.Fatalf("unknown category: %v, want Invalid", err)
	}
	// Nothing of any was written.
	got, err := s.GetProduct(ctx, "prd_1")
	if err != nil || got.Price != money.USD(1250) || got.Category != "home" || got.Version != 1 {
		t.Fatalf("product after rejected changes = %+v, %v", got, err)
	}
	if rows := changedRows(t, db); len(rows) != 0 {
		t.Fatalf("rejected changes wrote %d events", len(rows))
	}
}

// testConcurrentUpdate: of changes racing against one version, exactly one
// wins; the others are refused, and exactly one event is written.
func testConcurrentUpdate(t *testing.T, s *catalogdb.Store, db *sqldb.DB) {
	ctx := context.Background()
	ensureCats(t, s)
	create(t, s, rec("prd_1", "home", 7))
	const workers = 8
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		won  []int64
		errL []error
	)
	start := make(chan struct{})
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			r, err := s.UpdateProduct(ctx, "prd_1", catalog.ProductChange{Price: ptr(money.USD(int64(100 + i))), IfVersion: 1}, t0.Add(time.Minute))
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errL = append(errL, err)
				return
			}
			won = append(won, r.Price.Amount)
		}()
	}
	close(start)
	wg.Wait()
	if len(won) != 1 {
		t.Fatalf("%d changes against version 1 succeeded, want 1 (errors: %v)", len(won), errL)
	}
	for _, err := range errL {
		if !errs.Is(errs.Conflict, err) {
			t.Errorf("loser: %v, want Conflict", err)
		}
	}
	got, err := s.GetProduct(ctx, "prd_1")
	if err != nil || got.Version != 2 || got.Price.Amount != won[0] {
		t.Fatalf("product = %+v, %v; want version 2 at the winner's price %d", got, err, won[0])
	}
	if rows := changedRows(t, db); len(rows) != 1 || rows[0].ev.Price.Amount != won[0] {
		t.Fatalf("events = %+v, want one with the winner's price", rows)
	}
}

// testUpdateStockWithReservations: the stock set is what reservations may
// take from then on; units held by a live reservation stay held and come
// back on top of it when it is released.
func testUpdateStockWithReservations(t *testing.T, s *catalogdb.Store, _ *sqldb.DB) {
	ctx := context.Background()
	ensureCats(t, s)
	create(t, s, rec("prd_1", "home", 10))
	if err := s.Reserve(ctx, "res_1", []catalog.Line{{ProductID: "prd_1", Quantity: 4}}, t0, exp); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateProduct(ctx, "prd_1", catalog.ProductChange{Stock: ptr(2)}, t0); err != nil {
		t.Fatal(err)
	}
	levels, err := s.StockLevels(ctx)
	if err != nil || len(levels) != 1 || levels[0] != (catalog.StockLevel{ProductID: "prd_1", Stock: 2, Reserved: 4}) {
		t.Fatalf("StockLevels = %+v, %v; want stock 2, reserved 4", levels, err)
	}
	if err := s.Reserve(ctx, "res_2", []catalog.Line{{ProductID: "prd_1", Quantity: 3}}, t0, exp); !errs.Is(errs.Conflict, err) {
		t.Fatalf("reserving 3 of 2: %v, want Conflict", err)
	}
	if _, err := s.Release(ctx, "res_1", t0); err != nil {
		t.Fatal(err)
	}
	if n := stockOf(t, s, "prd_1"); n != 6 {
		t.Fatalf("stock after the release = %d, want 6", n)
	}
	// Setting stock to 0 sells out; no negative stock is ever stored.
	if _, err := s.UpdateProduct(ctx, "prd_1", catalog.ProductChange{Stock: ptr(0)}, t0); err != nil {
		t.Fatal(err)
	}
	if err := s.Reserve(ctx, "res_3", []catalog.Line{{ProductID: "prd_1", Quantity: 1}}, t0, exp); !errs.Is(errs.Conflict, err) {
		t.Fatalf("reserving from 0: %v, want Conflict", err)
	}
}
