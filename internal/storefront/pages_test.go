package storefront

import (
	"context"
	"errors"
	"flag"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/globomantics/globomantics/internal/checkout"
	"github.com/globomantics/globomantics/internal/order"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/page"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from the golden file (run go test -update if the change is intended)\n--- got:\n%s", name, got)
	}
}

func TestGoldenPages(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	for _, tc := range []struct{ path, file string }{
		{"/", "home.html"},
		{"/products/prd_01", "product.html"},
		{"/products/prd_02", "product-sold-out.html"},
	} {
		r := b.do("GET", tc.path, nil)
		wantStatus(t, r, http.StatusOK)
		golden(t, tc.file, r.body)
	}
}

func TestPublicPagesRender(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	css, _ := e.server.static.url("style.css")
	for _, tc := range []struct {
		path string
		want []string
	}{
		{"/", []string{"Featured products", "Desk Lamp", `src="/media/thumbs/prd_01_medium.jpg"`, `src="/media/thumbs/prd_03_small.jpg"`,
			`src="/media/products/prd_04.png"`, "$24.50", "Sold out", `href="/category/cat_lamps"`, `action="/search"`, css, "Log in"}},
		{"/category/cat_tools", []string{"<h1>Tools</h1>", "Claw Hammer", "Screwdriver Set"}},
		{"/products/prd_03", []string{"<h1>Claw Hammer</h1>", "$15.00", "In stock", "(3 left)", `name="product_id" value="prd_03"`, `name="quantity"`, `href="/category/cat_tools">Tools</a>`}},
		{"/products/prd_02", []string{"Out of stock", "disabled", "Tall &amp; elegant &lt;arc&gt; lamp."}},
		{"/search?q=lamp", []string{"3 results for “lamp”", "Floor Lamp", "Desk Lamp", `value="lamp"`}},
		{"/search?q=zzz", []string{"No products match “zzz”"}},
		{"/search", []string{"Type what you are looking for"}},
		{"/cart", []string{"Your cart is empty"}},
		{"/login", []string{`action="/login"`, `name="email"`, `name="next" value="/"`}},
		{"/register", []string{`action="/register"`, `name="name"`, `name="password"`}},
		{"/dev/mail", []string{"Development mailbox", "ada@example.com", `href="/dev/mail/m1"`, "Your order ord_001"}},
	} {
		r := b.do("GET", tc.path, nil)
		wantStatus(t, r, http.StatusOK)
		if ct := r.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
			t.Errorf("%s: Content-Type %q", tc.path, ct)
		}
		wantContains(t, r.body, tc.want...)
	}
	// Search results best first.
	r := b.do("GET", "/search?q=lamp", nil)
	if strings.Index(r.body, "Floor Lamp") > strings.Index(r.body, "Desk Lamp") {
		t.Error("search results not in hit order")
	}
	// A message reads decoded, its HTML shown as text, never rendered; the
	// raw source is plain text, never HTML.
	r = b.do("GET", "/dev/mail/m1", nil)
	wantStatus(t, r, http.StatusOK)
	wantContains(t, r.body, "<h1>Your order</h1>", "&lt;b&gt;Thanks&lt;/b&gt; for your order.", `href="/dev/mail/m1?raw=1"`)
	if strings.Contains(r.body, "<b>Thanks</b>") {
		t.Errorf("the message's HTML reached the page unescaped")
	}
	r = b.do("GET", "/dev/mail/m1?raw=1", nil)
	wantStatus(t, r, http.StatusOK)
	if r.Header.Get("Content-Type") != "text/plain; charset=utf-8" || !strings.Contains(r.body, "<b>Thanks</b>") {
		t.Fatalf("raw mail message: %q %s", r.Header.Get("Content-Type"), r.body)
	}
	wantStatus(t, b.do("GET", "/dev/mail/nope", nil), http.StatusNotFound)
	wantStatus(t, b.do("GET", "/dev/mail/..%2fsecret", nil), http.StatusNotFound)
}

func TestCategoryPagination(t *testing.T) {
	e := newEnv(t)
	for i := range 14 {
		p := e.catalog.products["prd_03"]
		p.ID = "prd_t" + string(rune('a'+i))
		p.Name = "Tool " + string(rune('A'+i))
		e.catalog.products[p.ID] = p
	}
	b := e.browser()
	r := b.do("GET", "/category/cat_tools", nil)
	wantStatus(t, r, http.StatusOK)
	next := regexp.MustCompile(`href="/category/cat_tools\?page=([^"]+)"`).FindStringSubmatch(r.body)
	if next == nil || strings.Contains(r.body, "First page") {
		t.Fatalf("no next link on page 1:\n%s", r.body)
	}
	r = b.do("GET", "/category/cat_tools?page="+next[1], nil)
	wantStatus(t, r, http.StatusOK)
	wantContains(t, r.body, "First page", "Tool K", "Tool N")
	if strings.Contains(r.body, "Screwdriver Set") {
		t.Error("page 2 repeats page 1")
	}
	if strings.Contains(r.body, "Next page") {
		t.Error("last page has a next link")
	}
	wantStatus(t, b.do("GET", "/category/cat_tools?page=bogus", nil), http.StatusBadRequest)
	wantStatus(t, b.do("GET", "/category/cat_nope", nil), http.StatusNotFound)
}

func TestPageCacheHeaders(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	for _, path := range []string{"/", "/products/prd_01", "/category/cat_lamps", "/search?q=lamp"} {
		r := b.do("GET", path, nil)
		if r.Header.Get("Cache-Control") != catalogCacheControl || r.Header.Get("Vary") != "Cookie" {
			t.Errorf("anonymous %s: Cache-Control %q Vary %q", path, r.Header.Get("Cache-Control"), r.Header.Get("Vary"))
		}
	}
	for _, path := range []string{"/cart", "/login"} {
		if cc := b.do("GET", path, nil).Header.Get("Cache-Control"); cc != "private, no-store" {
			t.Errorf("%s: Cache-Control %q", path, cc)
		}
	}
	// Once the visitor has a cart, the header is personal.
	wantStatus(t, b.do("POST", "/cart/add", url.Values{"product_id": {"prd_01"}}), http.StatusSeeOther)
	r := b.do("GET", "/products/prd_01", nil)
	if r.Header.Get("Cache-Control") != "private, no-store" {
		t.Errorf("with a cart cookie: Cache-Control %q", r.Header.Get("Cache-Control"))
	}
	wantContains(t, r.body, `<span class="count">1</span>`)
	if csp := r.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("CSP %q", csp)
	}
}

func TestCartForms(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	r := b.do("POST", "/cart/add", url.Values{"product_id": {"prd_01"}, "quantity": {"2"}})
	wantStatus(t, r, http.StatusSeeOther)
	if r.Header.Get("Location") != "/cart" || b.cookieValue(CartCookie) == "" {
		t.Fatalf("add: Location %q, cookie %q", r.Header.Get("Location"), b.cookieValue(CartCookie))
	}
	r = b.do("GET", "/cart", nil)
	wantContains(t, r.body, "Desk Lamp", `value="2"`, "$49.00", `action="/cart/items/prd_01"`, `action="/cart/items/prd_01/remove"`, `href="/checkout"`,
		`<span class="count">2</span>`)

	// Bad quantities show the form again with the reason; nothing changes.
	r = b.do("POST", "/cart/add", url.Values{"product_id": {"prd_01"}, "quantity": {"many"}})
	wantStatus(t, r, http.StatusUnprocessableEntity)
	wantContains(t, r.body, `class="error"`, "quantity must be a whole number", "<h1>Desk Lamp</h1>")
	r = b.do("POST", "/cart/add", url.Values{"product_id": {"prd_01"}, "quantity": {"100"}})
	wantStatus(t, r, http.StatusUnprocessableEntity)
	wantStatus(t, b.do("POST", "/cart/add", url.Values{"product_id": {"prd_nope"}}), http.StatusNotFound)
	r = b.do("POST", "/cart/items/prd_01", url.Values{"quantity": {"100"}})
	wantStatus(t, r, http.StatusUnprocessableEntity)
	wantContains(t, r.body, `class="error"`, "Your cart")
	if items := e.carts.get("anon:" + b.cookieValue(CartCookie)); len(items) != 1 || items[0].Quantity != 2 {
		t.Fatalf("rejected forms changed the cart: %+v", items)
	}

	wantStatus(t, b.do("POST", "/cart/items/prd_01", url.Values{"quantity": {"4"}}), http.StatusSeeOther)
	if items := e.carts.get("anon:" + b.cookieValue(CartCookie)); items[0].Quantity != 4 {
		t.Fatalf("update: %+v", items)
	}
	wantStatus(t, b.do("POST", "/cart/items/prd_01/remove", nil), http.StatusSeeOther)
	wantContains(t, b.do("GET", "/cart", nil).body, "Your cart is empty")

	// Updating in a fresh browser with no cart sets no cookie for an empty cart.
	fresh := e.browser()
	wantStatus(t, fresh.do("POST", "/cart/items/prd_01", url.Values{"quantity": {"0"}}), http.StatusSeeOther)
	if fresh.cookieValue(CartCookie) != "" {
		t.Error("cookie set for an empty cart")
	}
}

func TestLoginRegisterLogoutForms(t *testing.T) {
	e := newEnv(t)
	b := e.browser()

	r := b.do("POST", "/register", url.Values{"name": {"Ada"}, "email": {"ada@example.com"}, "password": {"short"}, "next": {"/cart"}})
	wantStatus(t, r, http.StatusUnprocessableEntity)
	wantContains(t, r.body, "at least 8 characters", `value="ada@example.com"`, `value="Ada"`)

	// An anonymous cart survives registration.
	b.do("POST", "/cart/add", url.Values{"product_id": {"prd_04"}})
	r = b.do("POST", "/register", url.Values{"name": {"Ada"}, "email": {"ada@example.com"}, "password": {"password123"}, "next": {"/cart"}})
	wantStatus(t, r, http.StatusSeeOther)
	if r.Header.Get("Location") != "/cart" || b.cookieValue(SessionCookie) == "" || b.cookieValue(CartCookie) != "" {
		t.Fatalf("register: Location %q cookies %v", r.Header.Get("Location"), r.Cookies())
	}
	r = b.do("GET", "/cart", nil)
	wantContains(t, r.body, "Screwdriver Set", `href="/account" title="Your account">Ada</a>`, `action="/logout"`)

	r = b.do("POST", "/logout", nil)
	wantStatus(t, r, http.StatusSeeOther)
	if b.cookieValue(SessionCookie) != "" {
		t.Fatal("logout kept the session cookie")
	}

	r = b.do("POST", "/register", url.Values{"name": {"Ada"}, "email": {"ada@example.com"}, "password": {"password123"}})
	wantStatus(t, r, http.StatusConflict)
	wantContains(t, r.body, "already exists", `<a href="/login?next=%2f">Log in instead</a>`, `value="ada@example.com"`)

	r = b.do("POST", "/login", url.Values{"email": {"ada@example.com"}, "password": {"nope-nope"}, "next": {"/orders"}})
	wantStatus(t, r, http.StatusUnauthorized)
	wantContains(t, r.body, `role="alert"`, `value="ada@example.com"`, `name="next" value="/orders"`)
	if b.cookieValue(SessionCookie) != "" {
		t.Fatal("failed login set a cookie")
	}

	r = b.do("POST", "/login", url.Values{"email": {"ada@example.com"}, "password": {"password123"}, "next": {"/orders"}})
	wantStatus(t, r, http.StatusSeeOther)
	if r.Header.Get("Location") != "/orders" || b.cookieValue(SessionCookie) == "" {
		t.Fatalf("login: %q", r.Header.Get("Location"))
	}
	// Already logged in: /login goes straight on.
	r = b.do("GET", "/login?next=/cart", nil)
	if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/cart" {
		t.Fatalf("login page when logged in: %d %q", r.StatusCode, r.Header.Get("Location"))
	}

	// next must stay on this site.
	b2 := e.browser()
	for _, next := range []string{"//evil.example/x", "https://evil.example/", "/\\evil.example", "javascript:alert(1)"} {
		r = b2.do("POST", "/login", url.Values{"email": {"ada@example.com"}, "password": {"password123"}, "next": {next}})
		if r.Header.Get("Location") != "/" {
			t.Errorf("next %q redirected to %q", next, r.Header.Get("Location"))
		}
	}
}

func TestLoginRequiredPagesRedirect(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	for path, next := range map[string]string{
		"/checkout":          "/checkout",
		"/orders":            "/orders",
		"/orders?page=x":     "/orders?page=x",
		"/orders/ord_001":    "/orders/ord_001",
		"/account":           "/account",
		"POST /account":      "/account",
		"POST /checkout":     "/checkout",
		"POST /cart/add?x=1": "",
	} {
		method := "GET"
		if m, p, ok := strings.Cut(path, " "); ok {
			method, path = m, p
		}
		r := b.do(method, path, url.Values{})
		if next == "" {
			continue // not a login page
		}
		wantStatus(t, r, http.StatusSeeOther)
		if want := "/login?next=" + url.QueryEscape(next); r.Header.Get("Location") != want {
			t.Errorf("%s %s: Location %q, want %q", method, path, r.Header.Get("Location"), want)
		}
	}
}

func checkoutForm(nonce, card string) url.Values {
	return url.Values{
		"idempotency_key": {nonce},
		"name":            {"Ada Lovelace"}, "line1": {"1 Analytical Way"}, "city": {"London"}, "postal_code": {"N1 9GU"}, "country": {"gb"},
		"card_number": {card}, "exp_month": {"12"}, "exp_year": {"2030"}, "cvc": {"123"},
	}
}

var nonceRE = regexp.MustCompile(`name="idempotency_key" value="([^"]+)"`)

func TestCheckoutAndOrderPages(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	b.signUp("ada@example.com", "Ada Lovelace")

	r := b.do("GET", "/checkout", nil)
	wantStatus(t, r, http.StatusOK)
	wantContains(t, r.body, "Your cart is empty")

	b.do("POST", "/cart/add", url.Values{"product_id": {"prd_01"}, "quantity": {"2"}})
	r = b.do("GET", "/checkout", nil)
	wantStatus(t, r, http.StatusOK)
	wantContains(t, r.body, `action="/checkout"`, "2 × Desk Lamp", "$49.00", `name="card_number"`, `value="Ada Lovelace"`)
	m := nonceRE.FindStringSubmatch(r.body)
	if m == nil {
		t.Fatalf("no nonce in the form:\n%s", r.body)
	}
	nonce := m[1]
	if again := nonceRE.FindStringSubmatch(b.do("GET", "/checkout", nil).body); again[1] == nonce {
		t.Error("each rendering of the form must carry a new nonce")
	}

	// Declined: a friendly message, the address kept, the card not echoed,
	// and a fresh nonce for the next try.
	r = b.do("POST", "/checkout", checkoutForm(nonce, "4000 0000 0000 0002"))
	wantStatus(t, r, http.StatusPaymentRequired)
	wantContains(t, r.body, "card was declined", `value="1 Analytical Way"`, `<option value="GB" selected>`)
	if strings.Contains(r.body, `value="4000`) {
		t.Error("card number echoed back")
	}
	if k := nonceRE.FindStringSubmatch(r.body)[1]; k == nonce {
		t.Error("declined form kept the used nonce")
	}

	// Out of stock: the stock fell after the hammers went in the cart (the
	// cart took all 3 there were), and checkout says which product is short.
	b.do("POST", "/cart/add", url.Values{"product_id": {"prd_03"}, "quantity": {"3"}})
	e.catalog.setStock("prd_03", 1)
	r = b.do("POST", "/checkout", checkoutForm("k-stock", "4242424242424242"))
	wantStatus(t, r, http.StatusConflict)
	wantContains(t, r.body, "no longer in stock", "Claw Hammer")
	if strings.Contains(r.body, "prd_03 ") || strings.Contains(r.body, "(prd_03)") {
		t.Error("the out-of-stock message names the product id")
	}
	b.do("POST", "/cart/items/prd_03/remove", nil)
	e.catalog.setStock("prd_03", 3)

	// Invalid input.
	bad := checkoutForm("k-bad", "4242424242424242")
	bad.Set("exp_month", "soon")
	r = b.do("POST", "/checkout", bad)
	wantStatus(t, r, http.StatusUnprocessableEntity)
	wantContains(t, r.body, "expiry month and year")
	bad = checkoutForm("k-bad2", "4242424242424242")
	bad.Set("city", "")
	wantStatus(t, b.do("POST", "/checkout", bad), http.StatusUnprocessableEntity)
	wantStatus(t, b.do("POST", "/checkout", checkoutForm("", "4242424242424242")), http.StatusBadRequest)
	wantStatus(t, b.do("POST", "/checkout", checkoutForm("bad nonce!", "4242424242424242")), http.StatusBadRequest)
	if e.orders.count() != 0 {
		t.Fatalf("failed checkouts made %d orders", e.orders.count())
	}

	// Success, and a double submit of the same form places one order.
	r = b.do("POST", "/checkout", checkoutForm("k-ok", "4242 4242 4242 4242"))
	wantStatus(t, r, http.StatusSeeOther)
	if r.Header.Get("Location") != "/orders/GM-0000-0001" {
		t.Fatalf("Location %q", r.Header.Get("Location"))
	}
	r = b.do("POST", "/checkout", checkoutForm("k-ok", "4242 4242 4242 4242"))
	if r.Header.Get("Location") != "/orders/GM-0000-0001" || e.orders.count() != 1 {
		t.Fatalf("double submit: Location %q, %d orders", r.Header.Get("Location"), e.orders.count())
	}
	if keys := e.checkout.keysCalled(); keys[len(keys)-1] != keys[len(keys)-2] || !strings.HasPrefix(keys[len(keys)-1], "web.k-ok.") {
		t.Fatalf("double submit used keys %q", keys[len(keys)-2:])
	}

	r = b.do("GET", "/orders/GM-0000-0001", nil)
	wantStatus(t, r, http.StatusOK)
	wantContains(t, r.body, "Thank you! Your order is confirmed.", "GM-0000-0001", "$49.00", "$5.00", "$54.00", "GM123456", "1 Analytical Way", "United Kingdom", "14 Mar 2025",
		"Payment: Paid", "Shipping: Preparing to ship", `src="/media/thumbs/prd_01_small.jpg"`)
	if strings.Contains(r.body, "ord_001") || strings.Contains(r.body, "Captured") || strings.Contains(r.body, "Created") {
		t.Errorf("the order page shows an internal id or status word:\n%s", r.body)
	}
	// The old address of the page still works (links in older e-mails).
	wantStatus(t, b.do("GET", "/orders/ord_001", nil), http.StatusOK)
	if strings.Contains(r.body, `http-equiv="refresh"`) {
		t.Error("confirmed order page refreshes")
	}
	r = b.do("GET", "/orders", nil)
	wantStatus(t, r, http.StatusOK)
	wantContains(t, r.body, `href="/orders/GM-0000-0001"`, ">GM-0000-0001<", "Confirmed", "$54.00")
	if strings.Contains(r.body, "ord_001") {
		t.Errorf("the orders page shows an internal id:\n%s", r.body)
	}

	// A pending order's page waits for it on the server, then offers to
	// check again (it never refreshes by itself).
	e.orders.put(order.Order{ID: "ord_050", UserID: "acct_01", Status: order.StatusPending, CreatedAt: seedTime})
	r = b.do("GET", "/orders/ord_050", nil)
	wantContains(t, r.body, "finishing your order", `href="/orders/ord_050">Check again</a>`)
	if strings.Contains(r.body, `http-equiv="refresh"`) {
		t.Error("a pending order's page refreshes itself")
	}

	// Another customer's order is a plain 404.
	other := e.browser()
	other.signUp("bob@example.com", "Bob")
	r = other.do("GET", "/orders/ord_001", nil)
	wantStatus(t, r, http.StatusNotFound)
	wantStatus(t, other.do("GET", "/orders/GM-0000-0001", nil), http.StatusNotFound)
	if strings.Contains(r.body, "Ada") || strings.Contains(r.body, "Analytical") {
		t.Error("404 page leaks the order")
	}
}

func TestCheckoutUnavailableKeepsKey(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	b.signUp("ada@example.com", "Ada")
	b.do("POST", "/cart/add", url.Values{"product_id": {"prd_01"}})
	d := e.deps
	d.Checkout = stubCheckout{err: errs.E(errs.Unavailable, errs.Msg("payment service is unavailable"))}
	srv := New(d)
	req := httptest.NewRequest("POST", "/checkout", strings.NewReader(checkoutForm("k-keep", "4242424242424242").Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(&http.Cookie{Name: SessionCookie, Value: b.cookieValue(SessionCookie)})
	rec := serve(srv.Handler(), req)
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), `name="idempotency_key" value="k-keep"`) {
		t.Fatalf("unavailable checkout: %d\n%s", rec.Code, rec.Body)
	}
}

func TestCrossOriginFormRefused(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	form := url.Values{"product_id": {"prd_01"}}
	r := b.do("POST", "/cart/add", form, "Origin", "https://evil.example")
	wantStatus(t, r, http.StatusForbidden)
	wantContains(t, r.body, "<h1>Not allowed</h1>")
	wantStatus(t, b.do("POST", "/cart/add", form, "Referer", "https://evil.example/shop"), http.StatusForbidden)
	wantStatus(t, b.do("POST", "/logout", nil, "Sec-Fetch-Site", "cross-site"), http.StatusForbidden)
	if len(e.carts.carts) != 0 || b.cookieValue(CartCookie) != "" {
		t.Fatal("a refused form changed the cart")
	}
	wantStatus(t, b.do("POST", "/cart/add", form, "Origin", e.srv.URL), http.StatusSeeOther)
	wantStatus(t, b.do("POST", "/cart/add", form, "Referer", e.srv.URL+"/products/prd_01"), http.StatusSeeOther)
}

func TestHTMLErrorPages(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	r := b.do("GET", "/no/such/page", nil)
	wantStatus(t, r, http.StatusNotFound)
	wantContains(t, r.body, "Page not found", "Back to the shop", `href="/category/cat_lamps"`)
	wantStatus(t, b.do("GET", "/products/prd_nope", nil), http.StatusNotFound)
	r = b.do("DELETE", "/cart", nil)
	wantStatus(t, r, http.StatusMethodNotAllowed)
	if r.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("Allow %q", r.Header.Get("Allow"))
	}

	// Services down: a friendly 503, and the page still renders.
	e.catalog.down = true
	r = b.do("GET", "/", nil)
	wantStatus(t, r, http.StatusServiceUnavailable)
	wantContains(t, r.body, "We&#39;ll be right back")

	// Internal errors never leak their cause.
	d := e.deps
	d.Orders = brokenOrders{}
	h := New(d).Handler()
	b.signUp("ada@example.com", "Ada")
	req := httptestRequest("GET", "/orders", "")
	req.AddCookie(&http.Cookie{Name: SessionCookie, Value: b.cookieValue(SessionCookie)})
	rec := serve(h, req)
	if rec.Code != http.StatusInternalServerError || strings.Contains(rec.Body.String(), "disk on fire") || !strings.Contains(rec.Body.String(), "Something went wrong") {
		t.Fatalf("500 page: %d\n%s", rec.Code, rec.Body)
	}
	if rec.Header().Get("Cache-Control") != "no-store" {
		t.Errorf("error page Cache-Control %q", rec.Header().Get("Cache-Control"))
	}
}

func TestLocalPath(t *testing.T) {
	for in, want := range map[string]string{
		"":                   "/",
		"/":                  "/",
		"/orders?page=abc":   "/orders?page=abc",
		"/products/prd_01":   "/products/prd_01",
		"//evil.example":     "/",
		"/\\evil.example":    "/",
		"https://evil.test/": "/",
		"orders":             "/",
		"/a\r\nSet-Cookie:x": "/",
	} {
		if got := localPath(in); got != want {
			t.Errorf("localPath(%q) = %q, want %q", in, got, want)
		}
	}
}

// The header degrades rather than failing the page when the account
// service cannot answer.
func TestHeaderSurvivesAccountOutage(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	b.signUp("ada@example.com", "Ada")
	e.clock.Advance(sessionCacheTTL + 1)
	e.accounts.down = true
	r := b.do("GET", "/products/prd_01", nil)
	wantStatus(t, r, http.StatusOK)
	wantContains(t, r.body, "<h1>Desk Lamp</h1>")
	// But a page about the customer fails visibly.
	wantStatus(t, b.do("GET", "/orders", nil), http.StatusServiceUnavailable)
	// A session store that is down is no 5xx storm: the catalog is served
	// as to a visitor, the API says so too, and nothing is written in the
	// customer's name into a new visitor's cart.
	wantStatus(t, b.do("GET", "/", nil), http.StatusOK)
	wantStatus(t, b.do("GET", "/api/v1/products/prd_01", nil), http.StatusOK)
	wantStatus(t, b.do("GET", "/api/v1/me", nil), http.StatusServiceUnavailable)
	// Their cart is not shown as empty: it is unknown for now.
	wantStatus(t, b.do("GET", "/api/v1/cart", nil), http.StatusServiceUnavailable)
	wantStatus(t, b.do("GET", "/cart", nil), http.StatusServiceUnavailable)
	r = b.do("POST", "/api/v1/cart/items", map[string]any{"product_id": "prd_01", "quantity": 1})
	wantStatus(t, r, http.StatusServiceUnavailable)
	for _, c := range r.Header.Values("Set-Cookie") {
		if strings.HasPrefix(c, CartCookie+"=") {
			t.Errorf("a visitor's cart was made for a customer whose session could not be checked: %s", c)
		}
	}
	// Back: the customer is still logged in.
	e.accounts.down = false
	wantStatus(t, b.do("GET", "/api/v1/me", nil), http.StatusOK)
}

// stubCheckout fails every checkout with err.
type stubCheckout struct{ err error }

func (c stubCheckout) PlaceOrder(context.Context, checkout.Customer, string, checkout.Request) (checkout.Result, error) {
	return checkout.Result{}, c.err
}

func (c stubCheckout) Checkout(context.Context, string, string) (checkout.Result, error) {
	return checkout.Result{}, c.err
}

func (c stubCheckout) QuoteOrder(context.Context, checkout.QuoteRequest) (checkout.Quote, error) {
	return checkout.Quote{}, c.err
}

type brokenOrders struct{}

func (brokenOrders) GetOrder(context.Context, string) (order.Order, error) {
	return order.Order{}, errors.New("disk on fire")
}

func (brokenOrders) ListOrders(context.Context, string, page.Request) (order.OrderPage, error) {
	return order.OrderPage{}, errs.E("orders.List", errors.New("disk on fire"))
}
