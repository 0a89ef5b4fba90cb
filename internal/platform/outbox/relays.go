package outbox

import (
	"context"
	"log/slog"
	"sort"
	"sync"

	"github.com/globomantics/globomantics/internal/platform/bus"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
)

// Relays runs one Relay per node of a sharded store, each of which has an
// outbox table of its own; a node that is down holds back only its own
// events.
type Relays struct {
	rs []*Relay
}

// NewRelays returns a relay for every database of dbs (by node name, as
// sqldb.Sharded.All returns them). Logs name a node by its position in name
// order, never by its name, which may be a DSN with a password.
func NewRelays(dbs map[string]*sqldb.DB, pub bus.Publisher, log *slog.Logger) *Relays {
	names := make([]string, 0, len(dbs))
	for n := range dbs {
		names = append(names, n)
	}
	sort.Strings(names)
	r := &Relays{}
	for i, n := range names {
		l := log
		if len(names) > 1 {
			l = log.With("node", i)
		}
		r.rs = append(r.rs, NewRelay(dbs[n], pub, l))
	}
	return r
}

// Kick wakes every relay.
func (r *Relays) Kick() {
	for _, x := range r.rs {
		x.Kick()
	}
}

// Run runs every relay until ctx ends, and returns when all have stopped.
func (r *Relays) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, x := range r.rs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			x.Run(ctx)
		}()
	}
	wg.Wait()
}

// Flush publishes every pending row of every node once and reports how many
// it published; it returns the first error after trying every node.
func (r *Relays) Flush(ctx context.Context) (int, error) {
	total := 0
	var first error
	for _, x := range r.rs {
		n, err := x.Flush(ctx)
		total += n
		if err != nil && first == nil {
			first = err
		}
	}
	return total, first
}
