package bus_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/globomantics/globomantics/internal/platform/bus"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

// wait bounds every condition a test waits for; reached only on failure.
const wait = 20 * time.Second

type payload struct {
	N    int    `json:"n"`
	Note string `json:"note"`
}

// recorder is a handler that records the events it handled successfully.
type recorder struct {
	mu     sync.Mutex
	events []bus.Event
	count  map[string]int // successful handlings per event id
}

func newRecorder() *recorder { return &recorder{count: map[string]int{}} }

func (r *recorder) handle(ctx context.Context, ev bus.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, ev)
	r.count[ev.ID]++
	return nil
}

func (r *recorder) n() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.events)
}

func (r *recorder) times(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.count[id]
}

// has waits until the recorder saw at least n events.
func (r *recorder) has(t *testing.T, n int) {
	t.Helper()
	testenv.CheckFor(t, wait, func() error {
		if got := r.n(); got < n {
			return fmt.Errorf("%d of %d events handled", got, n)
		}
		return nil
	})
}

// embedded starts an embedded broker listening on a free port.
func embedded(t *testing.T, dir string) (*bus.Bus, string) {
	t.Helper()
	addr := testenv.FreeAddr(t)
	b, err := bus.Open(context.Background(), bus.Options{StoreDir: dir, ListenAddr: addr, Name: "server", Log: testenv.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b, addr
}

// remote connects a second Bus to the broker at addr.
func remote(t *testing.T, addr string) *bus.Bus {
	t.Helper()
	b, err := bus.Open(context.Background(), bus.Options{URL: "nats://" + addr, Name: "client", Log: testenv.Logger(t), ConnectTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func publish(t *testing.T, b *bus.Bus, subject, id string, n int) {
	t.Helper()
	if err := b.Publish(context.Background(), subject, id, payload{N: n, Note: "hi"}); err != nil {
		t.Fatalf("publish %s: %v", id, err)
	}
}

// setups are the two ways of reaching a broker: the in-process one of
// testenv.Bus, and a client connecting by URL to a listening embedded server.
var setups = []struct {
	name string
	open func(t *testing.T) (pub, sub1, sub2 *bus.Bus)
}{
	{"in-process", func(t *testing.T) (*bus.Bus, *bus.Bus, *bus.Bus) {
		b := testenv.Bus(t)
		return b, b, b
	}},
	{"network", func(t *testing.T) (*bus.Bus, *bus.Bus, *bus.Bus) {
		srv, addr := embedded(t, t.TempDir())
		c := remote(t, addr)
		return c, srv, c
	}},
}

func TestPublishSubscribe(t *testing.T) {
	for _, s := range setups {
		t.Run(s.name, func(t *testing.T) {
			pub, sub, _ := s.open(t)
			ctx := context.Background()
			rec := newRecorder()
			if err := sub.Subscribe(ctx, "orders-test", []string{"globo.order.created"}, rec.handle); err != nil {
				t.Fatal(err)
			}
			publish(t, pub, "globo.order.other", "o-0", 0) // not subscribed to
			for i := 1; i <= 3; i++ {
				publish(t, pub, "globo.order.created", fmt.Sprintf("o-%d", i), i)
			}
			rec.has(t, 3)
			rec.mu.Lock()
			defer rec.mu.Unlock()
			for i, ev := range rec.events {
				var p payload
				if err := ev.Decode(&p); err != nil {
					t.Fatal(err)
				}
				if ev.ID != fmt.Sprintf("o-%d", i+1) || ev.Type != "globo.order.created" || p != (payload{N: i + 1, Note: "hi"}) || ev.Time.IsZero() {
					t.Errorf("event %d = %+v (%+v)", i, ev, p)
				}
			}
			if rec.count["o-0"] != 0 {
				t.Error("an event on another subject was delivered")
			}
		})
	}
}

func TestPublishDeduplicatesByID(t *testing.T) {
	for _, s := range setups {
		t.Run(s.name, func(t *testing.T) {
			pub, sub, _ := s.open(t)
			ctx := context.Background()
			publish(t, pub, "globo.dedup", "same", 1)
			publish(t, pub, "globo.dedup", "same", 2) // a relay's retry
			publish(t, pub, "globo.dedup", "last", 3)
			rec := newRecorder()
			if err := sub.Subscribe(ctx, "dedup", []string{"globo.dedup"}, rec.handle); err != nil {
				t.Fatal(err)
			}
			// Messages arrive in order: once "last" is handled, a duplicate
			// of "same" would have been too.
			testenv.CheckFor(t, wait, func() error {
				if rec.times("last") == 0 {
					return errors.New(`"last" not handled yet`)
				}
				return nil
			})
			if n := rec.times("same"); n != 1 {
				t.Fatalf(`"same" handled %d times, want 1`, n)
			}
			var p payload
			rec.mu.Lock()
			_ = rec.events[0].Decode(&p)
			rec.mu.Unlock()
			if p.N != 1 {
				t.Errorf("the kept copy is %+v, want the first one", p)
			}
		})
	}
}

func TestSameNameSharesMessages(t *testing.T) {
	for _, s := range setups {
		t.Run(s.name, func(t *testing.T) {
			pub, sub1, sub2 := s.open(t)
			ctx := context.Background()
			r1, r2 := newRecorder(), newRecorder()
			if err := sub1.Subscribe(ctx, "mailer", []string{"globo.mail.>"}, r1.handle); err != nil {
				t.Fatal(err)
			}
			if err := sub2.Subscribe(ctx, "mailer", []string{"globo.mail.>"}, r2.handle); err != nil {
				t.Fatal(err)
			}
			const total = 200
			for i := 0; i < total; i++ {
				publish(t, pub, "globo.mail.send", fmt.Sprintf("m-%d", i), i)
			}
			testenv.CheckFor(t, wait, func() error {
				if got := r1.n() + r2.n(); got < total {
					return fmt.Errorf("%d of %d handled", got, total)
				}
				return nil
			})
			// Let any wrongly duplicated delivery show up: a marker published
			// last is handled after everything before it on its instance.
			publish(t, pub, "globo.mail.send", "marker-1", -1)
			publish(t, pub, "globo.mail.send", "marker-2", -1)
			testenv.CheckFor(t, wait, func() error {
				if r1.times("marker-1")+r1.times("marker-2")+r2.times("marker-1")+r2.times("marker-2") < 2 {
					return errors.New("markers not handled")
				}
				return nil
			})
			for i := 0; i < total; i++ {
				id := fmt.Sprintf("m-%d", i)
				if n := r1.times(id) + r2.times(id); n != 1 {
					t.Errorf("%s handled %d times in total, want 1", id, n)
				}
			}
			if r1.n() == 0 || r2.n() == 0 {
				t.Errorf("one instance did all the work: %d and %d", r1.n(), r2.n())
			}
		})
	}
}

func TestDifferentNamesEachGetEverything(t *testing.T) {
	for _, s := range setups {
		t.Run(s.name, func(t *testing.T) {
			pub, sub1, sub2 := s.open(t)
			ctx := context.Background()
			search, shipping := newRecorder(), newRecorder()
			if err := sub1.Subscribe(ctx, "search", []string{"globo.catalog.>"}, search.handle); err != nil {
				t.Fatal(err)
			}
			if err := sub2.Subscribe(ctx, "shipping", []string{"globo.catalog.>", "globo.order.>"}, shipping.handle); err != nil {
				t.Fatal(err)
			}
			const total = 20
			for i := 0; i < total; i++ {
				publish(t, pub, "globo.catalog.changed", fmt.Sprintf("c-%d", i), i)
			}
			publish(t, pub, "globo.order.paid", "o-1", 1)
			search.has(t, total)
			shipping.has(t, total+1)
			for i := 0; i < total; i++ {
				id := fmt.Sprintf("c-%d", i)
				if search.times(id) != 1 || shipping.times(id) != 1 {
					t.Errorf("%s: search %d, shipping %d, want 1 each", id, search.times(id), shipping.times(id))
				}
			}
			if search.times("o-1") != 0 || shipping.times("o-1") != 1 {
				t.Errorf("o-1: search %d, shipping %d; want 0 and 1", search.times("o-1"), shipping.times("o-1"))
			}
		})
	}
}

func TestHandlerErrorRedelivers(t *testing.T) {
	t.Parallel()
	b := testenv.Bus(t)
	ctx := context.Background()
	var mu sync.Mutex
	attempts := map[string]int{}
	rec := newRecorder()
	err := b.Subscribe(ctx, "flaky", []string{"globo.flaky"}, func(ctx context.Context, ev bus.Event) error {
		mu.Lock()
		attempts[ev.ID]++
		n := attempts[ev.ID]
		mu.Unlock()
		if n < 3 {
			return fmt.Errorf("transient failure %d", n)
		}
		return rec.handle(ctx, ev)
	})
	if err != nil {
		t.Fatal(err)
	}
	publish(t, b, "globo.flaky", "f-1", 1)
	publish(t, b, "globo.flaky", "f-2", 2)
	rec.has(t, 2)
	mu.Lock()
	defer mu.Unlock()
	for _, id := range []string{"f-1", "f-2"} {
		if attempts[id] != 3 || rec.times(id) != 1 {
			t.Errorf("%s: %d attempts, %d successes; want 3 and 1", id, attempts[id], rec.times(id))
		}
	}
}

// TestHandlerErrorBacksOff checks that a failed message is not offered again
// at once: a dependency that is down for a moment must not burn through
// MaxDeliver attempts in a few milliseconds.
func TestHandlerErrorBacksOff(t *testing.T) {
	t.Parallel()
	b := testenv.Bus(t)
	var mu sync.Mutex
	var at []time.Time
	done := make(chan struct{})
	err := b.Subscribe(context.Background(), "backoff", []string{"globo.backoff"}, func(ctx context.Context, ev bus.Event) error {
		mu.Lock()
		defer mu.Unlock()
		at = append(at, time.Now())
		if len(at) < 3 {
			return errors.New("dependency down")
		}
		close(done)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	publish(t, b, "globo.backoff", "b-1", 1)
	select {
	case <-done:
	case <-time.After(wait):
		t.Fatal("message not redelivered")
	}
	mu.Lock()
	defer mu.Unlock()
	// The first retry waits at least the first back-off step (200 ms); a
	// lower bound only, so a slow machine cannot make this fail.
	if gap := at[1].Sub(at[0]); gap < 150*time.Millisecond {
		t.Errorf("first redelivery after %v: no back-off", gap)
	}
}

// TestSlowHandlerIsNotRedelivered checks that a message whose handler is
// still running is not offered again (to this or another instance) while
// it runs.
func TestSlowHandlerIsNotRedelivered(t *testing.T) {
	t.Parallel()
	b := testenv.Bus(t)
	rec := newRecorder()
	err := b.Subscribe(context.Background(), "slow", []string{"globo.slow"}, func(ctx context.Context, ev bus.Event) error {
		if ev.ID == "slow" {
			// Simulated slow work (resizing a large image, calling a slow
			// peer): longer than any redelivery back-off step.
			time.Sleep(1500 * time.Millisecond)
		}
		return rec.handle(ctx, ev)
	})
	if err != nil {
		t.Fatal(err)
	}
	publish(t, b, "globo.slow", "slow", 1)
	rec.has(t, 1)
	// A premature redelivery would have been queued before this marker.
	publish(t, b, "globo.slow", "marker", 2)
	testenv.CheckFor(t, wait, func() error {
		if rec.times("marker") == 0 {
			return errors.New("marker not handled")
		}
		return nil
	})
	if n := rec.times("slow"); n != 1 {
		t.Fatalf("slow message handled %d times, want 1", n)
	}
}

func TestMessagesPersistUntilSubscribed(t *testing.T) {
	b := testenv.Bus(t)
	for i := 0; i < 5; i++ {
		publish(t, b, "globo.early", fmt.Sprintf("e-%d", i), i)
	}
	rec := newRecorder()
	if err := b.Subscribe(context.Background(), "late", []string{"globo.early"}, rec.handle); err != nil {
		t.Fatal(err)
	}
	rec.has(t, 5)
}

func TestMessagesSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	open := func() *bus.Bus {
		t.Helper()
		b, err := bus.Open(ctx, bus.Options{StoreDir: dir, Name: "restart", Log: testenv.Logger(t)})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	b := open()
	rec := newRecorder()
	if err := b.Subscribe(ctx, "worker", []string{"globo.job"}, rec.handle); err != nil {
		t.Fatal(err)
	}
	publish(t, b, "globo.job", "j-1", 1)
	publish(t, b, "globo.job", "j-2", 2)
	rec.has(t, 2)
	b.Drain(context.Background())
	publish(t, b, "globo.job", "j-3", 3) // not yet handled when the broker stops
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	b = open()
	defer b.Close()
	after := newRecorder()
	if err := b.Subscribe(ctx, "worker", []string{"globo.job"}, after.handle); err != nil {
		t.Fatal(err)
	}
	fresh := newRecorder()
	if err := b.Subscribe(ctx, "auditor", []string{"globo.job"}, fresh.handle); err != nil {
		t.Fatal(err)
	}
	after.has(t, 1)
	fresh.has(t, 3) // a new consumer reads the whole stored stream
	publish(t, b, "globo.job", "j-4", 4)
	after.has(t, 2)
	// The durable consumer remembered its acknowledgements: it resumes with
	// j-3 and never sees j-1 or j-2 again.
	if after.times("j-1")+after.times("j-2") != 0 || after.times("j-3") != 1 || after.times("j-4") != 1 {
		t.Errorf("after restart the worker handled %v", after.count)
	}
	// De-duplication state survives too.
	publish(t, b, "globo.job", "j-1", 1)
	publish(t, b, "globo.job", "j-5", 5)
	fresh.has(t, 5)
	if fresh.times("j-1") != 1 {
		t.Errorf("a re-published j-1 was delivered again after restart: %v", fresh.count)
	}
}

func TestDrainWaitsForInFlightHandler(t *testing.T) {
	b := testenv.Bus(t)
	started := make(chan struct{})
	release := make(chan struct{})
	var finished atomic.Bool
	err := b.Subscribe(context.Background(), "drain", []string{"globo.drain"}, func(ctx context.Context, ev bus.Event) error {
		close(started)
		<-release
		finished.Store(true)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	publish(t, b, "globo.drain", "d-1", 1)
	<-started

	drained := make(chan bool, 1)
	go func() {
		b.Drain(context.Background())
		drained <- finished.Load()
	}()
	select {
	case <-drained:
		t.Fatal("Drain returned while a handler was still running")
	case <-time.After(300 * time.Millisecond):
	}
	close(release)
	select {
	case ok := <-drained:
		if !ok {
			t.Fatal("Drain returned before the handler finished")
		}
	case <-time.After(wait):
		t.Fatal("Drain did not return after the handler finished")
	}
	// The connection stays open for publishing after Drain.
	publish(t, b, "globo.drain", "d-2", 2)
	if err := b.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestOpenUnreachableFails(t *testing.T) {
	addr := testenv.FreeAddr(t) // nothing listens there
	done := make(chan error, 1)
	go func() {
		b, err := bus.Open(context.Background(), bus.Options{URL: "nats://" + addr, ConnectTimeout: 500 * time.Millisecond, Log: testenv.Logger(t)})
		if b != nil {
			b.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Open of an unreachable broker succeeded")
		}
	case <-time.After(wait):
		t.Fatal("Open of an unreachable broker hangs")
	}

	// A cancelled context ends the retries too, whatever the ConnectTimeout.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := bus.Open(ctx, bus.Options{URL: "nats://" + addr, ConnectTimeout: time.Hour, Log: testenv.Logger(t)}); err == nil {
		t.Fatal("Open with a cancelled context succeeded")
	}
}

func TestOpenWaitsForBrokerToStart(t *testing.T) {
	addr := testenv.FreeAddr(t)
	type result struct {
		b   *bus.Bus
		err error
	}
	done := make(chan result, 1)
	retrying := &signalHandler{msg: "broker not reachable yet, retrying", ch: make(chan struct{})}
	go func() {
		b, err := bus.Open(context.Background(), bus.Options{URL: "nats://" + addr, Name: "early", ConnectTimeout: wait, Log: slog.New(retrying)})
		done <- result{b, err}
	}()
	// Start the server only once the client has failed to reach it.
	select {
	case <-retrying.ch:
	case r := <-done:
		t.Fatalf("Open returned before the broker existed: %v", r.err)
	}
	srv, err := bus.Open(context.Background(), bus.Options{StoreDir: t.TempDir(), ListenAddr: addr, Log: testenv.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	r := <-done
	if r.err != nil {
		t.Fatalf("Open before the broker started: %v", r.err)
	}
	defer r.b.Close()
	rec := newRecorder()
	if err := srv.Subscribe(context.Background(), "x", []string{"globo.early"}, rec.handle); err != nil {
		t.Fatal(err)
	}
	publish(t, r.b, "globo.early", "e-1", 1)
	rec.has(t, 1)
}

// signalHandler is a slog handler that closes ch when msg is first logged.
type signalHandler struct {
	msg  string
	ch   chan struct{}
	once sync.Once
}

func (h *signalHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *signalHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *signalHandler) WithGroup(string) slog.Handler            { return h }
func (h *signalHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.once.Do(func() { close(h.ch) })
	}
	return nil
}

func TestPingAndClientURL(t *testing.T) {
	b := testenv.Bus(t)
	if u := b.ClientURL(); u != "" {
		t.Errorf("in-process broker ClientURL = %q, want empty", u)
	}
	srv, addr := embedded(t, t.TempDir())
	if u := srv.ClientURL(); u != "nats://"+addr {
		t.Errorf("ClientURL = %q, want nats://%s", u, addr)
	}
	c := remote(t, addr)
	if err := c.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if err := c.Ping(context.Background()); !errs.Is(errs.Unavailable, err) {
		t.Errorf("Ping after Close = %v, want Unavailable", err)
	}
}

func TestPublishErrors(t *testing.T) {
	b := testenv.Bus(t)
	ctx := context.Background()
	if err := b.Publish(ctx, "globo.x", "id", func() {}); err == nil || errs.KindOf(err) != errs.Other {
		t.Errorf("unmarshalable data: %v", err)
	}
	// A subject outside the stream has no one to store it.
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := b.Publish(sctx, "elsewhere.x", "id2", 1); !errs.Is(errs.Unavailable, err) {
		t.Errorf("subject outside the stream: %v, want Unavailable", err)
	}
}

// TestForgetAfterDeletesIdleConsumer: a per-instance consumer nobody reads
// any more is deleted by the broker; one that is still read is kept.
func TestForgetAfterDeletesIdleConsumer(t *testing.T) {
	srv, addr := embedded(t, t.TempDir())
	nc, err := nats.Connect("nats://" + addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	exists := func(name string) bool {
		_, err := js.Consumer(context.Background(), bus.StreamName, name)
		return err == nil
	}
	gone := remote(t, addr)
	if err := gone.Subscribe(context.Background(), "instance-gone", []string{"globo.test.>"}, newRecorder().handle, bus.ForgetAfter(time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := srv.Subscribe(context.Background(), "instance-alive", []string{"globo.test.>"}, newRecorder().handle, bus.ForgetAfter(time.Second)); err != nil {
		t.Fatal(err)
	}
	if !exists("instance-gone") || !exists("instance-alive") {
		t.Fatal("consumers were not created")
	}
	gone.Close() // the instance goes away for good
	testenv.CheckFor(t, wait, func() error {
		if exists("instance-gone") {
			return errors.New("idle consumer still there")
		}
		return nil
	})
	if !exists("instance-alive") {
		t.Error("a consumer still being read was deleted")
	}
}

// TestDrainHasOneBudget: Drain waits for in-flight handlers only until its
// context is done, however many subscriptions are stuck, so that a shutdown
// keeps to its deadline; the unfinished messages are redelivered later.
func TestDrainHasOneBudget(t *testing.T) {
	b := testenv.Bus(t)
	release := make(chan struct{})
	defer close(release)
	var started sync.WaitGroup
	for _, name := range []string{"stuck1", "stuck2", "stuck3"} {
		started.Add(1)
		var once sync.Once
		err := b.Subscribe(context.Background(), name, []string{"globo.stuck"}, func(ctx context.Context, ev bus.Event) error {
			once.Do(started.Done)
			<-release
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	publish(t, b, "globo.stuck", "s-1", 1)
	started.Wait()

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	drained := make(chan struct{})
	go func() {
		b.Drain(ctx)
		close(drained)
	}()
	select {
	case <-drained:
	case <-time.After(5 * time.Second): // the old per-subscription 8 s waits took 24 s here
		t.Fatal("Drain kept waiting for stuck handlers after its context was done")
	}
}

// TestHandlerPanicIsAFailure: a handler that panics on a poison message must
// not take the whole process (and its HTTP server) down, on every instance
// it is redelivered to: the panic counts as a failed attempt.
func TestHandlerPanicIsAFailure(t *testing.T) {
	t.Parallel()
	b := testenv.Bus(t)
	var attempts atomic.Int32
	rec := newRecorder()
	err := b.Subscribe(context.Background(), "panicky", []string{"globo.panicky"}, func(ctx context.Context, ev bus.Event) error {
		if attempts.Add(1) == 1 {
			panic("poison")
		}
		return rec.handle(ctx, ev)
	})
	if err != nil {
		t.Fatal(err)
	}
	publish(t, b, "globo.panicky", "p-1", 1)
	rec.has(t, 1)
	if n := attempts.Load(); n != 2 {
		t.Errorf("%d attempts, want 2", n)
	}
}

// TestBacklogIsNotRedelivered: with a backlog, messages must not sit in the
// client's buffer while their ack wait runs out: the broker would offer them
// again (to this or another instance), so they would be handled twice (a
// second e-mail) and burn delivery attempts without ever failing.
func TestBacklogIsNotRedelivered(t *testing.T) {
	t.Parallel()
	b := testenv.Bus(t)
	const n = 8
	for i := range n {
		publish(t, b, "globo.backlog", fmt.Sprintf("bl-%d", i), i)
	}
	rec := newRecorder()
	err := b.Subscribe(context.Background(), "backlog", []string{"globo.backlog"}, func(ctx context.Context, ev bus.Event) error {
		time.Sleep(300 * time.Millisecond) // n of these take longer than the ack wait
		return rec.handle(ctx, ev)
	}, bus.AckWait(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	rec.has(t, n)
	// A redelivery would be queued behind the backlog: a marker after it.
	publish(t, b, "globo.backlog", "marker", n)
	testenv.CheckFor(t, wait, func() error {
		if rec.times("marker") == 0 {
			return errors.New("marker not handled")
		}
		return nil
	})
	for i := range n {
		if c := rec.times(fmt.Sprintf("bl-%d", i)); c != 1 {
			t.Errorf("bl-%d handled %d times, want 1", i, c)
		}
	}
}

// TestDrainWithBrokerGone: a process whose broker has stopped (it shared
// another process's embedded broker) does not spend its shutdown budget
// waiting for a drain that needs the broker.
func TestDrainWithBrokerGone(t *testing.T) {
	server, addr := embedded(t, t.TempDir())
	client := remote(t, addr)
	if err := client.Subscribe(context.Background(), "gone", []string{"globo.gone"}, func(context.Context, bus.Event) error { return nil }); err != nil {
		t.Fatal(err)
	}
	server.Close()
	testenv.CheckFor(t, wait, func() error {
		if client.Ping(context.Background()) == nil {
			return fmt.Errorf("still connected")
		}
		return nil
	})
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	client.Drain(ctx)
	if took := time.Since(start); took > time.Second {
		t.Fatalf("Drain with the broker gone took %v", took)
	}
}
