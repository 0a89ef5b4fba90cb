package bus

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/globomantics/globomantics/internal/platform/obs"
)

// Observability of the bus: every publish is a producer span whose W3C
// trace context travels in the message's headers (traceparent, tracestate),
// every handling a consumer span that continues it, and the metrics below.
// Both are off (and cost nothing) unless Options.Registerer or
// Options.TracerProvider are set.

// Outcomes of a handled message, the outcome label of
// messaging_process_duration_seconds.
const (
	OutcomeAck        = "ack"         // handled, acked
	OutcomeRetry      = "retry"       // failed, offered again later
	OutcomeDeadLetter = "dead_letter" // given up: moved to the dead letters
)

// HeaderRequestID carries the request id of the work that published a
// message, when the publisher's context has one (Options.RequestID).
const HeaderRequestID = "X-Request-Id"

// gaugeRefresh is how long the broker's numbers behind the gauges are
// reused: a scrape more often than this costs no broker request.
const gaugeRefresh = 2 * time.Second

// gaugeTimeout bounds the broker requests of one refresh of the gauges.
const gaugeTimeout = 2 * time.Second

// Metrics are the bus's Prometheus metrics in one registry, shared by every
// Bus opened with that registry (NewMetrics returns the one already
// registered). The gauges read the broker on scrape, at most every two
// seconds, for the consumers the buses of this process run.
type Metrics struct {
	process      *prometheus.HistogramVec
	published    *prometheus.CounterVec
	redeliveries *prometheus.CounterVec
	deadLetters  *prometheus.CounterVec
	pending      *prometheus.Desc
	ackPending   *prometheus.Desc
	dlqWaiting   *prometheus.Desc

	mu    sync.Mutex
	buses map[*Bus]struct{}
	at    time.Time // when snap was read
	snap  []gaugeSample
}

type gaugeSample struct {
	desc   *prometheus.Desc
	value  float64
	labels []string
}

// NewMetrics registers the bus's metrics in reg, or returns those already
// registered there by an earlier call; nil reg returns nil (no metrics). It
// panics when reg holds other metrics of the same names, a programming
// error like prometheus.MustRegister's.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	if reg == nil {
		return nil
	}
	m := &Metrics{
		process: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "messaging_process_duration_seconds",
			Help:    "Time a consumer's handler took with one message, by outcome (ack, retry, dead_letter).",
			Buckets: prometheus.DefBuckets,
		}, []string{"consumer", "outcome"}),
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "messaging_client_published_messages_total",
			Help: "Messages the broker acknowledged, by subject prefix (the first two subject tokens).",
		}, []string{"subject_prefix"}),
		redeliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bus_redeliveries_total",
			Help: "Messages delivered to a consumer again after an earlier delivery was not acked.",
		}, []string{"consumer"}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "bus_dead_letters_total",
			Help: "Messages a consumer gave up on and moved to the dead letters.",
		}, []string{"consumer"}),
		pending: prometheus.NewDesc("bus_consumer_pending_messages",
			"Messages stored for a consumer of this process and not yet delivered to it.", []string{"stream", "consumer"}, nil),
		ackPending: prometheus.NewDesc("bus_consumer_ack_pending_messages",
			"Messages delivered to a consumer of this process and not yet acked.", []string{"stream", "consumer"}, nil),
		dlqWaiting: prometheus.NewDesc("bus_dead_letter_messages",
			"Dead letters waiting in "+DLQStreamName+", by the stream of their original subject.", []string{"stream"}, nil),
		buses: map[*Bus]struct{}{},
	}
	return obs.RegisterOnce(reg, m)
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	m.process.Describe(ch)
	m.published.Describe(ch)
	m.redeliveries.Describe(ch)
	m.deadLetters.Describe(ch)
	ch <- m.pending
	ch <- m.ackPending
	ch <- m.dlqWaiting
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.process.Collect(ch)
	m.published.Collect(ch)
	m.redeliveries.Collect(ch)
	m.deadLetters.Collect(ch)
	for _, s := range m.gauges() {
		ch <- prometheus.MustNewConstMetric(s.desc, prometheus.GaugeValue, s.value, s.labels...)
	}
}

func (m *Metrics) add(b *Bus) {
	m.mu.Lock()
	m.buses[b] = struct{}{}
	m.mu.Unlock()
}

func (m *Metrics) remove(b *Bus) {
	m.mu.Lock()
	delete(m.buses, b)
	m.mu.Unlock()
}

// gauges are the broker's numbers, read again when older than gaugeRefresh.
// A consumer run by two buses sharing the registry is reported once.
func (m *Metrics) gauges() []gaugeSample {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.at.IsZero() && time.Since(m.at) < gaugeRefresh {
		return m.snap
	}
	ctx, cancel := context.WithTimeout(context.Background(), gaugeTimeout)
	defer cancel()
	var out []gaugeSample
	seen := map[string]bool{}
	dlq := map[string]float64{}
	dlqRead := false
	for b := range m.buses {
		for _, c := range b.obs.consumers() {
			key := c.stream + "\x00" + c.name
			if seen[key] {
				continue
			}
			info, err := c.info.Info(ctx)
			if err != nil {
				continue // retired, or the broker did not answer: no sample
			}
			seen[key] = true
			out = append(out,
				gaugeSample{m.pending, float64(info.NumPending), []string{c.stream, c.name}},
				gaugeSample{m.ackPending, float64(info.NumAckPending), []string{c.stream, c.name}})
		}
		if !dlqRead {
			if counts, err := b.deadLetterCounts(ctx); err == nil {
				dlq, dlqRead = counts, true
			}
		}
	}
	for stream, n := range dlq {
		out = append(out, gaugeSample{m.dlqWaiting, n, []string{stream}})
	}
	m.snap, m.at = out, time.Now()
	return out
}

// deadLetterCounts counts the dead letters waiting, by the stream of their
// original subject (read from their subjects: globo_dlq.<consumer>.<subject>).
func (b *Bus) deadLetterCounts(ctx context.Context) (map[string]float64, error) {
	st, err := b.js.Stream(ctx, DLQStreamName)
	if err != nil {
		return nil, err
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(DLQSubjectPrefix+">"))
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, s := range Streams() {
		if s.Name != DLQStreamName {
			out[s.Name] = 0
		}
	}
	for subj, n := range info.State.Subjects {
		rest := strings.TrimPrefix(subj, DLQSubjectPrefix)
		_, orig, ok := strings.Cut(rest, ".")
		if !ok {
			continue
		}
		out[StreamOf(orig)] += float64(n)
	}
	return out, nil
}

// observer is a Bus's tracing and metrics; its zero value observes nothing.
type observer struct {
	m         *Metrics
	tracer    trace.Tracer // nil: no spans
	prop      propagation.TextMapPropagator
	requestID func(context.Context) string
	withReqID func(context.Context, string) context.Context

	mu   sync.Mutex
	cons []trackedConsumer
}

type trackedConsumer struct {
	stream, name string
	info         interface {
		Info(context.Context) (*jetstream.ConsumerInfo, error)
	}
}

// instrumentationName names the bus's tracer.
const instrumentationName = "github.com/globomantics/globomantics/internal/platform/bus"

func newObserver(o Options) *observer {
	ob := &observer{m: NewMetrics(o.Registerer), prop: o.Propagator, requestID: o.RequestID, withReqID: o.WithRequestID}
	if o.TracerProvider != nil {
		ob.tracer = o.TracerProvider.Tracer(instrumentationName)
	}
	if ob.prop == nil {
		ob.prop = propagation.TraceContext{}
	}
	return ob
}

// track records a consumer this process runs, for the pending gauges.
func (o *observer) track(stream, name string, c interface {
	Info(context.Context) (*jetstream.ConsumerInfo, error)
}) {
	if o.m == nil {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	for i, t := range o.cons {
		if t.stream == stream && t.name == name {
			o.cons[i].info = c
			return
		}
	}
	o.cons = append(o.cons, trackedConsumer{stream: stream, name: name, info: c})
}

func (o *observer) consumers() []trackedConsumer {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]trackedConsumer(nil), o.cons...)
}

// subjectPrefix is subject's first two tokens: a bounded label (subjects
// name message types, never ids).
func subjectPrefix(subject string) string {
	i := strings.IndexByte(subject, '.')
	if i < 0 {
		return subject
	}
	if j := strings.IndexByte(subject[i+1:], '.'); j >= 0 {
		return subject[:i+1+j]
	}
	return subject
}

// headerCarrier lets a propagator read and write NATS headers, whose keys
// are case-sensitive (unlike HTTP's): traceparent stays lower case.
type headerCarrier nats.Header

func (h headerCarrier) Get(k string) string { return nats.Header(h).Get(k) }
func (h headerCarrier) Set(k, v string)     { nats.Header(h).Set(k, v) }
func (h headerCarrier) Keys() []string {
	out := make([]string, 0, len(h))
	for k := range h {
		out = append(out, k)
	}
	return out
}

func messagingAttrs(op, subject string) []attribute.KeyValue {
	return []attribute.KeyValue{
		attribute.String("messaging.system", "nats"),
		attribute.String("messaging.operation.type", op),
		attribute.String("messaging.destination.name", subject),
	}
}

// startPublish starts the producer span of a publish on subject (a child
// of parent) and writes its trace context, and the request id of ctx, into
// h. end ends the span and counts a publish the broker acknowledged. With
// tracing off, parent's own span context (if any) is written instead.
func (o *observer) startPublish(ctx, parent context.Context, subject, id string, h nats.Header) (end func(error)) {
	if o.requestID != nil {
		if rid := o.requestID(ctx); rid != "" {
			h.Set(HeaderRequestID, rid)
		}
	}
	var span trace.Span
	if o.tracer != nil {
		attrs := append(messagingAttrs("send", subject), attribute.String("messaging.message.id", id))
		parent, span = o.tracer.Start(parent, "publish "+subject,
			trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(attrs...))
	}
	o.prop.Inject(parent, headerCarrier(h))
	return func(err error) {
		if err == nil && o.m != nil {
			o.m.published.WithLabelValues(subjectPrefix(subject)).Inc()
		}
		if span != nil {
			if err != nil {
				span.RecordError(err)
				span.SetStatus(codes.Error, "publish failed")
			}
			span.End()
		}
	}
}

// startProcess starts the consumer span of consumer name's handling of a
// message published on subject (delivered for the attempt-th time), as a
// child of the trace context in the message's headers (or, for a message
// without them, in the envelope's traceparent). done records the outcome.
func (o *observer) startProcess(m jetstream.Msg, name, subject string, ev Event, attempt uint64) (context.Context, func(outcome string, err error)) {
	ctx := context.Background()
	if o.m != nil && attempt > 1 {
		o.m.redeliveries.WithLabelValues(name).Inc()
	}
	if o.tracer == nil && o.m == nil {
		return o.extract(ctx, m, ev), func(string, error) {}
	}
	start := time.Now()
	ctx = o.extract(ctx, m, ev)
	var span trace.Span
	if o.tracer != nil {
		attrs := append(messagingAttrs("process", subject),
			attribute.String("messaging.consumer.group.name", name),
			attribute.String("messaging.message.id", ev.ID),
			attribute.Int64("messaging.message.delivery_count", int64(attempt)))
		ctx, span = o.tracer.Start(ctx, "process "+subject,
			trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(attrs...))
	}
	return ctx, func(outcome string, err error) {
		if o.m != nil {
			o.m.process.WithLabelValues(name, outcome).Observe(time.Since(start).Seconds())
		}
		if span != nil {
			span.SetAttributes(attribute.String("globo.outcome", outcome))
			if err != nil {
				span.RecordError(err)
				span.SetStatus(codes.Error, outcome)
			}
			span.End()
		}
	}
}

// extract is ctx with the remote trace context of m, from its headers or
// else from the envelope's traceparent, and with its request id
// (Options.WithRequestID).
func (o *observer) extract(ctx context.Context, m jetstream.Msg, ev Event) context.Context {
	if o.withReqID != nil {
		if rid := m.Headers().Get(HeaderRequestID); rid != "" {
			ctx = o.withReqID(ctx, rid)
		}
	}
	if h := m.Headers(); h != nil {
		if out := o.prop.Extract(ctx, headerCarrier(h)); trace.SpanContextFromContext(out).IsValid() {
			return out
		}
	}
	if ev.Traceparent != "" {
		return o.prop.Extract(ctx, propagation.MapCarrier{HeaderTraceparent: ev.Traceparent})
	}
	return ctx
}

// deadLettered counts a message consumer name moved to the dead letters.
func (o *observer) deadLettered(name string) {
	if o.m != nil {
		o.m.deadLetters.WithLabelValues(name).Inc()
	}
}

// TraceparentOf is the W3C traceparent of the span in ctx, or, when ctx has
// none, the one WithTraceparent put there; "" when neither.
func TraceparentOf(ctx context.Context) string {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		c := propagation.MapCarrier{}
		propagation.TraceContext{}.Inject(ctx, c)
		if tp := c[HeaderTraceparent]; tp != "" {
			return tp
		}
	}
	return TraceparentFrom(ctx)
}

// ContextWithTraceparent is ctx carrying tp as its remote parent span
// context (for a span started under it to continue tp's trace); ctx itself
// when tp is not a valid traceparent.
func ContextWithTraceparent(ctx context.Context, tp string) context.Context {
	if !ValidTraceparent(tp) {
		return ctx
	}
	return propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier{HeaderTraceparent: tp})
}
