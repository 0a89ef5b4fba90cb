package edge_test

import (
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/globomantics/globomantics/internal/edge"
)

// Anonymous catalog pages are answered by the edge's cache within their
// s-maxage; a visitor with a cookie, and anything private, always reaches
// a storefront.
func TestCDNSharesAnonymousPagesOnly(t *testing.T) {
	var home, cart atomic.Int64
	b := startBackend(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/":
			home.Add(1)
			w.Header().Set("Cache-Control", "public, max-age=30, s-maxage=1")
			w.Header().Set("Vary", "Cookie")
			if _, err := r.Cookie("globo_session"); err == nil {
				w.Header().Set("Cache-Control", "private, no-store")
				_, _ = io.WriteString(w, "hello, customer")
				return
			}
			_, _ = io.WriteString(w, "hello, visitor")
		case "/cart":
			cart.Add(1)
			w.Header().Set("Cache-Control", "private, no-store")
			_, _ = io.WriteString(w, "your cart")
		}
	})
	e := startEdge(t, edge.Config{CDNBytes: 1 << 20, Backends: map[string][]string{"storefront": {b.URL}}})
	c := newClient()
	base := "http://" + e.Addr()
	for range 3 {
		code, body, _, err := get(t, c, "GET", base+"/", nil, nil)
		if err != nil || code != 200 || body != "hello, visitor" {
			t.Fatalf("anonymous home: %d %q %v", code, body, err)
		}
	}
	if n := home.Load(); n != 1 {
		t.Errorf("anonymous home page fetched %d times from the storefront, want 1", n)
	}
	cookie := http.Header{"Cookie": {"globo_session=abc"}}
	for range 2 {
		code, body, _, err := get(t, c, "GET", base+"/", nil, cookie)
		if err != nil || code != 200 || body != "hello, customer" {
			t.Fatalf("customer home: %d %q %v", code, body, err)
		}
	}
	if n := home.Load(); n != 3 {
		t.Errorf("home page fetched %d times, want 3: a customer's page is never shared", n)
	}
	for range 2 {
		if code, body, _, err := get(t, c, "GET", base+"/cart", nil, nil); err != nil || code != 200 || !strings.Contains(body, "cart") {
			t.Fatalf("cart: %d %v", code, err)
		}
	}
	if n := cart.Load(); n != 2 {
		t.Errorf("a private answer was served from the cache: %d fetches, want 2", n)
	}
}
