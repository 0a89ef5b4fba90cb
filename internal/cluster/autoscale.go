package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/globomantics/globomantics/internal/platform/clock"
)

// Scaler is what the autoscaler needs of the supervisor: the processes it
// runs, and one more or one fewer instance of a scalable group. Add starts an
// instance (a storefront registers with the edge itself); Remove drains and
// stops the newest one and never goes below one.
type Scaler interface {
	Procs() []Proc
	Count(group string) int
	Add(ctx context.Context, group string) (Proc, error)
	Remove(ctx context.Context, group string) (Proc, error)
}

// Signal measures the load of one group from its processes (those of the
// group among the supervisor's Procs). An error means nothing is known this
// time: the autoscaler then neither grows nor shrinks the group.
type Signal interface {
	Measure(ctx context.Context, group string, procs []Proc) (Load, error)
}

// Load is one measurement of a group. A worker group's signal fills the
// queue fields (Queue true), a storefront group's the HTTP ones (HTTP true).
type Load struct {
	Queue bool // the queue fields were measured
	// Backlog is the messages of the group's consumer not yet acknowledged:
	// waiting (NumPending) and delivered but in flight (NumAckPending).
	Backlog int64
	// OldestAge is the age of the oldest message waiting; 0 if none or
	// unknown.
	OldestAge time.Duration
	// DrainRate is the messages acknowledged per second since the previous
	// measurement; RateKnown false on the first one.
	DrainRate float64
	RateKnown bool

	HTTP bool // the HTTP fields were measured
	// InFlight is the requests being served, summed over the instances.
	InFlight float64
	// P95 is the 95th percentile of the request durations since the
	// previous measurement, over every instance; 0 when no request ended.
	P95 time.Duration
	// Requests is how many requests ended since the previous measurement.
	Requests int64
}

// String shows the measured numbers, for decisions and logs.
func (l Load) String() string {
	var parts []string
	if l.Queue {
		parts = append(parts, fmt.Sprintf("backlog=%d", l.Backlog))
		if l.RateKnown {
			parts = append(parts, fmt.Sprintf("rate=%.1f/s", l.DrainRate))
		}
		if l.OldestAge > 0 {
			parts = append(parts, "oldest="+l.OldestAge.Round(time.Millisecond).String())
		}
	}
	if l.HTTP {
		parts = append(parts, fmt.Sprintf("in_flight=%g", l.InFlight), fmt.Sprintf("requests=%d", l.Requests))
		if l.P95 > 0 {
			parts = append(parts, "p95="+l.P95.Round(time.Microsecond).String())
		}
	}
	return strings.Join(parts, " ")
}

// Policy bounds a group and says when it is over or under its target.
// Every target left zero is ignored; the load is over target when any
// enabled target is exceeded, and low when every enabled one is under
// LowWater times its value.
type Policy struct {
	// Min and Max bound the instance count (Min is at least 1). A group
	// with no instance at all is left alone: the supervisor starts groups.
	Min, Max int
	// Step is how many instances one scale-up adds (0 means 1).
	Step int
	// ScaleUpCooldown is the least time between the end of a scale-up
	// (its instances ready) and the next.
	ScaleUpCooldown time.Duration
	// ScaleDownCooldown is how long the load must stay low, without a
	// break, before each removal of one instance (counted again from the
	// end of the previous removal).
	ScaleDownCooldown time.Duration
	// UpAfter is how long the load must stay over target before a
	// scale-up (0: the first measurement over target counts).
	UpAfter time.Duration
	// LowWater is the fraction of the targets under which the load is low
	// (0 means 0.5). The gap between it and 1 is the hysteresis.
	LowWater float64

	// Workers: the backlog per instance, the time the backlog takes to
	// drain at the measured rate, the age of the oldest waiting message.
	BacklogPerInstance float64
	MaxDrainTime       time.Duration
	MaxOldestAge       time.Duration

	// Storefronts: requests in flight per instance, the p95 latency
	// (counted only over intervals with at least MinRequests requests).
	InFlightPerInstance float64
	P95                 time.Duration
	MinRequests         int64
}

// WorkerPolicy is a default for a worker group: 1 to max instances, 20
// messages of backlog per instance or 30 s to drain it as targets.
func WorkerPolicy(max int) Policy {
	return Policy{Min: 1, Max: max, Step: 1, ScaleUpCooldown: 15 * time.Second, ScaleDownCooldown: time.Minute,
		BacklogPerInstance: 20, MaxDrainTime: 30 * time.Second}
}

// StorefrontPolicy is a default for the storefronts: min to max instances,
// 8 requests in flight per instance or a p95 of 250 ms as targets.
func StorefrontPolicy(min, max int) Policy {
	return Policy{Min: min, Max: max, Step: 1, ScaleUpCooldown: 15 * time.Second, ScaleDownCooldown: 90 * time.Second,
		InFlightPerInstance: 8, P95: 250 * time.Millisecond, MinRequests: 20}
}

func (p Policy) step() int    { return max(p.Step, 1) }
func (p Policy) minimum() int { return max(p.Min, 1) }
func (p Policy) maximum() int { return max(p.Max, p.minimum()) }
func (p Policy) lowWater() float64 {
	if p.LowWater <= 0 || p.LowWater >= 1 {
		return 0.5
	}
	return p.LowWater
}

// maxPressure stands for "infinitely" over target.
const maxPressure = 1000

// pressure is the load against the policy's targets with n instances: the
// largest ratio of measured to target (over 1: over target), with the
// numbers that gave it. ok is false when no enabled target could be judged.
func (p Policy) pressure(l Load, n int) (ratio float64, why string, ok bool) {
	n = max(n, 1)
	consider := func(r float64, format string, args ...any) {
		if !ok || r > ratio {
			ratio, why = r, fmt.Sprintf(format, args...)
		}
		ok = true
	}
	if l.Queue {
		if p.BacklogPerInstance > 0 {
			per := float64(l.Backlog) / float64(n)
			consider(per/p.BacklogPerInstance, "backlog %d over %d instances = %.1f each (target %g)", l.Backlog, n, per, p.BacklogPerInstance)
		}
		if p.MaxDrainTime > 0 && l.RateKnown {
			switch {
			case l.Backlog == 0:
				consider(0, "no backlog")
			case l.DrainRate <= 0:
				// A backlog and no progress: the workers cannot keep up (or
				// have not begun); far over target (finite, for JSON).
				consider(maxPressure, "backlog %d and nothing acknowledged in the interval", l.Backlog)
			default:
				d := time.Duration(float64(l.Backlog) / l.DrainRate * float64(time.Second))
				consider(d.Seconds()/p.MaxDrainTime.Seconds(), "backlog %d drains in %s at %.1f/s (target %s)", l.Backlog, d.Round(100*time.Millisecond), l.DrainRate, p.MaxDrainTime)
			}
		}
		if p.MaxOldestAge > 0 {
			consider(l.OldestAge.Seconds()/p.MaxOldestAge.Seconds(), "oldest waiting %s (target %s)", l.OldestAge.Round(time.Millisecond), p.MaxOldestAge)
		}
	}
	if l.HTTP {
		if p.InFlightPerInstance > 0 {
			per := l.InFlight / float64(n)
			consider(per/p.InFlightPerInstance, "%g requests in flight over %d instances = %.1f each (target %g)", l.InFlight, n, per, p.InFlightPerInstance)
		}
		if p.P95 > 0 && l.Requests >= max(p.MinRequests, 1) {
			consider(l.P95.Seconds()/p.P95.Seconds(), "p95 %s over %d requests (target %s)", l.P95.Round(time.Microsecond), l.Requests, p.P95)
		}
	}
	return ratio, why, ok
}

// Decision is one change of a group's instance count the autoscaler made
// (or tried: Err says why the supervisor failed it).
type Decision struct {
	Time     time.Time
	Group    string
	From, To int
	Reason   string // why, with the measured numbers
	Err      string // the supervisor's error, "" when the change went through
}

// String is the decision on one line: "15:04:05 mail 1->2: backlog ...".
func (d Decision) String() string {
	s := fmt.Sprintf("%s %s %d->%d: %s", d.Time.UTC().Format("15:04:05"), d.Group, d.From, d.To, d.Reason)
	if d.Err != "" {
		s += " (failed: " + d.Err + ")"
	}
	return s
}

// Group is one group the autoscaler manages: its policy and the signal
// measuring its load.
type Group struct {
	Policy Policy
	Signal Signal
}

// AutoscalerConfig configures NewAutoscaler.
type AutoscalerConfig struct {
	Scaler Scaler           // the supervisor
	Groups map[string]Group // by group name ("storefront", "mail", ...)
	Clock  clock.Clock      // nil: the wall clock
	Log    *slog.Logger     // nil: slog.Default()
	// Interval is the time between two steps of Run (0 means 5 s).
	Interval time.Duration
	// KeepDecisions bounds the decision log (0 means 200).
	KeepDecisions int
	// ActionTimeout bounds one Add or Remove (0 means 90 s).
	ActionTimeout time.Duration
}

// GroupStatus is what the autoscaler last saw of a group, for the control
// room.
type GroupStatus struct {
	Group     string
	Count     int
	Min, Max  int
	Load      Load
	Pressure  float64 // measured over target: above 1 is over target
	Why       string  // the numbers behind Pressure
	Err       string  // the last measurement's error, if it failed
	Measured  time.Time
	HighSince time.Time // over target since (zero: not over)
	LowSince  time.Time // low since (zero: not low)
	LastUp    time.Time // the last scale-up
}

// Autoscaler grows and shrinks groups of the fleet from their measured load,
// between each policy's Min and Max, with cooldowns. It is safe for
// concurrent use; Step and Run must not run at the same time.
type Autoscaler struct {
	scaler   Scaler
	groups   map[string]Group
	names    []string
	clock    clock.Clock
	log      *slog.Logger
	interval time.Duration
	keep     int
	action   time.Duration

	mu        sync.Mutex
	decisions []Decision
	status    map[string]*GroupStatus
}

// NewAutoscaler returns an autoscaler of cfg.Groups acting through
// cfg.Scaler. It does nothing until Step or Run is called.
func NewAutoscaler(cfg AutoscalerConfig) *Autoscaler {
	a := &Autoscaler{
		scaler: cfg.Scaler, groups: map[string]Group{}, clock: cfg.Clock, log: cfg.Log,
		interval: cfg.Interval, keep: cfg.KeepDecisions, action: cfg.ActionTimeout, status: map[string]*GroupStatus{},
	}
	if a.action <= 0 {
		a.action = 90 * time.Second
	}
	if a.clock == nil {
		a.clock = clock.Real{}
	}
	if a.log == nil {
		a.log = slog.Default()
	}
	if a.interval <= 0 {
		a.interval = 5 * time.Second
	}
	if a.keep <= 0 {
		a.keep = 200
	}
	for name, g := range cfg.Groups {
		a.groups[name] = g
		a.names = append(a.names, name)
		a.status[name] = &GroupStatus{Group: name, Min: g.Policy.minimum(), Max: g.Policy.maximum()}
	}
	slices.Sort(a.names)
	return a
}

// Run calls Step every interval until ctx ends; failures are logged and
// the next step tries again. It returns ctx's error, after closing the
// signals that have a Close method (their connections): Run is called once.
func (a *Autoscaler) Run(ctx context.Context) error {
	t := time.NewTicker(a.interval)
	defer t.Stop()
	defer a.closeSignals()
	for {
		if err := a.Step(ctx); err != nil && ctx.Err() == nil {
			a.log.Warn("autoscaler step", "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Step measures every group once and adds or removes instances where the
// policy says so: at most one scale-up (of Step instances) or one removal
// per group. It returns the measurement and supervisor failures, joined;
// the other groups are still stepped.
func (a *Autoscaler) Step(ctx context.Context) error {
	var errList []error
	procs := a.scaler.Procs()
	for _, name := range a.names {
		if err := a.stepGroup(ctx, name, procs); err != nil {
			errList = append(errList, fmt.Errorf("%s: %w", name, err))
		}
		if ctx.Err() != nil {
			break
		}
	}
	return errors.Join(errList...)
}

func (a *Autoscaler) stepGroup(ctx context.Context, name string, all []Proc) error {
	g := a.groups[name]
	pol := g.Policy
	now := a.clock.Now()
	n := a.scaler.Count(name)
	var procs []Proc
	for _, p := range all {
		if p.Group == name {
			procs = append(procs, p)
		}
	}
	load, merr := g.Signal.Measure(ctx, name, procs)

	a.mu.Lock()
	st := a.status[name]
	st.Count, st.Measured = n, now
	st.Err = ""
	if merr != nil {
		// Nothing known: neither grow nor shrink, and a low (or high)
		// spell is broken.
		st.Err = merr.Error()
		st.HighSince, st.LowSince = time.Time{}, time.Time{}
	}
	a.mu.Unlock()

	switch {
	case n == 0:
		return nil // not started (or stopped) by the supervisor: not ours to start
	case n < pol.minimum():
		return a.change(ctx, name, n, pol.minimum(), fmt.Sprintf("below the minimum %d", pol.minimum()))
	case n > pol.maximum():
		return a.change(ctx, name, n, n-1, fmt.Sprintf("above the maximum %d", pol.maximum()))
	}
	if merr != nil {
		return fmt.Errorf("measure: %w", merr)
	}
	ratio, why, ok := pol.pressure(load, n)

	a.mu.Lock()
	st.Load, st.Pressure, st.Why = load, ratio, why
	var to int
	var reason string
	switch {
	case !ok:
		st.HighSince, st.LowSince = time.Time{}, time.Time{}
	case ratio > 1:
		st.LowSince = time.Time{}
		if st.HighSince.IsZero() {
			st.HighSince = now
		}
		cooled := st.LastUp.IsZero() || now.Sub(st.LastUp) >= pol.ScaleUpCooldown
		if n < pol.maximum() && cooled && now.Sub(st.HighSince) >= pol.UpAfter {
			to = min(n+pol.step(), pol.maximum())
			reason = "over target: " + why
		}
	case ratio < pol.lowWater():
		st.HighSince = time.Time{}
		if st.LowSince.IsZero() {
			st.LowSince = now
		}
		if n > pol.minimum() && now.Sub(st.LowSince) >= pol.ScaleDownCooldown {
			to = n - 1
			reason = fmt.Sprintf("under %g of target for %s: %s", pol.lowWater(), now.Sub(st.LowSince).Round(time.Second), why)
		}
	default: // between the low-water mark and the target: hold
		st.HighSince, st.LowSince = time.Time{}, time.Time{}
	}
	a.mu.Unlock()

	if to == 0 {
		a.log.Debug("autoscaler holds", "group", name, "instances", n, "pressure", ratio, "load", load.String())
		return nil
	}
	err := a.change(ctx, name, n, to, reason)
	// The cooldowns count from the end of the change (a new instance
	// ready, an old one drained), failed or not: no retry storm.
	done := a.clock.Now()
	a.mu.Lock()
	if to > n {
		st.LastUp = done
	} else {
		st.LowSince = done // the next removal needs another whole cooldown
	}
	a.mu.Unlock()
	return err
}

// closeSignals closes each signal with a Close method once.
func (a *Autoscaler) closeSignals() {
	closed := map[any]bool{}
	for _, n := range a.names {
		if c, ok := a.groups[n].Signal.(io.Closer); ok && !closed[c] {
			closed[c] = true
			if err := c.Close(); err != nil {
				a.log.Warn("autoscaler: closing a signal", "group", n, "err", err)
			}
		}
	}
}

// change adds or removes instances of group, one at a time, from from to to,
// and records the decision.
func (a *Autoscaler) change(ctx context.Context, group string, from, to int, reason string) error {
	d := Decision{Time: a.clock.Now(), Group: group, From: from, To: to, Reason: reason}
	ctx, cancel := context.WithTimeout(ctx, a.action)
	defer cancel()
	var err error
	for n := from; n != to && err == nil; {
		if to > n {
			_, err = a.scaler.Add(ctx, group)
			n++
		} else {
			_, err = a.scaler.Remove(ctx, group)
			n--
		}
	}
	if err != nil {
		d.Err = err.Error()
		a.log.Warn("autoscaler change failed", "group", group, "from", from, "to", to, "reason", reason, "err", err)
	} else {
		a.log.Info("autoscaler scaled", "group", group, "from", from, "to", to, "reason", reason)
	}
	a.mu.Lock()
	a.decisions = append(a.decisions, d)
	if len(a.decisions) > a.keep {
		a.decisions = slices.Clone(a.decisions[len(a.decisions)-a.keep:])
	}
	a.mu.Unlock()
	if err != nil {
		return fmt.Errorf("scale %d->%d: %w", from, to, err)
	}
	return nil
}

// Decisions returns the recent decisions, oldest first (a copy).
func (a *Autoscaler) Decisions() []Decision {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.decisions)
}

// DecisionLines returns the recent decisions as lines, oldest first (newest
// last), for the control room.
func (a *Autoscaler) DecisionLines() []string {
	ds := a.Decisions()
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.String()
	}
	return out
}

// Status returns what the autoscaler last saw of each group, by group name.
func (a *Autoscaler) Status() []GroupStatus {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]GroupStatus, 0, len(a.names))
	for _, n := range a.names {
		out = append(out, *a.status[n])
	}
	return out
}
