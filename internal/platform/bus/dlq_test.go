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
	"github.com/globomantics/globomantics/internal/platform/clock"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

// counter counts a handler's calls per event id.
type counter struct {
	mu sync.Mutex
	n  map[string]int
}

func newCounter() *counter { return &counter{n: map[string]int{}} }

func (c *counter) add(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n[id]++
	return c.n[id]
}

func (c *counter) get(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[id]
}

// deadLetters waits until the filter selects n dead letters and returns them.
func deadLetters(t *testing.T, b *bus.Bus, f bus.DeadLetterFilter, n int) []bus.DeadLetter {
	t.Helper()
	var got []bus.DeadLetter
	testenv.CheckFor(t, wait, func() error {
		var err error
		got, err = b.DeadLetters(context.Background(), f)
		if err != nil {
			return err
		}
		if len(got) != n {
			return fmt.Errorf("%d dead letters, want %d", len(got), n)
		}
		return nil
	})
	return got
}

// TestPoisonMessageIsDeadLettered: a message whose handler always fails is
// offered the subscription's number of times, then kept as a dead letter
// with what an operator needs to know, with its original headers and data,
// and not offered again.
func TestPoisonMessageIsDeadLettered(t *testing.T) {
	t.Parallel()
	failedAt := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	b, err := bus.Open(context.Background(), bus.Options{StoreDir: t.TempDir(), Name: t.Name(), Log: testenv.Logger(t), Clock: clock.NewFake(failedAt)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	ctx := context.Background()
	calls := newCounter()
	err = b.Subscribe(ctx, "poison", []string{"globo.poison"}, func(ctx context.Context, ev bus.Event) error {
		calls.add(ev.ID)
		return errors.New("smtp server said 451\nsecond line")
	}, bus.MaxDeliveries(3))
	if err != nil {
		t.Fatal(err)
	}
	const tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	occurred := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if errs := b.PublishBatch(ctx, []bus.Message{{Subject: "globo.poison", ID: "p-1", Data: []byte(`{"n":1}`), OccurredAt: occurred, Traceparent: tp}}); errs[0] != nil {
		t.Fatal(errs[0])
	}
	dl := deadLetters(t, b, bus.DeadLetterFilter{}, 1)[0]
	if n := calls.get("p-1"); n != 3 {
		t.Errorf("handler called %d times, want 3", n)
	}
	if dl.Consumer != "poison" || dl.Subject != "globo.poison" || dl.MsgID != "p-1" || dl.Deliveries != 3 || dl.Permanent {
		t.Errorf("dead letter %+v: want consumer poison, subject globo.poison, msg id p-1, 3 deliveries, not permanent", dl)
	}
	if dl.Error != "smtp server said 451 | second line" {
		t.Errorf("error %q: want the handler's error on one line", dl.Error)
	}
	if !dl.FailedAt.Equal(failedAt) {
		t.Errorf("failed at %v, want the clock's %v", dl.FailedAt, failedAt)
	}
	if dl.StreamSeq == 0 {
		t.Error("no original stream sequence")
	}
	if got := dl.Header.Get(bus.HeaderTraceparent); got != tp {
		t.Errorf("traceparent header %q, want %q", got, tp)
	}
	if got := dl.Header.Get(bus.HeaderOccurredAt); got != occurred.Format(time.RFC3339Nano) {
		t.Errorf("occurred-at header %q", got)
	}
	if !strings.Contains(string(dl.Data), `"id":"p-1"`) || !strings.Contains(string(dl.Data), `"n":1`) {
		t.Errorf("data %s: want the original envelope", dl.Data)
	}
	// Show by ID gives the same dead letter.
	one, err := b.GetDeadLetter(ctx, dl.ID)
	if err != nil || one.MsgID != "p-1" || one.Error != dl.Error {
		t.Errorf("GetDeadLetter(%d) = %+v, %v", dl.ID, one, err)
	}
	if _, err := b.GetDeadLetter(ctx, dl.ID+100); !errs.Is(errs.NotFound, err) {
		t.Errorf("GetDeadLetter of an unknown id: %v, want NotFound", err)
	}
	// The original was acked for good: a later message on the same
	// consumer is handled, and the poison one is not offered a 4th time
	// (its next back-off step, 2 s, has passed by the time this returns).
	testenv.CheckFor(t, wait, func() error {
		if calls.get("p-2") == 0 {
			publish(t, b, "globo.poison", "p-2", 2)
			return errors.New("p-2 not handled yet")
		}
		return nil
	})
	deadLetters(t, b, bus.DeadLetterFilter{Subject: "globo.poison"}, 2)
	if n := calls.get("p-1"); n != 3 {
		t.Errorf("p-1 handled %d times after being dead-lettered, want 3", n)
	}
}

// TestPermanentErrorIsDeadLetteredAtOnce: a Permanent error, an error of
// kind Invalid and a message that is not an event at all are dead letters on
// their first delivery; nothing crashes.
func TestPermanentErrorIsDeadLetteredAtOnce(t *testing.T) {
	t.Parallel()
	b, addr := embedded(t, t.TempDir())
	ctx := context.Background()
	calls := newCounter()
	err := b.Subscribe(ctx, "strict", []string{"globo.strict.>"}, func(ctx context.Context, ev bus.Event) error {
		calls.add(ev.ID)
		switch ev.Type {
		case "globo.strict.wrapped":
			return bus.Permanent(errors.New(`schema: "sku" is required`))
		case "globo.strict.invalid":
			return errs.E("catalog.HandleEvent", errs.Invalid, errs.Msg("price must be positive"))
		case "globo.strict.panic":
			panic("nil map")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	publish(t, b, "globo.strict.wrapped", "w-1", 1)
	publish(t, b, "globo.strict.invalid", "i-1", 1)
	nc, err := nats.Connect("nats://" + addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if _, err := js.Publish(ctx, "globo.strict.garbage", []byte("not json"), jetstream.WithMsgID("g-1")); err != nil {
		t.Fatal(err)
	}
	got := deadLetters(t, b, bus.DeadLetterFilter{Consumer: "strict"}, 3)
	want := map[string]string{
		"globo.strict.wrapped": `schema: "sku" is required`,
		"globo.strict.invalid": "price must be positive",
		"globo.strict.garbage": "undecodable message",
	}
	for _, d := range got {
		if !d.Permanent || d.Deliveries != 1 || !strings.Contains(d.Error, want[d.Subject]) {
			t.Errorf("dead letter %s: permanent %v, %d deliveries, error %q; want permanent, 1 delivery, error with %q",
				d.Subject, d.Permanent, d.Deliveries, d.Error, want[d.Subject])
		}
	}
	if calls.get("w-1") != 1 || calls.get("i-1") != 1 {
		t.Errorf("handler calls: wrapped %d, invalid %d; want 1 each", calls.get("w-1"), calls.get("i-1"))
	}
	// Panics are ordinary failures: retried, then dead-lettered (after
	// MaxDeliver here, so only the first retry is checked).
	publish(t, b, "globo.strict.panic", "x-1", 1)
	testenv.CheckFor(t, wait, func() error {
		if n := calls.get("x-1"); n < 2 {
			return fmt.Errorf("panicking handler called %d times, want a retry", n)
		}
		return nil
	})
}

// TestReplayAfterFix: a dead letter replayed once its consumer is fixed
// reaches that consumer again (with its original subject and id) and is
// removed; the other consumers of the subject do not see it a second time,
// unless the replay goes to the original subject.
func TestReplayAfterFix(t *testing.T) {
	t.Parallel()
	b := testenv.Bus(t)
	ctx := context.Background()
	var mu sync.Mutex
	fixed := false
	failing, other, wild := newCounter(), newCounter(), newCounter()
	var replayed bus.Event
	err := b.Subscribe(ctx, "mailer", []string{"globo.order.placed"}, func(ctx context.Context, ev bus.Event) error {
		mu.Lock()
		defer mu.Unlock()
		failing.add(ev.ID)
		if !fixed {
			return errors.New("template missing")
		}
		replayed = ev
		return nil
	}, bus.MaxDeliveries(2))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Subscribe(ctx, "indexer", []string{"globo.order.placed"}, func(ctx context.Context, ev bus.Event) error {
		other.add(ev.ID)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// A consumer of everything must not take other consumers' replays.
	if err := b.Subscribe(ctx, "audit", []string{"globo.>"}, func(ctx context.Context, ev bus.Event) error {
		wild.add(ev.ID)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	publish(t, b, "globo.order.placed", "o-1", 1)
	dl := deadLetters(t, b, bus.DeadLetterFilter{Consumer: "mailer"}, 1)[0]
	if failing.get("o-1") != 2 {
		t.Fatalf("failing consumer called %d times, want 2", failing.get("o-1"))
	}

	mu.Lock()
	fixed = true
	mu.Unlock()
	r, err := b.Replay(ctx, dl.ID, bus.ReplayOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Subject != bus.RedeliverySubject("mailer", "globo.order.placed") || r.MsgID != fmt.Sprintf("o-1/replay-%d", dl.ID) {
		t.Errorf("replayed to %s as %s", r.Subject, r.MsgID)
	}
	testenv.CheckFor(t, wait, func() error {
		if n := failing.get("o-1"); n != 3 {
			return fmt.Errorf("fixed consumer called %d times, want 3", n)
		}
		return nil
	})
	mu.Lock()
	if replayed.ID != "o-1" || replayed.Type != "globo.order.placed" {
		t.Errorf("replayed event %+v: want id o-1 on globo.order.placed", replayed)
	}
	mu.Unlock()
	if left, err := b.DeadLetters(ctx, bus.DeadLetterFilter{}); err != nil || len(left) != 0 {
		t.Errorf("after replay: %d dead letters (%v), want none", len(left), err)
	}
	if _, err := b.Replay(ctx, dl.ID, bus.ReplayOptions{}); !errs.Is(errs.NotFound, err) {
		t.Errorf("second replay: %v, want NotFound", err)
	}
	// A marker published after the replay reaches the others after the
	// replay would have: neither handled o-1 twice.
	publish(t, b, "globo.order.placed", "marker", 2)
	testenv.CheckFor(t, wait, func() error {
		if other.get("marker") == 0 || wild.get("marker") == 0 {
			return errors.New("marker not handled yet")
		}
		return nil
	})
	if other.get("o-1") != 1 || wild.get("o-1") != 1 {
		t.Errorf("other consumers handled o-1 %d and %d times, want once each", other.get("o-1"), wild.get("o-1"))
	}

	// Replaying to the original subject reaches every consumer.
	mu.Lock()
	fixed = false
	mu.Unlock()
	publish(t, b, "globo.order.placed", "o-2", 3)
	dl = deadLetters(t, b, bus.DeadLetterFilter{}, 1)[0]
	mu.Lock()
	fixed = true
	mu.Unlock()
	if _, err := b.Replay(ctx, dl.ID, bus.ReplayOptions{ToOriginal: true}); err != nil {
		t.Fatal(err)
	}
	testenv.CheckFor(t, wait, func() error {
		if failing.get("o-2") != 3 || other.get("o-2") != 2 || wild.get("o-2") != 2 {
			return fmt.Errorf("o-2 handled %d, %d, %d times; want 3, 2, 2", failing.get("o-2"), other.get("o-2"), wild.get("o-2"))
		}
		return nil
	})
}

// TestReplayToGoneConsumer: a replay to a consumer that no longer exists is
// refused (the message would sit unread) and the dead letter is kept.
func TestReplayToGoneConsumer(t *testing.T) {
	t.Parallel()
	b, addr := embedded(t, t.TempDir())
	ctx := context.Background()
	if err := b.Subscribe(ctx, "gone", []string{"globo.gone"}, func(ctx context.Context, ev bus.Event) error {
		return bus.Permanent(errors.New("no"))
	}); err != nil {
		t.Fatal(err)
	}
	publish(t, b, "globo.gone", "g-1", 1)
	dl := deadLetters(t, b, bus.DeadLetterFilter{}, 1)[0]
	nc, err := nats.Connect("nats://" + addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if err := js.DeleteConsumer(ctx, bus.StreamName, "gone"); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Replay(ctx, dl.ID, bus.ReplayOptions{}); !errs.Is(errs.NotFound, err) || !strings.Contains(errs.Detail(err), "--original") {
		t.Errorf("replay to a deleted consumer: %v (%q), want NotFound suggesting --original", err, errs.Detail(err))
	}
	deadLetters(t, b, bus.DeadLetterFilter{}, 1)

	// The dead-letter stream keeps its messages on disk for 30 days.
	st, err := js.Stream(ctx, bus.DLQStreamName)
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	if cfg.Storage != jetstream.FileStorage || cfg.MaxAge != bus.DLQMaxAge || cfg.PersistMode == jetstream.AsyncPersistMode {
		t.Errorf("%s: storage %v, max age %v, persist mode %v", bus.DLQStreamName, cfg.Storage, cfg.MaxAge, cfg.PersistMode)
	}
}
