package httpx_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/globomantics/globomantics/internal/platform/httpx"
	"github.com/globomantics/globomantics/internal/platform/obs"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

func newObs(t *testing.T, service string) *obs.Obs {
	t.Helper()
	o, err := obs.New(obs.Options{Service: service})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = o.Shutdown(context.Background()) })
	return o
}

// histogramCount is the sample count of the family's series whose labels
// include want, and whether there is one.
func histogramCount(t *testing.T, o *obs.Obs, family string, want map[string]string) (uint64, bool) {
	t.Helper()
	mfs, err := o.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != family {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			labels := labelMap(m)
			for k, v := range want {
				if labels[k] != v {
					continue series
				}
			}
			return m.GetHistogram().GetSampleCount(), true
		}
	}
	return 0, false
}

func labelMap(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

// TestObservedCallIsOneTrace sends a request through an observed front
// service that calls a back service with an observed Client: one trace,
// the client span the parent of the back's server span, the request id
// forwarded, and the back's metrics labelled by route pattern.
func TestObservedCallIsOneTrace(t *testing.T) {
	frontObs, backObs := newObs(t, "front"), newObs(t, "back")
	var logs bytes.Buffer
	var logMu sync.Mutex
	log := slog.New(obs.NewLogHandler(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &logMu}, nil)))

	var mu sync.Mutex
	var gotID, gotParent string
	backMux := http.NewServeMux()
	backMux.Handle("GET /items/{id}", httpx.Handler(func(w http.ResponseWriter, r *http.Request) error {
		mu.Lock()
		gotID, gotParent = httpx.RequestID(r.Context()), r.Header.Get("Traceparent")
		mu.Unlock()
		httpx.WriteJSON(w, http.StatusOK, map[string]string{"id": r.PathValue("id")})
		return nil
	}))
	back := httptest.NewServer(httpx.MiddlewareWith(log, backObs, backMux))
	defer back.Close()

	client := httpx.NewClient("back", []string{back.URL}, nil, httpx.WithObs(frontObs))
	frontMux := http.NewServeMux()
	frontMux.Handle("GET /pages/{id}", httpx.Handler(func(w http.ResponseWriter, r *http.Request) error {
		var out map[string]string
		if err := client.Call(r.Context(), http.MethodGet, "/items/"+r.PathValue("id"), nil, &out); err != nil {
			return err
		}
		log.InfoContext(r.Context(), "handled page")
		httpx.WriteJSON(w, http.StatusOK, out)
		return nil
	}))
	front := httptest.NewServer(httpx.MiddlewareWith(log, frontObs, frontMux))
	defer front.Close()

	req, _ := http.NewRequest(http.MethodGet, front.URL+"/pages/42", nil)
	req.Header.Set("X-Request-Id", "req-abc.123_X")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if got := resp.Header.Get("X-Request-Id"); got != "req-abc.123_X" {
		t.Errorf("response X-Request-Id = %q, want the caller's", got)
	}
	traceID := resp.Header.Get(httpx.TraceIDHeader)
	if len(traceID) != 32 {
		t.Fatalf("X-Trace-Id = %q", traceID)
	}
	mu.Lock()
	if gotID != "req-abc.123_X" {
		t.Errorf("back saw request id %q, want it forwarded", gotID)
	}
	if !strings.Contains(gotParent, traceID) {
		t.Errorf("back saw traceparent %q, want trace %s", gotParent, traceID)
	}
	mu.Unlock()

	var frontSpans, backSpans []obs.SpanRecord
	testenv.CheckFor(t, 5*time.Second, func() error {
		frontSpans, backSpans = frontObs.Spans().Trace(traceID), backObs.Spans().Trace(traceID)
		if len(frontSpans) != 2 || len(backSpans) != 1 {
			return fmt.Errorf("front has %d spans of the trace, back %d; want 2 and 1", len(frontSpans), len(backSpans))
		}
		return nil
	})
	var frontServer, frontClient obs.SpanRecord
	for _, s := range frontSpans {
		switch s.Kind {
		case "server":
			frontServer = s
		case "client":
			frontClient = s
		}
	}
	backServer := backSpans[0]
	if frontServer.Name != "GET /pages/{id}" || frontServer.ParentID != "" {
		t.Errorf("front server span = %+v, want a root named after the route", frontServer)
	}
	if frontClient.ParentID != frontServer.SpanID {
		t.Errorf("client span's parent = %q, want the front server span %q", frontClient.ParentID, frontServer.SpanID)
	}
	if backServer.Kind != "server" || backServer.ParentID != frontClient.SpanID || backServer.Service != "back" {
		t.Errorf("back span = %+v, want a server span of back, child of the client span %q", backServer, frontClient.SpanID)
	}
	if backServer.Attributes["http.route"] != "GET /items/{id}" || backServer.Attributes["http.response.status_code"] != "200" {
		t.Errorf("back span attributes = %v", backServer.Attributes)
	}

	n, ok := histogramCount(t, backObs, "http_server_request_duration_seconds",
		map[string]string{"http_route": "GET /items/{id}", "http_request_method": "GET", "http_response_status_code": "200"})
	if !ok || n != 1 {
		t.Errorf("back's duration histogram for the route pattern: count %d (found %v), want 1", n, ok)
	}
	if _, ok := histogramCount(t, backObs, "http_server_request_duration_seconds", map[string]string{"http_route": "/items/42"}); ok {
		t.Error("a series is labelled with the raw path")
	}
	if n, ok := histogramCount(t, frontObs, "http_client_request_duration_seconds",
		map[string]string{"server": "back", "http_response_status_code": "200"}); !ok || n != 1 {
		t.Errorf("front's client histogram: count %d (found %v), want 1", n, ok)
	}

	logMu.Lock()
	out := logs.String()
	logMu.Unlock()
	if !strings.Contains(out, "msg=\"handled page\" request_id=req-abc.123_X trace_id="+traceID) {
		t.Errorf("handler's log line lacks the ids:\n%s", out)
	}
	if !strings.Contains(out, "level=INFO msg=http request_id=req-abc.123_X method=GET route=\"GET /items/{id}\"") {
		t.Errorf("no info access line for the back request:\n%s", out)
	}
}

// TestRequestIDReplaced gives a request with a bad or oversized
// X-Request-Id a new id, and one without any too.
func TestRequestIDReplaced(t *testing.T) {
	var seen []string
	var mu sync.Mutex
	srv := httptest.NewServer(httpx.Middleware(slog.New(slog.DiscardHandler), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, httpx.RequestID(r.Context()))
		mu.Unlock()
	})))
	defer srv.Close()
	for _, bad := range []string{"", "has space", "quote\"d", strings.Repeat("a", 65), "é"} {
		req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
		if bad != "" {
			req.Header.Set("X-Request-Id", bad)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		got := resp.Header.Get("X-Request-Id")
		if got == "" || got == bad || len(got) > 64 {
			t.Errorf("X-Request-Id %q answered with %q, want a fresh id", bad, got)
		}
		mu.Lock()
		if last := seen[len(seen)-1]; last != got {
			t.Errorf("handler saw request id %q, response says %q", last, got)
		}
		mu.Unlock()
	}
	// Without obs, no trace id.
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if v := resp.Header.Get(httpx.TraceIDHeader); v != "" {
		t.Errorf("unobserved middleware sent X-Trace-Id %q", v)
	}
}

// copyKey marks a copy of a request made by a middleware.
type copyKey struct{}

// TestRouteOfNestedMux labels a request served by a mux behind a handler
// that copies the request with the inner pattern, and an unmatched one
// with neither its path nor a pattern it did not match.
func TestRouteOfNestedMux(t *testing.T) {
	o := newObs(t, "nested")
	inner := http.NewServeMux()
	inner.HandleFunc("GET /api/v1/things/{id}", func(w http.ResponseWriter, r *http.Request) {})
	outer := http.NewServeMux()
	outer.Handle("/api/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A copy of the request, as context-adding middleware makes.
		httpx.Routed(inner).ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), copyKey{}, 1)))
	}))
	srv := httptest.NewServer(httpx.MiddlewareWith(slog.New(slog.DiscardHandler), o, outer))
	defer srv.Close()
	for _, p := range []string{"/api/v1/things/7", "/nowhere/8"} {
		resp, err := http.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if _, ok := histogramCount(t, o, "http_server_request_duration_seconds", map[string]string{"http_route": "GET /api/v1/things/{id}"}); !ok {
		t.Error("no series for the inner pattern")
	}
	if _, ok := histogramCount(t, o, "http_server_request_duration_seconds", map[string]string{"http_route": "unmatched", "http_response_status_code": "404"}); !ok {
		t.Error("no unmatched 404 series")
	}
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
