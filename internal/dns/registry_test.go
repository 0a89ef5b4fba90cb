package dns_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/globomantics/globomantics/internal/dns"
	"github.com/globomantics/globomantics/internal/edge"
	"github.com/globomantics/globomantics/internal/platform/freeport"
)

const edgeToken = "edge-s3cret"

// runningEdge is a real edge (edge.New) on loopback whose registry API is
// on its internal listener, with the token edgeToken.
type runningEdge struct {
	e    *edge.Edge
	stop func()
}

// startEdge runs an edge with its internal listener on internal
// (host:port) until stop or the end of the test.
func startEdge(t *testing.T, internal string) *runningEdge {
	t.Helper()
	e, err := edge.New(edge.Config{
		Listen:         "127.0.0.1:0",
		InternalListen: internal,
		Token:          edgeToken,
		HealthInterval: 100 * time.Millisecond,
		Log:            slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Serve(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("edge.Serve: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return &runningEdge{e: e, stop: stop}
}

// register keeps url registered in pool at the edge (heartbeats every
// 200 ms, as a server does with edge.Register) until the returned function
// is called, which deregisters it.
func register(t *testing.T, registry, pool, url string) (leave func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = edge.Register(ctx, registry, edgeToken, pool, url, 200*time.Millisecond, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	}()
	var once sync.Once
	leave = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(leave)
	return leave
}

// syncBuffer is a log destination safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startServerLog is startServer with the server's log kept in a buffer.
func startServerLog(t *testing.T, cfg dns.Config) (*dns.Server, *syncBuffer) {
	t.Helper()
	buf := &syncBuffer{}
	cfg.Addr = "127.0.0.1:0"
	cfg.Log = slog.New(slog.NewTextHandler(buf, nil))
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
	return s, buf
}

// addrs returns the addresses of the A records of an answer, sorted.
func addrs(r *mdns.Msg) []string {
	var out []string
	for _, rr := range r.Answer {
		if a, ok := rr.(*mdns.A); ok {
			out = append(out, a.A.String())
		}
	}
	slices.Sort(out)
	return out
}

// TestEdgeRegistry: the DNS server follows a real edge's registry: an
// instance that registers appears in the SRV answer, one that deregisters
// leaves it within about a second, and while the registry is down the last
// list is kept (and the outage logged once); edge.<zone> lists the healthy
// edges.
func TestEdgeRegistry(t *testing.T) {
	port, err := freeport.Get()
	if err != nil {
		t.Fatal(err)
	}
	internal := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	ed := startEdge(t, internal)
	registryURL := "http://" + internal
	reg, err := dns.NewEdgeRegistry(registryURL, edgeToken, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	edgeURL := "http://" + ed.e.Addr()
	s, logs := startServerLog(t, dns.Config{
		Zone:        "shop.test",
		StatusAddr:  "127.0.0.1:0",
		Instances:   map[string][]string{"edge": {edgeURL}},
		HealthPaths: map[string]string{"edge": "/_edge/readyz"},
		Registries:  []dns.Registry{reg},
	})
	addr := s.Addr()
	b0, b1 := newBackend(t), newBackend(t)
	target := func(b *backend) string { return "catalog-127-0-0-1-" + b.port(t) + ".shop.test.:" + b.port(t) }
	const srvName = "_catalog._tcp.shop.test."
	wantSRV := func(want ...string) func() error {
		slices.Sort(want)
		return func() error {
			r := query(t, addr, srvName, mdns.TypeSRV, "udp")
			if got := srvTargets(r); !slices.Equal(got, want) {
				return fmt.Errorf("SRV %s = %v, want %v", srvName, got, want)
			}
			return nil
		}
	}

	// The edges: edge.shop.test A and the SRV of service edge.
	checkFor(t, 2*time.Second, func() error {
		if got := addrs(query(t, addr, "edge.shop.test.", mdns.TypeA, "udp")); !slices.Equal(got, []string{"127.0.0.1"}) {
			return fmt.Errorf("edge.shop.test A = %v", got)
		}
		return nil
	})
	_, edgePort, _ := net.SplitHostPort(ed.e.Addr())
	if got := srvTargets(query(t, addr, "_edge._tcp.shop.test.", mdns.TypeSRV, "udp")); !slices.Equal(got, []string{"edge-0.shop.test.:" + edgePort}) {
		t.Errorf("_edge._tcp SRV = %v", got)
	}

	// Nothing registered yet: the catalog's names do not exist.
	wantNegative(t, query(t, addr, srvName, mdns.TypeSRV, "udp"), mdns.RcodeNameError)

	leave0 := register(t, registryURL, "catalog", b0.URL)
	took := checkFor(t, 3*time.Second, wantSRV(target(b0)))
	t.Logf("registered instance in the SRV answer after %v", took)
	register(t, registryURL, "catalog", b1.URL)
	took = checkFor(t, 3*time.Second, wantSRV(target(b0), target(b1)))
	t.Logf("second registered instance in the SRV answer after %v", took)

	// The target's A record, the service's A record (one per distinct IP)
	// and the additional section.
	r := query(t, addr, "catalog-127-0-0-1-"+b0.port(t)+".shop.test.", mdns.TypeA, "udp")
	if got := addrs(r); !slices.Equal(got, []string{"127.0.0.1"}) {
		t.Errorf("A of the registered target = %v", got)
	}
	if got := addrs(query(t, addr, "catalog.shop.test.", mdns.TypeA, "tcp")); !slices.Equal(got, []string{"127.0.0.1"}) {
		t.Errorf("catalog.shop.test A = %v", got)
	}
	if r := query(t, addr, srvName, mdns.TypeSRV, "udp"); len(r.Extra) != 2 {
		t.Errorf("additional section = %v, want the targets' A records", r.Extra)
	}
	st := s.Status()
	if len(st) != 3 || st[0].Source != dns.SourceStatic || st[1].Source != dns.SourceRegistry || !st[1].Healthy {
		t.Errorf("status = %+v", st)
	}

	// Deregistration: gone from the answer within about a second.
	start := time.Now()
	leave0()
	checkFor(t, 3*time.Second, wantSRV(target(b1)))
	took = time.Since(start)
	t.Logf("deregistered instance left the SRV answer after %v", took)
	if took > 1500*time.Millisecond {
		t.Errorf("deregistered instance left the SRV answer after %v, want about 1 s", took)
	}
	wantNegative(t, query(t, addr, "catalog-127-0-0-1-"+b0.port(t)+".shop.test.", mdns.TypeA, "udp"), mdns.RcodeNameError)

	// The registry goes down: the last list is kept, the outage is
	// logged once, and the edge leaves edge.shop.test (its readiness
	// check fails).
	ed.stop()
	checkFor(t, 3*time.Second, func() error {
		if rs := s.RegistryStatus(); len(rs) != 1 || rs[0].Reachable || rs[0].Instances != 1 {
			return fmt.Errorf("registry status = %+v", rs)
		}
		return nil
	})
	downAt := time.Now()
	for time.Since(downAt) < 1500*time.Millisecond { // three polls
		if err := wantSRV(target(b1))(); err != nil {
			t.Fatalf("with the registry down: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n := strings.Count(logs.String(), "registry unreachable"); n != 1 {
		t.Errorf("the outage was logged %d times, want once:\n%s", n, logs)
	}
	checkFor(t, 3*time.Second, func() error {
		if got := addrs(query(t, addr, "edge.shop.test.", mdns.TypeA, "udp")); len(got) != 0 {
			return fmt.Errorf("edge.shop.test A = %v with the edge down", got)
		}
		return nil
	})

	// The status page shows both.
	resp, err := http.Get("http://" + s.StatusAddr() + "/status")
	if err != nil {
		t.Fatal(err)
	}
	var body struct {
		Instances  []dns.InstanceStatus
		Registries []dns.RegistryStatus
	}
	err = json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if err != nil || len(body.Instances) != 2 || len(body.Registries) != 1 || body.Registries[0].Registry != registryURL || body.Registries[0].LastError == "" {
		t.Errorf("status page = %+v, %v", body, err)
	}

	// Back on the same address: the registry is followed again. b1 still
	// heartbeats and is re-registered; b0 stays away.
	startEdge(t, internal)
	checkFor(t, 3*time.Second, func() error {
		if rs := s.RegistryStatus(); !rs[0].Reachable {
			return fmt.Errorf("registry status = %+v", rs)
		}
		return nil
	})
	checkFor(t, 3*time.Second, wantSRV(target(b1)))
	if !strings.Contains(logs.String(), "registry reachable again") {
		t.Errorf("no log of the registry's return:\n%s", logs)
	}
}

// TestRegistryEntriesLeftOut: a registered pool whose name is no DNS
// label, or an instance whose host is not an IP, is left out (and logged);
// an instance configured statically too keeps its configured name; the
// rest is served.
func TestRegistryEntriesLeftOut(t *testing.T) {
	port, err := freeport.Get()
	if err != nil {
		t.Fatal(err)
	}
	internal := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	startEdge(t, internal)
	registryURL := "http://" + internal
	b0, b1 := newBackend(t), newBackend(t)
	reg, err := dns.NewEdgeRegistry(registryURL, edgeToken, []string{"cart", "catalog"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := startServerLog(t, dns.Config{
		Zone:       "shop.test",
		Instances:  map[string][]string{"cart": {b0.URL}},
		Registries: []dns.Registry{reg},
	})
	register(t, registryURL, "cart", b0.URL)                  // configured too
	register(t, registryURL, "catalog", b1.URL)               // served
	register(t, registryURL, "search", b1.URL)                // not one of the pools asked for
	register(t, registryURL, "bad_name", b1.URL)              // not a DNS label: left out
	register(t, registryURL, "catalog", "http://localhost:1") // served as 127.0.0.1, never healthy
	want := []string{"cart cart-0.shop.test.", "catalog catalog-127-0-0-1-1.shop.test.", "catalog catalog-127-0-0-1-" + b1.port(t) + ".shop.test."}
	checkFor(t, 3*time.Second, func() error {
		var services []string
		for _, in := range s.Status() {
			services = append(services, in.Service+" "+in.Target)
		}
		slices.Sort(services)
		if !slices.Equal(services, want) {
			return fmt.Errorf("instances = %v, want %v", services, want)
		}
		return nil
	})
	checkFor(t, 3*time.Second, func() error {
		got := srvTargets(query(t, s.Addr(), "_catalog._tcp.shop.test.", mdns.TypeSRV, "udp"))
		if want := []string{"catalog-127-0-0-1-" + b1.port(t) + ".shop.test.:" + b1.port(t)}; !slices.Equal(got, want) {
			return fmt.Errorf("catalog SRV = %v, want %v", got, want)
		}
		return nil
	})
	if got := srvTargets(query(t, s.Addr(), "_cart._tcp.shop.test.", mdns.TypeSRV, "udp")); !slices.Equal(got, []string{"cart-0.shop.test.:" + b0.port(t)}) {
		t.Errorf("cart SRV = %v, want the configured name only", got)
	}
	wantNegative(t, query(t, s.Addr(), "_search._tcp.shop.test.", mdns.TypeSRV, "udp"), mdns.RcodeNameError)
	// With every pool asked for, bad_name is logged as left out.
	all, err := dns.NewEdgeRegistry(registryURL, edgeToken, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	s2, logs2 := startServerLog(t, dns.Config{Zone: "shop.test", Registries: []dns.Registry{all}})
	checkFor(t, 3*time.Second, func() error {
		if !strings.Contains(logs2.String(), `registered service \"bad_name\" is not a DNS label`) {
			return fmt.Errorf("no log of the left-out pool:\n%s", logs2)
		}
		return nil
	})
	checkFor(t, 3*time.Second, func() error {
		if got := srvTargets(query(t, s2.Addr(), "_search._tcp.shop.test.", mdns.TypeSRV, "udp")); len(got) != 1 {
			return fmt.Errorf("search SRV with every pool = %v", got)
		}
		return nil
	})
}

func TestNewEdgeRegistryErrors(t *testing.T) {
	for _, u := range []string{"", "edge:8080", "ftp://127.0.0.1:1", "http://127.0.0.1:1/x", "http://"} {
		if _, err := dns.NewEdgeRegistry(u, "", nil, nil); err == nil {
			t.Errorf("NewEdgeRegistry(%q): no error", u)
		}
	}
	if _, err := dns.New(dns.Config{Zone: "shop.test", Addr: ":0", Registries: []dns.Registry{nil}}); err == nil || !strings.Contains(err.Error(), "nil registry") {
		t.Errorf("New with a nil registry: %v", err)
	}
}
