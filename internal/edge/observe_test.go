package edge_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/edge"
	"github.com/globomantics/globomantics/internal/platform/obs"
)

func newEdgeObs(t *testing.T) *obs.Obs {
	t.Helper()
	o, err := obs.New(obs.Options{Service: "edge"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = o.Shutdown(context.Background()) })
	return o
}

// scrape returns the edge's /metrics from its internal listener.
func scrape(t *testing.T, e *edge.Edge) string {
	t.Helper()
	code, body, _, err := get(t, newClient(), "GET", "http://"+e.InternalAddr()+"/metrics", nil, nil)
	if err != nil || code != 200 {
		t.Fatalf("/metrics: %d %v", code, err)
	}
	return body
}

// TestProxiedRequestCarriesTraceAndID: the backend sees the caller's
// request id and a traceparent of the caller's trace whose parent is the
// edge's server span, and the edge's metrics count the request.
func TestProxiedRequestCarriesTraceAndID(t *testing.T) {
	var mu sync.Mutex
	var seen http.Header
	b := startBackend(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = r.Header.Clone()
		mu.Unlock()
		okHandler("ok")(w, r)
	})
	o := newEdgeObs(t)
	e := startEdge(t, edge.Config{InternalListen: "127.0.0.1:0", Obs: o, Backends: map[string][]string{"storefront": {b.URL}}})

	const callerTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	hdr := http.Header{
		"X-Request-Id": {"rid-edge-1"},
		"Traceparent":  {"00-" + callerTrace + "-00f067aa0ba902b7-01"},
		"Cookie":       {"s=1"}, // not shareable: bypasses the CDN
	}
	code, _, rh, err := get(t, newClient(), "GET", "http://"+e.Addr()+"/products/42", nil, hdr)
	if err != nil || code != 200 {
		t.Fatalf("GET: %d %v", code, err)
	}
	if rh.Get("X-Trace-Id") != callerTrace || rh.Get("X-Request-Id") != "rid-edge-1" {
		t.Errorf("response ids: trace %q request %q", rh.Get("X-Trace-Id"), rh.Get("X-Request-Id"))
	}
	mu.Lock()
	tp, rid := seen.Get("Traceparent"), seen.Get("X-Request-Id")
	mu.Unlock()
	if rid != "rid-edge-1" {
		t.Errorf("backend saw X-Request-Id %q", rid)
	}
	parts := strings.Split(tp, "-")
	if len(parts) != 4 || parts[1] != callerTrace || parts[2] == "00f067aa0ba902b7" {
		t.Fatalf("backend saw traceparent %q, want the caller's trace with the edge's span as parent", tp)
	}
	var spans []obs.SpanRecord
	checkFor(t, 2*time.Second, func() error {
		if spans = o.Spans().Trace(callerTrace); len(spans) != 1 {
			return fmt.Errorf("%d edge spans of the trace", len(spans))
		}
		return nil
	})
	if s := spans[0]; s.SpanID != parts[2] || s.ParentID != "00f067aa0ba902b7" || s.Name != "GET storefront" || s.Kind != "server" {
		t.Errorf("edge span = %+v", s)
	}

	// A request with no id gets one, forwarded too.
	if code, _, rh, err = get(t, newClient(), "GET", "http://"+e.Addr()+"/x", nil, http.Header{"Cookie": {"s=1"}}); err != nil || code != 200 {
		t.Fatalf("GET: %d %v", code, err)
	}
	mu.Lock()
	rid = seen.Get("X-Request-Id")
	mu.Unlock()
	if rid == "" || rid != rh.Get("X-Request-Id") {
		t.Errorf("backend saw id %q, response %q", rid, rh.Get("X-Request-Id"))
	}

	m := scrape(t, e)
	for _, want := range []string{
		`http_server_request_duration_seconds_count{http_request_method="GET",http_response_status_code="200",http_route="storefront"} 2`,
		`edge_backend_requests_total{backend="` + b.URL + `",code="200",pool="storefront"} 2`,
		`edge_backend_up{backend="` + b.URL + `",pool="storefront"} 1`,
		`edge_cdn_requests_total{result="bypass"} 2`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(m, "/products/42") {
		t.Error("a raw path is a label value")
	}
	// The traces are guarded like /_edge/status: loopback without a token.
	if code, body, _, _ := get(t, newClient(), "GET", "http://"+e.InternalAddr()+"/_edge/obs/v1/traces?trace_id="+callerTrace, nil, nil); code != 200 || !strings.Contains(body, callerTrace) {
		t.Errorf("/_edge/obs/v1/traces: %d %s", code, body)
	}
}

// TestBackendUpMetric follows the health checks.
func TestBackendUpMetric(t *testing.T) {
	b := startBackend(t, okHandler("b"))
	o := newEdgeObs(t)
	e := startEdge(t, edge.Config{InternalListen: "127.0.0.1:0", Obs: o, HealthInterval: 50 * time.Millisecond,
		Backends: map[string][]string{"catalog": {b.URL}}, Token: "tok"})
	up := func(v string) func() error {
		return func() error {
			if want := `edge_backend_up{backend="` + b.URL + `",pool="catalog"} ` + v; !strings.Contains(scrape(t, e), want) {
				return fmt.Errorf("no %s", want)
			}
			return nil
		}
	}
	checkFor(t, 2*time.Second, up("1"))
	b.ready.Store(http.StatusServiceUnavailable)
	checkFor(t, 2*time.Second, up("0"))
	b.ready.Store(http.StatusOK)
	checkFor(t, 2*time.Second, up("1"))
	// With a token, the traces need it; /metrics does not.
	if code, _, _, _ := get(t, newClient(), "GET", "http://"+e.InternalAddr()+"/_edge/obs/v1/traces", nil, nil); code != http.StatusUnauthorized {
		t.Errorf("/_edge/obs/v1/traces without the token: %d, want 401", code)
	}
	if code, _, _, _ := get(t, newClient(), "GET", "http://"+e.InternalAddr()+"/_edge/obs/v1/traces", nil, http.Header{"Authorization": {"Bearer tok"}}); code != 200 {
		t.Errorf("/_edge/obs/v1/traces with the token: %d", code)
	}
	// A service request through the internal listener: route = pool.
	if code, _, _, err := get(t, newClient(), "GET", "http://"+e.InternalAddr()+"/svc/catalog/v1/x", nil, nil); err != nil || code != 200 {
		t.Fatalf("GET /svc/catalog: %d %v", code, err)
	}
	if want := `http_server_request_duration_seconds_count{http_request_method="GET",http_response_status_code="200",http_route="catalog"} 1`; !strings.Contains(scrape(t, e), want) {
		t.Errorf("no %s", want)
	}
}

// BenchmarkProxyObserved is BenchmarkProxy with traces and metrics on:
// the difference is the cost of the instrumentation per request.
func BenchmarkProxyObserved(b *testing.B) {
	be := benchBackend(b)
	o, err := obs.New(obs.Options{Service: "edge"})
	if err != nil {
		b.Fatal(err)
	}
	e := startEdge(b, edge.Config{HealthInterval: time.Second, Obs: o, Backends: map[string][]string{"storefront": {be.URL}}})
	benchGet(b, "http://"+e.Addr()+"/api/products/p-1")
}
