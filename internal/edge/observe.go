package edge

import (
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// tracerName is the instrumentation scope of the edge's spans.
const tracerName = "github.com/globomantics/globomantics/internal/edge"

// codeCounts counts a backend's answers by status code (100-599), and
// the attempts that got none.
type codeCounts struct {
	byCode    [500]atomic.Int64
	transport atomic.Int64
}

func (c *codeCounts) answer(status int) {
	if status >= 100 && status < 600 {
		c.byCode[status-100].Add(1)
	}
}

// observe wraps a listener's handler with a server span per request
// (child of the caller's traceparent, which the proxied request carries
// on as the span's child) and the HTTP server metrics, labelled by route:
// the pool, "cdn" for what the CDN cache path served, "_edge" for the
// edge's own API, "metrics", or "not_found". Without Config.Obs it is h.
func (e *Edge) observe(h http.Handler, public bool) http.Handler {
	o := e.cfg.Obs
	if o == nil {
		return h
	}
	tracer := o.Tracer(tracerName)
	prop := o.Propagator()
	m := o.HTTPServer()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		route := e.routeOf(r, public)
		ctx := prop.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		ctx, span := tracer.Start(ctx, r.Method+" "+route, trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(
				attribute.String("http.request.method", r.Method),
				attribute.String("url.path", r.URL.Path),
				attribute.String("http.route", route),
				attribute.String("server.address", r.Host),
				attribute.String("client.address", clientIP(r.RemoteAddr)),
			))
		w.Header()["X-Trace-Id"] = []string{span.SpanContext().TraceID().String()}
		m.Active.Inc()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		defer func() {
			m.Active.Dec()
			code := strconv.Itoa(sw.status)
			m.Duration.WithLabelValues(r.Method, route, code).Observe(time.Since(start).Seconds())
			span.SetAttributes(attribute.Int("http.response.status_code", sw.status), attribute.Int64("http.response.body.size", sw.bytes))
			if v := r.Header["X-Request-Id"]; len(v) == 1 { // set by front
				span.SetAttributes(attribute.String("globo.request_id", v[0]))
			}
			if sw.status >= 500 {
				span.SetStatus(codes.Error, http.StatusText(sw.status))
			}
			span.End()
		}()
		h.ServeHTTP(sw, r.WithContext(ctx))
	})
}

// routeOf is the route label of r on the public or internal listener.
func (e *Edge) routeOf(r *http.Request, public bool) string {
	path := r.URL.Path
	switch {
	case strings.HasPrefix(path, "/_edge/"):
		return "_edge"
	case !public && path == "/metrics":
		return "metrics"
	case strings.HasPrefix(path, "/svc/"):
		if public {
			return "not_found"
		}
		name, _, _ := strings.Cut(path[len("/svc/"):], "/")
		if p := e.lookupPool(name); p != nil {
			return p.name
		}
		return "not_found"
	case !public:
		return "not_found"
	case e.content.cached != nil && shareable(r):
		return "cdn"
	}
	return DefaultPool
}

// injectTrace puts the trace context of the request's span on the
// proxied request, replacing the caller's traceparent (the edge's span is
// the backend's parent).
func injectTrace(in, out *http.Request) {
	ctx := in.Context()
	if trace.SpanContextFromContext(ctx).IsValid() {
		propagation.TraceContext{}.Inject(ctx, propagation.HeaderCarrier(out.Header))
	}
}

// collector exports the edge's state at scrape time: no cost per request
// beyond the counters the edge keeps anyway.
type collector struct {
	e                  *Edge
	up, requests, cdnR *prometheus.Desc
}

func newCollector(e *Edge) *collector {
	return &collector{
		e:        e,
		up:       prometheus.NewDesc("edge_backend_up", "Whether a backend is healthy (1) or not (0), by its health checks.", []string{"pool", "backend"}, nil),
		requests: prometheus.NewDesc("edge_backend_requests_total", "Attempts sent to a backend, by the status code answered (\"error\": no answer).", []string{"pool", "backend", "code"}, nil),
		cdnR:     prometheus.NewDesc("edge_cdn_requests_total", "Public requests by CDN cache result: hit (fresh, stale, revalidated or collapsed onto another fetch), miss, or bypass (not cacheable).", []string{"result"}, nil),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.up
	ch <- c.requests
	ch <- c.cdnR
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	e := c.e
	e.mu.RLock()
	pools := make([]*pool, 0, len(e.pools))
	for _, p := range e.pools {
		pools = append(pools, p)
	}
	e.mu.RUnlock()
	for _, p := range pools {
		for _, b := range p.backends() {
			up := 0.0
			if b.healthy.Load() {
				up = 1
			}
			ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, up, p.name, b.url)
			for i := range b.codes.byCode {
				if n := b.codes.byCode[i].Load(); n > 0 {
					ch <- prometheus.MustNewConstMetric(c.requests, prometheus.CounterValue, float64(n), p.name, b.url, strconv.Itoa(i+100))
				}
			}
			if n := b.codes.transport.Load(); n > 0 {
				ch <- prometheus.MustNewConstMetric(c.requests, prometheus.CounterValue, float64(n), p.name, b.url, "error")
			}
		}
	}
	var hit, miss, bypass int64
	if st := e.content.cdnStats(); st != nil {
		hit = st.Hits + st.Stale + st.Revalidated + st.Collapsed
		miss = st.Misses
		bypass = st.Passes
	}
	bypass += e.content.bypassed.Load()
	ch <- prometheus.MustNewConstMetric(c.cdnR, prometheus.CounterValue, float64(hit), "hit")
	ch <- prometheus.MustNewConstMetric(c.cdnR, prometheus.CounterValue, float64(miss), "miss")
	ch <- prometheus.MustNewConstMetric(c.cdnR, prometheus.CounterValue, float64(bypass), "bypass")
}
