package checkout_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/checkout"
	"github.com/globomantics/globomantics/internal/order"
	"github.com/globomantics/globomantics/internal/payment"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
	"github.com/globomantics/globomantics/internal/platform/testenv"
	"github.com/globomantics/globomantics/internal/shipping"
)

// forwardSteps are the saga's steps, compensations are the rest of
// StepNames (their undo names).
func forwardSteps(t *testing.T) (fwd, undo []string) {
	t.Helper()
	names := checkout.StepNames()
	i := 0
	for ; i < len(names) && names[i] != "complete_cart"; i++ {
	}
	if i == len(names) {
		t.Fatalf("StepNames() = %v: no complete_cart", names)
	}
	return names[:i+1], names[i+1:]
}

// faultCase is one checkout driven by its own instance with rules.
type faultCase struct {
	name  string
	rules string
	opts  []checkout.Option
	c     checkout.Customer
	s     *checkout.Service
	f     *crasher
	res   checkout.Result
	err   error
}

var caseLines = map[string]int{widget: 2, gadget: 1}

// runCases runs every case's checkout at once, each on its own instance
// (so that each has its own fault rules), and waits for their answers.
func runCases(t *testing.T, w *world, cases []*faultCase) {
	t.Helper()
	for i, fc := range cases {
		fc.c = w.customer(fmt.Sprintf("case%02d", i), caseLines)
		fc.f = newCrasher(t, fc.rules)
		fc.s = w.instance("inst-"+fc.name, fc.f.Injector, fc.opts...)
	}
	var wg sync.WaitGroup
	for _, fc := range cases {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fc.res, fc.err = fc.s.PlaceOrder(context.Background(), fc.c, "k", request(goodCard))
		}()
	}
	wg.Wait()
}

// TestAnswersLost: every step's (and every compensation's) call succeeds
// but its answer is lost once: the step is tried again, and the checkout
// ends as it would have, with nothing done twice. A step whose answers are
// lost every time (the service did the work but the saga cannot know)
// rolls back at its deadline before the pivot, everything undone; at the
// pivot, voiding settles that the capture happened and the saga goes on.
func TestAnswersLost(t *testing.T) {
	t.Parallel()
	w := newWorld(t, config{})
	fwd, undo := forwardSteps(t)
	want := map[*faultCase]errs.Kind{} // errs.Other: confirmed
	add := func(name, rules string, k errs.Kind) {
		fc := &faultCase{name: name, rules: rules}
		if strings.HasSuffix(rules, "*1") || strings.HasSuffix(rules, "refuse") {
			// One lost answer must never reach a step's deadline, however
			// loaded the machine: only the "always" cases keep 1 s.
			fc.opts = []checkout.Option{checkout.WithStepDeadline(20 * time.Second)}
		}
		want[fc] = k
	}
	for _, st := range fwd {
		add("after-"+st, "after:"+st+"=fail*1", errs.Other)
		add("before-"+st, "before:"+st+"=fail*1", errs.Other)
	}
	for _, st := range undo {
		add("after-"+st, "after:create_shipment=refuse,after:"+st+"=fail*1", errs.Conflict)
	}
	for _, st := range fwd {
		if st == "capture_payment" {
			add("always-after-"+st, "after:"+st+"=fail", errs.Other)
			break
		}
		add("always-after-"+st, "after:"+st+"=fail", errs.Unavailable)
	}
	// A capture refused after it happened is settled as captured.
	add("capture-refused-after", "after:capture_payment=refuse", errs.Other)
	var cases []*faultCase
	for fc := range want {
		cases = append(cases, fc)
	}
	runCases(t, w, cases)
	for _, fc := range cases {
		t.Run(fc.name, func(t *testing.T) {
			ww := *w
			ww.t = t
			res, err := ww.settle(fc.c, "k")(fc.res, fc.err)
			g := ww.saga(fc.c, "k")
			if k := want[fc]; k != errs.Other {
				if !errs.Is(k, err) {
					t.Fatalf("PlaceOrder = %v, want %s", err, k.Title())
				}
				g = ww.checkRolledBack(fc.c, "k", caseLines)
				if g.Retryable != (k == errs.Unavailable) {
					t.Errorf("retryable = %v", g.Retryable)
				}
			} else {
				if err != nil {
					t.Fatalf("PlaceOrder = %v", err)
				}
				ww.checkConfirmed(fc.c, "k", res, caseLines)
				if got := ww.cartLines(fc.c); len(got) != 0 {
					t.Errorf("cart after checkout: %v", got)
				}
			}
			ww.checkOnce(fc.s, g.ID)
			n, h := ww.history(fc.s, g.ID)
			st := strings.TrimPrefix(strings.TrimPrefix(fc.name, "after-"), "before-")
			if want[fc] == errs.Other && strings.HasSuffix(fc.rules, "*1") && n[st+"/retry"] != 1 {
				t.Errorf("%s: want exactly one retry of %s: %v", fc.name, st, h)
			}
			if want[fc] == errs.Other {
				for _, s := range fwd {
					if n[s+"/done"] != 1 {
						t.Errorf("step %s done %d times: %v", s, n[s+"/done"], h)
					}
				}
			}
		})
	}
	w.checkInvariants()
}

// TestRefusedAfterShipment: a refusal after the shipment was created rolls
// everything back.
func TestRefusedAfterShipment(t *testing.T) {
	t.Parallel()
	w := newWorld(t, config{})
	f := newCrasher(t, "after:create_shipment=refuse")
	s := w.instance("refuser", f.Injector)
	ctx := context.Background()
	lines := map[string]int{widget: 3}
	c := w.customer("ref", lines)
	_, err := s.PlaceOrder(ctx, c, "k", request(goodCard))
	if !errs.Is(errs.Conflict, err) {
		t.Fatalf("PlaceOrder = %v, want Conflict", err)
	}
	g := w.checkRolledBack(c, "k", lines)
	if g.Data.Shipment.ID == "" {
		t.Fatalf("the saga does not know its shipment: %+v", g.Data)
	}
	sh, err := w.ship.GetShipment(ctx, g.Data.Shipment.ID)
	if err != nil || sh.Status != shipping.StatusCancelled {
		t.Errorf("shipment = %+v, %v; want cancelled", sh, err)
	}
	o, err := w.orders.GetOrder(ctx, g.ID)
	if err != nil || o.Status != order.StatusCancelled || o.Payment.Status != payment.StatusVoided || o.CancelReason == "" {
		t.Errorf("order = %+v, %v; want cancelled, its payment shown voided", o, err)
	}
	p, err := w.pay.PaymentForOrder(ctx, g.ID)
	if err != nil || p.Status != payment.StatusVoided {
		t.Errorf("payment = %+v, %v; want voided", p, err)
	}
	if l := stock(t, w, widget); l.Stock != 100 || l.Reserved != 0 {
		t.Errorf("stock = %+v", l)
	}
	n, h := w.history(s, g.ID)
	for _, u := range []string{"cancel_shipment", "cancel_order", "void_payment", "release_stock", "unlock_cart"} {
		if n[u+"/undone"] != 1 {
			t.Errorf("%s undone %d times: %v", u, n[u+"/undone"], h)
		}
	}
	if n["create_shipment/failed"] != 1 || n["rollback/done"] != 0 && n["unlock_cart/undone"] != 1 {
		t.Errorf("history: %v", h)
	}
	res, err := s.Checkout(ctx, c.UserID, "k")
	if err != nil || res.State != checkout.StateCancelled || res.Error == nil || res.Error.Status != 409 || res.Order.Status != order.StatusCancelled {
		t.Errorf("Checkout = %+v, %v", res, err)
	}
	w.checkInvariants()
}

// TestCapturePivot: a capture refused before it happened is settled by
// voiding, and the checkout rolls back.
func TestCapturePivot(t *testing.T) {
	t.Parallel()
	w := newWorld(t, config{})
	f := newCrasher(t, "before:capture_payment=refuse")
	s := w.instance("pivot", f.Injector)
	lines := map[string]int{gadget: 1}
	c := w.customer("pivot", lines)
	if _, err := s.PlaceOrder(context.Background(), c, "k", request(goodCard)); !errs.Is(errs.Conflict, err) {
		t.Fatalf("PlaceOrder = %v, want Conflict", err)
	}
	g := w.checkRolledBack(c, "k", lines)
	if p, err := w.pay.PaymentForOrder(context.Background(), g.ID); err != nil || p.Status != payment.StatusVoided {
		t.Errorf("payment = %+v, %v; want voided", p, err)
	}
	w.checkOnce(s, g.ID)
	w.checkInvariants()
}

// TestCrashEverywhere: an instance crashes (in process: its driver stops
// dead, writing nothing) before and after every step and compensation;
// another instance resumes the saga once the lease ran out and ends it.
func TestCrashEverywhere(t *testing.T) {
	t.Parallel()
	for _, b := range []struct {
		name string
		db   func(testing.TB) *sqldb.DB
	}{{"sqlite", testenv.SQLite}, {"postgres", testenv.Postgres}} {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			testCrashEverywhere(t, b.db)
		})
	}
}

func testCrashEverywhere(t *testing.T, db func(testing.TB) *sqldb.DB) {
	w := newWorld(t, config{checkoutDB: db})
	// Two instances recover: each orphan is resumed by exactly one.
	b := w.instance("b", nil)
	w.run(b)
	w.run(w.instance("c", nil))
	fwd, undo := forwardSteps(t)
	var cases []*faultCase
	for _, st := range fwd {
		for _, at := range []string{"before", "after"} {
			cases = append(cases, &faultCase{name: at + "-" + st, rules: at + ":" + st + "=crash"})
		}
	}
	for _, st := range undo {
		for _, at := range []string{"before", "after"} {
			cases = append(cases, &faultCase{name: at + "-" + st, rules: "after:create_shipment=refuse," + at + ":" + st + "=crash"})
		}
	}
	for _, fc := range cases {
		// Long enough that b never takes a saga over from a live but
		// slow a (a loaded machine, the race detector).
		fc.opts = []checkout.Option{checkout.WithLease(1500 * time.Millisecond)}
	}
	runCases(t, w, cases)
	// Without the card, a saga resumed before its payment was authorized
	// rolls back; one resumed after goes on.
	rollsBack := map[string]bool{"before-lock_cart": true, "after-lock_cart": true, "before-reserve_stock": true,
		"after-reserve_stock": true, "before-authorize_payment": true}
	for _, fc := range cases {
		t.Run(fc.name, func(t *testing.T) {
			ww := *w
			ww.t = t
			if fc.f.crashes.Load() != 1 {
				t.Fatalf("the instance crashed %d times, want 1", fc.f.crashes.Load())
			}
			if fc.err != nil || fc.res.Done || fc.res.State != checkout.StatePending {
				t.Errorf("PlaceOrder on the crashing instance = %+v, %v; want pending", fc.res, fc.err)
			}
			res, err := ww.awaitDone(b, fc.c, "k")
			g := ww.saga(fc.c, "k")
			if g.Epoch != 2 || (g.Owner != "b" && g.Owner != "c") {
				t.Errorf("saga ended with epoch %d owner %q; want it resumed once, by b or c", g.Epoch, g.Owner)
			}
			switch {
			case strings.Contains(fc.rules, "refuse"):
				if !errs.Is(errs.Conflict, err) {
					t.Errorf("checkout = %v, want the refusal's Conflict", err)
				}
				ww.checkRolledBack(fc.c, "k", caseLines)
			case rollsBack[fc.name]:
				if !errs.Is(errs.Unavailable, err) || !g.Retryable {
					t.Errorf("checkout = %v (retryable %v), want Unavailable and retryable", err, g.Retryable)
				}
				ww.checkRolledBack(fc.c, "k", caseLines)
			default:
				if err != nil {
					t.Fatalf("checkout = %v, want confirmed", err)
				}
				ww.checkConfirmed(fc.c, "k", res, caseLines)
				if got := ww.cartLines(fc.c); len(got) != 0 {
					t.Errorf("cart after checkout: %v", got)
				}
			}
			ww.checkOnce(b, g.ID)
			_, h := ww.history(b, g.ID)
			claimed := false
			for _, r := range h {
				if r.Step == "lease" && r.Outcome == "claimed" {
					if claimed || r.Detail != g.Owner || r.Epoch != 2 {
						t.Errorf("claim record %+v (claimed before: %v)", r, claimed)
					}
					claimed = true
					continue
				}
				if claimed && r.Epoch != 2 {
					t.Errorf("record after the claim written under epoch %d: %+v", r.Epoch, r)
				}
			}
			if !claimed {
				t.Errorf("no claim in the history: %v", h)
			}
		})
	}
	w.checkInvariants()
}

// droppingStore is a saga log whose lease renewals are lost while drop is
// set, as those of a driver cut off from the database would be.
type droppingStore struct {
	checkout.Store
	drop atomic.Bool
}

func (d *droppingStore) Renew(ctx context.Context, id string, epoch int64, until time.Time) error {
	if d.drop.Load() {
		return errs.E(errs.Unavailable, errs.Msg("renewal lost"))
	}
	return d.Store.Renew(ctx, id, epoch, until)
}

// TestFencedDriver: a driver whose lease ran out while it was busy finds,
// at its next write, that another instance claimed the saga: the write is
// refused and the driver stops.
func TestFencedDriver(t *testing.T) {
	t.Parallel()
	var ds *droppingStore
	w := newWorld(t, config{wrap: func(s checkout.Store) checkout.Store { ds = &droppingStore{Store: s}; return ds }})
	f := newCrasher(t, "service:payment=2500ms")
	s := w.instance("slow", f.Injector, checkout.WithBudget(10*time.Second))
	ctx := context.Background()
	lines := map[string]int{widget: 1}
	c := w.customer("fenced", lines)
	ds.drop.Store(true)
	type answer struct {
		res checkout.Result
		err error
	}
	ch := make(chan answer, 1)
	start := time.Now()
	go func() {
		res, err := s.PlaceOrder(ctx, c, "k", request(goodCard))
		ch <- answer{res, err}
	}()
	// The driver is in the slow authorization and cannot renew its lease.
	var g checkout.Saga
	testenv.CheckFor(t, 5*time.Second, func() error {
		var err error
		g, err = w.raw.Get(ctx, c.UserID, "k")
		if err != nil {
			return err
		}
		// lock_cart is the last write before the slow authorization
		// (reserve_stock is not a checkpoint).
		if g.Step != 1 || !time.Now().After(g.LeaseUntil) {
			return fmt.Errorf("saga %s at step %d, lease until %v", g.State, g.Step, g.LeaseUntil)
		}
		return nil
	})
	now := time.Now()
	ok, err := w.raw.Claim(ctx, checkout.Claim{ID: g.ID, Epoch: g.Epoch}, "thief", now, now.Add(500*time.Millisecond))
	if err != nil || !ok {
		t.Fatalf("Claim = %v, %v", ok, err)
	}
	claimed := w.saga(c, "k")
	a := <-ch
	if a.err != nil || a.res.Done || a.res.State != checkout.StatePending {
		t.Errorf("PlaceOrder of the fenced driver = %+v, %v; want pending", a.res, a.err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the fenced driver's PlaceOrder took %v: it did not stop", d)
	}
	// Nothing was written after the claim: the driver stopped.
	after := w.saga(c, "k")
	if after.Version != claimed.Version || after.Step != 1 || after.Epoch != 2 || after.Owner != "thief" {
		t.Errorf("after the claim the saga changed: %+v", after)
	}
	_, h := w.history(s, g.ID)
	if last := h[len(h)-1]; last.Step != "lease" || last.Outcome != "claimed" {
		t.Errorf("history after the fenced write ends with %+v", last)
	}
	// Another instance takes over once the thief's lease runs out, finds
	// the authorization the fenced driver made, and finishes.
	ds.drop.Store(false)
	must(t, f.Set(""))
	w.run(w.instance("heir", nil))
	res, err := w.awaitDone(s, c, "k")
	if err != nil {
		t.Fatalf("checkout after the takeover = %v", err)
	}
	w.checkConfirmed(c, "k", res, lines)
	w.checkOnce(s, g.ID)
	w.checkInvariants()
}

// TestHeartbeatFenced: a driver whose lease is taken while it works learns
// it from its heartbeat and stops without writing.
func TestHeartbeatFenced(t *testing.T) {
	t.Parallel()
	w := newWorld(t, config{})
	f := newCrasher(t, "service:payment=3s")
	s := w.instance("slow", f.Injector, checkout.WithBudget(10*time.Second))
	ctx := context.Background()
	c := w.customer("hb", map[string]int{widget: 1})
	ch := make(chan error, 1)
	start := time.Now()
	go func() {
		_, err := s.PlaceOrder(ctx, c, "k", request(goodCard))
		ch <- err
	}()
	var g checkout.Saga
	testenv.CheckFor(t, 5*time.Second, func() error {
		var err error
		g, err = w.raw.Get(ctx, c.UserID, "k")
		if err == nil && g.Step != 1 {
			err = fmt.Errorf("saga %s at step %d", g.State, g.Step)
		}
		return err
	})
	// Claimed as if its lease had run out (another instance's clock).
	later := time.Now().Add(time.Minute)
	if ok, err := w.raw.Claim(ctx, checkout.Claim{ID: g.ID, Epoch: g.Epoch}, "thief", later, time.Now().Add(300*time.Millisecond)); !ok || err != nil {
		t.Fatalf("Claim = %v, %v", ok, err)
	}
	claimed := w.saga(c, "k")
	if err := <-ch; err != nil {
		t.Errorf("PlaceOrder = %v", err)
	}
	if d := time.Since(start); d > 2500*time.Millisecond {
		t.Errorf("the driver stopped after %v: not before its slow call returned", d)
	}
	if after := w.saga(c, "k"); after.Version != claimed.Version {
		t.Errorf("the fenced driver wrote: %+v", after)
	}
	// Another instance takes over when the thief's lease runs out; the
	// authorization never happened (the call was cancelled in its injected
	// latency), so without the card it rolls back.
	must(t, f.Set(""))
	w.run(w.instance("heir", nil))
	if _, err := w.awaitDone(s, c, "k"); !errs.Is(errs.Unavailable, err) {
		t.Errorf("checkout after the takeover = %v, want Unavailable (interrupted before the payment)", err)
	}
	w.checkRolledBack(c, "k", map[string]int{widget: 1})
	w.checkOnce(s, g.ID)
	w.checkInvariants()
}

// TestBudget: a checkout slower than the budget answers pending; it ends
// in the background, and a duplicate meanwhile never starts a second one.
func TestBudget(t *testing.T) {
	t.Parallel()
	w := newWorld(t, config{})
	f := newCrasher(t, "service:payment=1500ms")
	s := w.instance("slow", f.Injector, checkout.WithBudget(200*time.Millisecond))
	other := w.instance("other", nil, checkout.WithBudget(200*time.Millisecond))
	ctx := context.Background()
	lines := map[string]int{widget: 1, gadget: 1}
	c := w.customer("slowpoke", lines)
	start := time.Now()
	res, err := s.PlaceOrder(ctx, c, "k", request(goodCard))
	if err != nil || res.Done || res.State != checkout.StatePending {
		t.Fatalf("PlaceOrder = %+v, %v; want pending", res, err)
	}
	if d := time.Since(start); d > 1500*time.Millisecond {
		t.Errorf("pending answer after %v, budget 200ms", d)
	}
	if res.Order.ID == "" || res.Order.Status != order.StatusPending || res.Key != "k" {
		t.Errorf("pending result: %+v", res.Order)
	}
	// Duplicates while it runs, on this instance and on another: pending.
	for _, inst := range []*checkout.Service{s, other} {
		dup, err := inst.PlaceOrder(ctx, c, "k", request(goodCard))
		if err != nil || dup.Order.ID != res.Order.ID || (dup.State != checkout.StatePending && dup.State != checkout.StateConfirmed) {
			t.Errorf("duplicate = %+v, %v", dup, err)
		}
	}
	mid, err := s.Checkout(ctx, c.UserID, "k")
	if err != nil || mid.Done {
		t.Errorf("Checkout while pending = %+v, %v", mid, err)
	}
	final, err := w.awaitDone(s, c, "k")
	if err != nil {
		t.Fatal(err)
	}
	w.checkConfirmed(c, "k", final, lines)
	if os := w.ordersOf(c.UserID); len(os) != 1 {
		t.Errorf("%d orders, want 1", len(os))
	}
	again, err := other.PlaceOrder(ctx, c, "k", request(goodCard))
	if err != nil || !again.Done || again.Order.ID != res.Order.ID {
		t.Errorf("after the end, the key answers %+v, %v", again, err)
	}
	w.checkInvariants()
}

// TestHangTimesOut: "before:<step>=hang" makes the step's call hang until
// its deadline (package fault); the try then fails and the saga goes on.
func TestHangTimesOut(t *testing.T) {
	t.Parallel()
	w := newWorld(t, config{})
	f := newCrasher(t, "before:reserve_stock=hang")
	s := w.instance("hanging", f.Injector)
	lines := map[string]int{widget: 1}
	c := w.customer("hang", lines)
	res, err := s.PlaceOrder(context.Background(), c, "k", request(goodCard))
	if err != nil || res.Done {
		t.Fatalf("PlaceOrder = %+v, %v; want pending (the step hangs)", res, err)
	}
	// One try is bounded by 10 s (tryTimeout); the step deadline is 1 s, so
	// the saga must roll back soon after the first try times out.
	err = eventually(13*time.Second, func() error {
		if g := w.saga(c, "k"); !g.Terminal() {
			return fmt.Errorf("saga %s at step %d", g.State, g.Step)
		}
		return nil
	})
	if err != nil {
		g := w.saga(c, "k")
		_, h := w.history(s, g.ID)
		s.Close() // ends the hang
		w.run(w.instance("recovery", nil))
		_, _ = w.awaitDone(w.svc, c, "k")
		w.checkRolledBack(c, "k", lines)
		w.checkInvariants()
		t.Fatalf("a hung step did not time out (the hang must end with the try's timeout): %v after 13 s; history %v", err, h)
	}
	if _, err := w.awaitDone(s, c, "k"); !errs.Is(errs.Unavailable, err) {
		t.Errorf("checkout after the hang = %v, want Unavailable", err)
	}
	w.checkRolledBack(c, "k", lines)
	w.checkInvariants()
}

// TestShutdownHandsOver: an instance shut down while it drives a saga
// hands the saga over at once (its lease set to the zero time) rather than
// when its lease runs out; another instance finishes it.
func TestShutdownHandsOver(t *testing.T) {
	t.Parallel()
	w := newWorld(t, config{})
	f := newCrasher(t, "service:payment=2s")
	a := w.instance("a-leaving", f.Injector, checkout.WithLease(30*time.Second))
	b := w.instance("b", nil)
	w.run(b)
	ctx := context.Background()
	lines := map[string]int{gadget: 2}
	c := w.customer("leaving", lines)
	ch := make(chan error, 1)
	go func() {
		res, err := a.PlaceOrder(ctx, c, "k", request(goodCard))
		if err == nil && res.Done {
			err = fmt.Errorf("done before the shutdown: %+v", res)
		}
		ch <- err
	}()
	testenv.CheckFor(t, 5*time.Second, func() error {
		g, err := w.raw.Get(ctx, c.UserID, "k")
		if err == nil && g.Step != 1 {
			err = fmt.Errorf("saga %s at step %d", g.State, g.Step)
		}
		return err
	})
	start := time.Now()
	a.Close()
	if err := <-ch; err != nil {
		t.Errorf("PlaceOrder on the instance shut down = %v, want pending", err)
	}
	// Without the card, b rolls it back (the authorization was cut short
	// in its injected latency, before the payment service saw it).
	if _, err := w.awaitDone(b, c, "k"); !errs.Is(errs.Unavailable, err) {
		t.Errorf("checkout finished by b = %v, want Unavailable", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("taken over after %v: not handed over (lease 30 s)", d)
	}
	g := w.checkRolledBack(c, "k", lines)
	if g.Owner != "b" || g.Epoch != 2 {
		t.Errorf("saga finished by %q at epoch %d, want b at 2", g.Owner, g.Epoch)
	}
	w.checkOnce(b, g.ID)
	w.checkInvariants()
}

// flakyStore is a saga log whose Saves fail as told: "lost" (not applied)
// or "landed" (applied, but the answer is an error).
type flakyStore struct {
	checkout.Store
	mu        sync.Mutex
	plan      map[int]string // by the number of the Save, from 1
	saves     int
	failLoads int // how many Loads fail after a failed Save
}

func (f *flakyStore) Load(ctx context.Context, id string) (checkout.Saga, error) {
	f.mu.Lock()
	fail := f.failLoads > 0
	if fail {
		f.failLoads--
	}
	f.mu.Unlock()
	if fail {
		return checkout.Saga{}, errs.E(errs.Unavailable, errs.Msg("saga log unreachable"))
	}
	return f.Store.Load(ctx, id)
}

func (f *flakyStore) Save(ctx context.Context, g *checkout.Saga, recs ...checkout.StepRecord) error {
	f.mu.Lock()
	f.saves++
	what := f.plan[f.saves]
	f.mu.Unlock()
	switch what {
	case "lost":
		return errs.E(errs.Unavailable, errs.Msg("saga log write lost"))
	case "lost+load":
		f.mu.Lock()
		f.failLoads = 1
		f.mu.Unlock()
		return errs.E(errs.Unavailable, errs.Msg("saga log write lost"))
	case "landed":
		if err := f.Store.Save(ctx, g, recs...); err != nil {
			return err
		}
		return errs.E(errs.Unavailable, errs.Msg("saga log answer lost"))
	}
	return f.Store.Save(ctx, g, recs...)
}

// TestSagaLogWriteFails: when a write of the saga log fails, or lands but
// its answer is lost, the driver reloads the saga and carries on from what
// is stored: the checkout ends as it would have, nothing done twice.
func TestSagaLogWriteFails(t *testing.T) {
	t.Parallel()
	for _, plan := range []map[int]string{{1: "lost"}, {1: "landed"}, {2: "lost", 3: "landed"}, {3: "lost", 4: "lost"}, {4: "lost"}, {4: "landed"}, {2: "lost+load"}, {4: "lost+load"}} {
		t.Run(fmt.Sprint(plan), func(t *testing.T) {
			t.Parallel()
			fs := &flakyStore{plan: plan}
			w := newWorld(t, config{wrap: func(s checkout.Store) checkout.Store { fs.Store = s; return fs }})
			// A driver that could neither write nor reload the saga stops
			// (it believes what it has in memory); recovery goes on.
			w.run(w.instance("recovery", nil))
			lines := map[string]int{widget: 1, gadget: 1}
			c := w.customer("flaky", lines)
			res, err := w.settle(c, "k")(w.svc.PlaceOrder(context.Background(), c, "k", request(goodCard)))
			if err != nil {
				t.Fatalf("PlaceOrder = %v", err)
			}
			w.checkConfirmed(c, "k", res, lines)
			g := w.saga(c, "k")
			w.checkOnce(w.svc, g.ID)
			n, h := w.history(w.svc, g.ID)
			w.checkInvariants()
			for _, st := range []string{"lock_cart", "authorize_payment", "capture_payment", "complete_cart"} {
				if n[st+"/done"] != 1 {
					t.Errorf("%s done %d times: %v", st, n[st+"/done"], h)
				}
			}
		})
	}
}
