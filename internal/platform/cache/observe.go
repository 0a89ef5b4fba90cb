package cache

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/globomantics/globomantics/internal/platform/obs"
)

// Results of a Get, the result label of cache_requests_total.
const (
	ResultHit  = "hit"
	ResultMiss = "miss" // absent, expired, or the cache failed (callers treat errors as misses)
)

// Observed is a Cache that counts its Gets as hits and misses in
// cache_requests_total{cache,result}, so that the hit ratio is
// hit/(hit+miss). It behaves as the cache it wraps in every other way.
type Observed struct {
	Cache
	hit, miss prometheus.Counter
}

var _ Cache = (*Observed)(nil)

// Instrument returns c counting its Gets under the cache label name in reg
// (shared with every other cache instrumented in reg), or c itself when reg
// is nil. It panics when reg holds another metric of the same name, as
// prometheus.MustRegister does.
func Instrument(c Cache, name string, reg prometheus.Registerer) Cache {
	if reg == nil {
		return c
	}
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "cache_requests_total",
		Help: "Cache lookups by result (hit, miss; a failed lookup is a miss).",
	}, []string{"cache", "result"})
	vec = obs.RegisterOnce(reg, vec)
	return &Observed{Cache: c, hit: vec.WithLabelValues(name, ResultHit), miss: vec.WithLabelValues(name, ResultMiss)}
}

// Get is the wrapped cache's Get, counted.
func (o *Observed) Get(ctx context.Context, key string) ([]byte, bool, error) {
	v, ok, err := o.Cache.Get(ctx, key)
	if ok && err == nil {
		o.hit.Inc()
	} else {
		o.miss.Inc()
	}
	return v, ok, err
}
