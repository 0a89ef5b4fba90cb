package haproxy_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/dns"
	"github.com/globomantics/globomantics/internal/edge/haproxy"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

// needHAProxy skips the test when haproxy is missing, unless Required.
func needHAProxy(t *testing.T) {
	t.Helper()
	if haproxy.Binary() == "" {
		if testenv.Required() {
			t.Fatal("haproxy not installed and GLOBO_REQUIRE_SERVICES=1")
		}
		t.Skip("haproxy not installed")
	}
}

func TestRenderAcceptedByHAProxy(t *testing.T) {
	needHAProxy(t)
	cases := map[string]haproxy.Config{
		"static": {Listen: ":8000", Pools: []haproxy.Pool{
			{Name: "storefront", Servers: []string{"http://127.0.0.1:8080", "http://localhost:8081"}},
		}},
		"srv": {Listen: "127.0.0.1:8000", DNSServer: "127.0.0.1:5353", Pools: []haproxy.Pool{
			{Name: "storefront", SRV: []string{"_storefront._tcp.shop.test"}},
		}},
		"both": {Listen: ":8000", InternalListen: "127.0.0.1:8001", StatsListen: "127.0.0.1:8002",
			DNSServer: "127.0.0.1:5353", Balance: "leastconn", Threads: 2, AccessLog: true, Pools: []haproxy.Pool{
				{Name: "storefront", Servers: []string{"http://127.0.0.1:8080"}, SRV: []string{"_storefront._tcp.shop.test."}, SRVSlots: 4},
				{Name: "catalog", SRV: []string{"_catalog._tcp.shop.test"}},
			}},
	}
	for name, cfg := range cases {
		t.Run(name, func(t *testing.T) {
			text, err := haproxy.Render(cfg)
			if err != nil {
				t.Fatal(err)
			}
			warnings, err := haproxy.Check(context.Background(), "", text)
			if err != nil {
				t.Fatalf("%v\n%s", err, text)
			}
			if len(warnings) > 0 {
				t.Errorf("haproxy -c warned:\n%s\n%s", strings.Join(warnings, "\n"), text)
			}
			s := string(text)
			for _, want := range []string{
				"retries 2", "option redispatch 1", "retry-on conn-failure empty-response 503", "http-reuse always",
				"option forwardfor", "unique-id-format", "http-check send meth GET uri /readyz",
				"inter 500ms", "fall 2 rise 1", "http-request disable-l7-retry unless METH_GET",
				"monitor-uri /_haproxy/healthz", "compression algo gzip", "gt 10485760",
			} {
				if !strings.Contains(s, want) {
					t.Errorf("config lacks %q", want)
				}
			}
			if len(cfg.Pools[0].SRV) > 0 {
				for _, want := range []string{"resolvers globo", "nameserver dns1 127.0.0.1:5353", "hold valid 1s",
					"_storefront._tcp.shop.test resolvers globo"} {
					if !strings.Contains(s, want) {
						t.Errorf("config lacks %q", want)
					}
				}
			} else if strings.Contains(s, "resolvers") {
				t.Error("a config without SRV names has a resolvers section")
			}
		})
	}
}

func TestRenderRefusesBadConfig(t *testing.T) {
	cases := map[string]haproxy.Config{
		"no listen":         {Pools: []haproxy.Pool{{Name: "storefront", Servers: []string{"http://127.0.0.1:1"}}}},
		"no pools":          {Listen: ":80"},
		"no storefront":     {Listen: ":80", Pools: []haproxy.Pool{{Name: "catalog", Servers: []string{"http://127.0.0.1:1"}}}},
		"https server":      {Listen: ":80", Pools: []haproxy.Pool{{Name: "storefront", Servers: []string{"https://127.0.0.1:1"}}}},
		"path in server":    {Listen: ":80", Pools: []haproxy.Pool{{Name: "storefront", Servers: []string{"http://127.0.0.1:1/x"}}}},
		"srv without dns":   {Listen: ":80", Pools: []haproxy.Pool{{Name: "storefront", SRV: []string{"_sf._tcp.shop.test"}}}},
		"bad srv name":      {Listen: ":80", DNSServer: "127.0.0.1:53", Pools: []haproxy.Pool{{Name: "storefront", SRV: []string{"shop.test"}}}},
		"dns by name":       {Listen: ":80", DNSServer: "ns.shop.test:53", Pools: []haproxy.Pool{{Name: "storefront", SRV: []string{"_sf._tcp.shop.test"}}}},
		"injection in name": {Listen: ":80", Pools: []haproxy.Pool{{Name: "storefront\n  server x", Servers: []string{"http://127.0.0.1:1"}}}},
		"bad balance":       {Listen: ":80", Balance: "source", Pools: []haproxy.Pool{{Name: "storefront", Servers: []string{"http://127.0.0.1:1"}}}},
		"bad health path":   {Listen: ":80", HealthPath: "/ready z", Pools: []haproxy.Pool{{Name: "storefront", Servers: []string{"http://127.0.0.1:1"}}}},
	}
	for name, cfg := range cases {
		t.Run(name, func(t *testing.T) {
			text, err := haproxy.Render(cfg)
			if err == nil {
				t.Fatalf("rendered:\n%s", text)
			}
			if !errs.Is(errs.Invalid, err) {
				t.Fatalf("error kind %v, want Invalid: %v", errs.KindOf(err), err)
			}
		})
	}
}

// backend is a small storefront stand-in: / answers its name, /readyz 200
// while ready (503 otherwise, as the shop while draining), /drop closes the
// connection without answering (for POST always; for GET when dropGET).
type backend struct {
	name    string
	url     string
	ready   atomic.Bool
	dropGET atomic.Bool
	hits    atomic.Int64
	posts   atomic.Int64
	srv     *http.Server
}

func startBackend(t *testing.T, name string) *backend {
	t.Helper()
	b := &backend{name: name}
	b.ready.Store(true)
	body := []byte(name)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if !b.ready.Load() {
			http.Error(w, "draining", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
	mux.HandleFunc("/drop", func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			b.posts.Add(1)
		} else if !b.dropGET.Load() {
			b.hits.Add(1)
			_, _ = w.Write(body)
			return
		}
		_, _ = io.Copy(io.Discard, r.Body)
		c, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			c.Close()
		}
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		w.Header().Set("X-Backend", name)
		w.Header().Set("X-Seen-Request-Id", r.Header.Get("X-Request-Id"))
		w.Header().Set("X-Seen-Forwarded-For", r.Header.Get("X-Forwarded-For"))
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		_, _ = w.Write(body)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b.url = "http://" + ln.Addr().String()
	b.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = b.srv.Serve(ln) }()
	t.Cleanup(func() { _ = b.srv.Close() })
	return b
}

func client() *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 32}}
}

// get fetches url and returns the body of a 200 answer.
func get(hc *http.Client, url string) (string, error) {
	resp, err := hc.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	return string(b), nil
}

// startHAProxy renders cfg with a free public port and starts haproxy.
func startHAProxy(t *testing.T, cfg haproxy.Config) (*testenv.HAProxyProcess, string) {
	t.Helper()
	cfg.Listen = testenv.FreeAddr(t)
	text, err := haproxy.Render(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p := testenv.HAProxy(t, text, cfg.Listen)
	return p, "http://" + cfg.Listen
}

// load sends GETs to url from n goroutines until stop is closed, counting
// answers per backend body, and the failures.
type load struct {
	mu       sync.Mutex
	last     map[string]time.Time // start of the last request each backend answered
	count    map[string]int
	failures []error
	wg       sync.WaitGroup
	stop     chan struct{}
}

func startLoad(hc *http.Client, url string, n int) *load {
	l := &load{last: map[string]time.Time{}, count: map[string]int{}, stop: make(chan struct{})}
	for range n {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				start := time.Now()
				body, err := get(hc, url)
				l.mu.Lock()
				if err != nil {
					l.failures = append(l.failures, err)
				} else {
					l.last[body] = start
					l.count[body]++
				}
				l.mu.Unlock()
			}
		}()
	}
	return l
}

func (l *load) end() {
	close(l.stop)
	l.wg.Wait()
}

func (l *load) lastFrom(name string) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last[name]
}

func (l *load) countOf(name string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.count[name]
}

func (l *load) check(t *testing.T) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.failures) > 0 {
		t.Errorf("%d failed GETs (answers %v), first: %v", len(l.failures), l.count, l.failures[0])
	}
}

func TestHAProxySpreadsDrainsAndRetries(t *testing.T) {
	needHAProxy(t)
	a, b := startBackend(t, "a"), startBackend(t, "b")
	p, base := startHAProxy(t, haproxy.Config{Pools: []haproxy.Pool{{Name: "storefront", Servers: []string{a.url, b.url}}}})
	hc := client()

	// Traffic spreads over both servers.
	for range 200 {
		if _, err := get(hc, base+"/"); err != nil {
			t.Fatalf("%v\n%s", err, p.Log())
		}
	}
	if a.hits.Load() < 30 || b.hits.Load() < 30 {
		t.Fatalf("200 GETs spread badly: a %d, b %d", a.hits.Load(), b.hits.Load())
	}

	// Forwarding headers and the request id: a sane id is kept, another
	// replaced by a generated one, and the answer carries it.
	for _, tc := range []struct{ in, want string }{{"abc-123.X_y", "abc-123.X_y"}, {"bad id!", ""}} {
		req, _ := http.NewRequest("GET", base+"/", nil)
		req.Header.Set("X-Request-Id", tc.in)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		seen := resp.Header.Get("X-Seen-Request-Id")
		if tc.want != "" && seen != tc.want || tc.want == "" && (seen == tc.in || len(seen) != 36) {
			t.Errorf("request id %q reached the server as %q", tc.in, seen)
		}
		if got := resp.Header.Get("X-Request-Id"); got != seen {
			t.Errorf("answer's X-Request-Id %q, server saw %q", got, seen)
		}
		if got := resp.Header.Get("X-Seen-Forwarded-For"); got != "127.0.0.1" {
			t.Errorf("X-Forwarded-For %q", got)
		}
	}

	// /readyz turns 503 on a (the shop draining): a leaves rotation within
	// about fall x inter, and no GET fails meanwhile.
	l := startLoad(hc, base+"/", 4)
	testenv.CheckFor(t, 2*time.Second, func() error {
		if l.countOf("a") == 0 || l.countOf("b") == 0 {
			return errors.New("load not on both servers yet")
		}
		return nil
	})
	a.ready.Store(false)
	t0 := time.Now()
	testenv.CheckFor(t, 4*time.Second, func() error {
		if last := l.lastFrom("a"); time.Since(last) < 400*time.Millisecond {
			return fmt.Errorf("a still answered %v ago", time.Since(last))
		}
		return nil
	})
	l.end()
	l.check(t)
	out := l.lastFrom("a").Sub(t0)
	t.Logf("a left rotation %v after its /readyz turned 503 (answers: %v)", out.Round(time.Millisecond), l.count)
	if out > 1600*time.Millisecond {
		t.Errorf("a left rotation only %v after its /readyz turned 503, want about 1 s", out)
	}

	// Back in rotation after one good check.
	a.ready.Store(true)
	before := a.hits.Load()
	testenv.CheckFor(t, 3*time.Second, func() error {
		if _, err := get(hc, base+"/"); err != nil {
			return err
		}
		if a.hits.Load() == before {
			return errors.New("a gets no traffic yet")
		}
		return nil
	})

	// a dies (listener and connections closed) under load: every GET
	// still succeeds, retried on b.
	l = startLoad(hc, base+"/", 4)
	testenv.CheckFor(t, 2*time.Second, func() error {
		if l.countOf("a") == 0 || l.countOf("b") == 0 {
			return errors.New("load not on both servers yet")
		}
		return nil
	})
	_ = a.srv.Close()
	killedAt := l.countOf("b")
	time.Sleep(time.Second) // GETs keep coming while haproxy finds a dead
	if l.countOf("b") == killedAt {
		t.Error("b answered nothing after a was killed")
	}
	l.end()
	l.check(t)
	t.Logf("after a was killed: answers %v", l.count)
}

func TestHAProxyDoesNotResendPOST(t *testing.T) {
	needHAProxy(t)
	a, b := startBackend(t, "a"), startBackend(t, "b")
	_, base := startHAProxy(t, haproxy.Config{Pools: []haproxy.Pool{{Name: "storefront", Servers: []string{a.url, b.url}}}})
	hc := client()

	// A POST the server took and dropped is answered 502, sent once.
	resp, err := hc.Post(base+"/drop", "application/json", strings.NewReader(`{"x":1}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("dropped POST answered %d, want 502", resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("502 content type %q", ct)
	}
	if n := a.posts.Load() + b.posts.Load(); n != 1 {
		t.Errorf("the POST reached the servers %d times, want 1", n)
	}

	// The same drop on a GET is retried on the other server.
	a.dropGET.Store(true)
	for i := range 20 {
		if _, err := get(hc, base+"/drop"); err != nil {
			t.Fatalf("GET %d: %v", i, err)
		}
	}
	if b.hits.Load() != 20 {
		t.Errorf("b answered %d of 20 GETs", b.hits.Load())
	}

	// A POST with an Idempotency-Key may be resent: it reaches the second
	// server too (and both drop it).
	before := a.posts.Load() + b.posts.Load()
	req, _ := http.NewRequest("POST", base+"/drop", strings.NewReader(`{}`))
	req.Header.Set("Idempotency-Key", "k1")
	if resp, err = hc.Do(req); err == nil {
		resp.Body.Close()
	}
	if n := a.posts.Load() + b.posts.Load() - before; n < 2 {
		t.Errorf("a POST with Idempotency-Key was tried %d times, want a retry", n)
	}

	// Bodies over the limit never reach a server; /svc/ is not routed.
	posts := a.posts.Load() + b.posts.Load()
	if resp, err = rawStatus(base, fmt.Sprintf("POST /drop HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", haproxy.DefaultMaxBody+1)); err != nil || resp.StatusCode != 413 {
		t.Errorf("oversized body: %v %v", resp, err)
	}
	if a.posts.Load()+b.posts.Load() != posts {
		t.Error("an oversized body reached a server")
	}
	resp, err = hc.Get(base + "/svc/catalog/v1/products")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var prob struct {
		Status int    `json:"status"`
		Title  string `json:"title"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&prob); err != nil || resp.StatusCode != 404 || prob.Status != 404 ||
		resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Errorf("/svc/ on the public listener: %d %q %+v %v", resp.StatusCode, resp.Header.Get("Content-Type"), prob, err)
	}
	if a.hits.Load()+b.hits.Load() != 20 {
		t.Errorf("a refused request reached a server")
	}
}

// rawStatus sends a raw request head and reads the response head.
func rawStatus(base, head string) (*http.Response, error) {
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, head); err != nil {
		return nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return nil, err
	}
	resp.Body.Close()
	return resp, nil
}

func TestHAProxyFindsInstancesInDNS(t *testing.T) {
	needHAProxy(t)
	a, b := startBackend(t, "a"), startBackend(t, "b")
	b.ready.Store(false) // not in DNS yet
	ds, err := dns.New(dns.Config{Zone: "shop.test", Addr: "127.0.0.1:0", Interval: 100 * time.Millisecond,
		Instances: map[string][]string{"storefront": {a.url, b.url}}, Log: testenv.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ds.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-ds.Started():
	case err := <-done:
		t.Fatal(err)
	}
	_, base := startHAProxy(t, haproxy.Config{DNSServer: ds.Addr(),
		Pools: []haproxy.Pool{{Name: "storefront", SRV: []string{"_storefront._tcp.shop.test"}, SRVSlots: 4}}})
	hc := client()
	testenv.CheckFor(t, 5*time.Second, func() error {
		_, err := get(hc, base+"/")
		return err
	})
	if b.hits.Load() != 0 {
		t.Fatal("b got traffic before it was in DNS")
	}
	// b turns ready: the DNS server lists it and HAProxy sends it traffic,
	// with no change to HAProxy's configuration.
	b.ready.Store(true)
	t0 := time.Now()
	testenv.CheckFor(t, 6*time.Second, func() error {
		if _, err := get(hc, base+"/"); err != nil {
			return err
		}
		if b.hits.Load() == 0 {
			return errors.New("b gets no traffic")
		}
		return nil
	})
	t.Logf("b got traffic %v after it turned ready", time.Since(t0).Round(time.Millisecond))
}

func TestHAProxyReloadLosesNoRequest(t *testing.T) {
	needHAProxy(t)
	a, b := startBackend(t, "a"), startBackend(t, "b")
	cfg := haproxy.Config{Listen: testenv.FreeAddr(t), Pools: []haproxy.Pool{{Name: "storefront", Servers: []string{a.url, b.url}}}}
	text, err := haproxy.Render(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p := testenv.HAProxy(t, text, cfg.Listen)
	oldPID := p.PID()
	hc := client()
	l := startLoad(hc, "http://"+cfg.Listen+"/", 4)
	testenv.CheckFor(t, 2*time.Second, func() error {
		if l.countOf("a") == 0 || l.countOf("b") == 0 {
			return errors.New("load not on both servers yet")
		}
		return nil
	})
	cfg.Pools[0].Servers = []string{b.url}
	if text, err = haproxy.Render(cfg); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Reload(ctx, text); err != nil {
		t.Fatal(err)
	}
	reloaded := time.Now()
	time.Sleep(300 * time.Millisecond)
	l.end()
	l.check(t)
	if p.PID() == oldPID {
		t.Error("the process did not change")
	}
	if last := l.lastFrom("a"); last.After(reloaded) {
		t.Errorf("a answered %v after the reload removed it", last.Sub(reloaded))
	}
	t.Logf("answers across the reload: %v", l.count)
}
