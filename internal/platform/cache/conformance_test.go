package cache_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/globomantics/globomantics/internal/platform/cache"
	"github.com/globomantics/globomantics/internal/platform/cache/cachetest"
	"github.com/globomantics/globomantics/internal/platform/clock"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func TestMemoryConformance(t *testing.T) {
	cachetest.Test(t, func(t *testing.T) cache.Cache { return cache.NewMemory(clock.Real{}, 1000) })
}

// redisClient is a client of a fresh database of the test's private
// redis-server, closed when the test ends.
func redisClient(t *testing.T, url string) *redis.Client {
	t.Helper()
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout, opt.MaxRetries = time.Second, time.Second, time.Second, 0
	c := redis.NewClient(opt)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestRedisConformance(t *testing.T) {
	cachetest.Test(t, func(t *testing.T) cache.Cache {
		return cache.NewRedis(redisClient(t, testenv.Redis(t)), "test:cache:")
	})
}

// Two prefixes on one database are two caches; the same prefix on two
// clients is one (what instances sharing Redis rely on).
func TestRedisPrefix(t *testing.T) {
	ctx := context.Background()
	url := testenv.Redis(t)
	a := cache.NewRedis(redisClient(t, url), "a:")
	b := cache.NewRedis(redisClient(t, url), "b:")
	a2 := cache.NewRedis(redisClient(t, url), "a:")
	if err := a.Set(ctx, "k", []byte("from a"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := b.Get(ctx, "k"); err != nil || ok {
		t.Fatalf("prefix b sees prefix a's key: ok=%v err=%v", ok, err)
	}
	if v, ok, err := a2.Get(ctx, "k"); err != nil || !ok || string(v) != "from a" {
		t.Fatalf("second client of prefix a: %q, %v, %v", v, ok, err)
	}
	if err := a2.Delete(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := a.Get(ctx, "k"); err != nil || ok {
		t.Fatalf("a Delete by another client is not seen: ok=%v err=%v", ok, err)
	}
	// The key is stored as prefix+key, with a millisecond expiry.
	raw := redisClient(t, url)
	if err := a.Set(ctx, "ttl", []byte("x"), 1500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	pttl, err := raw.PTTL(ctx, "a:ttl").Result()
	if err != nil {
		t.Fatal(err)
	}
	if pttl <= time.Second || pttl > 1500*time.Millisecond {
		t.Errorf("PTTL of a:ttl = %v, want just under 1.5s", pttl)
	}
}

// A cache whose server is gone answers with errs.Unavailable, quickly.
func TestRedisUnavailable(t *testing.T) {
	ctx := context.Background()
	srv := testenv.StartRedis(t)
	c := cache.NewRedis(redisClient(t, srv.URL()), "p:")
	if err := c.Set(ctx, "k", []byte("v"), time.Minute); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	if _, ok, err := c.Get(ctx, "k"); !errs.Is(errs.Unavailable, err) || ok {
		t.Errorf("Get from a stopped server: ok=%v err=%v, want errs.Unavailable", ok, err)
	}
	if err := c.Set(ctx, "k", []byte("v"), time.Minute); !errs.Is(errs.Unavailable, err) {
		t.Errorf("Set on a stopped server: %v, want errs.Unavailable", err)
	}
	if err := c.Delete(ctx, "k"); !errs.Is(errs.Unavailable, err) {
		t.Errorf("Delete on a stopped server: %v, want errs.Unavailable", err)
	}
}
