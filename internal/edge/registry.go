package edge

import (
	"net/http"
	"slices"
	"time"

	"github.com/globomantics/globomantics/internal/edge/cdn"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/httpx"
)

// Registration is the body of a heartbeat: PUT /_edge/v1/pools/{pool}/instances.
type Registration struct {
	URL   string `json:"url"`    // the instance's base URL, http://host:port
	TTLms int64  `json:"ttl_ms"` // how long the registration lasts without another heartbeat
}

// Limits of a registration's TTL.
const (
	DefaultTTL = 3 * time.Second
	minTTL     = 50 * time.Millisecond
	maxTTL     = time.Hour
)

func (e *Edge) register(w http.ResponseWriter, r *http.Request) error {
	const op = "edge.register"
	name := r.PathValue("pool")
	if !validPoolName(name) {
		return errs.E(op, errs.Invalid, errs.Msg("pool name %q: want [a-z0-9_-]+", name))
	}
	var reg Registration
	if err := httpx.DecodeLimit(r, &reg, 4<<10); err != nil {
		return err
	}
	ttl := time.Duration(reg.TTLms) * time.Millisecond
	if reg.TTLms == 0 {
		ttl = DefaultTTL
	}
	if ttl < minTTL || ttl > maxTTL {
		return errs.E(op, errs.Invalid, errs.Msg("ttl_ms must be between %d and %d", minTTL.Milliseconds(), maxTTL.Milliseconds()))
	}
	p := e.poolFor(name)
	b, isNew, err := p.add(reg.URL, SourceRegistered)
	if err != nil {
		return err
	}
	p.mu.Lock()
	b.expires = e.clock.Now().Add(ttl)
	p.mu.Unlock()
	if isNew {
		e.log.Warn("instance registered", "pool", name, "backend", b.url, "ttl", ttl)
	}
	status := http.StatusOK
	if isNew {
		status = http.StatusCreated
	}
	httpx.WriteJSON(w, status, map[string]any{"pool": name, "url": b.url, "ttl_ms": ttl.Milliseconds()})
	return nil
}

func (e *Edge) deregister(w http.ResponseWriter, r *http.Request) error {
	const op = "edge.deregister"
	name := r.PathValue("pool")
	u := r.URL.Query().Get("url")
	if u == "" {
		return errs.E(op, errs.Invalid, errs.Msg("url query parameter is required"))
	}
	p := e.lookupPool(name)
	if p == nil {
		return errs.E(op, errs.NotFound, errs.Msg("no pool %q", name))
	}
	if _, err := newBackend(u); err != nil {
		return err
	}
	if p.removeSource(u, SourceRegistered) {
		e.log.Warn("instance deregistered; draining", "pool", name, "backend", u)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// InstanceList is the answer of GET /_edge/v1/pools/{pool}/instances.
type InstanceList struct {
	Pool      string   `json:"pool"`
	Instances []string `json:"instances"` // base URLs of the healthy, non-ejected backends
}

func (e *Edge) instances(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("pool")
	out := InstanceList{Pool: name, Instances: []string{}}
	if p := e.lookupPool(name); p != nil {
		now := nowNanos(e.clock)
		for _, b := range p.backends() {
			if b.available(now) {
				out.Instances = append(out.Instances, b.url)
			}
		}
	}
	w.Header().Set("Cache-Control", "no-store")
	httpx.WriteJSON(w, http.StatusOK, out)
	return nil
}

// Status is the answer of GET /_edge/status.
type Status struct {
	Draining bool         `json:"draining"`
	Policy   string       `json:"policy"`
	Pools    []PoolStatus `json:"pools"`
	Totals   Totals       `json:"totals"`
	CDN      *cdn.Stats   `json:"cdn,omitempty"` // the CDN cache of /static/ and /media/, when enabled
}

// PoolStatus is one pool in Status.
type PoolStatus struct {
	Name     string          `json:"name"`
	Backends []BackendStatus `json:"backends"`
}

// BackendStatus is one backend in Status.
type BackendStatus struct {
	URL                 string     `json:"url"`
	Sources             []string   `json:"sources"`
	Healthy             bool       `json:"healthy"`
	EjectedUntil        *time.Time `json:"ejected_until,omitempty"`
	ConsecutiveFailures int32      `json:"consecutive_failures"`
	InFlight            int64      `json:"in_flight"`
	Requests            int64      `json:"requests"`
	Failures            int64      `json:"failures"`
	LastCheck           *time.Time `json:"last_check,omitempty"`
	LastCheckOK         bool       `json:"last_check_ok"`
	Expires             *time.Time `json:"expires,omitempty"`
}

// Totals counts the edge's requests and outcomes since it started.
type Totals struct {
	Requests           int64 `json:"requests"`
	Retries            int64 `json:"retries"`
	RetryBudgetRefused int64 `json:"retry_budget_refused"`
	TooLarge           int64 `json:"too_large_413"`
	BadGateway         int64 `json:"bad_gateway_502"`
	GatewayTimeout     int64 `json:"gateway_timeout_504"`
	NoBackend          int64 `json:"no_backend_503"`
	NotFound           int64 `json:"not_found_404"`
}

// Snapshot is the edge's current Status.
func (e *Edge) Snapshot() Status {
	now := e.clock.Now()
	st := Status{Draining: e.draining.Load(), Policy: e.cfg.Policy.String(), Totals: Totals{
		Requests:           e.stats.requests.Load(),
		Retries:            e.stats.retries.Load(),
		RetryBudgetRefused: e.stats.budgetRefused.Load(),
		TooLarge:           e.stats.tooLarge.Load(),
		BadGateway:         e.stats.badGateway.Load(),
		GatewayTimeout:     e.stats.gatewayTimeout.Load(),
		NoBackend:          e.stats.unavailable.Load(),
		NotFound:           e.stats.notFnd.Load(),
	}}
	st.CDN = e.content.cdnStats()
	e.mu.RLock()
	pools := make([]*pool, 0, len(e.pools))
	for _, p := range e.pools {
		pools = append(pools, p)
	}
	e.mu.RUnlock()
	slices.SortFunc(pools, func(a, b *pool) int {
		if a.name < b.name {
			return -1
		}
		if a.name > b.name {
			return 1
		}
		return 0
	})
	for _, p := range pools {
		ps := PoolStatus{Name: p.name, Backends: []BackendStatus{}}
		p.mu.Lock()
		for _, b := range p.backends() {
			bs := BackendStatus{
				URL:                 b.url,
				Sources:             b.sources.names(),
				Healthy:             b.healthy.Load(),
				ConsecutiveFailures: b.consecFails.Load(),
				InFlight:            b.inflight.Load(),
				Requests:            b.requests.Load(),
				Failures:            b.failures.Load(),
				LastCheckOK:         b.lastCheckOK.Load(),
			}
			if u := b.ejectedUntil.Load(); u != 0 && now.UnixNano() < u {
				t := time.Unix(0, u).UTC()
				bs.EjectedUntil = &t
			}
			if c := b.lastCheck.Load(); c != 0 {
				t := time.Unix(0, c).UTC()
				bs.LastCheck = &t
			}
			if b.sources&SourceRegistered != 0 {
				t := b.expires
				bs.Expires = &t
			}
			ps.Backends = append(ps.Backends, bs)
		}
		p.mu.Unlock()
		st.Pools = append(st.Pools, ps)
	}
	return st
}

func (e *Edge) status(w http.ResponseWriter, _ *http.Request) error {
	w.Header().Set("Cache-Control", "no-store")
	httpx.WriteJSON(w, http.StatusOK, e.Snapshot())
	return nil
}
