// Package obs is the shop's one observability package: per process a
// Prometheus registry, an OpenTelemetry tracer provider whose spans are
// kept in memory (and exported by OTLP/HTTP when configured), the W3C
// propagators, the HTTP metric families shared by the server middleware
// and the clients, and a slog handler that puts the request id and trace
// ids on every line logged with a context.
//
// Nothing here is global: each process (and each test) builds its own Obs.
// The one exception is otel's global text-map propagator, which New sets
// to W3C TraceContext + Baggage so that code holding only a
// trace.TracerProvider (the bus, the outbox) propagates the same format.
package obs

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Options configure New. The zero value (but for Service) is a working
// default: every trace sampled, spans kept in memory only.
type Options struct {
	// Service is the process's role, the service.name of its spans:
	// "storefront", "edge", or the services it runs joined by commas.
	Service string
	// InstanceID is service.instance.id; "<hostname>-<pid>" when empty.
	InstanceID string
	// OTLPEndpoint, when set, also exports every span by OTLP/HTTP to this
	// collector: a URL (http://host:4318, path /v1/traces by default) or a
	// bare host:port (plain HTTP).
	OTLPEndpoint string
	// Sampler decides which new traces are recorded; nil is parent-based
	// always-on (see RatioSampler).
	Sampler sdktrace.Sampler
	// SpanLimit bounds the in-memory span store (DefaultSpanLimit when 0).
	SpanLimit int
}

// Obs is one process's metrics registry and tracer provider. Its methods
// are safe for concurrent use.
type Obs struct {
	service string
	reg     *prometheus.Registry
	tp      *sdktrace.TracerProvider
	spans   *SpanStore
	prop    propagation.TextMapPropagator
	server  *HTTPServerMetrics
	client  *HTTPClientMetrics
	metrics http.Handler
}

// New builds a process's Obs: a registry with the Go and process
// collectors and the HTTP families (see HTTPServerMetrics,
// HTTPClientMetrics), and a tracer provider feeding the span store and,
// when opts.OTLPEndpoint is set, an OTLP/HTTP exporter. It fails on an
// unusable endpoint. Call Shutdown at exit to flush the exporter.
func New(opts Options) (*Obs, error) {
	if strings.TrimSpace(opts.Service) == "" {
		return nil, errors.New("obs.New: a service name is required")
	}
	if opts.InstanceID == "" {
		host, _ := os.Hostname()
		opts.InstanceID = host + "-" + strconv.Itoa(os.Getpid())
	}
	o := &Obs{
		service: opts.Service,
		reg:     prometheus.NewRegistry(),
		spans:   NewSpanStore(opts.SpanLimit),
		prop:    propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
	}
	o.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	o.server = newHTTPServerMetrics(o.reg)
	o.client = newHTTPClientMetrics(o.reg)
	o.metrics = newMetricsHandler(o.reg)
	tp, err := newTracerProvider(opts, o.spans)
	if err != nil {
		return nil, fmt.Errorf("obs.New: %w", err)
	}
	o.tp = tp
	otel.SetTextMapPropagator(o.prop)
	return o, nil
}

// Service is the service.name given to New.
func (o *Obs) Service() string { return o.service }

// Registry is the process's Prometheus registry: register collectors here
// (it also serves as a prometheus.Registerer).
func (o *Obs) Registry() *prometheus.Registry { return o.reg }

// TracerProvider is the process's tracer provider (a trace.TracerProvider).
func (o *Obs) TracerProvider() *sdktrace.TracerProvider { return o.tp }

// Tracer returns the provider's tracer named name (an instrumentation
// scope such as "globomantics/httpx").
func (o *Obs) Tracer(name string) trace.Tracer { return o.tp.Tracer(name) }

// Propagator is the W3C TraceContext + Baggage propagator.
func (o *Obs) Propagator() propagation.TextMapPropagator { return o.prop }

// Spans is the in-memory store of the process's recent spans.
func (o *Obs) Spans() *SpanStore { return o.spans }

// HTTPServer is the HTTP server families of the registry.
func (o *Obs) HTTPServer() *HTTPServerMetrics { return o.server }

// HTTPClient is the HTTP client families of the registry.
func (o *Obs) HTTPClient() *HTTPClientMetrics { return o.client }

// Traces serves the span store as JSON (see SpanStore.Handler).
func (o *Obs) Traces() http.Handler { return o.spans.Handler() }

// Shutdown ends the tracer provider: spans still buffered for OTLP are
// sent within ctx. Spans started afterwards are not recorded.
func (o *Obs) Shutdown(ctx context.Context) error { return o.tp.Shutdown(ctx) }
