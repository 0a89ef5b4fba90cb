package app

import (
	"context"
	"net/http"
	"sort"

	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/httpx"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
)

// anyNode is the readiness check of an available (AP) service's database:
// it is ready while the primary or any replica in rotation answers, since
// its reads go on from replicas when the primary is gone.
func anyNode(db *sqldb.DB) func(context.Context) error {
	return func(ctx context.Context) error {
		err := db.Ping(ctx)
		if err == nil {
			return nil
		}
		for _, n := range db.Status().Nodes {
			if n.Role == sqldb.RoleReplica && n.State == sqldb.StateInRotation {
				return nil
			}
		}
		return err
	}
}

// anyShardNode is the readiness check of a sharded service: ready while any
// of its nodes answers, since a node that is down fails only its users.
func anyShardNode(sh *sqldb.Sharded) func(context.Context) error {
	return func(ctx context.Context) error {
		var last error
		for _, db := range sh.All() {
			if last = db.Ping(ctx); last == nil {
				return nil
			}
		}
		return last
	}
}

// dataStatus answers the state of every local service's database cluster:
// per node its role, state (in rotation, lagging, down), lag and the reads
// it served. Node addresses never carry credentials.
func (a *app) dataStatus(w http.ResponseWriter, r *http.Request) {
	names := make([]string, 0, len(a.dbs))
	for n := range a.dbs {
		names = append(names, n)
	}
	sort.Strings(names)
	type entry struct {
		Service string `json:"service"`
		sqldb.Status
	}
	out := make([]entry, 0, len(names))
	for _, n := range names {
		out = append(out, entry{Service: n, Status: a.dbs[n].Status()})
	}
	w.Header().Set("Cache-Control", "no-store")
	body := map[string]any{"databases": out}
	if a.catalogSvc != nil { // nil when the catalog runs elsewhere
		st := a.catalogSvc.CacheStats()
		body["product_cache"] = map[string]any{"hits": st.Hits, "misses": st.Misses, "loads": st.Loads, "hit_ratio": st.HitRatio()}
	}
	httpx.WriteJSON(w, http.StatusOK, body)
}

// mountDataStatus serves dataStatus on the internal listener, to the
// operator's credential, at /svc/data/status.
func (a *app) mountDataStatus() {
	a.imux.Handle("GET /svc/data/status", a.keys.Require("data", nil, http.HandlerFunc(a.dataStatus)))
	a.imux.Handle("/svc/data/", a.keys.Require("data", nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		errs.WriteProblem(w, r, errs.E(errs.NotFound, errs.Msg("no such data endpoint")))
	})))
}
