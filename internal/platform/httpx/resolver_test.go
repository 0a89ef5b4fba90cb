package httpx_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/httpx"
)

// zone is a tiny authoritative DNS server answering SRV queries for one
// name from a list the test changes.
type zone struct {
	mu      sync.Mutex
	name    string
	records []*dns.SRV
	addr    string
}

func startZone(t *testing.T, name string) *zone {
	t.Helper()
	z := &zone{name: dns.Fqdn(name)}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	z.addr = pc.LocalAddr().String()
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		m.Authoritative = true
		z.mu.Lock()
		if len(q.Question) == 1 && q.Question[0].Name == z.name && q.Question[0].Qtype == dns.TypeSRV {
			for _, r := range z.records {
				rr := *r
				rr.Hdr = dns.RR_Header{Name: z.name, Rrtype: dns.TypeSRV, Class: dns.ClassINET, Ttl: 1}
				m.Answer = append(m.Answer, &rr)
			}
		}
		if len(m.Answer) == 0 {
			m.Rcode = dns.RcodeNameError
		}
		z.mu.Unlock()
		_ = w.WriteMsg(m)
	})}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return z
}

func (z *zone) set(addrs ...string) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.records = nil
	for i, a := range addrs {
		// The servers listen on 127.0.0.1; an SRV target is a host name
		// (Go refuses an address there), so the test names "localhost".
		_, port, _ := net.SplitHostPort(a)
		p, _ := strconv.Atoi(port)
		z.records = append(z.records, &dns.SRV{Priority: 10, Weight: uint16(100 - i), Port: uint16(p), Target: "localhost."})
	}
}

func (z *zone) resolver() *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", z.addr)
	}}
}

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
	z := startZone(t, "_catalog._tcp.shop.test")
	res := httpx.NewSRV("_catalog._tcp.shop.test", "http", z.resolver(), nil)
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
	z.set(hostPort(a))
	if err := res.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Call(ctx, http.MethodGet, "/", nil, &got); err != nil || got != "a" {
		t.Fatalf("one instance: %q, %v", got, err)
	}

	// A second instance joins: calls spread over both.
	z.set(hostPort(a), hostPort(b))
	if err := res.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if eps := res.Endpoints(); len(eps) != 2 || eps[0] != "http://localhost:"+port(a) {
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
	z.set(hostPort(b))
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
