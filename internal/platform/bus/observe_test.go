package bus_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/globomantics/globomantics/internal/platform/bus"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

// observed opens an embedded broker whose bus reports to reg and traces
// into the returned recorder.
func observed(t *testing.T, reg prometheus.Registerer) (*bus.Bus, *tracetest.SpanRecorder, trace.TracerProvider) {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	b, err := bus.Open(context.Background(), bus.Options{StoreDir: t.TempDir(), Name: "observed", Log: testenv.Logger(t),
		Registerer: reg, TracerProvider: tp})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b, rec, tp
}

// metricValue is the value of the sample of name whose labels include
// want (a counter, a gauge, or a histogram's count); -1 when absent.
func metricValue(t *testing.T, g prometheus.Gatherer, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if have[k] != v {
					continue next
				}
			}
			return sampleValue(m)
		}
	}
	return -1
}

func sampleValue(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	return -1
}

// A message published inside a span is handled inside a consumer span of
// the same trace, a child of the producer span, itself a child of the
// publisher's span; the handler's context carries the consumer span.
func TestPublishConsumeIsOneTrace(t *testing.T) {
	reg := prometheus.NewRegistry()
	b, rec, tp := observed(t, reg)
	ctx := context.Background()
	var (
		mu      sync.Mutex
		handled []trace.SpanContext
	)
	h := func(ctx context.Context, ev bus.Event) error {
		mu.Lock()
		defer mu.Unlock()
		handled = append(handled, trace.SpanContextFromContext(ctx))
		return nil
	}
	if err := b.Subscribe(ctx, "trace-test", []string{"globo.order.placed"}, h); err != nil {
		t.Fatal(err)
	}
	if err := b.React(ctx, "trace-react", []string{"globo.order.placed"}, h); err != nil {
		t.Fatal(err)
	}
	pctx, parent := tp.Tracer("test").Start(ctx, "request")
	if err := b.Publish(pctx, "globo.order.placed", "ord-1", payload{N: 1}); err != nil {
		t.Fatal(err)
	}
	parent.End()
	testenv.CheckFor(t, wait, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(handled) < 2 {
			return fmt.Errorf("%d of 2 handlings", len(handled))
		}
		return nil
	})
	var producer sdktrace.ReadOnlySpan
	testenv.CheckFor(t, wait, func() error {
		producer = nil
		consumers := 0
		for _, s := range rec.Ended() {
			switch s.SpanKind() {
			case trace.SpanKindProducer:
				producer = s
			case trace.SpanKindConsumer:
				consumers++
			}
		}
		if producer == nil || consumers < 2 {
			return fmt.Errorf("producer %v, %d consumer spans ended", producer != nil, consumers)
		}
		return nil
	})
	traceID := parent.SpanContext().TraceID()
	if producer.SpanContext().TraceID() != traceID || producer.Parent().SpanID() != parent.SpanContext().SpanID() {
		t.Errorf("producer span %v is not a child of the publisher's span %v", producer.Parent(), parent.SpanContext())
	}
	groups := map[string]bool{}
	for _, s := range rec.Ended() {
		if s.SpanKind() != trace.SpanKindConsumer {
			continue
		}
		if s.SpanContext().TraceID() != traceID || s.Parent().SpanID() != producer.SpanContext().SpanID() || !s.Parent().IsRemote() {
			t.Errorf("consumer span %q: parent %v, want the producer span %v of trace %v", s.Name(), s.Parent(), producer.SpanContext(), traceID)
		}
		attrs := map[string]string{}
		for _, kv := range s.Attributes() {
			attrs[string(kv.Key)] = kv.Value.String()
		}
		if attrs["messaging.system"] != "nats" || attrs["messaging.destination.name"] != "globo.order.placed" {
			t.Errorf("consumer span attributes %v", attrs)
		}
		groups[attrs["messaging.consumer.group.name"]] = true
	}
	if !groups["trace-test"] || !groups["trace-react"] {
		t.Errorf("consumer groups %v, want trace-test and trace-react", groups)
	}
	mu.Lock()
	for _, sc := range handled {
		if sc.TraceID() != traceID {
			t.Errorf("handler's context is in trace %v, want %v", sc.TraceID(), traceID)
		}
	}
	mu.Unlock()
	if v := metricValue(t, reg, "messaging_client_published_messages_total", map[string]string{"subject_prefix": "globo.order"}); v != 1 {
		t.Errorf("published messages = %v, want 1", v)
	}
	testenv.CheckFor(t, wait, func() error {
		if v := metricValue(t, reg, "messaging_process_duration_seconds", map[string]string{"consumer": "trace-test", "outcome": "ack"}); v != 1 {
			return fmt.Errorf("process duration count (trace-test, ack) = %v, want 1", v)
		}
		return nil
	})
}

// A batch's messages continue the trace of their traceparent (the outbox
// row's): each publish is a child of it.
func TestPublishBatchContinuesTraceparent(t *testing.T) {
	b, rec, _ := observed(t, nil)
	tp := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	errsOut := b.PublishBatch(context.Background(), []bus.Message{{Subject: "globo.order.placed", ID: "b-1", Data: []byte(`{}`), Traceparent: tp}})
	if errsOut[0] != nil {
		t.Fatal(errsOut[0])
	}
	var found bool
	for _, s := range rec.Ended() {
		if s.SpanKind() == trace.SpanKindProducer {
			found = true
			if s.SpanContext().TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" || s.Parent().SpanID().String() != "00f067aa0ba902b7" {
				t.Errorf("batch publish span %v, parent %v", s.SpanContext(), s.Parent())
			}
		}
	}
	if !found {
		t.Error("no producer span for the batch's message")
	}
}

// Redeliveries and dead letters are counted per consumer, with the
// outcome of every handling; the pending gauges read the broker's
// consumer; dead letters waiting are counted by their original stream.
func TestBusMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	b, _, _ := observed(t, reg)
	ctx := context.Background()
	// A second bus on the same registry shares its metrics (no panic).
	b2, err := bus.Open(ctx, bus.Options{URL: b.ClientURL(), StoreDir: t.TempDir(), Name: "second", Log: testenv.Logger(t), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	b2.Close()

	fails := newCounter()
	flaky := func(ctx context.Context, ev bus.Event) error {
		if fails.add(ev.ID) < 2 {
			return errors.New("not yet")
		}
		return nil
	}
	poison := func(ctx context.Context, ev bus.Event) error { return errors.New("never") }
	if err := b.Subscribe(ctx, "flaky", []string{"globo.metrics.flaky"}, flaky); err != nil {
		t.Fatal(err)
	}
	if err := b.Subscribe(ctx, "poison", []string{"globo.metrics.poison"}, poison, bus.MaxDeliveries(2)); err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	var blockedOnce sync.Once
	started := make(chan struct{})
	blocked := func(ctx context.Context, ev bus.Event) error {
		blockedOnce.Do(func() { close(started) })
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil
	}
	if err := b.Subscribe(ctx, "blocked", []string{"globo.metrics.blocked"}, blocked); err != nil {
		t.Fatal(err)
	}
	defer close(release)
	publish(t, b, "globo.metrics.flaky", "f-1", 1)
	publish(t, b, "globo.metrics.poison", "p-1", 1)
	for i := range 5 {
		publish(t, b, "globo.metrics.blocked", fmt.Sprintf("k-%d", i), i)
	}
	<-started
	testenv.CheckFor(t, wait, func() error {
		var problems []string
		check := func(name string, labels map[string]string, want float64) {
			if v := metricValue(t, reg, name, labels); v != want {
				problems = append(problems, fmt.Sprintf("%s%v = %v, want %v", name, labels, v, want))
			}
		}
		check("bus_redeliveries_total", map[string]string{"consumer": "flaky"}, 1)
		check("messaging_process_duration_seconds", map[string]string{"consumer": "flaky", "outcome": "retry"}, 1)
		check("messaging_process_duration_seconds", map[string]string{"consumer": "flaky", "outcome": "ack"}, 1)
		check("bus_redeliveries_total", map[string]string{"consumer": "poison"}, 1)
		check("bus_dead_letters_total", map[string]string{"consumer": "poison"}, 1)
		check("messaging_process_duration_seconds", map[string]string{"consumer": "poison", "outcome": "dead_letter"}, 1)
		check("bus_consumer_pending_messages", map[string]string{"stream": "GLOBO", "consumer": "blocked"}, 4)
		check("bus_consumer_ack_pending_messages", map[string]string{"stream": "GLOBO", "consumer": "blocked"}, 1)
		check("bus_consumer_pending_messages", map[string]string{"stream": "GLOBO", "consumer": "flaky"}, 0)
		check("bus_dead_letter_messages", map[string]string{"stream": "GLOBO"}, 1)
		check("bus_dead_letter_messages", map[string]string{"stream": "GLOBO_JOBS"}, 0)
		if len(problems) > 0 {
			return errors.New(strings.Join(problems, "; "))
		}
		return nil
	})
}

// Without a registry or a tracer provider the bus still carries the trace
// context of the publisher's span to the handler.
func TestTraceContextTravelsWithoutTracing(t *testing.T) {
	b := testenv.Bus(t)
	ctx := context.Background()
	got := make(chan trace.SpanContext, 1)
	if err := b.Subscribe(ctx, "plain", []string{"globo.plain.x"}, func(ctx context.Context, ev bus.Event) error {
		got <- trace.SpanContextFromContext(ctx)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	tp := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	if err := b.Publish(bus.ContextWithTraceparent(ctx, tp), "globo.plain.x", "x-1", payload{}); err != nil {
		t.Fatal(err)
	}
	var sc trace.SpanContext
	select {
	case sc = <-got:
	case <-time.After(wait):
		t.Fatal("message not handled")
	}
	if sc.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" || sc.SpanID().String() != "00f067aa0ba902b7" {
		t.Errorf("handler's span context %v", sc)
	}
}

type ridKey struct{}

// The publisher's request id travels as X-Request-Id into the handler's
// context.
func TestRequestIDTravels(t *testing.T) {
	ctx := context.Background()
	b, err := bus.Open(ctx, bus.Options{StoreDir: t.TempDir(), Log: testenv.Logger(t),
		RequestID:     func(ctx context.Context) string { s, _ := ctx.Value(ridKey{}).(string); return s },
		WithRequestID: func(ctx context.Context, id string) context.Context { return context.WithValue(ctx, ridKey{}, id) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	got := make(chan string, 1)
	if err := b.Subscribe(ctx, "rid", []string{"globo.rid.x"}, func(ctx context.Context, ev bus.Event) error {
		s, _ := ctx.Value(ridKey{}).(string)
		got <- s
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(context.WithValue(ctx, ridKey{}, "req-42"), "globo.rid.x", "r-1", payload{}); err != nil {
		t.Fatal(err)
	}
	select {
	case rid := <-got:
		if rid != "req-42" {
			t.Errorf("handler's request id %q, want req-42", rid)
		}
	case <-time.After(wait):
		t.Fatal("message not handled")
	}
}
