package analytics_test

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/analytics"
	"github.com/globomantics/globomantics/internal/platform/clock"
)

// recorder is a bus.Publisher that keeps every message as the bus would
// send it (the data marshalled to JSON).
type recorder struct {
	mu   sync.Mutex
	msgs []recorded
}

type recorded struct {
	subject, id string
	data        []byte
}

func (r *recorder) Publish(_ context.Context, subject, id string, data any) error {
	b, err := json.Marshal(data)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, recorded{subject, id, b})
	return nil
}

func (r *recorder) taken() []recorded {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.msgs
	r.msgs = nil
	return out
}

func decode[T any](t *testing.T, m recorded) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(m.data, &v); err != nil {
		t.Fatalf("%s %s: %v", m.subject, m.id, err)
	}
	return v
}

// TestEmitterSummarises: the views and searches of a window become one
// summary of each, with the window and an id made of instance and window.
func TestEmitterSummarises(t *testing.T) {
	ctx := context.Background()
	rec := &recorder{}
	clk := clock.NewFake(now0)
	em := analytics.NewEmitter(rec, clk, nil, analytics.EmitterOptions{Instance: "sf1"})
	for range 3 {
		em.PageViewed("prd_b")
	}
	em.PageViewed("prd_a")
	em.PageViewed("") // not a view
	em.SearchMade("  Desk   LAMP ", 3)
	em.SearchMade("desk lamp", 0)
	em.SearchMade("   ", 0) // nothing to count
	clk.Advance(time.Second)
	em.Flush(ctx)
	msgs := rec.taken()
	if len(msgs) != 2 {
		t.Fatalf("%d messages, want 2: %v", len(msgs), msgs)
	}
	if msgs[0].subject != analytics.SubjectPageViewsCounted || msgs[0].id != analytics.SummaryID("pv", "sf1", now0, 0) {
		t.Errorf("first message %s %s", msgs[0].subject, msgs[0].id)
	}
	pv := decode[analytics.PageViewsCounted](t, msgs[0])
	want := analytics.PageViewsCounted{Instance: "sf1", WindowStart: now0, WindowEnd: now0.Add(time.Second),
		Counts: []analytics.ProductViews{{ProductID: "prd_a", Views: 1}, {ProductID: "prd_b", Views: 3}}}
	if !reflect.DeepEqual(pv, want) {
		t.Errorf("page views %+v, want %+v", pv, want)
	}
	if msgs[1].subject != analytics.SubjectSearchesCounted || msgs[1].id != analytics.SummaryID("sq", "sf1", now0, 0) {
		t.Errorf("second message %s %s", msgs[1].subject, msgs[1].id)
	}
	sq := decode[analytics.SearchesCounted](t, msgs[1])
	if w := []analytics.SearchCount{{Query: "desk lamp", Searches: 2, NoResult: 1}}; !reflect.DeepEqual(sq.Counts, w) || sq.Instance != "sf1" {
		t.Errorf("searches %+v, want counts %+v", sq, w)
	}
	// The next window starts where this one ended; an empty one publishes nothing.
	clk.Advance(time.Second)
	em.Flush(ctx)
	if msgs := rec.taken(); len(msgs) != 0 {
		t.Errorf("an empty window published %d messages", len(msgs))
	}
	em.PageViewed("prd_a")
	clk.Advance(time.Second)
	em.Flush(ctx)
	msgs = rec.taken()
	if len(msgs) != 1 {
		t.Fatalf("%d messages, want 1", len(msgs))
	}
	if pv := decode[analytics.PageViewsCounted](t, msgs[0]); !pv.WindowStart.Equal(now0.Add(2*time.Second)) || !pv.WindowEnd.Equal(now0.Add(3*time.Second)) {
		t.Errorf("third window %v to %v", pv.WindowStart, pv.WindowEnd)
	}
	if s := em.Stats(); s.Counted != 7 || s.Sent != 3 || s.Dropped != 0 || s.Failed != 0 {
		t.Errorf("stats %+v", s)
	}
}

// TestEmitterBoundsKeys: past MaxKeys distinct products in a window, views
// of new products are dropped and counted, in the stats and the summary.
func TestEmitterBoundsKeys(t *testing.T) {
	rec := &recorder{}
	em := analytics.NewEmitter(rec, clock.NewFake(now0), nil, analytics.EmitterOptions{Instance: "sf1", MaxKeys: 32})
	const n = 1000
	for i := range n {
		em.PageViewed(fmt.Sprintf("prd_%d", i))
	}
	em.Flush(context.Background())
	msgs := rec.taken()
	if len(msgs) != 1 {
		t.Fatalf("%d messages, want 1", len(msgs))
	}
	pv := decode[analytics.PageViewsCounted](t, msgs[0])
	s := em.Stats()
	if len(pv.Counts) == 0 || len(pv.Counts) > 32 || int64(len(pv.Counts))+pv.Dropped != n || s.Dropped != pv.Dropped {
		t.Errorf("%d products kept, %d dropped (stats %+v): want at most 32 kept and the rest of %d dropped", len(pv.Counts), pv.Dropped, s, n)
	}
}

// TestEmitterParts: a window with more than MaxSummaryCounts products is
// published in parts, each with its own id.
func TestEmitterParts(t *testing.T) {
	rec := &recorder{}
	em := analytics.NewEmitter(rec, clock.NewFake(now0), nil, analytics.EmitterOptions{Instance: "sf1", MaxKeys: 4000})
	const n = analytics.MaxSummaryCounts*2 + 10
	for i := range n {
		em.PageViewed(fmt.Sprintf("prd_%05d", i))
	}
	em.Flush(context.Background())
	msgs := rec.taken()
	if len(msgs) != 3 {
		t.Fatalf("%d messages, want 3", len(msgs))
	}
	total := 0
	for i, m := range msgs {
		pv := decode[analytics.PageViewsCounted](t, m)
		if pv.Part != i || m.id != analytics.SummaryID("pv", "sf1", now0, i) {
			t.Errorf("message %d: part %d, id %s", i, pv.Part, m.id)
		}
		total += len(pv.Counts)
	}
	if total != n {
		t.Errorf("%d products in the parts, want %d", total, n)
	}
}

// TestEmitterFlushesAtStop: what was counted since the last tick is
// published when Run's context ends (a clean stop), not lost.
func TestEmitterFlushesAtStop(t *testing.T) {
	rec := &recorder{}
	em := analytics.NewEmitter(rec, clock.Real{}, nil, analytics.EmitterOptions{Interval: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { em.Run(ctx); close(done) }()
	em.PageViewed("prd_1")
	em.SearchMade("lamp", 0)
	cancel()
	<-done
	msgs := rec.taken()
	if len(msgs) != 2 {
		t.Fatalf("%d messages published at the stop, want 2", len(msgs))
	}
	if pv := decode[analytics.PageViewsCounted](t, msgs[0]); len(pv.Counts) != 1 || pv.Instance != em.Instance() {
		t.Errorf("page views at the stop %+v", pv)
	}
}

// TestEmitterConcurrent counts from many goroutines while flushing: every
// view lands in exactly one window (run with -race).
func TestEmitterConcurrent(t *testing.T) {
	rec := &recorder{}
	em := analytics.NewEmitter(rec, clock.Real{}, nil, analytics.EmitterOptions{})
	const workers, each = 8, 2000
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				em.PageViewed(fmt.Sprintf("prd_%d", (w+i)%10))
			}
		}()
	}
	stop := make(chan struct{})
	flushed := make(chan struct{})
	go func() {
		defer close(flushed)
		for {
			select {
			case <-stop:
				return
			default:
				em.Flush(context.Background())
			}
		}
	}()
	wg.Wait()
	close(stop)
	<-flushed
	em.Flush(context.Background())
	var total int64
	for _, m := range rec.taken() {
		for _, c := range decode[analytics.PageViewsCounted](t, m).Counts {
			total += c.Views
		}
	}
	if total != workers*each {
		t.Errorf("%d views in the summaries, want %d", total, workers*each)
	}
}

// TestEmitterPageViewAllocs: counting a view of a product already counted
// in the window allocates nothing (the hot path of every product page).
func TestEmitterPageViewAllocs(t *testing.T) {
	em := analytics.NewEmitter(&recorder{}, clock.Real{}, nil, analytics.EmitterOptions{})
	id := "prd_1"
	em.PageViewed(id)
	if n := testing.AllocsPerRun(1000, func() { em.PageViewed(id) }); n != 0 {
		t.Errorf("PageViewed allocates %v times per call, want 0", n)
	}
}

func BenchmarkEmitterPageViewed(b *testing.B) {
	em := analytics.NewEmitter(&recorder{}, clock.Real{}, nil, analytics.EmitterOptions{})
	ids := make([]string, 24)
	for i := range ids {
		ids[i] = fmt.Sprintf("prd_%d", i)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			em.PageViewed(ids[i%len(ids)])
			i++
		}
	})
}
