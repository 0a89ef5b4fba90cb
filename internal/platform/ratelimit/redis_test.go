package ratelimit_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/globomantics/globomantics/internal/platform/clock"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/ratelimit"
	"github.com/globomantics/globomantics/internal/platform/ratelimit/ratelimittest"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

// redisClient connects to the Redis at url, closing the client when the
// test ends.
func redisClient(t *testing.T, url string) *redis.Client {
	t.Helper()
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opt)
	t.Cleanup(func() { c.Close() })
	return c
}

func TestRedisConformance(t *testing.T) {
	client := redisClient(t, testenv.Redis(t))
	ratelimittest.Test(t, func(t *testing.T, clk clock.Clock) ratelimit.Limiter {
		return ratelimit.NewRedis(client, t.Name()+":", clk)
	})
}

// Two limiters with clients of their own, as on two storefront instances,
// share one budget per key.
func TestRedisInstancesShareTheBudget(t *testing.T) {
	ctx := context.Background()
	url := testenv.Redis(t)
	clk := clock.NewFake(time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC))
	a := ratelimit.NewRedis(redisClient(t, url), "shop:", clk)
	b := ratelimit.NewRedis(redisClient(t, url), "shop:", clk)
	lim := ratelimit.Limit{Events: 10, Period: 10 * time.Minute, Burst: 4} // 4 at once, then 1/min

	allow := func(l *ratelimit.Redis, key string) bool {
		t.Helper()
		ok, _, err := l.Allow(ctx, key, lim)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	for i, l := range []*ratelimit.Redis{a, b, a, b} {
		if !allow(l, "k") {
			t.Fatalf("event %d of the burst denied", i+1)
		}
	}
	if allow(a, "k") || allow(b, "k") {
		t.Fatal("an event past the shared burst was allowed")
	}
	clk.Advance(time.Minute)
	if !allow(b, "k") {
		t.Fatal("the event earned back in a minute was denied")
	}
	if allow(a, "k") {
		t.Fatal("instance a allowed the event instance b had just spent")
	}
	if err := a.Reset(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	for range 4 {
		if !allow(b, "k") {
			t.Fatal("instance b does not see instance a's Reset")
		}
	}

	// Many goroutines on both instances at once spend exactly the burst.
	hot := ratelimit.Limit{Events: 1, Period: time.Hour, Burst: 30}
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for g := range 10 {
		l := []*ratelimit.Redis{a, b}[g%2]
		wg.Go(func() {
			for range 10 {
				ok, _, err := l.Allow(ctx, "hot", hot)
				if err != nil {
					t.Error(err)
					return
				}
				if ok {
					allowed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if n := allowed.Load(); n != 30 {
		t.Fatalf("100 events from two instances against a burst of 30 allowed %d, want exactly 30", n)
	}
}

// Instances with different prefixes (two shops on one Redis) do not share.
func TestRedisPrefixesSeparate(t *testing.T) {
	ctx := context.Background()
	client := redisClient(t, testenv.Redis(t))
	clk := clock.NewFake(time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC))
	a := ratelimit.NewRedis(client, "a:", clk)
	b := ratelimit.NewRedis(client, "b:", clk)
	lim := ratelimit.Limit{Events: 1, Period: time.Hour}
	for _, l := range []*ratelimit.Redis{a, b} {
		if ok, _, err := l.Allow(ctx, "k", lim); err != nil || !ok {
			t.Fatalf("Allow = %v, %v; want allowed", ok, err)
		}
	}
	if n, err := client.Exists(ctx, "a:k", "b:k").Result(); err != nil || n != 2 {
		t.Fatalf("keys a:k and b:k: %d exist (%v), want 2", n, err)
	}
}

// The Redis limiter decides exactly as the in-memory one over a random
// run of events on a few keys under a few limits, with time in whole
// microseconds (the Redis limiter's unit).
func TestRedisMatchesMemory(t *testing.T) {
	ctx := context.Background()
	clk := clock.NewFake(time.Date(2026, 3, 4, 5, 6, 7, 123456000, time.UTC))
	mem := ratelimit.NewMemory(clk, 0)
	red := ratelimit.NewRedis(redisClient(t, testenv.Redis(t)), "diff:", clk)
	limits := []ratelimit.Limit{
		{Events: 10, Period: time.Second, Burst: 3},        // 100ms
		{Events: 3, Period: 1500 * time.Millisecond},       // 500ms, burst 3
		{Events: 1000, Period: time.Second, Burst: 50},     // 1ms
		{Events: 7, Period: 700 * time.Millisecond},        // 100ms, burst 7
		{Events: 250000, Period: time.Second, Burst: 1000}, // 4µs
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 3000 {
		key := fmt.Sprintf("k%d", rng.IntN(3))
		lim := limits[rng.IntN(len(limits))]
		if rng.IntN(50) == 0 {
			if err := mem.Reset(ctx, key); err != nil {
				t.Fatal(err)
			}
			if err := red.Reset(ctx, key); err != nil {
				t.Fatal(err)
			}
			continue
		}
		okM, retryM, errM := mem.Allow(ctx, key, lim)
		okR, retryR, errR := red.Allow(ctx, key, lim)
		if errM != nil || errR != nil {
			t.Fatal(errM, errR)
		}
		if okM != okR || retryM != retryR {
			t.Fatalf("step %d, %s under %+v: memory says %v %v, redis %v %v", i, key, lim, okM, retryM, okR, retryR)
		}
		clk.Advance(time.Duration(rng.IntN(40_000)) * time.Microsecond)
	}
}

// Every key carries a TTL ending when its bucket is full again, so Redis
// forgets idle keys; a denied event does not extend it.
func TestRedisKeysExpire(t *testing.T) {
	ctx := context.Background()
	client := redisClient(t, testenv.Redis(t))
	clk := clock.NewFake(time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC))
	l := ratelimit.NewRedis(client, "ttl:", clk)
	lim := ratelimit.Limit{Events: 10, Period: 10 * time.Minute, Burst: 3} // 1/min

	pttl := func() time.Duration {
		t.Helper()
		d, err := client.PTTL(ctx, "ttl:k").Result()
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	// PTTL counts down in real time from the TTL the script set.
	within := func(got, want time.Duration) bool { return got <= want && got > want-5*time.Second }

	if _, _, err := l.Allow(ctx, "k", lim); err != nil {
		t.Fatal(err)
	}
	if d := pttl(); !within(d, time.Minute) {
		t.Fatalf("TTL after one event = %v, want about 1m", d)
	}
	for range 2 {
		if _, _, err := l.Allow(ctx, "k", lim); err != nil {
			t.Fatal(err)
		}
	}
	if d := pttl(); !within(d, 3*time.Minute) {
		t.Fatalf("TTL after the burst = %v, want about 3m", d)
	}
	clk.Advance(30 * time.Second)
	if ok, _, err := l.Allow(ctx, "k", lim); err != nil || ok {
		t.Fatalf("Allow = %v, %v; want denied", ok, err)
	}
	if d := pttl(); !within(d, 3*time.Minute) {
		t.Fatalf("TTL after a denied event = %v, want still about 3m", d)
	}

	// A key with a short interval really goes away.
	fast := ratelimit.Limit{Events: 20, Period: time.Second, Burst: 2} // 50ms
	if _, _, err := l.Allow(ctx, "fast", fast); err != nil {
		t.Fatal(err)
	}
	if d, err := client.PTTL(ctx, "ttl:fast").Result(); err != nil || d <= 0 || d > 50*time.Millisecond {
		t.Fatalf("TTL of the fast key = %v (%v), want in (0, 50ms]", d, err)
	}
	testenv.CheckFor(t, 5*time.Second, func() error {
		n, err := client.Exists(ctx, "ttl:fast").Result()
		if err != nil {
			return err
		}
		if n != 0 {
			return errors.New("key ttl:fast still exists")
		}
		return nil
	})

	if err := l.Reset(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if n, err := client.Exists(ctx, "ttl:k").Result(); err != nil || n != 0 {
		t.Fatalf("after Reset, ttl:k: %d exist (%v), want 0", n, err)
	}
}

// quickClient is a client that gives up fast, as production's should.
func quickClient(t *testing.T, url string) *redis.Client {
	t.Helper()
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	opt.DialTimeout = 200 * time.Millisecond
	opt.ReadTimeout = 200 * time.Millisecond
	opt.WriteTimeout = 200 * time.Millisecond
	opt.MaxRetries = -1
	opt.DialerRetries = 1
	c := redis.NewClient(opt)
	t.Cleanup(func() { c.Close() })
	return c
}

// When Redis is down or hangs, Allow and Reset return an error, promptly
// (within the client's timeouts), and say the limiter is unavailable.
func TestRedisDown(t *testing.T) {
	for _, how := range []string{"stopped", "hung"} {
		t.Run(how, func(t *testing.T) {
			ctx := context.Background()
			srv := testenv.StartRedis(t)
			l := ratelimit.NewRedis(quickClient(t, srv.URL()), "down:", nil)
			lim := ratelimit.Limit{Events: 10, Period: time.Minute}
			if ok, _, err := l.Allow(ctx, "k", lim); err != nil || !ok {
				t.Fatalf("Allow with Redis up = %v, %v; want allowed", ok, err)
			}
			if how == "stopped" {
				srv.Stop()
			} else {
				srv.Pause()
			}
			for range 3 {
				start := time.Now()
				_, _, err := l.Allow(ctx, "k", lim)
				if took := time.Since(start); took > 2*time.Second {
					t.Errorf("Allow took %v with Redis %s, want under 2s", took, how)
				}
				if err == nil {
					t.Fatalf("Allow with Redis %s returned no error", how)
				}
				if !errs.Is(errs.Unavailable, err) {
					t.Errorf("Allow error %v is not errs.Unavailable", err)
				}
			}
			start := time.Now()
			if err := l.Reset(ctx, "k"); err == nil || !errs.Is(errs.Unavailable, err) {
				t.Errorf("Reset with Redis %s = %v, want an Unavailable error", how, err)
			}
			if took := time.Since(start); took > 2*time.Second {
				t.Errorf("Reset took %v with Redis %s, want under 2s", took, how)
			}
			// A disabled limit needs no Redis.
			if ok, _, err := l.Allow(ctx, "k", ratelimit.Limit{}); err != nil || !ok {
				t.Errorf("Allow under a disabled limit = %v, %v; want allowed", ok, err)
			}
			if how == "hung" {
				srv.Resume()
				testenv.CheckFor(t, 5*time.Second, func() error {
					_, _, err := l.Allow(ctx, "k", lim)
					return err
				})
			}
		})
	}
}
