package storefront

import (
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// TestFlashAfterActions: adding to the cart, logging in and out, and being
// sent to log in from checkout each leave one message, shown on the next
// page only, and a page with a message waiting is never shared or cached.
func TestFlashAfterActions(t *testing.T) {
	e := newEnv(t)
	b := e.browser()

	r := b.do("POST", "/cart/add", url.Values{"product_id": {"prd_01"}, "quantity": {"2"}})
	wantStatus(t, r, http.StatusSeeOther)
	r = b.do("GET", "/cart", nil)
	wantContains(t, r.body, `class="flash flash-info" role="status">Added 2 × Desk Lamp to your cart.</p>`)
	if strings.Contains(b.do("GET", "/cart", nil).body, `class="flash`) {
		t.Fatal("the message was shown twice")
	}
	b.do("POST", "/cart/add", url.Values{"product_id": {"prd_01"}})
	wantContains(t, b.do("GET", "/cart", nil).body, "Added Desk Lamp to your cart. You now have 3.")

	// An anonymous visitor sent from checkout to log in is told why.
	anon := e.browser()
	r = anon.do("GET", "/checkout", nil)
	wantStatus(t, r, http.StatusSeeOther)
	r = anon.do("GET", r.Header.Get("Location"), nil)
	wantContains(t, r.body, "Log in or create an account to check out. Your cart is kept.")

	// A public page with a message waiting is personal: not cached, not shared.
	fresh := e.browser()
	fresh.do("GET", "/checkout", nil)
	r = fresh.do("GET", "/", nil)
	if cc := r.Header.Get("Cache-Control"); strings.Contains(cc, "public") {
		t.Fatalf("home page with a message waiting is Cache-Control %q", cc)
	}
	wantContains(t, r.body, "Log in or create an account to check out.")
	if strings.Contains(e.browser().do("GET", "/", nil).body, `class="flash`) {
		t.Fatal("another visitor saw the message")
	}

	b.signUp("ada@example.com", "Ada")
	wantStatus(t, b.do("POST", "/logout", url.Values{}), http.StatusSeeOther)
	wantContains(t, b.do("GET", "/", nil).body, "You&#39;re logged out.")
}

// TestFlashCookieIsChecked: a forged or damaged message cookie is ignored,
// and HTML in a message is escaped.
func TestFlashCookieIsChecked(t *testing.T) {
	e := newEnv(t)
	for _, v := range []string{"x", "zPGI-", "i!!!", "w" + strings.Repeat("A", 700)} {
		req, _ := http.NewRequest("GET", e.srv.URL+"/cart", nil)
		req.AddCookie(&http.Cookie{Name: FlashCookie, Value: v})
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(body), `class="flash`) {
			t.Fatalf("cookie %q showed a message", v)
		}
	}
	rec := httptest.NewRecorder()
	e.server.setFlash(rec, FlashWarning, "<b>only 3</b> left")
	req, _ := http.NewRequest("GET", e.srv.URL+"/cart", nil)
	for _, c := range rec.Result().Cookies() {
		req.AddCookie(c)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	wantContains(t, string(body), `class="flash flash-warning" role="alert">&lt;b&gt;only 3&lt;/b&gt; left</p>`)
}

// TestStorefrontCompresses: pages, CSS and JSON are compressed as
// negotiated, with Vary: Accept-Encoding; images are not.
func TestStorefrontCompresses(t *testing.T) {
	e := newEnv(t)
	css, _ := e.server.static.url("style.css")
	for _, path := range []string{"/", css, "/api/v1/products?limit=50"} {
		req, _ := http.NewRequest("GET", e.srv.URL+path, nil)
		req.Header.Set("Accept-Encoding", "gzip")
		resp, err := http.DefaultTransport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.Header.Get("Content-Encoding") != "gzip" || !strings.Contains(strings.Join(resp.Header.Values("Vary"), ","), "Accept-Encoding") {
			t.Fatalf("%s: Content-Encoding %q, Vary %q", path, resp.Header.Get("Content-Encoding"), resp.Header.Values("Vary"))
		}
		zr, err := gzip.NewReader(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		if b, err := io.ReadAll(zr); err != nil || len(b) < 100 {
			t.Fatalf("%s: %d bytes, %v", path, len(b), err)
		}
		resp.Body.Close()
		// Without Accept-Encoding, the same answer is plain.
		req.Header.Del("Accept-Encoding")
		resp, err = http.DefaultTransport.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if ce := resp.Header.Get("Content-Encoding"); ce != "" {
			t.Fatalf("%s without Accept-Encoding: Content-Encoding %q", path, ce)
		}
	}
}
