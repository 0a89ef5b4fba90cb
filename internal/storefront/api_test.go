package storefront

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/account"
	"github.com/globomantics/globomantics/internal/cart"
	"github.com/globomantics/globomantics/internal/catalog"
	"github.com/globomantics/globomantics/internal/checkout"
	"github.com/globomantics/globomantics/internal/platform/httpx"
	"github.com/globomantics/globomantics/internal/platform/money"
)

func TestAPICategoriesCachedInFrontOfCatalog(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	r := b.do("GET", "/api/v1/categories", nil)
	wantStatus(t, r, http.StatusOK)
	var got struct{ Items []catalog.Category }
	r.json(t, &got)
	if len(got.Items) != 2 || got.Items[0] != (catalog.Category{ID: "cat_lamps", Name: "Lamps"}) {
		t.Fatalf("categories = %+v", got.Items)
	}
	if cc := r.Header.Get("Cache-Control"); cc != catalogCacheControl {
		t.Errorf("Cache-Control = %q", cc)
	}
	b.do("GET", "/api/v1/categories", nil)
	if e.catalog.catListCalls != 1 {
		t.Fatalf("catalog asked %d times within the cache lifetime, want 1", e.catalog.catListCalls)
	}
	e.clock.Advance(61 * time.Second)
	b.do("GET", "/api/v1/categories", nil)
	if e.catalog.catListCalls != 2 {
		t.Fatalf("catalog asked %d times after expiry, want 2", e.catalog.catListCalls)
	}

	// With the catalog down, browsing stays available on the older copy...
	e.catalog.down = true
	e.clock.Advance(61 * time.Second)
	r = b.do("GET", "/api/v1/categories", nil)
	wantStatus(t, r, http.StatusOK)
	r.json(t, &got)
	if len(got.Items) != 2 {
		t.Fatalf("stale categories = %+v", got.Items)
	}
	// ...and without any copy it fails visibly.
	e2 := newEnv(t)
	e2.catalog.down = true
	wantProblem(t, e2.browser().do("GET", "/api/v1/categories", nil), http.StatusServiceUnavailable)
}

func TestAPIProducts(t *testing.T) {
	e := newEnv(t)
	b := e.browser()

	r := b.do("GET", "/api/v1/products?page_size=3", nil)
	wantStatus(t, r, http.StatusOK)
	var pg List[catalog.Product]
	r.json(t, &pg)
	if len(pg.Items) != 3 || pg.Items[0].ID != "prd_01" || pg.NextPageToken == "" {
		t.Fatalf("page 1 = %+v", pg)
	}
	if pg.Items[0].Price != money.USD(2450) || pg.Items[0].Thumbnails["medium"] == "" {
		t.Errorf("product = %+v", pg.Items[0])
	}
	if !strings.Contains(r.body, `"price":{"amount":2450,"currency":"USD"}`) {
		t.Errorf("money shape wrong: %s", r.body)
	}
	r = b.do("GET", "/api/v1/products?page_size=3&page_token="+pg.NextPageToken, nil)
	wantStatus(t, r, http.StatusOK)
	r.json(t, &pg)
	if len(pg.Items) != 1 || pg.Items[0].ID != "prd_04" || pg.NextPageToken != "" {
		t.Fatalf("page 2 = %+v", pg)
	}

	r = b.do("GET", "/api/v1/products?category=cat_tools", nil)
	r.json(t, &pg)
	if len(pg.Items) != 2 || pg.Items[0].ID != "prd_03" {
		t.Fatalf("tools = %+v", pg)
	}
	r = b.do("GET", "/api/v1/products?category=cat_nope", nil)
	wantStatus(t, r, http.StatusOK)
	if !strings.Contains(r.body, `"items":[]`) {
		t.Errorf("empty list must be [], got %s", r.body)
	}

	wantProblem(t, b.do("GET", "/api/v1/products?page_token=garbage", nil), http.StatusBadRequest)
	wantProblem(t, b.do("GET", "/api/v1/products?page_size=0", nil), http.StatusBadRequest)
	wantProblem(t, b.do("GET", "/api/v1/products?page_size=101", nil), http.StatusBadRequest)
}

func TestAPIProductETag(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	for _, path := range []string{"/api/v1/products/prd_01", "/api/v1/products?page_size=2"} {
		r := b.do("GET", path, nil)
		wantStatus(t, r, http.StatusOK)
		etag := r.Header.Get("ETag")
		if !strings.HasPrefix(etag, `"`) || r.Header.Get("Cache-Control") != catalogCacheControl {
			t.Fatalf("%s: ETag %q Cache-Control %q", path, etag, r.Header.Get("Cache-Control"))
		}
		r = b.do("GET", path, nil, "If-None-Match", etag)
		wantStatus(t, r, http.StatusNotModified)
		if r.body != "" || r.Header.Get("ETag") != etag {
			t.Fatalf("304 with body %q / ETag %q", r.body, r.Header.Get("ETag"))
		}
		wantStatus(t, b.do("GET", path, nil, "If-None-Match", `W/`+etag+`, "x"`), http.StatusNotModified)
		wantStatus(t, b.do("GET", path, nil, "If-None-Match", `"stale"`), http.StatusOK)
	}
	// A changed product gets a new ETag.
	r := b.do("GET", "/api/v1/products/prd_01", nil)
	old := r.Header.Get("ETag")
	p := e.catalog.products["prd_01"]
	p.Stock = 9
	e.catalog.products["prd_01"] = p
	e.clock.Advance(pageCacheTTL) // the answer is shared that long
	r = b.do("GET", "/api/v1/products/prd_01", nil, "If-None-Match", old)
	wantStatus(t, r, http.StatusOK)
	if r.Header.Get("ETag") == old {
		t.Fatal("ETag did not change with the product")
	}
}

func TestAPIProduct(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	r := b.do("GET", "/api/v1/products/prd_03", nil)
	wantStatus(t, r, http.StatusOK)
	var p catalog.Product
	r.json(t, &p)
	if p.Name != "Claw Hammer" || p.Stock != 3 {
		t.Fatalf("product = %+v", p)
	}
	pr := wantProblem(t, b.do("GET", "/api/v1/products/prd_nope", nil), http.StatusNotFound)
	if pr.Title != "Not Found" || pr.Instance != "/api/v1/products/prd_nope" {
		t.Errorf("problem = %+v", pr)
	}
}

func TestAPISearch(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	r := b.do("GET", "/api/v1/search?q=lamp", nil)
	wantStatus(t, r, http.StatusOK)
	var got List[catalog.Product]
	r.json(t, &got)
	// Hit order is kept; a hit whose product is gone is left out.
	if len(got.Items) != 2 || got.Items[0].ID != "prd_02" || got.Items[1].ID != "prd_01" {
		t.Fatalf("search = %+v", got.Items)
	}
	r = b.do("GET", "/api/v1/search?q=tool&page_size=1", nil)
	r.json(t, &got)
	if len(got.Items) != 1 || got.Items[0].ID != "prd_03" || got.NextPageToken == "" {
		t.Fatalf("page 1 = %+v", got)
	}
	r = b.do("GET", "/api/v1/search?q=tool&page_size=1&page_token="+got.NextPageToken, nil)
	r.json(t, &got)
	if len(got.Items) != 1 || got.Items[0].ID != "prd_04" || got.NextPageToken != "" {
		t.Fatalf("page 2 = %+v", got)
	}
	r = b.do("GET", "/api/v1/search?q=zzz", nil)
	wantStatus(t, r, http.StatusOK)
	if !strings.Contains(r.body, `"items":[]`) {
		t.Errorf("no hits must give items [], got %s", r.body)
	}
	wantProblem(t, b.do("GET", "/api/v1/search?q=", nil), http.StatusBadRequest)
	wantProblem(t, b.do("GET", "/api/v1/search?q=+++", nil), http.StatusBadRequest)
	wantProblem(t, b.do("GET", "/api/v1/search?q=lamp&page_size=x", nil), http.StatusBadRequest)
}

func TestAPIAccountsAndSessions(t *testing.T) {
	e := newEnv(t)
	b := e.browser()

	r := b.do("POST", "/api/v1/accounts", map[string]string{"email": "ada@example.com", "password": "password123", "name": "Ada"})
	wantStatus(t, r, http.StatusCreated)
	if r.body != `{"id":"acct_01","email":"ada@example.com","name":"Ada"}`+"\n" {
		t.Fatalf("account body %s", r.body)
	}
	if cc := r.Header.Get("Cache-Control"); cc != "private, no-store" {
		t.Errorf("Cache-Control = %q", cc)
	}
	wantProblem(t, b.do("POST", "/api/v1/accounts", map[string]string{"email": "ADA@example.com", "password": "password123", "name": "Ada"}), http.StatusConflict)
	p := wantProblem(t, b.do("POST", "/api/v1/accounts", map[string]string{"email": "bob@example.com", "password": "short", "name": "Bob"}), http.StatusUnprocessableEntity)
	if !strings.Contains(p.Detail, "8 characters") {
		t.Errorf("detail %q", p.Detail)
	}
	p = wantProblem(t, b.do("POST", "/api/v1/accounts", `{"email":"bob@example.com","password":"password123","name":"Bob","admin":true}`), http.StatusBadRequest)
	if !strings.Contains(p.Detail, "admin") {
		t.Errorf("unknown field detail %q", p.Detail)
	}
	wantProblem(t, b.do("POST", "/api/v1/accounts", `{"email":`), http.StatusBadRequest)
	big := `{"email":"bob@example.com","password":"password123","name":"` + strings.Repeat("x", httpx.MaxBodyBytes) + `"}`
	wantProblem(t, b.do("POST", "/api/v1/accounts", big), http.StatusRequestEntityTooLarge)
	if len(e.accounts.byEmail) != 1 {
		t.Fatalf("rejected registrations changed the accounts: %d", len(e.accounts.byEmail))
	}

	// Not logged in yet.
	wantProblem(t, b.do("GET", "/api/v1/me", nil), http.StatusUnauthorized)
	r = b.do("POST", "/api/v1/sessions", map[string]string{"email": "ada@example.com", "password": "wrong-password"})
	wantProblem(t, r, http.StatusUnauthorized)
	if r.cookie(SessionCookie) != nil {
		t.Fatal("failed login set a session cookie")
	}
	wantProblem(t, b.do("POST", "/api/v1/sessions", `{"email":"ada@example.com","password":"password123","remember":true}`), http.StatusBadRequest)

	r = b.do("POST", "/api/v1/sessions", map[string]string{"email": "ada@example.com", "password": "password123"})
	wantStatus(t, r, http.StatusOK)
	var a account.Account
	r.json(t, &a)
	if a.ID != "acct_01" || strings.Contains(r.body, "token") {
		t.Fatalf("login answer %s", r.body)
	}
	c := r.cookie(SessionCookie)
	if c == nil || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || c.Secure || c.MaxAge <= 0 {
		t.Fatalf("session cookie %+v", c)
	}
	token := c.Value

	r = b.do("GET", "/api/v1/me", nil)
	wantStatus(t, r, http.StatusOK)
	r.json(t, &a)
	if a.Email != "ada@example.com" || r.Header.Get("Cache-Control") != "private, no-store" {
		t.Fatalf("me = %+v, Cache-Control %q", a, r.Header.Get("Cache-Control"))
	}

	r = b.do("DELETE", "/api/v1/sessions", nil)
	wantStatus(t, r, http.StatusNoContent)
	if c := r.cookie(SessionCookie); c == nil || c.MaxAge >= 0 || c.Value != "" || !c.HttpOnly {
		t.Fatalf("logout cookie %+v", c)
	}
	wantProblem(t, b.do("GET", "/api/v1/me", nil), http.StatusUnauthorized)
	// The old token is dead at once, though its lookup was cached: the
	// fake clock has not moved, so only the cache deletion makes this 401.
	other := e.browser()
	wantProblem(t, other.do("GET", "/api/v1/me", nil, "Cookie", SessionCookie+"="+token), http.StatusUnauthorized)
	// Logging out without a session is fine.
	wantStatus(t, other.do("DELETE", "/api/v1/sessions", nil), http.StatusNoContent)
}

func TestLogoutFailureKeepsSession(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	b.signUp("ada@example.com", "Ada")
	e.accounts.down = true
	r := b.do("DELETE", "/api/v1/sessions", nil)
	wantProblem(t, r, http.StatusServiceUnavailable)
	if r.cookie(SessionCookie) != nil {
		t.Fatal("a failed logout cleared the cookie")
	}
	e.accounts.down = false
	wantStatus(t, b.do("GET", "/api/v1/me", nil), http.StatusOK)
}

func TestSecureCookies(t *testing.T) {
	e := newEnv(t)
	d := e.deps
	d.SecureCookies = true
	h := New(d).Handler()
	if _, err := e.accounts.Register(t.Context(), account.Registration{Email: "ada@example.com", Password: "password123", Name: "Ada"}); err != nil {
		t.Fatal(err)
	}
	req := httptestRequest("POST", "/api/v1/sessions", `{"email":"ada@example.com","password":"password123"}`)
	req.AddCookie(&http.Cookie{Name: "__Host-" + CartCookie, Value: strings.Repeat("a", 43)})
	rec := serve(h, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d %s", rec.Code, rec.Body)
	}
	for _, c := range rec.Result().Cookies() {
		// __Host-: Secure, Path=/ and no Domain, or browsers refuse it.
		if !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || !strings.HasPrefix(c.Name, "__Host-") || c.Path != "/" || c.Domain != "" {
			t.Errorf("cookie %s not secure: %+v", c.Name, c)
		}
	}
	if len(rec.Result().Cookies()) != 2 {
		t.Errorf("want session cookie set and cart cookie cleared, got %v", rec.Result().Cookies())
	}
	// The session cookie, under its __Host- name, is what logs the customer in.
	var sess *http.Cookie
	for _, c := range rec.Result().Cookies() {
		if c.Name == "__Host-"+SessionCookie {
			sess = c
		}
	}
	if sess == nil {
		t.Fatal("no __Host- session cookie")
	}
	me := httptestRequest("GET", "/api/v1/me", "")
	me.AddCookie(&http.Cookie{Name: sess.Name, Value: sess.Value})
	if rec := serve(h, me); rec.Code != http.StatusOK {
		t.Errorf("GET /api/v1/me with the __Host- cookie: %d", rec.Code)
	}
	// A cookie without the prefix (planted over plain HTTP) is ignored.
	me = httptestRequest("GET", "/api/v1/me", "")
	me.AddCookie(&http.Cookie{Name: SessionCookie, Value: sess.Value})
	if rec := serve(h, me); rec.Code != http.StatusUnauthorized {
		t.Errorf("GET /api/v1/me with an unprefixed cookie: %d, want 401", rec.Code)
	}
}

func TestSessionLookupCachedBriefly(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	b.signUp("ada@example.com", "Ada")
	before := e.accounts.calls()
	for range 3 {
		wantStatus(t, b.do("GET", "/api/v1/me", nil), http.StatusOK)
	}
	if n := e.accounts.calls() - before; n != 0 {
		t.Fatalf("Authenticate called %d times right after login, want 0 (cached)", n)
	}
	e.clock.Advance(sessionCacheTTL + time.Second)
	wantStatus(t, b.do("GET", "/api/v1/me", nil), http.StatusOK)
	wantStatus(t, b.do("GET", "/api/v1/me", nil), http.StatusOK)
	if n := e.accounts.calls() - before; n != 1 {
		t.Fatalf("Authenticate called %d times after expiry, want 1", n)
	}
	// The cache holds no usable token.
	tok := b.cookieValue(SessionCookie)
	if _, ok, _ := e.cache.Get(t.Context(), "storefront:session:"+tok); ok {
		t.Fatal("cache keyed by the raw token")
	}
	if _, ok, _ := e.cache.Get(t.Context(), sessionCacheKey(tok)); !ok {
		t.Fatal("lookup not cached under the token's hash")
	}
}

func TestTwoInstancesServeTheSameUser(t *testing.T) {
	a := newEnv(t)
	b := a.browser()
	b.signUp("ada@example.com", "Ada")
	b.do("POST", "/api/v1/cart/items", map[string]any{"product_id": "prd_01", "quantity": 2})

	// A second instance with its own (empty) cache over the same services.
	d := a.deps
	d.Cache = nil
	other := New(d)
	req := httptestRequest("GET", "/api/v1/me", "")
	req.AddCookie(&http.Cookie{Name: SessionCookie, Value: b.cookieValue(SessionCookie)})
	rec := serve(other.Handler(), req)
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "ada@example.com") {
		t.Fatalf("other instance: %d %s", rec.Code, rec.Body)
	}
	req = httptestRequest("GET", "/api/v1/cart", "")
	req.AddCookie(&http.Cookie{Name: SessionCookie, Value: b.cookieValue(SessionCookie)})
	rec = serve(other.Handler(), req)
	if !strings.Contains(rec.Body.String(), `"quantity":2`) {
		t.Fatalf("other instance cart: %s", rec.Body)
	}
}

func TestAPICart(t *testing.T) {
	e := newEnv(t)
	b := e.browser()

	r := b.do("GET", "/api/v1/cart", nil)
	wantStatus(t, r, http.StatusOK)
	if r.body != `{"items":[],"total":{"amount":0,"currency":"USD"}}`+"\n" || r.cookie(CartCookie) != nil {
		t.Fatalf("empty cart %s, cookies %v", r.body, r.Cookies())
	}
	if r.Header.Get("Cache-Control") != "private, no-store" {
		t.Errorf("Cache-Control %q", r.Header.Get("Cache-Control"))
	}

	// Bad adds change nothing and set no cookie.
	wantProblem(t, b.do("POST", "/api/v1/cart/items", map[string]any{"product_id": "prd_nope", "quantity": 1}), http.StatusNotFound)
	wantProblem(t, b.do("POST", "/api/v1/cart/items", map[string]any{"product_id": "prd_01", "quantity": 0}), http.StatusUnprocessableEntity)
	wantProblem(t, b.do("POST", "/api/v1/cart/items", map[string]any{"product_id": "prd_01", "quantity": 100}), http.StatusUnprocessableEntity)
	wantProblem(t, b.do("POST", "/api/v1/cart/items", map[string]any{"quantity": 1}), http.StatusUnprocessableEntity)
	wantProblem(t, b.do("POST", "/api/v1/cart/items", `{"product_id":"prd_01","quantity":1,"price":1}`), http.StatusBadRequest)
	wantProblem(t, b.do("POST", "/api/v1/cart/items", `{"product_id":"prd_01","quantity":"two"}`), http.StatusBadRequest)
	if b.cookieValue(CartCookie) != "" || len(e.carts.carts) != 0 {
		t.Fatalf("failed adds left state: cookie %q carts %v", b.cookieValue(CartCookie), e.carts.carts)
	}

	r = b.do("POST", "/api/v1/cart/items", map[string]any{"product_id": "prd_01", "quantity": 2})
	wantStatus(t, r, http.StatusOK)
	c := r.cookie(CartCookie)
	if c == nil || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || !validCartToken(c.Value) {
		t.Fatalf("cart cookie %+v", c)
	}
	var got cart.Cart
	r.json(t, &got)
	if len(got.Items) != 1 || got.Items[0].LineTotal != money.USD(4900) || got.Total != money.USD(4900) {
		t.Fatalf("cart = %+v", got)
	}
	if len(e.carts.get("anon:"+c.Value)) != 1 {
		t.Fatal("item not in the anonymous cart")
	}
	r = b.do("POST", "/api/v1/cart/items", map[string]any{"product_id": "prd_03", "quantity": 1})
	if r.cookie(CartCookie) != nil {
		t.Error("cart cookie set again for an existing cart")
	}

	r = b.do("PUT", "/api/v1/cart/items/prd_01", map[string]any{"quantity": 5})
	wantStatus(t, r, http.StatusOK)
	r.json(t, &got)
	if got.Items[0].Quantity != 5 || got.Total != money.USD(5*2450+1500) {
		t.Fatalf("after PUT %+v", got)
	}
	wantProblem(t, b.do("PUT", "/api/v1/cart/items/prd_01", map[string]any{"quantity": 100}), http.StatusUnprocessableEntity)
	wantProblem(t, b.do("PUT", "/api/v1/cart/items/prd_01", map[string]any{"quantity": -1}), http.StatusUnprocessableEntity)
	wantProblem(t, b.do("PUT", "/api/v1/cart/items/prd_01", map[string]any{}), http.StatusUnprocessableEntity)
	wantProblem(t, b.do("PUT", "/api/v1/cart/items/prd_nope", map[string]any{"quantity": 1}), http.StatusNotFound)
	r = b.do("GET", "/api/v1/cart", nil)
	r.json(t, &got)
	if got.Items[0].Quantity != 5 || len(got.Items) != 2 {
		t.Fatalf("rejected PUTs changed the cart: %+v", got)
	}

	r = b.do("PUT", "/api/v1/cart/items/prd_01", map[string]any{"quantity": 0})
	wantStatus(t, r, http.StatusOK)
	r.json(t, &got)
	if len(got.Items) != 1 || got.Items[0].ProductID != "prd_03" {
		t.Fatalf("quantity 0 did not remove: %+v", got)
	}
	r = b.do("DELETE", "/api/v1/cart/items/prd_03", nil)
	wantStatus(t, r, http.StatusOK)
	r.json(t, &got)
	if len(got.Items) != 0 || !strings.Contains(r.body, `"items":[]`) {
		t.Fatalf("after DELETE %s", r.body)
	}
	wantStatus(t, b.do("DELETE", "/api/v1/cart/items/prd_03", nil), http.StatusOK)
	// DELETE without any cart is fine and creates nothing.
	fresh := e.browser()
	r = fresh.do("DELETE", "/api/v1/cart/items/prd_01", nil)
	wantStatus(t, r, http.StatusOK)
	if r.cookie(CartCookie) != nil {
		t.Error("DELETE created a cart cookie")
	}
}

func TestAnonymousCartMergedOnLogin(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	if _, err := e.accounts.Register(t.Context(), account.Registration{Email: "ada@example.com", Password: "password123", Name: "Ada"}); err != nil {
		t.Fatal(err)
	}
	e.carts.carts["user:acct_01"] = []cart.Item{{ProductID: "prd_01", Name: "Desk Lamp", Quantity: 1, UnitPrice: money.USD(2450), LineTotal: money.USD(2450)}}

	b.do("POST", "/api/v1/cart/items", map[string]any{"product_id": "prd_01", "quantity": 2})
	b.do("POST", "/api/v1/cart/items", map[string]any{"product_id": "prd_04", "quantity": 1})
	anon := b.cookieValue(CartCookie)
	if anon == "" {
		t.Fatal("no cart cookie")
	}

	r := b.do("POST", "/api/v1/sessions", map[string]string{"email": "ada@example.com", "password": "password123"})
	wantStatus(t, r, http.StatusOK)
	if c := r.cookie(CartCookie); c == nil || c.MaxAge >= 0 {
		t.Fatalf("cart cookie not cleared: %+v", c)
	}
	if b.cookieValue(CartCookie) != "" {
		t.Fatal("browser still holds the cart cookie")
	}
	r = b.do("GET", "/api/v1/cart", nil)
	var got cart.Cart
	r.json(t, &got)
	if len(got.Items) != 2 || got.Items[0].Quantity != 3 || got.Items[1].ProductID != "prd_04" {
		t.Fatalf("merged cart %+v", got)
	}
	if len(e.carts.get("anon:"+anon)) != 0 {
		t.Fatal("anonymous cart not emptied")
	}
	// Adding while logged in goes to the account's cart and sets no cookie.
	r = b.do("POST", "/api/v1/cart/items", map[string]any{"product_id": "prd_03", "quantity": 1})
	if r.cookie(CartCookie) != nil || len(e.carts.get("user:acct_01")) != 3 {
		t.Fatal("logged-in add did not use the account's cart")
	}
}

func TestAPICheckout(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	body := map[string]any{
		"shipping_address": map[string]string{"name": "Ada Lovelace", "line1": "1 Analytical Way", "city": "London", "postal_code": "N1 9GU", "country": "GB"},
		"payment":          map[string]any{"card_number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"},
	}

	wantProblem(t, b.do("POST", "/api/v1/checkout", body, "Idempotency-Key", "k1"), http.StatusUnauthorized)
	b.signUp("ada@example.com", "Ada")
	wantProblem(t, b.do("POST", "/api/v1/checkout", body), http.StatusBadRequest)
	wantProblem(t, b.do("POST", "/api/v1/checkout", `{"shipping_address":{},"payment":{},"coupon":"FREE"}`, "Idempotency-Key", "k0"), http.StatusBadRequest)
	// An empty cart is invalid.
	wantProblem(t, b.do("POST", "/api/v1/checkout", body, "Idempotency-Key", "k-empty"), http.StatusUnprocessableEntity)

	b.do("POST", "/api/v1/cart/items", map[string]any{"product_id": "prd_01", "quantity": 2})
	r := b.do("POST", "/api/v1/checkout", body, "Idempotency-Key", "k1")
	wantStatus(t, r, http.StatusCreated)
	var o Order
	r.json(t, &o)
	if o.ID != "ord_001" || o.Status != "confirmed" || o.Total != money.USD(2*2450+500) || len(o.Items) != 1 {
		t.Fatalf("order %+v", o)
	}
	if r.Header.Get("Location") != "/api/v1/orders/ord_001" || r.Header.Get("Cache-Control") != "private, no-store" {
		t.Errorf("headers %v", r.Header)
	}
	for _, secret := range []string{"user_id", "acct_01", "pay_secret", "shp_secret", `"email"`} {
		if strings.Contains(r.body, secret) {
			t.Errorf("public order leaks %q: %s", secret, r.body)
		}
	}
	wantContains(t, r.body, `"payment":{"status":"captured"}`, `"tracking_number":"GM123456"`, `"created_at":"2025-03-14T09:26:53Z"`)

	// Same key, same body: the same order, no second one.
	r = b.do("POST", "/api/v1/checkout", body, "Idempotency-Key", "k1")
	wantStatus(t, r, http.StatusCreated)
	r.json(t, &o)
	if o.ID != "ord_001" || e.orders.count() != 1 {
		t.Fatalf("repeat made order %s, %d orders", o.ID, e.orders.count())
	}
	// Same key, another body.
	other := map[string]any{"shipping_address": body["shipping_address"], "payment": map[string]any{"card_number": "5555555555554444", "exp_month": 1, "exp_year": 2031, "cvc": "999"}}
	wantProblem(t, b.do("POST", "/api/v1/checkout", other, "Idempotency-Key", "k1"), http.StatusUnprocessableEntity)

	// Declined.
	b.do("POST", "/api/v1/cart/items", map[string]any{"product_id": "prd_03", "quantity": 1})
	declined := map[string]any{"shipping_address": body["shipping_address"], "payment": map[string]any{"card_number": "4000000000000002", "exp_month": 12, "exp_year": 2030, "cvc": "123"}}
	wantProblem(t, b.do("POST", "/api/v1/checkout", declined, "Idempotency-Key", "k2"), http.StatusPaymentRequired)
	// Out of stock: the cart caps the hammers at the 3 in stock, then the
	// stock falls before checkout, which refuses, naming the product.
	var capped cart.Cart
	r = b.do("PUT", "/api/v1/cart/items/prd_03", map[string]any{"quantity": 4})
	wantStatus(t, r, http.StatusOK)
	r.json(t, &capped)
	if len(capped.Notices) != 1 || capped.Notices[0].Code != cart.NoticeCapped || capped.Items[0].Quantity != 3 {
		t.Fatalf("PUT of more than the stock: %+v", capped)
	}
	e.catalog.setStock("prd_03", 2)
	p := wantProblem(t, b.do("POST", "/api/v1/checkout", body, "Idempotency-Key", "k3"), http.StatusConflict)
	if !strings.Contains(p.Detail, "Claw Hammer") {
		t.Errorf("conflict detail %q", p.Detail)
	}
	// A failed payment makes no order.
	if e.orders.count() != 1 {
		t.Fatalf("%d orders after failed checkouts, want 1", e.orders.count())
	}
}

func TestAPICheckoutPending(t *testing.T) {
	e := newEnv(t)
	ada, bob := e.browser(), e.browser()
	ada.signUp("ada@example.com", "Ada")
	bob.signUp("bob@example.com", "Bob")
	body := map[string]any{
		"shipping_address": map[string]string{"name": "Ada Lovelace", "line1": "1 Analytical Way", "city": "London", "postal_code": "N1 9GU", "country": "GB"},
		"payment":          map[string]any{"card_number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"},
		"callback_url":     "https://ada.example/hooks/checkout",
	}
	ada.do("POST", "/api/v1/cart/items", map[string]any{"product_id": "prd_01", "quantity": 2})
	e.checkout.pending = true

	// Still running: 202, the checkout to poll, and the order as it will be.
	const key = "ada/key 1"
	r := ada.do("POST", "/api/v1/checkout", body, "Idempotency-Key", key)
	wantStatus(t, r, http.StatusAccepted)
	if loc := r.Header.Get("Location"); loc != "/api/v1/checkouts/ada%2Fkey%201" {
		t.Fatalf("202 Location %q", loc)
	}
	var v CheckoutView
	r.json(t, &v)
	if v.Key != key || v.State != "pending" || v.Done || v.Error != nil || v.Order.Status != "pending" ||
		v.Order.Total != money.USD(2*2450+500) || len(v.Order.Items) != 1 {
		t.Fatalf("202 body %+v", v)
	}
	if v.Callback == nil || v.Callback.URL != "https://ada.example/hooks/checkout" || v.Callback.State != "pending" {
		t.Fatalf("callback_url not passed through: %+v", v.Callback)
	}
	wantContains(t, r.body, `"error":null`)
	if e.orders.count() != 0 {
		t.Fatal("a pending checkout's order is already listed")
	}

	// The same key and body: still the same pending checkout.
	r = ada.do("POST", "/api/v1/checkout", body, "Idempotency-Key", key)
	wantStatus(t, r, http.StatusAccepted)
	// Another key while it runs: the cart is busy.
	wantProblem(t, ada.do("POST", "/api/v1/checkout", body, "Idempotency-Key", "other"), http.StatusConflict)

	// Polling: the owner sees it; another customer, or an unknown key, is
	// the same 404.
	loc := "/api/v1/checkouts/ada%2Fkey%201"
	r = ada.do("GET", loc, nil)
	wantStatus(t, r, http.StatusOK)
	if cc := r.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("GET checkout Cache-Control %q", cc)
	}
	r.json(t, &v)
	if v.State != "pending" || v.Done || v.Key != key {
		t.Fatalf("polled %+v", v)
	}
	theirs := wantProblem(t, bob.do("GET", loc, nil), http.StatusNotFound)
	missing := wantProblem(t, ada.do("GET", "/api/v1/checkouts/nope", nil), http.StatusNotFound)
	if theirs.Detail != missing.Detail {
		t.Fatalf("another's checkout distinguishable: %+v vs %+v", theirs, missing)
	}
	wantProblem(t, e.browser().do("GET", loc, nil), http.StatusUnauthorized)

	// Confirmed.
	e.checkout.finish("acct_01", key, nil)
	r = ada.do("GET", loc, nil)
	wantStatus(t, r, http.StatusOK)
	r.json(t, &v)
	if v.State != "confirmed" || !v.Done || v.Order.ID != "ord_001" || v.Order.Payment.Status != "captured" || v.Error != nil {
		t.Fatalf("confirmed %+v", v)
	}
	for _, secret := range []string{"user_id", "acct_01", "pay_secret", "shp_secret", `"email"`} {
		if strings.Contains(r.body, secret) {
			t.Errorf("public checkout leaks %q: %s", secret, r.body)
		}
	}
	// And a repeat of the POST is now the 201 of the order.
	r = ada.do("POST", "/api/v1/checkout", body, "Idempotency-Key", key)
	wantStatus(t, r, http.StatusCreated)
	if r.Header.Get("Location") != "/api/v1/orders/ord_001" {
		t.Fatalf("Location %q", r.Header.Get("Location"))
	}

	// Cancelled: the reason, as status and detail, and no order.
	ada.do("POST", "/api/v1/cart/items", map[string]any{"product_id": "prd_04", "quantity": 1})
	wantStatus(t, ada.do("POST", "/api/v1/checkout", body, "Idempotency-Key", "k2"), http.StatusAccepted)
	e.checkout.finish("acct_01", "k2", &checkout.Failure{Status: http.StatusPaymentRequired, Detail: "card declined"})
	r = ada.do("GET", "/api/v1/checkouts/k2", nil)
	wantStatus(t, r, http.StatusOK)
	r.json(t, &v)
	if v.State != "cancelled" || !v.Done || v.Error == nil || v.Error.Status != 402 || v.Error.Detail != "card declined" || v.Error.Title != "Payment Declined" {
		t.Fatalf("cancelled %+v (error %+v)", v, v.Error)
	}
	if e.orders.count() != 1 {
		t.Fatalf("%d orders, want 1", e.orders.count())
	}
}

func TestPublicCheckoutHidesInternalErrors(t *testing.T) {
	v := PublicCheckout(checkout.Result{Key: "k", State: "cancelled", Done: true,
		Error:    &checkout.Failure{Status: 500, Detail: "pq: relation checkouts does not exist"},
		Callback: &checkout.CallbackStatus{URL: "https://x.example/", State: "failed", Attempts: 3, LastError: "dial tcp 10.0.0.7:443: refused"}})
	b, _ := json.Marshal(v)
	if strings.Contains(string(b), "pq:") || strings.Contains(string(b), "10.0.0.7") || v.Error.Status != 500 {
		t.Fatalf("internals leak: %s", b)
	}
	// A result without State (an older checkout service) still reads right.
	if got := PublicCheckout(checkout.Result{Done: true}); got.State != "confirmed" || got.Error != nil {
		t.Fatalf("state from Done: %+v", got)
	}
	if got := PublicCheckout(checkout.Result{}); got.State != "pending" || got.Done {
		t.Fatalf("state from !Done: %+v", got)
	}
}

func TestAPIOrders(t *testing.T) {
	e := newEnv(t)
	ada, bob := e.browser(), e.browser()
	ada.signUp("ada@example.com", "Ada")
	bob.signUp("bob@example.com", "Bob")
	body := map[string]any{
		"shipping_address": map[string]string{"name": "Ada", "line1": "1 Way", "city": "London", "postal_code": "N1", "country": "GB"},
		"payment":          map[string]any{"card_number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"},
	}
	for _, key := range []string{"a", "b", "c"} {
		ada.do("POST", "/api/v1/cart/items", map[string]any{"product_id": "prd_04", "quantity": 1})
		wantStatus(t, ada.do("POST", "/api/v1/checkout", body, "Idempotency-Key", key), http.StatusCreated)
	}
	bob.do("POST", "/api/v1/cart/items", map[string]any{"product_id": "prd_04", "quantity": 1})
	wantStatus(t, bob.do("POST", "/api/v1/checkout", body, "Idempotency-Key", "a"), http.StatusCreated)

	r := ada.do("GET", "/api/v1/orders?page_size=2", nil)
	wantStatus(t, r, http.StatusOK)
	var got List[Order]
	r.json(t, &got)
	if len(got.Items) != 2 || got.Items[0].ID != "ord_003" || got.NextPageToken == "" {
		t.Fatalf("orders page 1 %+v", got)
	}
	r = ada.do("GET", "/api/v1/orders?page_size=2&page_token="+got.NextPageToken, nil)
	r.json(t, &got)
	if len(got.Items) != 1 || got.Items[0].ID != "ord_001" || got.NextPageToken != "" {
		t.Fatalf("orders page 2 %+v", got)
	}
	if strings.Contains(r.body, "user_id") || r.Header.Get("Cache-Control") != "private, no-store" {
		t.Errorf("orders list leaks or is cacheable: %s", r.body)
	}
	wantProblem(t, ada.do("GET", "/api/v1/orders?page_token=nope", nil), http.StatusBadRequest)

	wantStatus(t, ada.do("GET", "/api/v1/orders/ord_001", nil), http.StatusOK)
	// Bob's order looks exactly like a missing one to Ada.
	theirs := wantProblem(t, ada.do("GET", "/api/v1/orders/ord_004", nil), http.StatusNotFound)
	missing := wantProblem(t, ada.do("GET", "/api/v1/orders/ord_999", nil), http.StatusNotFound)
	if theirs.Detail != missing.Detail || theirs.Title != missing.Title {
		t.Fatalf("another's order distinguishable: %+v vs %+v", theirs, missing)
	}

	anon := e.browser()
	wantProblem(t, anon.do("GET", "/api/v1/orders", nil), http.StatusUnauthorized)
	wantProblem(t, anon.do("GET", "/api/v1/orders/ord_001", nil), http.StatusUnauthorized)
}

func TestAPIUnknownRoutesAndMethods(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	wantProblem(t, b.do("GET", "/api/v1/nope", nil), http.StatusNotFound)
	wantProblem(t, b.do("GET", "/api/v2/products", nil), http.StatusNotFound)
	wantProblem(t, b.do("GET", "/api/", nil), http.StatusNotFound)

	r := b.do("DELETE", "/api/v1/products", nil)
	p := wantProblem(t, r, http.StatusMethodNotAllowed)
	if r.Header.Get("Allow") != "GET, HEAD" || p.Title != "Method Not Allowed" {
		t.Errorf("Allow %q problem %+v", r.Header.Get("Allow"), p)
	}
	r = b.do("GET", "/api/v1/sessions", nil)
	wantProblem(t, r, http.StatusMethodNotAllowed)
	if r.Header.Get("Allow") != "POST, DELETE" {
		t.Errorf("Allow %q", r.Header.Get("Allow"))
	}
	wantProblem(t, b.do("PATCH", "/api/v1/cart/items/prd_01", nil), http.StatusMethodNotAllowed)
}

func TestAPICrossOriginRefused(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	add := map[string]any{"product_id": "prd_01", "quantity": 1}
	wantProblem(t, b.do("POST", "/api/v1/cart/items", add, "Origin", "https://evil.example"), http.StatusForbidden)
	wantProblem(t, b.do("POST", "/api/v1/cart/items", add, "Sec-Fetch-Site", "cross-site"), http.StatusForbidden)
	wantProblem(t, b.do("DELETE", "/api/v1/sessions", nil, "Referer", "https://evil.example/page"), http.StatusForbidden)
	if len(e.carts.carts) != 0 {
		t.Fatal("refused request changed a cart")
	}
	// Same origin and non-browser clients are fine; reads are never refused.
	wantStatus(t, b.do("POST", "/api/v1/cart/items", add, "Origin", e.srv.URL), http.StatusOK)
	wantStatus(t, b.do("POST", "/api/v1/cart/items", add, "Sec-Fetch-Site", "same-origin"), http.StatusOK)
	wantStatus(t, b.do("POST", "/api/v1/cart/items", add), http.StatusOK)
	wantStatus(t, b.do("GET", "/api/v1/cart", nil, "Origin", "https://evil.example"), http.StatusOK)
}

// The account service slides a session's expiry while it is used
// (account.SessionTTL is how long a session lives without use), so the
// session cookie must slide with it: a cookie that expires SessionTTL after
// login would log an active customer out regardless.
func TestSessionCookieSlidesWithUse(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	b.signUp("ada@example.com", "Ada")
	tok := b.cookieValue(SessionCookie)

	e.clock.Advance(29 * 24 * time.Hour) // well past the cached lookup
	r := b.do("GET", "/api/v1/me", nil)
	wantStatus(t, r, http.StatusOK)
	c := r.cookie(SessionCookie)
	if c == nil || c.Value != tok || c.MaxAge != int(account.SessionTTL/time.Second) || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode {
		t.Fatalf("session cookie after use = %+v, want the same token for another %v", c, account.SessionTTL)
	}
	// Pages refresh it too, and the response stays private.
	e.clock.Advance(sessionCacheTTL + time.Second)
	r = b.do("GET", "/products/prd_01", nil)
	if c := r.cookie(SessionCookie); c == nil || c.Value != tok || r.Header.Get("Cache-Control") != "private, no-store" {
		t.Fatalf("page: cookie %+v, Cache-Control %q", c, r.Header.Get("Cache-Control"))
	}
	// An unknown token is not refreshed.
	other := e.browser()
	r = other.do("GET", "/api/v1/me", nil, "Cookie", SessionCookie+"=nope")
	if r.cookie(SessionCookie) != nil {
		t.Fatalf("unknown session got a cookie: %+v", r.cookie(SessionCookie))
	}
}
