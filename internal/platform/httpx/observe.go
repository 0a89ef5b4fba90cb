package httpx

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/globomantics/globomantics/internal/platform/obs"
)

// RequestIDHeader carries a request's id from the caller (or the edge) to
// every service the request reaches; Middleware returns it on the
// response.
const RequestIDHeader = "X-Request-Id"

// TraceIDHeader is set by an instrumented Middleware on every response: the
// id of the trace the request is part of.
const TraceIDHeader = "X-Trace-Id"

// maxRequestID is the longest request id accepted from a caller.
const maxRequestID = 64

// tracerName is the instrumentation scope of httpx's spans.
const tracerName = "github.com/globomantics/globomantics/internal/platform/httpx"

// RequestID is the id of the request being served under ctx (see
// Middleware), or "".
func RequestID(ctx context.Context) string { return obs.RequestID(ctx) }

// validRequestID reports whether a caller's request id may be kept: 1 to
// 64 characters of [A-Za-z0-9._-].
func validRequestID(s string) bool {
	if s == "" || len(s) > maxRequestID {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// newRequestID is 16 random hex digits.
func newRequestID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// serverObs is one request's observation by Middleware: its id, its span
// and the metrics it ends in.
type serverObs struct {
	o     *obs.Obs
	start time.Time
	id    string
	span  trace.Span
	req   *http.Request // the request as served, whose Pattern the mux set
	route string        // the innermost pattern a handler recorded (routeSlot)
}

type routeKey struct{}

// routeSlot holds the route of a request, set once by the innermost
// handler that knows it (see NoteRoute).
type routeSlot struct{ pattern string }

// NoteRoute records r's mux pattern as the route of the request being
// served, for Middleware's metrics, span name and access log, when none
// was recorded before. Muxes nested behind handlers that copy the request
// (WithContext) call it after they matched, since the outer request never
// sees the inner mux's pattern; httpx.Handler calls it for every handler.
func NoteRoute(r *http.Request) {
	if r.Pattern == "" {
		return
	}
	if s, ok := r.Context().Value(routeKey{}).(*routeSlot); ok && s.pattern == "" {
		s.pattern = r.Pattern
	}
}

// Routed serves h (a mux) and then records the pattern it matched (see
// NoteRoute).
func Routed(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(w, r)
		NoteRoute(r)
	})
}

// startServer gives the request its id (the caller's when valid, else a
// new one), set on the response too, and, with o, starts its server span
// (child of the caller's traceparent) and counts it active.
func startServer(ctx context.Context, o *obs.Obs, w http.ResponseWriter, r *http.Request) (context.Context, *serverObs) {
	so := &serverObs{o: o, start: time.Now()}
	so.id = r.Header.Get(RequestIDHeader)
	if !validRequestID(so.id) {
		so.id = newRequestID()
	}
	w.Header().Set(RequestIDHeader, so.id)
	ctx = obs.WithRequestID(ctx, so.id)
	ctx = context.WithValue(ctx, routeKey{}, &routeSlot{})
	if o == nil {
		return ctx, so
	}
	ctx = o.Propagator().Extract(ctx, propagation.HeaderCarrier(r.Header))
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	attrs := []attribute.KeyValue{
		attribute.String("http.request.method", r.Method),
		attribute.String("url.path", r.URL.Path),
		attribute.String("url.scheme", scheme),
		attribute.String("network.protocol.version", protoVersion(r)),
	}
	if host, port, err := net.SplitHostPort(r.Host); err == nil {
		attrs = append(attrs, attribute.String("server.address", host))
		if p, err := strconv.Atoi(port); err == nil {
			attrs = append(attrs, attribute.Int("server.port", p))
		}
	} else if r.Host != "" {
		attrs = append(attrs, attribute.String("server.address", r.Host))
	}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		attrs = append(attrs, attribute.String("client.address", host))
	}
	if ua := r.UserAgent(); ua != "" {
		attrs = append(attrs, attribute.String("user_agent.original", ua))
	}
	attrs = append(attrs, attribute.String("globo.request_id", so.id))
	ctx, so.span = o.Tracer(tracerName).Start(ctx, r.Method, trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(attrs...))
	w.Header().Set(TraceIDHeader, so.span.SpanContext().TraceID().String())
	o.HTTPServer().Active.Inc()
	return ctx, so
}

func protoVersion(r *http.Request) string {
	switch r.ProtoMajor {
	case 2:
		return "2"
	case 3:
		return "3"
	}
	if r.ProtoMinor == 0 {
		return "1.0"
	}
	return "1.1"
}

// routeOf is the request's route: the innermost pattern recorded, else
// the pattern of the mux that served it, else "unmatched" (never the
// raw path, whose ids would make one series per resource).
func (so *serverObs) routeOf() string {
	if so.route != "" {
		return so.route
	}
	if so.req != nil {
		if s, ok := so.req.Context().Value(routeKey{}).(*routeSlot); ok && s.pattern != "" {
			so.route = s.pattern
			return so.route
		}
		if so.req.Pattern != "" {
			so.route = so.req.Pattern
			return so.route
		}
	}
	so.route = "unmatched"
	return so.route
}

// finish ends the span and records the request's duration.
func (so *serverObs) finish(status, bytes int) {
	if so.o == nil {
		return
	}
	m := so.o.HTTPServer()
	m.Active.Dec()
	if status == 0 {
		status = http.StatusOK
	}
	route := so.routeOf()
	method := so.req.Method
	code := strconv.Itoa(status)
	m.Duration.WithLabelValues(method, route, code).Observe(time.Since(so.start).Seconds())
	so.span.SetName(method + " " + routeName(method, route))
	so.span.SetAttributes(
		attribute.String("http.route", route),
		attribute.Int("http.response.status_code", status),
		attribute.Int("http.response.body.size", bytes),
	)
	if status >= 500 {
		so.span.SetStatus(codes.Error, http.StatusText(status))
		so.span.SetAttributes(attribute.String("error.type", code))
	}
	so.span.End()
}

// routeName is route without its method prefix ("GET /x" → "/x").
func routeName(method, route string) string {
	if len(route) > len(method)+1 && route[:len(method)] == method && route[len(method)] == ' ' {
		return route[len(method)+1:]
	}
	return route
}

// WithObs makes the client trace every try as a client span (child of the
// caller's span, propagated as traceparent) and measure it in o's
// http_client_request_duration_seconds and http_client_retries_total.
// Without it the client still forwards the request id and any trace
// context it is called with.
func WithObs(o *obs.Obs) ClientOption {
	return func(c *Client) {
		if o != nil {
			c.ob = &clientObs{o: o, service: c.service}
		}
	}
}

// clientObs instruments a Client's tries; a nil one does nothing.
type clientObs struct {
	o       *obs.Obs
	service string
}

// startTry starts the client span of one try; end records its outcome.
func (co *clientObs) startTry(ctx context.Context, method, u string) (context.Context, func(status int, err error)) {
	if co == nil {
		return ctx, func(int, error) {}
	}
	start := time.Now()
	attrs := []attribute.KeyValue{
		attribute.String("http.request.method", method),
		attribute.String("peer.service", co.service),
	}
	if pu, err := url.Parse(u); err == nil {
		attrs = append(attrs, attribute.String("url.full", pu.Redacted()), attribute.String("server.address", pu.Hostname()))
		if p, err := strconv.Atoi(pu.Port()); err == nil {
			attrs = append(attrs, attribute.Int("server.port", p))
		}
	}
	ctx, span := co.o.Tracer(tracerName).Start(ctx, method+" "+co.service, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
	return ctx, func(status int, err error) {
		d := time.Since(start).Seconds()
		if err != nil {
			et := errorType(err)
			co.o.HTTPClient().Duration.WithLabelValues(co.service, method, "", et).Observe(d)
			span.SetAttributes(attribute.String("error.type", et))
			span.SetStatus(codes.Error, et)
			span.End()
			return
		}
		code := strconv.Itoa(status)
		co.o.HTTPClient().Duration.WithLabelValues(co.service, method, code, "").Observe(d)
		span.SetAttributes(attribute.Int("http.response.status_code", status))
		if status >= 400 {
			span.SetAttributes(attribute.String("error.type", code))
			span.SetStatus(codes.Error, http.StatusText(status))
		}
		span.End()
	}
}

// retried counts a call sent again.
func (co *clientObs) retried() {
	if co != nil {
		co.o.HTTPClient().Retries.WithLabelValues(co.service).Inc()
	}
}

// errorType names a failed try's cause for error_type: "timeout",
// "connection_refused" (dial), "canceled" or "transport".
func errorType(err error) string {
	switch {
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case isDialError(err):
		return "connection_refused"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	return "transport"
}

// injectHeaders forwards the request id and the trace context of ctx on
// an outbound request.
func injectHeaders(ctx context.Context, h http.Header) {
	if id := obs.RequestID(ctx); id != "" {
		h.Set(RequestIDHeader, id)
	}
	if trace.SpanContextFromContext(ctx).IsValid() {
		propagation.TraceContext{}.Inject(ctx, propagation.HeaderCarrier(h))
	}
	propagation.Baggage{}.Inject(ctx, propagation.HeaderCarrier(h))
}

// accessLevel is the level of a request's access log line: warn for a 5xx,
// debug for the probes polled all day (health, readiness, metrics), info
// for the rest.
func accessLevel(status int, route string) slog.Level {
	switch {
	case status >= 500:
		return slog.LevelWarn
	case route == "GET /healthz" || route == "GET /readyz" || route == "GET /metrics":
		return slog.LevelDebug
	}
	return slog.LevelInfo
}
