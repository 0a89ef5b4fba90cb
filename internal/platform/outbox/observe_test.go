package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/globomantics/globomantics/internal/platform/bus"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/outbox"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

func TestOutboxObservability(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Run("TraceContinuesThroughRelay", func(t *testing.T) { testTraceContinuesThroughRelay(t, b) })
			t.Run("Metrics", func(t *testing.T) { testRelayMetrics(t, b) })
		})
	}
}

// testTraceContinuesThroughRelay: a row written inside a span is relayed
// in an "outbox relay" span, a child of the writer's, whose publish and
// consumer spans follow in the same trace.
func testTraceContinuesThroughRelay(t *testing.T, b testenv.Backend) {
	ctx := context.Background()
	db := openDB(t, b)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	bb, err := bus.Open(ctx, bus.Options{StoreDir: t.TempDir(), Log: testenv.Logger(t), TracerProvider: tp})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bb.Close() })
	got := make(chan trace.SpanContext, 1)
	if err := bb.Subscribe(ctx, "mail-test", []string{"globo.thing.>"}, func(ctx context.Context, ev bus.Event) error {
		got <- trace.SpanContextFromContext(ctx)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	wctx, writer := tp.Tracer("test").Start(ctx, "order service: confirm")
	if err := create(wctx, db, "thg_traced", t0, nil); err != nil {
		t.Fatal(err)
	}
	writer.End()
	relay := outbox.NewRelay(db, bb, testenv.Logger(t), outbox.WithTracerProvider(tp))
	if n, err := relay.Flush(ctx); err != nil || n != 1 {
		t.Fatalf("Flush = %d, %v", n, err)
	}
	traceID := writer.SpanContext().TraceID()
	var consumer trace.SpanContext
	testenv.CheckFor(t, wait, func() error {
		select {
		case consumer = <-got:
			return nil
		default:
			return errors.New("not consumed yet")
		}
	})
	if consumer.TraceID() != traceID {
		t.Fatalf("consumer in trace %v, want the writer's %v", consumer.TraceID(), traceID)
	}
	byName := map[string]sdktrace.ReadOnlySpan{}
	testenv.CheckFor(t, wait, func() error {
		for _, s := range rec.Ended() {
			byName[s.Name()] = s
		}
		for _, n := range []string{"outbox relay", "publish globo.thing.created", "process globo.thing.created"} {
			if byName[n] == nil {
				return fmt.Errorf("no span %q among %d", n, len(byName))
			}
		}
		return nil
	})
	chain := []struct{ child, parent trace.SpanContext }{
		{byName["outbox relay"].Parent(), writer.SpanContext()},
		{byName["publish globo.thing.created"].Parent(), byName["outbox relay"].SpanContext()},
		{byName["process globo.thing.created"].Parent(), byName["publish globo.thing.created"].SpanContext()},
	}
	for i, c := range chain {
		if c.child.TraceID() != traceID || c.child.SpanID() != c.parent.SpanID() {
			t.Errorf("link %d: parent %v, want %v", i, c.child, c.parent)
		}
	}
}

// testRelayMetrics: the rows published and the batches are counted per
// store, and the backlog gauge counts the rows a running relay has not
// published yet.
func testRelayMetrics(t *testing.T, b testenv.Backend) {
	ctx := context.Background()
	db := openDB(t, b)
	bb := testenv.Bus(t)
	reg := prometheus.NewRegistry()
	addMany(t, db, "thg", 3)
	down := &switchPublisher{next: bb, down: true}
	relay := outbox.NewRelay(db, down, testenv.Logger(t), outbox.WithRegisterer(reg), outbox.WithStore("things"))
	// A second relay on the same registry shares its metrics.
	_ = outbox.NewRelay(db, down, testenv.Logger(t), outbox.WithRegisterer(reg))
	rctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); relay.Run(rctx) }()
	defer func() { stop(); <-done }()
	testenv.CheckFor(t, wait, func() error {
		if v := gathered(t, reg, "outbox_backlog_rows", "things"); v != 3 {
			return fmt.Errorf("backlog = %v, want 3", v)
		}
		if down.refusedBatches() == 0 {
			return errors.New("no batch tried yet")
		}
		return nil
	})
	down.set(false)
	relay.Kick()
	testenv.CheckFor(t, wait, func() error {
		if v := gathered(t, reg, "outbox_published_total", "things"); v != 3 {
			return fmt.Errorf("published = %v, want 3", v)
		}
		if v := gathered(t, reg, "outbox_backlog_rows", "things"); v != 0 {
			return fmt.Errorf("backlog = %v, want 0", v)
		}
		if v := gathered(t, reg, "outbox_relay_duration_seconds", "things"); v < 2 {
			return fmt.Errorf("%v batches observed, want at least 2 (one failed, one published)", v)
		}
		return nil
	})
}

// gathered is the value (a histogram's count) of metric name for store.
func gathered(t *testing.T, reg *prometheus.Registry, name, store string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) != 1 || m.GetLabel()[0].GetValue() != store {
				continue
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return -1
}

// switchPublisher answers every message as unavailable while down, and
// forwards to next otherwise.
type switchPublisher struct {
	next    outbox.Publisher
	mu      sync.Mutex
	down    bool
	refused int // batches answered as unavailable
}

func (p *switchPublisher) refusedBatches() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.refused
}

func (p *switchPublisher) set(down bool) {
	p.mu.Lock()
	p.down = down
	p.mu.Unlock()
}

func (p *switchPublisher) PublishBatch(ctx context.Context, msgs []bus.Message) []error {
	p.mu.Lock()
	down := p.down
	if down {
		p.refused++
	}
	p.mu.Unlock()
	if !down {
		return p.next.PublishBatch(ctx, msgs)
	}
	out := make([]error, len(msgs))
	for i := range out {
		out[i] = errs.E("test", errs.Unavailable, errors.New("broker unreachable"))
	}
	return out
}
