package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/platform/clock"
	"github.com/globomantics/globomantics/internal/platform/obs"
)

// asFakeScaler is a supervisor with instance counts only.
type asFakeScaler struct {
	mu     sync.Mutex
	counts map[string]int
	adds   int
	rems   int
	fail   error
}

func (f *asFakeScaler) Procs() []Proc {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Proc
	for g, n := range f.counts {
		for i := range n {
			out = append(out, Proc{Name: fmt.Sprintf("%s-%d", g, i+1), Group: g, Scalable: true, PID: 100 + i, State: "ready"})
		}
	}
	return out
}

func (f *asFakeScaler) Count(group string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.counts[group]
}

func (f *asFakeScaler) Add(_ context.Context, group string) (Proc, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return Proc{}, f.fail
	}
	f.counts[group]++
	f.adds++
	return Proc{Name: fmt.Sprintf("%s-%d", group, f.counts[group]), Group: group}, nil
}

func (f *asFakeScaler) Remove(_ context.Context, group string) (Proc, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.counts[group] <= 1 {
		return Proc{}, ErrLastInstance
	}
	f.counts[group]--
	f.rems++
	return Proc{Group: group}, nil
}

// asFakeSignal returns whatever load the test sets.
type asFakeSignal struct {
	mu   sync.Mutex
	load Load
	err  error
}

func (s *asFakeSignal) set(l Load, err error) {
	s.mu.Lock()
	s.load, s.err = l, err
	s.mu.Unlock()
}

func (s *asFakeSignal) Measure(context.Context, string, []Proc) (Load, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.load, s.err
}

func asBacklog(n int64) Load { return Load{Queue: true, Backlog: n} }

type asRig struct {
	t     *testing.T
	clk   *clock.Fake
	sc    *asFakeScaler
	sig   *asFakeSignal
	as    *Autoscaler
	group string
}

func newASRig(t *testing.T, start int, pol Policy) *asRig {
	t.Helper()
	r := &asRig{t: t, clk: clock.NewFake(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)),
		sc: &asFakeScaler{counts: map[string]int{"mail": start}}, sig: &asFakeSignal{}, group: "mail"}
	r.as = NewAutoscaler(AutoscalerConfig{Scaler: r.sc, Clock: r.clk, Log: slog.New(slog.DiscardHandler), Groups: map[string]Group{"mail": {Policy: pol, Signal: r.sig}}})
	return r
}

// step advances the clock by d, steps once and returns the count.
func (r *asRig) step(d time.Duration) int {
	r.t.Helper()
	r.clk.Advance(d)
	_ = r.as.Step(context.Background())
	return r.sc.Count(r.group)
}

func asWorkerPolicy() Policy {
	return Policy{Min: 1, Max: 4, Step: 1, ScaleUpCooldown: 10 * time.Second, ScaleDownCooldown: 30 * time.Second, BacklogPerInstance: 20}
}

func TestAutoscalerScalesUpStepByStepToMax(t *testing.T) {
	r := newASRig(t, 1, asWorkerPolicy())
	r.sig.set(asBacklog(500), nil)
	want := []struct {
		after time.Duration
		count int
	}{
		{0, 2},                // over target: one step at once
		{5 * time.Second, 2},  // not before the up cooldown
		{5 * time.Second, 3},  // 10 s after the first step
		{9 * time.Second, 3},  // cooldown again
		{1 * time.Second, 4},  // Max
		{10 * time.Second, 4}, // held at Max
		{time.Minute, 4},
	}
	for i, w := range want {
		if got := r.step(w.after); got != w.count {
			t.Fatalf("step %d (+%s): %d instances, want %d", i, w.after, got, w.count)
		}
	}
	ds := r.as.Decisions()
	if len(ds) != 3 {
		t.Fatalf("decisions = %v, want 3", r.as.DecisionLines())
	}
	for i, d := range ds {
		if d.From != i+1 || d.To != i+2 || d.Group != "mail" || !strings.Contains(d.Reason, "backlog 500") || d.Err != "" {
			t.Errorf("decision %d = %+v", i, d)
		}
	}
	if s := ds[0].String(); !strings.Contains(s, "mail 1->2: over target: backlog 500 over 1 instances = 500.0 each (target 20)") {
		t.Errorf("line = %q", s)
	}
}

func TestAutoscalerStepsBySeveral(t *testing.T) {
	pol := asWorkerPolicy()
	pol.Step, pol.Max = 3, 5
	r := newASRig(t, 1, pol)
	r.sig.set(asBacklog(1000), nil)
	if got := r.step(0); got != 4 {
		t.Fatalf("%d instances, want 4", got)
	}
	if got := r.step(10 * time.Second); got != 5 {
		t.Fatalf("%d instances, want Max 5", got)
	}
}

func TestAutoscalerScalesDownOneAtATimeAfterCooldown(t *testing.T) {
	r := newASRig(t, 4, asWorkerPolicy())
	r.sig.set(asBacklog(0), nil)
	if got := r.step(0); got != 4 { // low from now
		t.Fatalf("%d instances, want 4", got)
	}
	if got := r.step(29 * time.Second); got != 4 {
		t.Fatalf("before the down cooldown: %d instances, want 4", got)
	}
	if got := r.step(time.Second); got != 3 {
		t.Fatalf("after the down cooldown: %d instances, want 3", got)
	}
	if got := r.step(5 * time.Second); got != 3 {
		t.Fatalf("one removal per cooldown: %d instances, want 3", got)
	}
	// A spell between the low-water mark and the target breaks the low
	// spell: the next removal needs a whole cooldown after it.
	r.sig.set(asBacklog(45), nil) // 15 each of 3: over 0.5 of 20, under 20
	if got := r.step(20 * time.Second); got != 3 {
		t.Fatalf("holding: %d instances, want 3", got)
	}
	r.sig.set(asBacklog(5), nil) // 1.7 each: low
	if got := r.step(time.Second); got != 3 {
		t.Fatalf("%d instances, want 3", got)
	}
	if got := r.step(29 * time.Second); got != 3 {
		t.Fatalf("low for 29 s: %d instances, want 3", got)
	}
	if got := r.step(time.Second); got != 2 {
		t.Fatalf("low for 30 s: %d instances, want 2", got)
	}
	for range 10 {
		r.step(30 * time.Second)
	}
	if got := r.sc.Count("mail"); got != 1 {
		t.Fatalf("%d instances, want Min 1", got)
	}
	ds := r.as.Decisions()
	if len(ds) != 3 {
		t.Fatalf("decisions = %q", r.as.DecisionLines())
	}
	if !strings.Contains(ds[0].Reason, "under 0.5 of target for 30s") || ds[0].From != 4 || ds[0].To != 3 {
		t.Errorf("decision = %+v", ds[0])
	}
	if r.sc.rems != 3 {
		t.Errorf("%d removals, want 3", r.sc.rems)
	}
}

func TestAutoscalerNeverBelowMin(t *testing.T) {
	pol := asWorkerPolicy()
	pol.Min = 2
	r := newASRig(t, 3, pol)
	r.sig.set(asBacklog(0), nil)
	for range 20 {
		r.step(31 * time.Second)
	}
	if got := r.sc.Count("mail"); got != 2 {
		t.Fatalf("%d instances, want Min 2", got)
	}
	// A group found below its minimum is brought up to it at once.
	r.sc.counts["mail"] = 1
	if got := r.step(time.Second); got != 2 {
		t.Fatalf("below Min: %d instances, want 2", got)
	}
	// A group the supervisor does not run (yet) is not started by it.
	r.sc.counts["mail"] = 0
	r.sig.set(asBacklog(500), nil)
	if got := r.step(time.Minute); got != 0 || r.sc.adds != 1 {
		t.Fatalf("group not running: %d instances after %d adds", got, r.sc.adds)
	}
}

func TestAutoscalerFlappingInputDoesNotFlap(t *testing.T) {
	// Load that jumps between far over target and nothing at every
	// measurement: the count only ever grows (never a low spell a whole
	// cooldown long), at most one step per up cooldown.
	r := newASRig(t, 1, asWorkerPolicy())
	prev, lastUp := 1, time.Duration(-1)
	var at time.Duration
	for i := range 60 {
		if i%2 == 0 {
			r.sig.set(asBacklog(500), nil)
		} else {
			r.sig.set(asBacklog(0), nil)
		}
		got := r.step(3 * time.Second)
		at += 3 * time.Second
		if got < prev {
			t.Fatalf("step %d: the count went down %d -> %d", i, prev, got)
		}
		if got > prev {
			if lastUp >= 0 && at-lastUp < 10*time.Second {
				t.Fatalf("step %d: scaled up %s after the previous one", i, at-lastUp)
			}
			lastUp = at
		}
		prev = got
	}
	if r.sc.rems != 0 {
		t.Fatalf("%d removals under flapping load", r.sc.rems)
	}

	// With UpAfter longer than a spike, flapping load changes nothing.
	pol := asWorkerPolicy()
	pol.UpAfter = 5 * time.Second
	r = newASRig(t, 2, pol)
	for i := range 60 {
		if i%2 == 0 {
			r.sig.set(asBacklog(500), nil)
		} else {
			r.sig.set(asBacklog(0), nil)
		}
		if got := r.step(3 * time.Second); got != 2 {
			t.Fatalf("step %d: %d instances, want 2 throughout", i, got)
		}
	}
	if len(r.as.Decisions()) != 0 {
		t.Fatalf("decisions = %q", r.as.DecisionLines())
	}
}

func TestAutoscalerHoldsWhenMeasureFails(t *testing.T) {
	r := newASRig(t, 3, asWorkerPolicy())
	r.sig.set(asBacklog(0), nil)
	r.step(0)
	r.sig.set(Load{}, errors.New("broker down"))
	for range 5 {
		if got := r.step(10 * time.Second); got != 3 {
			t.Fatalf("%d instances while blind, want 3", got)
		}
	}
	st := r.as.Status()
	if len(st) != 1 || st[0].Err == "" || !st[0].LowSince.IsZero() {
		t.Fatalf("status = %+v", st)
	}
	// The low spell starts again when measurements come back.
	r.sig.set(asBacklog(0), nil)
	if got := r.step(time.Second); got != 3 {
		t.Fatalf("%d instances, want 3", got)
	}
	if got := r.step(30 * time.Second); got != 2 {
		t.Fatalf("%d instances, want 2", got)
	}
}

func TestAutoscalerRecordsFailedChange(t *testing.T) {
	r := newASRig(t, 1, asWorkerPolicy())
	r.sc.fail = errors.New("no free port")
	r.sig.set(asBacklog(100), nil)
	if err := r.as.Step(context.Background()); err == nil || !strings.Contains(err.Error(), "no free port") {
		t.Fatalf("Step = %v", err)
	}
	ds := r.as.Decisions()
	if len(ds) != 1 || ds[0].Err != "no free port" || !strings.Contains(ds[0].String(), "failed: no free port") {
		t.Fatalf("decisions = %q", r.as.DecisionLines())
	}
	// The cooldown applies to a failed attempt too: no retry storm.
	r.sc.fail = nil
	if got := r.step(time.Second); got != 1 {
		t.Fatalf("%d instances, want 1 within the cooldown", got)
	}
	if got := r.step(10 * time.Second); got != 2 {
		t.Fatalf("%d instances, want 2", got)
	}
}

func TestPolicyPressure(t *testing.T) {
	pol := Policy{BacklogPerInstance: 20, MaxDrainTime: 10 * time.Second, MaxOldestAge: 30 * time.Second,
		InFlightPerInstance: 8, P95: 200 * time.Millisecond, MinRequests: 10}
	cases := []struct {
		load Load
		n    int
		want float64
		why  string
	}{
		{Load{Queue: true, Backlog: 40, RateKnown: true, DrainRate: 40}, 2, 1, "backlog 40 over 2 instances"},
		{Load{Queue: true, Backlog: 10, RateKnown: true, DrainRate: 0.5}, 2, 2, "drains in 20s at 0.5/s"},
		{Load{Queue: true, Backlog: 10, RateKnown: true}, 2, maxPressure, "nothing acknowledged"},
		{Load{Queue: true, Backlog: 1, OldestAge: time.Minute}, 4, 2, "oldest waiting 1m0s"},
		{Load{Queue: true}, 1, 0, ""},
		{Load{HTTP: true, InFlight: 48, Requests: 5, P95: time.Second}, 3, 2, "48 requests in flight"}, // too few requests for the p95
		{Load{HTTP: true, InFlight: 3, Requests: 50, P95: 300 * time.Millisecond}, 3, 1.5, "p95 300ms over 50 requests"},
	}
	for i, c := range cases {
		got, why, ok := pol.pressure(c.load, c.n)
		if !ok || math.Abs(got-c.want) > 1e-9 || !strings.Contains(why, c.why) {
			t.Errorf("case %d: pressure = %v %q %v, want %v %q", i, got, why, ok, c.want, c.why)
		}
	}
	if _, _, ok := (Policy{}).pressure(Load{Queue: true, Backlog: 5}, 1); ok {
		t.Error("a policy without targets judged the load")
	}
}

// asMetricsText renders an instance's metrics: in-flight requests and a
// request-duration histogram (cumulative counts by bucket) for one
// shopper route, plus a readiness route that must be ignored.
func asMetricsText(inflight float64, buckets map[string]int, count int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# HELP http_server_active_requests Requests in flight.\n# TYPE http_server_active_requests gauge\n")
	fmt.Fprintf(&b, "http_server_active_requests{http_request_method=\"GET\"} %g\n", inflight)
	fmt.Fprintf(&b, "# HELP http_server_request_duration_seconds Duration.\n# TYPE http_server_request_duration_seconds histogram\n")
	for _, le := range []string{"0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "+Inf"} {
		fmt.Fprintf(&b, "http_server_request_duration_seconds_bucket{http_route=\"GET /product/{id}\",le=%q} %d\n", le, buckets[le])
	}
	fmt.Fprintf(&b, "http_server_request_duration_seconds_sum{http_route=\"GET /product/{id}\"} 1\n")
	fmt.Fprintf(&b, "http_server_request_duration_seconds_count{http_route=\"GET /product/{id}\"} %d\n", count)
	for _, le := range []string{"0.005", "+Inf"} {
		fmt.Fprintf(&b, "http_server_request_duration_seconds_bucket{http_route=\"GET /readyz\",le=%q} 100000\n", le)
	}
	fmt.Fprintf(&b, "http_server_request_duration_seconds_sum{http_route=\"GET /readyz\"} 1\n")
	fmt.Fprintf(&b, "http_server_request_duration_seconds_count{http_route=\"GET /readyz\"} 100000\n")
	return b.String()
}

func TestHTTPSignalInFlightAndP95FromBucketDeltas(t *testing.T) {
	var mu sync.Mutex
	texts := map[string]string{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		name := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/"), "/metrics")
		if r.URL.Path != "/"+name+"/metrics" || texts[name] == "" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		_, _ = w.Write([]byte(texts[name]))
	}))
	defer srv.Close()
	procs := []Proc{
		{Name: "sf1", Group: "storefront", PID: 1, State: "ready", InternalURL: srv.URL + "/sf1"},
		{Name: "sf2", Group: "storefront", PID: 2, State: "ready", InternalURL: srv.URL + "/sf2"},
		{Name: "sf3", Group: "storefront", PID: 0, State: "restarting", InternalURL: srv.URL + "/sf3"}, // not asked
	}
	set := func(name string, inflight float64, b map[string]int, count int) {
		mu.Lock()
		texts[name] = asMetricsText(inflight, b, count)
		mu.Unlock()
	}
	// Old history: 1000 fast requests on each, before the interval.
	old := map[string]int{"0.005": 1000, "0.01": 1000, "0.025": 1000, "0.05": 1000, "0.1": 1000, "0.25": 1000, "0.5": 1000, "1": 1000, "+Inf": 1000}
	set("sf1", 3, old, 1000)
	set("sf2", 2, old, 1000)
	sig := NewHTTPSignal(nil, 1)
	l, err := sig.Measure(context.Background(), "storefront", procs)
	if err != nil {
		t.Fatal(err)
	}
	if !l.HTTP || l.InFlight != 3 || l.Requests != 0 || l.P95 != 0 { // (3-1)+(2-1); no interval yet
		t.Fatalf("first load = %+v", l)
	}
	// In the interval: sf1 100 more requests, 80 under 10 ms and 20
	// between 250 and 500 ms; sf2 100 more between 50 and 100 ms.
	sf1 := map[string]int{}
	sf2 := map[string]int{}
	for k, v := range old {
		sf1[k], sf2[k] = v+100, v+100
	}
	sf1["0.005"], sf1["0.01"], sf1["0.025"], sf1["0.05"], sf1["0.1"], sf1["0.25"] = 1050, 1080, 1080, 1080, 1080, 1080
	sf2["0.005"], sf2["0.01"], sf2["0.025"], sf2["0.05"] = 1000, 1000, 1000, 1000
	set("sf1", 9, sf1, 1100)
	set("sf2", 1, sf2, 1100)
	l, err = sig.Measure(context.Background(), "storefront", procs)
	if err != nil {
		t.Fatal(err)
	}
	// 200 requests: rank 190 lies in (0.25, 0.5], which holds the last 20
	// (180 below it): 0.25 + 0.25*10/20 = 0.375 s.
	if l.Requests != 200 || l.InFlight != 8 {
		t.Fatalf("load = %+v", l)
	}
	if l.P95 != 375*time.Millisecond {
		t.Fatalf("p95 = %s, want 375ms", l.P95)
	}
	// One instance down: the other still measures; all down is an error.
	mu.Lock()
	delete(texts, "sf2")
	mu.Unlock()
	if l, err = sig.Measure(context.Background(), "storefront", procs); err != nil || l.InFlight != 8 {
		t.Fatalf("one down: %+v %v", l, err)
	}
	mu.Lock()
	delete(texts, "sf1")
	mu.Unlock()
	if _, err = sig.Measure(context.Background(), "storefront", procs); err == nil {
		t.Fatal("no instance answered, and no error")
	}
}

func TestScaleHistQuantile(t *testing.T) {
	h := scaleHist{bounds: []float64{0.1, 0.2, 0.4, math.Inf(1)}, counts: []float64{50, 90, 100, 100}, total: 100}
	for _, c := range []struct{ q, want float64 }{{0.5, 0.1}, {0.7, 0.15}, {0.95, 0.3}, {1, 0.4}} {
		if got, ok := h.quantile(c.q); !ok || math.Abs(got-c.want) > 1e-9 {
			t.Errorf("q%.2f = %v, want %v", c.q, got, c.want)
		}
	}
	inf := scaleHist{bounds: []float64{0.1, math.Inf(1)}, counts: []float64{1, 10}, total: 10}
	if got, _ := inf.quantile(0.95); got != 0.1 {
		t.Errorf("in +Inf bucket: %v, want the largest finite bound 0.1", got)
	}
	if _, ok := (scaleHist{}).quantile(0.95); ok {
		t.Error("empty histogram gave a quantile")
	}
	// A counter that went down (restart) counts from zero.
	restarted := scaleHist{bounds: []float64{0.1, math.Inf(1)}, counts: []float64{3, 4}, total: 4}
	if d := restarted.sub(inf); d.total != 4 {
		t.Errorf("delta after restart = %+v", d)
	}
}

// TestHTTPSignalReadsTheObsMetrics scrapes the metrics exactly as a shop
// process serves them (package obs's registry and handler).
func TestHTTPSignalReadsTheObsMetrics(t *testing.T) {
	o, err := obs.New(obs.Options{Service: "storefront"})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(o.Metrics())
	defer srv.Close()
	m := o.HTTPServer()
	procs := []Proc{{Name: "storefront-1", Group: "storefront", PID: 1, State: "ready", InternalURL: srv.URL}}
	sig := NewHTTPSignal(nil, 1)
	m.Active.Set(4) // three shoppers' requests and the scrape itself
	if _, err := sig.Measure(context.Background(), "storefront", procs); err != nil {
		t.Fatal(err)
	}
	for range 19 {
		m.Duration.WithLabelValues("GET", "GET /product/{id}", "200").Observe(0.003)
	}
	m.Duration.WithLabelValues("GET", "GET /checkout", "200").Observe(0.7)
	for range 500 {
		m.Duration.WithLabelValues("GET", "GET /readyz", "200").Observe(0.0001)
	}
	l, err := sig.Measure(context.Background(), "storefront", procs)
	if err != nil {
		t.Fatal(err)
	}
	// 20 requests (probes left out): rank 19 is the last of the 19 fast
	// ones, in (2.5 ms, 5 ms].
	if l.InFlight != 3 || l.Requests != 20 || l.P95 <= 2500*time.Microsecond || l.P95 > 5*time.Millisecond {
		t.Fatalf("load = %+v", l)
	}
}
