package shard

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"

	"github.com/globomantics/globomantics/internal/platform/errs"
)

// Router gives a store the handle (a database pool, a client) of the node
// that holds a key, an id or a shard, under a Map that Swap may replace
// while the Router is in use. It also fences writes to chosen shards while
// they move between nodes. A Router is safe for concurrent use; make one
// with NewRouter.
type Router[N any] struct {
	open   func(node string) (N, error)
	retire func(node string, h N)

	swapMu sync.Mutex // serialises Swap
	cur    atomic.Pointer[routing[N]]

	fenceMu  sync.Mutex
	fenced   [Count]bool
	inflight [Count]int
	draining int           // Drain calls waiting
	changed  chan struct{} // closed, and replaced, when a fence lifts or, during a Drain, a shard's last write ends
}

// routing is one Map with a handle for each of its nodes; never modified.
type routing[N any] struct {
	m       Map
	handles map[string]N
}

// NewRouter returns a Router over m that opens a handle for each node with
// open, now and whenever Swap brings in a new node, and hands the handle of
// a node the map no longer holds to retire (which may be nil), whose
// business it is to close it, at once or once calls in flight on it are
// done. open should not wait for the node (sql.Open and pgxpool.New connect
// lazily), so that a node that is down fails only the calls routed to it.
//
// It fails with errs.BadRequest for the zero Map and errs.Unavailable if
// open fails; handles it opened before the failure go to retire.
func NewRouter[N any](m Map, open func(node string) (N, error), retire func(node string, h N)) (*Router[N], error) {
	const op = "shard.NewRouter"
	if m.IsZero() {
		return nil, errs.E(op, errs.BadRequest, errs.Msg("empty shard map"))
	}
	if retire == nil {
		retire = func(string, N) {}
	}
	r := &Router[N]{open: open, retire: retire}
	handles, err := r.openAll(m, nil)
	if err != nil {
		return nil, errs.E(op, err)
	}
	r.cur.Store(&routing[N]{m, handles})
	return r, nil
}

// openAll returns a handle for every node of m, reusing those of have and
// opening the others; on failure it retires those it opened.
func (r *Router[N]) openAll(m Map, have map[string]N) (map[string]N, error) {
	handles := make(map[string]N)
	var opened []string
	for _, node := range m.Nodes() {
		if h, ok := have[node]; ok {
			handles[node] = h
			continue
		}
		h, err := r.open(node)
		if err != nil {
			for _, n := range opened {
				r.retire(n, handles[n])
			}
			// The node is not named in Msg: it may be a DSN with a password.
			return nil, errs.E(errs.Unavailable, errs.Msg("cannot open a shard node"), err)
		}
		handles[node] = h
		opened = append(opened, node)
	}
	return handles, nil
}

// load returns the current routing, or an error for a Router not made by
// NewRouter.
func (r *Router[N]) load(op string) (*routing[N], error) {
	cur := r.cur.Load()
	if cur == nil {
		return nil, errs.E(op, errs.Unavailable, errs.Msg("no shard map"))
	}
	return cur, nil
}

// ForShard returns the handle of the node holding shard s. It fails with
// errs.BadRequest for a shard out of range.
func (r *Router[N]) ForShard(s ID) (N, error) {
	const op = "shard.Router.ForShard"
	var zero N
	if !s.Valid() {
		return zero, errs.E(op, errs.BadRequest, errs.Msg("no shard %d", s))
	}
	cur, err := r.load(op)
	if err != nil {
		return zero, err
	}
	return cur.handles[cur.m.NodeFor(s)], nil
}

// For returns the shard of key (see ForKey) and the handle of the node
// holding it. It does not fail on a Router made by NewRouter.
func (r *Router[N]) For(key string) (N, ID, error) {
	s := ForKey(key)
	h, err := r.ForShard(s)
	return h, s, err
}

// ForID returns the shard carried by id (see OfID) and the handle of the
// node holding it. An id that carries no shard (made by ids.New, or not an
// id) names no row of a sharded store: ForID fails with errs.NotFound.
func (r *Router[N]) ForID(id string) (N, ID, error) {
	s, ok := OfID(id)
	if !ok {
		var zero N
		return zero, 0, errs.E("shard.Router.ForID", errs.NotFound, errs.Msg("not found"), fmt.Errorf("id %q carries no shard", id))
	}
	h, err := r.ForShard(s)
	return h, s, err
}

// Map returns the current map.
func (r *Router[N]) Map() Map {
	if cur := r.cur.Load(); cur != nil {
		return cur.m
	}
	return Map{}
}

// All returns the handle of every node of the current map, by node; the
// map is the caller's to modify.
func (r *Router[N]) All() map[string]N {
	_, handles := r.Snapshot()
	return handles
}

// Snapshot returns the current map and the handle of each of its nodes,
// taken together, so that a scatter-gather and the report of the shards it
// missed use one map even if Swap runs meanwhile.
func (r *Router[N]) Snapshot() (Map, map[string]N) {
	cur := r.cur.Load()
	if cur == nil {
		return Map{}, map[string]N{}
	}
	return cur.m, maps.Clone(cur.handles)
}

// Swap makes next the current map: it opens handles for its new nodes
// first, then switches every caller to next at once, then hands the handles
// of the nodes next no longer holds to the retire function. Swapping to a
// map equal to the current one does nothing.
//
// It fails, leaving the current map in place, with errs.BadRequest for the
// zero Map, errs.Conflict for a map of a lower version than the current one
// or of the same version but a different assignment (so that a late,
// stale map never rolls a move back), and errs.Unavailable if a new node
// cannot be opened.
func (r *Router[N]) Swap(next Map) error {
	const op = "shard.Router.Swap"
	if next.IsZero() {
		return errs.E(op, errs.BadRequest, errs.Msg("empty shard map"))
	}
	r.swapMu.Lock()
	defer r.swapMu.Unlock()
	cur, err := r.load(op)
	if err != nil {
		return err
	}
	switch v, nv := cur.m.Version(), next.Version(); {
	case nv < v:
		return errs.E(op, errs.Conflict, errs.Msg("shard map version %d is older than the current version %d", nv, v))
	case nv == v && next.SameAssignment(cur.m):
		return nil
	case nv == v:
		return errs.E(op, errs.Conflict, errs.Msg("shard map version %d differs from the current map of that version", nv))
	}
	handles, err := r.openAll(next, cur.handles)
	if err != nil {
		return errs.E(op, err)
	}
	r.cur.Store(&routing[N]{next, handles})
	for _, node := range cur.m.Nodes() {
		if _, kept := handles[node]; !kept {
			r.retire(node, cur.handles[node])
		}
	}
	return nil
}

// checkRange fails with errs.BadRequest unless lo <= hi < Count.
func checkRange(op string, lo, hi ID) error {
	if lo > hi || !hi.Valid() {
		return errs.E(op, errs.BadRequest, errs.Msg("bad shard range %d-%d, want 0 <= lo <= hi < %d", lo, hi, Count))
	}
	return nil
}

// Fence marks shards lo to hi (inclusive) as not writable in this process:
// from now on WaitWritable and BeginWrite on them wait until Unfence. Writes
// begun before Fence may still be in flight; Drain waits for them. It fails
// with errs.BadRequest for a bad range.
func (r *Router[N]) Fence(lo, hi ID) error {
	if err := checkRange("shard.Router.Fence", lo, hi); err != nil {
		return err
	}
	r.fenceMu.Lock()
	defer r.fenceMu.Unlock()
	for s := lo; s <= hi; s++ {
		r.fenced[s] = true
	}
	return nil
}

// Unfence makes shards lo to hi (inclusive) writable again and releases the
// writers waiting on them. It fails with errs.BadRequest for a bad range.
func (r *Router[N]) Unfence(lo, hi ID) error {
	if err := checkRange("shard.Router.Unfence", lo, hi); err != nil {
		return err
	}
	r.fenceMu.Lock()
	defer r.fenceMu.Unlock()
	for s := lo; s <= hi; s++ {
		r.fenced[s] = false
	}
	r.broadcast()
	return nil
}

// broadcast wakes every waiter; fenceMu must be held.
func (r *Router[N]) broadcast() {
	if r.changed != nil {
		close(r.changed)
	}
	r.changed = make(chan struct{})
}

// wakeup returns the channel broadcast closes next; fenceMu must be held.
func (r *Router[N]) wakeup() <-chan struct{} {
	if r.changed == nil {
		r.changed = make(chan struct{})
	}
	return r.changed
}

// Fenced reports whether shard s is fenced.
func (r *Router[N]) Fenced(s ID) bool {
	if !s.Valid() {
		return false
	}
	r.fenceMu.Lock()
	defer r.fenceMu.Unlock()
	return r.fenced[s]
}

// WaitWritable returns nil at once if shard s is not fenced, and otherwise
// when it is unfenced. It fails with errs.Unavailable when ctx ends first,
// and errs.BadRequest for a shard out of range. A writer calls it before it
// resolves the handle with For, ForID or ForShard, so that a write held
// back by a move goes to the shard's new node. It does not count the write
// as in flight: use BeginWrite where a mover must Drain.
func (r *Router[N]) WaitWritable(ctx context.Context, s ID) error {
	_, err := r.admit(ctx, "shard.Router.WaitWritable", s, false)
	return err
}

// BeginWrite waits as WaitWritable does, then counts a write on shard s as
// in flight until the returned end function is called (end may be called
// more than once); Drain waits for such writes. On error end is nil.
func (r *Router[N]) BeginWrite(ctx context.Context, s ID) (end func(), err error) {
	return r.admit(ctx, "shard.Router.BeginWrite", s, true)
}

func (r *Router[N]) admit(ctx context.Context, op string, s ID, count bool) (func(), error) {
	if !s.Valid() {
		return nil, errs.E(op, errs.BadRequest, errs.Msg("no shard %d", s))
	}
	for {
		r.fenceMu.Lock()
		if !r.fenced[s] {
			if !count {
				r.fenceMu.Unlock()
				return func() {}, nil
			}
			r.inflight[s]++
			r.fenceMu.Unlock()
			var once sync.Once
			return func() { once.Do(func() { r.endWrite(s) }) }, nil
		}
		changed := r.wakeup()
		r.fenceMu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, errs.E(op, errs.Unavailable, errs.Msg("shard %d is moving; try again", s), context.Cause(ctx))
		}
	}
}

func (r *Router[N]) endWrite(s ID) {
	r.fenceMu.Lock()
	defer r.fenceMu.Unlock()
	r.inflight[s]--
	if r.inflight[s] == 0 && r.draining > 0 {
		r.broadcast()
	}
}

// Drain waits until no write begun with BeginWrite is in flight on shards
// lo to hi (inclusive). After Fence, it means every write admitted before
// the fence has ended, so the moving shards' data is final on their old
// node (without a fence, new writes may keep it waiting). It fails with
// errs.Unavailable when ctx ends first and errs.BadRequest for a bad range.
func (r *Router[N]) Drain(ctx context.Context, lo, hi ID) error {
	const op = "shard.Router.Drain"
	if err := checkRange(op, lo, hi); err != nil {
		return err
	}
	r.fenceMu.Lock()
	r.draining++
	r.fenceMu.Unlock()
	defer func() {
		r.fenceMu.Lock()
		r.draining--
		r.fenceMu.Unlock()
	}()
	for {
		r.fenceMu.Lock()
		busy := -1
		for s := lo; s <= hi; s++ {
			if r.inflight[s] > 0 {
				busy = int(s)
				break
			}
		}
		changed := r.wakeup()
		r.fenceMu.Unlock()
		if busy < 0 {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return errs.E(op, errs.Unavailable, errs.Msg("writes on shard %d still in flight", busy), context.Cause(ctx))
		}
	}
}
