package dns

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/globomantics/globomantics/internal/edge"
	"github.com/globomantics/globomantics/internal/platform/errs"
)

// Registry is a source of service instances that may change while the
// server runs, such as the edge's registry.
type Registry interface {
	// Instances returns the base URLs of the instances of every service it
	// knows (service name -> URLs). An error means "no answer": the server
	// keeps the last good one.
	Instances(ctx context.Context) (map[string][]string, error)
	// String names the registry in logs and the status.
	String() string
}

// EdgeRegistry reads the instances of the edge's registry API
// (GET /_edge/v1/pools): each pool is a service, and its members are the
// instances that heartbeat to the edge or are configured at it, whatever
// the edge's view of their health (the DNS server checks them itself).
// Members the edge has only from DNS SRV are left out: they may be this
// server's own answers, which would then keep themselves alive.
type EdgeRegistry struct {
	url   string
	token string
	pools map[string]bool // nil: every pool
	hc    *http.Client
}

var _ Registry = (*EdgeRegistry)(nil)

// NewEdgeRegistry returns the registry of the edge whose registry API is at
// baseURL (its internal listener, http://host:port), asked with the bearer
// token when not empty, for the given pools (every pool when empty). hc nil
// is a client with a 1 s timeout. It fails on a URL that is not
// http(s)://host[:port].
func NewEdgeRegistry(baseURL, token string, pools []string, hc *http.Client) (*EdgeRegistry, error) {
	const op = "dns.NewEdgeRegistry"
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return nil, errs.E(op, errs.Invalid, errs.Msg("registry %q: want the edge's base URL, http://host:port", baseURL))
	}
	if hc == nil {
		hc = &http.Client{Timeout: time.Second}
	}
	r := &EdgeRegistry{url: u.Scheme + "://" + u.Host, token: token, hc: hc}
	if len(pools) > 0 {
		r.pools = map[string]bool{}
		for _, p := range pools {
			if p = strings.TrimSpace(p); p != "" {
				r.pools[p] = true
			}
		}
	}
	return r, nil
}

// Instances asks the edge once; see Registry.
func (r *EdgeRegistry) Instances(ctx context.Context) (map[string][]string, error) {
	l, err := edge.ListPools(ctx, r.hc, r.url, r.token)
	if err != nil {
		return nil, err
	}
	out := map[string][]string{}
	for _, p := range l.Pools {
		if r.pools != nil && !r.pools[p.Pool] {
			continue
		}
		for _, m := range p.Members {
			if m.HasSource("registered") || m.HasSource("static") {
				out[p.Pool] = append(out[p.Pool], m.URL)
			}
		}
	}
	return out, nil
}

// String is the edge's base URL.
func (r *EdgeRegistry) String() string { return r.url }

// RegistryStatus is one registry's state, as Server.RegistryStatus reports it.
type RegistryStatus struct {
	Registry  string    `json:"registry"`
	Reachable bool      `json:"reachable"`
	Instances int       `json:"instances"` // in its last good answer
	LastOK    time.Time `json:"last_ok,omitzero"`
	DownSince time.Time `json:"down_since,omitzero"`
	LastError string    `json:"last_error,omitempty"`
}

// registryState is a registry and its last good answer; its fields are
// guarded by Server.mu, except reg.
type registryState struct {
	reg       Registry
	last      map[string][]string
	answered  bool // it answered at least once
	down      bool // its last poll failed (logged once per outage)
	lastOK    time.Time
	downSince time.Time
	lastErr   string
}

// RegistryStatus reports each registry's state, in configuration order.
func (s *Server) RegistryStatus() []RegistryStatus {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]RegistryStatus, 0, len(s.registries))
	for _, rs := range s.registries {
		n := 0
		for _, l := range rs.last {
			n += len(l)
		}
		out = append(out, RegistryStatus{
			Registry: rs.reg.String(), Reachable: rs.answered && !rs.down, Instances: n,
			LastOK: rs.lastOK, DownSince: rs.downSince, LastError: rs.lastErr,
		})
	}
	return out
}

// pollLoop polls the registries now and then every registry interval.
func (s *Server) pollLoop(ctx context.Context) {
	t := time.NewTicker(s.regInterval)
	defer t.Stop()
	for {
		s.poll(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// poll asks every registry once (at the same time) and, when the union of
// their last good answers changed, rebuilds the zone's names.
func (s *Server) poll(ctx context.Context) {
	type result struct {
		got map[string][]string
		err error
	}
	results := make([]result, len(s.registries))
	var wg sync.WaitGroup
	for i, rs := range s.registries {
		wg.Go(func() {
			pctx, cancel := context.WithTimeout(ctx, s.regTimeout)
			defer cancel()
			got, err := rs.reg.Instances(pctx)
			results[i] = result{got, err}
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return
	}
	now := s.clock.Now()
	s.mu.Lock()
	union := map[string][]string{}
	for i, rs := range s.registries {
		res := results[i]
		if res.err != nil {
			rs.lastErr = res.err.Error()
			if !rs.down {
				rs.down, rs.downSince = true, now
				s.log.Warn("registry unreachable; answering from its last list until it is back",
					"registry", rs.reg.String(), "err", res.err, "answered_before", rs.answered)
			}
		} else {
			if rs.down {
				s.log.Info("registry reachable again", "registry", rs.reg.String(), "down_for", now.Sub(rs.downSince).Round(time.Millisecond))
			}
			rs.last, rs.answered, rs.down, rs.lastOK, rs.downSince, rs.lastErr = res.got, true, false, now, time.Time{}, ""
		}
		for svc, urls := range rs.last {
			union[svc] = append(union[svc], urls...)
		}
	}
	for svc, urls := range union {
		slices.Sort(urls)
		union[svc] = slices.Compact(urls)
	}
	if maps.EqualFunc(union, s.registered, slices.Equal) {
		s.mu.Unlock()
		return
	}
	added, removed := diff(s.registered, union)
	prev := s.names
	nm, problems := s.build(prev, union)
	s.names, s.registered = nm, union
	s.mu.Unlock()

	s.log.Info("instances changed from the registries", "added", added, "removed", removed)
	for _, p := range problems {
		s.log.Warn("registered instance not served", "problem", p)
	}
	// Check the new instances now rather than at the next tick.
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// diff lists the "svc=URL" entries only in b (added) and only in a (removed).
func diff(a, b map[string][]string) (added, removed []string) {
	flat := func(m map[string][]string) map[string]bool {
		out := map[string]bool{}
		for svc, urls := range m {
			for _, u := range urls {
				out[fmt.Sprintf("%s=%s", svc, u)] = true
			}
		}
		return out
	}
	fa, fb := flat(a), flat(b)
	for k := range fb {
		if !fa[k] {
			added = append(added, k)
		}
	}
	for k := range fa {
		if !fb[k] {
			removed = append(removed, k)
		}
	}
	slices.Sort(added)
	slices.Sort(removed)
	return added, removed
}
