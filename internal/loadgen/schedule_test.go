package loadgen

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestOpenLoopSlowServer: against a server that takes 300 ms per answer, a
// run at 50/s for 1 s still starts 50 sessions (a closed loop would start
// as many as it has workers, then wait), and the answers' latency shows
// the server's slowness.
func TestOpenLoopSlowServer(t *testing.T) {
	const delay = 300 * time.Millisecond
	f := &fakeShop{home: func(w http.ResponseWriter, r *http.Request) {
		t := time.NewTimer(delay) // the server's slowness, not a synchronisation
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
		}
	}}
	url := f.start(t)
	cfg := config(url, 50, time.Second, "browse=1")
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Arrivals < 49 || rep.Arrivals > 51 || rep.Sent != rep.Arrivals || rep.Dropped != 0 {
		t.Errorf("arrivals %d sent %d dropped %d, want 50±1 all sent", rep.Arrivals, rep.Sent, rep.Dropped)
	}
	home := stepOf(rep, "home")
	if home.Requests != rep.Sent || home.Errors != 0 {
		t.Errorf("home: %+v, want %d requests without error (errors: %s)", home, rep.Sent, kinds(rep))
	}
	if home.P50 < float64(delay.Milliseconds()) || home.Max < float64(delay.Milliseconds()) {
		t.Errorf("home latency p50 %.1f ms max %.1f ms, want at least the server's %v", home.P50, home.Max, delay)
	}
	if rep.AchievedRate < 48 || rep.AchievedRate > 52 {
		t.Errorf("achieved rate %.1f/s, want 50", rep.AchievedRate)
	}
}

// TestOpenLoopNeverWaits: with a server that never answers, every due
// arrival is still started (none has finished when the last starts), on
// its schedule i/rate after the start; the rest of the run is cut short
// after the drain and counted as such, not as errors.
func TestOpenLoopNeverWaits(t *testing.T) {
	cfg := config("http://unused", 40, time.Second, "browse=1")
	cfg.Drain = 50 * time.Millisecond
	cfg.Now = time.Now
	var ats []time.Time
	var mu sync.Mutex
	started := 0
	rec, elapsed, interrupted := schedule(context.Background(), cfg, func(ctx context.Context, rec *recorder, i int, at time.Time) {
		mu.Lock()
		started++
		ats = append(ats, at)
		mu.Unlock()
		<-ctx.Done() // never answered: ends only when the run cuts it short
		rec.sessionDone("browse", time.Now(), 0, false, true)
	})
	if interrupted {
		t.Error("run reported interrupted")
	}
	if started != 40 {
		t.Errorf("%d sessions started, want 40 (arrivals = rate × duration)", started)
	}
	if elapsed < time.Second {
		t.Errorf("elapsed %v, want at least the duration", elapsed)
	}
	if rec.cancelled != started {
		t.Errorf("%d cut short, want %d", rec.cancelled, started)
	}
	// Intended times are exactly start + i/rate whatever the order the
	// goroutines ran in.
	seen := map[time.Duration]bool{}
	var first time.Time
	for _, at := range ats {
		if first.IsZero() || at.Before(first) {
			first = at
		}
	}
	for _, at := range ats {
		d := at.Sub(first)
		if d%(25*time.Millisecond) != 0 || d >= time.Second {
			t.Errorf("arrival due %v after the start, want a multiple of 25ms under 1s", d)
		}
		seen[d] = true
	}
	if len(seen) != 40 {
		t.Errorf("%d distinct due times, want 40", len(seen))
	}
}

// TestOverCapacityDropped: with max-inflight sessions running, an arrival
// is dropped and reported as such, not delayed.
func TestOverCapacityDropped(t *testing.T) {
	f := &fakeShop{home: func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }}
	url := f.start(t)
	cfg := config(url, 20, time.Second, "browse=1")
	cfg.MaxInFlight = 5
	cfg.Drain = 50 * time.Millisecond
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Sent != 5 || rep.Dropped != 15 || rep.Arrivals != 20 {
		t.Errorf("sent %d dropped %d arrivals %d, want 5, 15, 20", rep.Sent, rep.Dropped, rep.Arrivals)
	}
	if e := errorOf(rep, KindDropped); e.Count != 15 {
		t.Errorf("errors by kind: %q = %d, want 15 (%s)", KindDropped, e.Count, kinds(rep))
	}
	if rep.Cancelled != 5 || rep.Errors != 0 {
		t.Errorf("cut short %d errors %d, want 5 and 0 (%s)", rep.Cancelled, rep.Errors, kinds(rep))
	}
}

// TestLatencyFromIntendedStart: a session due 2 s ago (a generator that
// fell behind) reports its first request's latency from then, not from
// when it was sent.
func TestLatencyFromIntendedStart(t *testing.T) {
	f := &fakeShop{}
	url := f.start(t)
	cfg := config(url, 1, time.Second, "browse=1")
	cfg.Now = time.Now
	sh := newShop(cfg)
	defer sh.close()
	if err := sh.loadCatalog(context.Background()); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	rec := newRecorder(now)
	sh.session(context.Background(), rec, "browse", 0, now.Add(-2*time.Second))
	rep := rec.report(cfg, time.Second, false)
	if home := stepOf(rep, "home"); home.P50 < 2000 {
		t.Errorf("home latency %.1f ms, want at least 2000 (counted from the due time)", home.P50)
	}
	if cat := stepOf(rep, "category"); cat.Requests != 1 || cat.Max >= 2000 {
		t.Errorf("category %+v: later steps count from the end of the previous one", cat)
	}
}

// TestInterruptStillReports: ending ctx stops the run early with a report.
func TestInterruptStillReports(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := &fakeShop{}
	f.home = func(w http.ResponseWriter, r *http.Request) {
		if f.homeHits.Load() == 5 {
			cancel() // Ctrl-C after the fifth session's first answer
		}
	}
	url := f.start(t)
	rep, err := Run(ctx, config(url, 20, 10*time.Second, "browse=1"))
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Interrupted || rep.Arrivals >= 200 || rep.Arrivals < 5 {
		t.Errorf("interrupted %v after %d arrivals, want an early end", rep.Interrupted, rep.Arrivals)
	}
	var b strings.Builder
	if err := rep.WriteText(&b); err != nil || !strings.Contains(b.String(), "interrupted") {
		t.Errorf("text report %q (%v) does not say it was interrupted", b.String(), err)
	}
}

func TestValidate(t *testing.T) {
	good := config("http://127.0.0.1:1", 10, time.Second, DefaultMix)
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func(*Config){
		"rate over 5000":      func(c *Config) { c.Rate = 5001 },
		"rate 0":              func(c *Config) { c.Rate = 0 },
		"duration over 10min": func(c *Config) { c.Duration = 10*time.Minute + time.Second },
		"no url":              func(c *Config) { c.URL = "" },
		"max-inflight 0":      func(c *Config) { c.MaxInFlight = 0 },
	} {
		c := good
		mut(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	for _, bad := range []string{"browse", "shop=1", "browse=-1", "browse=0"} {
		if _, err := ParseMix(bad); err == nil {
			t.Errorf("mix %q accepted", bad)
		}
	}
}
