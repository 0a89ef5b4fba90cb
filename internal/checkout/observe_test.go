package checkout_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/globomantics/globomantics/internal/checkout"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

// sagaCounts is saga_completed_total and saga_duration_seconds' count by
// outcome, as "outcome=n" strings.
func sagaCounts(t *testing.T, reg *prometheus.Registry) (completed, durations []string) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			outcome := m.GetLabel()[0].GetValue()
			switch mf.GetName() {
			case "saga_completed_total":
				completed = append(completed, fmt.Sprintf("%s=%g", outcome, m.GetCounter().GetValue()))
			case "saga_duration_seconds":
				durations = append(durations, fmt.Sprintf("%s=%d", outcome, m.GetHistogram().GetSampleCount()))
			}
		}
	}
	return completed, durations
}

// Completed, refused and failed sagas are counted by outcome; each is a
// "checkout saga" span under the request's span, with a span per step
// under it.
func TestSagaObservability(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	w := newWorld(t, config{}, checkout.WithRegisterer(reg), checkout.WithTracerProvider(tp))
	// A second instance on the registry shares its metrics.
	w.instance("b", nil, checkout.WithRegisterer(reg))
	ctx, req := tp.Tracer("test").Start(context.Background(), "POST /api/v1/checkout")
	good := w.customer("good", map[string]int{widget: 1})
	if _, err := w.settle(good, "k")(w.svc.PlaceOrder(ctx, good, "k", request(goodCard))); err != nil {
		t.Fatalf("good card: %v", err)
	}
	req.End()
	bad := w.customer("bad", map[string]int{widget: 1})
	if _, err := w.settle(bad, "k")(w.svc.PlaceOrder(context.Background(), bad, "k", request(declinedCard))); !errs.Is(errs.Declined, err) {
		t.Fatalf("declined card: %v", err)
	}
	flaky := w.customer("flaky", map[string]int{widget: 1})
	if _, err := w.settle(flaky, "k")(w.svc.PlaceOrder(context.Background(), flaky, "k", request(transientCard))); !errs.Is(errs.Unavailable, err) {
		t.Fatalf("transient card: %v", err)
	}
	testenv.CheckFor(t, 10*time.Second, func() error {
		completed, durations := sagaCounts(t, reg)
		want := "[completed=1 failed=1 rolled_back=1]"
		if fmt.Sprint(completed) != want || fmt.Sprint(durations) != want {
			return fmt.Errorf("completed %v, durations %v; want %s", completed, durations, want)
		}
		return nil
	})
	g := w.saga(good, "k")
	var saga sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == "checkout saga" && s.SpanContext().TraceID() == req.SpanContext().TraceID() {
			saga = s
		}
	}
	if saga == nil {
		t.Fatal("no saga span in the request's trace")
	}
	if saga.Parent().SpanID() != req.SpanContext().SpanID() {
		t.Errorf("saga span's parent %v, want the request's span", saga.Parent())
	}
	steps := map[string]bool{}
	for _, s := range rec.Ended() {
		if strings.HasPrefix(s.Name(), "checkout step ") && s.Parent().SpanID() == saga.SpanContext().SpanID() {
			steps[strings.TrimPrefix(s.Name(), "checkout step ")] = true
		}
	}
	fwd, _ := forwardSteps(t)
	for _, st := range fwd {
		if !steps[st] {
			t.Errorf("no span of step %s under the saga of %s (have %v)", st, g.ID, steps)
		}
	}
}

// A saga resumed after its driver crashed is a new root span linked to
// the trace of the request that placed it, counted once by the instance
// that ends it.
func TestResumedSagaLinksToRequest(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	w := newWorld(t, config{})
	b := w.instance("b", nil, checkout.WithRegisterer(reg), checkout.WithTracerProvider(tp))
	w.run(b)
	f := newCrasher(t, "before:capture_payment=crash")
	crashy := w.instance("crashy", f.Injector, checkout.WithRegisterer(reg), checkout.WithTracerProvider(tp),
		checkout.WithLease(500*time.Millisecond))
	c := w.customer("resumed", map[string]int{gadget: 1})
	ctx, req := tp.Tracer("test").Start(context.Background(), "POST /api/v1/checkout")
	res, err := crashy.PlaceOrder(ctx, c, "k", request(goodCard))
	req.End()
	if err != nil || res.Done {
		t.Fatalf("PlaceOrder on the crashing instance = %+v, %v; want pending", res, err)
	}
	if _, err := w.awaitDone(b, c, "k"); err != nil {
		t.Fatalf("resumed checkout: %v", err)
	}
	testenv.CheckFor(t, 10*time.Second, func() error {
		if completed, _ := sagaCounts(t, reg); fmt.Sprint(completed) != "[completed=1]" {
			return fmt.Errorf("completed %v", completed)
		}
		for _, s := range rec.Ended() {
			if s.Name() != "checkout saga" || s.SpanContext().TraceID() == req.SpanContext().TraceID() {
				continue
			}
			if s.Parent().IsValid() {
				return fmt.Errorf("resumed saga span has parent %v", s.Parent())
			}
			for _, l := range s.Links() {
				if l.SpanContext.TraceID() == req.SpanContext().TraceID() {
					return nil
				}
			}
			return errors.New("resumed saga span not linked to the request")
		}
		return errors.New("no resumed saga span yet")
	})
}
