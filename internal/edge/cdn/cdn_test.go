package cdn_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/edge/cdn"
	"github.com/globomantics/globomantics/internal/platform/clock"
	"github.com/globomantics/globomantics/internal/platform/compress"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// origin is a test origin server's handler that counts and records the
// requests it gets.
type origin struct {
	mu    sync.Mutex
	reqs  []*http.Request
	count atomic.Int64
	h     http.HandlerFunc
}

func (o *origin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	o.count.Add(1)
	o.mu.Lock()
	o.reqs = append(o.reqs, r.Clone(r.Context()))
	o.mu.Unlock()
	o.h(w, r)
}

func (o *origin) last() *http.Request {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.reqs[len(o.reqs)-1]
}

type env struct {
	t     *testing.T
	clk   *clock.Fake
	cache *cdn.Cache
	o     *origin
	url   string
	c     *http.Client
}

// setup starts a real HTTP server: the cache in front of an origin handler.
func setup(t *testing.T, cfg cdn.Config, h http.HandlerFunc) *env {
	t.Helper()
	clk := clock.NewFake(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	cfg.Clock = clk
	e := &env{t: t, clk: clk, cache: cdn.New(cfg), o: &origin{h: h}}
	srv := httptest.NewServer(e.cache.Wrap(e.o))
	t.Cleanup(srv.Close)
	tr := &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 200}
	t.Cleanup(tr.CloseIdleConnections)
	e.url, e.c = srv.URL, &http.Client{Transport: tr, Timeout: 10 * time.Second}
	return e
}

type response struct {
	*http.Response
	body []byte
}

func (e *env) do(method, path string, hdr ...string) response {
	e.t.Helper()
	req, err := http.NewRequest(method, e.url+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := e.c.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return response{res, b}
}

func (e *env) expect(r response, xcache string, originCalls int64) {
	e.t.Helper()
	if got := r.Header.Get("X-Cache"); got != xcache {
		e.t.Errorf("X-Cache %q, want %q", got, xcache)
	}
	if got := e.o.count.Load(); got != originCalls {
		e.t.Errorf("origin called %d times, want %d", got, originCalls)
	}
}

// checkFor polls fn until it returns nil or timeout passes.
func checkFor(t *testing.T, timeout time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func fixed(cacheControl, body string, extra ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if cacheControl != "" {
			w.Header().Set("Cache-Control", cacheControl)
		}
		w.Header().Set("Content-Type", "text/css")
		for i := 0; i+1 < len(extra); i += 2 {
			w.Header().Add(extra[i], extra[i+1])
		}
		if et := w.Header().Get("ETag"); et != "" && r.Header.Get("If-None-Match") == et {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		_, _ = io.WriteString(w, body)
	}
}

func TestMissThenHit(t *testing.T) {
	e := setup(t, cdn.Config{}, fixed("public, max-age=31536000, immutable", "body{}", "ETag", `"a1"`, "X-Request-Id", "first"))
	r := e.do("GET", "/static/style.a1.css")
	e.expect(r, "MISS", 1)
	if string(r.body) != "body{}" || r.StatusCode != 200 {
		t.Fatalf("miss: %d %q", r.StatusCode, r.body)
	}
	e.clk.Advance(5 * time.Second)
	r = e.do("GET", "/static/style.a1.css")
	e.expect(r, "HIT", 1)
	if string(r.body) != "body{}" || r.Header.Get("Age") != "5" || r.Header.Get("ETag") != `"a1"` ||
		r.Header.Get("Content-Type") != "text/css" || r.ContentLength != 6 {
		t.Fatalf("hit: body %q, headers %v", r.body, r.Header)
	}
	if id := r.Header.Get("X-Request-Id"); id != "" {
		t.Errorf("a hit replayed the first request's id %q", id)
	}
	r = e.do("HEAD", "/static/style.a1.css")
	e.expect(r, "HIT", 1)
	if len(r.body) != 0 || r.ContentLength != 6 {
		t.Fatalf("HEAD hit: %d bytes, Content-Length %d", len(r.body), r.ContentLength)
	}
	// Another query string is another key.
	e.expect(e.do("GET", "/static/style.a1.css?v=2"), "MISS", 2)
	s := e.cache.Stats()
	if s.Hits != 2 || s.Misses != 2 || s.Stores != 2 || s.Objects != 2 || s.Bytes <= 12 {
		t.Fatalf("stats %+v", s)
	}
}

func TestHeadMissGoesToOrigin(t *testing.T) {
	e := setup(t, cdn.Config{}, fixed("public, max-age=60", "x"))
	e.expect(e.do("HEAD", "/a"), "MISS", 1)
	e.expect(e.do("GET", "/a"), "MISS", 2)
	e.expect(e.do("HEAD", "/a"), "HIT", 2)
}

func TestNotStored(t *testing.T) {
	tests := []struct {
		name   string
		h      http.HandlerFunc
		method string
		hdr    []string
	}{
		{"set-cookie", fixed("public, max-age=60", "x", "Set-Cookie", "a=b"), "GET", nil},
		{"private", fixed("private, max-age=60", "x"), "GET", nil},
		{"no-store", fixed("public, no-store, max-age=60", "x"), "GET", nil},
		{"no-cache", fixed("public, no-cache, max-age=60", "x"), "GET", nil},
		{"max-age without public", fixed("max-age=60", "x"), "GET", nil},
		{"no cache-control", fixed("", "x"), "GET", nil},
		{"vary cookie, with cookies", fixed("public, max-age=60", "x", "Vary", "Cookie"), "GET", []string{"Cookie", "session=s1"}},
		{"vary origin", fixed("public, max-age=60", "x", "Vary", "Origin"), "GET", nil},
		{"vary star", fixed("public, max-age=60", "x", "Vary", "Accept-Encoding, *"), "GET", nil},
		{"server error", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "public, max-age=60")
			w.WriteHeader(http.StatusInternalServerError)
		}, "GET", nil},
		{"404 without freshness", http.NotFound, "GET", nil},
		{"post", fixed("public, max-age=60", "x"), "POST", nil},
		{"authorization", fixed("public, max-age=60", "x"), "GET", []string{"Authorization", "Bearer t"}},
		{"encoded without vary", fixed("public, max-age=60", "x", "Content-Encoding", "gzip"), "GET", []string{"Accept-Encoding", "gzip"}},
		{"wrong variant", fixed("public, max-age=60", "x", "Content-Encoding", "br", "Vary", "Accept-Encoding"), "GET", []string{"Accept-Encoding", "br, gzip"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := setup(t, cdn.Config{}, tc.h)
			e.expect(e.do(tc.method, "/x", tc.hdr...), "MISS", 1)
			e.expect(e.do(tc.method, "/x", tc.hdr...), "MISS", 2)
			if s := e.cache.Stats(); s.Objects != 0 || s.Stores != 0 {
				t.Fatalf("stored: %+v", s)
			}
		})
	}
}

// TestVaryCookie checks the storefront's public catalog pages: Vary: Cookie,
// public only for visitors without cookies.
func TestVaryCookie(t *testing.T) {
	e := setup(t, cdn.Config{}, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Vary", "Cookie")
		w.Header().Set("Cache-Control", "private, no-store")
		if len(r.Cookies()) == 0 {
			w.Header().Set("Cache-Control", "public, max-age=30")
		}
		fmt.Fprintf(w, "cookies: %d", len(r.Cookies()))
	})
	e.expect(e.do("GET", "/category/lamps"), "MISS", 1)
	e.expect(e.do("GET", "/category/lamps"), "HIT", 1)
	r := e.do("GET", "/category/lamps", "Cookie", "cart=c1")
	e.expect(r, "MISS", 2)
	if string(r.body) != "cookies: 1" {
		t.Fatalf("a visitor with cookies got %q", r.body)
	}
	e.expect(e.do("GET", "/category/lamps", "Cookie", "cart=c1"), "MISS", 3)
	r = e.do("GET", "/category/lamps")
	e.expect(r, "HIT", 3)
	if string(r.body) != "cookies: 0" {
		t.Fatalf("body %q", r.body)
	}
}

func TestNotFoundBriefly(t *testing.T) {
	e := setup(t, cdn.Config{}, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		http.NotFound(w, r)
	})
	e.expect(e.do("GET", "/missing"), "MISS", 1)
	r := e.do("GET", "/missing")
	e.expect(r, "HIT", 1)
	if r.StatusCode != 404 {
		t.Fatalf("status %d", r.StatusCode)
	}
	e.clk.Advance(31 * time.Second) // kept 30 s at most, whatever the origin says
	e.expect(e.do("GET", "/missing"), "MISS", 2)
}

func TestFreshnessAndAge(t *testing.T) {
	e := setup(t, cdn.Config{}, fixed("public, max-age=1000, s-maxage=10", "x", "Age", "3"))
	e.expect(e.do("GET", "/a"), "MISS", 1)
	e.clk.Advance(5 * time.Second)
	r := e.do("GET", "/a")
	e.expect(r, "HIT", 1)
	if got := r.Header.Get("Age"); got != "8" {
		t.Fatalf("Age %q, want 8 (3 from the origin + 5 here)", got)
	}
	e.clk.Advance(2 * time.Second) // age 10: stale, no validator to revalidate with
	e.expect(e.do("GET", "/a"), "MISS", 2)
	e.expect(e.do("GET", "/a"), "HIT", 2)
}

func TestRevalidation(t *testing.T) {
	var version atomic.Int64
	version.Store(1)
	lastMod := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, validator := range []string{"etag", "last-modified"} {
		t.Run(validator, func(t *testing.T) {
			e := setup(t, cdn.Config{}, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Cache-Control", "public, max-age=10")
				w.Header().Set("Content-Type", "image/jpeg")
				if validator == "etag" {
					w.Header().Set("ETag", fmt.Sprintf(`"v%d"`, version.Load()))
				} else {
					w.Header().Set("Last-Modified", lastMod.Format(http.TimeFormat))
				}
				http.ServeContent(w, r, "x.jpg", lastMod, strings.NewReader("jpeg bytes"))
			})
			e.expect(e.do("GET", "/media/x.jpg"), "MISS", 1)
			e.clk.Advance(11 * time.Second)
			r := e.do("GET", "/media/x.jpg")
			e.expect(r, "REVALIDATED", 2)
			if string(r.body) != "jpeg bytes" || r.StatusCode != 200 {
				t.Fatalf("revalidated answer: %d %q", r.StatusCode, r.body)
			}
			req := e.o.last()
			if validator == "etag" && req.Header.Get("If-None-Match") != `"v1"` {
				t.Errorf("If-None-Match %q", req.Header.Get("If-None-Match"))
			}
			if validator == "last-modified" && req.Header.Get("If-Modified-Since") != lastMod.Format(http.TimeFormat) {
				t.Errorf("If-Modified-Since %q", req.Header.Get("If-Modified-Since"))
			}
			if got := r.Header.Get("Age"); got != "0" {
				t.Errorf("Age %q after revalidation, want 0", got)
			}
			e.clk.Advance(5 * time.Second)
			e.expect(e.do("GET", "/media/x.jpg"), "HIT", 2)
			if s := e.cache.Stats(); s.Revalidated != 1 {
				t.Errorf("stats %+v", s)
			}
			if validator == "etag" {
				// A changed object: the origin answers 200, stored anew.
				version.Store(2)
				e.clk.Advance(10 * time.Second)
				r = e.do("GET", "/media/x.jpg")
				e.expect(r, "MISS", 3)
				if r.Header.Get("ETag") != `"v2"` {
					t.Fatalf("ETag %q", r.Header.Get("ETag"))
				}
				e.expect(e.do("GET", "/media/x.jpg"), "HIT", 3)
				version.Store(1)
			}
		})
	}
}

func TestClientConditional(t *testing.T) {
	e := setup(t, cdn.Config{}, fixed("public, max-age=60", "body", "ETag", `"e1"`))
	// A miss with a matching validator: 304 to the client, and stored.
	r := e.do("GET", "/a", "If-None-Match", `"e1"`)
	e.expect(r, "MISS", 1)
	if r.StatusCode != 304 || len(r.body) != 0 {
		t.Fatalf("status %d, %d bytes", r.StatusCode, len(r.body))
	}
	if req := e.o.last(); req.Header.Get("If-None-Match") != "" {
		t.Errorf("the client's validator reached the origin")
	}
	r = e.do("GET", "/a", "If-None-Match", `W/"e0", W/"e1"`)
	e.expect(r, "HIT", 1)
	if r.StatusCode != 304 || len(r.body) != 0 || r.Header.Get("ETag") != `"e1"` {
		t.Fatalf("status %d, %d bytes, ETag %q", r.StatusCode, len(r.body), r.Header.Get("ETag"))
	}
	r = e.do("GET", "/a", "If-None-Match", `"other"`)
	e.expect(r, "HIT", 1)
	if r.StatusCode != 200 || string(r.body) != "body" {
		t.Fatalf("status %d, body %q", r.StatusCode, r.body)
	}
}

func TestCollapsing(t *testing.T) {
	const n = 100
	var e *env
	e = setup(t, cdn.Config{}, func(w http.ResponseWriter, r *http.Request) {
		// Answer only once every other request waits for this one.
		deadline := time.Now().Add(5 * time.Second)
		for e.cache.Stats().Collapsed < n-1 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		fixed("public, max-age=60", "thumbnail")(w, r)
	})
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			res, err := e.c.Get(e.url + "/media/products/p1/thumb-small.jpg")
			if err != nil {
				errs <- err
				return
			}
			defer res.Body.Close()
			b, _ := io.ReadAll(res.Body)
			if res.StatusCode != 200 || string(b) != "thumbnail" {
				errs <- fmt.Errorf("status %d, body %q", res.StatusCode, b)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := e.o.count.Load(); got != 1 {
		t.Fatalf("origin got %d requests for %d concurrent cold requests, want 1", got, n)
	}
	if s := e.cache.Stats(); s.Collapsed != n-1 || s.Misses != 1 {
		t.Fatalf("stats %+v", s)
	}
}

// TestCollapsedUncacheable checks that requests waiting for a fetch whose
// answer may not be shared go to the origin themselves.
func TestCollapsedUncacheable(t *testing.T) {
	const n = 10
	var e *env
	e = setup(t, cdn.Config{}, func(w http.ResponseWriter, r *http.Request) {
		if e.o.count.Load() == 1 {
			deadline := time.Now().Add(5 * time.Second)
			for e.cache.Stats().Collapsed < n-1 && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
		}
		w.Header().Set("Cache-Control", "private, max-age=60")
		fmt.Fprintf(w, "for you")
	})
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			res, err := e.c.Get(e.url + "/account")
			if err != nil {
				t.Error(err)
				return
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if string(b) != "for you" {
				t.Errorf("body %q", b)
			}
		})
	}
	wg.Wait()
	if got := e.o.count.Load(); got != n {
		t.Fatalf("origin got %d requests, want %d (one each)", got, n)
	}
}

func TestVaryAcceptEncoding(t *testing.T) {
	css := bytes.Repeat([]byte(".product { color: #333; margin: 0 auto; }\n"), 200)
	e := setup(t, cdn.Config{}, nil)
	e.o.h = func(w http.ResponseWriter, r *http.Request) {
		compress.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "public, max-age=60")
			w.Header().Set("Content-Type", "text/css")
			w.Header().Set("ETag", `"s1"`)
			_, _ = w.Write(css)
		})).ServeHTTP(w, r)
	}
	for i, tc := range []struct{ accept, coding, xcache string }{
		{"gzip", "gzip", "MISS"},
		{"zstd", "zstd", "MISS"},
		{"", "", "MISS"},
		{"gzip, deflate, br, zstd", "zstd", "HIT"},
		{"gzip;q=1, zstd;q=0.1", "gzip", "HIT"},
		{"identity", "", "HIT"},
	} {
		r := e.do("GET", "/static/style.s1.css", "Accept-Encoding", tc.accept)
		if got := r.Header.Get("X-Cache"); got != tc.xcache {
			t.Errorf("%d %q: X-Cache %q, want %q", i, tc.accept, got, tc.xcache)
		}
		if got := r.Header.Get("Content-Encoding"); got != tc.coding {
			t.Fatalf("%q: Content-Encoding %q, want %q", tc.accept, got, tc.coding)
		}
		if got := decode(t, tc.coding, r.body); !bytes.Equal(got, css) {
			t.Fatalf("%q: body differs", tc.accept)
		}
		if tc.xcache == "MISS" {
			want := tc.coding
			if want == "" {
				want = "identity"
			}
			if got := e.o.last().Header.Get("Accept-Encoding"); got != want {
				t.Errorf("origin asked with Accept-Encoding %q, want %q", got, want)
			}
		}
	}
	if got := e.o.count.Load(); got != 3 {
		t.Fatalf("origin called %d times, want 3 (one per variant)", got)
	}
	// A compressed variant's weakened ETag revalidates from the cache.
	r := e.do("GET", "/static/style.s1.css", "Accept-Encoding", "gzip", "If-None-Match", `W/"s1"`)
	if r.StatusCode != 304 || r.Header.Get("X-Cache") != "HIT" {
		t.Fatalf("status %d, X-Cache %q", r.StatusCode, r.Header.Get("X-Cache"))
	}
}

func decode(t *testing.T, coding string, b []byte) []byte {
	t.Helper()
	switch coding {
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		out, err := io.ReadAll(zr)
		if err != nil {
			t.Fatal(err)
		}
		return out
	case "zstd":
		zr, err := zstd.NewReader(nil)
		if err != nil {
			t.Fatal(err)
		}
		defer zr.Close()
		out, err := zr.DecodeAll(b, nil)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	return b
}

func TestEviction(t *testing.T) {
	body := strings.Repeat("x", 3000)
	e := setup(t, cdn.Config{MaxBytes: 10000}, fixed("public, max-age=60", body))
	for _, p := range []string{"/1", "/2", "/3"} {
		e.do("GET", p)
	}
	e.expect(e.do("GET", "/1"), "HIT", 3) // /1 is now the most recent
	e.do("GET", "/4")                     // evicts /2, the least recent
	s := e.cache.Stats()
	if s.Evictions != 1 || s.Objects != 3 || s.Bytes > 10000 {
		t.Fatalf("stats %+v", s)
	}
	e.expect(e.do("GET", "/1"), "HIT", 4)
	e.expect(e.do("GET", "/2"), "MISS", 5)
}

func TestLargeObjectStreamsThrough(t *testing.T) {
	release := make(chan struct{})
	e := setup(t, cdn.Config{MaxObjectBytes: 1024}, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=60")
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = w.Write(bytes.Repeat([]byte("a"), 4096))
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		_, _ = w.Write(bytes.Repeat([]byte("b"), 4096))
	})
	res, err := e.c.Get(e.url + "/big")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	first := make([]byte, 4096)
	if _, err := io.ReadFull(res.Body, first); err != nil {
		t.Fatal(err)
	}
	close(release) // the first part arrived while the origin was still sending
	rest, err := io.ReadAll(res.Body)
	if err != nil || len(rest) != 4096 {
		t.Fatalf("rest: %d bytes, %v", len(rest), err)
	}
	if s := e.cache.Stats(); s.Objects != 0 {
		t.Fatalf("a body over MaxObjectBytes was stored: %+v", s)
	}
	// With a Content-Length over the limit it is not even buffered.
	e2 := setup(t, cdn.Config{MaxObjectBytes: 1024}, fixed("public, max-age=60", strings.Repeat("z", 2000), "Content-Length", "2000"))
	if r := e2.do("GET", "/big"); len(r.body) != 2000 {
		t.Fatalf("%d bytes", len(r.body))
	}
	e2.expect(e2.do("GET", "/big"), "MISS", 2)
}

func TestRangePassesThrough(t *testing.T) {
	content := strings.Repeat("0123456789", 100)
	e := setup(t, cdn.Config{}, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=60")
		w.Header().Set("ETag", `"r1"`)
		http.ServeContent(w, r, "f.bin", time.Time{}, strings.NewReader(content))
	})
	r := e.do("GET", "/f", "Range", "bytes=10-19")
	e.expect(r, "MISS", 1)
	if r.StatusCode != 206 || string(r.body) != "0123456789" {
		t.Fatalf("status %d, body %q", r.StatusCode, r.body)
	}
	e.expect(e.do("GET", "/f"), "MISS", 2)
	e.expect(e.do("GET", "/f"), "HIT", 2)
	// A range of a stored object still goes to the origin.
	r = e.do("GET", "/f", "Range", "bytes=0-4")
	e.expect(r, "MISS", 3)
	if r.StatusCode != 206 || string(r.body) != "01234" {
		t.Fatalf("status %d, body %q", r.StatusCode, r.body)
	}
}

func TestPurge(t *testing.T) {
	e := setup(t, cdn.Config{}, fixed("public, max-age=600", "x"))
	for _, p := range []string{"/media/products/p1/a.jpg", "/media/products/p1/b.jpg", "/media/products/p2/a.jpg", "/static/s.css"} {
		e.do("GET", p)
	}
	if n := e.cache.Purge("/media/products/p1/"); n != 2 {
		t.Fatalf("purged %d, want 2", n)
	}
	e.expect(e.do("GET", "/media/products/p1/a.jpg"), "MISS", 5)
	e.expect(e.do("GET", "/media/products/p2/a.jpg"), "HIT", 5)
	if n := e.cache.Purge(""); n != 3 {
		t.Fatalf("purged %d, want 3", n)
	}
	if s := e.cache.Stats(); s.Objects != 0 || s.Bytes != 0 {
		t.Fatalf("stats %+v", s)
	}
}

func TestStaleWhileRevalidate(t *testing.T) {
	e := setup(t, cdn.Config{}, fixed("public, max-age=10, stale-while-revalidate=30", "v", "ETag", `"w1"`))
	e.expect(e.do("GET", "/c"), "MISS", 1)
	e.clk.Advance(15 * time.Second)
	r := e.do("GET", "/c")
	if r.Header.Get("X-Cache") != "STALE" || string(r.body) != "v" || r.Header.Get("Age") != "15" {
		t.Fatalf("X-Cache %q, Age %q, body %q", r.Header.Get("X-Cache"), r.Header.Get("Age"), r.body)
	}
	checkFor(t, 5*time.Second, func() error {
		if s := e.cache.Stats(); s.Revalidated != 1 {
			return fmt.Errorf("no background revalidation: %+v", s)
		}
		return nil
	})
	if got := e.o.last().Header.Get("If-None-Match"); got != `"w1"` {
		t.Errorf("background revalidation sent If-None-Match %q", got)
	}
	e.expect(e.do("GET", "/c"), "HIT", 2)
	e.clk.Advance(50 * time.Second) // past the window: revalidated inline
	e.expect(e.do("GET", "/c"), "REVALIDATED", 3)
}

// TestStaleKeptOnServerError checks that an origin's 5xx while revalidating
// does not lose the stored object.
func TestStaleKeptOnServerError(t *testing.T) {
	var fail atomic.Bool
	e := setup(t, cdn.Config{}, func(w http.ResponseWriter, r *http.Request) {
		if fail.Load() {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		fixed("public, max-age=10", "v", "ETag", `"k1"`)(w, r)
	})
	e.do("GET", "/k")
	e.clk.Advance(11 * time.Second)
	fail.Store(true)
	if r := e.do("GET", "/k"); r.StatusCode != http.StatusBadGateway {
		t.Fatalf("status %d", r.StatusCode)
	}
	fail.Store(false)
	e.expect(e.do("GET", "/k"), "REVALIDATED", 3)
}

// benchWriter is a minimal ResponseWriter, so that BenchmarkHit measures
// the cache rather than a recorder.
type benchWriter struct {
	h    http.Header
	n    int
	code int
}

func (w *benchWriter) Header() http.Header         { return w.h }
func (w *benchWriter) WriteHeader(code int)        { w.code = code }
func (w *benchWriter) Write(p []byte) (int, error) { w.n += len(p); return len(p), nil }

func BenchmarkHit(b *testing.B) {
	body := bytes.Repeat([]byte("j"), 16<<10)
	c := cdn.New(cdn.Config{})
	h := c.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=86400")
		w.Header().Set("Content-Type", "image/jpeg")
		w.Header().Set("ETag", `"0123456789abcdef01234567"`)
		w.Header().Set("Last-Modified", "Wed, 21 Oct 2026 07:28:00 GMT")
		_, _ = w.Write(body)
	}))
	req := httptest.NewRequest("GET", "/media/products/p000123/thumb-small.jpg", nil)
	req.Header.Set("Accept-Encoding", "gzip, deflate, br, zstd")
	w := &benchWriter{h: http.Header{}}
	h.ServeHTTP(w, req)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	b.RunParallel(func(pb *testing.PB) {
		w := &benchWriter{h: http.Header{}}
		for pb.Next() {
			clear(w.h)
			h.ServeHTTP(w, req)
			if w.code != 200 {
				b.Fatal("not a hit")
			}
		}
	})
	if s := c.Stats(); s.Misses != 1 {
		b.Fatalf("stats %+v", s)
	}
}
