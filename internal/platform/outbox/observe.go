package outbox

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/globomantics/globomantics/internal/platform/bus"
	"github.com/globomantics/globomantics/internal/platform/obs"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
)

// Observability of the relays: an "outbox relay" span per row published,
// a child of the trace of the transaction that wrote it (its traceparent
// column), whose context the message carries on (so the consumer's span
// continues the writer's trace); and the metrics below, labelled with the
// store (the database's source name, the service).

// backlogRefresh is how long a backlog count is reused between scrapes;
// backlogTimeout bounds the counting queries of one scrape.
const (
	backlogRefresh = 2 * time.Second
	backlogTimeout = time.Second
)

// Metrics are the outbox relays' Prometheus metrics in one registry, shared
// by every relay given that registry (NewMetrics returns the one already
// registered). outbox_backlog_rows counts, on scrape (at most every two
// seconds, each count bounded by a second), the rows waiting in the
// outboxes of the relays running in this process; a store with several
// nodes (shards) reports their sum.
type Metrics struct {
	published *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	backlog   *prometheus.Desc

	mu     sync.Mutex
	relays map[*Relay]struct{}
	at     time.Time
	snap   map[string]float64
}

// NewMetrics registers the outbox metrics in reg, or returns those already
// registered there; nil reg returns nil (no metrics). It panics when reg
// holds other metrics of the same names, as prometheus.MustRegister does.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	if reg == nil {
		return nil
	}
	m := &Metrics{
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outbox_published_total",
			Help: "Outbox rows the broker acknowledged and the relay deleted, by store.",
		}, []string{"store"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "outbox_relay_duration_seconds",
			Help:    "Time one relay batch took: claim, publish, record.",
			Buckets: prometheus.DefBuckets,
		}, []string{"store"}),
		backlog: prometheus.NewDesc("outbox_backlog_rows",
			"Rows waiting in the outbox to be relayed (parked rows not included).", []string{"store"}, nil),
		relays: map[*Relay]struct{}{},
	}
	return obs.RegisterOnce(reg, m)
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	m.published.Describe(ch)
	m.duration.Describe(ch)
	ch <- m.backlog
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.published.Collect(ch)
	m.duration.Collect(ch)
	for store, n := range m.backlogs() {
		ch <- prometheus.MustNewConstMetric(m.backlog, prometheus.GaugeValue, n, store)
	}
}

// backlogs counts the rows of every running relay's outbox, by store; a
// database two relays share is counted once, an outbox that cannot be
// counted is left out.
func (m *Metrics) backlogs() map[string]float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.at.IsZero() && time.Since(m.at) < backlogRefresh {
		return m.snap
	}
	ctx, cancel := context.WithTimeout(context.Background(), backlogTimeout)
	defer cancel()
	out := map[string]float64{}
	seen := map[*sqldb.DB]bool{}
	for r := range m.relays {
		if seen[r.db] {
			continue
		}
		seen[r.db] = true
		var n int64
		if err := r.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM outbox`).Scan(&n); err != nil {
			continue
		}
		out[r.store] += float64(n)
	}
	m.snap, m.at = out, time.Now()
	return m.snap
}

// WithRegisterer makes the relay report its metrics (Metrics) to reg; nil:
// none.
func WithRegisterer(reg prometheus.Registerer) Option {
	return func(r *Relay) { r.metrics = NewMetrics(reg) }
}

// WithTracerProvider makes the relay trace each row it publishes (an
// "outbox relay" span, a child of the writer's trace); nil: no spans (the
// writer's trace context is still passed on).
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(r *Relay) {
		if tp != nil {
			r.tracer = tp.Tracer("github.com/globomantics/globomantics/internal/platform/outbox")
		}
	}
}

// WithStore names the store in the relay's metrics and spans (default: the
// database's DBName, the service).
func WithStore(name string) Option { return func(r *Relay) { r.store = name } }

// running adds r to the relays whose backlog is reported, until stop.
func (r *Relay) running() (stop func()) {
	m := r.metrics
	if m == nil {
		return func() {}
	}
	m.mu.Lock()
	m.relays[r] = struct{}{}
	m.at = time.Time{}
	m.mu.Unlock()
	return func() {
		m.mu.Lock()
		delete(m.relays, r)
		m.mu.Unlock()
	}
}

// startRelaySpans starts one "outbox relay" span per message, a child of
// the message's traceparent (the writer's trace; a new root when it has
// none), and sets each message's traceparent to its span's, so the
// publish continues it. end ends them with each message's outcome.
func (r *Relay) startRelaySpans(ctx context.Context, msgs []bus.Message) (end func(errList []error)) {
	if r.tracer == nil {
		return func([]error) {}
	}
	spans := make([]trace.Span, len(msgs))
	for i := range msgs {
		parent := bus.ContextWithTraceparent(context.WithoutCancel(ctx), msgs[i].Traceparent)
		opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindInternal), trace.WithAttributes(
			attribute.String("messaging.system", "nats"),
			attribute.String("messaging.destination.name", msgs[i].Subject),
			attribute.String("messaging.message.id", msgs[i].ID),
			attribute.String("globo.outbox.store", r.store),
		)}
		if !trace.SpanContextFromContext(parent).IsValid() {
			opts = append(opts, trace.WithNewRoot())
		}
		sctx, span := r.tracer.Start(parent, "outbox relay", opts...)
		spans[i] = span
		msgs[i].Traceparent = bus.TraceparentOf(sctx)
	}
	return func(errList []error) {
		for i, span := range spans {
			if i < len(errList) && errList[i] != nil {
				span.RecordError(errList[i])
				span.SetStatus(codes.Error, "not published")
			}
			span.End()
		}
	}
}

// observeBatch records a batch's duration and the rows it published.
func (r *Relay) observeBatch(start time.Time, published int) {
	if r.metrics == nil {
		return
	}
	r.metrics.duration.WithLabelValues(r.store).Observe(time.Since(start).Seconds())
	if published > 0 {
		r.metrics.published.WithLabelValues(r.store).Add(float64(published))
	}
}
