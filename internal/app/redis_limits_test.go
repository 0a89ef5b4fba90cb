package app_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/globomantics/globomantics/internal/platform/testenv"
)

// TestRateLimitsSharedInRedis: with GLOBO_REDIS_URL, storefront instances
// share the login budget of an account, so guessing through several of
// them gains nothing.
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
		peers = append(peers, "--peer", s+"=http://"+all.addr)
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
}
