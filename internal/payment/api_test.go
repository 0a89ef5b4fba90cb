package payment_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/payment"
	"github.com/globomantics/globomantics/internal/payment/paymentdb"
	"github.com/globomantics/globomantics/internal/platform/clock"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/httpx"
	"github.com/globomantics/globomantics/internal/platform/money"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// fixture is the API under test (the service, or a client of it over HTTP)
// with the store and clock behind it.
type fixture struct {
	api   payment.API
	store *paymentdb.Store
	db    *sqldb.DB
	clk   *clock.Fake
	url   string // the HTTP server's URL, in http mode
}

var now0 = time.Date(2030, 3, 15, 9, 0, 0, 0, time.UTC)

func newFixture(t *testing.T, overHTTP bool) fixture {
	t.Helper()
	db := testenv.SQLite(t)
	st, err := paymentdb.Open(context.Background(), db)
	if err != nil {
		t.Fatal(err)
	}
	f := fixture{store: st, db: db, clk: clock.NewFake(now0)}
	svc := payment.NewService(st, f.clk)
	f.api = svc
	if overHTTP {
		srv := httptest.NewServer(payment.NewHandler(svc))
		t.Cleanup(srv.Close)
		f.url = srv.URL
		f.api = payment.NewClient(httpx.NewClient("payment", []string{srv.URL}, nil))
	}
	return f
}

// TestAPI runs the contract suite against *Service and against *Client over
// HTTP.
func TestAPI(t *testing.T) {
	for _, mode := range []struct {
		name     string
		overHTTP bool
	}{{"service", false}, {"http", true}} {
		t.Run(mode.name, func(t *testing.T) {
			mk := func(t *testing.T) fixture { return newFixture(t, mode.overHTTP) }
			t.Run("authorize", func(t *testing.T) { testAuthorize(t, mk(t)) })
			t.Run("decline is kept", func(t *testing.T) { testDecline(t, mk(t)) })
			t.Run("transient failure records nothing", func(t *testing.T) { testTransient(t, mk(t)) })
			t.Run("invalid requests change nothing", func(t *testing.T) { testInvalid(t, mk(t)) })
			t.Run("capture and refund", func(t *testing.T) { testCaptureRefund(t, mk(t)) })
			t.Run("void", func(t *testing.T) { testVoid(t, mk(t)) })
			t.Run("unknown payment", func(t *testing.T) { testUnknown(t, mk(t)) })
			t.Run("concurrent authorizations", func(t *testing.T) { testConcurrent(t, mk(t)) })
			t.Run("payment for order", func(t *testing.T) { testPaymentForOrder(t, mk(t)) })
			t.Run("void for order", func(t *testing.T) { testVoidForOrder(t, mk(t)) })
			t.Run("audit", func(t *testing.T) { testAudit(t, mk(t)) })
		})
	}
}

func card(number string) payment.Card {
	return payment.Card{Number: number, ExpMonth: 12, ExpYear: 2031, CVC: "123"}
}

func req(orderID string, cents int64, c payment.Card) payment.AuthorizeRequest {
	return payment.AuthorizeRequest{OrderID: orderID, Amount: money.USD(cents), Card: c}
}

func mustAuthorize(t *testing.T, api payment.API, r payment.AuthorizeRequest) payment.Payment {
	t.Helper()
	p, err := api.Authorize(context.Background(), r)
	if err != nil {
		t.Fatalf("Authorize(%s): %v", r.OrderID, err)
	}
	return p
}

func wantKind(t *testing.T, what string, err error, k errs.Kind, detail string) {
	t.Helper()
	if !errs.Is(k, err) {
		t.Errorf("%s: err = %v (%v), want %v", what, err, errs.KindOf(err), k)
		return
	}
	if detail != "" && errs.Detail(err) != detail {
		t.Errorf("%s: detail = %q, want %q", what, errs.Detail(err), detail)
	}
}

func testAuthorize(t *testing.T, f fixture) {
	ctx := context.Background()
	p := mustAuthorize(t, f.api, req("ord_1", 2599, card("4242 4242 4242 4242")))
	if !strings.HasPrefix(p.ID, "pay_") || p.OrderID != "ord_1" || p.Amount != money.USD(2599) ||
		p.Status != payment.StatusAuthorized || p.CardLast4 != "4242" || !p.CreatedAt.Equal(now0) || !p.UpdatedAt.Equal(now0) {
		t.Errorf("Authorize = %+v", p)
	}
	got, err := f.api.GetPayment(ctx, p.ID)
	if err != nil || got != p {
		t.Errorf("GetPayment = %+v, %v; want %+v", got, err, p)
	}

	// A repeat for the order returns the same authorization.
	f.clk.Advance(time.Minute)
	again := mustAuthorize(t, f.api, req("ord_1", 2599, card(payment.TestCardOK)))
	if again != p {
		t.Errorf("repeat Authorize = %+v, want %+v", again, p)
	}
	// ...but not for another amount or card.
	_, err = f.api.Authorize(ctx, req("ord_1", 9999, card(payment.TestCardOK)))
	wantKind(t, "repeat with another amount", err, errs.Conflict, "")
	_, err = f.api.Authorize(ctx, req("ord_1", 2599, card("378282246310005")))
	wantKind(t, "repeat with another card", err, errs.Conflict, "order ord_1 already has a payment with another card")
	if got, _ := f.api.GetPayment(ctx, p.ID); got != p {
		t.Errorf("refused repeats changed the payment: %+v", got)
	}

	// Any Luhn-valid number is accepted, 12 to 19 digits, with a 4-digit CVC.
	amex := payment.Card{Number: "378282246310005", ExpMonth: 1, ExpYear: 2031, CVC: "1234"}
	if p := mustAuthorize(t, f.api, req("ord_2", 100, amex)); p.CardLast4 != "0005" {
		t.Errorf("amex: CardLast4 = %q", p.CardLast4)
	}
	for _, n := range []string{"000000000000", "4000000000000000006"} { // 12 and 19 digits
		if p := mustAuthorize(t, f.api, req("ord_len"+fmt.Sprint(len(n)), 100, card(n))); p.CardLast4 != n[len(n)-4:] {
			t.Errorf("%d digits: CardLast4 = %q", len(n), p.CardLast4)
		}
	}
	// A card expiring this month is still good.
	thisMonth := payment.Card{Number: payment.TestCardOK, ExpMonth: 3, ExpYear: 2030, CVC: "123"}
	mustAuthorize(t, f.api, req("ord_3", 100, thisMonth))

	// Only the last four digits are stored.
	rows, err := f.db.QueryContext(ctx, `SELECT * FROM payments`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		row := fmt.Sprint(vals...)
		for _, secret := range []string{"42424242", "2822463100", "400000000000000"} {
			if strings.Contains(row, secret) {
				t.Errorf("payments row holds card digits %q: %s", secret, row)
			}
		}
	}
}

func testDecline(t *testing.T, f fixture) {
	ctx := context.Background()
	_, err := f.api.Authorize(ctx, req("ord_1", 500, card(payment.TestCardDeclined)))
	wantKind(t, "declined card", err, errs.Declined, "card declined")

	// The decline is recorded: a repeat for the order, even with a good card,
	// gets the same answer.
	_, err = f.api.Authorize(ctx, req("ord_1", 500, card(payment.TestCardDeclined)))
	wantKind(t, "repeat of declined", err, errs.Declined, "card declined")
	// With another card it is a conflict: the order's one authorization
	// was made with the declined card.
	_, err = f.api.Authorize(ctx, req("ord_1", 500, card(payment.TestCardOK)))
	wantKind(t, "declined order with another card", err, errs.Conflict, "")

	p, err := f.store.GetByOrder(ctx, "ord_1")
	if err != nil {
		t.Fatal(err)
	}
	if p.Status != payment.StatusDeclined || p.CardLast4 != "0002" {
		t.Errorf("recorded decline = %+v", p)
	}
	if got, err := f.api.GetPayment(ctx, p.ID); err != nil || got != p {
		t.Errorf("GetPayment(declined) = %+v, %v", got, err)
	}
	// Voiding a declined payment is a no-op; capturing or refunding it is a
	// conflict.
	if got, err := f.api.Void(ctx, p.ID); err != nil || got != p {
		t.Errorf("Void(declined) = %+v, %v; want it unchanged", got, err)
	}
	_, err = f.api.Capture(ctx, p.ID)
	wantKind(t, "Capture(declined)", err, errs.Conflict, "")
	_, err = f.api.Refund(ctx, p.ID)
	wantKind(t, "Refund(declined)", err, errs.Conflict, "")
}

func testTransient(t *testing.T, f fixture) {
	ctx := context.Background()
	for i := 0; i < 2; i++ { // every time
		_, err := f.api.Authorize(ctx, req("ord_1", 500, card(payment.TestCardUnavailable)))
		wantKind(t, "processor error", err, errs.Unavailable, "payment processor temporarily unavailable")
	}
	if _, err := f.store.GetByOrder(ctx, "ord_1"); !errs.Is(errs.NotFound, err) {
		t.Errorf("transient failure recorded a payment: %v", err)
	}
	// The order may be retried with another card.
	if p := mustAuthorize(t, f.api, req("ord_1", 500, card(payment.TestCardOK))); p.Status != payment.StatusAuthorized {
		t.Errorf("retry = %+v", p)
	}
}

func testInvalid(t *testing.T, f fixture) {
	ctx := context.Background()
	good := card(payment.TestCardOK)
	with := func(mod func(c *payment.Card)) payment.Card { c := good; mod(&c); return c }
	cases := []struct {
		name string
		r    payment.AuthorizeRequest
	}{
		{"empty number", req("ord_1", 500, card(""))},
		{"letters", req("ord_1", 500, card("4242-4242-4242-4242"))},
		{"11 digits", req("ord_1", 500, card("42424242428"))},
		{"20 digits", req("ord_1", 500, card("42424242424242424242"))},
		{"failing Luhn", req("ord_1", 500, card("4242424242424241"))},
		{"month 0", req("ord_1", 500, with(func(c *payment.Card) { c.ExpMonth = 0 }))},
		{"month 13", req("ord_1", 500, with(func(c *payment.Card) { c.ExpMonth = 13 }))},
		{"expired last month", req("ord_1", 500, with(func(c *payment.Card) { c.ExpMonth, c.ExpYear = 2, 2030 }))},
		{"expired last year", req("ord_1", 500, with(func(c *payment.Card) { c.ExpYear = 2029 }))},
		{"two-digit year", req("ord_1", 500, with(func(c *payment.Card) { c.ExpYear = 31 }))},
		{"far future", req("ord_1", 500, with(func(c *payment.Card) { c.ExpYear = 2080 }))},
		{"short cvc", req("ord_1", 500, with(func(c *payment.Card) { c.CVC = "12" }))},
		{"long cvc", req("ord_1", 500, with(func(c *payment.Card) { c.CVC = "12345" }))},
		{"letter in cvc", req("ord_1", 500, with(func(c *payment.Card) { c.CVC = "12a" }))},
		{"zero amount", req("ord_1", 0, good)},
		{"negative amount", req("ord_1", -100, good)},
		{"huge amount", req("ord_1", payment.MaxAmount+1, good)},
		{"other currency", payment.AuthorizeRequest{OrderID: "ord_1", Amount: money.Money{Amount: 500, Currency: "EUR"}, Card: good}},
		{"no currency", payment.AuthorizeRequest{OrderID: "ord_1", Amount: money.Money{Amount: 500}, Card: good}},
		{"no order", req("", 500, good)},
		{"blank order", req("  ", 500, good)},
	}
	for _, tc := range cases {
		_, err := f.api.Authorize(ctx, tc.r)
		wantKind(t, tc.name, err, errs.Invalid, "")
		if d := errs.Detail(err); strings.Contains(d, "4242") {
			t.Errorf("%s: detail %q echoes the card number", tc.name, d)
		}
	}
	if _, err := f.store.GetByOrder(ctx, "ord_1"); !errs.Is(errs.NotFound, err) {
		t.Errorf("an invalid request recorded a payment: %v", err)
	}
	mustAuthorize(t, f.api, req("ord_1", 500, good))
}

func testCaptureRefund(t *testing.T, f fixture) {
	ctx := context.Background()
	p := mustAuthorize(t, f.api, req("ord_1", 500, card(payment.TestCardOK)))
	_, err := f.api.Refund(ctx, p.ID)
	wantKind(t, "Refund(authorized)", err, errs.Conflict, "")

	f.clk.Advance(time.Hour)
	captured, err := f.api.Capture(ctx, p.ID)
	if err != nil {
		t.Fatal(err)
	}
	if captured.Status != payment.StatusCaptured || !captured.UpdatedAt.Equal(now0.Add(time.Hour)) || !captured.CreatedAt.Equal(now0) {
		t.Errorf("Capture = %+v", captured)
	}
	f.clk.Advance(time.Hour)
	if again, err := f.api.Capture(ctx, p.ID); err != nil || again != captured {
		t.Errorf("second Capture = %+v, %v; want a no-op", again, err)
	}
	_, err = f.api.Void(ctx, p.ID)
	wantKind(t, "Void(captured)", err, errs.Conflict, "payment is captured and cannot be voided; refund it instead")
	if got, _ := f.api.GetPayment(ctx, p.ID); got != captured {
		t.Errorf("rejected Void changed the payment: %+v", got)
	}

	refunded, err := f.api.Refund(ctx, p.ID)
	if err != nil {
		t.Fatal(err)
	}
	if refunded.Status != payment.StatusRefunded || !refunded.UpdatedAt.Equal(now0.Add(2*time.Hour)) {
		t.Errorf("Refund = %+v", refunded)
	}
	f.clk.Advance(time.Hour)
	if again, err := f.api.Refund(ctx, p.ID); err != nil || again != refunded {
		t.Errorf("second Refund = %+v, %v; want a no-op", again, err)
	}
	_, err = f.api.Capture(ctx, p.ID)
	wantKind(t, "Capture(refunded)", err, errs.Conflict, "")
	_, err = f.api.Void(ctx, p.ID)
	wantKind(t, "Void(refunded)", err, errs.Conflict, "")
	if got, _ := f.api.GetPayment(ctx, p.ID); got != refunded {
		t.Errorf("GetPayment = %+v, want %+v", got, refunded)
	}
}

func testVoid(t *testing.T, f fixture) {
	ctx := context.Background()
	p := mustAuthorize(t, f.api, req("ord_1", 500, card(payment.TestCardOK)))
	f.clk.Advance(time.Minute)
	voided, err := f.api.Void(ctx, p.ID)
	if err != nil {
		t.Fatal(err)
	}
	if voided.Status != payment.StatusVoided || !voided.UpdatedAt.Equal(now0.Add(time.Minute)) {
		t.Errorf("Void = %+v", voided)
	}
	f.clk.Advance(time.Minute)
	if again, err := f.api.Void(ctx, p.ID); err != nil || again != voided {
		t.Errorf("second Void = %+v, %v; want a no-op", again, err)
	}
	_, err = f.api.Capture(ctx, p.ID)
	wantKind(t, "Capture(voided)", err, errs.Conflict, "payment is voided and cannot be captured")
	_, err = f.api.Refund(ctx, p.ID)
	wantKind(t, "Refund(voided)", err, errs.Conflict, "")
	if got, _ := f.api.GetPayment(ctx, p.ID); got != voided {
		t.Errorf("GetPayment = %+v, want %+v", got, voided)
	}
	// A repeat authorization for the order is refused: its payment was
	// cancelled.
	_, err = f.api.Authorize(ctx, req("ord_1", 500, card(payment.TestCardOK)))
	wantKind(t, "Authorize after Void", err, errs.Conflict, "the order's payment was cancelled")
}

func testUnknown(t *testing.T, f fixture) {
	ctx := context.Background()
	for _, id := range []string{"pay_nope", "", "a/b", "../x"} {
		for name, fn := range map[string]func(context.Context, string) (payment.Payment, error){
			"GetPayment": f.api.GetPayment, "Capture": f.api.Capture, "Void": f.api.Void, "Refund": f.api.Refund,
		} {
			_, err := fn(ctx, id)
			wantKind(t, fmt.Sprintf("%s(%q)", name, id), err, errs.NotFound, "")
		}
	}
}

func testConcurrent(t *testing.T, f fixture) {
	ctx := context.Background()
	const n = 8
	var wg sync.WaitGroup
	got := make([]payment.Payment, n)
	errList := make([]error, n)
	declines := make([]error, n)
	for i := range n {
		wg.Add(2)
		go func() {
			defer wg.Done()
			got[i], errList[i] = f.api.Authorize(ctx, req("ord_race", 700, card(payment.TestCardOK)))
		}()
		go func() {
			defer wg.Done()
			_, declines[i] = f.api.Authorize(ctx, req("ord_race_declined", 700, card(payment.TestCardDeclined)))
		}()
	}
	wg.Wait()
	for i := range n {
		if errList[i] != nil {
			t.Fatalf("concurrent Authorize: %v", errList[i])
		}
		if got[i] != got[0] {
			t.Errorf("concurrent Authorize #%d = %+v, want %+v", i, got[i], got[0])
		}
		wantKind(t, "concurrent declined Authorize", declines[i], errs.Declined, "card declined")
	}
	var count int
	if err := f.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM payments`).Scan(&count); err != nil || count != 2 {
		t.Errorf("payments rows = %d, %v; want 2", count, err)
	}
}

// TestHTTPIdempotencyKey checks the authorization endpoint refuses a key that
// is not the order id, and accepts a repeat with the right one.
func TestHTTPIdempotencyKey(t *testing.T) {
	f := newFixture(t, true)
	body := `{"order_id":"ord_1","amount":{"amount":500,"currency":"USD"},"card":{"card_number":"4242424242424242","exp_month":12,"exp_year":2031,"cvc":"123"}}`
	post := func(key string) int {
		r, _ := http.NewRequest(http.MethodPost, f.url+"/svc/payment/v1/authorizations", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Idempotency-Key", key)
		resp, err := http.DefaultClient.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if s := post("ord_2"); s != http.StatusBadRequest {
		t.Errorf("mismatched key: status %d, want 400", s)
	}
	if _, err := f.store.GetByOrder(context.Background(), "ord_1"); !errs.Is(errs.NotFound, err) {
		t.Errorf("rejected request recorded a payment: %v", err)
	}
	if s := post("ord_1"); s != http.StatusOK {
		t.Errorf("first: status %d", s)
	}
	if s := post("ord_1"); s != http.StatusOK {
		t.Errorf("repeat: status %d", s)
	}
}

// testPaymentForOrder: a caller whose Authorize answer was lost finds the
// order's payment, declined or not, to void it.
func testPaymentForOrder(t *testing.T, f fixture) {
	ctx := context.Background()
	p := mustAuthorize(t, f.api, req("ord_1", 500, card(payment.TestCardOK)))
	if got, err := f.api.PaymentForOrder(ctx, "ord_1"); err != nil || got != p {
		t.Errorf("PaymentForOrder(ord_1) = %+v, %v; want %+v", got, err, p)
	}
	_, err := f.api.Authorize(ctx, req("ord_2", 500, card(payment.TestCardDeclined)))
	wantKind(t, "declined card", err, errs.Declined, "")
	if got, err := f.api.PaymentForOrder(ctx, "ord_2"); err != nil || got.Status != payment.StatusDeclined {
		t.Errorf("PaymentForOrder(ord_2) = %+v, %v; want the declined payment", got, err)
	}
	for _, id := range []string{"ord_nope", "", "a/b", "../x", strings.Repeat("o", payment.MaxOrderIDLen+1)} {
		_, err := f.api.PaymentForOrder(ctx, id)
		wantKind(t, fmt.Sprintf("PaymentForOrder(%q)", id), err, errs.NotFound, "")
	}
}

// testVoidForOrder: the saga's undo of an authorization whose answer was
// lost, in each state the order's payment may be in.
func testVoidForOrder(t *testing.T, f fixture) {
	ctx := context.Background()

	// Authorized: voided, once.
	p := mustAuthorize(t, f.api, req("ord_1", 500, card(payment.TestCardOK)))
	f.clk.Advance(time.Minute)
	voided, err := f.api.VoidForOrder(ctx, "ord_1")
	if err != nil {
		t.Fatal(err)
	}
	want := p
	want.Status, want.UpdatedAt = payment.StatusVoided, now0.Add(time.Minute)
	if voided != want {
		t.Errorf("VoidForOrder(authorized) = %+v, want %+v", voided, want)
	}
	f.clk.Advance(time.Minute)
	if again, err := f.api.VoidForOrder(ctx, "ord_1"); err != nil || again != voided {
		t.Errorf("repeat VoidForOrder = %+v, %v; want %+v", again, err, voided)
	}
	if l, err := f.store.Ledger(ctx, p.ID); err != nil || len(l) != 2 || l[1].Kind != payment.KindVoid || l[1].Amount != money.USD(500) {
		t.Errorf("Ledger = %+v, %v; want an authorization and one void of $5.00", l, err)
	}
	_, err = f.api.Authorize(ctx, req("ord_1", 500, card(payment.TestCardOK)))
	wantKind(t, "Authorize after VoidForOrder", err, errs.Conflict, "the order's payment was cancelled")

	// No payment: a cancellation, and no authorization after it.
	c, err := f.api.VoidForOrder(ctx, "ord_2")
	if err != nil {
		t.Fatal(err)
	}
	if c.ID != "" || c.OrderID != "ord_2" || c.Status != payment.StatusVoided || c.Amount != money.USD(0) ||
		c.CardLast4 != "" || !c.Cancelled() || !c.CreatedAt.Equal(f.clk.Now()) {
		t.Errorf("VoidForOrder(no payment) = %+v", c)
	}
	if again, err := f.api.VoidForOrder(ctx, "ord_2"); err != nil || again != c {
		t.Errorf("repeat VoidForOrder(no payment) = %+v, %v; want %+v", again, err, c)
	}
	_, err = f.api.Authorize(ctx, req("ord_2", 500, card(payment.TestCardOK)))
	wantKind(t, "Authorize after cancellation", err, errs.Conflict, "the order's payment was cancelled")
	if got, err := f.api.PaymentForOrder(ctx, "ord_2"); err != nil || got != c {
		t.Errorf("PaymentForOrder(cancelled) = %+v, %v; want %+v", got, err, c)
	}
	row, err := f.store.GetByOrder(ctx, "ord_2")
	if err != nil || !strings.HasPrefix(row.ID, "pay_") || !row.Cancelled() {
		t.Errorf("stored cancellation = %+v, %v", row, err)
	}
	if l, err := f.store.Ledger(ctx, row.ID); err != nil || len(l) != 0 {
		t.Errorf("cancellation Ledger = %+v, %v; want none", l, err)
	}

	// Declined: unchanged.
	_, err = f.api.Authorize(ctx, req("ord_3", 500, card(payment.TestCardDeclined)))
	wantKind(t, "declined", err, errs.Declined, "")
	d, _ := f.api.PaymentForOrder(ctx, "ord_3")
	if got, err := f.api.VoidForOrder(ctx, "ord_3"); err != nil || got != d {
		t.Errorf("VoidForOrder(declined) = %+v, %v; want %+v", got, err, d)
	}

	// Captured: a conflict, nothing changed.
	p4 := mustAuthorize(t, f.api, req("ord_4", 500, card(payment.TestCardOK)))
	captured, err := f.api.Capture(ctx, p4.ID)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.api.VoidForOrder(ctx, "ord_4")
	wantKind(t, "VoidForOrder(captured)", err, errs.Conflict, "payment is captured and cannot be voided; refund it instead")
	if got, _ := f.api.GetPayment(ctx, p4.ID); got != captured {
		t.Errorf("refused VoidForOrder changed the payment: %+v", got)
	}

	for _, id := range []string{"", " ", strings.Repeat("o", payment.MaxOrderIDLen+1)} {
		_, err := f.api.VoidForOrder(ctx, id)
		wantKind(t, fmt.Sprintf("VoidForOrder(%q)", id), err, errs.Invalid, "")
	}
	var n int
	if err := f.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM payments WHERE TRIM(order_id) = ''`).Scan(&n); err != nil || n != 0 {
		t.Errorf("an invalid VoidForOrder recorded %d payments, %v", n, err)
	}
}

// testAudit checks the audit's totals after a known history, and that it
// reports a ledger broken by hand.
func testAudit(t *testing.T, f fixture) {
	ctx := context.Background()
	auditor, ok := f.api.(payment.Auditor)
	if !ok {
		t.Fatalf("%T is not a payment.Auditor", f.api)
	}
	p1 := mustAuthorize(t, f.api, req("ord_1", 1000, card(payment.TestCardOK)))
	if _, err := f.api.Capture(ctx, p1.ID); err != nil {
		t.Fatal(err)
	}
	p2 := mustAuthorize(t, f.api, req("ord_2", 2000, card(payment.TestCardOK)))
	if _, err := f.api.VoidForOrder(ctx, p2.OrderID); err != nil {
		t.Fatal(err)
	}
	mustAuthorize(t, f.api, req("ord_3", 3000, card(payment.TestCardOK)))
	if _, err := f.api.VoidForOrder(ctx, "ord_4"); err != nil {
		t.Fatal(err)
	}
	a, err := auditor.Audit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := payment.Audit{Currency: "USD", Authorized: 6000, Captured: 1000, Voided: 2000, Held: 3000, NetCaptured: 1000,
		Payments: 4, Cancelled: 1, Entries: 5, Violations: []payment.Violation{}}
	if fmt.Sprintf("%+v", a) != fmt.Sprintf("%+v", want) {
		t.Errorf("Audit = %+v\nwant %+v", a, want)
	}

	// A refund row nobody asked for.
	if _, err := f.db.ExecContext(ctx, `INSERT INTO payment_ledger (id, payment_id, order_id, kind, amount, currency, created_at, shard)
		SELECT 'led_forged', id, order_id, 'refund', 5000, currency, 0, shard FROM payments WHERE id = ?`, p1.ID); err != nil {
		t.Fatal(err)
	}
	a, err = auditor.Audit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Violations) != 1 || a.OK() {
		t.Fatalf("Audit violations = %+v, want one", a.Violations)
	}
	v := a.Violations[0]
	if v.PaymentID != p1.ID || v.OrderID != "ord_1" || v.Status != payment.StatusCaptured || v.LedgerStatus != payment.StatusRefunded ||
		v.Refunded != 5000 || v.Captured != 1000 || strings.Join(v.Problems, "; ") != "status captured but the ledger says refunded; refunded exceeds captured" {
		t.Errorf("violation = %+v", v)
	}
	if a.Refunded != 5000 || a.NetCaptured != 1000-5000 {
		t.Errorf("Audit totals with the forged refund = %+v", a)
	}
}

// TestHTTPAudit checks the audit endpoint answers JSON and that the
// service's handler does not serve it for an API that cannot audit.
func TestHTTPAudit(t *testing.T) {
	f := newFixture(t, true)
	resp, err := http.Get(f.url + "/svc/payment/v1/admin/audit")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Errorf("GET audit: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var body map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"authorized", "captured", "voided", "refunded", "declined", "held", "net_captured", "violations"} {
		if _, ok := body[k]; !ok {
			t.Errorf("audit JSON has no %q: %v", k, body)
		}
	}

	srv := httptest.NewServer(payment.NewHandler(apiOnly{f.api}))
	t.Cleanup(srv.Close)
	resp, err = http.Get(srv.URL + "/svc/payment/v1/admin/audit")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("audit of an API that cannot audit: status %d, want 404", resp.StatusCode)
	}
}

// apiOnly hides every method but API's.
type apiOnly struct{ payment.API }
