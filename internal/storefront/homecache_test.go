package storefront

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/catalog"
	"github.com/globomantics/globomantics/internal/platform/httpx"
	"github.com/globomantics/globomantics/internal/platform/money"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

// setPrice changes a product of the fake catalog.
func (f *fakeCatalog) setPrice(id string, cents int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.products[id]
	p.Price = money.USD(cents)
	f.products[id] = p
}

func TestSharedPageAnonymous(t *testing.T) {
	e := newEnv(t)
	anon := e.browser()

	first := anon.do("GET", "/", nil)
	wantStatus(t, first, http.StatusOK)
	wantContains(t, first.body, "Desk Lamp", "$24.50", `<span class="count">0</span>`, `href="/login"`)
	second := anon.do("GET", "/", nil)
	wantStatus(t, second, http.StatusOK)
	if second.body != first.body {
		t.Fatalf("the cached page differs from the rendered one:\n%s\n---\n%s", first.body, second.body)
	}
	if st := e.server.shared.stats(); st.Renders != 1 || st.Hits != 1 {
		t.Fatalf("stats %+v, want 1 render and 1 hit", st)
	}
	// Same headers as a freshly rendered page, and no cookie.
	for _, r := range []response{first, second} {
		if got := r.Header.Get("Cache-Control"); got != catalogCacheControl {
			t.Errorf("Cache-Control %q, want %q", got, catalogCacheControl)
		}
		if got := r.Header.Get("Vary"); got != "Cookie" {
			t.Errorf("Vary %q, want Cookie", got)
		}
		if got := r.Header.Get("Content-Type"); got != "text/html; charset=utf-8" {
			t.Errorf("Content-Type %q", got)
		}
		if r.Header.Get("Content-Security-Policy") == "" || r.Header.Get("X-Frame-Options") != "DENY" {
			t.Errorf("security headers missing: %v", r.Header)
		}
		if c := r.Header.Values("Set-Cookie"); len(c) > 0 {
			t.Errorf("an anonymous visitor got cookies %q", c)
		}
	}
	etag := second.Header.Get("ETag")
	if etag == "" || etag != first.Header.Get("ETag") {
		t.Fatalf("ETags %q and %q", first.Header.Get("ETag"), etag)
	}
	if r := anon.do("GET", "/", nil, "If-None-Match", etag); r.StatusCode != http.StatusNotModified || r.body != "" {
		t.Fatalf("If-None-Match: %d %q, want 304 and no body", r.StatusCode, r.body)
	}

	// A query is another page (the search box shows q).
	q := anon.do("GET", "/?q=lamp", nil)
	wantContains(t, q.body, `value="lamp"`)
	if strings.Contains(anon.do("GET", "/", nil).body, `value="lamp"`) {
		t.Fatal("the page of /?q=lamp was served for /")
	}
}

func TestSharedPageChangeShowsWithinTTL(t *testing.T) {
	e := newEnv(t)
	anon := e.browser()
	for _, path := range []string{"/", "/products/prd_01", "/category/cat_lamps"} {
		wantContains(t, anon.do("GET", path, nil).body, "$24.50")
	}
	e.catalog.setPrice("prd_01", 1999)
	// Within the TTL the cached pages may still show the old price ...
	e.clock.Advance(pageCacheTTL / 2)
	for _, path := range []string{"/", "/products/prd_01", "/category/cat_lamps"} {
		wantContains(t, anon.do("GET", path, nil).body, "$24.50")
	}
	// ... and once it has passed, every page shows the new one.
	e.clock.Advance(pageCacheTTL / 2)
	for _, path := range []string{"/", "/products/prd_01", "/category/cat_lamps"} {
		r := anon.do("GET", path, nil)
		wantStatus(t, r, http.StatusOK)
		wantContains(t, r.body, "$19.99")
		if strings.Contains(r.body, "$24.50") {
			t.Errorf("%s still shows the old price after the TTL", path)
		}
	}
}

func TestSharedPageNeverForVisitorsWithCookies(t *testing.T) {
	e := newEnv(t)
	anon := e.browser()
	wantStatus(t, anon.do("GET", "/", nil), http.StatusOK)
	wantStatus(t, anon.do("GET", "/products/prd_01", nil), http.StatusOK)
	before := e.server.shared.stats()

	// A logged-in customer sees their own header, never the shared page.
	ada := e.browser()
	ada.signUp("ada@example.com", "Ada Lovelace")
	for _, path := range []string{"/", "/products/prd_01"} {
		r := ada.do("GET", path, nil)
		wantStatus(t, r, http.StatusOK)
		wantContains(t, r.body, "Ada Lovelace", "Log out")
		if got := r.Header.Get("Cache-Control"); got != privateCacheControl {
			t.Errorf("%s for a customer: Cache-Control %q, want %q", path, got, privateCacheControl)
		}
	}

	// A visitor with an anonymous cart sees their cart count.
	shopper := e.browser()
	r := shopper.do("POST", "/cart/add", url.Values{"product_id": {"prd_01"}, "quantity": {"2"}})
	if r.StatusCode != http.StatusSeeOther || shopper.cookieValue(CartCookie) == "" {
		t.Fatalf("add to cart: %d, cookie %q", r.StatusCode, shopper.cookieValue(CartCookie))
	}
	for _, path := range []string{"/", "/products/prd_01"} {
		wantContains(t, shopper.do("GET", path, nil).body, `<span class="count">2</span>`)
	}

	// A visitor with read-after positions gets their own rendering too.
	raw, err := http.NewRequest("GET", e.srv.URL+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	raw.AddCookie(&http.Cookie{Name: ReadAfterCookie, Value: "x"})
	resp, err := http.DefaultClient.Do(raw)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("with a read-after cookie: %d", resp.StatusCode)
	}

	if after := e.server.shared.stats(); after.Hits != before.Hits || after.Misses != before.Misses {
		t.Fatalf("visitors with cookies went through the page cache: before %+v, after %+v", before, after)
	}
	// And none of their pages leaked into the shared ones.
	for _, path := range []string{"/", "/products/prd_01"} {
		r := anon.do("GET", path, nil)
		wantContains(t, r.body, `<span class="count">0</span>`, `href="/login"`)
		if strings.Contains(r.body, "Ada Lovelace") {
			t.Fatalf("%s: the anonymous page shows a customer's name", path)
		}
	}
}

func TestSharedPageErrorsAreNotCached(t *testing.T) {
	e := newEnv(t)
	anon := e.browser()
	r := anon.do("GET", "/products/prd_nope", nil)
	wantStatus(t, r, http.StatusNotFound)
	if got := r.Header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("404 Cache-Control %q, want no-store", got)
	}
	e.catalog.mu.Lock()
	e.catalog.down = true
	e.catalog.mu.Unlock()
	wantStatus(t, anon.do("GET", "/", nil), http.StatusServiceUnavailable)
	e.catalog.mu.Lock()
	e.catalog.down = false
	e.catalog.mu.Unlock()
	// The failure was not remembered: the catalog is asked again at once.
	wantStatus(t, anon.do("GET", "/", nil), http.StatusOK)
}

// gatedCatalog holds ListProducts until gate is closed, counting calls.
type gatedCatalog struct {
	*fakeCatalog
	gate  chan struct{}
	lists atomic.Int64
}

func (g *gatedCatalog) ListProducts(ctx context.Context, f catalog.ProductFilter) (catalog.ProductPage, error) {
	g.lists.Add(1)
	<-g.gate
	return g.fakeCatalog.ListProducts(ctx, f)
}

func TestSharedPageConcurrentMissesCollapse(t *testing.T) {
	gc := &gatedCatalog{gate: make(chan struct{})}
	e := newEnv(t, func(d *Deps) {
		gc.fakeCatalog = d.Catalog.(*fakeCatalog)
		d.Catalog = gc
	})
	const n = 16
	bodies := make([]string, n)
	codes := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Get(e.srv.URL + "/")
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Error(err)
			}
			bodies[i], codes[i] = string(b), resp.StatusCode
		}()
	}
	// Every request has missed and is waiting for the one render.
	testenv.CheckFor(t, 5*time.Second, func() error {
		if m := e.server.shared.stats().Misses; m != n {
			return fmt.Errorf("%d of %d requests have missed so far", m, n)
		}
		return nil
	})
	close(gc.gate)
	wg.Wait()
	for i := range n {
		if codes[i] != http.StatusOK || bodies[i] != bodies[0] || !strings.Contains(bodies[i], "Desk Lamp") {
			t.Fatalf("request %d: %d %q", i, codes[i], bodies[i])
		}
	}
	// One load of the featured products lists each category once.
	if got, want := gc.lists.Load(), int64(len(e.catalog.categories)); got != want {
		t.Fatalf("%d concurrent misses listed the products %d times, want %d (one load)", n, got, want)
	}
	if st := e.server.shared.stats(); st.Renders != 1 {
		t.Fatalf("stats %+v, want one render", st)
	}
}

func TestHomeListReusedForCustomers(t *testing.T) {
	gc := &gatedCatalog{gate: make(chan struct{})}
	close(gc.gate)
	e := newEnv(t, func(d *Deps) {
		gc.fakeCatalog = d.Catalog.(*fakeCatalog)
		d.Catalog = gc
	})
	ada := e.browser()
	ada.signUp("ada@example.com", "Ada")
	for range 3 {
		wantContains(t, ada.do("GET", "/", nil).body, "Desk Lamp", "Ada")
	}
	perLoad := int64(len(e.catalog.categories)) // the featured products list each category once
	if got := gc.lists.Load(); got != perLoad {
		t.Fatalf("three home pages within %s listed the products %d times, want %d (one load)", homeListTTL, got, perLoad)
	}
	e.catalog.setPrice("prd_01", 1999)
	e.clock.Advance(homeListTTL)
	wantContains(t, ada.do("GET", "/", nil).body, "$19.99")
	if got := gc.lists.Load(); got != 2*perLoad {
		t.Fatalf("after the TTL: %d lists, want %d (two loads)", got, 2*perLoad)
	}
}

// TestSharedAnswerProductJSON wraps the JSON product read in sharedAnswer
// as the route in storefront.go would once wired (api.Handle("GET
// /api/v1/products/{id}", s.apiHandler(func(w, r) error { return
// s.sharedAnswer(w, r, s.apiProduct) }))): every visitor, cookies or not,
// gets the one cached answer, with the same ETag writeCacheable makes.
func TestSharedAnswerProductJSON(t *testing.T) {
	e := newEnv(t)
	s := e.server
	// The storefront's own route, which shares the answer.
	srv := httptest.NewServer(httpx.Middleware(e.deps.Log, s.Handler()))
	t.Cleanup(srv.Close)
	get := func(hdr ...string) (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequest("GET", srv.URL+"/api/v1/products/prd_01", nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, string(b)
	}

	// The answer without the cache, for comparison.
	dreq := httptestRequest("GET", "/api/v1/products/prd_01", "")
	dreq.SetPathValue("id", "prd_01")
	direct := serve(withVisitor(s.apiHandler(s.apiProduct)), dreq)
	resp, body := get()
	if resp.StatusCode != http.StatusOK || body != direct.Body.String() {
		t.Fatalf("cached answer %d %q, want %q", resp.StatusCode, body, direct.Body.String())
	}
	for _, k := range []string{"ETag", "Cache-Control", "Content-Type", StalenessHeader} {
		if got, want := resp.Header.Get(k), direct.Header().Get(k); got != want {
			t.Errorf("%s %q, want %q as without the cache", k, got, want)
		}
	}
	_, again := get("Cookie", SessionCookie+"=whoever")
	if again != body {
		t.Fatalf("with a cookie: %q", again)
	}
	if r, b := get("If-None-Match", resp.Header.Get("ETag")); r.StatusCode != http.StatusNotModified || b != "" {
		t.Fatalf("If-None-Match: %d %q", r.StatusCode, b)
	}
	if st := s.shared.stats(); st.Renders != 1 || st.Hits != 2 {
		t.Fatalf("stats %+v, want 1 render and 2 hits", st)
	}
	e.catalog.setPrice("prd_01", 1999)
	e.clock.Advance(pageCacheTTL)
	if _, b := get(); !strings.Contains(b, "1999") && !strings.Contains(b, "19.99") {
		t.Fatalf("after the TTL the old answer is still served: %s", b)
	}
	if r, _ := get(); r.Header.Get("ETag") == resp.Header.Get("ETag") {
		t.Fatal("the ETag did not change with the price")
	}
	// An unknown product is a problem answer, not cached.
	req, _ := http.NewRequest("GET", srv.URL+"/api/v1/products/prd_nope", nil)
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown product: %d", r.StatusCode)
	}
}
