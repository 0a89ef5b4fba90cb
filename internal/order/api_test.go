package order_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/order"
	"github.com/globomantics/globomantics/internal/order/orderdb"
	"github.com/globomantics/globomantics/internal/platform/bus"
	"github.com/globomantics/globomantics/internal/platform/clock"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/httpx"
	"github.com/globomantics/globomantics/internal/platform/money"
	"github.com/globomantics/globomantics/internal/platform/outbox"
	"github.com/globomantics/globomantics/internal/platform/page"
	"github.com/globomantics/globomantics/internal/platform/shard"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
	"github.com/globomantics/globomantics/internal/platform/testenv"
	"github.com/globomantics/globomantics/internal/shipping"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// env is one instance of the order service under test.
type env struct {
	api   order.API
	db    *sqldb.DB
	clk   *clock.Fake
	kicks *atomic.Int32
}

func newService(t *testing.T) (*order.Service, env) {
	t.Helper()
	db := testenv.SQLite(t)
	store, err := orderdb.Open(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	e := env{db: db, clk: clock.NewFake(time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)), kicks: new(atomic.Int32)}
	svc := order.NewService(store, func() { e.kicks.Add(1) }, e.clk)
	e.api = svc
	return svc, e
}

// TestAPI runs the contract suite against the service and against the HTTP
// client talking to the service's handler.
func TestAPI(t *testing.T) {
	setups := map[string]func(t *testing.T) env{
		"service": func(t *testing.T) env { _, e := newService(t); return e },
		"http": func(t *testing.T) env {
			svc, e := newService(t)
			srv := httptest.NewServer(order.NewHandler(svc))
			t.Cleanup(srv.Close)
			e.api = order.NewClient(httpx.NewClient("order", []string{srv.URL}, nil))
			return e
		},
	}
	for name, setup := range setups {
		t.Run(name, func(t *testing.T) {
			for _, tc := range contract {
				t.Run(tc.name, func(t *testing.T) { tc.fn(t, setup(t)) })
			}
		})
	}
}

var contract = []struct {
	name string
	fn   func(t *testing.T, e env)
}{
	{"CreateComputesTotals", testCreateComputesTotals},
	{"CreateIsIdempotent", testCreateIsIdempotent},
	{"CreateRejectsBadInput", testCreateRejectsBadInput},
	{"CreateCountsNameCharacters", testCreateCountsNameCharacters},
	{"GetUnknown", testGetUnknown},
	{"GetByNumber", testGetByNumber},
	{"ListNewestFirstPaged", testListNewestFirstPaged},
	{"SetPayment", testSetPayment},
	{"Confirm", testConfirm},
	{"ConfirmRejectsBadInput", testConfirmRejectsBadInput},
	{"Cancel", testCancel},
	{"CancelBeforeCreate", testCancelBeforeCreate},
	{"CancelRacesCreate", testCancelRacesCreate},
}

var addr = shipping.Address{Name: "Ada Lovelace", Line1: "12 Analytical St", City: "London", PostalCode: "N1 9GU", Country: "GB"}

func newOrder(id, user string) order.NewOrder {
	return order.NewOrder{
		ID: id, UserID: user, Email: user + "@example.com",
		Items: []order.Item{
			{ProductID: "prd_a", Name: "Widget", Quantity: 2, UnitPrice: money.USD(1250)},
			{ProductID: "prd_b", Name: "Gadget — deluxe", Quantity: 1, UnitPrice: money.USD(999)},
		},
		ShippingCost:    money.USD(500),
		ShippingAddress: addr,
	}
}

func wantKind(t *testing.T, err error, k errs.Kind) {
	t.Helper()
	if !errs.Is(k, err) {
		t.Fatalf("got error %v (kind %v), want kind %v", err, errs.KindOf(err), k)
	}
}

func mustCreate(t *testing.T, e env, n order.NewOrder) order.Order {
	t.Helper()
	o, err := e.api.CreateOrder(context.Background(), n)
	if err != nil {
		t.Fatalf("CreateOrder(%s): %v", n.ID, err)
	}
	return o
}

func outboxRows(t *testing.T, db *sqldb.DB) []string {
	t.Helper()
	rows, err := db.QueryContext(context.Background(), `SELECT subject, seq_id FROM outbox ORDER BY seq_id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s, id string
		if err := rows.Scan(&s, &id); err != nil {
			t.Fatal(err)
		}
		out = append(out, s+" "+id)
	}
	return out
}

func testCreateComputesTotals(t *testing.T, e env) {
	o := mustCreate(t, e, newOrder("ord_1", "usr_1"))
	if o.Status != order.StatusPending {
		t.Errorf("status = %q, want pending", o.Status)
	}
	if o.Items[0].LineTotal != money.USD(2500) || o.Items[1].LineTotal != money.USD(999) {
		t.Errorf("line totals = %v, %v", o.Items[0].LineTotal, o.Items[1].LineTotal)
	}
	if o.Subtotal != money.USD(3499) || o.ShippingCost != money.USD(500) || o.Total != money.USD(3999) {
		t.Errorf("subtotal %v shipping %v total %v", o.Subtotal, o.ShippingCost, o.Total)
	}
	if !o.CreatedAt.Equal(e.clk.Now()) || !o.UpdatedAt.Equal(e.clk.Now()) {
		t.Errorf("created %v updated %v, want %v", o.CreatedAt, o.UpdatedAt, e.clk.Now())
	}
	if o.ShippingAddress != addr || o.Email != "usr_1@example.com" || o.UserID != "usr_1" {
		t.Errorf("order = %+v", o)
	}
	got, err := e.api.GetOrder(context.Background(), "ord_1")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, o) {
		t.Errorf("GetOrder = %+v\nwant %+v", got, o)
	}
	if e.kicks.Load() != 0 || len(outboxRows(t, e.db)) != 0 {
		t.Errorf("creating wrote to the outbox")
	}
}

func testCreateIsIdempotent(t *testing.T, e env) {
	ctx := context.Background()
	first := mustCreate(t, e, newOrder("ord_1", "usr_1"))
	e.clk.Advance(time.Minute)
	second := mustCreate(t, e, newOrder("ord_1", "usr_1"))
	if !reflect.DeepEqual(first, second) {
		t.Errorf("repeat returned %+v\nwant the first %+v", second, first)
	}
	// A repeat that is not the same order is refused, and changes nothing.
	fewer := newOrder("ord_1", "usr_1")
	fewer.Items = fewer.Items[:1]
	dearer := newOrder("ord_1", "usr_1")
	dearer.Items[0].UnitPrice = money.USD(1300)
	shipping := newOrder("ord_1", "usr_1")
	shipping.ShippingCost = money.USD(0)
	other := newOrder("ord_1", "usr_2")
	for name, n := range map[string]order.NewOrder{"fewer items": fewer, "other price": dearer, "other shipping": shipping, "other user": other} {
		_, err := e.api.CreateOrder(ctx, n)
		if !errs.Is(errs.Conflict, err) {
			t.Errorf("repeat with %s: %v, want Conflict", name, err)
		}
	}
	// The same holds once the order is cancelled: the same request returns
	// it (cancelled), another is refused.
	if _, err := e.api.Cancel(ctx, "ord_1", "gave up", order.PaymentInfo{}); err != nil {
		t.Fatal(err)
	}
	if o, err := e.api.CreateOrder(ctx, newOrder("ord_1", "usr_1")); err != nil || o.Status != order.StatusCancelled {
		t.Errorf("repeat of a cancelled order = %+v, %v; want it, cancelled", o, err)
	}
	if _, err := e.api.CreateOrder(ctx, fewer); !errs.Is(errs.Conflict, err) {
		t.Errorf("other repeat of a cancelled order = %v, want Conflict", err)
	}
	pg, err := e.api.ListOrders(context.Background(), "usr_1", page.Request{Size: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(pg.Items) != 1 {
		t.Errorf("%d orders after a repeated create, want 1", len(pg.Items))
	}
}

func testCreateRejectsBadInput(t *testing.T, e env) {
	ctx := context.Background()
	cases := map[string]func(n *order.NewOrder){
		"no id":         func(n *order.NewOrder) { n.ID = "" },
		"bad id":        func(n *order.NewOrder) { n.ID = "../etc" },
		"no user":       func(n *order.NewOrder) { n.UserID = " " },
		"no email":      func(n *order.NewOrder) { n.Email = "" },
		"bad email":     func(n *order.NewOrder) { n.Email = "not an address" },
		"no items":      func(n *order.NewOrder) { n.Items = nil },
		"zero quantity": func(n *order.NewOrder) { n.Items[1].Quantity = 0 },
		"negative":      func(n *order.NewOrder) { n.Items[0].UnitPrice = money.USD(-1) },
		"currency":      func(n *order.NewOrder) { n.ShippingCost = money.Money{Amount: 1, Currency: "EUR"} },
		"no product":    func(n *order.NewOrder) { n.Items[0].ProductID = "" },
		"duplicate":     func(n *order.NewOrder) { n.Items[1].ProductID = n.Items[0].ProductID },
	}
	for name, mutate := range cases {
		n := newOrder("ord_bad", "usr_1")
		mutate(&n)
		_, err := e.api.CreateOrder(ctx, n)
		if !errs.Is(errs.Invalid, err) {
			t.Errorf("%s: got %v, want Invalid", name, err)
		}
	}
	_, err := e.api.GetOrder(ctx, "ord_bad")
	wantKind(t, err, errs.NotFound)
	pg, err := e.api.ListOrders(ctx, "usr_1", page.Request{})
	if err != nil || len(pg.Items) != 0 {
		t.Errorf("ListOrders after rejected creates = %+v, %v", pg, err)
	}
}

// testCreateCountsNameCharacters: the catalog accepts product names of up
// to 200 characters, so an order must take such a name even when its
// characters take more than one byte each; otherwise the product cannot be
// bought at all.
func testCreateCountsNameCharacters(t *testing.T, e env) {
	n := newOrder("ord_1", "usr_1")
	n.Items[0].Name = strings.Repeat("é", order.MaxNameLen) // 200 characters, 400 bytes
	o := mustCreate(t, e, n)
	if o.Items[0].Name != n.Items[0].Name {
		t.Errorf("stored name %q", o.Items[0].Name)
	}
	n = newOrder("ord_2", "usr_1")
	n.Items[0].Name = strings.Repeat("é", order.MaxNameLen+1)
	_, err := e.api.CreateOrder(context.Background(), n)
	wantKind(t, err, errs.Invalid)
}

func testGetUnknown(t *testing.T, e env) {
	for _, id := range []string{"ord_nope", "", "a/b"} {
		_, err := e.api.GetOrder(context.Background(), id)
		if !errs.Is(errs.NotFound, err) {
			t.Errorf("GetOrder(%q) = %v, want NotFound", id, err)
		}
	}
}

func testListNewestFirstPaged(t *testing.T, e env) {
	ctx := context.Background()
	var want []string
	for i := range 5 {
		id := fmt.Sprintf("ord_%d", i)
		mustCreate(t, e, newOrder(id, "usr_1"))
		want = append([]string{id}, want...)
		e.clk.Advance(time.Second)
	}
	mustCreate(t, e, newOrder("ord_other", "usr_2"))
	var got []string
	p := page.Request{Size: 2}
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("paging does not end")
		}
		pg, err := e.api.ListOrders(ctx, "usr_1", p)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range pg.Items {
			if len(o.Items) != 2 {
				t.Errorf("order %s has %d items, want 2", o.ID, len(o.Items))
			}
			got = append(got, o.ID)
		}
		if pg.NextPageToken == "" {
			break
		}
		if p, err = page.Parse("2", pg.NextPageToken); err != nil {
			t.Fatal(err)
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("orders = %v, want %v", got, want)
	}
	pg, err := e.api.ListOrders(ctx, "usr_nobody", page.Request{})
	if err != nil || len(pg.Items) != 0 || pg.NextPageToken != "" {
		t.Errorf("unknown user: %+v, %v", pg, err)
	}
	_, err = e.api.ListOrders(ctx, "", page.Request{})
	wantKind(t, err, errs.Invalid)
}

func testSetPayment(t *testing.T, e env) {
	ctx := context.Background()
	mustCreate(t, e, newOrder("ord_1", "usr_1"))
	e.clk.Advance(time.Second)
	p := order.PaymentInfo{ID: "pay_1", Status: "authorized"}
	o, err := e.api.SetPayment(ctx, "ord_1", p)
	if err != nil {
		t.Fatal(err)
	}
	if o.Payment != p || o.Status != order.StatusPending || !o.UpdatedAt.Equal(e.clk.Now()) {
		t.Errorf("after SetPayment: %+v", o)
	}
	_, err = e.api.SetPayment(ctx, "ord_1", order.PaymentInfo{ID: "pay_1", Status: "stolen"})
	wantKind(t, err, errs.Invalid)
	_, err = e.api.SetPayment(ctx, "ord_nope", p)
	wantKind(t, err, errs.NotFound)
	got, _ := e.api.GetOrder(ctx, "ord_1")
	if got.Payment != p {
		t.Errorf("payment = %+v, want %+v", got.Payment, p)
	}
}

func testConfirm(t *testing.T, e env) {
	ctx := context.Background()
	mustCreate(t, e, newOrder("ord_1", "usr_1"))
	e.clk.Advance(time.Second)
	p := order.PaymentInfo{ID: "pay_1", Status: "captured"}
	s := order.ShipmentInfo{ID: "shp_1", Status: "created", TrackingNumber: "1Z999"}
	o, err := e.api.Confirm(ctx, "ord_1", p, s)
	if err != nil {
		t.Fatal(err)
	}
	if o.Status != order.StatusConfirmed || o.Payment != p || o.Shipment != s || !o.UpdatedAt.Equal(e.clk.Now()) {
		t.Errorf("after Confirm: %+v", o)
	}
	if n := e.kicks.Load(); n != 1 {
		t.Errorf("kicked %d times, want 1", n)
	}
	e.clk.Advance(time.Second)
	again, err := e.api.Confirm(ctx, "ord_1", p, s)
	if err != nil {
		t.Fatalf("confirming twice: %v", err)
	}
	if !reflect.DeepEqual(again, o) {
		t.Errorf("second Confirm changed the order: %+v", again)
	}
	if rows := outboxRows(t, e.db); !reflect.DeepEqual(rows, []string{order.SubjectOrderPlaced + " ord_1",
		order.SubjectEmailRequested + " " + order.EmailJobID("ord_1", order.EmailOrderConfirmation)}) {
		t.Errorf("outbox = %v, want one OrderPlaced and its confirmation e-mail job", rows)
	}
	if n := e.kicks.Load(); n != 1 {
		t.Errorf("kicked %d times, want 1", n)
	}
	_, err = e.api.Cancel(ctx, "ord_1", "changed my mind", order.PaymentInfo{})
	wantKind(t, err, errs.Conflict)
	_, err = e.api.Confirm(ctx, "ord_nope", p, s)
	wantKind(t, err, errs.NotFound)

	mustCreate(t, e, newOrder("ord_2", "usr_1"))
	if _, err := e.api.Cancel(ctx, "ord_2", "out of stock", order.PaymentInfo{}); err != nil {
		t.Fatal(err)
	}
	_, err = e.api.Confirm(ctx, "ord_2", p, s)
	wantKind(t, err, errs.Conflict)
	if got, _ := e.api.GetOrder(ctx, "ord_2"); got.Status != order.StatusCancelled {
		t.Errorf("a rejected Confirm changed the status to %q", got.Status)
	}
	want := []string{order.SubjectOrderPlaced + " ord_1", order.SubjectEmailRequested + " " + order.EmailJobID("ord_1", order.EmailOrderConfirmation),
		order.SubjectOrderCancelled + " " + order.CancelledEventID("ord_2"), order.SubjectEmailRequested + " " + order.EmailJobID("ord_2", order.EmailOrderCancellation)}
	if rows := outboxRows(t, e.db); !reflect.DeepEqual(rows, want) {
		t.Errorf("outbox = %v, want %v (ord_1 placed, ord_2 cancelled, nothing for the refused Confirm)", rows, want)
	}
}

func testConfirmRejectsBadInput(t *testing.T, e env) {
	ctx := context.Background()
	created := mustCreate(t, e, newOrder("ord_1", "usr_1"))
	s := order.ShipmentInfo{ID: "shp_1", Status: "created"}
	for name, call := range map[string]func() error{
		"declined payment": func() error {
			_, err := e.api.Confirm(ctx, "ord_1", order.PaymentInfo{ID: "pay_1", Status: "declined"}, s)
			return err
		},
		"no payment": func() error { _, err := e.api.Confirm(ctx, "ord_1", order.PaymentInfo{}, s); return err },
		"no shipment": func() error {
			_, err := e.api.Confirm(ctx, "ord_1", order.PaymentInfo{ID: "pay_1", Status: "captured"}, order.ShipmentInfo{})
			return err
		},
	} {
		if err := call(); !errs.Is(errs.Invalid, err) {
			t.Errorf("%s: got %v, want Invalid", name, err)
		}
	}
	got, _ := e.api.GetOrder(ctx, "ord_1")
	if !reflect.DeepEqual(got, created) {
		t.Errorf("rejected Confirms changed the order: %+v", got)
	}
	if len(outboxRows(t, e.db)) != 0 || e.kicks.Load() != 0 {
		t.Errorf("rejected Confirms wrote to the outbox")
	}
}

func testCancel(t *testing.T, e env) {
	ctx := context.Background()
	mustCreate(t, e, newOrder("ord_1", "usr_1"))
	_, err := e.api.Cancel(ctx, "ord_1", "  ", order.PaymentInfo{})
	wantKind(t, err, errs.Invalid)
	e.clk.Advance(time.Second)
	p := order.PaymentInfo{Status: "declined"}
	o, err := e.api.Cancel(ctx, "ord_1", "payment declined", p)
	if err != nil {
		t.Fatal(err)
	}
	if o.Status != order.StatusCancelled || o.CancelReason != "payment declined" || o.Payment != p {
		t.Errorf("after Cancel: %+v", o)
	}
	again, err := e.api.Cancel(ctx, "ord_1", "another reason", order.PaymentInfo{Status: "voided"})
	if err != nil {
		t.Fatalf("cancelling twice: %v", err)
	}
	if !reflect.DeepEqual(again, o) {
		t.Errorf("second Cancel changed the order: %+v", again)
	}
	_, err = e.api.Cancel(ctx, "ord_nope", "reason", p)
	wantKind(t, err, errs.NotFound)
	// One OrderCancelled (and its e-mail job) for the one cancellation: not
	// for the repeat, nor for the id with no order, nor for the refused
	// empty reason.
	if rows, want := outboxRows(t, e.db), []string{order.SubjectOrderCancelled + " " + order.CancelledEventID("ord_1"),
		order.SubjectEmailRequested + " " + order.EmailJobID("ord_1", order.EmailOrderCancellation)}; !reflect.DeepEqual(rows, want) {
		t.Errorf("outbox = %v, want %v", rows, want)
	}
	if n := e.kicks.Load(); n != 1 {
		t.Errorf("kicked %d times, want 1", n)
	}
	var payload, jobPayload string
	if err := e.db.QueryRowContext(ctx, `SELECT payload FROM outbox WHERE subject = ?`, order.SubjectOrderCancelled).Scan(&payload); err != nil {
		t.Fatal(err)
	}
	var ev order.OrderCancelled
	if err := json.Unmarshal([]byte(payload), &ev); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(ev.Order, o) {
		t.Errorf("OrderCancelled carries %+v\nwant the order as cancelled %+v", ev.Order, o)
	}
	// The e-mail job carries what the mail worker renders: the same order.
	if err := e.db.QueryRowContext(ctx, `SELECT payload FROM outbox WHERE subject = ?`, order.SubjectEmailRequested).Scan(&jobPayload); err != nil {
		t.Fatal(err)
	}
	var job order.EmailRequested
	if err := json.Unmarshal([]byte(jobPayload), &job); err != nil {
		t.Fatal(err)
	}
	if job.Kind != order.EmailOrderCancellation || job.OrderID != "ord_1" || job.To != o.Email || !reflect.DeepEqual(job.Order, o) || !job.RequestedAt.Equal(o.UpdatedAt) {
		t.Errorf("EmailRequested = %+v\nwant a cancellation to %s carrying %+v", job, o.Email, o)
	}
}

func testCancelBeforeCreate(t *testing.T, e env) {
	ctx := context.Background()
	for range 2 { // NotFound, as before, and recorded once
		_, err := e.api.Cancel(ctx, "ord_1", "checkout gave up", order.PaymentInfo{})
		wantKind(t, err, errs.NotFound)
	}
	// The late create is refused and creates nothing.
	_, err := e.api.CreateOrder(ctx, newOrder("ord_1", "usr_1"))
	wantKind(t, err, errs.Conflict)
	_, err = e.api.GetOrder(ctx, "ord_1")
	wantKind(t, err, errs.NotFound)
	pg, err := e.api.ListOrders(ctx, "usr_1", page.Request{Size: 10})
	if err != nil || len(pg.Items) != 0 {
		t.Fatalf("ListOrders = %+v, %v; want none", pg.Items, err)
	}
	for _, call := range []func() error{
		func() error {
			_, err := e.api.SetPayment(ctx, "ord_1", order.PaymentInfo{ID: "pay_1", Status: "authorized"})
			return err
		},
		func() error {
			_, err := e.api.Confirm(ctx, "ord_1", order.PaymentInfo{ID: "pay_1", Status: "captured"}, order.ShipmentInfo{ID: "shp_1", Status: "created", TrackingNumber: "GLB1"})
			return err
		},
	} {
		wantKind(t, call(), errs.NotFound)
	}
	var n int
	if err := e.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM order_items`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("order_items has %d rows, %v; want 0", n, err)
	}
	// Other ids are unaffected.
	mustCreate(t, e, newOrder("ord_2", "usr_1"))
	if e.kicks.Load() != 0 || len(outboxRows(t, e.db)) != 0 {
		t.Errorf("cancel before create wrote to the outbox")
	}
}

// testCancelRacesCreate: a create and a cancel of the same id at once end
// either with the create refused and no order, or with the order cancelled.
func testCancelRacesCreate(t *testing.T, e env) {
	ctx := context.Background()
	const n = 10
	var wg sync.WaitGroup
	createErr := make([]error, n)
	cancelErr := make([]error, n)
	for i := range n {
		id := fmt.Sprintf("ord_race_%d", i)
		wg.Add(2)
		go func() {
			defer wg.Done()
			_, createErr[i] = e.api.CreateOrder(ctx, newOrder(id, "usr_1"))
		}()
		go func() {
			defer wg.Done()
			_, cancelErr[i] = e.api.Cancel(ctx, id, "checkout gave up", order.PaymentInfo{})
		}()
	}
	wg.Wait()
	for i := range n {
		id := fmt.Sprintf("ord_race_%d", i)
		o, err := e.api.GetOrder(ctx, id)
		switch {
		case createErr[i] == nil:
			if err != nil || o.Status != order.StatusCancelled || cancelErr[i] != nil {
				t.Errorf("%s: created; cancel %v; now %+v, %v; want it cancelled", id, cancelErr[i], o.Status, err)
			}
		case errs.Is(errs.Conflict, createErr[i]):
			if !errs.Is(errs.NotFound, err) || !errs.Is(errs.NotFound, cancelErr[i]) {
				t.Errorf("%s: create refused; cancel %v; get %v; want both NotFound", id, cancelErr[i], err)
			}
		default:
			t.Errorf("%s: CreateOrder: %v", id, createErr[i])
		}
	}
}

// TestHTTPRejectsMismatchedID checks the create endpoint refuses a body whose
// id is not the one in the URL, writing nothing.
func TestHTTPRejectsMismatchedID(t *testing.T) {
	svc, e := newService(t)
	srv := httptest.NewServer(order.NewHandler(svc))
	defer srv.Close()
	c := httpx.NewClient("order", []string{srv.URL}, nil)
	var o order.Order
	err := c.Call(context.Background(), http.MethodPut, "/svc/order/v1/orders/ord_a", newOrder("ord_b", "usr_1"), &o)
	wantKind(t, err, errs.BadRequest)
	for _, id := range []string{"ord_a", "ord_b"} {
		_, err := e.api.GetOrder(context.Background(), id)
		wantKind(t, err, errs.NotFound)
	}
	err = c.Call(context.Background(), http.MethodGet, "/svc/order/v1/orders?user_id=u&page_size=1000", nil, nil)
	wantKind(t, err, errs.BadRequest)
}

// TestConcurrentConfirmWritesOneEvent confirms one order from many
// goroutines: exactly one OrderPlaced reaches the outbox.
func TestConcurrentConfirmWritesOneEvent(t *testing.T) {
	svc, e := newService(t)
	mustCreate(t, e, newOrder("ord_1", "usr_1"))
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := svc.Confirm(context.Background(), "ord_1",
				order.PaymentInfo{ID: "pay_1", Status: "captured"}, order.ShipmentInfo{ID: "shp_1"}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if rows := outboxRows(t, e.db); len(rows) != 2 {
		t.Errorf("outbox = %v, want one OrderPlaced and its e-mail job", rows)
	}
	if n := e.kicks.Load(); n != 1 {
		t.Errorf("kicked %d times, want 1", n)
	}
}

// TestConfirmPublishesOrderPlaced runs the outbox relay against a real
// broker: a confirmed order is delivered once as OrderPlaced with its items.
func TestConfirmPublishesOrderPlaced(t *testing.T) {
	b := testenv.Bus(t)
	svc, e := newService(t)
	relay := outbox.NewRelay(e.db, b, testenv.Logger(t))
	var (
		mu  sync.Mutex
		got []order.OrderPlaced
	)
	err := b.Subscribe(context.Background(), "order-test", []string{order.SubjectOrderPlaced}, func(ctx context.Context, ev bus.Event) error {
		var p order.OrderPlaced
		if err := json.Unmarshal(ev.Data, &p); err != nil {
			return err
		}
		mu.Lock()
		got = append(got, p)
		mu.Unlock()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	mustCreate(t, e, newOrder("ord_1", "usr_1"))
	confirmed, err := svc.Confirm(context.Background(), "ord_1", order.PaymentInfo{ID: "pay_1", Status: "captured"},
		order.ShipmentInfo{ID: "shp_1", Status: "created", TrackingNumber: "1Z"})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // a second flush finds nothing left to publish
		if _, err := relay.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	testenv.CheckFor(t, 10*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(got) != 1 {
			return fmt.Errorf("%d events delivered", len(got))
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	if !reflect.DeepEqual(got[0].Order, confirmed) {
		t.Errorf("event order = %+v\nwant %+v", got[0].Order, confirmed)
	}
	if rows := outboxRows(t, e.db); len(rows) != 0 {
		t.Errorf("outbox still holds %v after the relay published", rows)
	}
}

// TestCancelPublishesOrderCancelled runs the outbox relay against a real
// broker: a cancelled order is delivered once as OrderCancelled, with its
// reason and the payment's final status, and a second Cancel publishes
// nothing more.
func TestCancelPublishesOrderCancelled(t *testing.T) {
	b := testenv.Bus(t)
	svc, e := newService(t)
	relay := outbox.NewRelay(e.db, b, testenv.Logger(t))
	var (
		mu  sync.Mutex
		got []bus.Event
	)
	err := b.Subscribe(context.Background(), "order-cancel-test", []string{order.SubjectOrderCancelled}, func(ctx context.Context, ev bus.Event) error {
		mu.Lock()
		got = append(got, ev)
		mu.Unlock()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	mustCreate(t, e, newOrder("ord_1", "usr_1"))
	e.clk.Advance(time.Minute)
	cancelled, err := svc.Cancel(ctx, "ord_1", "payment declined", order.PaymentInfo{ID: "pay_1", Status: "voided"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Cancel(ctx, "ord_1", "again", order.PaymentInfo{}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := relay.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	testenv.CheckFor(t, 10*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(got) != 1 {
			return fmt.Errorf("%d events delivered", len(got))
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	var ev order.OrderCancelled
	if err := got[0].Decode(&ev); err != nil {
		t.Fatal(err)
	}
	if got[0].ID != order.CancelledEventID("ord_1") || !got[0].Time.Equal(cancelled.UpdatedAt) {
		t.Errorf("event id %q time %v, want %q at %v", got[0].ID, got[0].Time, order.CancelledEventID("ord_1"), cancelled.UpdatedAt)
	}
	if !reflect.DeepEqual(ev.Order, cancelled) || ev.Order.CancelReason != "payment declined" || ev.Order.Payment.Status != "voided" {
		t.Errorf("event order = %+v\nwant %+v", ev.Order, cancelled)
	}
}

func testGetByNumber(t *testing.T, e env) {
	ctx := context.Background()
	o := mustCreate(t, e, newOrder("ord_n1", "usr_1"))
	if n, sh, ok := order.ParseNumber(o.Number); !ok || n != o.Number || sh != shard.ForUser("usr_1") {
		t.Fatalf("order number %q: not a number of the user's shard", o.Number)
	}
	// The customer's way of typing it finds the order too.
	for _, n := range []string{o.Number, strings.ToLower(o.Number), strings.ReplaceAll(o.Number, "-", "")} {
		got, err := e.api.GetOrder(ctx, n)
		if err != nil || got.ID != o.ID || got.Number != o.Number {
			t.Fatalf("GetOrder(%s) = %s %s, %v; want %s", n, got.ID, got.Number, err, o.ID)
		}
	}
	// A repeat of the create answers with the number first given.
	if again := mustCreate(t, e, newOrder("ord_n1", "usr_1")); again.Number != o.Number {
		t.Fatalf("repeat CreateOrder: number %s, want %s", again.Number, o.Number)
	}
	_, err := e.api.GetOrder(ctx, order.NewNumber(shard.ForUser("usr_1")))
	wantKind(t, err, errs.NotFound)
}
