// Package fault injects failures into a running process without code edits,
// for crash and chaos tests and for demonstrations: a named point (a saga
// step, before or after it) can be made to fail, hang or crash the process,
// and calls to a named service can be slowed down. An Injector with no rules
// does nothing, and a process has none unless configured (--faults, or the
// checkout service's admin endpoint).
//
// A rule is written "<point>=<action>", rules separated by commas:
//
//	before:capture_payment=crash     kill the process (SIGKILL) right before the step
//	after:create_order=fail          the step runs, then reports a transient failure
//	after:create_shipment=refuse     the step runs, then is refused for good (a roll-back)
//	before:reserve_stock=hang        the step's call hangs until its deadline
//	service:payment=250ms            every call to the payment service waits 250 ms first
//	before:authorize_payment=fail*2  fail twice, then behave
//	mid:outbox_batch=crash*1         die half-way through a step, once
//	before:handle=20ms               wait 20 ms at the point (at most 1m), then go on
//
// A point is named before:, after: or mid: (part-way through) its step.
// Points outside checkout: the outbox relay's before:outbox_publish (rows
// claimed, nothing published), mid:outbox_batch (half of a batch published)
// and after:outbox_publish (a batch acknowledged by the broker, its rows not
// yet deleted); a bus consumer's before:handle (a message received, its
// handler not yet called: a delay there slows the consumer down) and
// after:handle (the handler succeeded, the message is not yet acknowledged).
package fault

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/globomantics/globomantics/internal/platform/errs"
)

// Actions a rule can take at its point.
const (
	Fail   = "fail"   // return a transient error (errs.Unavailable): retried
	Refuse = "refuse" // return a permanent refusal (errs.Conflict): not retried
	Hang   = "hang"   // block until the context ends, then fail
	Crash  = "crash"  // kill the process with SIGKILL: no clean-up, no deferred code
	delay  = "delay"  // a rule written with a duration: wait, then go on
)

type rule struct {
	action string
	left   int           // how many more times it fires; -1 for always
	d      time.Duration // the wait of a delay
}

// Injector holds the rules of one process. The zero value is unusable; use
// New. It is safe for concurrent use.
type Injector struct {
	mu      sync.Mutex
	rules   map[string]*rule
	latency map[string]time.Duration
	crash   func()
}

// New returns an injector with no rules. crash is what Crash does; nil
// means SIGKILL to this process.
func New(crash func()) *Injector {
	if crash == nil {
		crash = func() { _ = syscall.Kill(os.Getpid(), syscall.SIGKILL) }
	}
	return &Injector{rules: map[string]*rule{}, latency: map[string]time.Duration{}, crash: crash}
}

// Set replaces every rule with those of spec ("" clears them all).
// errs.Invalid for a malformed spec, and then nothing changes.
func (i *Injector) Set(spec string) error {
	rules, lat, err := parse(spec)
	if err != nil {
		return err
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	i.rules, i.latency = rules, lat
	return nil
}

// String returns the rules in force, in the syntax Set reads.
func (i *Injector) String() string {
	i.mu.Lock()
	defer i.mu.Unlock()
	var out []string
	for p, r := range i.rules {
		s := p + "=" + r.action
		if r.action == delay {
			s = p + "=" + r.d.String()
		}
		if r.left >= 0 {
			s += "*" + strconv.Itoa(r.left)
		}
		out = append(out, s)
	}
	for svc, d := range i.latency {
		out = append(out, "service:"+svc+"="+d.String())
	}
	slices.Sort(out)
	return strings.Join(out, ",")
}

func parse(spec string) (map[string]*rule, map[string]time.Duration, error) {
	rules, lat := map[string]*rule{}, map[string]time.Duration{}
	for _, part := range strings.Split(spec, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		point, action, ok := strings.Cut(part, "=")
		if !ok || point == "" || action == "" {
			return nil, nil, errs.E(errs.Invalid, errs.Msg("fault %q: want <point>=<action>", part))
		}
		if svc, ok := strings.CutPrefix(point, "service:"); ok {
			d, err := time.ParseDuration(action)
			if err != nil || d < 0 || d > time.Minute || svc == "" {
				return nil, nil, errs.E(errs.Invalid, errs.Msg("fault %q: want service:<name>=<duration up to 1m>", part))
			}
			lat[svc] = d
			continue
		}
		if !strings.HasPrefix(point, "before:") && !strings.HasPrefix(point, "after:") && !strings.HasPrefix(point, "mid:") {
			return nil, nil, errs.E(errs.Invalid, errs.Msg("fault %q: the point must start with before:, after: or mid:", part))
		}
		left := -1
		if a, n, ok := strings.Cut(action, "*"); ok {
			c, err := strconv.Atoi(n)
			if err != nil || c < 1 {
				return nil, nil, errs.E(errs.Invalid, errs.Msg("fault %q: the count after * must be a positive number", part))
			}
			action, left = a, c
		}
		var d time.Duration
		switch action {
		case Fail, Refuse, Hang, Crash:
		default:
			var err error
			if d, err = time.ParseDuration(action); err != nil || d < 0 || d > time.Minute {
				return nil, nil, errs.E(errs.Invalid, errs.Msg("fault %q: the action must be fail, refuse, hang, crash or a delay up to 1m", part))
			}
			action = delay
		}
		rules[point] = &rule{action: action, left: left, d: d}
	}
	return rules, lat, nil
}

// ErrCrashed is returned by At after a Crash whose crash func returned (a
// test's): the caller must stop at once, writing nothing, as a killed
// process would.
var ErrCrashed = errors.New("fault: crashed")

// At applies the rule of point, if any: nil when there is none (or it has
// fired its count), an errs.Unavailable error for Fail, the same after ctx
// ends for Hang; Crash kills the process (or returns ErrCrashed); a delay
// waits, then returns nil (errs.Unavailable if ctx ends first).
func (i *Injector) At(ctx context.Context, point string) error {
	if i == nil {
		return nil
	}
	i.mu.Lock()
	r := i.rules[point]
	action, d := "", time.Duration(0)
	if r != nil && r.left != 0 {
		action, d = r.action, r.d
		if r.left > 0 {
			r.left--
		}
	}
	i.mu.Unlock()
	switch action {
	case delay:
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return errs.E(errs.Unavailable, errs.Msg("%s: deadline during injected delay", point), ctx.Err())
		}
	case Fail:
		return errs.E(errs.Unavailable, errs.Msg("injected fault at %s", point))
	case Refuse:
		return errs.E(errs.Conflict, errs.Msg("injected refusal at %s", point))
	case Hang:
		<-ctx.Done()
		return errs.E(errs.Unavailable, errs.Msg("injected hang at %s", point), ctx.Err())
	case Crash:
		fmt.Fprintf(os.Stderr, "fault: crashing at %s\n", point)
		i.crash()
		// A crash func that returns (an in-process test) still must not
		// let the caller carry on as if nothing happened.
		return ErrCrashed
	}
	return nil
}

// Delay waits the latency configured for calls to service, if any; an
// errs.Unavailable error if ctx ends first.
func (i *Injector) Delay(ctx context.Context, service string) error {
	if i == nil {
		return nil
	}
	i.mu.Lock()
	d := i.latency[service]
	i.mu.Unlock()
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return errs.E(errs.Unavailable, errs.Msg("%s: deadline during injected latency", service), ctx.Err())
	}
}
