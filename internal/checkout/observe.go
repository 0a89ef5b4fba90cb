package checkout

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/globomantics/globomantics/internal/platform/obs"
)

// Observability of the sagas: a span per saga drive ("checkout saga", a
// child of the request that placed the order; a saga resumed by recovery
// starts a root span linked to that request's trace, kept in the saga's
// data), a span per try of a step or compensation ("checkout step <name>")
// under it, and the outcome metrics below.

// Saga outcomes, the outcome label of the saga metrics.
const (
	// OutcomeCompleted: the order was confirmed.
	OutcomeCompleted = "completed"
	// OutcomeRolledBack: refused (declined, out of stock, a conflict) and
	// every step undone.
	OutcomeRolledBack = "rolled_back"
	// OutcomeFailed: rolled back because of the shop (a service
	// unavailable, a step's deadline passed): every step undone, and the
	// customer may try again.
	OutcomeFailed = "failed"
)

// Metrics are the checkout's saga metrics in one registry, shared by every
// Service given that registry (NewMetrics returns the one already
// registered). A saga is counted once, by the instance that ends it.
type Metrics struct {
	completed *prometheus.CounterVec
	duration  *prometheus.HistogramVec
}

// NewMetrics registers the saga metrics in reg, or returns those already
// registered there; nil reg returns nil (no metrics). It panics when reg
// holds other metrics of the same names, as prometheus.MustRegister does.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	if reg == nil {
		return nil
	}
	m := &Metrics{
		completed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "saga_completed_total",
			Help: "Checkout sagas ended, by outcome (completed, rolled_back, failed).",
		}, []string{"outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "saga_duration_seconds",
			Help:    "Time from a checkout's acceptance to the end of its saga, by outcome.",
			Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 30, 60, 120, 300},
		}, []string{"outcome"}),
	}
	return obs.RegisterOnce(reg, m)
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	m.completed.Describe(ch)
	m.duration.Describe(ch)
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.completed.Collect(ch)
	m.duration.Collect(ch)
}

// WithRegisterer makes the service report its saga metrics to reg; nil:
// none.
func WithRegisterer(reg prometheus.Registerer) Option {
	return func(s *Service) { s.metrics = NewMetrics(reg) }
}

// WithTracerProvider makes the service trace its sagas and their steps;
// nil: no spans.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(s *Service) {
		if tp != nil {
			s.tracer = tp.Tracer("github.com/globomantics/globomantics/internal/checkout")
		}
	}
}

// traceparentOf is the W3C traceparent of ctx's span, or "".
func traceparentOf(ctx context.Context) string {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return ""
	}
	c := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, c)
	return c["traceparent"]
}

// startSaga starts the span of a drive of g: a child of the trace that
// placed it when this instance accepted it (accepted), else a new root
// linked to that trace.
func (s *Service) startSaga(ctx context.Context, g *Saga, accepted bool) (context.Context, trace.Span) {
	if s.tracer == nil {
		return ctx, nil
	}
	origin := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(),
		propagation.MapCarrier{"traceparent": g.Data.Traceparent}))
	opts := []trace.SpanStartOption{trace.WithAttributes(
		attribute.String("globo.order_id", g.ID),
		attribute.Int64("globo.saga.epoch", g.Epoch),
		attribute.String("globo.saga.state", g.State),
	)}
	if accepted && origin.IsValid() {
		ctx = trace.ContextWithRemoteSpanContext(ctx, origin)
	} else {
		opts = append(opts, trace.WithNewRoot(), trace.WithAttributes(attribute.Bool("globo.saga.resumed", true)))
		if origin.IsValid() {
			opts = append(opts, trace.WithLinks(trace.Link{SpanContext: origin}))
		}
	}
	return s.tracer.Start(ctx, "checkout saga", opts...)
}

// endSaga ends a drive's span and, when the drive ended the saga (it was
// not over when the drive started), counts its outcome.
func (s *Service) endSaga(span trace.Span, g *Saga, wasTerminal bool) {
	ended := !wasTerminal && g.Terminal()
	outcome := sagaOutcome(g)
	if ended && s.metrics != nil {
		s.metrics.completed.WithLabelValues(outcome).Inc()
		s.metrics.duration.WithLabelValues(outcome).Observe(max(0, s.clk.Now().Sub(g.CreatedAt).Seconds()))
	}
	if span == nil {
		return
	}
	if ended {
		span.SetAttributes(attribute.String("globo.saga.outcome", outcome))
		if outcome == OutcomeFailed {
			span.SetStatus(codes.Error, "rolled back: "+g.Data.Reason)
		}
	} else {
		span.SetAttributes(attribute.Bool("globo.saga.handed_over", true), attribute.String("globo.saga.state", g.State))
	}
	span.End()
}

// sagaOutcome is the outcome of a saga in a final state.
func sagaOutcome(g *Saga) string {
	switch {
	case g.State == SagaConfirmed:
		return OutcomeCompleted
	case g.Retryable || g.Failure != nil && g.Failure.Status >= 500:
		return OutcomeFailed
	}
	return OutcomeRolledBack
}

// startStep starts the span of one try of step name (a call to service).
func (s *Service) startStep(ctx context.Context, name, service string) (context.Context, func(error)) {
	if s.tracer == nil {
		return ctx, func(error) {}
	}
	ctx, span := s.tracer.Start(ctx, "checkout step "+name, trace.WithAttributes(
		attribute.String("globo.saga.step", name), attribute.String("globo.saga.service", service)))
	return ctx, func(err error) {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, "step failed")
		}
		span.End()
	}
}
