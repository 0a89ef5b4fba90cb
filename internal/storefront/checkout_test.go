package storefront

import (
	"context"
	"html"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/checkout"
	"github.com/globomantics/globomantics/internal/order"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/money"
)

// checkoutReady signs Ada up, fills her cart and returns her browser and
// the nonce of a fresh checkout form.
func checkoutReady(t *testing.T, e *env) (*browser, string) {
	t.Helper()
	b := e.browser()
	b.signUp("ada@example.com", "Ada Lovelace")
	b.do("POST", "/cart/add", url.Values{"product_id": {"prd_01"}, "quantity": {"2"}})
	r := b.do("GET", "/checkout", nil)
	wantStatus(t, r, http.StatusOK)
	m := nonceRE.FindStringSubmatch(r.body)
	if m == nil {
		t.Fatalf("no nonce in the form:\n%s", r.body)
	}
	return b, m[1]
}

// noKeyTalk fails if a page shows the customer anything about keys (the
// form's hidden field name aside).
func noKeyTalk(t *testing.T, body string) {
	t.Helper()
	body = strings.ReplaceAll(body, `name="idempotency_key"`, "")
	for _, s := range []string{"Idempotency", "idempotency", "already used"} {
		if strings.Contains(body, s) {
			t.Errorf("page shows %q:\n%s", s, body)
		}
	}
}

// The defect: after a transient processor failure, submitting the form
// again with another card said the key was used with a different request.
func TestCheckoutTransientFailureThenCorrectedCard(t *testing.T) {
	e := newEnv(t)
	b, nonce := checkoutReady(t, e)

	r := b.do("POST", "/checkout", checkoutForm(nonce, "4000 0000 0000 0119"))
	wantStatus(t, r, http.StatusServiceUnavailable)
	wantContains(t, r.body, "couldn&#39;t complete your order just now", `value="1 Analytical Way"`)
	noKeyTalk(t, r.body)
	if m := nonceRE.FindStringSubmatch(r.body); m == nil || m[1] != nonce {
		t.Fatalf("the form after a transient failure must keep its nonce %q:\n%s", nonce, r.body)
	}
	if e.orders.count() != 0 {
		t.Fatal("a failed payment made an order")
	}

	// The corrected card: a new attempt under a new key, and the order.
	r = b.do("POST", "/checkout", checkoutForm(nonce, "4242 4242 4242 4242"))
	wantStatus(t, r, http.StatusSeeOther)
	if loc := r.Header.Get("Location"); loc != "/orders/GM-0000-0001" {
		t.Fatalf("Location %q; body:\n%s", loc, r.body)
	}
	keys := e.checkout.keysCalled()
	if len(keys) != 2 || keys[0] == keys[1] || !strings.HasPrefix(keys[0], "web."+nonce+".") || !strings.HasPrefix(keys[1], "web."+nonce+".") {
		t.Fatalf("keys %q", keys)
	}
	// The fake, like the service, refuses the first key with the corrected
	// request: reusing it would have been the defect.
	corrected, _ := checkoutFormRequest(checkoutForm(nonce, "4242424242424242"))
	if _, err := e.checkout.PlaceOrder(context.Background(), checkout.Customer{UserID: "acct_01", Email: "ada@example.com"}, keys[0], corrected); !errs.Is(errs.Invalid, err) {
		t.Fatalf("reused key with another request: %v", err)
	}
	if e.orders.count() != 1 {
		t.Fatalf("%d orders, want 1", e.orders.count())
	}
	r = b.do("GET", "/orders", nil)
	wantContains(t, r.body, `href="/orders/GM-0000-0001"`, "Confirmed")
}

func TestCheckoutTransientFailureSameFormRunsAgain(t *testing.T) {
	e := newEnv(t)
	b, nonce := checkoutReady(t, e)
	for range 2 {
		wantStatus(t, b.do("POST", "/checkout", checkoutForm(nonce, "4000000000000119")), http.StatusServiceUnavailable)
	}
	if keys := e.checkout.keysCalled(); len(keys) != 2 || keys[0] != keys[1] {
		t.Fatalf("the same form must be the same key: %q", keys)
	}
}

func TestFormKey(t *testing.T) {
	req, _ := checkoutFormRequest(checkoutForm("n", "4242424242424242"))
	k := formKey("abc", req)
	if k != formKey("abc", req) || !strings.HasPrefix(k, "web.abc.") || len(formKey(strings.Repeat("a", 64), req)) > maxCheckoutKey {
		t.Fatalf("formKey %q", k)
	}
	if strings.Contains(k, checkout.RequestHash(req)[:16]) {
		t.Error("the key shows the request hash unsalted")
	}
	other := req
	other.Payment.Number = "5555555555554444"
	if formKey("abc", other) == k || formKey("abd", req) == k {
		t.Error("another request or another form must be another key")
	}
	for n, want := range map[string]bool{"": false, "k-ok": true, "a_B-9": true, "a b": false, "a.b": false, strings.Repeat("x", 65): false} {
		if validNonce(n) != want {
			t.Errorf("validNonce(%q) = %v", n, !want)
		}
	}
}

func TestCheckoutPendingProgressPage(t *testing.T) {
	e := newEnv(t)
	b, _ := checkoutReady(t, e)
	e.checkout.pending = true

	nonce := "n-pending" // fixed, for the golden file
	form := checkoutForm(nonce, "4242424242424242")
	r := b.do("POST", "/checkout", form)
	wantStatus(t, r, http.StatusSeeOther)
	status := r.Header.Get("Location")
	if !strings.HasPrefix(status, "/checkout/status?key=web."+nonce+".") {
		t.Fatalf("Location %q", status)
	}
	// A double submit of the same form goes to the same progress page.
	r = b.do("POST", "/checkout", form)
	wantStatus(t, r, http.StatusSeeOther)
	if r.Header.Get("Location") != status {
		t.Fatalf("double submit Location %q, want %q", r.Header.Get("Location"), status)
	}

	r = b.do("GET", status, nil)
	wantStatus(t, r, http.StatusOK)
	wantContains(t, r.body, "We are placing your order…", `>Check again</a>`, "Desk Lamp", "$49.00", "$5.00", "$54.00", "1 Analytical Way")
	if strings.Contains(r.body, "<script") || strings.Contains(r.body, `http-equiv="refresh"`) {
		t.Error("progress page uses script or refreshes itself")
	}
	if cc := r.Header.Get("Cache-Control"); !strings.Contains(cc, "no-store") {
		t.Errorf("progress page Cache-Control %q", cc)
	}
	// The key's hash part depends on checkout.RequestHash: leave it out.
	golden(t, "checkout-pending.html", regexp.MustCompile(`web\.n-pending\.[0-9a-f]+`).ReplaceAllString(r.body, "web.n-pending.HASH"))

	// A changed form while it runs: the cart is busy, said kindly.
	r = b.do("POST", "/checkout", checkoutForm(nonce, "5555555555554444"))
	wantStatus(t, r, http.StatusConflict)
	wantContains(t, r.body, "already being checked out")
	noKeyTalk(t, r.body)

	// Another customer cannot see it; nor can a visitor.
	bob := e.browser()
	bob.signUp("bob@example.com", "Bob")
	r = bob.do("GET", status, nil)
	wantStatus(t, r, http.StatusNotFound)
	if strings.Contains(r.body, "Desk Lamp") || strings.Contains(r.body, "Analytical") {
		t.Error("404 leaks the checkout")
	}
	wantStatus(t, bob.do("GET", "/checkout/status", nil), http.StatusNotFound)
	if r := e.browser().do("GET", status, nil); r.StatusCode != http.StatusSeeOther || !strings.HasPrefix(r.Header.Get("Location"), "/login?next=") {
		t.Fatalf("anonymous progress page: %d %q", r.StatusCode, r.Header.Get("Location"))
	}

	// Confirmed while the page waits for it: on to the order.
	key, _ := url.QueryUnescape(strings.TrimPrefix(status, "/checkout/status?key="))
	e.server.d.SettleWait = 5 * time.Second
	go func() {
		time.Sleep(200 * time.Millisecond)
		e.checkout.finish("acct_01", key, nil)
	}()
	start := time.Now()
	r = b.do("GET", status, nil)
	if waited := time.Since(start); waited < 150*time.Millisecond || waited > 4*time.Second {
		t.Errorf("the progress page answered after %v: it should wait for the checkout to settle, and no longer", waited)
	}
	wantStatus(t, r, http.StatusSeeOther)
	if r.Header.Get("Location") != "/orders/GM-0000-0001" {
		t.Fatalf("confirmed Location %q", r.Header.Get("Location"))
	}
	wantContains(t, b.do("GET", "/orders/GM-0000-0001", nil).body, "Thank you! Your order is confirmed.")
}

func TestCheckoutPendingThenCancelled(t *testing.T) {
	e := newEnv(t)
	b, nonce := checkoutReady(t, e)
	e.checkout.pending = true
	r := b.do("POST", "/checkout", checkoutForm(nonce, "4242424242424242"))
	wantStatus(t, r, http.StatusSeeOther)
	status := r.Header.Get("Location")
	key, _ := url.QueryUnescape(strings.TrimPrefix(status, "/checkout/status?key="))
	e.checkout.finish("acct_01", key, &checkout.Failure{Status: http.StatusPaymentRequired, Detail: "card declined"})

	r = b.do("GET", status, nil)
	wantStatus(t, r, http.StatusOK)
	wantContains(t, r.body, "Your order was not placed", "card was declined and nothing was charged", `href="/checkout?retry=`)
	// Back to checkout: the address typed for the failed attempt is there
	// again (never the card).
	back := regexp.MustCompile(`href="(/checkout\?retry=[^"]+)"`).FindStringSubmatch(r.body)
	if back == nil {
		t.Fatal("no way back to checkout")
	}
	form := b.do("GET", html.UnescapeString(back[1]), nil)
	wantStatus(t, form, http.StatusOK)
	wantContains(t, form.body, `value="1 Analytical Way"`)
	if strings.Contains(form.body, "4242") && strings.Contains(form.body, `value="4242`) {
		t.Error("the card number came back")
	}
	if strings.Contains(r.body, `http-equiv="refresh"`) {
		t.Error("a finished checkout's page refreshes")
	}
	noKeyTalk(t, r.body)
	// The cart is intact and no order was made.
	if items := e.carts.get("user:acct_01"); len(items) != 1 || items[0].Quantity != 2 {
		t.Fatalf("cart after a cancelled checkout: %+v", items)
	}
	if e.orders.count() != 0 {
		t.Fatal("a cancelled checkout made an order")
	}
	// Back to the form, a new attempt goes through.
	e.checkout.pending = false
	nonce = nonceRE.FindStringSubmatch(b.do("GET", "/checkout", nil).body)[1]
	r = b.do("POST", "/checkout", checkoutForm(nonce, "4242424242424242"))
	wantStatus(t, r, http.StatusSeeOther)
	if !strings.HasPrefix(r.Header.Get("Location"), "/orders/GM-") || e.orders.count() != 1 {
		t.Fatalf("Location %q, %d orders", r.Header.Get("Location"), e.orders.count())
	}
}

// Whatever the checkout says about keys, the customer reads about the form.
func TestCheckoutKeyMessagesStayInternal(t *testing.T) {
	for _, err := range []error{
		errs.E(errs.Invalid, errs.Msg("Idempotency-Key was already used with a different request")),
		errs.E(errs.BadRequest, errs.Msg("Idempotency-Key header must be at most 200 bytes")),
	} {
		e := newEnv(t)
		b, nonce := checkoutReady(t, e)
		d := e.deps
		d.Checkout = stubCheckout{err: err}
		req := httptest.NewRequest("POST", "/checkout", strings.NewReader(checkoutForm(nonce, "4242424242424242").Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.AddCookie(&http.Cookie{Name: SessionCookie, Value: b.cookieValue(SessionCookie)})
		rec := serve(New(d).Handler(), req)
		body := rec.Body.String()
		wantContains(t, body, "The form had expired")
		noKeyTalk(t, body)
		if m := nonceRE.FindStringSubmatch(body); m == nil || m[1] == nonce {
			t.Errorf("the form must come back with a fresh nonce")
		}
	}
}

func TestOrdersListLabelsCancelledOrders(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	b.signUp("ada@example.com", "Ada")
	for _, o := range []order.Order{
		{ID: "ord_001", Status: order.StatusConfirmed, Payment: order.PaymentInfo{Status: "captured"}},
		{ID: "ord_002", Status: order.StatusCancelled, Payment: order.PaymentInfo{Status: "voided"}},
		{ID: "ord_003", Status: order.StatusCancelled, Payment: order.PaymentInfo{Status: "refunded"}},
		{ID: "ord_004", Status: order.StatusCancelled},
	} {
		o.UserID, o.CreatedAt, o.Total = "acct_01", seedTime, money.USD(1234)
		e.orders.put(o)
	}
	r := b.do("GET", "/orders", nil)
	wantStatus(t, r, http.StatusOK)
	wantContains(t, r.body, ">Confirmed<", ">Cancelled — not charged<", ">Refunded<", "<s>$12.34</s>")
	if strings.Count(r.body, "Cancelled — not charged") != 2 {
		t.Errorf("voided and never-paid orders must both read as not charged:\n%s", r.body)
	}
	wantContains(t, b.do("GET", "/orders/ord_003", nil).body, "This order was cancelled and refunded.")
	wantContains(t, b.do("GET", "/orders/ord_002", nil).body, "This order was cancelled; you were not charged.")
}
