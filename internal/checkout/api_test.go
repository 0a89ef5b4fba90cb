package checkout_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/cart"
	"github.com/globomantics/globomantics/internal/cart/cartdb"
	"github.com/globomantics/globomantics/internal/catalog"
	"github.com/globomantics/globomantics/internal/catalog/catalogdb"
	"github.com/globomantics/globomantics/internal/checkout"
	"github.com/globomantics/globomantics/internal/checkout/checkoutdb"
	"github.com/globomantics/globomantics/internal/order"
	"github.com/globomantics/globomantics/internal/order/orderdb"
	"github.com/globomantics/globomantics/internal/payment"
	"github.com/globomantics/globomantics/internal/payment/paymentdb"
	"github.com/globomantics/globomantics/internal/platform/clock"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/fault"
	"github.com/globomantics/globomantics/internal/platform/money"
	"github.com/globomantics/globomantics/internal/platform/page"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
	"github.com/globomantics/globomantics/internal/platform/testenv"
	"github.com/globomantics/globomantics/internal/shipping"
	"github.com/globomantics/globomantics/internal/shipping/shippingdb"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// The test cards of the payment service.
const (
	goodCard      = "4242424242424242"
	declinedCard  = "4000000000000002"
	transientCard = "4000000000000119"
)

var addr = shipping.Address{Name: "Ada Lovelace", Line1: "12 Analytical St", City: "London", PostalCode: "N1 9GU", Country: "GB"}

func request(card string) checkout.Request {
	return checkout.Request{ShippingAddress: addr, Payment: payment.Card{Number: card, ExpMonth: 12, ExpYear: 2035, CVC: "123"}}
}

// The products of every world, with their price.
const (
	widget = "prd_widget"
	gadget = "prd_gadget"
	extra  = "prd_extra" // added to carts after they were locked
)

var prices = map[string]money.Money{widget: money.USD(1250), gadget: money.USD(999), extra: money.USD(500)}

// world is checkout over the real cart, catalog, payment, shipping and
// order services in process, each over its own SQLite database, and
// checkout's saga log over SQLite or PostgreSQL.
type world struct {
	t       *testing.T
	store   checkout.Store
	raw     *checkoutdb.Store
	cat     *catalog.Service
	carts   *cart.Service
	pay     *payment.Service
	ship    *shipping.Service
	orders  *order.Service
	initial map[string]int
	svc     *checkout.Service // instance "a", driven by the test

	mu    *sync.Mutex // a world is copied to change t in subtests
	users map[string]bool
}

// config of a world.
type config struct {
	stock      map[string]int
	checkoutDB func(testing.TB) *sqldb.DB
	wrap       func(checkout.Store) checkout.Store
}

// baseOptions are the short timings of every instance in these tests.
func baseOptions() []checkout.Option {
	return []checkout.Option{checkout.WithBudget(2 * time.Second), checkout.WithLease(500 * time.Millisecond),
		checkout.WithRecoveryInterval(100 * time.Millisecond), checkout.WithStepDeadline(time.Second),
		checkout.WithCallbackSecret([]byte("test-secret"))}
}

func newWorld(t *testing.T, cfg config, opts ...checkout.Option) *world {
	t.Helper()
	ctx := context.Background()
	if cfg.stock == nil {
		cfg.stock = map[string]int{widget: 100, gadget: 100, extra: 100}
	}
	if cfg.checkoutDB == nil {
		cfg.checkoutDB = testenv.SQLite
	}
	w := &world{t: t, initial: cfg.stock, users: map[string]bool{}, mu: &sync.Mutex{}}
	catStore, err := catalogdb.Open(ctx, testenv.SQLite(t))
	must(t, err)
	w.cat = catalog.NewService(catStore, nil, nil, clock.Real{})
	must(t, w.cat.EnsureCategories(ctx, []catalog.Category{{ID: "home", Name: "Home"}}))
	for _, id := range []string{widget, gadget, extra} {
		must(t, catStore.CreateProduct(ctx, catalog.Record{ID: id, Name: "The " + id[4:], Category: "home",
			Price: prices[id], Stock: cfg.stock[id], ImageKey: "products/" + id + "/original.png", CreatedAt: time.Now()}))
	}
	cartStore, err := cartdb.Open(ctx, testenv.SQLite(t))
	must(t, err)
	w.carts = cart.NewService(cartStore, w.cat, clock.Real{}, cart.WithLogger(testenv.Logger(t)))
	payStore, err := paymentdb.Open(ctx, testenv.SQLite(t))
	must(t, err)
	w.pay = payment.NewService(payStore, clock.Real{})
	shipStore, err := shippingdb.Open(ctx, testenv.SQLite(t))
	must(t, err)
	w.ship = shipping.NewService(shipStore, clock.Real{})
	orderStore, err := orderdb.Open(ctx, testenv.SQLite(t))
	must(t, err)
	w.orders = order.NewService(orderStore, nil, clock.Real{})
	w.raw, err = checkoutdb.Open(ctx, cfg.checkoutDB(t))
	must(t, err)
	w.store = w.raw
	if cfg.wrap != nil {
		w.store = cfg.wrap(w.raw)
	}
	w.svc = w.instance("a", fault.New(nil), opts...)
	return w
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// instance returns another checkout instance over the world's saga log and
// services, with faults from f (nil: none) and the base options, then
// opts. It is closed when the test ends, before the databases are.
func (w *world) instance(name string, f *fault.Injector, opts ...checkout.Option) *checkout.Service {
	w.t.Helper()
	all := append(baseOptions(), checkout.WithOwner(name))
	if f != nil {
		all = append(all, checkout.WithFaults(f))
	}
	all = append(all, opts...)
	return w.instanceAt(nil, all...)
}

// instanceAt is an instance with clock clk (nil: the wall clock) and
// exactly opts.
func (w *world) instanceAt(clk clock.Clock, opts ...checkout.Option) *checkout.Service {
	w.t.Helper()
	s := checkout.NewService(w.store, w.carts, w.cat, w.pay, w.ship, w.orders, clk, testenv.Logger(w.t), opts...)
	w.t.Cleanup(s.Close)
	return s
}

// run runs s's recovery and callback loops until the test ends.
func (w *world) run(s *checkout.Service) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	w.t.Cleanup(func() { cancel(); <-done })
}

// crasher is a fault injector whose crashes return (an in-process crash)
// and are counted.
type crasher struct {
	*fault.Injector
	crashes atomic.Int32
}

func newCrasher(t testing.TB, rules string) *crasher {
	t.Helper()
	c := &crasher{}
	c.Injector = fault.New(func() { c.crashes.Add(1) })
	must(t, c.Set(rules))
	return c
}

// customer returns a customer with a cart holding lines (product: qty).
func (w *world) customer(name string, lines map[string]int) checkout.Customer {
	w.t.Helper()
	c := checkout.Customer{UserID: "usr_" + name, Email: name + "@example.com"}
	w.mu.Lock()
	w.users[c.UserID] = true
	w.mu.Unlock()
	for _, p := range []string{widget, gadget, extra} {
		if q := lines[p]; q > 0 {
			if _, err := w.carts.AddItem(context.Background(), checkout.CartOwner(c.UserID), p, q); err != nil {
				w.t.Fatalf("AddItem: %v", err)
			}
		}
	}
	return c
}

// saga returns the saga of c under key.
func (w *world) saga(c checkout.Customer, key string) checkout.Saga {
	w.t.Helper()
	g, err := w.raw.Get(context.Background(), c.UserID, key)
	if err != nil {
		w.t.Fatalf("saga of %s/%s: %v", c.UserID, key, err)
	}
	return g
}

// settle returns a function that, given PlaceOrder's answer for the
// checkout of c under key, waits until that checkout has ended (if it was
// pending) and returns its final result and the error it ended with.
func (w *world) settle(c checkout.Customer, key string) func(checkout.Result, error) (checkout.Result, error) {
	return func(res checkout.Result, err error) (checkout.Result, error) {
		w.t.Helper()
		if err != nil || res.Done {
			return res, err
		}
		return w.awaitDone(w.svc, c, key)
	}
}

// awaitDone polls Checkout until the checkout of c under key has ended.
func (w *world) awaitDone(s *checkout.Service, c checkout.Customer, key string) (checkout.Result, error) {
	w.t.Helper()
	var out checkout.Result
	testenv.CheckFor(w.t, 20*time.Second, func() error {
		r, err := s.Checkout(context.Background(), c.UserID, key)
		if err != nil {
			return err
		}
		if !r.Done {
			return fmt.Errorf("checkout %s/%s still %s", c.UserID, key, r.State)
		}
		out = r
		return nil
	})
	if out.State == checkout.StateCancelled {
		if out.Error == nil {
			w.t.Fatalf("cancelled checkout without an error: %+v", out)
		}
		return out, errs.E(errs.KindForStatus(out.Error.Status), errs.Msg("%s", out.Error.Detail))
	}
	return out, nil
}

// eventually polls fn, as testenv.CheckFor does, until it returns nil or
// timeout passes; it returns fn's last error.
func eventually(timeout time.Duration, fn func() error) error {
	deadline := time.Now().Add(timeout)
	wait := 5 * time.Millisecond
	for {
		err := fn()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(wait)
		wait = min(2*wait, 200*time.Millisecond)
	}
}

// cartLines returns c's cart as product: quantity.
func (w *world) cartLines(c checkout.Customer) map[string]int {
	w.t.Helper()
	crt, err := w.carts.GetCart(context.Background(), checkout.CartOwner(c.UserID))
	must(w.t, err)
	out := map[string]int{}
	for _, it := range crt.Items {
		out[it.ProductID] = it.Quantity
	}
	return out
}

// unlocked checks that c's cart can be locked by a new checkout (then
// releases it again).
func (w *world) unlocked(c checkout.Customer) error {
	ctx := context.Background()
	probe := fmt.Sprintf("probe-%d", time.Now().UnixNano())
	if _, err := w.carts.Lock(ctx, checkout.CartOwner(c.UserID), probe); err != nil {
		return fmt.Errorf("cart of %s is still locked: %v", c.UserID, err)
	}
	return w.carts.Unlock(ctx, checkout.CartOwner(c.UserID), probe)
}

// ordersOf returns every order of c.
func (w *world) ordersOf(userID string) []order.Order {
	w.t.Helper()
	p, err := w.orders.ListOrders(context.Background(), userID, page.Request{Size: 100})
	must(w.t, err)
	return p.Items
}

// checkInvariants checks what must hold at rest, whatever happened: stock
// conserved with nothing reserved, the payment ledger sound with nothing
// held and exactly the confirmed orders' totals captured, every confirmed
// order paid and shipped and every cancelled one neither.
func (w *world) checkInvariants() {
	w.t.Helper()
	ctx := context.Background()
	levels, err := w.cat.StockLevels(ctx)
	must(w.t, err)
	sold := map[string]int{}
	for _, l := range levels {
		if l.Stock+l.Reserved+l.Sold != w.initial[l.ProductID] {
			w.t.Errorf("stock of %s: %d + %d reserved + %d sold != %d listed", l.ProductID, l.Stock, l.Reserved, l.Sold, w.initial[l.ProductID])
		}
		if l.Reserved != 0 {
			w.t.Errorf("stock of %s: %d units still reserved at rest", l.ProductID, l.Reserved)
		}
		sold[l.ProductID] = l.Sold
	}
	audit, err := w.pay.Audit(ctx)
	must(w.t, err)
	if !audit.OK() {
		w.t.Errorf("payment audit violations: %+v", audit.Violations)
	}
	if audit.Held != 0 {
		w.t.Errorf("payment audit: %d still held on cards at rest", audit.Held)
	}
	var confirmed int64
	ordered := map[string]int{}
	w.mu.Lock()
	users := make([]string, 0, len(w.users))
	for u := range w.users {
		users = append(users, u)
	}
	w.mu.Unlock()
	for _, u := range users {
		for _, o := range w.ordersOf(u) {
			p, perr := w.pay.PaymentForOrder(ctx, o.ID)
			switch o.Status {
			case order.StatusConfirmed:
				confirmed += o.Total.Amount
				for _, it := range o.Items {
					ordered[it.ProductID] += it.Quantity
				}
				if perr != nil || p.Status != payment.StatusCaptured || p.Amount != o.Total {
					w.t.Errorf("confirmed order %s: payment %+v, %v; want %s captured", o.ID, p, perr, o.Total)
				}
				if o.Payment.Status != payment.StatusCaptured || o.Shipment.Status != shipping.StatusCreated || o.Shipment.TrackingNumber == "" {
					w.t.Errorf("confirmed order %s records payment %+v, shipment %+v", o.ID, o.Payment, o.Shipment)
				}
			case order.StatusCancelled:
				if perr == nil && p.Status == payment.StatusCaptured {
					w.t.Errorf("cancelled order %s was charged: %+v", o.ID, p)
				}
				if o.Payment.Status == payment.StatusAuthorized || o.Payment.Status == payment.StatusCaptured {
					w.t.Errorf("cancelled order %s records its payment as %q", o.ID, o.Payment.Status)
				}
			default:
				w.t.Errorf("order %s is %s at rest", o.ID, o.Status)
			}
		}
	}
	if audit.NetCaptured != confirmed {
		w.t.Errorf("payment audit: %d captured, confirmed orders total %d", audit.NetCaptured, confirmed)
	}
	for p, n := range sold {
		if ordered[p] != n {
			w.t.Errorf("%d units of %s sold, confirmed orders hold %d", n, p, ordered[p])
		}
	}
}

// history is a saga's history as counts of "step/outcome".
func (w *world) history(s *checkout.Service, id string) (map[string]int, []checkout.StepRecord) {
	w.t.Helper()
	v, err := s.Inspect(context.Background(), id)
	must(w.t, err)
	n := map[string]int{}
	for _, r := range v.History {
		n[r.Step+"/"+r.Outcome]++
	}
	return n, v.History
}

// checkOnce checks that no step was done and no compensation undone more
// than once in saga id's history.
func (w *world) checkOnce(s *checkout.Service, id string) {
	w.t.Helper()
	n, h := w.history(s, id)
	for k, c := range n {
		if c > 1 && (hasSuffix(k, "/done") || hasSuffix(k, "/undone")) {
			w.t.Errorf("saga %s: %s recorded %d times: %v", id, k, c, h)
		}
	}
}

func hasSuffix(s, suf string) bool { return len(s) >= len(suf) && s[len(s)-len(suf):] == suf }

// checkConfirmed checks a confirmed checkout end to end: its order, its
// payment, its shipment, its stock and the cart it emptied.
func (w *world) checkConfirmed(c checkout.Customer, key string, res checkout.Result, lines map[string]int) {
	w.t.Helper()
	ctx := context.Background()
	g := w.saga(c, key)
	if g.State != checkout.SagaConfirmed || res.State != checkout.StateConfirmed || !res.Done || res.Error != nil {
		w.t.Fatalf("checkout %s/%s: saga %s, result %+v; want confirmed", c.UserID, key, g.State, res)
	}
	o, err := w.orders.GetOrder(ctx, g.ID)
	if err != nil || o.Status != order.StatusConfirmed || res.Order.ID != g.ID {
		w.t.Fatalf("order %s = %+v, %v (result names %s)", g.ID, o, err, res.Order.ID)
	}
	var want int64
	units := 0
	for p, q := range lines {
		want += prices[p].Amount * int64(q)
		units += q
	}
	if o.Subtotal.Amount != want || o.Total.Amount != want+o.ShippingCost.Amount || len(o.Items) != len(lines) {
		w.t.Errorf("order %s: subtotal %s total %s with %d items; want subtotal %d over %d lines", o.ID, o.Subtotal, o.Total, len(o.Items), want, len(lines))
	}
	for _, it := range o.Items {
		if it.Quantity != lines[it.ProductID] || it.UnitPrice != prices[it.ProductID] {
			w.t.Errorf("order %s line %+v, want %d at %s", o.ID, it, lines[it.ProductID], prices[it.ProductID])
		}
	}
	if res.Order.Total != o.Total || res.Order.Status != order.StatusConfirmed {
		w.t.Errorf("result's order %+v differs from the stored %+v", res.Order, o)
	}
	p, err := w.pay.PaymentForOrder(ctx, g.ID)
	if err != nil || p.Status != payment.StatusCaptured || p.Amount != o.Total || p.CardLast4 != "4242" {
		w.t.Errorf("payment of %s = %+v, %v", g.ID, p, err)
	}
	sh, err := w.ship.GetShipment(ctx, o.Shipment.ID)
	if err != nil || sh.Status != shipping.StatusCreated || sh.OrderID != g.ID || sh.TrackingNumber != o.Shipment.TrackingNumber {
		w.t.Errorf("shipment of %s = %+v, %v (order says %+v)", g.ID, sh, err, o.Shipment)
	}
	if err := w.unlocked(c); err != nil {
		w.t.Error(err)
	}
}

// checkRolledBack checks a cancelled checkout: no money taken, no order
// standing, no shipment, stock back, cart intact (lines) and unlocked.
func (w *world) checkRolledBack(c checkout.Customer, key string, lines map[string]int) checkout.Saga {
	w.t.Helper()
	ctx := context.Background()
	g := w.saga(c, key)
	if g.State != checkout.SagaCancelled || g.Failure == nil {
		w.t.Fatalf("saga %s is %s (failure %+v), want cancelled", g.ID, g.State, g.Failure)
	}
	if o, err := w.orders.GetOrder(ctx, g.ID); err == nil && o.Status != order.StatusCancelled {
		w.t.Errorf("order %s of a rolled-back checkout is %s", g.ID, o.Status)
	} else if err != nil && !errs.Is(errs.NotFound, err) {
		w.t.Errorf("GetOrder(%s): %v", g.ID, err)
	}
	if p, err := w.pay.PaymentForOrder(ctx, g.ID); err == nil && (p.Status == payment.StatusCaptured || p.Status == payment.StatusAuthorized) {
		w.t.Errorf("payment of rolled-back %s is %s", g.ID, p.Status)
	}
	if g.Data.Shipment.ID != "" {
		if sh, err := w.ship.GetShipment(ctx, g.Data.Shipment.ID); err != nil || sh.Status != shipping.StatusCancelled {
			w.t.Errorf("shipment of rolled-back %s = %+v, %v", g.ID, sh, err)
		}
	}
	if got := w.cartLines(c); !mapsEqual(got, lines) {
		w.t.Errorf("cart of %s after a roll-back = %v, want %v", c.UserID, got, lines)
	}
	if err := w.unlocked(c); err != nil {
		w.t.Error(err)
	}
	return g
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func stock(t *testing.T, w *world, id string) catalog.StockLevel {
	t.Helper()
	levels, err := w.cat.StockLevels(context.Background())
	must(t, err)
	for _, l := range levels {
		if l.ProductID == id {
			return l
		}
	}
	t.Fatalf("no stock level for %s", id)
	return catalog.StockLevel{}
}

func TestSuccess(t *testing.T) {
	t.Parallel()
	// Catalog calls are slowed down so that the test can add a line to the
	// cart while the checkout runs, after the cart was locked.
	w := newWorld(t, config{}, checkout.WithBudget(10*time.Second))
	f := newCrasher(t, "service:catalog=400ms")
	s := w.instance("slow", f.Injector, checkout.WithBudget(10*time.Second))
	ctx := context.Background()
	lines := map[string]int{widget: 2, gadget: 1}
	c := w.customer("ada", lines)

	type answer struct {
		res checkout.Result
		err error
	}
	ch := make(chan answer, 1)
	go func() {
		res, err := s.PlaceOrder(ctx, c, "key-1", request(goodCard))
		ch <- answer{res, err}
	}()
	testenv.CheckFor(t, 5*time.Second, func() error {
		g, err := w.raw.Get(ctx, c.UserID, "key-1")
		if err != nil || g.Step < 1 {
			return fmt.Errorf("cart not locked yet (%v)", err)
		}
		return nil
	})
	if _, err := w.carts.AddItem(ctx, checkout.CartOwner(c.UserID), extra, 3); err != nil {
		t.Fatal(err)
	}
	if g := w.saga(c, "key-1"); g.Terminal() {
		t.Fatalf("the checkout ended before the line was added: the test proves nothing")
	}
	a := <-ch
	if a.err != nil {
		t.Fatalf("PlaceOrder: %v", a.err)
	}
	w.checkConfirmed(c, "key-1", a.res, lines)
	if got := w.cartLines(c); !mapsEqual(got, map[string]int{extra: 3}) {
		t.Errorf("cart after checkout = %v, want only the line added during it", got)
	}
	if l := stock(t, w, widget); l.Sold != 2 || l.Stock != 98 {
		t.Errorf("widget stock after checkout: %+v", l)
	}
	// Checkout tells the same.
	got, err := s.Checkout(ctx, c.UserID, "key-1")
	if err != nil || got.State != checkout.StateConfirmed || got.Order.ID != a.res.Order.ID || !got.Done {
		t.Errorf("Checkout = %+v, %v", got, err)
	}
	if _, err := s.Checkout(ctx, c.UserID, "other-key"); !errs.Is(errs.NotFound, err) {
		t.Errorf("Checkout of an unknown key = %v, want NotFound", err)
	}
	w.checkOnce(s, a.res.Order.ID)
	w.checkInvariants()
}

func TestDeclined(t *testing.T) {
	t.Parallel()
	w := newWorld(t, config{})
	ctx := context.Background()
	lines := map[string]int{widget: 2}
	c := w.customer("bob", lines)
	_, err := w.svc.PlaceOrder(ctx, c, "k", request(declinedCard))
	if !errs.Is(errs.Declined, err) {
		t.Fatalf("PlaceOrder with a declined card = %v, want Declined", err)
	}
	g := w.checkRolledBack(c, "k", lines)
	if g.Retryable {
		t.Errorf("a declined checkout is marked retryable")
	}
	if _, err := w.orders.GetOrder(ctx, g.ID); !errs.Is(errs.NotFound, err) {
		t.Errorf("GetOrder of a declined checkout = %v, want NotFound (no order)", err)
	}
	if os := w.ordersOf(c.UserID); len(os) != 0 {
		t.Errorf("orders of a declined customer: %+v", os)
	}
	p, err := w.pay.PaymentForOrder(ctx, g.ID)
	if err != nil || p.Status != payment.StatusDeclined {
		t.Errorf("payment = %+v, %v; want the decline recorded", p, err)
	}
	audit, err := w.pay.Audit(ctx)
	must(t, err)
	if audit.Declined != 1 || audit.Captured != 0 || audit.Held != 0 {
		t.Errorf("audit after a decline: %+v", audit)
	}
	if l := stock(t, w, widget); l.Stock != 100 || l.Reserved != 0 || l.Sold != 0 {
		t.Errorf("stock after a decline: %+v", l)
	}
	// The same request again answers the same.
	if _, err := w.svc.PlaceOrder(ctx, c, "k", request(declinedCard)); !errs.Is(errs.Declined, err) {
		t.Errorf("repeat of a declined checkout = %v", err)
	}
	res, err := w.svc.Checkout(ctx, c.UserID, "k")
	if err != nil || res.State != checkout.StateCancelled || res.Error == nil || res.Error.Status != 402 || res.Order.Status != order.StatusCancelled {
		t.Errorf("Checkout of a declined checkout = %+v, %v", res, err)
	}
	w.checkOnce(w.svc, g.ID)
	w.checkInvariants()
}

func TestTransientProcessorRollsBackAndRetries(t *testing.T) {
	t.Parallel()
	w := newWorld(t, config{})
	ctx := context.Background()
	lines := map[string]int{gadget: 1}
	c := w.customer("cy", lines)
	start := time.Now()
	_, err := w.settle(c, "k")(w.svc.PlaceOrder(ctx, c, "k", request(transientCard)))
	if !errs.Is(errs.Unavailable, err) {
		t.Fatalf("PlaceOrder with an always-failing processor = %v, want Unavailable", err)
	}
	if d := time.Since(start); d < time.Second {
		t.Errorf("gave up after %v, before the step deadline of 1s", d)
	}
	first := w.checkRolledBack(c, "k", lines)
	if !first.Retryable || first.Failure.Status != 503 {
		t.Errorf("saga after a transient failure: retryable %v failure %+v", first.Retryable, first.Failure)
	}
	n, _ := w.history(w.svc, first.ID)
	if n["authorize_payment/retry"] < 2 || n["authorize_payment/failed"] != 1 {
		t.Errorf("authorize was not retried until its deadline: %v", n)
	}
	// Another body under the key: 422.
	other := request(transientCard)
	other.ShippingAddress.City = "Paris"
	if _, err := w.svc.PlaceOrder(ctx, c, "k", other); !errs.Is(errs.Invalid, err) {
		t.Errorf("same key, other body = %v, want Invalid", err)
	}
	// A new key with a good card succeeds.
	res, err := w.svc.PlaceOrder(ctx, c, "k2", request(goodCard))
	if err != nil {
		t.Fatal(err)
	}
	w.checkConfirmed(c, "k2", res, lines)
	if os := w.ordersOf(c.UserID); len(os) != 1 {
		t.Errorf("%d orders, want 1", len(os))
	}
	w.checkInvariants()
}

// TestRetryAfterRollback: a checkout rolled back because a service stayed
// down runs again, as a new saga, when the same request is sent again
// under its key (API: "the one exception is errs.Unavailable after a
// complete roll-back").
func TestRetryAfterRollback(t *testing.T) {
	t.Parallel()
	w := newWorld(t, config{})
	w.run(w.instance("recovery", nil)) // ends sagas whose driver stopped
	f := newCrasher(t, "before:authorize_payment=fail")
	s := w.instance("a2", f.Injector)
	ctx := context.Background()
	lines := map[string]int{widget: 1}
	c := w.customer("again", lines)
	if _, err := w.settle(c, "k")(s.PlaceOrder(ctx, c, "k", request(goodCard))); !errs.Is(errs.Unavailable, err) {
		t.Fatalf("PlaceOrder with the payment service down = %v, want Unavailable", err)
	}
	first := w.checkRolledBack(c, "k", lines)
	if !first.Retryable {
		t.Fatalf("not retryable: %+v", first)
	}
	must(t, f.Set("")) // the payment service is back
	// The customer's client retries, several times at once, on two
	// instances: one new saga runs, every answer names it.
	const n = 10
	res := make([]checkout.Result, n)
	errl := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			inst := s
			if i%2 == 1 {
				inst = w.svc
			}
			res[i], errl[i] = inst.PlaceOrder(ctx, c, "k", request(goodCard))
		}()
	}
	wg.Wait()
	second := w.saga(c, "k")
	if second.ID == first.ID {
		t.Fatalf("the same key and request did not run again (saga %s)", second.ID)
	}
	final, err := w.settle(c, "k")(res[0], errl[0])
	_, h := w.history(w.svc, second.ID)
	driven := false // did the driver that restarted it write anything?
	for _, r := range h {
		driven = driven || r.Epoch == 1 && r.Step != "checkout"
	}
	if !driven {
		t.Fatalf("the restarted saga was not driven by the instance that restarted it (its first write fenced?): "+
			"it ended %s (%v). History: %v", final.State, err, h)
	}
	if err != nil {
		t.Fatalf("the second run = %v, want it confirmed", err)
	}
	for i := range n {
		r, err := w.settle(c, "k")(res[i], errl[i])
		if err != nil || r.Order.ID != second.ID {
			t.Errorf("retry %d = %s, %v; want order %s", i, r.Order.ID, err, second.ID)
		}
	}
	w.checkConfirmed(c, "k", final, lines)
	if os := w.ordersOf(c.UserID); len(os) != 1 {
		t.Errorf("%d orders, want 1", len(os))
	}
	w.checkOnce(s, second.ID)
	w.checkInvariants()
}

func TestRequestValidation(t *testing.T) {
	t.Parallel()
	w := newWorld(t, config{})
	ctx := context.Background()
	c := w.customer("val", map[string]int{widget: 1})
	long := make([]byte, checkout.MaxKeyLen+1)
	for i := range long {
		long[i] = 'k'
	}
	for _, key := range []string{"", string(long), "bad\nkey"} {
		if _, err := w.svc.PlaceOrder(ctx, c, key, request(goodCard)); !errs.Is(errs.BadRequest, err) {
			t.Errorf("key %q: %v, want BadRequest", key, err)
		}
	}
	bad := map[string]func(*checkout.Request, *checkout.Customer){
		"no name":           func(r *checkout.Request, _ *checkout.Customer) { r.ShippingAddress.Name = "" },
		"country":           func(r *checkout.Request, _ *checkout.Customer) { r.ShippingAddress.Country = "GBR" },
		"card luhn":         func(r *checkout.Request, _ *checkout.Customer) { r.Payment.Number = "4242424242424241" },
		"card expired":      func(r *checkout.Request, _ *checkout.Customer) { r.Payment.ExpYear = 2020 },
		"email":             func(_ *checkout.Request, c *checkout.Customer) { c.Email = "Ada <ada@example.com>" },
		"no user":           func(_ *checkout.Request, c *checkout.Customer) { c.UserID = " " },
		"callback ftp":      func(r *checkout.Request, _ *checkout.Customer) { r.CallbackURL = "ftp://example.com/cb" },
		"callback no host":  func(r *checkout.Request, _ *checkout.Customer) { r.CallbackURL = "http:///cb" },
		"callback relative": func(r *checkout.Request, _ *checkout.Customer) { r.CallbackURL = "/cb" },
		"callback creds":    func(r *checkout.Request, _ *checkout.Customer) { r.CallbackURL = "https://user:pw@example.com/cb" },
	}
	for name, mod := range bad {
		r, cu := request(goodCard), c
		mod(&r, &cu)
		if _, err := w.svc.PlaceOrder(ctx, cu, "key-"+name, r); !errs.Is(errs.Invalid, err) {
			t.Errorf("%s: %v, want Invalid", name, err)
		}
		if _, err := w.raw.Get(ctx, cu.UserID, "key-"+name); !errs.Is(errs.NotFound, err) {
			t.Errorf("%s: a refused request left a saga (%v)", name, err)
		}
	}
	// An empty cart: Invalid, and nothing held.
	empty := w.customer("empty", nil)
	if _, err := w.svc.PlaceOrder(ctx, empty, "k", request(goodCard)); !errs.Is(errs.Invalid, err) {
		t.Errorf("empty cart: %v, want Invalid", err)
	}
	w.checkRolledBack(empty, "k", map[string]int{})
	w.checkInvariants()
}

// outcomeKinds counts the answers by error kind ("ok" for none).
func kindName(err error) string {
	if err == nil {
		return "ok"
	}
	return errs.KindOf(err).Title()
}

func TestConcurrency(t *testing.T) {
	t.Parallel()
	for _, b := range []struct {
		name string
		db   func(testing.TB) *sqldb.DB
	}{{"sqlite", testenv.SQLite}, {"postgres", testenv.Postgres}} {
		t.Run(b.name, func(t *testing.T) {
			t.Run("LastUnits", func(t *testing.T) { t.Parallel(); testLastUnits(t, b.db) })
			t.Run("DuplicateKey", func(t *testing.T) { t.Parallel(); testDuplicateKey(t, b.db) })
			t.Run("SameCartTwoKeys", func(t *testing.T) { t.Parallel(); testSameCartTwoKeys(t, b.db) })
		})
	}
}

// testLastUnits: 50 customers race for 10 units.
func testLastUnits(t *testing.T, db func(testing.TB) *sqldb.DB) {
	w := newWorld(t, config{stock: map[string]int{widget: 10, gadget: 100, extra: 100}, checkoutDB: db})
	ctx := context.Background()
	const n = 50
	cs := make([]checkout.Customer, n)
	for i := range cs {
		cs[i] = w.customer(fmt.Sprintf("buyer%02d", i), map[string]int{widget: 1})
	}
	type answer struct {
		res checkout.Result
		err error
	}
	answers := make([]answer, n)
	var wg sync.WaitGroup
	for i := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := w.svc.PlaceOrder(ctx, cs[i], "k", request(goodCard))
			answers[i] = answer{res, err}
		}()
	}
	wg.Wait()
	count := map[string]int{}
	for i, a := range answers {
		res, err := w.settle(cs[i], "k")(a.res, a.err)
		count[kindName(err)]++
		switch {
		case err == nil:
			w.checkConfirmed(cs[i], "k", res, map[string]int{widget: 1})
			if got := w.cartLines(cs[i]); len(got) != 0 {
				t.Errorf("cart of a buyer after checkout: %v", got)
			}
		case errs.Is(errs.Conflict, err):
			w.checkRolledBack(cs[i], "k", map[string]int{widget: 1})
		}
	}
	if count["ok"] != 10 || count[errs.Conflict.Title()] != 40 {
		t.Errorf("outcomes of 50 checkouts for 10 units: %v; want 10 ok, 40 Conflict", count)
	}
	if l := stock(t, w, widget); l.Stock != 0 || l.Sold != 10 || l.Reserved != 0 {
		t.Errorf("widget stock: %+v, want 0 left, 10 sold, none reserved", l)
	}
	audit, err := w.pay.Audit(ctx)
	must(t, err)
	if audit.Payments != 10 || audit.Held != 0 || audit.NetCaptured != audit.Captured || audit.Voided != 0 {
		t.Errorf("audit: %d payments, %d held, captured %d, voided %d; want 10 captured payments, nothing held", audit.Payments, audit.Held, audit.Captured, audit.Voided)
	}
	w.checkInvariants()
}

// testDuplicateKey: one key sent 20 times serially and 20 times at once.
func testDuplicateKey(t *testing.T, db func(testing.TB) *sqldb.DB) {
	w := newWorld(t, config{checkoutDB: db})
	ctx := context.Background()
	for _, mode := range []string{"serial", "concurrent"} {
		c := w.customer("dup-"+mode, map[string]int{widget: 1, gadget: 2})
		const n = 20
		res := make([]checkout.Result, n)
		errl := make([]error, n)
		if mode == "serial" {
			for i := range n {
				res[i], errl[i] = w.svc.PlaceOrder(ctx, c, "k", request(goodCard))
			}
		} else {
			// Half of them to another instance: it finds the saga driven
			// elsewhere and waits for it through the log.
			other := w.instance("other-"+mode, nil)
			var wg sync.WaitGroup
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					inst := w.svc
					if i%2 == 1 {
						inst = other
					}
					res[i], errl[i] = inst.PlaceOrder(ctx, c, "k", request(goodCard))
				}()
			}
			wg.Wait()
		}
		g := w.saga(c, "k")
		for i := range n {
			r, err := w.settle(c, "k")(res[i], errl[i])
			if err != nil || r.Order.ID != g.ID || r.State != checkout.StateConfirmed {
				t.Errorf("%s answer %d = %s %s, %v; want order %s confirmed", mode, i, r.Order.ID, r.State, err, g.ID)
			}
		}
		res0, _ := w.settle(c, "k")(res[0], errl[0])
		w.checkConfirmed(c, "k", res0, map[string]int{widget: 1, gadget: 2})
		if os := w.ordersOf(c.UserID); len(os) != 1 {
			t.Errorf("%s: %d orders, want 1", mode, len(os))
		}
		w.checkOnce(w.svc, g.ID)
	}
	audit, err := w.pay.Audit(ctx)
	must(t, err)
	if audit.Payments != 2 || audit.Entries != 4 {
		t.Errorf("audit after two customers' duplicates: %d payments, %d ledger entries; want 2 and 4 (one authorization and one capture each)", audit.Payments, audit.Entries)
	}
	w.checkInvariants()
}

// testSameCartTwoKeys: the same cart checked out under two keys at once
// (two tabs): never two orders.
func testSameCartTwoKeys(t *testing.T, db func(testing.TB) *sqldb.DB) {
	w := newWorld(t, config{checkoutDB: db})
	ctx := context.Background()
	for round := range 5 {
		lines := map[string]int{widget: 1}
		c := w.customer(fmt.Sprintf("tabs%d", round), lines)
		var (
			wg   sync.WaitGroup
			res  [2]checkout.Result
			errl [2]error
		)
		for i := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res[i], errl[i] = w.svc.PlaceOrder(ctx, c, fmt.Sprintf("tab-%d", i), request(goodCard))
			}()
		}
		wg.Wait()
		var kinds []string
		for i := range 2 {
			_, err := w.settle(c, fmt.Sprintf("tab-%d", i))(res[i], errl[i])
			kinds = append(kinds, kindName(err))
			if err != nil && !errs.Is(errs.Conflict, err) && !errs.Is(errs.Invalid, err) {
				t.Errorf("round %d tab %d: %v, want Conflict or Invalid", round, i, err)
			}
		}
		slices.Sort(kinds)
		if kinds[0] == kinds[1] || !slices.Contains(kinds, "ok") {
			t.Errorf("round %d: outcomes %v, want one ok", round, kinds)
		}
		if os := w.ordersOf(c.UserID); len(os) != 1 || os[0].Status != order.StatusConfirmed {
			t.Errorf("round %d: orders %+v, want one confirmed", round, os)
		}
		if got := w.cartLines(c); len(got) != 0 {
			t.Errorf("round %d: cart %v after the winning checkout", round, got)
		}
		if err := w.unlocked(c); err != nil {
			t.Errorf("round %d: %v", round, err)
		}
	}
	w.checkInvariants()
}

// TestKeysExpire: a day after a checkout ended its key is forgotten (Run
// purges it): Checkout no longer finds it and the key may be used again.
func TestKeysExpire(t *testing.T) {
	t.Parallel()
	w := newWorld(t, config{})
	ctx := context.Background()
	lines := map[string]int{widget: 1}
	c := w.customer("old", lines)
	res, err := w.svc.PlaceOrder(ctx, c, "k", request(goodCard))
	if err != nil {
		t.Fatal(err)
	}
	w.checkConfirmed(c, "k", res, lines)
	pending := w.customer("pending-cb", lines)
	r := request(goodCard)
	r.CallbackURL = "http://127.0.0.1:1/unreachable"
	if _, err := w.svc.PlaceOrder(ctx, pending, "k", r); err != nil {
		t.Fatal(err)
	}
	// An instance whose clock is 25 hours ahead runs its purge at start.
	tomorrow := w.instanceAt(clock.NewFake(time.Now().Add(25*time.Hour)), append(baseOptions(), checkout.WithOwner("tomorrow"))...)
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); tomorrow.Run(cctx) }()
	testenv.CheckFor(t, 5*time.Second, func() error {
		if _, err := w.svc.Checkout(ctx, c.UserID, "k"); !errs.Is(errs.NotFound, err) {
			return fmt.Errorf("Checkout a day later = %v, want NotFound", err)
		}
		return nil
	})
	cancel()
	<-done
	// The one whose callback is still pending is kept.
	if got, err := w.svc.Checkout(ctx, pending.UserID, "k"); err != nil || got.Callback == nil {
		t.Errorf("checkout with a pending callback = %+v, %v; want it kept", got, err)
	}
	// The order stays; the key is free again (the cart is empty now).
	if _, err := w.orders.GetOrder(ctx, res.Order.ID); err != nil {
		t.Errorf("the order went with the key: %v", err)
	}
	if _, err := w.svc.PlaceOrder(ctx, c, "k", request(goodCard)); !errs.Is(errs.Invalid, err) {
		t.Errorf("the expired key used again on an empty cart = %v, want Invalid (a new checkout)", err)
	}
	w.checkInvariants()
}
