package bus_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/globomantics/globomantics/internal/platform/bus"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

// jetStreamAt connects a plain JetStream client to the broker at addr, to
// look at streams and consumers from outside the bus.
func jetStreamAt(t *testing.T, addr string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect("nats://" + addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// TestJobsAreAWorkQueue: instances subscribing to a job subject with the
// same name share its jobs, each job is handled once, and a handled job is
// gone from the stream; a second consumer of the same job subjects is
// refused, a consumer of other job subjects is not.
func TestJobsAreAWorkQueue(t *testing.T) {
	t.Parallel()
	srv, addr := embedded(t, t.TempDir())
	cli := remote(t, addr)
	js := jetStreamAt(t, addr)
	ctx := context.Background()

	st, err := js.Stream(ctx, bus.JobsStreamName)
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	if cfg.Retention != jetstream.WorkQueuePolicy || cfg.Storage != jetstream.FileStorage || cfg.PersistMode == jetstream.AsyncPersistMode ||
		len(cfg.Subjects) != 1 || cfg.Subjects[0] != bus.JobSubjectPrefix+">" {
		t.Errorf("%s: retention %v, storage %v, persist mode %v, subjects %v; want a synced file work queue of %s>",
			bus.JobsStreamName, cfg.Retention, cfg.Storage, cfg.PersistMode, cfg.Subjects, bus.JobSubjectPrefix)
	}
	if got := bus.StreamOf(bus.JobSubjectPrefix + "thumbnail"); got != bus.JobsStreamName {
		t.Errorf("StreamOf(job subject) = %s", got)
	}

	const subject = bus.JobSubjectPrefix + "thumbnail"
	r1, r2 := newRecorder(), newRecorder()
	if err := srv.Subscribe(ctx, "thumbs", []string{subject}, r1.handle); err != nil {
		t.Fatal(err)
	}
	if err := cli.Subscribe(ctx, "thumbs", []string{subject}, r2.handle); err != nil {
		t.Fatal(err)
	}
	const total = 100
	for i := 0; i < total; i++ {
		publish(t, cli, subject, fmt.Sprintf("j-%d", i), i)
	}
	testenv.CheckFor(t, wait, func() error {
		if got := r1.n() + r2.n(); got < total {
			return fmt.Errorf("%d of %d jobs handled", got, total)
		}
		return nil
	})
	// Acked jobs are deleted: the stream empties.
	testenv.CheckFor(t, wait, func() error {
		info, err := st.Info(ctx)
		if err != nil {
			return err
		}
		if info.State.Msgs != 0 {
			return fmt.Errorf("%d jobs still in the stream", info.State.Msgs)
		}
		return nil
	})
	for i := 0; i < total; i++ {
		id := fmt.Sprintf("j-%d", i)
		if n := r1.times(id) + r2.times(id); n != 1 {
			t.Errorf("%s handled %d times in total, want 1", id, n)
		}
	}
	if r1.n() == 0 || r2.n() == 0 {
		t.Errorf("one instance did all the work: %d and %d", r1.n(), r2.n())
	}

	// Another consumer of the thumbnail jobs would split them: refused.
	err = cli.Subscribe(ctx, "thumbs-v2", []string{bus.JobSubjectPrefix + ">"}, r1.handle)
	if !errs.Is(errs.Conflict, err) || !strings.Contains(errs.Detail(err), "exactly one consumer") {
		t.Errorf("overlapping job consumer: %v (%q), want Conflict saying each job subject has one consumer", err, errs.Detail(err))
	}
	// Other job subjects have their own consumer.
	mails := newRecorder()
	if err := cli.Subscribe(ctx, "mails", []string{bus.JobSubjectPrefix + "email"}, mails.handle); err != nil {
		t.Fatalf("consumer of other job subjects: %v", err)
	}
	publish(t, cli, bus.JobSubjectPrefix+"email", "e-1", 1)
	mails.has(t, 1)
}

// TestReplayReachesConsumersOfEveryStream: a dead letter of a consumer of
// the analytics stream, and one of a job consumer, are replayed to that
// consumer in its own stream.
func TestReplayReachesConsumersOfEveryStream(t *testing.T) {
	t.Parallel()
	b := testenv.Bus(t)
	ctx := context.Background()
	var mu sync.Mutex
	fixed := false
	isFixed := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return fixed
	}
	counts, other := newCounter(), newCounter()
	flaky := func(ctx context.Context, ev bus.Event) error {
		counts.add(ev.ID)
		if !isFixed() {
			return bus.Permanent(errors.New("not yet"))
		}
		return nil
	}
	const viewed = "globo_analytics.page_viewed"
	const job = bus.JobSubjectPrefix + "email"
	if err := b.Subscribe(ctx, "counter", []string{viewed}, flaky); err != nil {
		t.Fatal(err)
	}
	if err := b.Subscribe(ctx, "tally", []string{"globo_analytics.>"}, func(ctx context.Context, ev bus.Event) error {
		other.add(ev.ID)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := b.Subscribe(ctx, "mailer", []string{job}, flaky); err != nil {
		t.Fatal(err)
	}
	publish(t, b, viewed, "v-1", 1)
	publish(t, b, job, "e-1", 2)
	dls := deadLetters(t, b, bus.DeadLetterFilter{}, 2)
	mu.Lock()
	fixed = true
	mu.Unlock()
	want := map[string]struct{ stream, subject string }{
		"counter": {bus.AnalyticsStreamName, "globo_analytics._redeliver.counter." + viewed},
		"mailer":  {bus.JobsStreamName, job},
	}
	for _, dl := range dls {
		w := want[dl.Consumer]
		if dl.Stream != w.stream {
			t.Errorf("dead letter of %s: stream %q, want %q", dl.Consumer, dl.Stream, w.stream)
		}
		r, err := b.Replay(ctx, dl.ID, bus.ReplayOptions{})
		if err != nil {
			t.Fatalf("replay of %s's dead letter: %v", dl.Consumer, err)
		}
		if r.Subject != w.subject || r.Subject != bus.RedeliverySubject(dl.Consumer, dl.Subject) {
			t.Errorf("%s's dead letter replayed to %s, want %s", dl.Consumer, r.Subject, w.subject)
		}
	}
	testenv.CheckFor(t, wait, func() error {
		if counts.get("v-1") != 2 || counts.get("e-1") != 2 {
			return fmt.Errorf("v-1 handled %d times, e-1 %d times; want 2 each", counts.get("v-1"), counts.get("e-1"))
		}
		return nil
	})
	if left, err := b.DeadLetters(ctx, bus.DeadLetterFilter{}); err != nil || len(left) != 0 {
		t.Errorf("after the replays: %d dead letters (%v), want none", len(left), err)
	}
	// The other analytics consumer did not get the replay: a marker
	// published after it arrives after it would have.
	publish(t, b, viewed, "marker", 3)
	testenv.CheckFor(t, wait, func() error {
		if other.get("marker") == 0 {
			return errors.New("marker not handled yet")
		}
		return nil
	})
	if n := other.get("v-1"); n != 1 {
		t.Errorf("the other analytics consumer handled v-1 %d times, want once", n)
	}
}

// TestConcurrencyHandlesMessagesAtOnce: with Concurrency(4) one instance
// has four messages in its handler at the same time (each blocks until the
// fourth arrives), and still handles each message once.
func TestConcurrencyHandlesMessagesAtOnce(t *testing.T) {
	t.Parallel()
	srv, _ := embedded(t, t.TempDir())
	ctx := context.Background()
	const subject = bus.JobSubjectPrefix + "concurrency_test"
	const n = 12
	var mu sync.Mutex
	inFlight, most := 0, 0
	seen := map[string]int{}
	all := make(chan struct{})
	err := srv.Subscribe(ctx, "concurrency-test", []string{subject}, func(ctx context.Context, ev bus.Event) error {
		mu.Lock()
		inFlight++
		most = max(most, inFlight)
		seen[ev.ID]++
		if len(seen) == n {
			close(all)
		}
		reached := most >= 4
		mu.Unlock()
		// Hold the message until three others are in handlers too (or give
		// up after a while: the test then fails on most).
		for deadline := time.Now().Add(5 * time.Second); !reached && time.Now().Before(deadline); {
			time.Sleep(5 * time.Millisecond)
			mu.Lock()
			reached = most >= 4
			mu.Unlock()
		}
		mu.Lock()
		inFlight--
		mu.Unlock()
		return nil
	}, bus.Concurrency(4))
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if err := srv.Publish(ctx, subject, fmt.Sprintf("job-%d", i), map[string]int{"i": i}); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-all:
	case <-time.After(30 * time.Second):
		t.Fatal("not every job was handled")
	}
	time.Sleep(200 * time.Millisecond) // a duplicate would arrive by now
	mu.Lock()
	defer mu.Unlock()
	if most < 4 {
		t.Errorf("at most %d messages in handlers at once, want 4", most)
	}
	for id, k := range seen {
		if k != 1 {
			t.Errorf("%s handled %d times", id, k)
		}
	}
}
