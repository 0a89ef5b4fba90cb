package paymentdb_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/globomantics/globomantics/internal/payment"
	"github.com/globomantics/globomantics/internal/payment/paymentdb"
	"github.com/globomantics/globomantics/internal/platform/clock"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/ids"
	"github.com/globomantics/globomantics/internal/platform/money"
	"github.com/globomantics/globomantics/internal/platform/shard"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

// ledgerFixture is the payment service over a sharded store, with the
// nodes underneath.
type ledgerFixture struct {
	svc   *payment.Service
	st    *paymentdb.Store
	sh    *sqldb.Sharded
	nodes map[string]*sqldb.DB
	clk   *clock.Fake
	// orders makes order ids alternating between the first and the last
	// node.
	orders func(t *testing.T) string
}

// ledgerNow is when the ledger tests run; the test cards expire later.
var ledgerNow = time.Date(2030, 3, 15, 9, 0, 0, 0, time.UTC)

func newLedgerFixture(t *testing.T, b testenv.ShardedBackend) ledgerFixture {
	t.Helper()
	sh, nodes := b.Open(t)
	st, err := paymentdb.OpenSharded(context.Background(), sh)
	if err != nil {
		t.Fatal(err)
	}
	clk := clock.NewFake(ledgerNow)
	f := ledgerFixture{svc: payment.NewService(st, clk), st: st, sh: sh, nodes: nodes, clk: clk}
	first, last := testenv.FirstAndLast(sh)
	n := 0
	f.orders = func(t *testing.T) string {
		t.Helper()
		node := first
		if n%2 == 1 {
			node = last
		}
		n++
		u := testenv.KeyOnNode(t, sh.Map(), node, fmt.Sprintf("usr_%d_", n))
		return ids.NewInShard("ord", ledgerNow, uint16(shard.ForUser(u)))
	}
	return f
}

// entries counts the ledger rows of a payment by kind, on every node.
func (f ledgerFixture) entries(t *testing.T, paymentID string) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, db := range f.nodes {
		rows, err := db.QueryContext(context.Background(), `SELECT kind FROM payment_ledger WHERE payment_id = ?`, paymentID)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var k string
			if err := rows.Scan(&k); err != nil {
				t.Fatal(err)
			}
			out[k]++
		}
		rows.Close()
	}
	return out
}

// orderEntries counts the ledger rows of an order, on every node.
func (f ledgerFixture) orderEntries(t *testing.T, orderID string) int {
	t.Helper()
	total := 0
	for _, db := range f.nodes {
		var n int
		if err := db.QueryRowContext(context.Background(), `SELECT COUNT(*) FROM payment_ledger WHERE order_id = ?`, orderID).Scan(&n); err != nil {
			t.Fatal(err)
		}
		total += n
	}
	return total
}

// home is the node the payment of orderID belongs on.
func (f ledgerFixture) home(orderID string) *sqldb.DB {
	return f.nodes[f.sh.Map().NodeFor(shard.OfIDOrKey(orderID))]
}

func ledgerCard(number string) payment.Card {
	return payment.Card{Number: number, ExpMonth: 12, ExpYear: 2031, CVC: "123"}
}

func authReq(orderID string, cents int64, number string) payment.AuthorizeRequest {
	return payment.AuthorizeRequest{OrderID: orderID, Amount: money.USD(cents), Card: ledgerCard(number)}
}

func wantEntries(t *testing.T, what string, got map[string]int, kinds ...string) {
	t.Helper()
	want := map[string]int{}
	for _, k := range kinds {
		want[k]++
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("%s: ledger = %v, want %v", what, got, want)
	}
}

func wantErrKind(t *testing.T, what string, err error, k errs.Kind, detail string) {
	t.Helper()
	if !errs.Is(k, err) {
		t.Errorf("%s: err = %v (%v), want %v", what, err, errs.KindOf(err), k)
		return
	}
	if detail != "" && errs.Detail(err) != detail {
		t.Errorf("%s: detail = %q, want %q", what, errs.Detail(err), detail)
	}
}

// TestLedger is the conformance suite of the payment ledger, run on every
// backend, over one node and two: each money movement is written once,
// under repeats and concurrent repeats; VoidForOrder cancels an order's
// payment before or while it is authorized; Audit's numbers are exact and
// it finds a ledger broken by hand.
func TestLedger(t *testing.T) {
	for _, b := range testenv.ShardedBackends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Run("entries written once", func(t *testing.T) { testEntriesOnce(t, newLedgerFixture(t, b)) })
			t.Run("concurrent repeats", func(t *testing.T) { testConcurrentRepeats(t, newLedgerFixture(t, b)) })
			t.Run("void for order before authorize", func(t *testing.T) { testVoidForOrderFirst(t, newLedgerFixture(t, b)) })
			t.Run("void for order races authorize", func(t *testing.T) { testVoidForOrderRace(t, newLedgerFixture(t, b)) })
			t.Run("void for order waits for an authorization in flight", func(t *testing.T) { testVoidForOrderWaits(t, newLedgerFixture(t, b)) })
			t.Run("audit totals", func(t *testing.T) { testAuditTotals(t, newLedgerFixture(t, b)) })
			t.Run("audit violations", func(t *testing.T) { testAuditViolations(t, newLedgerFixture(t, b)) })
			t.Run("ledger of payments from before it", func(t *testing.T) { testLedgerBackfill(t, b) })
		})
	}
}

func testEntriesOnce(t *testing.T, f ledgerFixture) {
	ctx := context.Background()
	svc := f.svc

	// Authorize, capture, refund, each twice.
	ordA := f.orders(t)
	p, err := svc.Authorize(ctx, authReq(ordA, 1000, payment.TestCardOK))
	if err != nil {
		t.Fatal(err)
	}
	if again, err := svc.Authorize(ctx, authReq(ordA, 1000, payment.TestCardOK)); err != nil || again != p {
		t.Errorf("repeat Authorize = %+v, %v; want %+v", again, err, p)
	}
	wantEntries(t, "authorized", f.entries(t, p.ID), payment.KindAuthorization)
	_, err = svc.Authorize(ctx, authReq(ordA, 1001, payment.TestCardOK))
	wantErrKind(t, "repeat Authorize with another amount", err, errs.Conflict, "")
	_, err = svc.Authorize(ctx, payment.AuthorizeRequest{OrderID: ordA, Amount: money.USD(1000),
		Card: payment.Card{Number: "378282246310005", ExpMonth: 1, ExpYear: 2031, CVC: "1234"}})
	wantErrKind(t, "repeat Authorize with another card", err, errs.Conflict, "")
	for i := 0; i < 2; i++ {
		f.clk.Advance(time.Minute)
		if _, err := svc.Capture(ctx, p.ID); err != nil {
			t.Fatalf("Capture #%d: %v", i+1, err)
		}
	}
	wantEntries(t, "captured", f.entries(t, p.ID), payment.KindAuthorization, payment.KindCapture)
	_, err = svc.Void(ctx, p.ID)
	wantErrKind(t, "Void(captured)", err, errs.Conflict, "")
	_, err = svc.VoidForOrder(ctx, ordA)
	wantErrKind(t, "VoidForOrder(captured)", err, errs.Conflict, "")
	for i := 0; i < 2; i++ {
		f.clk.Advance(time.Minute)
		if _, err := svc.Refund(ctx, p.ID); err != nil {
			t.Fatalf("Refund #%d: %v", i+1, err)
		}
	}
	wantEntries(t, "refunded", f.entries(t, p.ID), payment.KindAuthorization, payment.KindCapture, payment.KindRefund)
	l, err := f.st.Ledger(ctx, p.ID)
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, e := range l {
		kinds = append(kinds, e.Kind)
		if e.Amount != money.USD(1000) || e.PaymentID != p.ID || e.OrderID != ordA || !strings.HasPrefix(e.ID, "led_") {
			t.Errorf("entry %+v", e)
		}
	}
	if want := []string{"authorization", "capture", "refund"}; !slices.Equal(kinds, want) {
		t.Errorf("Ledger kinds = %v, want %v", kinds, want)
	}
	if !l[0].CreatedAt.Equal(ledgerNow) || !l[2].CreatedAt.Equal(ledgerNow.Add(3*time.Minute)) {
		t.Errorf("entry times = %v, %v", l[0].CreatedAt, l[2].CreatedAt)
	}

	// Authorize and void, twice each way.
	ordB := f.orders(t)
	pb, err := svc.Authorize(ctx, authReq(ordB, 2000, payment.TestCardOK))
	if err != nil {
		t.Fatal(err)
	}
	voided, err := svc.Void(ctx, pb.ID)
	if err != nil || voided.Status != payment.StatusVoided {
		t.Fatalf("Void = %+v, %v", voided, err)
	}
	if again, err := svc.Void(ctx, pb.ID); err != nil || again != voided {
		t.Errorf("second Void = %+v, %v", again, err)
	}
	if again, err := svc.VoidForOrder(ctx, ordB); err != nil || again != voided {
		t.Errorf("VoidForOrder after Void = %+v, %v; want %+v", again, err, voided)
	}
	wantEntries(t, "voided", f.entries(t, pb.ID), payment.KindAuthorization, payment.KindVoid)
	_, err = svc.Authorize(ctx, authReq(ordB, 2000, payment.TestCardOK))
	wantErrKind(t, "Authorize after Void", err, errs.Conflict, "the order's payment was cancelled")
	_, err = svc.Capture(ctx, pb.ID)
	wantErrKind(t, "Capture(voided)", err, errs.Conflict, "")
	wantEntries(t, "voided, after refused calls", f.entries(t, pb.ID), payment.KindAuthorization, payment.KindVoid)

	// A decline, twice.
	ordC := f.orders(t)
	for i := 0; i < 2; i++ {
		_, err := svc.Authorize(ctx, authReq(ordC, 500, payment.TestCardDeclined))
		wantErrKind(t, "declined", err, errs.Declined, "card declined")
	}
	pc, err := svc.PaymentForOrder(ctx, ordC)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := svc.VoidForOrder(ctx, ordC); err != nil || got != pc {
		t.Errorf("VoidForOrder(declined) = %+v, %v; want it unchanged", got, err)
	}
	wantEntries(t, "declined", f.entries(t, pc.ID), payment.KindDecline)

	// A transient failure records nothing.
	ordD := f.orders(t)
	_, err = svc.Authorize(ctx, authReq(ordD, 500, payment.TestCardUnavailable))
	wantErrKind(t, "processor down", err, errs.Unavailable, "")
	if n := f.orderEntries(t, ordD); n != 0 {
		t.Errorf("transient failure wrote %d ledger rows", n)
	}
}

func testConcurrentRepeats(t *testing.T, f ledgerFixture) {
	ctx := context.Background()
	const n = 8
	run := func(fn func() error) {
		t.Helper()
		var wg sync.WaitGroup
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := fn(); err != nil {
					t.Errorf("concurrent call: %v", err)
				}
			}()
		}
		wg.Wait()
	}
	for range 2 { // an order on each node
		ord := f.orders(t)
		run(func() error { _, err := f.svc.Authorize(ctx, authReq(ord, 700, payment.TestCardOK)); return err })
		p, err := f.svc.PaymentForOrder(ctx, ord)
		if err != nil {
			t.Fatal(err)
		}
		wantEntries(t, "concurrent authorizations", f.entries(t, p.ID), payment.KindAuthorization)
		run(func() error { _, err := f.svc.Capture(ctx, p.ID); return err })
		wantEntries(t, "concurrent captures", f.entries(t, p.ID), payment.KindAuthorization, payment.KindCapture)
		run(func() error { _, err := f.svc.Refund(ctx, p.ID); return err })
		wantEntries(t, "concurrent refunds", f.entries(t, p.ID), payment.KindAuthorization, payment.KindCapture, payment.KindRefund)

		ord2 := f.orders(t)
		p2, err := f.svc.Authorize(ctx, authReq(ord2, 900, payment.TestCardOK))
		if err != nil {
			t.Fatal(err)
		}
		var i int
		var mu sync.Mutex
		run(func() error { // Void and VoidForOrder, interleaved
			mu.Lock()
			i++
			byOrder := i%2 == 0
			mu.Unlock()
			var got payment.Payment
			var err error
			if byOrder {
				got, err = f.svc.VoidForOrder(ctx, ord2)
			} else {
				got, err = f.svc.Void(ctx, p2.ID)
			}
			if err == nil && (got.Status != payment.StatusVoided || got.ID != p2.ID) {
				err = fmt.Errorf("void = %+v", got)
			}
			return err
		})
		wantEntries(t, "concurrent voids", f.entries(t, p2.ID), payment.KindAuthorization, payment.KindVoid)

		ord3 := f.orders(t)
		run(func() error {
			_, err := f.svc.Authorize(ctx, authReq(ord3, 900, payment.TestCardDeclined))
			if errs.Is(errs.Declined, err) {
				return nil
			}
			return fmt.Errorf("declined card: %v", err)
		})
		if n := f.orderEntries(t, ord3); n != 1 {
			t.Errorf("concurrent declines wrote %d ledger rows, want 1", n)
		}
	}
	a, err := f.svc.Audit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !a.OK() || a.Held != 0 || a.Authorized != 2*(700+900) || a.Voided != 2*900 || a.Refunded != 2*700 || a.Declined != 2 {
		t.Errorf("Audit = %+v", a)
	}
}

func testVoidForOrderFirst(t *testing.T, f ledgerFixture) {
	ctx := context.Background()
	for range 2 { // an order on each node
		ord := f.orders(t)
		c, err := f.svc.VoidForOrder(ctx, ord)
		if err != nil {
			t.Fatal(err)
		}
		if c.ID != "" || c.OrderID != ord || c.Status != payment.StatusVoided ||
			c.Amount != money.USD(0) || c.CardLast4 != "" || !c.Cancelled() || !c.CreatedAt.Equal(f.clk.Now()) {
			t.Errorf("VoidForOrder(no payment) = %+v", c)
		}
		// The cancellation sits where the order's payment would.
		for name, db := range f.nodes {
			var n int
			if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM payments WHERE order_id = ? AND shard = ?`, ord, int(shard.OfIDOrKey(ord))).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if want := db == f.home(ord); (n == 1) != want {
				t.Errorf("cancellation of %s on node %s: %d rows", ord, name, n)
			}
		}
		f.clk.Advance(time.Minute)
		if again, err := f.svc.VoidForOrder(ctx, ord); err != nil || again != c {
			t.Errorf("repeat VoidForOrder = %+v, %v; want %+v", again, err, c)
		}
		for _, card := range []string{payment.TestCardOK, payment.TestCardDeclined} {
			_, err = f.svc.Authorize(ctx, authReq(ord, 1500, card))
			wantErrKind(t, "Authorize after VoidForOrder", err, errs.Conflict, "the order's payment was cancelled")
		}
		if n := f.orderEntries(t, ord); n != 0 {
			t.Errorf("order %s has %d ledger rows, want none", ord, n)
		}
		if got, err := f.svc.PaymentForOrder(ctx, ord); err != nil || got != c {
			t.Errorf("PaymentForOrder = %+v, %v; want the cancellation", got, err)
		}
		// Its row has an id, which the calls by id treat as a voided payment.
		row, err := f.st.GetByOrder(ctx, ord)
		if err != nil || !strings.HasPrefix(row.ID, "pay_") || !row.Cancelled() {
			t.Fatalf("stored cancellation = %+v, %v", row, err)
		}
		if got, err := f.svc.GetPayment(ctx, row.ID); err != nil || got != row {
			t.Errorf("GetPayment = %+v, %v; want the cancellation", got, err)
		}
		_, err = f.svc.Capture(ctx, row.ID)
		wantErrKind(t, "Capture(cancellation)", err, errs.Conflict, "")
		_, err = f.svc.Refund(ctx, row.ID)
		wantErrKind(t, "Refund(cancellation)", err, errs.Conflict, "")
		if got, err := f.svc.Void(ctx, row.ID); err != nil || got != row {
			t.Errorf("Void(cancellation) = %+v, %v; want a no-op", got, err)
		}
	}
	for _, bad := range []string{"", "  ", strings.Repeat("o", payment.MaxOrderIDLen+1)} {
		_, err := f.svc.VoidForOrder(ctx, bad)
		wantErrKind(t, fmt.Sprintf("VoidForOrder(%q)", bad), err, errs.Invalid, "")
	}
	a, err := f.svc.Audit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !a.OK() || a.Payments != 2 || a.Cancelled != 2 || a.Entries != 0 || a.Authorized != 0 {
		t.Errorf("Audit = %+v", a)
	}
}

// testVoidForOrderRace runs VoidForOrder and Authorize for one order at
// once, many times: whichever wins, the order ends voided with nothing held.
func testVoidForOrderRace(t *testing.T, f ledgerFixture) {
	ctx := context.Background()
	const rounds = 12
	authorizedFirst := 0
	for i := range rounds {
		ord := f.orders(t)
		start := make(chan struct{})
		var (
			wg           sync.WaitGroup
			authP, voidP payment.Payment
			authE, voidE error
		)
		wg.Add(2)
		go func() {
			defer wg.Done()
			<-start
			authP, authE = f.svc.Authorize(ctx, authReq(ord, int64(100+i), payment.TestCardOK))
		}()
		go func() {
			defer wg.Done()
			<-start
			voidP, voidE = f.svc.VoidForOrder(ctx, ord)
		}()
		close(start)
		wg.Wait()
		if voidE != nil || voidP.Status != payment.StatusVoided {
			t.Fatalf("round %d: VoidForOrder = %+v, %v", i, voidP, voidE)
		}
		switch {
		case authE == nil:
			// Authorize won; VoidForOrder voided its authorization.
			authorizedFirst++
			if voidP.ID != authP.ID || voidP.Cancelled() {
				t.Errorf("round %d: Authorize = %+v won but VoidForOrder = %+v", i, authP, voidP)
			}
			wantEntries(t, "authorized then voided", f.entries(t, authP.ID), payment.KindAuthorization, payment.KindVoid)
		case errs.Is(errs.Conflict, authE):
			if !voidP.Cancelled() {
				t.Errorf("round %d: Authorize refused but VoidForOrder = %+v", i, voidP)
			}
			if n := f.orderEntries(t, ord); n != 0 {
				t.Errorf("round %d: refused Authorize left %d ledger rows", i, n)
			}
		default:
			t.Errorf("round %d: Authorize = %v", i, authE)
		}
		if p, err := f.svc.PaymentForOrder(ctx, ord); err != nil || p.Status != payment.StatusVoided {
			t.Errorf("round %d: the order's payment = %+v, %v; want voided", i, p, err)
		}
	}
	t.Logf("%d of %d rounds authorized before the void", authorizedFirst, rounds)
	a, err := f.svc.Audit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !a.OK() || a.Held != 0 || a.Captured != 0 || a.Voided != a.Authorized || a.Payments != rounds {
		t.Errorf("Audit after the races = %+v", a)
	}
}

// testVoidForOrderWaits holds an authorization's insert uncommitted while
// VoidForOrder runs: VoidForOrder finds no payment, waits on the order's
// unique key, and then voids the authorization rather than recording a
// cancellation beside it.
func testVoidForOrderWaits(t *testing.T, f ledgerFixture) {
	ctx := context.Background()
	ord := f.orders(t)
	home := f.home(ord)
	p := newPayment(ord)
	p.ID = ids.NewInShard("pay", ledgerNow, uint16(shard.OfIDOrKey(ord)))
	e := entry(p, payment.KindAuthorization)

	tx, err := home.DB.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, home.Rebind(`INSERT INTO payments (id, order_id, amount, currency, status, card_last4, created_at, updated_at, shard) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`),
		p.ID, p.OrderID, p.Amount.Amount, p.Amount.Currency, p.Status, p.CardLast4, sqldb.Millis(p.CreatedAt), sqldb.Millis(p.UpdatedAt), int(shard.OfIDOrKey(ord))); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(ctx, home.Rebind(`INSERT INTO payment_ledger (id, payment_id, order_id, kind, amount, currency, created_at, shard) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`),
		e.ID, e.PaymentID, e.OrderID, e.Kind, e.Amount.Amount, e.Amount.Currency, sqldb.Millis(e.CreatedAt), int(shard.OfIDOrKey(ord))); err != nil {
		t.Fatal(err)
	}

	type result struct {
		p   payment.Payment
		err error
	}
	done := make(chan result, 1)
	go func() {
		p, err := f.svc.VoidForOrder(ctx, ord)
		done <- result{p, err}
	}()
	if home.Dialect == sqldb.Postgres {
		// Wait until VoidForOrder waits on the insert (SQLite's
		// transactions queue on the database's write lock instead).
		testenv.CheckFor(t, 10*time.Second, func() error {
			var n int
			if err := home.QueryRowContext(ctx, `SELECT COUNT(*) FROM pg_locks WHERE NOT granted AND locktype = 'transactionid'`).Scan(&n); err != nil {
				return err
			}
			if n == 0 {
				return fmt.Errorf("VoidForOrder is not waiting")
			}
			return nil
		})
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil || r.p.ID != p.ID || r.p.Status != payment.StatusVoided || r.p.Cancelled() {
		t.Fatalf("VoidForOrder = %+v, %v; want the authorization %s voided", r.p, r.err, p.ID)
	}
	wantEntries(t, "authorization in flight, then voided", f.entries(t, p.ID), payment.KindAuthorization, payment.KindVoid)
	if a, err := f.svc.Audit(ctx); err != nil || !a.OK() || a.Held != 0 || a.Payments != 1 {
		t.Errorf("Audit = %+v, %v", a, err)
	}
}

// sequence runs a known history over orders on every node.
func sequence(t *testing.T, f ledgerFixture) map[string]payment.Payment {
	t.Helper()
	ctx := context.Background()
	out := map[string]payment.Payment{}
	must := func(p payment.Payment, err error) payment.Payment {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	captured := must(f.svc.Authorize(ctx, authReq(f.orders(t), 1000, payment.TestCardOK)))
	out["captured"] = must(f.svc.Capture(ctx, captured.ID))
	refunded := must(f.svc.Authorize(ctx, authReq(f.orders(t), 2000, payment.TestCardOK)))
	must(f.svc.Capture(ctx, refunded.ID))
	out["refunded"] = must(f.svc.Refund(ctx, refunded.ID))
	voided := must(f.svc.Authorize(ctx, authReq(f.orders(t), 3000, payment.TestCardOK)))
	out["voided"] = must(f.svc.Void(ctx, voided.ID))
	out["held"] = must(f.svc.Authorize(ctx, authReq(f.orders(t), 4000, payment.TestCardOK)))
	declinedOrder := f.orders(t)
	if _, err := f.svc.Authorize(ctx, authReq(declinedOrder, 500, payment.TestCardDeclined)); !errs.Is(errs.Declined, err) {
		t.Fatalf("declined card: %v", err)
	}
	out["declined"] = must(f.svc.PaymentForOrder(ctx, declinedOrder))
	cancelled := must(f.svc.VoidForOrder(ctx, f.orders(t)))
	out["cancelled"] = must(f.st.GetByOrder(ctx, cancelled.OrderID)) // with its row's id
	out["held2"] = must(f.svc.Authorize(ctx, authReq(f.orders(t), 700, payment.TestCardOK)))
	return out
}

func testAuditTotals(t *testing.T, f ledgerFixture) {
	ctx := context.Background()
	empty, err := f.svc.Audit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if (fmt.Sprint(empty) != fmt.Sprint(payment.Audit{Currency: "USD", Violations: []payment.Violation{}})) {
		t.Errorf("Audit of an empty ledger = %+v", empty)
	}
	sequence(t, f)
	a, err := f.svc.Audit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := payment.Audit{
		Currency:   "USD",
		Authorized: 1000 + 2000 + 3000 + 4000 + 700,
		Captured:   1000 + 2000,
		Voided:     3000,
		Refunded:   2000,
		Declined:   1,
		Held:       4000 + 700,
		// Captured minus refunded.
		NetCaptured: 1000,
		Payments:    7,
		Cancelled:   1,
		Entries:     2 + 3 + 2 + 1 + 1 + 1,
		Violations:  []payment.Violation{},
	}
	if fmt.Sprintf("%+v", a) != fmt.Sprintf("%+v", want) {
		t.Errorf("Audit =\n%+v, want\n%+v", a, want)
	}

	if first, last := testenv.FirstAndLast(f.sh); first != last {
		f.nodes[last].Close()
		_, err := f.svc.Audit(ctx)
		wantErrKind(t, "Audit with a node down", err, errs.Unavailable, "")
	}
}

func testAuditViolations(t *testing.T, f ledgerFixture) {
	ctx := context.Background()
	pays := sequence(t, f)
	exec := func(orderID, q string, args ...any) {
		t.Helper()
		if _, err := f.home(orderID).ExecContext(ctx, q, args...); err != nil {
			t.Fatal(err)
		}
	}
	// A capture that lost its ledger row.
	captured := pays["captured"]
	exec(captured.OrderID, `DELETE FROM payment_ledger WHERE payment_id = ? AND kind = 'capture'`, captured.ID)
	// A refunded payment that was also voided.
	refunded := pays["refunded"]
	exec(refunded.OrderID, `INSERT INTO payment_ledger (id, payment_id, order_id, kind, amount, currency, created_at, shard) VALUES ('led_bad', ?, ?, 'void', 2000, 'USD', 0, ?)`,
		refunded.ID, refunded.OrderID, int(shard.OfIDOrKey(refunded.OrderID)))
	// An authorized payment whose row says refunded.
	held := pays["held"]
	exec(held.OrderID, `UPDATE payments SET status = 'refunded' WHERE id = ?`, held.ID)
	// A capture larger than its authorization.
	held2 := pays["held2"]
	exec(held2.OrderID, `UPDATE payments SET status = 'captured' WHERE id = ?`, held2.ID)
	exec(held2.OrderID, `INSERT INTO payment_ledger (id, payment_id, order_id, kind, amount, currency, created_at, shard) VALUES ('led_big', ?, ?, 'capture', 900, 'USD', 0, ?)`,
		held2.ID, held2.OrderID, int(shard.OfIDOrKey(held2.OrderID)))
	// Ledger rows of a payment that does not exist.
	exec(held2.OrderID, `INSERT INTO payment_ledger (id, payment_id, order_id, kind, amount, currency, created_at, shard) VALUES ('led_ghost', 'pay_ghost', ?, 'authorization', 50, 'USD', 0, ?)`,
		held2.OrderID, int(shard.OfIDOrKey(held2.OrderID)))
	// A cancellation that moved money.
	cancelled := pays["cancelled"]
	exec(cancelled.OrderID, `INSERT INTO payment_ledger (id, payment_id, order_id, kind, amount, currency, created_at, shard) VALUES ('led_cx', ?, ?, 'refund', 10, 'USD', 0, ?)`,
		cancelled.ID, cancelled.OrderID, int(shard.OfIDOrKey(cancelled.OrderID)))

	a, err := f.svc.Audit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, v := range a.Violations {
		got[v.PaymentID] = v.Status + " / " + v.LedgerStatus + ": " + strings.Join(v.Problems, "; ")
	}
	want := map[string]string{
		captured.ID:  "captured / authorized: status captured but the ledger says authorized",
		refunded.ID:  "refunded / inconsistent: status refunded but the ledger's entries are no valid history; captured plus voided exceeds authorized",
		held.ID:      "refunded / authorized: status refunded but the ledger says authorized",
		held2.ID:     "captured / captured: captured exceeds authorized; captured plus voided exceeds authorized",
		"pay_ghost":  " / : ledger entries without a payment",
		cancelled.ID: "voided / inconsistent: status voided but the ledger's entries are no valid history; refunded exceeds captured",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("violations:\n%v\nwant\n%v", got, want)
	}
	if a.OK() {
		t.Error("Audit.OK with violations")
	}
	if !slices.IsSortedFunc(a.Violations, func(x, y payment.Violation) int { return strings.Compare(x.PaymentID, y.PaymentID) }) {
		t.Error("violations are not ordered by payment id")
	}
	for _, v := range a.Violations {
		if v.PaymentID == held2.ID && (v.Authorized != 700 || v.Captured != 900 || v.OrderID != held2.OrderID) {
			t.Errorf("violation %+v", v)
		}
	}
}

// testLedgerBackfill opens the store over payments written before the
// ledger existed: the migration gives each the entries its status implies,
// so the audit finds nothing wrong.
func testLedgerBackfill(t *testing.T, b testenv.ShardedBackend) {
	ctx := context.Background()
	sh, nodes := b.Open(t)
	old := fstest.MapFS{}
	for _, name := range []string{"00001_payments.sql", "00002_shard.sql"} {
		data, err := os.ReadFile("migrations/" + name)
		if err != nil {
			t.Fatal(err)
		}
		old[name] = &fstest.MapFile{Data: data}
	}
	if err := sh.Migrate(ctx, "payment", old); err != nil {
		t.Fatal(err)
	}
	first, last := testenv.FirstAndLast(sh)
	statuses := []string{payment.StatusAuthorized, payment.StatusCaptured, payment.StatusVoided, payment.StatusRefunded, payment.StatusDeclined}
	for i, status := range statuses {
		node := first
		if i%2 == 1 {
			node = last
		}
		u := testenv.KeyOnNode(t, sh.Map(), node, fmt.Sprintf("usr_old%d_", i))
		ord := ids.NewInShard("ord", t0, uint16(shard.ForUser(u)))
		// Written before the shard column was filled in.
		if _, err := nodes[node].ExecContext(ctx, `INSERT INTO payments (id, order_id, amount, currency, status, card_last4, created_at, updated_at, shard) VALUES (?, ?, ?, 'USD', ?, '4242', 1, 2, -1)`,
			ids.New("pay", t0), ord, 100*(i+1), status); err != nil {
			t.Fatal(err)
		}
	}
	st, err := paymentdb.OpenSharded(ctx, sh)
	if err != nil {
		t.Fatal(err)
	}
	a, err := st.Audit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// authorized 100, captured 200, voided 300, refunded 400, declined 500.
	if !a.OK() || a.Authorized != 100+200+300+400 || a.Captured != 200+400 || a.Voided != 300 || a.Refunded != 400 ||
		a.Declined != 1 || a.Held != 100 || a.Entries != 1+2+2+3+1 || a.Payments != 5 {
		t.Errorf("Audit after the backfill = %+v", a)
	}
	for name, db := range nodes {
		var n int
		if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM payment_ledger WHERE shard = -1`).Scan(&n); err != nil || n != 0 {
			t.Errorf("node %s: %d ledger rows without a shard, %v", name, n, err)
		}
	}
}
