package contracts_test

import (
	"context"
	"encoding/json"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/analytics"
	"github.com/globomantics/globomantics/internal/contracts"
	"github.com/globomantics/globomantics/internal/platform/clock"
)

// The analytics consumer's decoding structs (analytics.Service.Handle).
func init() {
	decoders[contracts.SubjectPageViewed] = []decoder{
		{"analytics consumer (analytics.Service.Handle)", reflect.TypeFor[analytics.PageViewed]()}}
	decoders[contracts.SubjectSearchMade] = []decoder{
		{"analytics consumer (analytics.Service.Handle)", reflect.TypeFor[analytics.SearchMade]()}}
	decoders[contracts.SubjectPageViewsCounted] = []decoder{
		{"analytics consumer (analytics.Service.Handle)", reflect.TypeFor[analytics.PageViewsCounted]()}}
	decoders[contracts.SubjectSearchesCounted] = []decoder{
		{"analytics consumer (analytics.Service.Handle)", reflect.TypeFor[analytics.SearchesCounted]()}}
}

// TestAnalyticsSubjects checks that this package spells the analytics
// subjects as their producer does, and that the consumer subscribes to
// registered subjects only. (They are not "globo." subjects, so
// TestSubjectsMatchProducers's scan does not see them.)
func TestAnalyticsSubjects(t *testing.T) {
	if contracts.SubjectPageViewed != analytics.SubjectPageViewed || contracts.SubjectSearchMade != analytics.SubjectSearchMade {
		t.Errorf("contracts spells %q and %q, analytics %q and %q", contracts.SubjectPageViewed, contracts.SubjectSearchMade,
			analytics.SubjectPageViewed, analytics.SubjectSearchMade)
	}
	if contracts.SubjectPageViewsCounted != analytics.SubjectPageViewsCounted || contracts.SubjectSearchesCounted != analytics.SubjectSearchesCounted {
		t.Errorf("contracts spells %q and %q, analytics %q and %q", contracts.SubjectPageViewsCounted, contracts.SubjectSearchesCounted,
			analytics.SubjectPageViewsCounted, analytics.SubjectSearchesCounted)
	}
	r := registry(t)
	for _, s := range analytics.Subjects {
		if _, err := r.Schema(s); err != nil {
			t.Errorf("the analytics consumer subscribes to %s: %v", s, err)
		}
	}
}

// eventRecorder is a bus.Publisher that keeps each payload as the bus would
// send it (the data marshalled to JSON), by subject.
type eventRecorder struct {
	mu  sync.Mutex
	out map[string][][]byte
}

func (r *eventRecorder) Publish(_ context.Context, subject, _ string, data any) error {
	raw, err := json.Marshal(data)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.out[subject] = append(r.out[subject], raw)
	return nil
}

// analyticsPayloads runs the real producer of the analytics summaries (the
// storefront's analytics.Emitter) and adds what it publishes to out. The
// deprecated per-event subjects have no producer left in this version: their
// payloads are the structs older storefronts marshalled (analytics.PageViewed
// and SearchMade, kept as the consumer's decoding structs), as they sent them.
func analyticsPayloads(t *testing.T, out map[string][][]byte) {
	t.Helper()
	rec := &eventRecorder{out: out}
	clk := clock.NewFake(t0)
	e := analytics.NewEmitter(rec, clk, nil, analytics.EmitterOptions{})
	e.PageViewed("prd_1")
	e.PageViewed("prd_1")
	e.SearchMade("  Desk   LAMP ", 3)
	e.SearchMade("ünicorn", 0)
	clk.Advance(time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.Run(ctx); close(done) }()
	cancel() // Run publishes what was counted when it stops
	<-done
	if st := e.Stats(); st.Sent != 2 {
		t.Fatalf("emitter stats %+v, want 2 summaries sent", st)
	}
	for subject, data := range map[string]any{
		analytics.SubjectPageViewed: analytics.PageViewed{ProductID: "prd_1", ViewedAt: t0},
		analytics.SubjectSearchMade: analytics.SearchMade{Query: "desk lamp", Results: 0, SearchedAt: t0},
	} {
		if err := rec.Publish(ctx, subject, "old", data); err != nil {
			t.Fatal(err)
		}
	}
}
