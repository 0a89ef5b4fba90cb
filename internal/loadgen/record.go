package loadgen

import (
	"sort"
	"sync"
	"time"
)

// outcome is what one request of a session came to.
type outcome struct {
	step    string
	end     time.Time
	latency time.Duration
	// status is the HTTP status (0: no answer).
	status int
	// ok: the answer was the one the step expects (a 402 for a declined
	// card is ok).
	ok bool
	// kind names the failure when !ok ("429 Too Many Requests [4xx]",
	// "timeout", "connection refused", ...); "" when ok.
	kind    string
	example string
}

// Names of the kinds that are not answers.
const (
	KindDropped   = "dropped (over capacity)"
	KindTimeout   = "timeout"
	KindRefused   = "connection refused"
	KindConnError = "connection error"
)

type stepRec struct {
	hist   histogram
	count  int
	ok     int
	errors int
}

type errRec struct {
	count   int
	steps   map[string]int
	example string
}

// second is one second of the run's timeline.
type second struct {
	sent, ok, errors, dropped, completed int
	hist                                 histogram
}

// recorder gathers the outcomes of a run. Its memory is bounded by the
// number of distinct steps and error kinds and the run's length in
// seconds (at most 10 minutes), never by the number of requests.
type recorder struct {
	mu       sync.Mutex
	start    time.Time
	steps    map[string]*stepRec
	all      histogram
	okN      int
	errN     int
	errs     map[string]*errRec
	timeline []*second
	sent     int
	dropped  int
	// sessions by scenario: started, completed without error.
	scenarios map[string]*scenarioRec
	confirmed int
	declined  int
	transient int
	pending   int
	status429 int
	cancelled int
}

type scenarioRec struct {
	started, succeeded, failed int
	hist                       histogram
}

func newRecorder(start time.Time) *recorder {
	return &recorder{start: start, steps: map[string]*stepRec{}, errs: map[string]*errRec{}, scenarios: map[string]*scenarioRec{}}
}

// sec returns the timeline entry of instant t; the caller holds mu.
func (r *recorder) sec(t time.Time) *second {
	i := max(int(t.Sub(r.start)/time.Second), 0)
	const maxSeconds = 11 * 60 // the longest run plus its drain
	i = min(i, maxSeconds)
	for len(r.timeline) <= i {
		r.timeline = append(r.timeline, &second{})
	}
	return r.timeline[i]
}

func (r *recorder) arrival(scenario string, at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sent++
	r.sec(at).sent++
	r.scenario(scenario).started++
}

func (r *recorder) scenario(name string) *scenarioRec {
	s := r.scenarios[name]
	if s == nil {
		s = &scenarioRec{}
		r.scenarios[name] = s
	}
	return s
}

func (r *recorder) drop(at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.dropped++
	r.sec(at).dropped++
	r.addErr(KindDropped, "", "")
}

func (r *recorder) addErr(kind, step, example string) {
	e := r.errs[kind]
	if e == nil {
		e = &errRec{steps: map[string]int{}, example: example}
		r.errs[kind] = e
	}
	e.count++
	if step != "" {
		e.steps[step]++
	}
}

func (r *recorder) request(o outcome) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.steps[o.step]
	if s == nil {
		s = &stepRec{}
		r.steps[o.step] = s
	}
	s.count++
	sec := r.sec(o.end)
	if o.status == 429 {
		r.status429++
	}
	if o.status != 0 {
		s.hist.record(o.latency)
		r.all.record(o.latency)
		sec.hist.record(o.latency)
	}
	if o.ok {
		s.ok++
		r.okN++
		sec.ok++
		return
	}
	s.errors++
	r.errN++
	sec.errors++
	r.addErr(o.kind, o.step, o.example)
}

// sessionDone records the end of one shopper session: err-free or not,
// cancelled (the run was interrupted) or not, and its whole duration from
// its intended start.
func (r *recorder) sessionDone(scenario string, end time.Time, d time.Duration, failed, cancelled bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if cancelled {
		r.cancelled++
		return
	}
	s := r.scenario(scenario)
	r.sec(end).completed++
	if failed {
		s.failed++
		return
	}
	s.succeeded++
	s.hist.record(d)
}

// checkout counts a checkout's end: "confirmed", "declined", "transient"
// (the processor's transient failure, rolled back) or "pending".
func (r *recorder) checkout(result string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch result {
	case "confirmed":
		r.confirmed++
	case "declined":
		r.declined++
	case "transient":
		r.transient++
	case "pending":
		r.pending++
	}
}

// progress is the state shown on the progress line.
type progress struct {
	sent, ok, errors, dropped int
	p50, p99                  time.Duration
}

func (r *recorder) progress() progress {
	r.mu.Lock()
	defer r.mu.Unlock()
	return progress{sent: r.sent, ok: r.okN, errors: r.errN, dropped: r.dropped, p50: r.all.quantile(0.5), p99: r.all.quantile(0.99)}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func latencyOf(name string, h *histogram) Latency {
	return Latency{Name: name, Count: int(h.n), P50: ms(h.quantile(0.5)), P90: ms(h.quantile(0.9)), P99: ms(h.quantile(0.99)), Max: ms(h.max), Mean: ms(h.mean())}
}

// report builds the run's report; elapsed is how long arrivals were
// scheduled for.
func (r *recorder) report(cfg Config, elapsed time.Duration, interrupted bool) Report {
	r.mu.Lock()
	defer r.mu.Unlock()
	rep := Report{
		URL: cfg.URL, TargetRate: cfg.Rate, Duration: cfg.Duration.String(), Elapsed: elapsed.Round(time.Millisecond).String(),
		Interrupted: interrupted, Mix: cfg.Mix, MaxInFlight: cfg.MaxInFlight, Seed: cfg.Seed,
		Arrivals: r.sent + r.dropped, Sent: r.sent, Dropped: r.dropped, Cancelled: r.cancelled,
		Requests: r.okN + r.errN, OK: r.okN, Errors: r.errN,
		Orders:    Orders{Confirmed: r.confirmed, Declined: r.declined, TransientFailed: r.transient, Pending: r.pending},
		Status429: r.status429,
	}
	if secs := elapsed.Seconds(); secs > 0 {
		rep.AchievedRate = float64(r.sent+r.dropped) / secs
		rep.RequestRate = float64(r.okN+r.errN) / secs
	}
	names := make([]string, 0, len(r.steps))
	for n := range r.steps {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return stepOrder(names[i]) < stepOrder(names[j]) })
	for _, n := range names {
		s := r.steps[n]
		l := latencyOf(n, &s.hist)
		rep.Steps = append(rep.Steps, StepStats{Latency: l, Requests: s.count, OK: s.ok, Errors: s.errors})
	}
	rep.Overall = StepStats{Latency: latencyOf("all requests", &r.all), Requests: r.okN + r.errN, OK: r.okN, Errors: r.errN}
	scen := make([]string, 0, len(r.scenarios))
	for n := range r.scenarios {
		scen = append(scen, n)
	}
	sort.Slice(scen, func(i, j int) bool { return scenarioOrder(scen[i]) < scenarioOrder(scen[j]) })
	for _, n := range scen {
		s := r.scenarios[n]
		rep.Scenarios = append(rep.Scenarios, ScenarioStats{Latency: latencyOf(n, &s.hist), Started: s.started, Succeeded: s.succeeded, Failed: s.failed})
	}
	for k, e := range r.errs {
		rep.ErrorKinds = append(rep.ErrorKinds, ErrorKind{Kind: k, Count: e.count, Steps: e.steps, Example: e.example})
	}
	sort.Slice(rep.ErrorKinds, func(i, j int) bool {
		a, b := rep.ErrorKinds[i], rep.ErrorKinds[j]
		return a.Count > b.Count || a.Count == b.Count && a.Kind < b.Kind
	})
	for i, s := range r.timeline {
		rep.Timeline = append(rep.Timeline, Second{T: i, Sent: s.sent, OK: s.ok, Errors: s.errors, Dropped: s.dropped, Completed: s.completed,
			P50: ms(s.hist.quantile(0.5)), P99: ms(s.hist.quantile(0.99))})
	}
	return rep
}
