package cache_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/platform/cache"
	"github.com/globomantics/globomantics/internal/platform/clock"
)

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

func mustGet(t *testing.T, c cache.Cache, key string) (string, bool) {
	t.Helper()
	v, ok, err := c.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	if !ok && v != nil {
		t.Fatalf("Get(%q) missed but returned %q", key, v)
	}
	return string(v), ok
}

func set(t *testing.T, c cache.Cache, key, val string, ttl time.Duration) {
	t.Helper()
	if err := c.Set(context.Background(), key, []byte(val), ttl); err != nil {
		t.Fatal(err)
	}
}

func TestTTL(t *testing.T) {
	clk := clock.NewFake(t0)
	c := cache.NewMemory(clk, 10)
	set(t, c, "short", "s", time.Second)
	set(t, c, "long", "l", time.Minute)
	if v, ok := mustGet(t, c, "short"); !ok || v != "s" {
		t.Fatalf("fresh entry: %q, %v", v, ok)
	}
	clk.Advance(999 * time.Millisecond)
	if _, ok := mustGet(t, c, "short"); !ok {
		t.Fatal("entry expired before its TTL")
	}
	clk.Advance(time.Millisecond) // exactly at expiry
	if _, ok := mustGet(t, c, "short"); ok {
		t.Fatal("entry still served at its expiry time")
	}
	if c.Len() != 1 {
		t.Errorf("expired entry not dropped on Get: Len = %d", c.Len())
	}
	if v, ok := mustGet(t, c, "long"); !ok || v != "l" {
		t.Fatalf("long entry: %q, %v", v, ok)
	}
	// A zero TTL never serves.
	set(t, c, "zero", "z", 0)
	if _, ok := mustGet(t, c, "zero"); ok {
		t.Error("entry with zero TTL was served")
	}
	if _, ok := mustGet(t, c, "never-set"); ok {
		t.Error("hit on a key never set")
	}
}

func TestOverwrite(t *testing.T) {
	clk := clock.NewFake(t0)
	c := cache.NewMemory(clk, 10)
	set(t, c, "k", "v1", time.Second)
	clk.Advance(900 * time.Millisecond)
	set(t, c, "k", "v2", time.Second) // new value and a fresh TTL
	clk.Advance(900 * time.Millisecond)
	if v, ok := mustGet(t, c, "k"); !ok || v != "v2" {
		t.Fatalf("after overwrite: %q, %v", v, ok)
	}
	if c.Len() != 1 {
		t.Errorf("overwrite added an entry: Len = %d", c.Len())
	}
	clk.Advance(100 * time.Millisecond)
	if _, ok := mustGet(t, c, "k"); ok {
		t.Error("overwritten entry outlived its new TTL")
	}
}

func TestLRUEviction(t *testing.T) {
	c := cache.NewMemory(clock.NewFake(t0), 3)
	set(t, c, "a", "1", time.Hour)
	set(t, c, "b", "2", time.Hour)
	set(t, c, "c", "3", time.Hour)
	mustGet(t, c, "a")             // a is now the most recently used
	set(t, c, "d", "4", time.Hour) // evicts b, the least recently used
	if _, ok := mustGet(t, c, "b"); ok {
		t.Error("b survived; it was the least recently used")
	}
	for _, k := range []string{"a", "c", "d"} {
		if _, ok := mustGet(t, c, k); !ok {
			t.Errorf("%s was evicted", k)
		}
	}
	// Order is now (most recent first) d, c, a. Overwriting a refreshes it.
	set(t, c, "a", "1b", time.Hour)
	set(t, c, "e", "5", time.Hour) // evicts c
	if _, ok := mustGet(t, c, "c"); ok {
		t.Error("c survived")
	}
	if c.Len() != 3 {
		t.Errorf("Len = %d, want 3", c.Len())
	}
	if v, _ := mustGet(t, c, "a"); v != "1b" {
		t.Errorf("a = %q", v)
	}
}

func TestDelete(t *testing.T) {
	c := cache.NewMemory(clock.NewFake(t0), 3)
	set(t, c, "a", "1", time.Hour)
	set(t, c, "b", "2", time.Hour)
	if err := c.Delete(context.Background(), "a"); err != nil {
		t.Fatal(err)
	}
	if _, ok := mustGet(t, c, "a"); ok {
		t.Error("deleted key still served")
	}
	if err := c.Delete(context.Background(), "missing"); err != nil {
		t.Errorf("Delete of a missing key: %v", err)
	}
	if c.Len() != 1 {
		t.Errorf("Len = %d, want 1", c.Len())
	}
	// The freed slot is reused without evicting b.
	set(t, c, "c", "3", time.Hour)
	set(t, c, "d", "4", time.Hour)
	if _, ok := mustGet(t, c, "b"); !ok {
		t.Error("b was evicted although the cache was not full")
	}
}

func TestDefaultSize(t *testing.T) {
	c := cache.NewMemory(clock.NewFake(t0), 0)
	for i := 0; i < 10001; i++ {
		set(t, c, fmt.Sprint(i), "x", time.Hour)
	}
	if c.Len() != 10000 {
		t.Errorf("Len = %d, want the default 10000", c.Len())
	}
	if _, ok := mustGet(t, c, "0"); ok {
		t.Error("the oldest entry was not evicted")
	}
}

func TestConcurrentUse(t *testing.T) {
	clk := clock.NewFake(t0)
	c := cache.NewMemory(clk, 50)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				k := fmt.Sprint((g*7 + i) % 80)
				switch i % 3 {
				case 0:
					_ = c.Set(context.Background(), k, []byte(k), time.Minute)
				case 1:
					if v, ok, _ := c.Get(context.Background(), k); ok && string(v) != k {
						t.Errorf("key %s holds %q", k, v)
					}
				default:
					_ = c.Delete(context.Background(), k)
				}
				clk.Advance(time.Millisecond)
			}
		}()
	}
	wg.Wait()
	if c.Len() > 50 {
		t.Errorf("Len = %d, over the limit of 50", c.Len())
	}
}
