// Package loadgen is the shop's load generator (globomantics load): an
// open-loop generator that starts shopper sessions (browse, search,
// register, cart, checkout with every test card) at a fixed arrival rate
// against a storefront URL, whatever the answers' speed, and reports
// throughput, latency percentiles per step, errors by kind and orders, as
// text, JSON and an HTML page with charts.
//
// Open loop: arrival i is due at start + i/rate and is started then (or at
// once if the generator is late), never later because earlier sessions
// are slow; latency is counted from the moment a request was due, so a
// slow shop or a late generator shows in the percentiles instead of
// silently lowering the rate (no coordinated omission). When max-inflight
// sessions are running, an arrival is counted as dropped, not delayed.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Scenarios are the shopper sessions a mix may name, in report order.
var Scenarios = []string{"browse", "search", "register", "cart", "checkout"}

// DefaultMix is the share of each scenario when --mix is not given.
const DefaultMix = "browse=40,search=25,register=10,cart=15,checkout=10"

// Limits of a run.
const (
	MaxRate     = 5000
	MaxDuration = 10 * time.Minute
)

// Config is one run of the generator.
type Config struct {
	// URL is the storefront's base URL (http://host:port).
	URL string
	// Rate is the number of sessions started per second.
	Rate float64
	// Duration is how long arrivals are scheduled for.
	Duration time.Duration
	// Mix is each scenario's weight.
	Mix map[string]int
	// MaxInFlight is the most sessions running at once; an arrival beyond
	// it is dropped.
	MaxInFlight int
	// Timeout bounds each request.
	Timeout time.Duration
	// Drain is how long running sessions may finish after the last
	// arrival before they are cut short.
	Drain time.Duration
	// CheckoutWait is how long a session follows a checkout answered 202
	// (still running) before counting it pending; 0 does not follow.
	CheckoutWait time.Duration
	// Seed makes the choice of products, words and quantities repeatable.
	Seed int64
	// Progress receives the progress line every second (nil: none);
	// Terminal says to rewrite it in place with \r rather than print a
	// line every 5 s.
	Progress io.Writer
	Terminal bool
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// ParseMix parses "browse=40,search=25,...": every name must be one of
// Scenarios, every weight a non-negative integer, and their sum positive.
func ParseMix(s string) (map[string]int, error) {
	mix := map[string]int{}
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, w, ok := strings.Cut(part, "=")
		if !ok {
			return nil, fmt.Errorf("mix %q: want name=weight", part)
		}
		name = strings.TrimSpace(name)
		if !slices.Contains(Scenarios, name) {
			return nil, fmt.Errorf("mix: unknown scenario %q (known: %s)", name, strings.Join(Scenarios, ", "))
		}
		n, err := strconv.Atoi(strings.TrimSpace(w))
		if err != nil || n < 0 {
			return nil, fmt.Errorf("mix %q: weight must be a whole number >= 0", part)
		}
		mix[name] = n
	}
	total := 0
	for _, n := range mix {
		total += n
	}
	if total == 0 {
		return nil, errors.New("mix: the weights add up to 0")
	}
	return mix, nil
}

// Validate reports what is wrong with c: a URL that is not http(s), a rate
// outside (0, MaxRate], a duration outside (0, MaxDuration], an empty mix or
// a max-inflight below 1.
func (c Config) Validate() error {
	var errs []error
	if u, err := url.Parse(c.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("--url %q: want http://host:port of a storefront", c.URL))
	}
	if !(c.Rate > 0) || c.Rate > MaxRate {
		errs = append(errs, fmt.Errorf("--rate %v: want more than 0 and at most %d sessions per second", c.Rate, MaxRate))
	}
	if c.Duration <= 0 || c.Duration > MaxDuration {
		errs = append(errs, fmt.Errorf("--duration %v: want more than 0 and at most %v", c.Duration, MaxDuration))
	}
	if len(c.Mix) == 0 {
		errs = append(errs, errors.New("--mix: no scenario"))
	}
	if c.MaxInFlight < 1 {
		errs = append(errs, fmt.Errorf("--max-inflight %d: want at least 1", c.MaxInFlight))
	}
	return errors.Join(errs...)
}

// Run fetches the shop's catalog, runs the sessions for cfg.Duration (or
// until ctx ends: an interrupt still gives a report of what ran) and
// returns the report. It fails before sending any load when the
// configuration is invalid or the shop cannot be read or has no products.
func Run(ctx context.Context, cfg Config) (Report, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	if cfg.Drain <= 0 {
		cfg.Drain = cfg.Timeout
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if err := cfg.Validate(); err != nil {
		return Report{}, err
	}
	cfg.URL = strings.TrimRight(cfg.URL, "/")
	sh := newShop(cfg)
	defer sh.close()
	if err := sh.loadCatalog(ctx); err != nil {
		return Report{}, err
	}
	pick := newPicker(cfg.Mix)
	rec, elapsed, interrupted := schedule(ctx, cfg, func(ctx context.Context, rec *recorder, i int, at time.Time) {
		sh.session(ctx, rec, pick.scenario(i), i, at)
	})
	return rec.report(cfg, elapsed, interrupted), nil
}

// arrivals is the number of sessions a run of rate for d starts.
func arrivals(rate float64, d time.Duration) int {
	return int(math.Round(rate * d.Seconds()))
}

// schedule is the open-loop scheduler: it starts run for arrival i at
// start + i/rate, whatever the earlier ones are doing, unless
// MaxInFlight are running (then the arrival is dropped). After the last
// arrival it waits up to cfg.Drain for running sessions, then cuts them
// short; when ctx ends it stops at once and cuts them short. It returns
// the recorder, the time arrivals were scheduled for and whether ctx ended
// the run early.
func schedule(ctx context.Context, cfg Config, run func(ctx context.Context, rec *recorder, i int, at time.Time)) (*recorder, time.Duration, bool) {
	start := cfg.Now()
	rec := newRecorder(start)
	sessCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	var inflight atomic.Int64
	var wg sync.WaitGroup
	stopProgress := startProgress(cfg, rec, &inflight, start)
	n := arrivals(cfg.Rate, cfg.Duration)
	interval := float64(time.Second) / cfg.Rate
	timer := time.NewTimer(0)
	defer timer.Stop()
	interrupted := false
loop:
	for i := 0; i < n; i++ {
		at := start.Add(time.Duration(float64(i) * interval))
		if wait := at.Sub(cfg.Now()); wait > 0 {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				interrupted = true
				break loop
			case <-timer.C:
			}
		} else if ctx.Err() != nil {
			interrupted = true
			break loop
		}
		if inflight.Load() >= int64(cfg.MaxInFlight) {
			rec.drop(at)
			continue
		}
		inflight.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer inflight.Add(-1)
			run(sessCtx, rec, i, at)
		}()
	}
	elapsed := cfg.Now().Sub(start)
	if !interrupted {
		elapsed = max(elapsed, cfg.Duration)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	drain := time.NewTimer(cfg.Drain)
	defer drain.Stop()
	if interrupted {
		cancel()
	} else {
		select {
		case <-done:
		case <-ctx.Done():
			interrupted = true
			cancel()
		case <-drain.C:
			cancel()
		}
	}
	<-done
	stopProgress()
	return rec, elapsed, interrupted
}

// picker chooses arrival i's scenario from a cycle laid out by smooth
// weighted round robin: the shares of the mix are met exactly over every
// cycle of the weights' sum, spread evenly, so short runs still see every
// scenario, and the choice depends on i alone.
type picker struct {
	cycle []string
}

func newPicker(mix map[string]int) *picker {
	var names []string
	var weights []int
	total := 0
	for _, n := range Scenarios {
		if w := mix[n]; w > 0 {
			names = append(names, n)
			weights = append(weights, w)
			total += w
		}
	}
	current := make([]int, len(names))
	p := &picker{cycle: make([]string, 0, total)}
	for range total {
		best := 0
		for j := range current {
			current[j] += weights[j]
			if current[j] > current[best] {
				best = j
			}
		}
		current[best] -= total
		p.cycle = append(p.cycle, names[best])
	}
	return p
}

// scenario returns arrival i's scenario.
func (p *picker) scenario(i int) string { return p.cycle[i%len(p.cycle)] }

// startProgress prints the progress line every second on cfg.Progress
// (rewritten in place on a terminal, otherwise every 5 s) until the
// returned function is called.
func startProgress(cfg Config, rec *recorder, inflight *atomic.Int64, start time.Time) func() {
	if cfg.Progress == nil {
		return func() {}
	}
	stop, done := make(chan struct{}), make(chan struct{})
	line := func() string {
		p := rec.progress()
		el := cfg.Now().Sub(start)
		rate := 0.0
		if s := min(el, cfg.Duration).Seconds(); s > 0 {
			rate = float64(p.sent+p.dropped) / s
		}
		return fmt.Sprintf("%5.0fs  sent %d  in flight %d  ok %d  errors %d  dropped %d  rate %.1f/s  p50 %.1fms  p99 %.1fms",
			el.Seconds(), p.sent, inflight.Load(), p.ok, p.errors, p.dropped, rate, ms(p.p50), ms(p.p99))
	}
	go func() {
		defer close(done)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for tick := 1; ; tick++ {
			select {
			case <-stop:
				if cfg.Terminal {
					fmt.Fprintf(cfg.Progress, "\r%s\x1b[K\n", line())
				}
				return
			case <-t.C:
				if cfg.Terminal {
					fmt.Fprintf(cfg.Progress, "\r%s\x1b[K", line())
				} else if tick%5 == 0 {
					fmt.Fprintln(cfg.Progress, line())
				}
			}
		}
	}()
	return func() { close(stop); <-done }
}

// IsTerminal reports whether w is a character device (a terminal), where
// the progress line is rewritten in place.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
