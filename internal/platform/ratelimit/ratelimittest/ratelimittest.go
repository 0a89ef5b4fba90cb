// Package ratelimittest is the conformance suite every ratelimit.Limiter
// implementation runs: Test(t, newLimiter) checks the budget arithmetic,
// Retry-After, key independence, Reset and concurrent use against a fake
// clock.
package ratelimittest

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/platform/clock"
	"github.com/globomantics/globomantics/internal/platform/ratelimit"
)

// Factory returns a new, empty limiter that reads time from clk. An
// implementation that keeps its state elsewhere (a shared store) must give
// each call fresh keys, for instance with a per-test key prefix.
type Factory func(t *testing.T, clk clock.Clock) ratelimit.Limiter

// t0 is the fake clock's start.
var t0 = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

// Test runs the conformance suite against the limiters newLimiter makes.
func Test(t *testing.T, newLimiter Factory) {
	t.Helper()
	run := func(name string, f func(t *testing.T, l ratelimit.Limiter, clk *clock.Fake)) {
		t.Run(name, func(t *testing.T) {
			clk := clock.NewFake(t0)
			f(t, newLimiter(t, clk), clk)
		})
	}
	run("BurstThenDeny", testBurstThenDeny)
	run("RetryAfterIsHonest", testRetryAfter)
	run("DeniedDoesNotSpend", testDeniedDoesNotSpend)
	run("SustainedRate", testSustainedRate)
	run("FullRecovery", testFullRecovery)
	run("KeysAreIndependent", testKeysIndependent)
	run("Reset", testReset)
	run("Disabled", testDisabled)
	run("BurstDefaultsToEvents", testBurstDefault)
	run("Concurrent", testConcurrent)
}

func allow(t *testing.T, l ratelimit.Limiter, key string, lim ratelimit.Limit) (bool, time.Duration) {
	t.Helper()
	ok, retry, err := l.Allow(context.Background(), key, lim)
	if err != nil {
		t.Fatalf("Allow(%q): %v", key, err)
	}
	if ok && retry != 0 {
		t.Fatalf("Allow(%q) allowed with retryAfter %v, want 0", key, retry)
	}
	if !ok && retry <= 0 {
		t.Fatalf("Allow(%q) denied with retryAfter %v, want > 0", key, retry)
	}
	return ok, retry
}

// spend allows n events on key and fails if any is denied.
func spend(t *testing.T, l ratelimit.Limiter, key string, lim ratelimit.Limit, n int) {
	t.Helper()
	for i := range n {
		if ok, retry := allow(t, l, key, lim); !ok {
			t.Fatalf("event %d of %d on %q denied (retry after %v), want allowed", i+1, n, key, retry)
		}
	}
}

func wantDenied(t *testing.T, l ratelimit.Limiter, key string, lim ratelimit.Limit) time.Duration {
	t.Helper()
	ok, retry := allow(t, l, key, lim)
	if !ok {
		return retry
	}
	t.Fatalf("event on %q allowed, want denied", key)
	return 0
}

// near reports whether got is within a millisecond of want (a shared store
// may keep time in milliseconds).
func near(got, want time.Duration) bool {
	d := got - want
	return d > -time.Millisecond && d < time.Millisecond
}

// limit5 is 5 at once, then one a minute.
var limit5 = ratelimit.Limit{Events: 10, Period: 10 * time.Minute, Burst: 5}

func testBurstThenDeny(t *testing.T, l ratelimit.Limiter, _ *clock.Fake) {
	spend(t, l, "k", limit5, 5)
	for range 3 {
		wantDenied(t, l, "k", limit5)
	}
}

func testRetryAfter(t *testing.T, l ratelimit.Limiter, clk *clock.Fake) {
	spend(t, l, "k", limit5, 5)
	retry := wantDenied(t, l, "k", limit5)
	if !near(retry, time.Minute) {
		t.Fatalf("retryAfter = %v right after the burst, want 1m (one interval)", retry)
	}
	clk.Advance(20 * time.Second)
	retry = wantDenied(t, l, "k", limit5)
	if !near(retry, 40*time.Second) {
		t.Fatalf("retryAfter = %v 20s later, want 40s", retry)
	}
	clk.Advance(retry - 2*time.Millisecond)
	wantDenied(t, l, "k", limit5)
	clk.Advance(2 * time.Millisecond)
	spend(t, l, "k", limit5, 1)
	wantDenied(t, l, "k", limit5)
}

func testDeniedDoesNotSpend(t *testing.T, l ratelimit.Limiter, clk *clock.Fake) {
	spend(t, l, "k", limit5, 5)
	// Hammering a denied key must not push its recovery further out.
	for range 50 {
		wantDenied(t, l, "k", limit5)
		clk.Advance(time.Second)
	}
	clk.Advance(10 * time.Second) // 60s after the burst: one event earned
	spend(t, l, "k", limit5, 1)
	wantDenied(t, l, "k", limit5)
}

func testSustainedRate(t *testing.T, l ratelimit.Limiter, clk *clock.Fake) {
	// A client trying every second for an hour gets the burst plus one
	// event per interval: 5 + 60.
	allowed := 0
	for range 3600 {
		if ok, _ := allow(t, l, "k", limit5); ok {
			allowed++
		}
		clk.Advance(time.Second)
	}
	if allowed < 64 || allowed > 66 {
		t.Fatalf("allowed %d events in an hour at 1/s, want 65 (burst 5 + 60 earned)", allowed)
	}
}

func testFullRecovery(t *testing.T, l ratelimit.Limiter, clk *clock.Fake) {
	spend(t, l, "k", limit5, 5)
	wantDenied(t, l, "k", limit5)
	clk.Advance(5 * time.Minute) // 5 intervals: the bucket is full again
	spend(t, l, "k", limit5, 5)
	wantDenied(t, l, "k", limit5)
}

func testKeysIndependent(t *testing.T, l ratelimit.Limiter, _ *clock.Fake) {
	spend(t, l, "a", limit5, 5)
	wantDenied(t, l, "a", limit5)
	spend(t, l, "b", limit5, 5)
	wantDenied(t, l, "b", limit5)
	// The same key under another limit shares the timestamp but not the
	// tolerance: a bigger burst allows more.
	big := ratelimit.Limit{Events: 10, Period: 10 * time.Minute, Burst: 8}
	spend(t, l, "a", big, 3)
	wantDenied(t, l, "a", big)
	// Keys that differ only in case or in a trailing byte are different.
	spend(t, l, "A", limit5, 5)
	spend(t, l, "a\x00", limit5, 5)
}

func testReset(t *testing.T, l ratelimit.Limiter, _ *clock.Fake) {
	ctx := context.Background()
	spend(t, l, "k", limit5, 5)
	wantDenied(t, l, "k", limit5)
	if err := l.Reset(ctx, "k"); err != nil {
		t.Fatalf("Reset: %v", err)
	}
	spend(t, l, "k", limit5, 5)
	wantDenied(t, l, "k", limit5)
	if err := l.Reset(ctx, "never-seen"); err != nil {
		t.Fatalf("Reset of an unknown key: %v", err)
	}
}

func testDisabled(t *testing.T, l ratelimit.Limiter, _ *clock.Fake) {
	for _, lim := range []ratelimit.Limit{{}, {Events: -1, Period: time.Minute}, {Events: 5}} {
		if lim.Enabled() {
			t.Fatalf("%+v is Enabled", lim)
		}
		spend(t, l, "k", lim, 1000)
	}
}

func testBurstDefault(t *testing.T, l ratelimit.Limiter, _ *clock.Fake) {
	lim := ratelimit.Limit{Events: 3, Period: time.Hour}
	spend(t, l, "k", lim, 3)
	if retry := wantDenied(t, l, "k", lim); !near(retry, 20*time.Minute) {
		t.Fatalf("retryAfter = %v, want 20m", retry)
	}
}

func testConcurrent(t *testing.T, l ratelimit.Limiter, _ *clock.Fake) {
	lim := ratelimit.Limit{Events: 1, Period: time.Hour, Burst: 25}
	var allowed atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, 200)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 25 {
				ok, _, err := l.Allow(context.Background(), "shared", lim)
				if err != nil {
					errc <- err
					return
				}
				if ok {
					allowed.Add(1)
				}
				if _, _, err := l.Allow(context.Background(), fmt.Sprintf("own-%d", g), lim); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatalf("Allow: %v", err)
	}
	if n := allowed.Load(); n != 25 {
		t.Fatalf("200 concurrent events against a burst of 25 allowed %d, want exactly 25", n)
	}
}
