package storefront

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/cart"
	"github.com/globomantics/globomantics/internal/order"
	"github.com/globomantics/globomantics/internal/platform/blob"
	"github.com/globomantics/globomantics/internal/platform/cache"
	"github.com/globomantics/globomantics/internal/platform/clock"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/httpx"
)

// env is a storefront over fakes, served by an httptest server.
type env struct {
	t        *testing.T
	clock    *clock.Fake
	accounts *fakeAccounts
	catalog  *fakeCatalog
	carts    *fakeCarts
	orders   *fakeOrders
	checkout *fakeCheckout
	mail     *fakeMail
	blobs    *blob.FS
	blobDir  string // where blobs keeps its files
	cache    *cache.Memory
	deps     Deps
	server   *Server
	srv      *httptest.Server
}

// newEnv builds the env; each option may change the Deps before the server
// is made.
func newEnv(t *testing.T, opts ...func(*Deps)) *env {
	t.Helper()
	clk := clock.NewFake(seedTime)
	e := &env{t: t, clock: clk}
	e.accounts = newFakeAccounts(clk)
	e.catalog = seedCatalog()
	e.carts = &fakeCarts{catalog: e.catalog, carts: map[string][]cart.Item{}}
	e.orders = &fakeOrders{orders: map[string]order.Order{}}
	e.checkout = &fakeCheckout{clock: clk, carts: e.carts, catalog: e.catalog, orders: e.orders, keys: map[string]attempt{}}
	e.mail = &fakeMail{
		msgs: map[string]string{"m1": "To: ada@example.com\nSubject: Your order\n\n<b>Thanks</b> for your order."},
		list: []MailSummary{{ID: "m1", To: "ada@example.com", Subject: "Your order ord_001", Date: seedTime}},
	}
	var err error
	e.blobDir = t.TempDir()
	if e.blobs, err = blob.NewFS(e.blobDir); err != nil {
		t.Fatal(err)
	}
	e.cache = cache.NewMemory(clk, 1000)
	e.deps = Deps{
		Accounts: e.accounts,
		Catalog:  e.catalog,
		Search: &fakeSearch{hits: map[string][]string{
			"lamp": {"prd_02", "prd_gone", "prd_01"},
			"tool": {"prd_03", "prd_04"},
		}},
		Carts:    e.carts,
		Checkout: e.checkout,
		Orders:   e.orders,
		Mail:     e.mail,
		Blobs:    e.blobs,
		Cache:    e.cache,
		Clock:    clk,
		Log:      slog.New(slog.NewTextHandler(io.Discard, nil)),
		// Pending checkouts in these tests stay pending: wait briefly.
		SettleWait: 50 * time.Millisecond,
	}
	for _, o := range opts {
		o(&e.deps)
	}
	e.server = New(e.deps)
	e.srv = httptest.NewServer(httpx.Middleware(e.deps.Log, e.server.Handler()))
	t.Cleanup(e.srv.Close)
	return e
}

// browser is a client with a cookie jar that does not follow redirects.
type browser struct {
	e   *env
	hc  *http.Client
	jar *cookiejar.Jar
}

func (e *env) browser() *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{e: e, jar: jar, hc: &http.Client{
		Jar:           jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// response is a finished response with its body read.
type response struct {
	*http.Response
	body string
}

func (r response) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(r.body), v); err != nil {
		t.Fatalf("decoding %q: %v", r.body, err)
	}
}

func (r response) cookie(name string) *http.Cookie {
	for _, c := range r.Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// do sends a request; body is JSON-encoded unless it is a string (sent
// as is) or url.Values (sent as a form). hdr holds header name/value pairs.
func (b *browser) do(method, path string, body any, hdr ...string) response {
	b.e.t.Helper()
	var rd io.Reader
	ctype := ""
	switch v := body.(type) {
	case nil:
	case string:
		rd, ctype = strings.NewReader(v), "application/json"
	case url.Values:
		rd, ctype = strings.NewReader(v.Encode()), "application/x-www-form-urlencoded"
	default:
		j, err := json.Marshal(v)
		if err != nil {
			b.e.t.Fatal(err)
		}
		rd, ctype = bytes.NewReader(j), "application/json"
	}
	req, err := http.NewRequest(method, b.e.srv.URL+path, rd)
	if err != nil {
		b.e.t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := b.hc.Do(req)
	if err != nil {
		b.e.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		b.e.t.Fatal(err)
	}
	return response{Response: resp, body: string(data)}
}

func (b *browser) cookieValue(name string) string {
	u, _ := url.Parse(b.e.srv.URL)
	for _, c := range b.jar.Cookies(u) {
		if c.Name == name {
			return c.Value
		}
	}
	return ""
}

// register and log in a customer through the API.
func (b *browser) signUp(email, name string) {
	b.e.t.Helper()
	if r := b.do("POST", "/api/v1/accounts", map[string]string{"email": email, "password": "password123", "name": name}); r.StatusCode != http.StatusCreated {
		b.e.t.Fatalf("register: %d %s", r.StatusCode, r.body)
	}
	if r := b.do("POST", "/api/v1/sessions", map[string]string{"email": email, "password": "password123"}); r.StatusCode != http.StatusOK {
		b.e.t.Fatalf("login: %d %s", r.StatusCode, r.body)
	}
}

func wantStatus(t *testing.T, r response, status int) {
	t.Helper()
	if r.StatusCode != status {
		t.Fatalf("%s %s: status %d, want %d; body: %s", r.Request.Method, r.Request.URL.Path, r.StatusCode, status, r.body)
	}
}

// wantProblem checks an RFC 9457 problem answer.
func wantProblem(t *testing.T, r response, status int) errs.Problem {
	t.Helper()
	wantStatus(t, r, status)
	if ct := r.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type %q, want application/problem+json", ct)
	}
	var p errs.Problem
	r.json(t, &p)
	if p.Status != status || p.Title == "" || p.Detail == "" {
		t.Fatalf("bad problem %+v", p)
	}
	return p
}

func wantContains(t *testing.T, body string, subs ...string) {
	t.Helper()
	for _, s := range subs {
		if !strings.Contains(body, s) {
			t.Errorf("body does not contain %q:\n%s", s, body)
		}
	}
}

func httptestRequest(method, path, body string) *http.Request {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	r := httptest.NewRequest(method, path, rd)
	if body != "" {
		r.Header.Set("Content-Type", "application/json")
	}
	return r
}

// serve runs one request through h as the app would, inside httpx.Middleware.
func serve(h http.Handler, r *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	httpx.Middleware(slog.New(slog.NewTextHandler(io.Discard, nil)), h).ServeHTTP(rec, r)
	return rec
}
