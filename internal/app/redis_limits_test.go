package app_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/globomantics/globomantics/internal/platform/testenv"
)

// TestRateLimitsSharedInRedis: with GLOBO_REDIS_URL, storefront instances
// share the login budget of an account, so guessing through several of
// them gains nothing; they share the session cache, so a logout through one
// is a logout everywhere at once; and product reads hit the shared cache.
func TestRateLimitsSharedInRedis(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end suite skipped in -short mode")
	}
	redisURL := testenv.Redis(t)
	env := func() map[string]string {
		e := tokenEnv()
		e["GLOBO_REDIS_URL"] = redisURL
		return e
	}
	dir := t.TempDir()
	all := &proc{name: "all", addr: testenv.FreeAddr(t), env: env(), args: []string{"--data-dir", dir + "/all", "--nats-listen", testenv.FreeAddr(t)}}
	all.start(t)
	waitReady(t, all)
	var peers []string
	for _, s := range []string{"account", "catalog", "search", "cart", "checkout", "order"} {
		peers = append(peers, "--peer", s+"="+all.internalURL())
	}
	front := &proc{name: "front", addr: testenv.FreeAddr(t), env: env(),
		args: append([]string{"--data-dir", dir + "/front", "--services", "storefront"}, peers...)}
	front.start(t)
	waitReady(t, front)

	post := func(p *proc, path string, body any) int {
		t.Helper()
		b, _ := json.Marshal(body)
		resp, err := http.Post(p.url()+path, "application/json", bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	do := func(p *proc, method, path, cookie string, hdr ...string) (*http.Response, []byte) {
		t.Helper()
		base := p.url()
		if strings.HasPrefix(path, "/svc/") {
			base = p.internalURL()
		}
		req, _ := http.NewRequest(method, base+path, nil)
		if cookie != "" {
			req.Header.Set("Cookie", cookie)
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, b
	}
	if st := post(all, "/api/v1/accounts", map[string]string{"email": "shared@example.com", "password": "correct horse battery", "name": "Ada"}); st != http.StatusCreated {
		t.Fatalf("register: %d", st)
	}
	// Wrong passwords alternating between the two storefronts: the
	// account's budget (5) is one, not one per instance.
	wrong := map[string]string{"email": "shared@example.com", "password": "wrong guess"}
	for i := 0; i < 5; i++ {
		p := all
		if i%2 == 1 {
			p = front
		}
		if st := post(p, "/api/v1/sessions", wrong); st != http.StatusUnauthorized {
			t.Fatalf("guess %d through %s: %d, want 401", i+1, p.name, st)
		}
	}
	for _, p := range []*proc{all, front} {
		if st := post(p, "/api/v1/sessions", wrong); st != http.StatusTooManyRequests {
			t.Errorf("sixth guess through %s: %d, want 429", p.name, st)
		}
	}

	// A session: logged in through one storefront, known to the other,
	// and after a logout through the first refused by both at once (the
	// token->account cache is shared, and the logout deletes its entry).
	if st := post(all, "/api/v1/accounts", map[string]string{"email": "sess@example.com", "password": "correct horse battery", "name": "Grace"}); st != http.StatusCreated {
		t.Fatalf("register: %d", st)
	}
	b, _ := json.Marshal(map[string]string{"email": "sess@example.com", "password": "correct horse battery"})
	resp, err := http.Post(front.url()+"/api/v1/sessions", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var cookie string
	for _, c := range resp.Cookies() {
		if c.Name == "globo_session" {
			cookie = c.Name + "=" + c.Value
		}
	}
	if cookie == "" {
		t.Fatalf("login: %s, no session cookie", resp.Status)
	}
	for _, p := range []*proc{front, all} {
		if r, _ := do(p, "GET", "/api/v1/me", cookie); r.StatusCode != http.StatusOK {
			t.Fatalf("me through %s: %d", p.name, r.StatusCode)
		}
	}
	if r, _ := do(all, "DELETE", "/api/v1/sessions", cookie, "Origin", all.url()); r.StatusCode/100 != 2 {
		t.Fatalf("logout: %d", r.StatusCode)
	}
	for _, p := range []*proc{front, all} {
		if r, _ := do(p, "GET", "/api/v1/me", cookie); r.StatusCode != http.StatusUnauthorized {
			t.Errorf("me through %s after the logout: %d, want 401", p.name, r.StatusCode)
		}
	}

	// Product reads: the second is a hit in the shared cache.
	_, body := do(front, "GET", "/api/v1/products?page_size=1", "")
	var page struct {
		Items []struct {
			ID string `json:"id"`
		} `json:"items"`
	}
	if err := json.Unmarshal(body, &page); err != nil || len(page.Items) == 0 {
		t.Fatalf("products: %s %v", body, err)
	}
	// Through two storefronts (each shares its own answer for a moment):
	// the catalog loads the product once, and the second read is a hit in
	// Redis.
	for _, p := range []*proc{front, all} {
		if r, _ := do(p, "GET", "/api/v1/products/"+page.Items[0].ID, ""); r.StatusCode != http.StatusOK {
			t.Fatalf("product: %d", r.StatusCode)
		}
	}
	r, body := do(all, "GET", "/svc/data/status", "", "Authorization", operatorAuth())
	var st struct {
		ProductCache struct {
			Hits int64 `json:"hits"`
		} `json:"product_cache"`
	}
	if err := json.Unmarshal(body, &st); err != nil || r.StatusCode != 200 || st.ProductCache.Hits < 1 {
		t.Errorf("data status %d %s: want a product cache hit", r.StatusCode, body)
	}
}
