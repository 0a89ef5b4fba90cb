package storefront

import (
	"net/http"
	"regexp"
	"strings"
	"testing"
)

func TestStaticAssets(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	home := b.do("GET", "/", nil).body
	m := regexp.MustCompile(`href="(/static/style\.[0-9a-f]{12}\.css)"`).FindStringSubmatch(home)
	if m == nil {
		t.Fatalf("no hashed stylesheet link in:\n%s", home)
	}
	r := b.do("GET", m[1], nil)
	wantStatus(t, r, http.StatusOK)
	if r.Header.Get("Cache-Control") != "public, max-age=31536000, immutable" || !strings.HasPrefix(r.Header.Get("Content-Type"), "text/css") {
		t.Fatalf("stylesheet headers %v", r.Header)
	}
	if !strings.Contains(r.body, ":root") {
		t.Fatal("stylesheet body missing")
	}
	wantStatus(t, b.do("GET", m[1], nil, "If-None-Match", r.Header.Get("ETag")), http.StatusNotModified)

	// The plain name, or another build's hash, still works but is not immutable.
	for _, path := range []string{"/static/style.css", "/static/style.000000000000.css"} {
		r = b.do("GET", path, nil)
		wantStatus(t, r, http.StatusOK)
		if cc := r.Header.Get("Cache-Control"); cc != "public, max-age=60" {
			t.Errorf("%s: Cache-Control %q", path, cc)
		}
	}
	wantProblem(t, b.do("GET", "/static/nope.js", nil), http.StatusNotFound)
	wantProblem(t, b.do("POST", m[1], nil), http.StatusMethodNotAllowed)
}

func TestMedia(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	png := "\x89PNG\r\n\x1a\n fake image bytes"
	if err := e.blobs.Put(t.Context(), "products/prd_01.png", strings.NewReader(png)); err != nil {
		t.Fatal(err)
	}
	r := b.do("GET", "/media/products/prd_01.png", nil)
	wantStatus(t, r, http.StatusOK)
	if r.body != png || r.Header.Get("Content-Type") != "image/png" {
		t.Fatalf("media %q %q", r.Header.Get("Content-Type"), r.body)
	}
	etag, lm := r.Header.Get("ETag"), r.Header.Get("Last-Modified")
	if !strings.HasPrefix(etag, `"`) || lm == "" || r.Header.Get("Cache-Control") != "public, max-age=86400" {
		t.Fatalf("media headers %v", r.Header)
	}
	wantStatus(t, b.do("GET", "/media/products/prd_01.png", nil, "If-None-Match", etag), http.StatusNotModified)
	wantStatus(t, b.do("GET", "/media/products/prd_01.png", nil, "If-Modified-Since", lm), http.StatusNotModified)
	r = b.do("GET", "/media/products/prd_01.png", nil, "Range", "bytes=0-3")
	wantStatus(t, r, http.StatusPartialContent)
	if r.body != png[:4] {
		t.Errorf("range body %q", r.body)
	}

	// A new image under the key changes the ETag.
	if err := e.blobs.Put(t.Context(), "products/prd_01.png", strings.NewReader(png+"v2")); err != nil {
		t.Fatal(err)
	}
	r = b.do("GET", "/media/products/prd_01.png", nil, "If-None-Match", etag)
	wantStatus(t, r, http.StatusOK)
	if r.Header.Get("ETag") == etag {
		t.Error("ETag unchanged after a new image")
	}

	wantProblem(t, b.do("GET", "/media/products/nope.png", nil), http.StatusNotFound)
	wantProblem(t, b.do("GET", "/media/..%2f..%2fetc%2fpasswd", nil), http.StatusNotFound)
	wantProblem(t, b.do("GET", "/media/", nil), http.StatusNotFound)
	wantProblem(t, b.do("PUT", "/media/products/prd_01.png", "x"), http.StatusMethodNotAllowed)

	d := e.deps
	d.Blobs = nil
	rec := serve(New(d).Handler(), httptestRequest("GET", "/media/products/prd_01.png", ""))
	if rec.Code != http.StatusNotFound {
		t.Errorf("no blob store: %d", rec.Code)
	}
}
