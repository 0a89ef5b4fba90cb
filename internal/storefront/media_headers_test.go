package storefront

import (
	"bytes"
	"context"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/globomantics/globomantics/internal/platform/blob"
	"github.com/globomantics/globomantics/internal/platform/errs"
)

// logBuffer collects log output; safe for concurrent use.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// captureLog sends the server's log, at every level, to a buffer.
func captureLog(buf *logBuffer) func(*Deps) {
	return func(d *Deps) {
		d.Log = slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
}

// The defect: a /media/ name of 256 bytes or more answered 503 and logged
// an ERROR holding the blob store's absolute path.
func TestMediaMalformedKeys(t *testing.T) {
	var logs logBuffer
	e := newEnv(t, captureLog(&logs))
	root := e.blobDir
	if err := e.blobs.Put(t.Context(), "products/prd_01/original.png", strings.NewReader("png")); err != nil {
		t.Fatal(err)
	}
	b := e.browser()
	for _, key := range []string{
		strings.Repeat("a", 256),                  // one segment too long for the file system
		strings.Repeat("a", 200),                  // longer than any real segment
		strings.Repeat("abcdefgh/", 80) + "x.png", // too long altogether
		"products/" + strings.Repeat("b", 300) + "/x.png",
		"products/prd_01/original.png/child.png", // a path through a file
		"products/prd_01",                        // a directory
		"products",
		"products/nope.png",
	} {
		r := b.do("GET", "/media/"+key, nil)
		p := wantProblem(t, r, http.StatusNotFound)
		if strings.Contains(r.body, root) || strings.Contains(p.Detail, "/tmp") {
			t.Errorf("%.40s…: the answer holds a path: %s", key, r.body)
		}
	}
	out := logs.String()
	if strings.Contains(out, "level=ERROR") || strings.Contains(out, "level=WARN") {
		t.Errorf("malformed media keys were logged as errors:\n%s", out)
	}
	if strings.Contains(out, root) {
		t.Errorf("the log holds the blob store's path %s:\n%s", root, out)
	}
	wantStatus(t, b.do("GET", "/media/products/prd_01/original.png", nil), http.StatusOK)
}

// failingBlobs is a blob store whose reads fail with a file system error
// that names a path, as an unreadable disk would.
type failingBlobs struct{ blob.Store }

const secretPath = "/srv/globomantics/secret-blob-dir/products/x.png"

func (failingBlobs) Get(context.Context, string) (blob.Object, blob.Info, error) {
	return nil, blob.Info{}, errs.E("blob.Get", &fs.PathError{Op: "open", Path: secretPath, Err: syscall.EIO})
}

// Real I/O errors stay errors (503, logged) but no path reaches the client
// or the log.
func TestMediaReadFailure(t *testing.T) {
	var logs logBuffer
	e := newEnv(t, captureLog(&logs), func(d *Deps) { d.Blobs = failingBlobs{d.Blobs} })
	r := e.browser().do("GET", "/media/products/x.png", nil)
	wantProblem(t, r, http.StatusServiceUnavailable)
	out := logs.String()
	if !strings.Contains(out, "level=ERROR") || !strings.Contains(out, "media read failed") || !strings.Contains(out, "input/output error") {
		t.Errorf("a read failure was not logged as an error:\n%s", out)
	}
	for _, s := range []string{out, r.body} {
		if strings.Contains(s, "secret-blob-dir") {
			t.Errorf("a path leaked:\n%s", s)
		}
	}
}

func wantSecurityHeaders(t *testing.T, what string, h http.Header) {
	t.Helper()
	want := map[string]string{
		"X-Frame-Options":        "DENY",
		"Referrer-Policy":        "strict-origin-when-cross-origin",
		"X-Content-Type-Options": "nosniff",
	}
	for k, v := range want {
		if got := h.Get(k); got != v {
			t.Errorf("%s: %s = %q, want %q", what, k, got, v)
		}
	}
	csp := h.Get("Content-Security-Policy")
	for _, d := range []string{"default-src 'none'", "img-src 'self'", "style-src 'self'", "form-action 'self'", "frame-ancestors 'none'", "base-uri 'none'"} {
		if !strings.Contains(csp, d) {
			t.Errorf("%s: Content-Security-Policy %q lacks %q", what, csp, d)
		}
	}
	if strings.Contains(csp, "unsafe") || strings.Contains(csp, "script-src 'self'") {
		t.Errorf("%s: Content-Security-Policy %q allows scripts", what, csp)
	}
}

func TestSecurityHeaders(t *testing.T) {
	e := newEnv(t)
	if err := e.blobs.Put(t.Context(), "products/prd_01.png", strings.NewReader("png")); err != nil {
		t.Fatal(err)
	}
	b := e.browser()
	b.signUp("ada@example.com", "Ada")
	for _, c := range []struct {
		method, path string
		status       int
	}{
		{"GET", "/", http.StatusOK},
		{"GET", "/products/prd_01", http.StatusOK},
		{"GET", "/account", http.StatusOK},
		{"GET", "/no/such/page", http.StatusNotFound},
		{"GET", "/products/nope", http.StatusNotFound},
		{"PUT", "/cart", http.StatusMethodNotAllowed},
		{"GET", "/api/v1/categories", http.StatusOK},
		{"GET", "/api/v1/me", http.StatusOK},
		{"GET", "/api/v1/products/nope", http.StatusNotFound},
		{"GET", "/api/v1/nope", http.StatusNotFound},
		{"GET", "/static/style.css", http.StatusOK},
		{"GET", "/media/products/prd_01.png", http.StatusOK},
		{"GET", "/media/" + strings.Repeat("x", 300), http.StatusNotFound},
		{"GET", "/dev/mail/m1", http.StatusOK},
	} {
		r := b.do(c.method, c.path, nil)
		wantStatus(t, r, c.status)
		wantSecurityHeaders(t, c.method+" "+c.path, r.Header)
	}
	// Limited answers too.
	e2 := newEnv(t)
	var last response
	for range DefaultLimits.LoginPerAccount.Burst + 1 {
		last = e2.browser().do("POST", "/api/v1/sessions", creds("x@example.com", "wrong"))
	}
	wantStatus(t, last, http.StatusTooManyRequests)
	wantSecurityHeaders(t, "429", last.Header)
}

// The pages need nothing the policy forbids: no scripts, no inline styles,
// no images or styles from elsewhere.
func TestPagesFitThePolicy(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	b.signUp("ada@example.com", "Ada")
	b.do("POST", "/cart/add", url.Values{"product_id": {"prd_01"}})
	for _, path := range []string{"/", "/products/prd_01", "/category/cat_lamps", "/cart", "/checkout", "/account", "/search?q=lamp", "/login", "/register", "/nope"} {
		body := b.do("GET", path, nil).body
		for _, bad := range []string{"<script", " style=", "<style", "src=\"http", "src=\"//", "href=\"http", "javascript:", "onclick", "onload", "onsubmit"} {
			if strings.Contains(body, bad) {
				t.Errorf("%s contains %q, which the policy blocks", path, bad)
			}
		}
	}
}
