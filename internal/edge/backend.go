package edge

import (
	"math/rand/v2"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/globomantics/globomantics/internal/platform/errs"
)

// Source says where a backend came from; a backend may come from several.
type Source uint8

// The sources of backends.
const (
	SourceStatic     Source = 1 << iota // --backend pool=URL,...
	SourceSRV                           // --backend pool=srv+http://NAME
	SourceRegistered                    // heartbeats to the registry API
)

func (s Source) names() []string {
	var out []string
	if s&SourceStatic != 0 {
		out = append(out, "static")
	}
	if s&SourceSRV != 0 {
		out = append(out, "srv")
	}
	if s&SourceRegistered != 0 {
		out = append(out, "registered")
	}
	return out
}

// Backend is one server of a pool. Its counters are safe for concurrent
// use; membership fields are guarded by the pool's mutex.
type Backend struct {
	url    string
	scheme string
	host   string

	healthy      atomic.Bool
	healthFails  atomic.Int32 // consecutive failed health checks
	checking     atomic.Bool
	lastCheck    atomic.Int64 // unix nanos
	lastCheckOK  atomic.Bool
	consecFails  atomic.Int32 // consecutive failed proxied requests
	ejections    atomic.Int32 // ejections since the last success
	ejectedUntil atomic.Int64 // unix nanos; 0 when not ejected
	inflight     atomic.Int64
	requests     atomic.Int64
	failures     atomic.Int64
	codes        codeCounts // attempts by status answered (observe.go)

	// guarded by pool.mu
	sources Source
	expires time.Time // registered instances: end of the heartbeat's TTL
}

func newBackend(raw string) (*Backend, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return nil, errs.E("edge.backend", errs.Invalid, errs.Msg("backend %q: want http(s)://host:port with no path", raw))
	}
	b := &Backend{url: u.Scheme + "://" + u.Host, scheme: u.Scheme, host: u.Host}
	b.healthy.Store(true)
	return b, nil
}

// URL is the backend's base URL.
func (b *Backend) URL() string { return b.url }

// available reports whether new requests may go to b at now (unix nanos).
func (b *Backend) available(now int64) bool {
	if !b.healthy.Load() {
		return false
	}
	u := b.ejectedUntil.Load()
	return u == 0 || now >= u
}

// pool is a named set of backends with a balancing policy.
type pool struct {
	name   string
	policy Policy

	mu      sync.Mutex
	members map[string]*Backend

	list atomic.Pointer[[]*Backend] // snapshot of members, sorted by URL
	rr   atomic.Uint64

	proxy *poolProxy
}

func newPool(name string, policy Policy) *pool {
	p := &pool{name: name, policy: policy, members: map[string]*Backend{}}
	p.list.Store(new([]*Backend))
	return p
}

// backends is the current snapshot; callers must not modify it.
func (p *pool) backends() []*Backend { return *p.list.Load() }

// publishLocked rebuilds the snapshot; p.mu must be held.
func (p *pool) publishLocked() {
	l := make([]*Backend, 0, len(p.members))
	for _, b := range p.members {
		l = append(l, b)
	}
	slices.SortFunc(l, func(a, b *Backend) int {
		if a.url < b.url {
			return -1
		}
		if a.url > b.url {
			return 1
		}
		return 0
	})
	p.list.Store(&l)
}

// add makes raw a member from src (keeping its state if it already is);
// it reports the backend and whether it is new to the pool.
func (p *pool) add(raw string, src Source) (*Backend, bool, error) {
	nb, err := newBackend(raw)
	if err != nil {
		return nil, false, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if b, ok := p.members[nb.url]; ok {
		b.sources |= src
		return b, false, nil
	}
	nb.sources = src
	p.members[nb.url] = nb
	p.publishLocked()
	return nb, true, nil
}

// removeSource drops src from the backend at raw; a backend with no source
// left leaves the pool at once (requests in flight on it finish).
func (p *pool) removeSource(raw string, src Source) bool {
	nb, err := newBackend(raw)
	if err != nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.removeLocked(nb.url, src)
}

func (p *pool) removeLocked(u string, src Source) bool {
	b, ok := p.members[u]
	if !ok || b.sources&src == 0 {
		return false
	}
	b.sources &^= src
	if b.sources == 0 {
		delete(p.members, u)
		p.publishLocked()
		return true
	}
	return false
}

// syncSource makes the backends of src exactly urls; it returns the URLs
// added and removed.
func (p *pool) syncSource(urls []string, src Source) (added, removed []string) {
	want := map[string]bool{}
	for _, raw := range urls {
		b, isNew, err := p.add(raw, src)
		if err != nil {
			continue
		}
		want[b.url] = true
		if isNew {
			added = append(added, b.url)
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for u, b := range p.members {
		if b.sources&src != 0 && !want[u] && p.removeLocked(u, src) {
			removed = append(removed, u)
		}
	}
	return added, removed
}

// Policy picks a backend among the available ones.
type Policy uint8

// The balancing policies.
const (
	PolicyP2C        Policy = iota // power of two choices over least outstanding requests
	PolicyLeast                    // least outstanding requests, ties at random
	PolicyRoundRobin               // each in turn
)

// ParsePolicy maps a --policy value to a Policy.
func ParsePolicy(s string) (Policy, error) {
	switch s {
	case "", "p2c":
		return PolicyP2C, nil
	case "least":
		return PolicyLeast, nil
	case "round_robin":
		return PolicyRoundRobin, nil
	}
	return 0, errs.E("edge.ParsePolicy", errs.Invalid, errs.Msg("unknown policy %q (known: p2c, least, round_robin)", s))
}

// excluded reports whether b is among the backends already tried.
func excluded(b *Backend, tried []*Backend) bool {
	for _, t := range tried {
		if t == b {
			return true
		}
	}
	return false
}

// pick chooses a backend for a new attempt, skipping unavailable ones and
// those in tried; nil when there is none.
func (p *pool) pick(now int64, tried []*Backend) *Backend {
	l := p.backends()
	n := len(l)
	if n == 0 {
		return nil
	}
	ok := func(b *Backend) bool { return b.available(now) && !excluded(b, tried) }
	switch p.policy {
	case PolicyRoundRobin:
		start := int(p.rr.Add(1) % uint64(n))
		for i := 0; i < n; i++ {
			if b := l[(start+i)%n]; ok(b) {
				return b
			}
		}
		return nil
	case PolicyLeast:
		var best *Backend
		var bestLoad int64
		ties := 0
		start := rand.IntN(n)
		for i := 0; i < n; i++ {
			b := l[(start+i)%n]
			if !ok(b) {
				continue
			}
			load := b.inflight.Load()
			switch {
			case best == nil || load < bestLoad:
				best, bestLoad, ties = b, load, 1
			case load == bestLoad:
				ties++
				if rand.IntN(ties) == 0 {
					best = b
				}
			}
		}
		return best
	}
	// p2c: two distinct random available candidates, the less loaded wins.
	var a, c *Backend
	s1 := rand.IntN(n)
	for i := 0; i < n; i++ {
		if b := l[(s1+i)%n]; ok(b) {
			a = b
			break
		}
	}
	if a == nil {
		return nil
	}
	s2 := rand.IntN(n)
	for i := 0; i < n; i++ {
		if b := l[(s2+i)%n]; b != a && ok(b) {
			c = b
			break
		}
	}
	if c == nil || a.inflight.Load() <= c.inflight.Load() {
		return a
	}
	return c
}

// pickEjected is the fallback when every healthy backend is passively
// ejected: ejection is a guess from failed requests, and trying the least
// loaded healthy backend beats refusing every request (Envoy's panic mode).
func (p *pool) pickEjected() *Backend {
	var best *Backend
	for _, b := range p.backends() {
		if b.healthy.Load() && (best == nil || b.inflight.Load() < best.inflight.Load()) {
			best = b
		}
	}
	return best
}
