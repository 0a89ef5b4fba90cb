package edge

import (
	"sync"
	"sync/atomic"

	"github.com/globomantics/globomantics/internal/platform/clock"
)

// budgetWindow is the number of one-second buckets the retry budget sums.
const budgetWindow = 10

// retryBudget bounds retries to a share of the requests seen in the last
// budgetWindow seconds plus a minimum rate, so that retries cannot
// multiply the load on a pool that is failing everywhere (the budget of
// Finagle and gRPC's retry throttling, in a simple form).
type retryBudget struct {
	clock   clock.Clock
	percent int64 // retries allowed per 100 requests
	minRate int64 // retries allowed per second regardless of traffic

	mu      sync.Mutex // rotates buckets
	buckets [budgetWindow]budgetBucket
}

type budgetBucket struct {
	sec     atomic.Int64
	reqs    atomic.Int64
	retries atomic.Int64
}

func newRetryBudget(c clock.Clock, percent, minRate int) *retryBudget {
	return &retryBudget{clock: c, percent: int64(percent), minRate: int64(minRate)}
}

func (rb *retryBudget) bucket(sec int64) *budgetBucket {
	b := &rb.buckets[sec%budgetWindow]
	if b.sec.Load() != sec {
		rb.mu.Lock()
		if b.sec.Load() != sec {
			b.reqs.Store(0)
			b.retries.Store(0)
			b.sec.Store(sec)
		}
		rb.mu.Unlock()
	}
	return b
}

// request counts one request.
func (rb *retryBudget) request() {
	rb.bucket(rb.clock.Now().Unix()).reqs.Add(1)
}

// allow reports whether one more retry fits the budget, and counts it if so.
func (rb *retryBudget) allow() bool {
	now := rb.clock.Now().Unix()
	cur := rb.bucket(now)
	var reqs, retries int64
	for i := range rb.buckets {
		b := &rb.buckets[i]
		if s := b.sec.Load(); s > now-budgetWindow && s <= now {
			reqs += b.reqs.Load()
			retries += b.retries.Load()
		}
	}
	if retries*100 >= reqs*rb.percent+rb.minRate*budgetWindow*100 {
		return false
	}
	cur.retries.Add(1)
	return true
}

// nowNanos is the clock's time as unix nanoseconds.
func nowNanos(c clock.Clock) int64 { return c.Now().UnixNano() }
