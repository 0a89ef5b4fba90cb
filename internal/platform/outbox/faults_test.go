package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/platform/fault"
	"github.com/globomantics/globomantics/internal/platform/outbox"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

// A relay stopped at each of its fault points (its crash func returns, as
// in-process tests' do, so the pass ends with fault.ErrCrashed and records
// nothing, as a killed process would) leaves every row in the outbox; the
// relay that takes over publishes them, and the consumer sees each event
// once: what was published before the stop is dropped by the broker as a
// duplicate. internal/app's TestOutboxSurvivesKills does the same with
// processes killed by SIGKILL.
func TestRelayStoppedAtFaultPoints(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			for _, point := range []string{outbox.FaultBeforePublish, outbox.FaultMidBatch, outbox.FaultAfterPublish} {
				t.Run(point, func(t *testing.T) { testStoppedAt(t, b, point) })
			}
		})
	}
}

func testStoppedAt(t *testing.T, b testenv.Backend, point string) {
	ctx := context.Background()
	db := openDB(t, b)
	bb := testenv.Bus(t)
	s := newSink(t, bb, "sink")
	const n = 7
	var want []string
	for i := range n {
		id := fmt.Sprintf("thg_%02d", i)
		want = append(want, id)
		if err := create(ctx, db, id, t0.Add(time.Duration(i)*time.Second), nil); err != nil {
			t.Fatal(err)
		}
	}
	crashed := 0
	f := fault.New(func() { crashed++ })
	if err := f.Set(point + "=crash*1"); err != nil {
		t.Fatal(err)
	}
	dying := outbox.NewRelay(db, bb, testenv.Logger(t), outbox.WithFaults(f))
	if _, err := dying.Flush(ctx); !errors.Is(err, fault.ErrCrashed) || crashed != 1 {
		t.Fatalf("Flush = %v, crashed %d; want fault.ErrCrashed once", err, crashed)
	}
	if got := pending(t, db); got != n {
		t.Fatalf("%d rows left after the crash at %s, want all %d", got, point, n)
	}
	switch point {
	case outbox.FaultBeforePublish:
		time.Sleep(200 * time.Millisecond) // nothing may arrive
		if got := s.ids(); len(got) != 0 {
			t.Fatalf("events %q published before %s", got, point)
		}
	case outbox.FaultMidBatch:
		s.waitFor(t, want[:n/2]...)
	case outbox.FaultAfterPublish:
		s.waitFor(t, want...)
	}
	// The next relay (the restarted process's) publishes every row again.
	next := outbox.NewRelay(db, bb, testenv.Logger(t))
	if got, err := next.Flush(ctx); err != nil || got != n {
		t.Fatalf("Flush after the crash = %d, %v; want %d", got, err, n)
	}
	if got := pending(t, db); got != 0 {
		t.Errorf("%d rows left", got)
	}
	s.waitFor(t, want...)
	time.Sleep(200 * time.Millisecond) // a duplicate would arrive by now
	s.waitFor(t, want...)
}
