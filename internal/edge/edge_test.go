package edge_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/edge"
	"github.com/globomantics/globomantics/internal/platform/clock"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

func TestPolicySpread(t *testing.T) {
	for _, name := range []string{"p2c", "least", "round_robin"} {
		t.Run(name, func(t *testing.T) {
			policy, err := edge.ParsePolicy(name)
			if err != nil {
				t.Fatal(err)
			}
			var bs []*testBackend
			var urls []string
			for i := range 3 {
				b := startBackend(t, okHandler(fmt.Sprint("b", i)))
				bs = append(bs, b)
				urls = append(urls, b.URL)
			}
			e := startEdge(t, edge.Config{Policy: policy, Backends: map[string][]string{"storefront": urls}})
			c := newClient()
			const n = 300
			for range n {
				code, _, _, err := get(t, c, "GET", "http://"+e.Addr()+"/p", nil, nil)
				if err != nil || code != 200 {
					t.Fatalf("GET: %d %v", code, err)
				}
			}
			for i, b := range bs {
				h := b.hits.Load()
				if name == "round_robin" && (h < n/3-1 || h > n/3+1) {
					t.Errorf("round robin: backend %d got %d of %d", i, h, n)
				}
				if h < n/6 {
					t.Errorf("%s: backend %d got only %d of %d", name, i, h, n)
				}
			}
		})
	}
}

func TestLeastAvoidsBusyBackend(t *testing.T) {
	release := make(chan struct{})
	slow := startBackend(t, func(w http.ResponseWriter, r *http.Request) {
		<-release
	})
	fast := startBackend(t, okHandler("fast"))
	for _, name := range []string{"p2c", "least"} {
		t.Run(name, func(t *testing.T) {
			slow.hits.Store(0)
			fast.hits.Store(0)
			policy, _ := edge.ParsePolicy(name)
			e := startEdge(t, edge.Config{Policy: policy, Backends: map[string][]string{"storefront": {slow.URL, fast.URL}}})
			c := newClient()
			// Park requests on the slow backend until it has outstanding ones.
			var wg sync.WaitGroup
			for range 4 {
				wg.Go(func() { _, _, _, _ = get(t, c, "GET", "http://"+e.Addr()+"/x", nil, nil) })
			}
			checkFor(t, 5*time.Second, func() error {
				if slow.hits.Load() == 0 {
					return fmt.Errorf("no request reached the slow backend yet")
				}
				return nil
			})
			before := slow.hits.Load()
			for range 50 {
				if code, _, _, err := get(t, c, "GET", "http://"+e.Addr()+"/y", nil, nil); err != nil || code != 200 {
					t.Fatalf("GET: %d %v", code, err)
				}
			}
			if got := slow.hits.Load() - before; got != 0 {
				t.Errorf("%d requests went to the backend with outstanding requests", got)
			}
			release <- struct{}{}
			for range slow.hits.Load() - 1 {
				release <- struct{}{}
			}
			wg.Wait()
		})
	}
}

func TestKilledBackendUnderLoad(t *testing.T) {
	handler := func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(2 * time.Millisecond)
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, "ok")
	}
	a, b, victim := startBackend(t, handler), startBackend(t, handler), startBackend(t, handler)
	e := startEdge(t, edge.Config{Backends: map[string][]string{"storefront": {a.URL, b.URL, victim.URL}}, HealthInterval: time.Hour})
	c := newClient()
	var getFail, postFail, gets, posts atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if g%4 == 3 {
					posts.Add(1)
					code, _, _, err := get(t, c, "POST", "http://"+e.Addr()+"/order", strings.NewReader("x=1"), http.Header{"Content-Type": {"application/x-www-form-urlencoded"}})
					if err != nil || code != 200 {
						postFail.Add(1)
					}
					continue
				}
				gets.Add(1)
				code, body, _, err := get(t, c, "GET", "http://"+e.Addr()+fmt.Sprint("/p/", i), nil, nil)
				if err != nil || code != 200 {
					getFail.Add(1)
					t.Errorf("GET failed: %d %q %v", code, body, err)
				}
			}
		})
	}
	time.Sleep(150 * time.Millisecond)
	victim.kill()
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()
	if getFail.Load() != 0 {
		t.Errorf("%d of %d GETs failed", getFail.Load(), gets.Load())
	}
	// Only POSTs in flight at the kill may fail: at most one per POSTing goroutine.
	if postFail.Load() > 2 {
		t.Errorf("%d of %d POSTs failed; only those in flight at the kill may", postFail.Load(), posts.Load())
	}
	st, err := backendStatus(e, "storefront", victim.URL)
	if err != nil {
		t.Fatal(err)
	}
	if st.EjectedUntil == nil {
		t.Errorf("killed backend not ejected: %+v", st)
	}
	if e.Snapshot().Totals.Retries == 0 {
		t.Errorf("no retries counted")
	}
	t.Logf("gets %d posts %d postFail %d victim %+v", gets.Load(), posts.Load(), postFail.Load(), st)
}

// dropAfterRead is a backend handler that reads the request and closes the
// connection without answering: the request was sent and maybe processed.
func dropAfterRead(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	conn, _, err := http.NewResponseController(w).Hijack()
	if err == nil {
		conn.Close()
	}
}

func TestPOSTNeverRetriedAfterSent(t *testing.T) {
	dropper := startBackend(t, dropAfterRead)
	good := startBackend(t, okHandler("ok"))
	e := startEdge(t, edge.Config{Policy: edge.PolicyRoundRobin, HealthInterval: time.Hour,
		Backends: map[string][]string{"storefront": {dropper.URL, good.URL}}})
	c := newClient()
	var failed int
	for i := range 10 {
		before := dropper.hits.Load() + good.hits.Load()
		code, _, h, err := get(t, c, "POST", "http://"+e.Addr()+"/checkout", strings.NewReader(`{"a":1}`), nil)
		if err != nil {
			t.Fatal(err)
		}
		if arrivals := dropper.hits.Load() + good.hits.Load() - before; arrivals != 1 {
			t.Fatalf("POST %d reached backends %d times, want exactly 1", i, arrivals)
		}
		if code != 200 {
			failed++
			if code != http.StatusBadGateway || !isProblem(h) {
				t.Errorf("failed POST answered %d %q, want a 502 problem", code, h.Get("Content-Type"))
			}
		}
	}
	if failed == 0 || dropper.hits.Load() == 0 {
		t.Fatalf("the dropping backend was never tried (failed=%d)", failed)
	}

	// The same POST with an Idempotency-Key, and a GET, are retried.
	dropper.hits.Store(0)
	good.hits.Store(0)
	e2 := startEdge(t, edge.Config{Policy: edge.PolicyRoundRobin, HealthInterval: time.Hour, EjectAfter: 1000,
		Backends: map[string][]string{"storefront": {dropper.URL, good.URL}}})
	for i := range 6 {
		hdr := http.Header{"Idempotency-Key": {fmt.Sprint("k", i)}}
		method := "POST"
		if i%2 == 1 {
			method, hdr = "GET", nil
		}
		code, _, _, err := get(t, c, method, "http://"+e2.Addr()+"/checkout", strings.NewReader(`{"a":1}`), hdr)
		if err != nil || code != 200 {
			t.Fatalf("%s with retry allowed: %d %v", method, code, err)
		}
	}
	if dropper.hits.Load() == 0 {
		t.Fatal("the dropping backend was never tried")
	}

	// A POST whose connection was refused was never sent: it is retried.
	dead := startBackend(t, okHandler("dead"))
	dead.kill()
	good.hits.Store(0)
	e3 := startEdge(t, edge.Config{Policy: edge.PolicyRoundRobin, HealthInterval: time.Hour, EjectAfter: 1000,
		Backends: map[string][]string{"storefront": {dead.URL, good.URL}}})
	for range 4 {
		code, _, _, err := get(t, c, "POST", "http://"+e3.Addr()+"/checkout", strings.NewReader(`{"a":1}`), nil)
		if err != nil || code != 200 {
			t.Fatalf("POST to a refused backend was not retried: %d %v", code, err)
		}
	}
	if good.hits.Load() != 4 {
		t.Errorf("good backend got %d POSTs, want 4", good.hits.Load())
	}
}

func TestDrainOnDeregister(t *testing.T) {
	var afterHits atomic.Int64
	slow := startBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/after" {
			afterHits.Add(1)
		}
		time.Sleep(300 * time.Millisecond)
		_, _ = io.WriteString(w, "slow")
	})
	other := startBackend(t, okHandler("other"))
	e := startEdge(t, edge.Config{InternalListen: "127.0.0.1:0"})
	registry := "http://" + e.InternalAddr()
	ctxA, stopA := context.WithCancel(context.Background())
	doneA := make(chan error, 1)
	go func() {
		doneA <- edge.Register(ctxA, registry, "", "storefront", slow.URL, 100*time.Millisecond, nil, testLogger(t))
	}()
	ctxB, stopB := context.WithCancel(context.Background())
	defer stopB()
	go func() {
		_ = edge.Register(ctxB, registry, "", "storefront", other.URL, 100*time.Millisecond, nil, testLogger(t))
	}()

	res := edge.NewRegistryResolver(registry, "", "storefront", nil, testLogger(t))
	checkFor(t, 5*time.Second, func() error {
		if err := res.Refresh(context.Background()); err != nil {
			return err
		}
		if n := len(res.Endpoints()); n != 2 {
			return fmt.Errorf("resolver sees %d instances, want 2", n)
		}
		return nil
	})

	c := newClient()
	var wg sync.WaitGroup
	var failures atomic.Int64
	for i := range 12 {
		wg.Go(func() {
			code, _, _, err := get(t, c, "GET", "http://"+e.Addr()+fmt.Sprint("/q/", i), nil, nil)
			if err != nil || code != 200 {
				failures.Add(1)
				t.Errorf("request during drain: %d %v", code, err)
			}
		})
	}
	checkFor(t, 5*time.Second, func() error {
		if slow.hits.Load() == 0 {
			return fmt.Errorf("no request on the slow instance yet")
		}
		return nil
	})
	stopA() // deregisters
	if err := <-doneA; err != context.Canceled {
		t.Fatalf("Register returned %v", err)
	}
	if _, err := backendStatus(e, "storefront", slow.URL); err == nil {
		t.Fatal("deregistered instance still in the pool")
	}
	for range 20 {
		if code, _, _, err := get(t, c, "GET", "http://"+e.Addr()+"/after", nil, nil); err != nil || code != 200 {
			t.Fatalf("GET after deregistration: %d %v", code, err)
		}
	}
	wg.Wait()
	if failures.Load() != 0 {
		t.Errorf("%d requests failed while draining", failures.Load())
	}
	if got := afterHits.Load(); got != 0 {
		t.Errorf("%d new requests reached the deregistered instance", got)
	}
	if err := res.Refresh(context.Background()); err != nil || len(res.Endpoints()) != 1 || res.Endpoints()[0] != other.URL {
		t.Errorf("resolver after deregistration: %v %v", res.Endpoints(), err)
	}
}

func putInstance(t *testing.T, c *http.Client, base, token, pool, url string, ttl time.Duration) (int, error) {
	t.Helper()
	body, _ := json.Marshal(edge.Registration{URL: url, TTLms: ttl.Milliseconds()})
	hdr := http.Header{"Content-Type": {"application/json"}}
	if token != "" {
		hdr.Set("Authorization", "Bearer "+token)
	}
	code, _, _, err := get(t, c, "PUT", base+"/_edge/v1/pools/"+pool+"/instances", bytes.NewReader(body), hdr)
	return code, err
}

func TestHeartbeatLapse(t *testing.T) {
	b := startBackend(t, okHandler("b"))
	e := startEdge(t, edge.Config{})
	c := newClient()
	base := "http://" + e.Addr()
	if code, err := putInstance(t, c, base, "", "storefront", b.URL, 300*time.Millisecond); err != nil || code != http.StatusCreated {
		t.Fatalf("PUT: %d %v", code, err)
	}
	if code, body, _, err := get(t, c, "GET", base+"/", nil, nil); err != nil || code != 200 || body != "b" {
		t.Fatalf("GET through registered instance: %d %q %v", code, body, err)
	}
	// A heartbeat renews.
	time.Sleep(200 * time.Millisecond)
	if code, err := putInstance(t, c, base, "", "storefront", b.URL, 300*time.Millisecond); err != nil || code != http.StatusOK {
		t.Fatalf("renewing PUT: %d %v", code, err)
	}
	time.Sleep(200 * time.Millisecond)
	if _, err := backendStatus(e, "storefront", b.URL); err != nil {
		t.Fatalf("instance gone although renewed: %v", err)
	}
	start := time.Now()
	checkFor(t, 2*time.Second, func() error {
		if _, err := backendStatus(e, "storefront", b.URL); err == nil {
			return fmt.Errorf("instance still registered")
		}
		return nil
	})
	if d := time.Since(start); d > time.Second {
		t.Errorf("lapsed instance removed after %v", d)
	}
	code, _, h, err := get(t, c, "GET", base+"/", nil, nil)
	if err != nil || code != http.StatusServiceUnavailable || !isProblem(h) {
		t.Errorf("GET with no instance: %d %v, want a 503 problem", code, err)
	}
	var l edge.InstanceList
	_, body, _, _ := get(t, c, "GET", base+"/_edge/v1/pools/storefront/instances", nil, nil)
	if err := json.Unmarshal([]byte(body), &l); err != nil || len(l.Instances) != 0 {
		t.Errorf("instances after lapse: %q %v", body, err)
	}
}

func TestHealthCheck503TakesBackendOut(t *testing.T) {
	a, b := startBackend(t, okHandler("a")), startBackend(t, okHandler("b"))
	const interval = 100 * time.Millisecond
	e := startEdge(t, edge.Config{HealthInterval: interval, Backends: map[string][]string{"storefront": {a.URL, b.URL}}})
	checkFor(t, 2*time.Second, func() error {
		st, err := backendStatus(e, "storefront", a.URL)
		if err != nil || st.LastCheck == nil {
			return fmt.Errorf("no health check yet: %v", err)
		}
		return nil
	})
	a.ready.Store(http.StatusServiceUnavailable)
	start := time.Now()
	checkFor(t, 2*time.Second, func() error {
		st, _ := backendStatus(e, "storefront", a.URL)
		if st.Healthy {
			return fmt.Errorf("draining backend still healthy")
		}
		return nil
	})
	if d := time.Since(start); d > 3*interval {
		t.Errorf("503 took %v to take the backend out (interval %v)", d, interval)
	}
	c := newClient()
	before := a.hits.Load()
	for range 20 {
		if code, body, _, err := get(t, c, "GET", "http://"+e.Addr()+"/", nil, nil); err != nil || code != 200 || body != "b" {
			t.Fatalf("GET: %d %q %v", code, body, err)
		}
	}
	if a.hits.Load() != before {
		t.Errorf("unhealthy backend got requests")
	}
	a.ready.Store(http.StatusOK)
	checkFor(t, 2*time.Second, func() error {
		if st, _ := backendStatus(e, "storefront", a.URL); !st.Healthy {
			return fmt.Errorf("backend not back")
		}
		return nil
	})
}

func TestBodyLimit(t *testing.T) {
	b := startBackend(t, okHandler("ok"))
	e := startEdge(t, edge.Config{MaxBody: 1024, Backends: map[string][]string{"storefront": {b.URL}}})
	c := newClient()
	big := strings.Repeat("x", 2048)
	code, _, h, err := get(t, c, "POST", "http://"+e.Addr()+"/upload", strings.NewReader(big), nil)
	if err != nil || code != http.StatusRequestEntityTooLarge || !isProblem(h) {
		t.Errorf("POST with Content-Length over the limit: %d %v", code, err)
	}
	// Without Content-Length (chunked), an idempotent request is buffered
	// and stopped at the limit before a backend is asked.
	code, _, h, err = get(t, c, "PUT", "http://"+e.Addr()+"/upload", io.MultiReader(strings.NewReader(big)), nil)
	if err != nil || code != http.StatusRequestEntityTooLarge || !isProblem(h) {
		t.Errorf("chunked PUT over the limit: %d %v", code, err)
	}
	if n := b.hits.Load(); n != 0 {
		t.Errorf("backend reached %d times by too-large bodies", n)
	}
	// A chunked POST is streamed (it is never retried): the limit stops
	// it on the way and the client still gets the 413.
	code, _, h, err = get(t, c, "POST", "http://"+e.Addr()+"/upload", io.MultiReader(strings.NewReader(big)), nil)
	if err != nil || code != http.StatusRequestEntityTooLarge || !isProblem(h) {
		t.Errorf("chunked POST over the limit: %d %v", code, err)
	}
	if code, _, _, err := get(t, c, "POST", "http://"+e.Addr()+"/upload", strings.NewReader(big[:1000]), nil); err != nil || code != 200 {
		t.Errorf("POST under the limit: %d %v", code, err)
	}
	if got := e.Snapshot().Totals.TooLarge; got != 3 {
		t.Errorf("413 count %d, want 3", got)
	}
}

func TestHangingBackendTimesOut(t *testing.T) {
	b := startBackend(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	})
	e := startEdge(t, edge.Config{BackendTimeout: 300 * time.Millisecond, Backends: map[string][]string{"storefront": {b.URL}}})
	start := time.Now()
	code, _, h, err := get(t, newClient(), "GET", "http://"+e.Addr()+"/hang", nil, nil)
	d := time.Since(start)
	if err != nil || code != http.StatusGatewayTimeout || !isProblem(h) {
		t.Fatalf("hanging backend: %d %v, want a 504 problem", code, err)
	}
	if d > 2*time.Second {
		t.Errorf("hanging backend cost the client %v (timeout 300ms)", d)
	}
	if b.hits.Load() != 1 {
		t.Errorf("a timed-out request was retried: %d arrivals", b.hits.Load())
	}
	if e.Snapshot().Totals.GatewayTimeout != 1 {
		t.Errorf("504 not counted")
	}
}

func TestForwardingHeaders(t *testing.T) {
	var mu sync.Mutex
	var seen http.Request
	b := startBackend(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = *r.Clone(context.Background())
		mu.Unlock()
	})
	e := startEdge(t, edge.Config{Backends: map[string][]string{"storefront": {b.URL}}})
	c := newClient()
	req, _ := http.NewRequest("GET", "http://"+e.Addr()+"/h", nil)
	req.Host = "shop.example"
	req.Header.Set("X-Forwarded-For", "203.0.113.7")
	req.Header.Set("X-Request-Id", "abc-123.x_y")
	req.Header.Set("Connection", "X-Secret")
	req.Header.Set("X-Secret", "hop")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	mu.Lock()
	h := seen.Header
	mu.Unlock()
	want := map[string]string{
		"X-Forwarded-For":   "203.0.113.7, 127.0.0.1",
		"X-Forwarded-Proto": "http",
		"X-Forwarded-Host":  "shop.example",
		"Forwarded":         `for=127.0.0.1;host="shop.example";proto=http`,
		"X-Request-Id":      "abc-123.x_y",
		"X-Secret":          "",
	}
	for k, v := range want {
		if got := h.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	if seen.Host != "shop.example" {
		t.Errorf("Host = %q", seen.Host)
	}
	if got := resp.Header.Get("X-Request-Id"); got != "abc-123.x_y" {
		t.Errorf("response X-Request-Id = %q", got)
	}

	// An insane request id is replaced by a generated one.
	for _, bad := range []string{"has space", strings.Repeat("a", 65), "semi;colon"} {
		req, _ = http.NewRequest("GET", "http://"+e.Addr()+"/h", nil)
		req.Header.Set("X-Request-Id", bad)
		resp, err = c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		mu.Lock()
		got := seen.Header.Get("X-Request-Id")
		mu.Unlock()
		if got == bad || got == "" || len(got) > 64 || got != resp.Header.Get("X-Request-Id") {
			t.Errorf("request id %q forwarded as %q (response %q)", bad, got, resp.Header.Get("X-Request-Id"))
		}
	}
}

func TestRetryBudgetBoundsRetries(t *testing.T) {
	var urls []string
	var bs []*testBackend
	for range 3 {
		b := startBackend(t, func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusServiceUnavailable)
		})
		bs = append(bs, b)
		urls = append(urls, b.URL)
	}
	// Ejection off, so that only the budget limits the retries.
	e := startEdge(t, edge.Config{EjectAfter: 1 << 20, Backends: map[string][]string{"storefront": urls}})
	c := newClient()
	const n = 300
	for range n {
		code, _, _, err := get(t, c, "GET", "http://"+e.Addr()+"/x", nil, nil)
		if err != nil || code != http.StatusServiceUnavailable {
			t.Fatalf("GET: %d %v", code, err)
		}
	}
	var arrivals int64
	for _, b := range bs {
		arrivals += b.hits.Load()
	}
	tot := e.Snapshot().Totals
	limit := int64(n*20/100 + 3*10)
	if tot.Retries > limit || arrivals-n != tot.Retries {
		t.Errorf("retries %d (arrivals %d for %d requests), budget allows %d", tot.Retries, arrivals, n, limit)
	}
	if tot.RetryBudgetRefused == 0 {
		t.Errorf("the budget never refused a retry")
	}
	t.Logf("requests %d retries %d refused %d", n, tot.Retries, tot.RetryBudgetRefused)
}

func TestSRVSource(t *testing.T) {
	zone := testenv.DNSZone(t)
	a, b := startBackend(t, okHandler("a")), startBackend(t, okHandler("b"))
	const name = "_storefront._tcp.shop.test"
	zone.SetSRV(name, a.Addr, b.Addr)
	e := startEdge(t, edge.Config{DNSServer: zone.Addr(), SRVRefresh: 100 * time.Millisecond,
		Backends: map[string][]string{"storefront": {"srv+http://" + name}}})
	c := newClient()
	checkFor(t, 5*time.Second, func() error {
		seen := map[string]bool{}
		for range 20 {
			code, body, _, err := get(t, c, "GET", "http://"+e.Addr()+"/", nil, nil)
			if err != nil || code != 200 {
				return fmt.Errorf("GET: %d %v", code, err)
			}
			seen[body] = true
		}
		if !seen["a"] || !seen["b"] {
			return fmt.Errorf("served by %v, want a and b", seen)
		}
		return nil
	})
	zone.SetSRV(name, b.Addr)
	checkFor(t, 5*time.Second, func() error {
		for range 20 {
			if _, body, _, err := get(t, c, "GET", "http://"+e.Addr()+"/", nil, nil); err != nil || body != "b" {
				return fmt.Errorf("served by %q %v", body, err)
			}
		}
		return nil
	})
	for _, p := range e.Snapshot().Pools {
		for _, bs := range p.Backends {
			if p.Name == "storefront" && (len(bs.Sources) != 1 || bs.Sources[0] != "srv") {
				t.Errorf("backend %s sources %v", bs.URL, bs.Sources)
			}
		}
	}
}

func TestRegistryToken(t *testing.T) {
	b := startBackend(t, okHandler("b"))
	c := newClient()
	e := startEdge(t, edge.Config{Token: "s3cret"})
	base := "http://" + e.Addr()
	if code, err := putInstance(t, c, base, "", "storefront", b.URL, time.Second); err != nil || code != http.StatusUnauthorized {
		t.Errorf("PUT without token: %d %v", code, err)
	}
	if code, err := putInstance(t, c, base, "wrong", "storefront", b.URL, time.Second); err != nil || code != http.StatusUnauthorized {
		t.Errorf("PUT with a wrong token: %d %v", code, err)
	}
	if code, _, _, _ := get(t, c, "GET", base+"/_edge/status", nil, nil); code != http.StatusUnauthorized {
		t.Errorf("status without token: %d", code)
	}
	if code, err := putInstance(t, c, base, "s3cret", "storefront", b.URL, time.Second); err != nil || code != http.StatusCreated {
		t.Errorf("PUT with token: %d %v", code, err)
	}
	res := edge.NewRegistryResolver(base, "s3cret", "storefront", nil, testLogger(t))
	if err := res.Refresh(context.Background()); err != nil || len(res.Endpoints()) != 1 {
		t.Errorf("resolver with token: %v %v", res.Endpoints(), err)
	}

	// No token and a listener that is not loopback only: refused.
	open := startEdge(t, edge.Config{Listen: "0.0.0.0:0"})
	_, port, _ := net.SplitHostPort(open.Addr())
	code, err := putInstance(t, c, "http://127.0.0.1:"+port, "", "storefront", b.URL, time.Second)
	if err != nil || code != http.StatusForbidden {
		t.Errorf("PUT to a non-loopback edge without a token: %d %v", code, err)
	}
	if len(open.Snapshot().Pools[0].Backends) != 0 {
		t.Errorf("instance registered although refused")
	}
}

func TestServiceRouting(t *testing.T) {
	var gotPath atomic.Value
	svc := startBackend(t, func(w http.ResponseWriter, r *http.Request) {
		gotPath.Store(r.URL.RequestURI())
		_, _ = io.WriteString(w, "catalog")
	})
	front := startBackend(t, okHandler("front"))
	e := startEdge(t, edge.Config{InternalListen: "127.0.0.1:0", Backends: map[string][]string{"storefront": {front.URL}}})
	c := newClient()
	if code, err := putInstance(t, c, "http://"+e.InternalAddr(), "", "catalog", svc.URL, 5*time.Second); err != nil || code != http.StatusCreated {
		t.Fatalf("register: %d %v", code, err)
	}
	code, body, _, err := get(t, c, "GET", "http://"+e.InternalAddr()+"/svc/catalog/api/products?q=x", nil, nil)
	if err != nil || code != 200 || body != "catalog" {
		t.Fatalf("internal /svc/catalog: %d %q %v", code, body, err)
	}
	if p := gotPath.Load(); p != "/api/products?q=x" {
		t.Errorf("service saw %v, want /api/products?q=x", p)
	}
	for _, path := range []string{"/svc/catalog/api/products", "/svc/", "/_edge/status", "/_edge/v1/pools/catalog/instances"} {
		code, _, h, err := get(t, c, "GET", "http://"+e.Addr()+path, nil, nil)
		if err != nil || code != http.StatusNotFound || !isProblem(h) {
			t.Errorf("public %s: %d %v, want a 404 problem", path, code, err)
		}
	}
	if svc.hits.Load() != 1 {
		t.Errorf("service reached %d times", svc.hits.Load())
	}
	if code, body, _, _ := get(t, c, "GET", "http://"+e.Addr()+"/anything", nil, nil); code != 200 || body != "front" {
		t.Errorf("public route: %d %q", code, body)
	}
	if code, _, _, _ := get(t, c, "GET", "http://"+e.InternalAddr()+"/svc/nosuch/x", nil, nil); code != http.StatusNotFound {
		t.Errorf("unknown service: %d", code)
	}
	code, body, _, _ = get(t, c, "GET", "http://"+e.InternalAddr()+"/_edge/status", nil, nil)
	var st edge.Status
	if code != 200 || json.Unmarshal([]byte(body), &st) != nil || len(st.Pools) != 2 {
		t.Errorf("status: %d %s", code, body)
	}
}

func TestH2C(t *testing.T) {
	b := startBackend(t, okHandler("ok"))
	e := startEdge(t, edge.Config{H2C: true, Backends: map[string][]string{"storefront": {b.URL}}})
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &p}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get("http://" + e.Addr() + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 || string(body) != "ok" {
		t.Errorf("h2c: proto %s body %q", resp.Proto, body)
	}
}

func TestShutdownDrains(t *testing.T) {
	b := startBackend(t, func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(300 * time.Millisecond)
		_, _ = io.WriteString(w, "done")
	})
	e, err := edge.New(edge.Config{Listen: "127.0.0.1:0", DrainDelay: 200 * time.Millisecond, HealthInterval: time.Hour,
		Backends: map[string][]string{"storefront": {b.URL}}, Log: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Serve(ctx) }()
	base := "http://" + e.Addr()
	c := newClient()
	if code, _, _, err := get(t, c, "GET", base+"/_edge/readyz", nil, nil); err != nil || code != 200 {
		t.Fatalf("readyz: %d %v", code, err)
	}
	result := make(chan string, 1)
	go func() {
		code, body, _, err := get(t, c, "GET", base+"/slow", nil, nil)
		result <- fmt.Sprint(code, " ", body, " ", err)
	}()
	checkFor(t, 2*time.Second, func() error {
		if b.hits.Load() == 0 {
			return fmt.Errorf("request not in flight yet")
		}
		return nil
	})
	cancel()
	checkFor(t, time.Second, func() error {
		// A new connection, as a load balancer's health check would make.
		conn, err := net.Dial("tcp", e.Addr())
		if err != nil {
			return err
		}
		defer conn.Close()
		fmt.Fprintf(conn, "GET /_edge/readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			return fmt.Errorf("readyz while draining: %d", resp.StatusCode)
		}
		return nil
	})
	if got := <-result; got != "200 done <nil>" {
		t.Errorf("in-flight request during shutdown: %s", got)
	}
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}
}

func TestCDNAndCompression(t *testing.T) {
	page := strings.Repeat("<p>Globomantics</p>\n", 200)
	b := startBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/static/") {
			w.Header().Set("Cache-Control", "public, max-age=60")
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = io.WriteString(w, page)
	})
	e := startEdge(t, edge.Config{CDNBytes: 1 << 20, Backends: map[string][]string{"storefront": {b.URL}}})
	c := newClient()
	for range 3 {
		code, body, _, err := get(t, c, "GET", "http://"+e.Addr()+"/static/app.css", nil, nil)
		if err != nil || code != 200 || body != page {
			t.Fatalf("GET /static/: %d %v", code, err)
		}
	}
	if n := b.hits.Load(); n != 1 {
		t.Errorf("static file fetched %d times from the backend, want 1", n)
	}
	if st := e.Snapshot().CDN; st == nil || st.Hits < 2 {
		t.Errorf("cdn stats %+v", st)
	}
	code, body, h, err := get(t, c, "GET", "http://"+e.Addr()+"/products", nil, http.Header{"Accept-Encoding": {"gzip"}})
	if err != nil || code != 200 || h.Get("Content-Encoding") != "gzip" || len(body) >= len(page) {
		t.Errorf("compressed page: %d %q %d bytes %v", code, h.Get("Content-Encoding"), len(body), err)
	}
	code, body, h, err = get(t, c, "GET", "http://"+e.Addr()+"/products", nil, nil)
	if err != nil || code != 200 || h.Get("Content-Encoding") != "" || body != page {
		t.Errorf("identity page: %d %q %v", code, h.Get("Content-Encoding"), err)
	}
}

func TestUpgradePassesThrough(t *testing.T) {
	b := startBackend(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "echo" {
			http.Error(w, "want Upgrade: echo", http.StatusBadRequest)
			return
		}
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		_ = brw.Flush()
		line, _ := brw.ReadString('\n')
		_, _ = brw.WriteString("echo: " + line)
		_ = brw.Flush()
	})
	e := startEdge(t, edge.Config{Backends: map[string][]string{"storefront": {b.URL}}})
	conn, err := net.Dial("tcp", e.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: shop\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	fmt.Fprintf(conn, "hello\n")
	if line, err := br.ReadString('\n'); err != nil || line != "echo: hello\n" {
		t.Errorf("after upgrade: %q %v", line, err)
	}
}

func TestRetryReplaysBody(t *testing.T) {
	dropper := startBackend(t, dropAfterRead)
	echo := startBackend(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body) // all of it before answering (HTTP/1 is not full duplex here)
		_, _ = w.Write(b)
	})
	e := startEdge(t, edge.Config{Policy: edge.PolicyRoundRobin, EjectAfter: 1000, HealthInterval: time.Hour,
		Backends: map[string][]string{"storefront": {dropper.URL, echo.URL}}})
	c := newClient()
	body := strings.Repeat("0123456789", 3000)
	for i := range 4 {
		// Chunked and sized bodies alike are buffered and replayed.
		var rd io.Reader = strings.NewReader(body)
		if i%2 == 1 {
			rd = io.MultiReader(rd)
		}
		code, got, _, err := get(t, c, "PUT", "http://"+e.Addr()+"/cart/items", rd, nil)
		if err != nil || code != 200 || got != body {
			t.Fatalf("PUT %d: %d, %d bytes back, %v", i, code, len(got), err)
		}
	}
	if dropper.hits.Load() == 0 || e.Snapshot().Totals.Retries == 0 {
		t.Errorf("no retry happened")
	}
}

func TestPassiveEjectionBackoff(t *testing.T) {
	dead := startBackend(t, okHandler("dead"))
	dead.kill()
	good := startBackend(t, okHandler("good"))
	clk := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	e := startEdge(t, edge.Config{Clock: clk, Policy: edge.PolicyRoundRobin, HealthInterval: time.Hour,
		Backends: map[string][]string{"storefront": {dead.URL, good.URL}}})
	c := newClient()
	failures := func() int64 {
		st, err := backendStatus(e, "storefront", dead.URL)
		if err != nil {
			t.Fatal(err)
		}
		return st.Failures
	}
	// Until the dead backend has failed n times in all (each request to
	// it is retried on the good one).
	driveTo := func(n int64) {
		for i := 0; failures() < n; i++ {
			if i > 20 {
				t.Fatalf("dead backend not tried: %d failures, want %d", failures(), n)
			}
			if code, _, _, err := get(t, c, "GET", "http://"+e.Addr()+"/", nil, nil); err != nil || code != 200 {
				t.Fatalf("GET: %d %v", code, err)
			}
		}
	}
	driveTo(3)
	for _, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second} {
		st, _ := backendStatus(e, "storefront", dead.URL)
		if st.EjectedUntil == nil || !st.EjectedUntil.Equal(clk.Now().Add(want)) {
			t.Fatalf("ejected until %v, want now+%v", st.EjectedUntil, want)
		}
		// While ejected, it gets nothing.
		before := failures()
		for range 5 {
			_, _, _, _ = get(t, c, "GET", "http://"+e.Addr()+"/", nil, nil)
		}
		if failures() != before {
			t.Fatalf("ejected backend was tried")
		}
		clk.Advance(want)
		driveTo(before + 1) // one more failure after the ejection ejects again, for twice as long
	}
}
