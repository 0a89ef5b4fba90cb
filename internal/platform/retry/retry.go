// Package retry is the shop's one retry policy: how many times a failed
// operation is tried, and how long to wait between tries (exponential
// backoff with jitter, so that callers failing together do not retry
// together), and a retry budget that keeps retries from multiplying into a
// storm when a dependency is down. The HTTP client (httpx) and the checkout
// saga both use it; nothing else writes its own retry loop.
package retry

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/globomantics/globomantics/internal/platform/errs"
)

// Policy is how often and how patiently an operation is tried.
type Policy struct {
	// Tries is the number of tries in all, the first included; 0 means
	// no limit but the context's.
	Tries int
	// Base is the longest wait after the first failure; each further
	// failure doubles it, up to Max.
	Base time.Duration
	// Max caps the wait between tries, a peer's Retry-After hint included.
	Max time.Duration
}

// Default is the policy of a call between services: four tries (one call
// and three retries) with waits of at most 50, 100 and 200 ms, so that a
// call rides out an instance restarting or a primary failing over (about
// a second) without holding its caller much longer than that; Max lets a
// peer's Retry-After hint stretch a wait up to a second.
var Default = Policy{Tries: 4, Base: 50 * time.Millisecond, Max: 1 * time.Second}

// Backoff returns how long to wait after the n-th failed try (n >= 1):
// a random duration in [d/2, d] where d is Base*2^(n-1) capped at Max
// ("equal jitter": never zero, never in step with other callers).
func (p Policy) Backoff(n int) time.Duration {
	if n < 1 {
		n = 1
	}
	d := p.Base
	for i := 1; i < n && (p.Max <= 0 || d < p.Max); i++ {
		if d > time.Duration(1<<62)/2 {
			break // no overflow for a Policy without Max
		}
		d *= 2
	}
	if p.Max > 0 && d > p.Max {
		d = p.Max
	}
	if d <= 0 {
		return 0
	}
	half := d / 2
	return half + rand.N(d-half+1)
}

// Delay is the wait after the n-th failed try that failed with err: the
// jittered Backoff, lengthened to err's Retry-After hint (errs.RetryAfterOf)
// when that is longer, but never beyond Max (or the backoff itself, when
// that is longer than Max).
func (p Policy) Delay(n int, err error) time.Duration {
	wait := p.Backoff(n)
	if ra := errs.RetryAfterOf(err); ra > wait {
		if p.Max > 0 {
			ra = min(ra, max(p.Max, wait))
		}
		wait = ra
	}
	return wait
}

// Retryable reports whether err may go away if the operation is tried
// again: a transient failure (errs.Unavailable).
func Retryable(err error) bool { return err != nil && errs.Temporary(err) }

// Do calls fn until it succeeds, fails with an error that is not
// Retryable, has been tried p.Tries times, or ctx ends; it returns fn's
// last error (never ctx's own, unless fn returned it). The wait between
// tries is p.Delay; when ctx's deadline would pass before the wait ends,
// Do returns at once rather than wait for nothing.
func Do(ctx context.Context, p Policy, fn func(ctx context.Context) error) error {
	return DoIf(ctx, p, Retryable, fn)
}

// DoIf is Do with the decision which errors are worth another try made by
// retryable instead of Retryable: for a layer whose transient errors are
// its own (a serialization failure of a database transaction).
func DoIf(ctx context.Context, p Policy, retryable func(error) bool, fn func(ctx context.Context) error) error {
	for n := 1; ; n++ {
		err := fn(ctx)
		if err == nil || !retryable(err) || (p.Tries > 0 && n >= p.Tries) || ctx.Err() != nil {
			return err
		}
		if !Sleep(ctx, p.Delay(n, err)) {
			return err
		}
	}
}

// Sleep waits for d and reports true, or reports false at once when ctx's
// deadline is nearer than d, or as soon as ctx ends.
func Sleep(ctx context.Context, d time.Duration) bool {
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < d {
		return false
	}
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Budget limits retries to a share of the calls made, so that when a
// dependency fails, its callers' retries add a bounded load rather than
// multiplying it (Finagle's and gRPC's retry budgets). It is a token
// bucket: every call deposits Ratio of a token, time adds PerSecond tokens
// a second (the floor that lets a quiet caller still retry), the balance
// is capped at max(PerSecond, 1), and each retry takes a whole token. A
// Budget is safe for concurrent use.
type Budget struct {
	ratio, perSecond, capacity float64

	mu      sync.Mutex
	balance float64
	last    time.Time
	now     func() time.Time
}

// The numbers of the retry budget of a client between services.
const (
	// DefaultRatio: retries add at most 20% to the calls made, so that a
	// failing dependency sees at most 1.2 times its normal load.
	DefaultRatio = 0.2
	// DefaultPerSecond: a caller may retry 10 times a second however few
	// calls it makes, so that a quiet caller still rides out a restart.
	DefaultPerSecond = 10
)

// NewBudget returns a full budget that allows ratio retries per call made
// plus perSecond retries a second. Negative numbers count as zero.
func NewBudget(ratio, perSecond float64) *Budget {
	ratio, perSecond = max(ratio, 0), max(perSecond, 0)
	c := max(perSecond, 1)
	return &Budget{ratio: ratio, perSecond: perSecond, capacity: c, balance: c, now: time.Now}
}

// refill adds the floor's tokens for the time passed; b.mu is held.
func (b *Budget) refill() {
	now := b.now()
	if !b.last.IsZero() && b.perSecond > 0 {
		b.balance += now.Sub(b.last).Seconds() * b.perSecond
	}
	b.last = now
	b.balance = min(b.balance, b.capacity)
}

// Deposit records a call (not a retry): it earns Ratio of a retry.
func (b *Budget) Deposit() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill()
	b.balance = min(b.balance+b.ratio, b.capacity)
}

// Withdraw takes one retry from the budget and reports true, or reports
// false, taking nothing, when the budget is spent: the caller must then
// give up with the error it has instead of retrying.
func (b *Budget) Withdraw() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill()
	// A little slack, so that five deposits of 0.2 buy one retry despite
	// rounding.
	if b.balance < 1-1e-9 {
		return false
	}
	b.balance = max(b.balance-1, 0)
	return true
}
