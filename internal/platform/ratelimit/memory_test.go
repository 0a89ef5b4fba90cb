package ratelimit_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/platform/clock"
	"github.com/globomantics/globomantics/internal/platform/ratelimit"
	"github.com/globomantics/globomantics/internal/platform/ratelimit/ratelimittest"
)

func TestMemoryConformance(t *testing.T) {
	ratelimittest.Test(t, func(t *testing.T, clk clock.Clock) ratelimit.Limiter {
		return ratelimit.NewMemory(clk, 0)
	})
}

// A small bound must not break the suite's arithmetic for the few keys it
// uses.
func TestMemoryConformanceSmallBound(t *testing.T) {
	ratelimittest.Test(t, func(t *testing.T, clk clock.Clock) ratelimit.Limiter {
		return ratelimit.NewMemory(clk, 16)
	})
}

var lim = ratelimit.Limit{Events: 10, Period: 10 * time.Minute, Burst: 2}

func TestMemoryForgetsIdleKeys(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	m := ratelimit.NewMemory(clk, 0)
	ctx := context.Background()
	for i := range 1000 {
		if ok, _, _ := m.Allow(ctx, fmt.Sprint("k", i), lim); !ok {
			t.Fatalf("first event of key %d denied", i)
		}
	}
	if n := m.Len(); n != 1000 {
		t.Fatalf("Len = %d, want 1000", n)
	}
	clk.Advance(2 * time.Minute) // every key is back to a full budget, and a sweep is due
	if ok, _, _ := m.Allow(ctx, "fresh", lim); !ok {
		t.Fatal("fresh key denied")
	}
	if n := m.Len(); n != 1 {
		t.Fatalf("Len after the sweep = %d, want 1 (idle keys forgotten)", n)
	}
}

func TestMemoryIsBounded(t *testing.T) {
	clk := clock.NewFake(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	m := ratelimit.NewMemory(clk, 100)
	ctx := context.Background()
	// A key spraying attack (every key still limited) never grows the
	// map past its bound.
	for i := range 10_000 {
		m.Allow(ctx, fmt.Sprint("spray", i), lim)
		m.Allow(ctx, fmt.Sprint("spray", i), lim)
		clk.Advance(time.Millisecond)
		if n := m.Len(); n > 100 {
			t.Fatalf("Len = %d after %d keys, want at most 100", n, i+1)
		}
	}
	// A key that is limited right now and was just used survives a few
	// evictions: the evicted keys are the most nearly recovered.
	m.Allow(ctx, "victim", lim)
	m.Allow(ctx, "victim", lim)
	if ok, _, _ := m.Allow(ctx, "victim", lim); ok {
		t.Fatal("victim allowed a third event at once")
	}
	for i := range 5 {
		m.Allow(ctx, fmt.Sprint("more", i), lim)
	}
	if ok, _, _ := m.Allow(ctx, "victim", lim); ok {
		t.Fatal("victim's state was evicted before older keys'")
	}
}

func TestLimitArithmetic(t *testing.T) {
	l := ratelimit.Limit{Events: 10, Period: 15 * time.Minute, Burst: 5}
	if got := l.Interval(); got != 90*time.Second {
		t.Errorf("Interval = %v, want 90s", got)
	}
	if got := l.Tolerance(); got != 6*time.Minute {
		t.Errorf("Tolerance = %v, want 6m", got)
	}
	if (ratelimit.Limit{}).Interval() != 0 {
		t.Error("zero Limit has an interval")
	}
}
