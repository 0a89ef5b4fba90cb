package analytics_test

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/analytics"
	"github.com/globomantics/globomantics/internal/analytics/analyticsdb"
	"github.com/globomantics/globomantics/internal/contracts"
	"github.com/globomantics/globomantics/internal/platform/bus"
	"github.com/globomantics/globomantics/internal/platform/clock"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

// TestEndToEnd publishes page views and searches fire-and-forget through a
// real embedded broker (onto the buffered GLOBO_ANALYTICS stream) and
// checks that the analytics consumer, subscribed as the app subscribes it
// (contract-checked), counts each once.
func TestEndToEnd(t *testing.T) {
	ctx := context.Background()
	b := testenv.Bus(t)
	reg, err := contracts.New()
	if err != nil {
		t.Fatal(err)
	}
	st, err := analyticsdb.Open(ctx, testenv.SQLite(t))
	if err != nil {
		t.Fatal(err)
	}
	clk := clock.Real{}
	svc := analytics.NewService(st, clk, testenv.Logger(t))
	if err := b.Subscribe(ctx, analytics.ConsumerName, analytics.Subjects, reg.Handler(svc.Handle)); err != nil {
		t.Fatal(err)
	}
	em := analytics.NewEmitter(b, clk, testenv.Logger(t), analytics.EmitterOptions{})
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { em.Run(rctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	const views = 200
	start := time.Now()
	for i := range views {
		em.PageViewed(fmt.Sprintf("prd_%d", i%4)) // prd_0..3, 50 each
	}
	em.SearchMade("Desk Lamp", 3)
	em.SearchMade("unicorn", 0)
	enqueue := time.Since(start)
	var pop []analytics.ProductViews
	testenv.CheckFor(t, 10*time.Second, func() error {
		pop, err = svc.Popular(ctx, time.Hour, 8)
		if err != nil {
			return err
		}
		var n int64
		for _, p := range pop {
			n += p.Views
		}
		if n != views {
			hint := ""
			if n == 0 && em.Stats().Sent == views+2 {
				hint = "; all were published: does bus.Subscribe consume from the stream that holds the subjects (GLOBO_ANALYTICS), not always from GLOBO?"
			}
			return fmt.Errorf("%d views counted of %d (emitter %+v)%s", n, views, em.Stats(), hint)
		}
		return nil
	})
	t.Logf("%d events enqueued in %v; all counted %v after the first (emitter %+v)", views+2, enqueue, time.Since(start), em.Stats())
	want := []analytics.ProductViews{{ProductID: "prd_0", Views: 50}, {ProductID: "prd_1", Views: 50}, {ProductID: "prd_2", Views: 50}, {ProductID: "prd_3", Views: 50}}
	if !reflect.DeepEqual(pop, want) {
		t.Errorf("Popular = %v, want %v", pop, want)
	}
	testenv.CheckFor(t, 10*time.Second, func() error {
		rep, err := svc.Searches(ctx, time.Hour, 8)
		if err != nil {
			return err
		}
		if w := []analytics.QueryCount{{Query: "unicorn", Searches: 1}}; !reflect.DeepEqual(rep.NoResult, w) || len(rep.Top) != 2 {
			return fmt.Errorf("searches %+v", rep)
		}
		return nil
	})
	if s := em.Stats(); s.Dropped != 0 || s.Failed != 0 || s.Sent != views+2 {
		t.Errorf("emitter stats %+v, want %d sent and nothing lost", s, views+2)
	}
	// The events went to the buffered analytics stream, not to GLOBO.
	for _, s := range bus.Streams() {
		if s.Name == "GLOBO_ANALYTICS" && s.Persistence != bus.Buffered {
			t.Errorf("GLOBO_ANALYTICS is %v, want buffered", s.Persistence)
		}
	}
}

// TestEmitterNeverBlocks checks that with the broker down the emitter's
// calls return at once: its one publisher goroutine is stuck waiting for an
// acknowledgement that never comes, the queue fills, and every further event
// is dropped and counted.
func TestEmitterNeverBlocks(t *testing.T) {
	ctx := context.Background()
	// A broker other processes reach over TCP, and a shop connected to it
	// as to an external broker; then the broker goes away.
	addr := testenv.FreeAddr(t)
	broker, err := bus.Open(ctx, bus.Options{StoreDir: t.TempDir(), ListenAddr: addr, Name: "broker", Log: testenv.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	shop, err := bus.Open(ctx, bus.Options{URL: broker.ClientURL(), Name: "shop", Log: testenv.Logger(t)})
	if err != nil {
		broker.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { shop.Close() })
	broker.Close()
	testenv.CheckFor(t, 5*time.Second, func() error {
		if shop.Ping(ctx) == nil {
			return fmt.Errorf("the shop still sees the broker")
		}
		return nil
	})

	const queue = 64
	// The publish timeout outlasts the test: a call that waited for the
	// publisher would hang the test.
	em := analytics.NewEmitter(shop, clock.Real{}, testenv.Logger(t), analytics.EmitterOptions{Queue: queue, PublishTimeout: 10 * time.Minute})
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { em.Run(rctx); close(done) }()
	defer func() { cancel(); <-done }()

	const n = 20000
	var slowest time.Duration
	start := time.Now()
	for i := range n {
		t0 := time.Now()
		if i%2 == 0 {
			em.PageViewed("prd_1")
		} else {
			em.SearchMade("lamp", 1)
		}
		slowest = max(slowest, time.Since(t0))
	}
	took := time.Since(start)
	s := em.Stats()
	t.Logf("broker down: %d events offered in %v (%.0f ns each, slowest %v); %+v", n, took, float64(took.Nanoseconds())/n, slowest, s)
	if s.Sent != 0 {
		t.Errorf("%d events sent with the broker down", s.Sent)
	}
	// The queue holds queue events; the publisher holds at most one batch
	// more (256 events: it drains the queue while it refills).
	const batch = 256
	if s.Queued < queue || s.Queued > queue+batch || s.Queued+s.Dropped != n || s.Waiting != queue {
		t.Errorf("stats %+v: want %d to %d queued, the rest of %d dropped, %d waiting", s, queue, queue+batch, n, queue)
	}
}
