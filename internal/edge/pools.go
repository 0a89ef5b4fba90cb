package edge

import (
	"context"
	"net/http"
	"slices"
	"strings"

	"github.com/globomantics/globomantics/internal/platform/httpx"
)

// PoolList is the answer of GET /_edge/v1/pools: every pool the edge
// knows, sorted by name, with all its members whatever their health.
type PoolList struct {
	Pools []PoolMembers `json:"pools"`
}

// PoolMembers is one pool of a PoolList.
type PoolMembers struct {
	Pool    string   `json:"pool"`
	Members []Member `json:"members"` // sorted by URL
}

// Member is one backend of a pool as GET /_edge/v1/pools reports it.
type Member struct {
	URL string `json:"url"` // base URL, scheme://host:port
	// Sources says where the edge has it from: "static" (configured),
	// "srv" (a DNS SRV answer), "registered" (heartbeats to the registry).
	Sources []string `json:"sources"`
	// Available is true while the edge sends it new requests: healthy and
	// not passively ejected.
	Available bool `json:"available"`
}

// HasSource reports whether m came (also) from the source named s.
func (m Member) HasSource(s string) bool { return slices.Contains(m.Sources, s) }

func (e *Edge) listPools(w http.ResponseWriter, _ *http.Request) error {
	e.mu.RLock()
	pools := make([]*pool, 0, len(e.pools))
	for _, p := range e.pools {
		pools = append(pools, p)
	}
	e.mu.RUnlock()
	slices.SortFunc(pools, func(a, b *pool) int { return strings.Compare(a.name, b.name) })
	now := nowNanos(e.clock)
	out := PoolList{Pools: make([]PoolMembers, 0, len(pools))}
	for _, p := range pools {
		pm := PoolMembers{Pool: p.name, Members: []Member{}}
		p.mu.Lock()
		for _, b := range p.backends() {
			pm.Members = append(pm.Members, Member{URL: b.url, Sources: b.sources.names(), Available: b.available(now)})
		}
		p.mu.Unlock()
		out.Pools = append(out.Pools, pm)
	}
	w.Header().Set("Cache-Control", "no-store")
	httpx.WriteJSON(w, http.StatusOK, out)
	return nil
}

// ListPools asks the edge whose registry API is at registryURL (its base
// URL) for every pool and its members (GET /_edge/v1/pools), with the
// bearer token when not empty. hc nil is http.DefaultClient, so give one
// with a timeout. An unreachable edge is an errs.Unavailable error; an
// error answer keeps the kind of its status (a refused token is
// errs.Unauthorized).
func ListPools(ctx context.Context, hc *http.Client, registryURL, token string) (PoolList, error) {
	if hc == nil {
		hc = http.DefaultClient
	}
	var out PoolList
	err := call(ctx, hc, http.MethodGet, strings.TrimSuffix(registryURL, "/")+"/_edge/v1/pools", token, nil, &out)
	return out, err
}
