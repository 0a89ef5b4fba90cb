package contracts_test

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/analytics"
	"github.com/globomantics/globomantics/internal/contracts"
	"github.com/globomantics/globomantics/internal/platform/clock"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

// The analytics consumer's decoding structs (analytics.Service.Handle).
func init() {
	decoders[contracts.SubjectPageViewed] = []decoder{
		{"analytics consumer (analytics.Service.Handle)", reflect.TypeFor[analytics.PageViewed]()}}
	decoders[contracts.SubjectSearchMade] = []decoder{
		{"analytics consumer (analytics.Service.Handle)", reflect.TypeFor[analytics.SearchMade]()}}
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

// analyticsPayloads runs the real producer of the analytics events (the
// storefront's analytics.Emitter) and adds what it publishes to out.
func analyticsPayloads(t *testing.T, out map[string][][]byte) {
	t.Helper()
	rec := &eventRecorder{out: out}
	e := analytics.NewEmitter(rec, clock.NewFake(t0), nil, analytics.EmitterOptions{})
	e.PageViewed("prd_1")
	e.SearchMade("  Desk   LAMP ", 3)
	e.SearchMade("ünicorn", 0)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.Run(ctx); close(done) }()
	testenv.CheckFor(t, 5*time.Second, func() error {
		if st := e.Stats(); st.Sent != 3 {
			return fmt.Errorf("emitter stats %+v, want 3 sent", st)
		}
		return nil
	})
	cancel()
	<-done
}
