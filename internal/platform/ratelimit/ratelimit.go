// Package ratelimit limits how often something may happen per key (a
// client address, an account): the shop's defence against password
// guessing, bulk registration and other abuse.
//
// Limits follow the generic cell rate algorithm (GCRA), a token bucket kept
// as one timestamp per key: a key may spend Limit.Burst events at once, and
// then earns one more every Limit.Period/Limit.Events. A key whose bucket is
// full again holds no state, so an implementation may forget it.
//
// Memory is the in-process implementation; a shared one (Redis, holding the
// same timestamp per key) can be added behind the same Limiter interface and
// must pass the ratelimittest conformance suite.
package ratelimit

import (
	"context"
	"time"
)

// Limiter decides, per key, whether one more event may happen now. Keys are
// opaque; callers namespace them ("login:client:…"). Implementations are
// safe for concurrent use.
type Limiter interface {
	// Allow spends one event of key's budget under l. When the budget is
	// spent it returns ok false, spends nothing, and retryAfter is how long
	// until one event will be allowed again (always positive). A Limit
	// that is not Enabled allows everything. err is set only when the
	// limiter itself failed (a shared store unreachable); ok and retryAfter
	// then mean nothing and the caller chooses to fail open or closed.
	Allow(ctx context.Context, key string, l Limit) (ok bool, retryAfter time.Duration, err error)
	// Reset gives key its full budget back, as if it had never been used;
	// resetting an unknown key is not an error.
	Reset(ctx context.Context, key string) error
}

// Limit is a budget: at most Burst events at once, refilled at Events per
// Period. The zero Limit is not Enabled (unlimited).
type Limit struct {
	Events int           // events earned per Period
	Period time.Duration // the period Events are earned over
	Burst  int           // events that may be spent at once; 0 or less means Events
}

// Enabled reports whether l limits anything: it needs positive Events and
// Period.
func (l Limit) Enabled() bool { return l.Events > 0 && l.Period > 0 }

// Interval is the time one event takes to earn back.
func (l Limit) Interval() time.Duration {
	if !l.Enabled() {
		return 0
	}
	return max(l.Period/time.Duration(l.Events), time.Nanosecond)
}

// burst is the bucket's size: Burst, or Events when Burst is not set.
func (l Limit) burst() int {
	if l.Burst > 0 {
		return l.Burst
	}
	return l.Events
}

// Tolerance is how far ahead of now a key's theoretical arrival time may
// run while still allowing an event: (burst-1) intervals.
func (l Limit) Tolerance() time.Duration {
	return time.Duration(l.burst()-1) * l.Interval()
}

// Decide is the GCRA step shared by implementations: given the key's stored
// theoretical arrival time tat (zero for a fresh key) and now, it says
// whether one event is allowed, the new tat to store when it is, and when
// it is not, how long until it would be. A stored tat at or before now
// means a full bucket: such a key may be forgotten.
func Decide(l Limit, tat, now time.Time) (ok bool, newTAT time.Time, retryAfter time.Duration) {
	if tat.Before(now) {
		tat = now
	}
	allowAt := tat.Add(-l.Tolerance())
	if now.Before(allowAt) {
		return false, tat, allowAt.Sub(now)
	}
	return true, tat.Add(l.Interval()), 0
}

// Off is a Limit that is not Enabled, for switching a limit off where a
// zero Limit means "the default".
var Off = Limit{Events: -1}
