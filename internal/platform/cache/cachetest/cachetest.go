// Package cachetest is the conformance suite of cache.Cache: every
// implementation (the in-process LRU, Redis) runs the same tests.
package cachetest

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/platform/cache"
)

// Test runs the suite. newCache returns an empty cache for one subtest,
// which may use t.Cleanup to close it; each subtest gets its own. Expiry is
// tested on the real clock with short TTLs, so the cache must read the real
// time (for Memory, clock.Real).
func Test(t *testing.T, newCache func(t *testing.T) cache.Cache) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, c cache.Cache)
	}{
		{"MissingKey", testMissingKey},
		{"SetGet", testSetGet},
		{"BinaryValues", testBinaryValues},
		{"EmptyValue", testEmptyValue},
		{"CallerBufferReused", testCallerBufferReused},
		{"Overwrite", testOverwrite},
		{"Delete", testDelete},
		{"DistinctKeys", testDistinctKeys},
		{"ZeroTTL", testZeroTTL},
		{"Expiry", testExpiry},
		{"OverwriteRefreshesTTL", testOverwriteRefreshesTTL},
		{"ConcurrentUse", testConcurrentUse},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newCache(t)) })
	}
}

func get(t *testing.T, c cache.Cache, key string) ([]byte, bool) {
	t.Helper()
	v, ok, err := c.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	if !ok && v != nil {
		t.Fatalf("Get(%q) missed but returned %q", key, v)
	}
	return v, ok
}

func set(t *testing.T, c cache.Cache, key string, val []byte, ttl time.Duration) {
	t.Helper()
	if err := c.Set(context.Background(), key, val, ttl); err != nil {
		t.Fatalf("Set(%q): %v", key, err)
	}
}

func wantValue(t *testing.T, c cache.Cache, key string, want []byte) {
	t.Helper()
	v, ok := get(t, c, key)
	if !ok {
		t.Fatalf("Get(%q) missed, want %q", key, want)
	}
	if !bytes.Equal(v, want) {
		t.Fatalf("Get(%q) = %q, want %q", key, v, want)
	}
}

func wantMiss(t *testing.T, c cache.Cache, key string) {
	t.Helper()
	if v, ok := get(t, c, key); ok {
		t.Fatalf("Get(%q) = %q, want a miss", key, v)
	}
}

func testMissingKey(t *testing.T, c cache.Cache) {
	wantMiss(t, c, "never-set")
	wantMiss(t, c, "")
}

func testSetGet(t *testing.T, c cache.Cache) {
	set(t, c, "k", []byte("v"), time.Minute)
	wantValue(t, c, "k", []byte("v"))
	wantValue(t, c, "k", []byte("v")) // a read does not consume it
	long := bytes.Repeat([]byte("0123456789"), 100_000)
	set(t, c, "big", long, time.Minute)
	wantValue(t, c, "big", long)
}

func testBinaryValues(t *testing.T, c cache.Cache) {
	all := make([]byte, 512)
	for i := range all {
		all[i] = byte(i)
	}
	set(t, c, "bin", all, time.Minute)
	wantValue(t, c, "bin", all)
	// Keys may hold any printable text, separators and non-ASCII too.
	for _, k := range []string{"a b", "a:b:c", "ключ", "x\ty", strings.Repeat("k", 1000)} {
		set(t, c, k, []byte(k), time.Minute)
	}
	for _, k := range []string{"a b", "a:b:c", "ключ", "x\ty", strings.Repeat("k", 1000)} {
		wantValue(t, c, k, []byte(k))
	}
}

func testEmptyValue(t *testing.T, c cache.Cache) {
	set(t, c, "empty", []byte{}, time.Minute)
	set(t, c, "nil", nil, time.Minute)
	for _, k := range []string{"empty", "nil"} {
		v, ok := get(t, c, k)
		if !ok || len(v) != 0 {
			t.Errorf("Get(%q) = %q, %v; want a hit with no bytes", k, v, ok)
		}
	}
}

func testCallerBufferReused(t *testing.T, c cache.Cache) {
	buf := []byte("original")
	set(t, c, "k", buf, time.Minute)
	copy(buf, "CHANGED!")
	wantValue(t, c, "k", []byte("original"))
}

func testOverwrite(t *testing.T, c cache.Cache) {
	set(t, c, "k", []byte("v1"), time.Minute)
	set(t, c, "k", []byte("second, longer value"), time.Minute)
	wantValue(t, c, "k", []byte("second, longer value"))
	set(t, c, "k", []byte("3"), time.Minute)
	wantValue(t, c, "k", []byte("3"))
}

func testDelete(t *testing.T, c cache.Cache) {
	ctx := context.Background()
	set(t, c, "a", []byte("1"), time.Minute)
	set(t, c, "b", []byte("2"), time.Minute)
	if err := c.Delete(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	wantMiss(t, c, "a")
	wantValue(t, c, "b", []byte("2"))
	if err := c.Delete(ctx, "a"); err != nil {
		t.Errorf("second Delete: %v", err)
	}
	if err := c.Delete(ctx, "never-set"); err != nil {
		t.Errorf("Delete of a missing key: %v", err)
	}
	set(t, c, "a", []byte("again"), time.Minute) // a deleted key may be set again
	wantValue(t, c, "a", []byte("again"))
}

func testDistinctKeys(t *testing.T, c cache.Cache) {
	keys := []string{"p", "p:", "p:1", "p:10", "P:1", "p:1 "}
	for i, k := range keys {
		set(t, c, k, []byte(fmt.Sprint(i)), time.Minute)
	}
	for i, k := range keys {
		wantValue(t, c, k, []byte(fmt.Sprint(i)))
	}
}

func testZeroTTL(t *testing.T, c cache.Cache) {
	set(t, c, "zero", []byte("z"), 0)
	wantMiss(t, c, "zero")
	set(t, c, "neg", []byte("n"), -time.Second)
	wantMiss(t, c, "neg")
	// A zero TTL over a live entry does not leave the old value behind.
	set(t, c, "k", []byte("old"), time.Minute)
	set(t, c, "k", []byte("new"), 0)
	wantMiss(t, c, "k")
}

// expiresWithin sets key with ttl and checks that it is served until ttl
// has passed and gone within limit after that, polling.
func expiresWithin(t *testing.T, c cache.Cache, key string, ttl, limit time.Duration) {
	t.Helper()
	start := time.Now()
	set(t, c, key, []byte("v"), ttl)
	for {
		_, ok := get(t, c, key)
		elapsed := time.Since(start)
		if !ok {
			// The Set may have landed a little after start, so a miss
			// before ttl (measured from before the Set) is a failure.
			if elapsed < ttl {
				t.Fatalf("%q expired after %v, before its TTL of %v", key, elapsed, ttl)
			}
			return
		}
		if elapsed > ttl+limit {
			t.Fatalf("%q still served %v after being set with a TTL of %v", key, elapsed, ttl)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func testExpiry(t *testing.T, c cache.Cache) {
	set(t, c, "long", []byte("l"), time.Minute)
	expiresWithin(t, c, "short", 100*time.Millisecond, 2*time.Second)
	wantValue(t, c, "long", []byte("l"))
	// A TTL under a millisecond is still a positive one: set, then gone.
	set(t, c, "tiny", []byte("t"), time.Microsecond)
	deadline := time.Now().Add(2 * time.Second)
	for {
		if _, ok := get(t, c, "tiny"); !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("an entry with a TTL of 1µs was still served after 2s")
		}
		time.Sleep(time.Millisecond)
	}
}

func testOverwriteRefreshesTTL(t *testing.T, c cache.Cache) {
	set(t, c, "k", []byte("v1"), 50*time.Millisecond)
	set(t, c, "k", []byte("v2"), time.Minute)
	time.Sleep(100 * time.Millisecond) // past the first TTL, nowhere near the second
	wantValue(t, c, "k", []byte("v2"))
	// And a shorter TTL replaces a longer one.
	expiresWithin(t, c, "k", 100*time.Millisecond, 2*time.Second)
}

func testConcurrentUse(t *testing.T, c cache.Cache) {
	ctx := context.Background()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 300 {
				k := fmt.Sprint("key-", (g*7+i)%40)
				switch i % 3 {
				case 0:
					if err := c.Set(ctx, k, []byte(k), time.Minute); err != nil {
						t.Errorf("Set: %v", err)
						return
					}
				case 1:
					v, ok, err := c.Get(ctx, k)
					if err != nil {
						t.Errorf("Get: %v", err)
						return
					}
					if ok && string(v) != k {
						t.Errorf("key %s holds %q", k, v)
					}
				default:
					if err := c.Delete(ctx, k); err != nil {
						t.Errorf("Delete: %v", err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	set(t, c, "after", []byte("ok"), time.Minute)
	wantValue(t, c, "after", []byte("ok"))
}
