package checkout_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/cart"
	"github.com/globomantics/globomantics/internal/catalog"
	"github.com/globomantics/globomantics/internal/checkout"
	"github.com/globomantics/globomantics/internal/checkout/checkoutdb"
	"github.com/globomantics/globomantics/internal/order"
	"github.com/globomantics/globomantics/internal/order/orderdb"
	"github.com/globomantics/globomantics/internal/payment"
	"github.com/globomantics/globomantics/internal/platform/clock"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/httpx"
	"github.com/globomantics/globomantics/internal/platform/money"
	"github.com/globomantics/globomantics/internal/platform/page"
	"github.com/globomantics/globomantics/internal/platform/testenv"
	"github.com/globomantics/globomantics/internal/shipping"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// world is checkout with its five dependencies, as the test sees them.
type world struct {
	api    checkout.API
	carts  *fakeCarts
	inv    *fakeInventory
	pay    *fakePayments
	ship   *fakeShipments
	orders *faultyOrders
	logs   *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var (
	customer = checkout.Customer{UserID: "usr_ada", Email: "ada@example.com"}
	owner    = "user:usr_ada"
	addr     = shipping.Address{Name: "Ada Lovelace", Line1: "12 Analytical St", City: "London", PostalCode: "N1 9GU", Country: "GB"}
	t0       = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	// initialStock is the stock before any checkout.
	initialStock = map[string]int{"prd_widget": 5, "prd_gadget": 3}
)

func request(card string) checkout.Request {
	return checkout.Request{ShippingAddress: addr, Payment: payment.Card{Number: card, ExpMonth: 12, ExpYear: 2030, CVC: "123"}}
}

func newWorld(t *testing.T) (*checkout.Service, *world) {
	t.Helper()
	clk := clock.NewFake(t0)
	db := testenv.SQLite(t)
	ostore, err := orderdb.Open(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	cstore, err := checkoutdb.Open(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	w := &world{
		carts: &fakeCarts{carts: map[string][]cart.Item{owner: {
			// The cart's prices are stale: checkout must charge the catalog's.
			{ProductID: "prd_widget", Name: "Widget", Quantity: 2, UnitPrice: money.USD(1000), LineTotal: money.USD(2000)},
			{ProductID: "prd_gadget", Name: "Gadget", Quantity: 1, UnitPrice: money.USD(999), LineTotal: money.USD(999)},
		}}},
		inv: &fakeInventory{
			products: map[string]catalog.Product{
				"prd_widget": {ID: "prd_widget", Name: "Widget", Price: money.USD(1250), Stock: initialStock["prd_widget"]},
				"prd_gadget": {ID: "prd_gadget", Name: "Gadget", Price: money.USD(999), Stock: initialStock["prd_gadget"]},
			},
			reservations: map[string][]catalog.Line{}, released: map[string]bool{},
		},
		pay:    &fakePayments{byID: map[string]*payment.Payment{}, byOrder: map[string]string{}},
		ship:   &fakeShipments{byOrder: map[string]*shipping.Shipment{}, byID: map[string]*shipping.Shipment{}},
		orders: &faultyOrders{svc: order.NewService(ostore, nil, clk)},
		logs:   &syncBuffer{},
	}
	log := slog.New(slog.NewJSONHandler(w.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	svc := checkout.NewService(cstore, w.carts, w.inv, w.pay, w.ship, w.orders, clk, log, checkout.WithReplayWait(time.Second))
	w.api = svc
	return svc, w
}

// TestAPI runs the contract suite against the service and against the HTTP
// client talking to the service's handler.
func TestAPI(t *testing.T) {
	setups := map[string]func(t *testing.T) *world{
		"service": func(t *testing.T) *world { _, w := newWorld(t); return w },
		"http": func(t *testing.T) *world {
			svc, w := newWorld(t)
			srv := httptest.NewServer(checkout.NewHandler(svc))
			t.Cleanup(srv.Close)
			w.api = checkout.NewClient(httpx.NewClient("checkout", []string{srv.URL}, nil))
			return w
		},
	}
	for name, setup := range setups {
		t.Run(name, func(t *testing.T) {
			for _, tc := range contract {
				t.Run(tc.name, func(t *testing.T) {
					t.Parallel()
					tc.fn(t, setup(t))
				})
			}
		})
	}
}

var contract = []struct {
	name string
	fn   func(t *testing.T, w *world)
}{
	{"Success", testSuccess},
	{"Declined", testDeclined},
	{"OutOfStock", testOutOfStock},
	{"ProductGone", testProductGone},
	{"TransientPaymentError", testTransientPayment},
	{"ShipmentFailure", testShipmentFailure},
	{"ShipmentAnswerLost", testShipmentAnswerLost},
	{"CaptureFailure", testCaptureFailure},
	{"ConfirmFailureRefunds", testConfirmFailure},
	{"ConfirmAnswerLost", testConfirmAnswerLost},
	{"ConfirmAnswerLostOrderUnreadable", testConfirmAnswerLostOrderUnreadable},
	{"AuthorizeAnswerLost", testAuthorizeAnswerLost},
	{"DependencyDown", testDependencyDown},
	{"IdempotentRetry", testIdempotentRetry},
	{"ReplaysError", testReplaysError},
	{"ConcurrentDuplicates", testConcurrentDuplicates},
	{"InProgress", testInProgress},
	{"DuplicateWaits", testDuplicateWaits},
	{"SameKeyDifferentBody", testSameKeyDifferentBody},
	{"EmptyCart", testEmptyCart},
	{"BadKey", testBadKey},
	{"BadInputTouchesNothing", testBadInput},
	{"AddressLengthInCharacters", testAddressLengthInCharacters},
	{"CompensationFailureIsLogged", testCompensationFailureLogged},
	{"RetryAfterOutage", testRetryAfterOutage},
	{"NoRetryAfterIncompleteRollback", testNoRetryAfterIncompleteRollback},
}

func wantKind(t *testing.T, err error, k errs.Kind) {
	t.Helper()
	if !errs.Is(k, err) {
		t.Fatalf("got error %v (kind %v), want kind %v", err, errs.KindOf(err), k)
	}
}

// orders lists the customer's orders, newest first.
func (w *world) ordersOf(t *testing.T) []order.Order {
	t.Helper()
	pg, err := w.orders.svc.ListOrders(context.Background(), customer.UserID, page.Request{Size: 100})
	if err != nil {
		t.Fatal(err)
	}
	return pg.Items
}

// onlyOrder returns the customer's one order.
func (w *world) onlyOrder(t *testing.T) order.Order {
	t.Helper()
	list := w.ordersOf(t)
	if len(list) != 1 {
		t.Fatalf("the customer has %d orders, want 1", len(list))
	}
	return list[0]
}

// assertRolledBack checks a failed checkout left its order cancelled,
// nothing charged or held, no live shipment, the stock and the cart as before.
func (w *world) assertRolledBack(t *testing.T, wantPayment string) order.Order {
	t.Helper()
	o := w.onlyOrder(t)
	if o.Status != order.StatusCancelled || o.CancelReason == "" {
		t.Errorf("order %s is %q (reason %q), want cancelled with a reason", o.ID, o.Status, o.CancelReason)
	}
	if o.Payment.Status != wantPayment {
		t.Errorf("order's payment status = %q, want %q", o.Payment.Status, wantPayment)
	}
	for _, s := range w.pay.statuses() {
		if s == payment.StatusAuthorized || s == payment.StatusCaptured {
			t.Errorf("a payment is left %s", s)
		}
	}
	for _, s := range w.ship.statuses() {
		if s != shipping.StatusCancelled {
			t.Errorf("a shipment is left %s", s)
		}
	}
	if got := w.inv.stock(); !reflect.DeepEqual(got, initialStock) {
		t.Errorf("stock = %v, want it back at %v", got, initialStock)
	}
	if w.carts.items(owner) != 2 {
		t.Errorf("the cart was emptied by a failed checkout")
	}
	return o
}

func testSuccess(t *testing.T, w *world) {
	res, err := w.api.PlaceOrder(context.Background(), customer, "key-1", request(cardOK))
	if err != nil {
		t.Fatal(err)
	}
	o := res.Order
	if !res.Done || o.Status != order.StatusConfirmed {
		t.Fatalf("result done=%v status=%q, want a confirmed order", res.Done, o.Status)
	}
	// 2 × $12.50 at the catalog's price (not the cart's $10.00) + $9.99, and
	// shipping for 3 units.
	if o.Subtotal != money.USD(3499) || o.ShippingCost != money.USD(799) || o.Total != money.USD(4298) {
		t.Errorf("subtotal %v shipping %v total %v", o.Subtotal, o.ShippingCost, o.Total)
	}
	if o.Items[0].UnitPrice != money.USD(1250) || o.Items[0].Quantity != 2 || o.Email != customer.Email || o.ShippingAddress != addr {
		t.Errorf("order = %+v", o)
	}
	p, ok := w.pay.forOrder(o.ID)
	if !ok || p.Status != payment.StatusCaptured || p.Amount != o.Total {
		t.Errorf("payment = %+v, want %v captured", p, o.Total)
	}
	if o.Payment != (order.PaymentInfo{ID: p.ID, Status: payment.StatusCaptured}) {
		t.Errorf("order's payment = %+v", o.Payment)
	}
	if o.Shipment.ID == "" || o.Shipment.TrackingNumber == "" || o.Shipment.Status != shipping.StatusCreated {
		t.Errorf("order's shipment = %+v", o.Shipment)
	}
	if got := w.inv.stock(); got["prd_widget"] != 3 || got["prd_gadget"] != 2 {
		t.Errorf("stock = %v, want widget 3 gadget 2", got)
	}
	if w.carts.items(owner) != 0 {
		t.Errorf("the cart was not cleared")
	}
	if stored := w.onlyOrder(t); !reflect.DeepEqual(stored, o) {
		t.Errorf("stored order %+v\nresult %+v", stored, o)
	}
}

func testDeclined(t *testing.T, w *world) {
	_, err := w.api.PlaceOrder(context.Background(), customer, "key-1", request(cardDeclined))
	wantKind(t, err, errs.Declined)
	w.assertRolledBack(t, payment.StatusDeclined)
	if n := w.pay.count("Capture"); n != 0 {
		t.Errorf("Capture called %d times for a declined card", n)
	}
	if n := w.ship.count("CreateShipment"); n != 0 {
		t.Errorf("a shipment was made for a declined card")
	}
}

func testOutOfStock(t *testing.T, w *world) {
	w.carts.carts[owner][1].Quantity = 4 // 3 in stock
	_, err := w.api.PlaceOrder(context.Background(), customer, "key-1", request(cardOK))
	wantKind(t, err, errs.Conflict)
	if !strings.Contains(errs.Detail(err), "Gadget") {
		t.Errorf("detail %q does not name the product", errs.Detail(err))
	}
	w.assertRolledBack(t, "")
	if n := w.pay.count("Authorize"); n != 0 {
		t.Errorf("Authorize called %d times when stock was short", n)
	}
}

func testProductGone(t *testing.T, w *world) {
	w.inv.remove("prd_gadget")
	_, err := w.api.PlaceOrder(context.Background(), customer, "key-1", request(cardOK))
	wantKind(t, err, errs.Conflict)
	if len(w.ordersOf(t)) != 0 || w.pay.total() != 0 {
		t.Errorf("a checkout with a product gone made an order or a payment")
	}
}

func testTransientPayment(t *testing.T, w *world) {
	_, err := w.api.PlaceOrder(context.Background(), customer, "key-1", request(cardTransient))
	wantKind(t, err, errs.Unavailable)
	if n := w.pay.count("Authorize"); n != 4 {
		t.Errorf("Authorize tried %d times, want 4 (three retries)", n)
	}
	w.assertRolledBack(t, "")
	if len(w.pay.statuses()) != 0 {
		t.Errorf("payments recorded: %v", w.pay.statuses())
	}
}

func testShipmentFailure(t *testing.T, w *world) {
	// Every try fails; the shipping service is back by the time checkout
	// cleans up, and there is nothing to cancel.
	w.ship.inject("CreateShipment", errs.E(errs.Unavailable, errs.Msg("shipping service is unavailable")), 4, false)
	_, err := w.api.PlaceOrder(context.Background(), customer, "key-1", request(cardOK))
	wantKind(t, err, errs.Unavailable)
	w.assertRolledBack(t, payment.StatusVoided)
	if n := w.pay.count("Capture"); n != 0 {
		t.Errorf("Capture called %d times without a shipment", n)
	}
}

func testShipmentAnswerLost(t *testing.T, w *world) {
	// The shipment is made each time but the answers are lost: checkout must
	// find it and cancel it.
	w.ship.inject("CreateShipment", errs.E(errs.Unavailable, errs.Msg("shipping service is unavailable")), 4, true)
	_, err := w.api.PlaceOrder(context.Background(), customer, "key-1", request(cardOK))
	wantKind(t, err, errs.Unavailable)
	w.assertRolledBack(t, payment.StatusVoided)
	if got := w.ship.statuses(); !reflect.DeepEqual(got, []string{shipping.StatusCancelled}) {
		t.Errorf("shipments = %v, want one cancelled", got)
	}
}

func testCaptureFailure(t *testing.T, w *world) {
	w.pay.inject("Capture", errs.E(errs.Other, errs.Msg("processor error")), -1, false)
	_, err := w.api.PlaceOrder(context.Background(), customer, "key-1", request(cardOK))
	if err == nil {
		t.Fatal("PlaceOrder succeeded with capture failing")
	}
	w.assertRolledBack(t, payment.StatusVoided)
	if got := w.ship.statuses(); !reflect.DeepEqual(got, []string{shipping.StatusCancelled}) {
		t.Errorf("shipments = %v, want one cancelled", got)
	}
}

func testConfirmFailure(t *testing.T, w *world) {
	w.orders.inject("Confirm", errs.E(errs.Unavailable, errs.Msg("order service is unavailable")), -1, false)
	_, err := w.api.PlaceOrder(context.Background(), customer, "key-1", request(cardOK))
	wantKind(t, err, errs.Unavailable)
	w.assertRolledBack(t, payment.StatusRefunded)
	if got := w.pay.statuses(); !reflect.DeepEqual(got, []string{payment.StatusRefunded}) {
		t.Errorf("payments = %v, want the captured payment refunded", got)
	}
}

func testConfirmAnswerLost(t *testing.T, w *world) {
	w.orders.inject("Confirm", errs.E(errs.Unavailable, errs.Msg("order service is unavailable")), -1, true)
	res, err := w.api.PlaceOrder(context.Background(), customer, "key-1", request(cardOK))
	if err != nil {
		t.Fatalf("a confirmation whose answer was lost failed the checkout: %v", err)
	}
	if !res.Done || res.Order.Status != order.StatusConfirmed {
		t.Errorf("result = %+v", res)
	}
	if got := w.pay.statuses(); !reflect.DeepEqual(got, []string{payment.StatusCaptured}) {
		t.Errorf("payments = %v, want one captured (a real sale is never refunded)", got)
	}
}

// testConfirmAnswerLostOrderUnreadable: the confirmation is committed but
// every answer is lost, and the order cannot be read back either. The order
// is confirmed (its OrderPlaced e-mail is on the way), so checkout must not
// refund its payment, cancel its shipment or put its stock back.
func testConfirmAnswerLostOrderUnreadable(t *testing.T, w *world) {
	w.orders.inject("Confirm", errs.E(errs.Unavailable, errs.Msg("order service is unavailable")), -1, true)
	w.orders.inject("GetOrder", errs.E(errs.Unavailable, errs.Msg("order service is unavailable")), -1, false)
	res, err := w.api.PlaceOrder(context.Background(), customer, "key-1", request(cardOK))
	o := w.onlyOrder(t)
	if o.Status != order.StatusConfirmed {
		t.Fatalf("order is %q, want confirmed (Confirm was committed)", o.Status)
	}
	if err != nil {
		t.Errorf("a confirmed order was reported as failed: %v", err)
	} else if !res.Done || res.Order.ID != o.ID || res.Order.Status != order.StatusConfirmed {
		t.Errorf("result = %+v, want the confirmed order %s", res, o.ID)
	}
	if got := w.pay.statuses(); !reflect.DeepEqual(got, []string{payment.StatusCaptured}) {
		t.Errorf("payments = %v, want one captured (a real sale is never refunded)", got)
	}
	if got := w.ship.statuses(); !reflect.DeepEqual(got, []string{shipping.StatusCreated}) {
		t.Errorf("shipments = %v, want the confirmed order's shipment left created", got)
	}
	if got := w.inv.stock(); got["prd_widget"] != 3 || got["prd_gadget"] != 2 {
		t.Errorf("stock = %v, want the confirmed order's stock kept", got)
	}
}

// testAuthorizeAnswerLost: the authorization is made each time but every
// answer is lost. Checkout must find it and void it: no money may stay held
// for a cancelled order.
func testAuthorizeAnswerLost(t *testing.T, w *world) {
	w.pay.inject("Authorize", errs.E(errs.Unavailable, errs.Msg("payment service is unavailable")), -1, true)
	_, err := w.api.PlaceOrder(context.Background(), customer, "key-1", request(cardOK))
	wantKind(t, err, errs.Unavailable)
	w.assertRolledBack(t, payment.StatusVoided)
	if got := w.pay.statuses(); !reflect.DeepEqual(got, []string{payment.StatusVoided}) {
		t.Errorf("payments = %v, want one voided", got)
	}
}

func testDependencyDown(t *testing.T, w *world) {
	w.carts.inject("GetCart", errs.E(errs.Unavailable, errs.Msg("cart service is unavailable")), -1, false)
	_, err := w.api.PlaceOrder(context.Background(), customer, "key-1", request(cardOK))
	wantKind(t, err, errs.Unavailable)
	if len(w.ordersOf(t)) != 0 || w.pay.total() != 0 || w.inv.total() != 0 {
		t.Errorf("a checkout without a cart touched other services")
	}
}

func testIdempotentRetry(t *testing.T, w *world) {
	ctx := context.Background()
	first, err := w.api.PlaceOrder(ctx, customer, "key-1", request(cardOK))
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		again, err := w.api.PlaceOrder(ctx, customer, "key-1", request(cardOK))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(again, first) {
			t.Errorf("retry = %+v\nwant %+v", again, first)
		}
	}
	w.onlyOrder(t)
	if n := w.pay.count("Authorize"); n != 1 {
		t.Errorf("Authorize called %d times, want 1", n)
	}
	if got := w.inv.stock(); got["prd_widget"] != 3 {
		t.Errorf("stock = %v: taken more than once", got)
	}
	// Another key places another order (the cart is empty now).
	w.carts.carts[owner] = []cart.Item{{ProductID: "prd_widget", Name: "Widget", Quantity: 1}}
	second, err := w.api.PlaceOrder(ctx, customer, "key-2", request(cardOK))
	if err != nil {
		t.Fatal(err)
	}
	if second.Order.ID == first.Order.ID {
		t.Error("a new key returned the old order")
	}
}

func testReplaysError(t *testing.T, w *world) {
	ctx := context.Background()
	_, first := w.api.PlaceOrder(ctx, customer, "key-1", request(cardDeclined))
	wantKind(t, first, errs.Declined)
	_, again := w.api.PlaceOrder(ctx, customer, "key-1", request(cardDeclined))
	wantKind(t, again, errs.Declined)
	if errs.Detail(again) != errs.Detail(first) {
		t.Errorf("replayed detail %q, want %q", errs.Detail(again), errs.Detail(first))
	}
	if n := w.pay.count("Authorize"); n != 1 {
		t.Errorf("Authorize called %d times, want 1", n)
	}
	w.onlyOrder(t)
}

func testConcurrentDuplicates(t *testing.T, w *world) {
	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		ids = map[string]bool{}
	)
	for range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := w.api.PlaceOrder(context.Background(), customer, "key-1", request(cardOK))
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			ids[res.Order.ID] = true
			mu.Unlock()
		}()
	}
	wg.Wait()
	if len(ids) != 1 {
		t.Errorf("duplicates saw orders %v, want one", ids)
	}
	if o := w.onlyOrder(t); o.Status != order.StatusConfirmed || !ids[o.ID] {
		t.Errorf("order = %+v", o)
	}
	if n := w.pay.count("Authorize"); n != 1 {
		t.Errorf("Authorize called %d times, want 1", n)
	}
}

func testInProgress(t *testing.T, w *world) {
	ctx := context.Background()
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	w.pay.mu.Lock()
	w.pay.hook = func() { once.Do(func() { close(entered); <-release }) }
	w.pay.mu.Unlock()
	done := make(chan checkout.Result, 1)
	go func() {
		res, err := w.api.PlaceOrder(ctx, customer, "key-1", request(cardOK))
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	<-entered
	pending, err := w.api.PlaceOrder(ctx, customer, "key-1", request(cardOK))
	if err != nil {
		t.Fatal(err)
	}
	if pending.Done || pending.Order.Status != order.StatusPending || pending.Order.ID == "" {
		t.Errorf("while in progress: %+v, want not done, a pending order", pending)
	}
	close(release)
	final := <-done
	if !final.Done || final.Order.ID != pending.Order.ID || final.Order.Status != order.StatusConfirmed {
		t.Errorf("first request's result %+v (pending id %s)", final, pending.Order.ID)
	}
}

// testDuplicateWaits: a duplicate that arrives while the first request is
// still running waits for its outcome and answers with the finished order.
func testDuplicateWaits(t *testing.T, w *world) {
	ctx := context.Background()
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	w.pay.mu.Lock()
	w.pay.hook = func() { once.Do(func() { close(entered); <-release }) }
	w.pay.mu.Unlock()
	first := make(chan checkout.Result, 1)
	go func() {
		res, err := w.api.PlaceOrder(ctx, customer, "key-1", request(cardOK))
		if err != nil {
			t.Error(err)
		}
		first <- res
	}()
	<-entered
	second := make(chan checkout.Result, 1)
	go func() {
		res, err := w.api.PlaceOrder(ctx, customer, "key-1", request(cardOK))
		if err != nil {
			t.Error(err)
		}
		second <- res
	}()
	close(release)
	a, b := <-first, <-second
	if !b.Done || b.Order.ID != a.Order.ID || b.Order.Status != order.StatusConfirmed {
		t.Errorf("duplicate got %+v, want the first request's confirmed order %s", b, a.Order.ID)
	}
	if n := w.pay.count("Authorize"); n != 1 {
		t.Errorf("Authorize called %d times, want 1", n)
	}
}

func testSameKeyDifferentBody(t *testing.T, w *world) {
	ctx := context.Background()
	if _, err := w.api.PlaceOrder(ctx, customer, "key-1", request(cardOK)); err != nil {
		t.Fatal(err)
	}
	before := w.pay.total()
	other := request(cardOK)
	other.ShippingAddress.City = "Paris"
	_, err := w.api.PlaceOrder(ctx, customer, "key-1", other)
	wantKind(t, err, errs.Invalid)
	if !strings.Contains(errs.Detail(err), "different request") {
		t.Errorf("detail = %q", errs.Detail(err))
	}
	if w.pay.total() != before || len(w.ordersOf(t)) != 1 {
		t.Errorf("a reused key with another body did something")
	}
}

func testEmptyCart(t *testing.T, w *world) {
	w.carts.carts[owner] = nil
	_, err := w.api.PlaceOrder(context.Background(), customer, "key-1", request(cardOK))
	wantKind(t, err, errs.Invalid)
	if errs.Detail(err) != "cart is empty" {
		t.Errorf("detail = %q", errs.Detail(err))
	}
	if len(w.ordersOf(t)) != 0 || w.pay.total() != 0 || w.inv.total() != 0 {
		t.Errorf("an empty cart made an order or touched stock or payments")
	}
}

func testBadKey(t *testing.T, w *world) {
	ctx := context.Background()
	for _, key := range []string{"", strings.Repeat("k", 201), "bad\nkey"} {
		_, err := w.api.PlaceOrder(ctx, customer, key, request(cardOK))
		wantKind(t, err, errs.BadRequest)
	}
	if w.carts.total() != 0 || len(w.ordersOf(t)) != 0 {
		t.Errorf("a bad key touched the cart or made an order")
	}
	if _, err := w.api.PlaceOrder(ctx, customer, strings.Repeat("k", 200), request(cardOK)); err != nil {
		t.Errorf("a 200-byte key: %v", err)
	}
}

func testBadInput(t *testing.T, w *world) {
	ctx := context.Background()
	cases := map[string]func(c *checkout.Customer, r *checkout.Request){
		"no city":         func(_ *checkout.Customer, r *checkout.Request) { r.ShippingAddress.City = "" },
		"bad country":     func(_ *checkout.Customer, r *checkout.Request) { r.ShippingAddress.Country = "Britain" },
		"short number":    func(_ *checkout.Customer, r *checkout.Request) { r.Payment.Number = "4242" },
		"luhn":            func(_ *checkout.Customer, r *checkout.Request) { r.Payment.Number = "4242424242424241" },
		"month":           func(_ *checkout.Customer, r *checkout.Request) { r.Payment.ExpMonth = 13 },
		"expired":         func(_ *checkout.Customer, r *checkout.Request) { r.Payment.ExpYear, r.Payment.ExpMonth = 2025, 2 },
		"cvc":             func(_ *checkout.Customer, r *checkout.Request) { r.Payment.CVC = "12a" },
		"no user":         func(c *checkout.Customer, _ *checkout.Request) { c.UserID = "" },
		"bad email":       func(c *checkout.Customer, _ *checkout.Request) { c.Email = "ada" },
		"control in name": func(_ *checkout.Customer, r *checkout.Request) { r.ShippingAddress.Name = "Ada\r\nBcc: x" },
	}
	for name, mutate := range cases {
		c, r := customer, request(cardOK)
		mutate(&c, &r)
		_, err := w.api.PlaceOrder(ctx, c, "key-"+name, r)
		if !errs.Is(errs.Invalid, err) {
			t.Errorf("%s: got %v, want Invalid", name, err)
		}
	}
	if w.carts.total()+w.inv.total()+w.pay.total()+w.ship.total() != 0 || len(w.ordersOf(t)) != 0 {
		t.Errorf("invalid requests touched a service")
	}
	// The keys were not used up by the rejected requests.
	if _, err := w.api.PlaceOrder(ctx, customer, "key-no city", request(cardOK)); err != nil {
		t.Errorf("a key after a rejected request: %v", err)
	}
}

// testAddressLengthInCharacters: address fields are limited to 200
// characters (as the shipping service counts them), not 200 bytes: an address
// written in a script of multi-byte characters must be accepted.
func testAddressLengthInCharacters(t *testing.T, w *world) {
	r := request(cardOK)
	r.ShippingAddress.Line1 = strings.Repeat("東", 100) // 100 characters, 300 bytes
	res, err := w.api.PlaceOrder(context.Background(), customer, "key-1", r)
	if err != nil {
		t.Fatalf("an address line of 100 characters was rejected: %v", err)
	}
	if res.Order.ShippingAddress.Line1 != r.ShippingAddress.Line1 {
		t.Errorf("order's address = %+v", res.Order.ShippingAddress)
	}
	r.ShippingAddress.Line1 = strings.Repeat("東", 201)
	_, err = w.api.PlaceOrder(context.Background(), customer, "key-2", r)
	wantKind(t, err, errs.Invalid)
}

func testCompensationFailureLogged(t *testing.T, w *world) {
	w.ship.inject("CreateShipment", errs.E(errs.Invalid, errs.Msg("address not deliverable")), -1, false)
	w.pay.inject("Void", errs.E(errs.Other, fmt.Errorf("processor exploded")), -1, false)
	_, err := w.api.PlaceOrder(context.Background(), customer, "key-1", request(cardOK))
	wantKind(t, err, errs.Invalid)
	o := w.onlyOrder(t)
	if o.Status != order.StatusCancelled {
		t.Errorf("order is %q, want cancelled", o.Status)
	}
	if got := w.inv.stock(); !reflect.DeepEqual(got, initialStock) {
		t.Errorf("stock = %v: the other compensations must still run", got)
	}
	logs := w.logs.String()
	var found bool
	for _, line := range strings.Split(logs, "\n") {
		if strings.Contains(line, `"level":"ERROR"`) && strings.Contains(line, o.ID) && strings.Contains(line, "compensation failed") {
			found = true
		}
	}
	if !found {
		t.Errorf("no error log naming order %s; logs:\n%s", o.ID, logs)
	}
}

// TestHTTPStatus checks the handler's status codes: 201 when done, 202 while
// another request with the key is at work, problems for errors.
func TestHTTPStatus(t *testing.T) {
	svc, w := newWorld(t)
	srv := httptest.NewServer(checkout.NewHandler(svc))
	defer srv.Close()
	post := func(key, body string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/svc/checkout/v1/orders", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if key != "" {
			req.Header.Set("Idempotency-Key", key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	body := `{"customer":{"user_id":"usr_ada","email":"ada@example.com"},"request":{"shipping_address":` +
		`{"name":"Ada","line1":"1 St","city":"London","postal_code":"N1","country":"GB"},` +
		`"payment":{"card_number":"4242424242424242","exp_month":12,"exp_year":2030,"cvc":"123"}}}`
	if resp := post("", body); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("no key: %d, want 400", resp.StatusCode)
	}
	if resp := post("k1", `{"customer":{},"extra":1}`); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("unknown field: %d, want 400", resp.StatusCode)
	}
	if resp := post("k1", body); resp.StatusCode != http.StatusCreated {
		t.Errorf("place: %d, want 201", resp.StatusCode)
	}
	if resp := post("k1", body); resp.StatusCode != http.StatusCreated {
		t.Errorf("replay: %d, want 201", resp.StatusCode)
	}

	entered, release := make(chan struct{}), make(chan struct{})
	w.carts.carts[owner] = []cart.Item{{ProductID: "prd_widget", Name: "Widget", Quantity: 1}}
	w.pay.mu.Lock()
	w.pay.hook = func() { close(entered); <-release }
	w.pay.mu.Unlock()
	finished := make(chan int, 1)
	go func() { finished <- post("k2", body).StatusCode }()
	<-entered
	if resp := post("k2", body); resp.StatusCode != http.StatusAccepted {
		t.Errorf("in progress: %d, want 202", resp.StatusCode)
	}
	close(release)
	if code := <-finished; code != http.StatusCreated {
		t.Errorf("first request: %d, want 201", code)
	}
}

// TestRequestHashKeepsNoCardSecrets: the request hash is stored with the
// attempt. Whoever reads the checkout database knows the address (from the
// order) and could try every CVC: the hash must not be a plain hash of the
// card's details.
func TestRequestHashKeepsNoCardSecrets(t *testing.T) {
	r := request(cardOK)
	stored := checkout.RequestHash(r)
	for cvc := 0; cvc < 1000; cvc++ {
		guess := r
		guess.Payment.CVC = fmt.Sprintf("%03d", cvc)
		b, err := json.Marshal(guess)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		if hex.EncodeToString(sum[:]) == stored {
			t.Fatalf("the stored request hash gives away the card number and CVC %s", guess.Payment.CVC)
		}
	}
	// It still tells requests apart.
	for name, mutate := range map[string]func(r *checkout.Request){
		"another card":    func(r *checkout.Request) { r.Payment.Number = cardDeclined },
		"another expiry":  func(r *checkout.Request) { r.Payment.ExpYear++ },
		"another address": func(r *checkout.Request) { r.ShippingAddress.Line1 = "13 Analytical St" },
	} {
		other := request(cardOK)
		mutate(&other)
		if checkout.RequestHash(other) == stored {
			t.Errorf("%s: same hash as the original request", name)
		}
	}
}

// testRetryAfterOutage: a checkout that failed because a service was down,
// and undid everything, runs again under the same key once the service is
// back, instead of replaying "try again" forever.
func testRetryAfterOutage(t *testing.T, w *world) {
	ctx := context.Background()
	w.ship.inject("CreateShipment", errs.E(errs.Unavailable, errs.Msg("shipping service is unavailable")), 4, false)
	_, err := w.api.PlaceOrder(ctx, customer, "key-1", request(cardOK))
	wantKind(t, err, errs.Unavailable)
	first := w.assertRolledBack(t, payment.StatusVoided)
	res, err := w.api.PlaceOrder(ctx, customer, "key-1", request(cardOK))
	if err != nil {
		t.Fatalf("retry once shipping is back: %v", err)
	}
	if !res.Done || res.Order.Status != order.StatusConfirmed || res.Order.ID == first.ID {
		t.Fatalf("retry = %+v, want a new confirmed order (first was %s)", res, first.ID)
	}
	again, err := w.api.PlaceOrder(ctx, customer, "key-1", request(cardOK))
	if err != nil || again.Order.ID != res.Order.ID {
		t.Fatalf("third call = %+v, %v; want the confirmed order %s", again, err, res.Order.ID)
	}
	statuses := map[string]int{}
	for _, o := range w.ordersOf(t) {
		statuses[o.Status]++
	}
	if statuses[order.StatusConfirmed] != 1 || statuses[order.StatusCancelled] != 1 || len(statuses) != 2 {
		t.Errorf("orders by status = %v, want one cancelled and one confirmed", statuses)
	}
	if n := w.pay.count("Authorize"); n != 2 {
		t.Errorf("Authorize called %d times, want 2 (one per run)", n)
	}
}

// testNoRetryAfterIncompleteRollback: when undoing failed half-way, the key
// keeps answering with the stored error and nothing runs again.
func testNoRetryAfterIncompleteRollback(t *testing.T, w *world) {
	ctx := context.Background()
	w.ship.inject("CreateShipment", errs.E(errs.Unavailable, errs.Msg("shipping service is unavailable")), -1, false)
	w.pay.inject("Void", errs.E(errs.Other, fmt.Errorf("processor exploded")), -1, false)
	_, err := w.api.PlaceOrder(ctx, customer, "key-1", request(cardOK))
	wantKind(t, err, errs.Unavailable)
	n := w.pay.count("Authorize")
	_, err = w.api.PlaceOrder(ctx, customer, "key-1", request(cardOK))
	wantKind(t, err, errs.Unavailable)
	if got := w.pay.count("Authorize"); got != n {
		t.Errorf("Authorize called again (%d, was %d): a half-undone checkout ran again", got, n)
	}
	w.onlyOrder(t)
}
