package obs_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/globomantics/globomantics/internal/platform/obs"
)

func newObs(t *testing.T, opts obs.Options) *obs.Obs {
	t.Helper()
	if opts.Service == "" {
		opts.Service = "test"
	}
	o, err := obs.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = o.Shutdown(context.Background()) })
	return o
}

func TestNewNeedsService(t *testing.T) {
	if _, err := obs.New(obs.Options{}); err == nil {
		t.Fatal("New without a service name succeeded")
	}
}

// TestSpanStoreBoundsAndQueries keeps only the newest spans, summarises
// traces (root, span count, error) newest first and lists one trace's
// spans with their parents.
func TestSpanStoreBoundsAndQueries(t *testing.T) {
	o := newObs(t, obs.Options{Service: "checkout,payment", SpanLimit: 10})
	tr := o.Tracer("test")
	var ids []string
	for i := range 6 { // 6 traces of 3 spans: only the last 10 spans stay
		ctx, root := tr.Start(context.Background(), "root", trace.WithSpanKind(trace.SpanKindServer))
		_, c1 := tr.Start(ctx, "child-a", trace.WithSpanKind(trace.SpanKindClient))
		c1.End()
		_, c2 := tr.Start(ctx, "child-b")
		if i == 5 {
			c2.SetStatus(codes.Error, "boom")
		}
		c2.End()
		root.End()
		ids = append(ids, root.SpanContext().TraceID().String())
	}
	if n := o.Spans().Len(); n != 10 {
		t.Fatalf("store holds %d spans, want its limit 10", n)
	}
	recent := o.Spans().Recent(0)
	// Traces 3, 4, 5 whole (9 spans), and the root of trace 2 (1 span).
	if len(recent) != 4 {
		t.Fatalf("recent = %+v, want 4 traces", recent)
	}
	if recent[0].TraceID != ids[5] || recent[0].Root != "root" || recent[0].Spans != 3 || !recent[0].Error {
		t.Errorf("newest trace = %+v, want %s with root 'root', 3 spans, error", recent[0], ids[5])
	}
	if recent[1].Error {
		t.Errorf("trace without error marked error: %+v", recent[1])
	}
	if got := o.Spans().Recent(2); len(got) != 2 || got[0].TraceID != ids[5] || got[1].TraceID != ids[4] {
		t.Errorf("Recent(2) = %+v", got)
	}
	if got := o.Spans().Trace(ids[0]); len(got) != 0 {
		t.Errorf("evicted trace still has %d spans", len(got))
	}
	spans := o.Spans().Trace(ids[4])
	if len(spans) != 3 {
		t.Fatalf("trace spans = %+v", spans)
	}
	var root obs.SpanRecord
	for _, s := range spans {
		if s.Name == "root" {
			root = s
		}
	}
	for _, s := range spans {
		if s.Name != "root" && s.ParentID != root.SpanID {
			t.Errorf("span %s parent %q, want root %q", s.Name, s.ParentID, root.SpanID)
		}
		if s.Service != "checkout,payment" {
			t.Errorf("span service %q", s.Service)
		}
	}
	if root.Kind != "server" {
		t.Errorf("root kind %q", root.Kind)
	}

	// The JSON handler.
	h := o.Traces()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/?limit=1", nil))
	var list struct{ Traces []obs.TraceSummary }
	if err := json.Unmarshal(rec.Body.Bytes(), &list); err != nil || rec.Code != 200 || len(list.Traces) != 1 || list.Traces[0].TraceID != ids[5] {
		t.Errorf("list: %d %s (%v)", rec.Code, rec.Body, err)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/?trace_id="+ids[5], nil))
	var one struct {
		TraceID string `json:"trace_id"`
		Spans   []obs.SpanRecord
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &one); err != nil || rec.Code != 200 || len(one.Spans) != 3 {
		t.Errorf("trace: %d %s (%v)", rec.Code, rec.Body, err)
	}
	for _, q := range []string{"trace_id=" + ids[0], "trace_id=nothex"} {
		rec = httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/?"+q, nil))
		if rec.Code != http.StatusNotFound {
			t.Errorf("%s: %d, want 404", q, rec.Code)
		}
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/?limit=-1", nil))
	if rec.Code != http.StatusBadRequest {
		t.Errorf("limit=-1: %d, want 400", rec.Code)
	}
}

func TestRatioSamplerNever(t *testing.T) {
	o := newObs(t, obs.Options{Sampler: obs.RatioSampler(0)})
	_, s := o.Tracer("t").Start(context.Background(), "x")
	s.End()
	if n := o.Spans().Len(); n != 0 {
		t.Errorf("sampled out span stored: %d", n)
	}
}

// TestLogHandlerAddsIDs puts the request id and the span's ids on records
// logged with a context, and nothing on those without.
func TestLogHandlerAddsIDs(t *testing.T) {
	o := newObs(t, obs.Options{})
	var buf bytes.Buffer
	log := slog.New(obs.NewLogHandler(slog.NewJSONHandler(&buf, nil))).With("svc", "x")
	ctx := obs.WithRequestID(context.Background(), "rid-1")
	ctx, span := o.Tracer("t").Start(ctx, "op")
	log.InfoContext(ctx, "with ctx")
	log.Info("without ctx")
	log.InfoContext(ctx, "explicit", "request_id", "given")
	span.End()

	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("lines: %q", lines)
	}
	var rec map[string]any
	_ = json.Unmarshal([]byte(lines[0]), &rec)
	sc := span.SpanContext()
	if rec["request_id"] != "rid-1" || rec["trace_id"] != sc.TraceID().String() || rec["span_id"] != sc.SpanID().String() || rec["svc"] != "x" {
		t.Errorf("with ctx: %s", lines[0])
	}
	rec = nil
	_ = json.Unmarshal([]byte(lines[1]), &rec)
	if _, ok := rec["request_id"]; ok {
		t.Errorf("without ctx: %s", lines[1])
	}
	if strings.Count(lines[2], "request_id") != 1 || !strings.Contains(lines[2], `"request_id":"given"`) {
		t.Errorf("explicit id duplicated or replaced: %s", lines[2])
	}
}

// TestMetricsHandlerServesFamilies serves the HTTP families, the Go and
// process collectors, in text and OpenMetrics.
func TestMetricsHandlerServesFamilies(t *testing.T) {
	o := newObs(t, obs.Options{})
	o.HTTPServer().Duration.WithLabelValues("GET", "GET /x/{id}", "200").Observe(0.003)
	o.HTTPServer().Active.Inc()
	o.HTTPClient().Duration.WithLabelValues("catalog", "GET", "200", "").Observe(0.01)
	o.HTTPClient().Retries.WithLabelValues("catalog").Inc()
	srv := httptest.NewServer(o.Metrics())
	defer srv.Close()

	get := func(accept string) (string, string) {
		req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.Header.Get("Content-Type"), string(b)
	}
	ct, body := get("")
	if !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("content type %q", ct)
	}
	for _, want := range []string{
		`http_server_request_duration_seconds_bucket{http_request_method="GET",http_response_status_code="200",http_route="GET /x/{id}",le="0.005"} 1`,
		"http_server_active_requests 1",
		`http_client_request_duration_seconds_count{error_type="",http_request_method="GET",http_response_status_code="200",server="catalog"} 1`,
		`http_client_retries_total{server="catalog"} 1`,
		"go_goroutines", "process_cpu_seconds_total",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	ct, body = get("application/openmetrics-text; version=1.0.0")
	if !strings.HasPrefix(ct, "application/openmetrics-text") || !strings.HasSuffix(strings.TrimSpace(body), "# EOF") {
		t.Errorf("OpenMetrics: %q, body ends %q", ct, body[max(0, len(body)-20):])
	}
}

// TestOTLPEndpoint accepts a URL or host:port; the exporter connects
// lazily, so nothing need listen.
func TestOTLPEndpoint(t *testing.T) {
	// A collector's OTLP/HTTP receiver: it records what it is sent.
	type export struct {
		path, contentType string
		spans             []string
		service           string
	}
	got := make(chan export, 4)
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var req coltrace.ExportTraceServiceRequest
		if err := proto.Unmarshal(b, &req); err != nil {
			t.Errorf("the exporter sent no OTLP request: %v", err)
		}
		e := export{path: r.URL.Path, contentType: r.Header.Get("Content-Type")}
		for _, rs := range req.ResourceSpans {
			for _, a := range rs.GetResource().GetAttributes() {
				if a.Key == "service.name" {
					e.service = a.GetValue().GetStringValue()
				}
			}
			for _, ss := range rs.ScopeSpans {
				for _, sp := range ss.Spans {
					e.spans = append(e.spans, sp.Name)
				}
			}
		}
		got <- e
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
	}))
	defer collector.Close()

	for _, ep := range []string{collector.URL, strings.TrimPrefix(collector.URL, "http://")} {
		o, err := obs.New(obs.Options{Service: "checkout", OTLPEndpoint: ep})
		if err != nil {
			t.Fatalf("%s: %v", ep, err)
		}
		_, span := o.Tracer("test").Start(context.Background(), "place order")
		span.End()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := o.Shutdown(ctx); err != nil { // flushes the batch
			t.Errorf("%s: shutdown: %v", ep, err)
		}
		cancel()
		select {
		case e := <-got:
			if e.path != "/v1/traces" || e.contentType != "application/x-protobuf" || e.service != "checkout" || len(e.spans) != 1 || e.spans[0] != "place order" {
				t.Errorf("%s: the collector got %+v, want the span \"place order\" of checkout at /v1/traces", ep, e)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: nothing was exported", ep)
		}
		// The span is kept in memory as well.
		if len(o.Spans().Recent(10)) != 1 {
			t.Errorf("%s: the span store holds %d traces, want 1", ep, len(o.Spans().Recent(10)))
		}
	}
}
