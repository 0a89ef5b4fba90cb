package cache_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/globomantics/globomantics/internal/platform/cache"
	"github.com/globomantics/globomantics/internal/platform/cache/cachetest"
	"github.com/globomantics/globomantics/internal/platform/clock"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

// The instrumented cache passes the suite, and counts hits and misses.
func TestInstrumentedConformance(t *testing.T) {
	cachetest.Test(t, func(t *testing.T) cache.Cache {
		return cache.Instrument(cache.NewMemory(clock.Real{}, 1000), "test", prometheus.NewRegistry())
	})
}

func TestInstrumentedCountsHitsAndMisses(t *testing.T) {
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	mem := cache.Instrument(cache.NewMemory(clock.Real{}, 10), "product", reg)
	other := cache.Instrument(cache.NewMemory(clock.Real{}, 10), "session", reg) // shares the metric
	if cache.Instrument(mem, "x", nil) != mem {
		t.Error("Instrument with no registry wraps")
	}
	_ = mem.Set(ctx, "k", []byte("v"), time.Minute)
	for _, k := range []string{"k", "k", "nope"} {
		_, _, _ = mem.Get(ctx, k)
	}
	_, _, _ = other.Get(ctx, "k")
	srv := testenv.StartRedis(t)
	red := cache.Instrument(cache.NewRedis(redisClient(t, srv.URL()), "p:"), "redis", reg)
	srv.Stop()
	if _, ok, err := red.Get(ctx, "k"); ok || err == nil {
		t.Fatalf("Get from a stopped server: %v, %v", ok, err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, l.GetValue())
			}
			got[mf.GetName()+"/"+strings.Join(ls, "/")] = m.GetCounter().GetValue()
		}
	}
	want := map[string]float64{
		"cache_requests_total/product/hit": 2, "cache_requests_total/product/miss": 1,
		"cache_requests_total/session/hit": 0, "cache_requests_total/session/miss": 1,
		"cache_requests_total/redis/hit": 0, "cache_requests_total/redis/miss": 1,
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("counts %v, want %v", got, want)
	}
}
