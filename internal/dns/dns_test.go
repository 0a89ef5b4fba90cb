package dns_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/globomantics/globomantics/internal/dns"
	"github.com/globomantics/globomantics/internal/platform/httpx"
)

// backend is an instance whose /readyz answers 200 or, when down, 503.
type backend struct {
	*httptest.Server
	down atomic.Bool
}

func newBackend(t *testing.T) *backend {
	t.Helper()
	b := &backend{}
	b.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/readyz" {
			http.NotFound(w, r)
			return
		}
		if b.down.Load() {
			http.Error(w, "draining", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(b.Close)
	return b
}

func (b *backend) port(t *testing.T) string {
	t.Helper()
	u, _ := url.Parse(b.URL)
	return u.Port()
}

// startServer runs a dns.Server on free ports until the end of the test.
func startServer(t *testing.T, cfg dns.Config) *dns.Server {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	cfg.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := dns.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case <-s.Started():
	case err := <-done:
		t.Fatalf("Run: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("server did not start")
	}
	return s
}

func query(t *testing.T, addr, name string, qtype uint16, network string) *mdns.Msg {
	t.Helper()
	m := new(mdns.Msg)
	m.SetQuestion(name, qtype)
	c := &mdns.Client{Net: network, Timeout: 2 * time.Second}
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("query %s %s: %v", name, mdns.TypeToString[qtype], err)
	}
	return r
}

// srvTargets returns the "target:port" of the SRV records of an answer.
func srvTargets(r *mdns.Msg) []string {
	var out []string
	for _, rr := range r.Answer {
		if srv, ok := rr.(*mdns.SRV); ok {
			out = append(out, fmt.Sprintf("%s:%d", srv.Target, srv.Port))
		}
	}
	slices.Sort(out)
	return out
}

// checkFor polls fn until it returns nil or the timeout passes.
func checkFor(t *testing.T, timeout time.Duration, fn func() error) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		err := fn()
		if err == nil {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			t.Fatalf("after %v: %v", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestServer(t *testing.T) {
	b0, b1 := newBackend(t), newBackend(t)
	s := startServer(t, dns.Config{
		Zone:       "Shop.test",
		StatusAddr: "127.0.0.1:0",
		Instances:  map[string][]string{"catalog": {b0.URL, b1.URL + "/"}, "cart": {"http://127.0.0.1:1"}},
	})
	addr := s.Addr()
	const srvName = "_catalog._tcp.shop.test."
	both := []string{"catalog-0.shop.test.:" + b0.port(t), "catalog-1.shop.test.:" + b1.port(t)}
	wantTargets := func(want []string) func() error {
		return func() error {
			r := query(t, addr, srvName, mdns.TypeSRV, "udp")
			if got := srvTargets(r); !slices.Equal(got, want) {
				return fmt.Errorf("SRV %s = %v, want %v", srvName, got, want)
			}
			return nil
		}
	}

	checkFor(t, 2*time.Second, wantTargets(both))

	t.Run("SRV answer", func(t *testing.T) {
		for _, network := range []string{"udp", "tcp"} {
			r := query(t, addr, srvName, mdns.TypeSRV, network)
			if r.Rcode != mdns.RcodeSuccess || !r.Authoritative {
				t.Fatalf("%s: rcode %s, aa %v", network, mdns.RcodeToString[r.Rcode], r.Authoritative)
			}
			if got := srvTargets(r); !slices.Equal(got, both) {
				t.Fatalf("%s: SRV = %v, want %v", network, got, both)
			}
			for _, rr := range r.Answer {
				srv := rr.(*mdns.SRV)
				if srv.Hdr.Ttl != 1 || srv.Priority != 10 || srv.Weight != 10 {
					t.Errorf("SRV record %v: want TTL 1, priority 10, weight 10", srv)
				}
			}
			var extra []string
			for _, rr := range r.Extra {
				if a, ok := rr.(*mdns.A); ok {
					extra = append(extra, a.Hdr.Name+"="+a.A.String())
				}
			}
			slices.Sort(extra)
			if want := []string{"catalog-0.shop.test.=127.0.0.1", "catalog-1.shop.test.=127.0.0.1"}; !slices.Equal(extra, want) {
				t.Errorf("%s: additional = %v, want %v", network, extra, want)
			}
		}
	})

	t.Run("A of a target", func(t *testing.T) {
		r := query(t, addr, "CATALOG-1.shop.test.", mdns.TypeA, "udp")
		if r.Rcode != mdns.RcodeSuccess || len(r.Answer) != 1 {
			t.Fatalf("A: rcode %s, answer %v", mdns.RcodeToString[r.Rcode], r.Answer)
		}
		a := r.Answer[0].(*mdns.A)
		if a.A.String() != "127.0.0.1" || a.Hdr.Ttl != 1 || a.Hdr.Name != "CATALOG-1.shop.test." {
			t.Errorf("A = %v", a)
		}
		// The service's name: the distinct addresses of its healthy
		// instances (both are on 127.0.0.1).
		r = query(t, addr, "catalog.shop.test.", mdns.TypeA, "udp")
		if len(r.Answer) != 1 || r.Answer[0].(*mdns.A).A.String() != "127.0.0.1" || r.Answer[0].Header().Name != "catalog.shop.test." {
			t.Errorf("catalog.shop.test A = %v", r.Answer)
		}
		wantNegative(t, query(t, addr, "cart.shop.test.", mdns.TypeA, "udp"), mdns.RcodeSuccess)
		// A known name of another type: NOERROR, no answer, the SOA.
		r = query(t, addr, "catalog-1.shop.test.", mdns.TypeAAAA, "udp")
		wantNegative(t, r, mdns.RcodeSuccess)
		r = query(t, addr, "_tcp.shop.test.", mdns.TypeSRV, "udp")
		wantNegative(t, r, mdns.RcodeSuccess)
	})

	t.Run("never healthy instance", func(t *testing.T) {
		r := query(t, addr, "_cart._tcp.shop.test.", mdns.TypeSRV, "udp")
		wantNegative(t, r, mdns.RcodeSuccess)
		r = query(t, addr, "cart-0.shop.test.", mdns.TypeA, "udp")
		wantNegative(t, r, mdns.RcodeSuccess)
	})

	t.Run("NXDOMAIN", func(t *testing.T) {
		for _, name := range []string{"_search._tcp.shop.test.", "catalog-2.shop.test.", "www.shop.test.", "_catalog._udp.shop.test."} {
			wantNegative(t, query(t, addr, name, mdns.TypeSRV, "udp"), mdns.RcodeNameError)
		}
	})

	t.Run("REFUSED outside the zone", func(t *testing.T) {
		for _, name := range []string{"example.com.", "test.", "shop.test.example."} {
			r := query(t, addr, name, mdns.TypeA, "udp")
			if r.Rcode != mdns.RcodeRefused || len(r.Answer) != 0 {
				t.Errorf("%s: rcode %s, answer %v; want REFUSED", name, mdns.RcodeToString[r.Rcode], r.Answer)
			}
		}
	})

	t.Run("SOA of the zone", func(t *testing.T) {
		r := query(t, addr, "shop.test.", mdns.TypeSOA, "udp")
		if len(r.Answer) != 1 || r.Answer[0].Header().Rrtype != mdns.TypeSOA {
			t.Fatalf("SOA: %v", r)
		}
	})

	t.Run("go resolver and httpx.SRV", func(t *testing.T) {
		nr := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}}
		srv := httpx.NewSRV("_catalog._tcp.shop.test", "http", nr, slog.New(slog.NewTextHandler(io.Discard, nil)))
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := srv.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		got := slices.Clone(srv.Endpoints())
		slices.Sort(got)
		// httpx.SRV turns the targets into addresses through the same
		// resolver (the A records of catalog-<n>.shop.test), so the
		// endpoints can be dialled although the system resolver does not
		// know the names.
		want := []string{"http://127.0.0.1:" + b0.port(t), "http://127.0.0.1:" + b1.port(t)}
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Fatalf("Endpoints = %v, want %v", got, want)
		}
		for _, ep := range got {
			resp, err := http.Get(ep + "/readyz")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("GET %s/readyz: %s", ep, resp.Status)
			}
		}
		ips, err := nr.LookupHost(ctx, "catalog-0.shop.test")
		if err != nil || !slices.Equal(ips, []string{"127.0.0.1"}) {
			t.Fatalf("LookupHost = %v, %v", ips, err)
		}
		// And a service with no healthy instance is "not found": httpx.SRV
		// empties its list.
		none := httpx.NewSRV("_cart._tcp.shop.test", "http", nr, nil)
		if err := none.Refresh(ctx); err != nil || len(none.Endpoints()) != 0 {
			t.Fatalf("cart: %v, %v", none.Endpoints(), err)
		}
	})

	t.Run("status", func(t *testing.T) {
		resp, err := http.Get("http://" + s.StatusAddr() + "/status")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body struct {
			Zone      string
			Instances []dns.InstanceStatus
		}
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			t.Fatal(err)
		}
		if body.Zone != "shop.test." || len(body.Instances) != 3 {
			t.Fatalf("status = %+v", body)
		}
		health := map[string]bool{}
		for _, in := range body.Instances {
			health[in.Target] = in.Healthy
		}
		if !health["catalog-0.shop.test."] || !health["catalog-1.shop.test."] || health["cart-0.shop.test."] {
			t.Errorf("health = %v", health)
		}
	})

	// Health changes: this runs last, as it changes the answers.
	b1.down.Store(true)
	took := checkFor(t, 3*time.Second, wantTargets(both[:1]))
	if took >= 2*time.Second {
		t.Errorf("an unhealthy instance left the SRV answer after %v, want < 2s", took)
	}
	t.Logf("unhealthy instance dropped after %v", took)
	wantNegative(t, query(t, addr, "catalog-1.shop.test.", mdns.TypeA, "udp"), mdns.RcodeSuccess)
	if st := s.Status(); st[2].Healthy || st[2].LastError == "" {
		t.Errorf("status of the failed instance = %+v", st[2])
	}

	b1.down.Store(false)
	took = checkFor(t, 3*time.Second, wantTargets(both))
	t.Logf("recovered instance back after %v", took)
}

// wantNegative checks a negative answer: the rcode, no answer, the SOA of
// the zone with TTL 1 in the authority section.
func wantNegative(t *testing.T, r *mdns.Msg, rcode int) {
	t.Helper()
	name := r.Question[0].Name
	if r.Rcode != rcode || len(r.Answer) != 0 || !r.Authoritative {
		t.Errorf("%s: rcode %s, answer %v, aa %v; want %s with no answer", name, mdns.RcodeToString[r.Rcode], r.Answer, r.Authoritative, mdns.RcodeToString[rcode])
		return
	}
	if len(r.Ns) != 1 {
		t.Errorf("%s: authority %v, want the SOA", name, r.Ns)
		return
	}
	soa, ok := r.Ns[0].(*mdns.SOA)
	if !ok || soa.Hdr.Name != "shop.test." || soa.Hdr.Ttl != 1 || soa.Minttl != 1 {
		t.Errorf("%s: authority %v, want the zone's SOA with TTL 1", name, r.Ns[0])
	}
}

func TestConfigErrors(t *testing.T) {
	ok := map[string][]string{"catalog": {"http://127.0.0.1:8081"}}
	for _, tc := range []struct {
		name string
		cfg  dns.Config
		want string
	}{
		{"no zone", dns.Config{Addr: "127.0.0.1:0", Instances: ok}, "zone: missing"},
		{"bad zone", dns.Config{Zone: "shop..test", Addr: "127.0.0.1:0", Instances: ok}, `zone "shop..test"`},
		{"bad zone label", dns.Config{Zone: "shop_x.test", Addr: "127.0.0.1:0", Instances: ok}, `label "shop_x"`},
		{"bad listen", dns.Config{Zone: "shop.test", Addr: "127.0.0.1", Instances: ok}, `listen address "127.0.0.1"`},
		{"bad listen host", dns.Config{Zone: "shop.test", Addr: "dns.example:53", Instances: ok}, `listen address "dns.example:53"`},
		{"bad status", dns.Config{Zone: "shop.test", Addr: ":0", StatusAddr: "x", Instances: ok}, `status address "x"`},
		{"no instances", dns.Config{Zone: "shop.test", Addr: ":0"}, "no instances"},
		{"empty service", dns.Config{Zone: "shop.test", Addr: ":0", Instances: map[string][]string{"cart": nil}}, `service "cart" has no instance`},
		{"bad service", dns.Config{Zone: "shop.test", Addr: ":0", Instances: map[string][]string{"Cart_1": {"http://127.0.0.1:1"}}}, `service name "Cart_1"`},
		{"hostname", dns.Config{Zone: "shop.test", Addr: ":0", Instances: map[string][]string{"cart": {"http://cart.internal:8080"}}}, `host "cart.internal" is not an IP address`},
		{"scheme", dns.Config{Zone: "shop.test", Addr: ":0", Instances: map[string][]string{"cart": {"127.0.0.1:8080"}}}, `instance "127.0.0.1:8080" of cart`},
		{"path", dns.Config{Zone: "shop.test", Addr: ":0", Instances: map[string][]string{"cart": {"http://127.0.0.1:8080/x"}}}, "no path"},
		{"port", dns.Config{Zone: "shop.test", Addr: ":0", Instances: map[string][]string{"cart": {"http://127.0.0.1:99999"}}}, `bad port "99999"`},
		{"name clash", dns.Config{Zone: "shop.test", Addr: ":0", Instances: map[string][]string{"a": {"http://127.0.0.1:1"}, "a-0": {"http://127.0.0.1:2"}}}, "name a-0.shop.test. of service a-0 is also an instance's name"},
		{"health path", dns.Config{Zone: "shop.test", Addr: ":0", Instances: ok, HealthPaths: map[string]string{"catalog": "readyz"}}, `health path "readyz" of catalog`},
		{"registry only", dns.Config{Zone: "shop.test", Addr: ":0", Registries: []dns.Registry{mustEdgeRegistry(t, "http://127.0.0.1:1")}}, ""},
		{"two instances", dns.Config{Zone: "shop.test", Addr: ":0", Instances: map[string][]string{"a": {"http://127.0.0.1:1", "http://127.0.0.1:2"}}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := dns.New(tc.cfg)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want an error containing %q", err, tc.want)
			}
		})
	}
	// localhost stands for 127.0.0.1.
	if _, err := dns.New(dns.Config{Zone: "shop.test", Addr: "localhost:0", Instances: map[string][]string{"cart": {"http://localhost:8080"}}}); err != nil {
		t.Errorf("localhost: %v", err)
	}
}

func mustEdgeRegistry(t *testing.T, u string) *dns.EdgeRegistry {
	t.Helper()
	r, err := dns.NewEdgeRegistry(u, "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestRunListenError(t *testing.T) {
	ln, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	s, err := dns.New(dns.Config{Zone: "shop.test", Addr: ln.LocalAddr().String(), Instances: map[string][]string{"cart": {"http://127.0.0.1:1"}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "listen on") {
		t.Fatalf("Run on a busy port: %v", err)
	}
}
