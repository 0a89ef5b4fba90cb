package orderdb_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/order"
	"github.com/globomantics/globomantics/internal/order/orderdb"
	"github.com/globomantics/globomantics/internal/platform/clock"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/money"
	"github.com/globomantics/globomantics/internal/platform/shard"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
	"github.com/globomantics/globomantics/internal/platform/testenv"
	"github.com/globomantics/globomantics/internal/shipping"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func sample(id, user string, created time.Time) order.Order {
	return order.Order{
		ID: id, UserID: user, Email: user + "@example.com", Status: order.StatusPending,
		Items: []order.Item{
			{ProductID: "prd_a", Name: "Widget", Quantity: 2, UnitPrice: money.USD(1250), LineTotal: money.USD(2500)},
			{ProductID: "prd_b", Name: "Gadget ünicode", Quantity: 1, UnitPrice: money.USD(999), LineTotal: money.USD(999)},
		},
		Subtotal: money.USD(3499), ShippingCost: money.USD(500), Total: money.USD(3999),
		ShippingAddress: shipping.Address{Name: "Ada", Line1: "1 Main St", City: "Springfield", Region: "IL", PostalCode: "12345", Country: "US"},
		Number:          order.NewNumber(shard.ForUser(user)),
		CreatedAt:       created, UpdatedAt: created,
	}
}

// TestStore is the conformance suite of order.Store, run on every backend.
func TestStore(t *testing.T) {
	tests := []struct {
		name string
		fn   func(t *testing.T, db *sqldb.DB, s *orderdb.Store)
	}{
		{"CreateGetRoundTrip", testRoundTrip},
		{"CreateIsIdempotent", testCreateIdempotent},
		{"GetUnknown", testGetUnknown},
		{"ListByUser", testListByUser},
		{"UpdateSavesMutableFields", testUpdate},
		{"UpdateFailureWritesNothing", testUpdateFailure},
		{"UpdateWritesEventToOutbox", testUpdateEvent},
		{"ConfirmWritesExactlyOneOutboxRow", testConfirmOneOutboxRow},
		{"ConcurrentConfirmWritesOneRow", testConcurrentConfirm},
		{"OpenTwice", testOpenTwice},
		{"GetByNumber", testGetByNumber},
		{"TakenNumberIsDrawnAgain", testTakenNumber},
		{"OpenNumbersOlderOrders", testBackfillNumbers},
	}
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					db := b.Open(t)
					s, err := orderdb.Open(context.Background(), db)
					if err != nil {
						t.Fatal(err)
					}
					tc.fn(t, db, s)
				})
			}
		})
	}
}

func mustCreate(t *testing.T, s *orderdb.Store, o order.Order) order.Order {
	t.Helper()
	got, created, err := s.Create(context.Background(), o)
	if err != nil || !created {
		t.Fatalf("Create(%s) = created %v, %v", o.ID, created, err)
	}
	return got
}

type outboxRow struct {
	ID, Subject, Payload string
	CreatedAt            int64
}

func outboxRows(t *testing.T, db *sqldb.DB) []outboxRow {
	t.Helper()
	rows, err := db.QueryContext(context.Background(), `SELECT seq_id, subject, payload, created_at FROM outbox ORDER BY seq_id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []outboxRow
	for rows.Next() {
		var r outboxRow
		if err := rows.Scan(&r.ID, &r.Subject, &r.Payload, &r.CreatedAt); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func testRoundTrip(t *testing.T, _ *sqldb.DB, s *orderdb.Store) {
	o := sample("ord_1", "usr_1", t0)
	got := mustCreate(t, s, o)
	if !reflect.DeepEqual(got, o) {
		t.Errorf("Create returned %+v\nwant %+v", got, o)
	}
	got, err := s.Get(context.Background(), "ord_1")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, o) {
		t.Errorf("Get = %+v\nwant %+v", got, o)
	}
}

func testCreateIdempotent(t *testing.T, _ *sqldb.DB, s *orderdb.Store) {
	first := mustCreate(t, s, sample("ord_1", "usr_1", t0))
	second := sample("ord_1", "usr_2", t0.Add(time.Hour))
	second.Items = second.Items[:1]
	got, created, err := s.Create(context.Background(), second)
	if err != nil {
		t.Fatal(err)
	}
	if created {
		t.Error("second Create reported created")
	}
	if !reflect.DeepEqual(got, first) {
		t.Errorf("second Create returned %+v\nwant the first %+v", got, first)
	}
	if list, _ := s.ListByUser(context.Background(), "usr_2", nil, 10); len(list) != 0 {
		t.Errorf("second Create wrote an order for usr_2: %+v", list)
	}
}

func testGetUnknown(t *testing.T, _ *sqldb.DB, s *orderdb.Store) {
	_, err := s.Get(context.Background(), "ord_nope")
	if !errs.Is(errs.NotFound, err) {
		t.Fatalf("Get unknown = %v, want NotFound", err)
	}
}

func testListByUser(t *testing.T, _ *sqldb.DB, s *orderdb.Store) {
	ctx := context.Background()
	// Two orders share a creation time: the id breaks the tie.
	for i, at := range []time.Duration{0, time.Second, time.Second, 2 * time.Second} {
		mustCreate(t, s, sample(fmt.Sprintf("ord_%d", i), "usr_1", t0.Add(at)))
	}
	mustCreate(t, s, sample("ord_x", "usr_2", t0.Add(time.Hour)))
	ids := func(list []order.Order) []string {
		var out []string
		for _, o := range list {
			if len(o.Items) != 2 || o.Items[1].UnitPrice != money.USD(999) {
				t.Errorf("order %s items = %+v", o.ID, o.Items)
			}
			out = append(out, o.ID)
		}
		return out
	}
	all, err := s.ListByUser(ctx, "usr_1", nil, 10)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ids(all), []string{"ord_3", "ord_2", "ord_1", "ord_0"}; !reflect.DeepEqual(got, want) {
		t.Errorf("ListByUser = %v, want %v", got, want)
	}
	// After ord_3, and after ord_2 which shares its time with ord_1.
	mid, err := s.ListByUser(ctx, "usr_1", &order.ListKey{CreatedAtMillis: t0.Add(2 * time.Second).UnixMilli(), ID: "ord_3"}, 2)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ids(mid), []string{"ord_2", "ord_1"}; !reflect.DeepEqual(got, want) {
		t.Errorf("after ord_3 limit 2 = %v, want %v", got, want)
	}
	tie, err := s.ListByUser(ctx, "usr_1", &order.ListKey{CreatedAtMillis: t0.Add(time.Second).UnixMilli(), ID: "ord_2"}, 10)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ids(tie), []string{"ord_1", "ord_0"}; !reflect.DeepEqual(got, want) {
		t.Errorf("after ord_2 = %v, want %v", got, want)
	}
	// A key between orders (one since deleted, say) still seeks right.
	gap, err := s.ListByUser(ctx, "usr_1", &order.ListKey{CreatedAtMillis: t0.Add(1500 * time.Millisecond).UnixMilli(), ID: "ord_zzz"}, 10)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ids(gap), []string{"ord_2", "ord_1", "ord_0"}; !reflect.DeepEqual(got, want) {
		t.Errorf("after a gap = %v, want %v", got, want)
	}
	none, err := s.ListByUser(ctx, "usr_nobody", nil, 10)
	if err != nil || none == nil || len(none) != 0 {
		t.Errorf("unknown user = %#v, %v; want an empty non-nil slice", none, err)
	}
}

func testUpdate(t *testing.T, db *sqldb.DB, s *orderdb.Store) {
	ctx := context.Background()
	created := mustCreate(t, s, sample("ord_1", "usr_1", t0))
	later := t0.Add(time.Minute)
	got, err := s.Update(ctx, "ord_1", func(o *order.Order) (*order.Event, error) {
		o.Status = order.StatusCancelled
		o.CancelReason = "out of stock"
		o.Payment = order.PaymentInfo{ID: "pay_1", Status: "voided"}
		o.Shipment = order.ShipmentInfo{ID: "shp_1", Status: "cancelled", TrackingNumber: "T1"}
		o.UpdatedAt = later
		return nil, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := sample("ord_1", "usr_1", t0)
	want.Number = created.Number
	want.Status, want.CancelReason, want.UpdatedAt = order.StatusCancelled, "out of stock", later
	want.Payment = order.PaymentInfo{ID: "pay_1", Status: "voided"}
	want.Shipment = order.ShipmentInfo{ID: "shp_1", Status: "cancelled", TrackingNumber: "T1"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Update returned %+v\nwant %+v", got, want)
	}
	if stored, _ := s.Get(ctx, "ord_1"); !reflect.DeepEqual(stored, want) {
		t.Errorf("stored %+v\nwant %+v", stored, want)
	}
	if rows := outboxRows(t, db); len(rows) != 0 {
		t.Errorf("an update without an event wrote %v", rows)
	}
	_, err = s.Update(ctx, "ord_nope", func(o *order.Order) (*order.Event, error) { return nil, nil })
	if !errs.Is(errs.NotFound, err) {
		t.Errorf("Update unknown = %v, want NotFound", err)
	}
}

func testUpdateFailure(t *testing.T, db *sqldb.DB, s *orderdb.Store) {
	ctx := context.Background()
	before := mustCreate(t, s, sample("ord_1", "usr_1", t0))
	boom := errors.New("boom")
	_, err := s.Update(ctx, "ord_1", func(o *order.Order) (*order.Event, error) {
		o.Status = order.StatusConfirmed
		return nil, boom
	})
	if !errors.Is(err, boom) {
		t.Errorf("Update = %v, want the function's error", err)
	}
	got, err := s.Update(ctx, "ord_1", func(o *order.Order) (*order.Event, error) {
		o.Status = order.StatusConfirmed
		return nil, order.ErrNoChange
	})
	if err != nil {
		t.Fatalf("ErrNoChange: %v", err)
	}
	if got.Status != order.StatusPending {
		t.Errorf("ErrNoChange returned status %q, want the stored pending", got.Status)
	}
	// An event that cannot be written rolls the change back.
	_, err = s.Update(ctx, "ord_1", func(o *order.Order) (*order.Event, error) {
		o.Status = order.StatusConfirmed
		return &order.Event{Subject: order.SubjectOrderPlaced, ID: o.ID, Data: make(chan int)}, nil
	})
	if err == nil {
		t.Error("an unencodable event did not fail the update")
	}
	if stored, _ := s.Get(ctx, "ord_1"); !reflect.DeepEqual(stored, before) {
		t.Errorf("failed updates changed the order: %+v", stored)
	}
	if rows := outboxRows(t, db); len(rows) != 0 {
		t.Errorf("failed updates wrote %v", rows)
	}
}

func testUpdateEvent(t *testing.T, db *sqldb.DB, s *orderdb.Store) {
	ctx := context.Background()
	mustCreate(t, s, sample("ord_1", "usr_1", t0))
	at := t0.Add(time.Minute)
	_, err := s.Update(ctx, "ord_1", func(o *order.Order) (*order.Event, error) {
		o.Status = order.StatusConfirmed
		o.UpdatedAt = at
		return &order.Event{Subject: order.SubjectOrderPlaced, ID: o.ID, Data: order.OrderPlaced{Order: *o}}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	rows := outboxRows(t, db)
	if len(rows) != 1 || rows[0].ID != "ord_1" || rows[0].Subject != order.SubjectOrderPlaced || rows[0].CreatedAt != sqldb.Millis(at) {
		t.Fatalf("outbox = %+v", rows)
	}
	var ev order.OrderPlaced
	if err := json.Unmarshal([]byte(rows[0].Payload), &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Order.Status != order.StatusConfirmed || len(ev.Order.Items) != 2 {
		t.Errorf("event payload = %+v", ev)
	}
}

func testConfirmOneOutboxRow(t *testing.T, db *sqldb.DB, s *orderdb.Store) {
	ctx := context.Background()
	kicks := 0
	svc := order.NewService(s, func() { kicks++ }, clock.NewFake(t0))
	if _, err := svc.CreateOrder(ctx, order.NewOrder{
		ID: "ord_1", UserID: "usr_1", Email: "a@example.com",
		Items: []order.Item{{ProductID: "prd_a", Name: "Widget", Quantity: 1, UnitPrice: money.USD(100)}},
	}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := svc.Confirm(ctx, "ord_1", order.PaymentInfo{ID: "pay_1", Status: "captured"}, order.ShipmentInfo{ID: "shp_1"}); err != nil {
			t.Fatal(err)
		}
	}
	rows := outboxRows(t, db)
	if len(rows) != 2 || rows[0].ID != "ord_1" || rows[0].Subject != order.SubjectOrderPlaced ||
		rows[1].ID != order.EmailJobID("ord_1", order.EmailOrderConfirmation) || rows[1].Subject != order.SubjectEmailRequested {
		t.Errorf("outbox = %+v, want exactly one OrderPlaced and its e-mail job, in the same transaction", rows)
	}
	if kicks != 1 {
		t.Errorf("kicked %d times, want 1", kicks)
	}
}

func testConcurrentConfirm(t *testing.T, db *sqldb.DB, s *orderdb.Store) {
	ctx := context.Background()
	mustCreate(t, s, sample("ord_1", "usr_1", t0))
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.Update(ctx, "ord_1", func(o *order.Order) (*order.Event, error) {
				if o.Status == order.StatusConfirmed {
					return nil, order.ErrNoChange
				}
				o.Status = order.StatusConfirmed
				o.Payment = order.PaymentInfo{ID: fmt.Sprintf("pay_%d", i), Status: "captured"}
				return &order.Event{Subject: order.SubjectOrderPlaced, ID: o.ID, Data: order.OrderPlaced{Order: *o}}, nil
			})
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	rows := outboxRows(t, db)
	if len(rows) != 1 {
		t.Fatalf("outbox = %+v, want one row", rows)
	}
	var ev order.OrderPlaced
	if err := json.Unmarshal([]byte(rows[0].Payload), &ev); err != nil {
		t.Fatal(err)
	}
	stored, _ := s.Get(ctx, "ord_1")
	if ev.Order.Payment != stored.Payment {
		t.Errorf("the event's payment %+v is not the stored %+v", ev.Order.Payment, stored.Payment)
	}
}

func testOpenTwice(t *testing.T, db *sqldb.DB, s *orderdb.Store) {
	mustCreate(t, s, sample("ord_1", "usr_1", t0))
	s2, err := orderdb.Open(context.Background(), db)
	if err != nil {
		t.Fatalf("second Open: %v", err)
	}
	if _, err := s2.Get(context.Background(), "ord_1"); err != nil {
		t.Errorf("second Open lost data: %v", err)
	}
}

func testGetByNumber(t *testing.T, _ *sqldb.DB, s *orderdb.Store) {
	ctx := context.Background()
	o := mustCreate(t, s, sample("ord_1", "usr_1", t0))
	mustCreate(t, s, sample("ord_2", "usr_1", t0.Add(time.Second)))
	if _, sh, ok := order.ParseNumber(o.Number); !ok || sh != shard.ForUser("usr_1") {
		t.Fatalf("stored number %q does not carry the user's shard", o.Number)
	}
	got, err := s.GetByNumber(ctx, o.Number)
	if err != nil || !reflect.DeepEqual(got, o) {
		t.Fatalf("GetByNumber(%s) = %+v, %v; want %+v", o.Number, got, err, o)
	}
	// As a customer may type it: lower case, no dashes.
	typed := strings.ToLower(strings.ReplaceAll(o.Number, "-", ""))
	if got, err := s.GetByNumber(ctx, typed); err != nil || got.ID != "ord_1" {
		t.Fatalf("GetByNumber(%s) = %s, %v; want ord_1", typed, got.ID, err)
	}
	other := order.NewNumber(shard.ForUser("usr_1"))
	for _, n := range []string{other, "GM-0000-0000", "ord_1", ""} {
		if n == o.Number {
			continue
		}
		if _, err := s.GetByNumber(ctx, n); !errs.Is(errs.NotFound, err) {
			t.Errorf("GetByNumber(%q) = %v, want NotFound", n, err)
		}
	}
}

func testTakenNumber(t *testing.T, _ *sqldb.DB, s *orderdb.Store) {
	ctx := context.Background()
	a := mustCreate(t, s, sample("ord_1", "usr_1", t0))
	o := sample("ord_2", "usr_1", t0)
	o.Number = a.Number
	b := mustCreate(t, s, o)
	if b.Number == a.Number {
		t.Fatalf("two orders share number %s", a.Number)
	}
	if n, sh, ok := order.ParseNumber(b.Number); !ok || n != b.Number || sh != shard.ForUser("usr_1") {
		t.Fatalf("redrawn number %q is not a number of the user's shard", b.Number)
	}
	// A repeat of the create keeps the number first stored.
	again, created, err := s.Create(ctx, sample("ord_2", "usr_1", t0))
	if err != nil || created || again.Number != b.Number {
		t.Fatalf("repeat Create = %s created %v, %v; want %s", again.Number, created, err, b.Number)
	}
	// A number that does not carry the user's shard is replaced.
	o = sample("ord_3", "usr_1", t0)
	o.Number = "GM-ZZZZ-ZZZZ"
	if got := mustCreate(t, s, o); got.Number == o.Number {
		t.Fatalf("kept number %s of another shard", o.Number)
	}
}

func testBackfillNumbers(t *testing.T, db *sqldb.DB, s *orderdb.Store) {
	ctx := context.Background()
	for i := range 3 {
		mustCreate(t, s, sample(fmt.Sprintf("ord_%d", i), fmt.Sprintf("usr_%d", i), t0))
	}
	if err := s.Tombstone(ctx, "ord_gone", t0); err != nil {
		t.Fatal(err)
	}
	// As written before order numbers existed.
	if _, err := db.ExecContext(ctx, `UPDATE orders SET number = ''`); err != nil {
		t.Fatal(err)
	}
	s2, err := orderdb.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for i := range 3 {
		o, err := s2.Get(ctx, fmt.Sprintf("ord_%d", i))
		if err != nil {
			t.Fatal(err)
		}
		if _, sh, ok := order.ParseNumber(o.Number); !ok || sh != shard.ForUser(o.UserID) || seen[o.Number] {
			t.Fatalf("order %s numbered %q after Open", o.ID, o.Number)
		}
		seen[o.Number] = true
		if got, err := s2.GetByNumber(ctx, o.Number); err != nil || got.ID != o.ID {
			t.Fatalf("GetByNumber(%s) = %s, %v", o.Number, got.ID, err)
		}
	}
	var n int
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM orders WHERE id = 'ord_gone' AND number = ''`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("the tombstone was numbered: %d, %v", n, err)
	}
}
