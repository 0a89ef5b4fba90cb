package outbox

import (
	"context"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/globomantics/globomantics/internal/platform/sqldb"
)

// Relays runs one Relay per node of a sharded store, each of which has an
// outbox table of its own; a node that is down holds back only its own
// events. It follows the store's nodes while it runs: a node that joins
// (shards moved to it) gets a relay, and a node that left keeps its relay
// until its outbox is empty.
type Relays struct {
	nodes func() map[string]*sqldb.DB
	pub   Publisher
	log   *slog.Logger
	opts  []Option // every relay's

	mu sync.Mutex
	rs map[*sqldb.DB]*relayEntry
	n  int // relays made, to name the next one in logs
}

type relayEntry struct {
	r    *Relay
	idx  int                // the order it was made in
	stop context.CancelFunc // nil until the relay runs
}

// syncEvery is how often Run looks for nodes that joined or left.
const syncEvery = time.Second

// NewRelays returns the relays of the nodes that nodes returns (by node
// name, as sqldb.Sharded.All returns them), asked again while Run runs.
// Logs name a node by the order it was found in, never by its name, which
// may be a DSN with a password. opts apply to every node's relay.
func NewRelays(nodes func() map[string]*sqldb.DB, pub Publisher, log *slog.Logger, opts ...Option) *Relays {
	r := &Relays{nodes: nodes, pub: pub, log: log, opts: opts, rs: map[*sqldb.DB]*relayEntry{}}
	r.sync()
	return r
}

// sync makes a relay for every current node without one, and returns the
// entries of the nodes that are no longer current.
func (r *Relays) sync() (gone []*relayEntry) {
	cur := r.nodes()
	names := make([]string, 0, len(cur))
	for n := range cur {
		names = append(names, n)
	}
	sort.Strings(names)
	r.mu.Lock()
	defer r.mu.Unlock()
	live := map[*sqldb.DB]bool{}
	for _, n := range names {
		db := cur[n]
		live[db] = true
		if _, ok := r.rs[db]; ok {
			continue
		}
		l := r.log
		if len(names) > 1 || r.n > 0 {
			l = r.log.With("node", r.n)
		}
		r.rs[db] = &relayEntry{r: NewRelay(db, r.pub, l, r.opts...), idx: r.n}
		r.n++
	}
	for db, e := range r.rs {
		if !live[db] {
			gone = append(gone, e)
			delete(r.rs, db)
		}
	}
	return gone
}

// entries are the current relays, in the order they were made: nodes in
// name order, then the ones that joined.
func (r *Relays) entries() []*relayEntry {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*relayEntry, 0, len(r.rs))
	for _, e := range r.rs {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].idx < out[j].idx })
	return out
}

// Kick wakes every relay.
func (r *Relays) Kick() {
	for _, e := range r.entries() {
		e.r.Kick()
	}
}

// Run runs every node's relay until ctx ends, starting relays for nodes
// that join, and returns when all have stopped. The relay of a node that
// left stops once it has published what that node's outbox held.
func (r *Relays) Run(ctx context.Context) {
	var wg sync.WaitGroup
	start := func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, e := range r.rs {
			if e.stop != nil {
				continue
			}
			rctx, stop := context.WithCancel(ctx)
			e.stop = stop
			wg.Add(1)
			go func() {
				defer wg.Done()
				e.r.Run(rctx)
			}()
		}
	}
	start()
	t := time.NewTicker(syncEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			return
		case <-t.C:
		}
		for _, e := range r.sync() {
			wg.Add(1)
			go func() { // drain what the departed node still holds
				defer wg.Done()
				for ctx.Err() == nil {
					if n, err := e.r.Flush(ctx); err == nil && n == 0 {
						break
					}
					select {
					case <-ctx.Done():
					case <-time.After(syncEvery):
					}
				}
				if e.stop != nil {
					e.stop()
				}
			}()
		}
		start()
	}
}

// Flush publishes every pending row of every node once and reports how many
// it published; it returns the first error after trying every node.
func (r *Relays) Flush(ctx context.Context) (int, error) {
	total := 0
	var first error
	for _, e := range r.entries() {
		n, err := e.r.Flush(ctx)
		total += n
		if err != nil && first == nil {
			first = err
		}
	}
	return total, first
}
