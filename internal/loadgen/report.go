package loadgen

import (
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
)

// Report is the result of a run, as printed, written as JSON (--json) and
// drawn as HTML (--html). Latencies are in milliseconds; request latencies
// count from the moment a request was due, so the first request of a
// session includes any lateness of the generator itself.
type Report struct {
	URL         string         `json:"url"`
	TargetRate  float64        `json:"target_rate"`
	Duration    string         `json:"duration"`
	Elapsed     string         `json:"elapsed"`
	Interrupted bool           `json:"interrupted"`
	Mix         map[string]int `json:"mix"`
	MaxInFlight int            `json:"max_inflight"`
	Seed        int64          `json:"seed"`
	// Arrivals were due; Sent started; Dropped found max-inflight sessions
	// running and were not started; Cancelled were cut short by an
	// interrupt.
	Arrivals     int     `json:"arrivals"`
	Sent         int     `json:"sent"`
	Dropped      int     `json:"dropped"`
	Cancelled    int     `json:"cancelled"`
	AchievedRate float64 `json:"achieved_rate"`
	Requests     int     `json:"requests"`
	OK           int     `json:"ok"`
	Errors       int     `json:"errors"`
	RequestRate  float64 `json:"request_rate"`
	// Status429 counts the answers that were 429 Too Many Requests.
	Status429  int             `json:"status_429"`
	Orders     Orders          `json:"orders"`
	Overall    StepStats       `json:"overall"`
	Steps      []StepStats     `json:"steps"`
	Scenarios  []ScenarioStats `json:"scenarios"`
	ErrorKinds []ErrorKind     `json:"error_kinds"`
	Timeline   []Second        `json:"timeline"`
}

// Latency is a latency distribution in milliseconds.
type Latency struct {
	Name  string  `json:"name"`
	Count int     `json:"count"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
	Mean  float64 `json:"mean_ms"`
}

// StepStats is one kind of request (home, add_to_cart, checkout_ok, ...):
// its answers' latencies, how many were as expected and how many not.
type StepStats struct {
	Latency
	Requests int `json:"requests"`
	OK       int `json:"ok"`
	Errors   int `json:"errors"`
}

// ScenarioStats is one kind of shopper session; its latency is that of
// the whole sessions without an error, from their intended start.
type ScenarioStats struct {
	Latency
	Started   int `json:"started"`
	Succeeded int `json:"succeeded"`
	Failed    int `json:"failed"`
}

// ErrorKind counts one kind of failure, by step.
type ErrorKind struct {
	Kind    string         `json:"kind"`
	Count   int            `json:"count"`
	Steps   map[string]int `json:"steps,omitempty"`
	Example string         `json:"example,omitempty"`
}

// Orders counts how checkouts ended: confirmed, declined as the declined
// test card must be, rolled back after the transient-failure card, or
// still pending when the generator gave up polling.
type Orders struct {
	Confirmed       int `json:"confirmed"`
	Declined        int `json:"declined"`
	TransientFailed int `json:"transient_failed"`
	Pending         int `json:"pending"`
}

// Second is one second of the run: arrivals due in it, answers and
// sessions ended in it, and the latency of those answers.
type Second struct {
	T         int     `json:"t"`
	Sent      int     `json:"sent"`
	OK        int     `json:"ok"`
	Errors    int     `json:"errors"`
	Dropped   int     `json:"dropped"`
	Completed int     `json:"completed_sessions"`
	P50       float64 `json:"p50_ms"`
	P99       float64 `json:"p99_ms"`
}

var stepNames = []string{"catalog", "home", "category", "product", "search", "register", "login", "me",
	"add_to_cart", "view_cart", "checkout_ok", "checkout_declined", "checkout_transient", "checkout_status", "checkout_outcome"}

func stepOrder(name string) int {
	if i := slices.Index(stepNames, name); i >= 0 {
		return i
	}
	return len(stepNames)
}

func scenarioOrder(name string) int {
	if i := slices.Index(Scenarios, name); i >= 0 {
		return i
	}
	return len(Scenarios)
}

// WriteText writes the report for a terminal.
func (r Report) WriteText(w io.Writer) error {
	var b strings.Builder
	state := "completed"
	if r.Interrupted {
		state = "interrupted"
	}
	fmt.Fprintf(&b, "Load against %s: %s, %s of %s planned\n", r.URL, state, r.Elapsed, r.Duration)
	fmt.Fprintf(&b, "Throughput: %.1f sessions/s achieved of %.1f/s target (%d arrivals: %d sent, %d dropped over capacity, %d cut short); %d requests, %.1f/s\n",
		r.AchievedRate, r.TargetRate, r.Arrivals, r.Sent, r.Dropped, r.Cancelled, r.Requests, r.RequestRate)
	fmt.Fprintf(&b, "Orders: %d confirmed, %d declined (declined card, as expected), %d rolled back (transient-failure card, as expected), %d still pending\n",
		r.Orders.Confirmed, r.Orders.Declined, r.Orders.TransientFailed, r.Orders.Pending)
	if r.Orders.Pending > 0 {
		b.WriteString("  (pending: still running when the session stopped following it; the shop retries the transient-failure card for 30 s)\n")
	}
	b.WriteString("\nLatency (ms, from the intended start):\n")
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "step\trequests\tok\terrors\tp50\tp90\tp99\tmax\t")
	row := func(s StepStats) {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%.1f\t%.1f\t%.1f\t%.1f\t\n", s.Name, s.Requests, s.OK, s.Errors, s.P50, s.P90, s.P99, s.Max)
	}
	for _, s := range r.Steps {
		row(s)
	}
	row(r.Overall)
	_ = tw.Flush()
	b.WriteString("\nSessions (ms, whole sessions without error):\n")
	tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tstarted\tsucceeded\tfailed\tp50\tp90\tp99\tmax\t")
	for _, s := range r.Scenarios {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%.1f\t%.1f\t%.1f\t%.1f\t\n", s.Name, s.Started, s.Succeeded, s.Failed, s.P50, s.P90, s.P99, s.Max)
	}
	_ = tw.Flush()
	if len(r.ErrorKinds) == 0 {
		b.WriteString("\nErrors: none\n")
	} else {
		b.WriteString("\nErrors by kind:\n")
		for _, e := range r.ErrorKinds {
			fmt.Fprintf(&b, "  %6d  %s%s\n", e.Count, e.Kind, stepList(e.Steps))
			if e.Example != "" {
				fmt.Fprintf(&b, "          e.g. %s\n", e.Example)
			}
		}
	}
	if r.Status429 > 0 {
		fmt.Fprintf(&b, "\n%d answers were 429: the shop rate-limits login, registration and checkout per client address;\n"+
			"a load test from one machine needs the shop started with --rate-limits=false.\n", r.Status429)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func stepList(m map[string]int) string {
	if len(m) == 0 {
		return ""
	}
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return stepOrder(names[i]) < stepOrder(names[j]) })
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = fmt.Sprintf("%s %d", n, m[n])
	}
	return " (" + strings.Join(parts, ", ") + ")"
}
