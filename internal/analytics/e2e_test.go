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

// TestEndToEnd counts page views and searches in a storefront's emitter,
// publishes its summaries through a real embedded broker (onto the buffered
// GLOBO_ANALYTICS stream) and checks that the analytics consumer,
// subscribed as the app subscribes it (contract-checked), counts each view
// and search once.
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
	em := analytics.NewEmitter(b, clk, testenv.Logger(t), analytics.EmitterOptions{Interval: 50 * time.Millisecond})
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
	counted := time.Since(start)
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
			if n == 0 && em.Stats().Sent > 0 {
				hint = "; summaries were published: does bus.Subscribe consume from the stream that holds the subjects (GLOBO_ANALYTICS), not always from GLOBO?"
			}
			return fmt.Errorf("%d views counted of %d (emitter %+v)%s", n, views, em.Stats(), hint)
		}
		return nil
	})
	t.Logf("%d events counted in %v; all applied %v after the first (emitter %+v)", views+2, counted, time.Since(start), em.Stats())
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
	// A few summaries carried all of it, not one message per event.
	if s := em.Stats(); s.Dropped != 0 || s.Failed != 0 || s.Counted != views+2 || s.Sent < 2 || s.Sent > 10 {
		t.Errorf("emitter stats %+v, want %d counted in 2 to 10 summaries and nothing lost", s, views+2)
	}
	// The summaries went to the buffered analytics stream, not to GLOBO.
	for _, s := range bus.Streams() {
		if s.Name == "GLOBO_ANALYTICS" && s.Persistence != bus.Buffered {
			t.Errorf("GLOBO_ANALYTICS is %v, want buffered", s.Persistence)
		}
	}
}

// TestEmitterNeverBlocks checks that with the broker down the emitter's
// calls return at once: its publishing goroutine is stuck waiting for an
// acknowledgement that never comes, and counting goes on regardless.
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

	em := analytics.NewEmitter(shop, clock.Real{}, testenv.Logger(t), analytics.EmitterOptions{Interval: 10 * time.Millisecond, PublishTimeout: time.Second})
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
	t.Logf("broker down: %d events counted in %v (%.0f ns each, slowest %v); %+v", n, took, float64(took.Nanoseconds())/n, slowest, s)
	if s.Sent != 0 {
		t.Errorf("%d summaries sent with the broker down", s.Sent)
	}
	if s.Counted != n || s.Dropped != 0 {
		t.Errorf("stats %+v: want all %d counted", s, n)
	}
}
