package bus_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/globomantics/globomantics/internal/platform/bus"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

// TestReactPushesEveryMessageToEachInstance: two instances reacting with
// consumers of their own each get every message, pushed; a failed one is
// pushed again, a permanent failure becomes a dead letter that a replay
// brings back to that instance only; FromNow skips what was stored before.
func TestReactPushesEveryMessageToEachInstance(t *testing.T) {
	t.Parallel()
	srv, addr := embedded(t, t.TempDir())
	cli := remote(t, addr)
	js := jetStreamAt(t, addr)
	ctx := context.Background()
	const subject = "globo.catalog.product_changed"
	publish(t, srv, subject, "before", 0) // stored before the consumers exist

	r1, r2 := newCounter(), newCounter()
	flaky := func(c *counter) bus.Handler {
		return func(ctx context.Context, ev bus.Event) error {
			n := c.add(ev.ID)
			switch {
			case ev.ID == "flaky" && n == 1:
				return errors.New("try again")
			case ev.ID == "poison" && n == 1:
				return bus.Permanent(errors.New("cannot"))
			}
			return nil
		}
	}
	if err := srv.React(ctx, "cache-1", []string{subject}, flaky(r1), bus.FromNow(), bus.ForgetAfter(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := cli.React(ctx, "cache-2", []string{subject}, flaky(r2), bus.FromNow()); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"cache-1", "cache-2"} {
		c, err := js.PushConsumer(ctx, bus.StreamName, name)
		if err != nil {
			t.Fatal(err)
		}
		if cfg := c.CachedInfo().Config; cfg.DeliverSubject == "" || cfg.AckPolicy != jetstream.AckExplicitPolicy || !cfg.FlowControl {
			t.Errorf("%s: deliver subject %q, ack policy %v, flow control %v; want a push consumer with explicit acks", name, cfg.DeliverSubject, cfg.AckPolicy, cfg.FlowControl)
		}
	}
	const total = 50
	for i := range total {
		publish(t, cli, subject, fmt.Sprintf("p-%d", i), i)
	}
	publish(t, cli, subject, "flaky", 1)
	publish(t, cli, subject, "poison", 2)
	testenv.CheckFor(t, wait, func() error {
		for _, c := range []*counter{r1, r2} {
			for i := range total {
				if c.get(fmt.Sprintf("p-%d", i)) != 1 {
					return fmt.Errorf("p-%d handled %d times", i, c.get(fmt.Sprintf("p-%d", i)))
				}
			}
			if c.get("flaky") != 2 {
				return fmt.Errorf("flaky handled %d times, want 2 (a retry)", c.get("flaky"))
			}
		}
		return nil
	})
	if r1.get("before") != 0 || r2.get("before") != 0 {
		t.Error("FromNow consumers got a message stored before they were made")
	}
	dls := deadLetters(t, srv, bus.DeadLetterFilter{Subject: subject}, 2)
	for _, dl := range dls {
		if dl.Consumer == "cache-1" {
			if _, err := srv.Replay(ctx, dl.ID, bus.ReplayOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	publish(t, cli, subject, "marker", 3)
	testenv.CheckFor(t, wait, func() error {
		if r1.get("poison") != 2 || r2.get("marker") != 1 || r1.get("marker") != 1 {
			return fmt.Errorf("poison replayed %d times to cache-1; marker %d, %d", r1.get("poison"), r1.get("marker"), r2.get("marker"))
		}
		return nil
	})
	if n := r2.get("poison"); n != 1 {
		t.Errorf("cache-2 handled poison %d times: the replay was for cache-1 only", n)
	}

	if err := cli.React(ctx, "jobs", []string{bus.JobSubjectPrefix + "thumbnail"}, flaky(r1)); err == nil {
		t.Error("reacting to jobs: want an error (each job goes to one worker)")
	}
}

// TestRetireFinishesOldBacklog: a retiring subscription of a consumer that
// does not exist creates nothing; one of an old consumer handles what was
// made before the cut-off, acks the rest unhandled, and deletes the
// consumer once nothing is left.
func TestRetireFinishesOldBacklog(t *testing.T) {
	t.Parallel()
	b, addr := embedded(t, t.TempDir())
	js := jetStreamAt(t, addr)
	ctx := context.Background()
	got := newCounter()
	h := func(ctx context.Context, ev bus.Event) error { got.add(ev.ID); return nil }

	if err := b.Subscribe(ctx, "never-was", []string{"globo.legacy.a"}, h, bus.Retire(time.Now())); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Consumer(ctx, bus.StreamName, "never-was"); !errors.Is(err, jetstream.ErrConsumerNotFound) {
		t.Fatalf("a retiring subscription created its consumer: %v", err)
	}

	// The old version's consumer, with a backlog it never handled.
	if _, err := js.CreateConsumer(ctx, bus.StreamName, jetstream.ConsumerConfig{Durable: "old", FilterSubject: "globo.legacy.>",
		AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		publish(t, b, "globo.legacy.a", fmt.Sprintf("old-%d", i), i)
	}
	time.Sleep(10 * time.Millisecond) // the envelopes' times are the wall clock's
	cutoff := time.Now()
	time.Sleep(10 * time.Millisecond)
	publish(t, b, "globo.legacy.a", "new", 9)
	if err := b.Subscribe(ctx, "old", []string{"globo.legacy.>"}, h, bus.Retire(cutoff), bus.RetireCheck(100*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	testenv.CheckFor(t, wait, func() error {
		if _, err := js.Consumer(ctx, bus.StreamName, "old"); !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return fmt.Errorf("old consumer still there (%v)", err)
		}
		return nil
	})
	for i := range 3 {
		if n := got.get(fmt.Sprintf("old-%d", i)); n != 1 {
			t.Errorf("old-%d handled %d times, want 1", i, n)
		}
	}
	if n := got.get("new"); n != 0 {
		t.Errorf("a message made after the cut-off was handled %d times, want 0", n)
	}
}
