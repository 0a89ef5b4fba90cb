package paymentdb_test

import (
	"context"
	"encoding/json"
	"os"
	"testing"
	"testing/fstest"
	"time"

	"github.com/globomantics/globomantics/internal/payment"
	"github.com/globomantics/globomantics/internal/payment/paymentdb"
	"github.com/globomantics/globomantics/internal/platform/clock"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/money"
	"github.com/globomantics/globomantics/internal/platform/outbox"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

// TestOutboxMigrationCopies keeps the store's copies of the outbox
// migrations byte-for-byte outbox.Migration and outbox.MigrationV2.
func TestOutboxMigrationCopies(t *testing.T) {
	for file, want := range map[string]string{
		"00004_outbox.sql":    outbox.Migration,
		"00005_outbox_v2.sql": outbox.MigrationV2,
	} {
		b, err := os.ReadFile("migrations/" + file)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != want {
			t.Errorf("migrations/%s differs from the outbox package's:\n%s", file, b)
		}
	}
}

// outboxRow is a row of a node's outbox.
type outboxRow struct {
	subject, id, payload string
	created              int64
}

// outboxRows lists db's outbox, oldest first.
func outboxRows(t *testing.T, db *sqldb.DB) []outboxRow {
	t.Helper()
	rows, err := db.QueryContext(context.Background(), `SELECT subject, seq_id, payload, created_at FROM outbox ORDER BY created_at, seq_id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []outboxRow
	for rows.Next() {
		var r outboxRow
		if err := rows.Scan(&r.subject, &r.id, &r.payload, &r.created); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestCaptureEvent runs the payment service over the store on every
// backend, over one node and two: a capture writes exactly one
// PaymentCaptured to the outbox of its payment's node, in the capture's
// transaction; a repeated capture, a refund, a void and a decline write
// none.
func TestCaptureEvent(t *testing.T) {
	for _, b := range testenv.ShardedBackends() {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			f := newLedgerFixture(t, b)
			svc := f.svc
			if got := f.st.Outboxes(); len(got) != len(f.nodes) {
				t.Errorf("Outboxes() = %d databases, want %d (one per node)", len(got), len(f.nodes))
			}
			total := func() int {
				n := 0
				for _, db := range f.nodes {
					n += len(outboxRows(t, db))
				}
				return n
			}

			ordA := f.orders(t)
			p, err := svc.Authorize(ctx, authReq(ordA, 4321, payment.TestCardOK))
			if err != nil {
				t.Fatal(err)
			}
			if n := total(); n != 0 {
				t.Fatalf("an authorization wrote %d outbox rows", n)
			}
			f.clk.Advance(time.Minute)
			if _, err := svc.Capture(ctx, p.ID); err != nil {
				t.Fatal(err)
			}
			rows := outboxRows(t, f.home(ordA))
			if len(rows) != 1 || total() != 1 {
				t.Fatalf("after a capture: home node's outbox %+v, %d rows on all nodes; want one row", rows, total())
			}
			r := rows[0]
			at := ledgerNow.Add(time.Minute)
			if r.subject != payment.SubjectPaymentCaptured || r.id != payment.CapturedEventID(ordA) || r.id != ordA+"/captured" || r.created != sqldb.Millis(at) {
				t.Errorf("outbox row = %+v, want %s %s/captured at %v", r, payment.SubjectPaymentCaptured, ordA, at)
			}
			var ev payment.PaymentCaptured
			if err := json.Unmarshal([]byte(r.payload), &ev); err != nil {
				t.Fatal(err)
			}
			if want := (payment.PaymentCaptured{PaymentID: p.ID, OrderID: ordA, Amount: money.USD(4321), CapturedAt: at}); ev != want {
				t.Errorf("payload = %+v, want %+v", ev, want)
			}

			// Repeats and the other movements publish nothing.
			f.clk.Advance(time.Minute)
			if _, err := svc.Capture(ctx, p.ID); err != nil {
				t.Fatalf("repeated Capture: %v", err)
			}
			if _, err := svc.Refund(ctx, p.ID); err != nil {
				t.Fatal(err)
			}
			if _, err := svc.Capture(ctx, p.ID); !errs.Is(errs.Conflict, err) {
				t.Errorf("Capture(refunded) err = %v, want Conflict", err)
			}
			ordB := f.orders(t)
			pb, err := svc.Authorize(ctx, authReq(ordB, 100, payment.TestCardOK))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := svc.Void(ctx, pb.ID); err != nil {
				t.Fatal(err)
			}
			if _, err := svc.Authorize(ctx, authReq(f.orders(t), 100, payment.TestCardDeclined)); !errs.Is(errs.Declined, err) {
				t.Fatalf("declined card: %v", err)
			}
			if _, err := svc.VoidForOrder(ctx, f.orders(t)); err != nil {
				t.Fatal(err)
			}
			if n := total(); n != 1 {
				t.Errorf("after a repeated capture, a refund, a void, a decline and a cancellation: %d outbox rows, want 1", n)
			}

			// A capture on the last node (orders alternate between the
			// first and the last; ordA was on the first) goes to its outbox.
			f.orders(t)
			ordC := f.orders(t)
			pc, err := svc.Authorize(ctx, authReq(ordC, 777, payment.TestCardOK))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := svc.Capture(ctx, pc.ID); err != nil {
				t.Fatal(err)
			}
			found := false
			for _, r := range outboxRows(t, f.home(ordC)) {
				found = found || r.id == payment.CapturedEventID(ordC)
			}
			if !found || total() != 2 {
				t.Errorf("capture of %s: on its node %v, %d rows in all; want it there, 2 in all", ordC, found, total())
			}
		})
	}
}

// TestCaptureEventRollsBack: a capture whose ledger entry is refused (a
// second capture entry) writes no event either, and the kick that wakes
// the relay comes once per capture recorded.
func TestCaptureEventRollsBack(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			db := b.Open(t)
			st, err := paymentdb.Open(ctx, db)
			if err != nil {
				t.Fatal(err)
			}
			p := newPayment("ord_1")
			if err := create(ctx, st, p); err != nil {
				t.Fatal(err)
			}
			if _, err := st.Update(ctx, p.ID, capture); err != nil {
				t.Fatal(err)
			}
			if rows := outboxRows(t, db); len(rows) != 1 {
				t.Fatalf("outbox after a capture = %+v, want one row", rows)
			}
			// The row was published and deleted by a relay: the ledger,
			// not the outbox, is what refuses a second capture event.
			if _, err := db.ExecContext(ctx, `DELETE FROM outbox`); err != nil {
				t.Fatal(err)
			}
			if _, err := st.Update(ctx, p.ID, capture); !errs.Is(errs.Conflict, err) {
				t.Errorf("second capture entry: err = %v, want Conflict", err)
			}
			if rows := outboxRows(t, db); len(rows) != 0 {
				t.Errorf("a refused capture wrote %+v to the outbox", rows)
			}

			kicks := 0
			svc := payment.NewService(st, clock.NewFake(ledgerNow), payment.WithKick(func() { kicks++ }))
			q, err := svc.Authorize(ctx, authReq("ord_2", 500, payment.TestCardOK))
			if err != nil {
				t.Fatal(err)
			}
			for range 2 {
				if _, err := svc.Capture(ctx, q.ID); err != nil {
					t.Fatal(err)
				}
			}
			if kicks != 1 {
				t.Errorf("%d kicks for one capture captured twice, want 1", kicks)
			}
		})
	}
}

// TestSharedOutbox opens the store on a database whose outbox another
// store made first, and makes another store's outbox after it, on SQLite
// and PostgreSQL: every store with an outbox can share one database, in
// either order (outbox.SharedMigrations).
func TestSharedOutbox(t *testing.T) {
	other := fstest.MapFS{
		"00001_outbox.sql":    {Data: []byte(outbox.Migration)},
		"00002_outbox_v2.sql": {Data: []byte(outbox.MigrationV2)},
	}
	migrateOther := func(t *testing.T, db *sqldb.DB) {
		t.Helper()
		fsys, err := outbox.SharedMigrations(context.Background(), db, other, "00002_outbox_v2.sql")
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Migrate(context.Background(), "other", fsys); err != nil {
			t.Fatalf("the other store's migrations: %v", err)
		}
	}
	for _, b := range testenv.Backends() {
		for _, otherFirst := range []bool{true, false} {
			name := b.Name + "/payment first"
			if otherFirst {
				name = b.Name + "/other first"
			}
			t.Run(name, func(t *testing.T) {
				ctx := context.Background()
				db := b.Open(t)
				if otherFirst {
					migrateOther(t, db)
				}
				st, err := paymentdb.Open(ctx, db)
				if err != nil {
					t.Fatalf("Open on a shared database: %v", err)
				}
				if !otherFirst {
					migrateOther(t, db)
				}
				p := newPayment("ord_1")
				if err := create(ctx, st, p); err != nil {
					t.Fatal(err)
				}
				if _, err := st.Update(ctx, p.ID, capture); err != nil {
					t.Fatal(err)
				}
				if rows := outboxRows(t, db); len(rows) != 1 || rows[0].id != "ord_1/captured" {
					t.Errorf("shared outbox = %+v, want ord_1/captured", rows)
				}
			})
		}
	}
}
