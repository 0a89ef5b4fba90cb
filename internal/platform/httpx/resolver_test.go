package httpx_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/httpx"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

// TestSRVResolver: a client whose instances come from DNS SRV records
// follows the zone as instances come and go.
func TestSRVResolver(t *testing.T) {
	ctx := context.Background()
	named := func(name string) *httptest.Server {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "%q", name)
		}))
		t.Cleanup(s.Close)
		return s
	}
	a, b := named("a"), named("b")
	const name = "_catalog._tcp.shop.test"
	z := testenv.DNSZone(t)
	res := httpx.NewSRV(name, "http", z.Resolver(), nil)
	c := httpx.NewClientFor("catalog", res, nil)

	// No records yet: no instance, a clear 503.
	if err := res.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	var got string
	if err := c.Call(ctx, http.MethodGet, "/", nil, &got); !errs.Is(errs.Unavailable, err) {
		t.Fatalf("call with no instance = %v, want Unavailable", err)
	}

	hostPort := func(s *httptest.Server) string { return s.Listener.Addr().String() }
	port := func(s *httptest.Server) string { _, p, _ := net.SplitHostPort(hostPort(s)); return p }
	z.SetSRV(name, hostPort(a))
	if err := res.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Call(ctx, http.MethodGet, "/", nil, &got); err != nil || got != "a" {
		t.Fatalf("one instance: %q, %v", got, err)
	}

	// A second instance joins: calls spread over both.
	z.SetSRV(name, hostPort(a), hostPort(b))
	if err := res.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	// The preferred target first, by address ("localhost" is known to
	// the resolver from the hosts file).
	if eps := res.Endpoints(); len(eps) != 2 || !strings.HasSuffix(eps[0], ":"+port(a)) || !strings.HasPrefix(eps[0], "http://") {
		t.Fatalf("endpoints = %v", eps)
	}
	seen := map[string]bool{}
	for range 4 {
		if err := c.Call(ctx, http.MethodGet, "/", nil, &got); err != nil {
			t.Fatal(err)
		}
		seen[got] = true
	}
	if !seen["a"] || !seen["b"] {
		t.Fatalf("calls reached %v, want both instances", seen)
	}

	// The first leaves; Run picks the change up by itself.
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go res.Run(rctx, 50*time.Millisecond)
	z.SetSRV(name, hostPort(b))
	deadline := time.Now().Add(2 * time.Second)
	for len(res.Endpoints()) != 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	for range 3 {
		if err := c.Call(ctx, http.MethodGet, "/", nil, &got); err != nil || got != "b" {
			t.Fatalf("after a leaves: %q, %v", got, err)
		}
	}

	// The DNS server goes away: the last answer stays.
	cancel()
	bad := httpx.NewSRV("_catalog._tcp.shop.test", "http", &net.Resolver{PreferGo: true,
		Dial: func(ctx context.Context, _, _ string) (net.Conn, error) { return nil, fmt.Errorf("no dns") }}, nil)
	if err := bad.Refresh(ctx); err == nil {
		t.Fatal("a lookup with no DNS server succeeded")
	}
	if eps := res.Endpoints(); len(eps) != 1 {
		t.Fatalf("endpoints = %v", eps)
	}
}
