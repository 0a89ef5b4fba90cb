package sqldb

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/shard"
)

// SingleNode is the node name of the one node of a Sharded made by Single.
const SingleNode = "single"

// retireGrace is how long a node that a new shard map no longer holds stays
// open for the calls in flight on it before Sharded closes it.
const retireGrace = time.Minute

// nodeOpenTimeout bounds OpenSharded's opening of one node.
const nodeOpenTimeout = 30 * time.Second

// Sharded is a service's database split by user into logical shards (see
// package shard): a shard.Router over one *DB per node, each node holding
// ranges of the 1024 logical shards (and each node's *DB possibly itself a
// primary with replicas). A store picks the node of a call from the call's
// key (For, ForUser), id (ForID) or shard (ForShard); all of one user's rows
// sit on one shard, so a transaction over them stays on one node.
//
// Routing never touches the network: a node that is down fails only the
// calls routed to it, with errs.Unavailable (see NodeError). Safe for
// concurrent use. The unsharded case is Single: one node holding every
// shard, which behaves exactly as that node alone.
type Sharded struct {
	r     *shard.Router[*DB]
	owned bool         // Close closes the nodes
	log   *slog.Logger // map switches and refresh failures; nil: slog.Default
}

// NewSharded returns a Sharded over the nodes of m, opening each node's
// database with open (called again for the new nodes of a map given to
// Swap). open should fail fast and not wait for a node that is down beyond
// its own connect timeout. The Sharded owns the databases open returns:
// Close closes them, and so does Swap, after a grace period, for the nodes
// the new map drops. It fails with errs.BadRequest for an empty map and
// errs.Unavailable when a node cannot be opened (closing those it opened).
func NewSharded(m shard.Map, open func(node string) (*DB, error)) (*Sharded, error) {
	// NewRouter hands the nodes it opened before a failure to retire: those
	// close at once; nodes a later Swap drops close after a grace period,
	// once the calls in flight on them are done.
	var built atomic.Bool
	retire := func(_ string, db *DB) {
		if !built.Load() {
			_ = db.Close()
			return
		}
		time.AfterFunc(retireGrace, func() { _ = db.Close() })
	}
	r, err := shard.NewRouter(m, open, retire)
	if err != nil {
		return nil, errs.E("sqldb.NewSharded", err)
	}
	built.Store(true)
	return &Sharded{r: r, owned: true}, nil
}

// OpenSharded opens a Sharded from a shard map in text form whose nodes
// are DSNs, "0-511=postgres://...;512-1023=postgres://..." (see
// shard.ParseMap and OpenWith), every node with opts, except that a node's
// replicas are the further hosts of its own DSN (opts.Replicas is ignored)
// and each node gets its own Source in consistency tokens: opts.Source (or
// "shard") followed by "-" and a hash of the node's DSN, so that tokens of
// two nodes never mix. Every node must answer now; later, a node that goes
// down fails only its own users' calls. Errors: errs.BadRequest for a
// malformed map (the message never quotes a DSN), errs.Unavailable when a
// node cannot be opened.
func OpenSharded(ctx context.Context, spec string, opts Options) (*Sharded, error) {
	const op = "sqldb.OpenSharded"
	m, err := shard.ParseMap(spec)
	if err != nil {
		return nil, errs.E(op, err)
	}
	s, err := NewSharded(m, func(node string) (*DB, error) {
		o := opts
		o.Replicas = nil
		if o.DBName == "" {
			o.DBName = opts.Source // metrics name the service, not the node
		}
		sum := sha256.Sum256([]byte(node))
		if o.Source == "" {
			o.Source = "shard"
		}
		o.Source += "-" + hex.EncodeToString(sum[:4])
		// open also runs later, for the new nodes of a Swap: not under the
		// caller's context, which may have ended by then.
		octx, cancel := context.WithTimeout(context.WithoutCancel(ctx), nodeOpenTimeout)
		defer cancel()
		db, err := OpenWith(octx, node, o)
		if err != nil {
			return nil, errs.E(errs.Unavailable, errs.Msg("cannot open a shard node"), err)
		}
		return db, nil
	})
	if err != nil {
		return nil, errs.E(op, err)
	}
	s.log = opts.Log
	return s, nil
}

// logger is where s logs.
func (s *Sharded) logger() *slog.Logger {
	if s.log != nil {
		return s.log
	}
	return slog.Default()
}

// Single returns the Sharded of an unsharded database: one node, named
// SingleNode, holding every logical shard. Stores over it behave exactly as
// over db alone. Close does not close db, which stays its opener's.
func Single(db *DB) *Sharded {
	r, err := shard.NewRouter(shard.Single(SingleNode), func(string) (*DB, error) { return db, nil }, nil)
	if err != nil {
		panic("sqldb.Single: " + err.Error()) // cannot happen: the map is valid and open cannot fail
	}
	return &Sharded{r: r}
}

// For returns the logical shard of key (shard.ForKey) and the database of
// the node holding it. It does not touch the network.
func (s *Sharded) For(key string) (*DB, shard.ID, error) { return s.r.For(key) }

// ForUser returns the logical shard of a user (shard.ForUser) and the
// database of the node holding it.
func (s *Sharded) ForUser(userID string) (*DB, shard.ID, error) {
	id := shard.ForUser(userID)
	db, err := s.r.ForShard(id)
	return db, id, err
}

// ForID returns the shard carried by id (ids.NewInShard) and the database of
// the node holding it; errs.NotFound for an id that carries no shard, which
// a caller holding old ids answers by asking every node (see Gather).
func (s *Sharded) ForID(id string) (*DB, shard.ID, error) { return s.r.ForID(id) }

// ForShard returns the database of the node holding logical shard id;
// errs.BadRequest for a shard out of range.
func (s *Sharded) ForShard(id shard.ID) (*DB, error) { return s.r.ForShard(id) }

// Map returns the current shard map.
func (s *Sharded) Map() shard.Map { return s.r.Map() }

// Nodes returns the names of the current map's nodes, in the order of the
// first shard each holds.
func (s *Sharded) Nodes() []string { return s.r.Map().Nodes() }

// All returns the database of every node of the current map, by node name;
// the map is the caller's.
func (s *Sharded) All() map[string]*DB { return s.r.All() }

// Snapshot returns the current map and the database of each of its nodes,
// taken together (see shard.Router.Snapshot).
func (s *Sharded) Snapshot() (shard.Map, map[string]*DB) { return s.r.Snapshot() }

// Router returns the router underneath, for the tools that move shards
// between nodes (Fence, Drain, Swap).
func (s *Sharded) Router() *shard.Router[*DB] { return s.r }

// Single reports whether the current map has one node.
func (s *Sharded) Single() bool { return len(s.r.Map().Nodes()) == 1 }

// Each calls fn for every node of the current map, one after the other in
// map order, and returns the errors it returned, joined; it carries on past
// a node that fails.
func (s *Sharded) Each(ctx context.Context, fn func(ctx context.Context, node string, db *DB) error) error {
	m, dbs := s.r.Snapshot()
	var all []error
	for _, node := range m.Nodes() {
		if err := fn(ctx, node, dbs[node]); err != nil {
			all = append(all, err)
		}
	}
	return errors.Join(all...)
}

// Migrate applies the component's migrations (see DB.Migrate) to every node,
// one after the other. It fails with the first node's error, naming the
// node's shards (never the node, which may be a DSN with a password).
func (s *Sharded) Migrate(ctx context.Context, component string, fsys fs.FS) error {
	m, dbs := s.r.Snapshot()
	for _, node := range m.Nodes() {
		if err := dbs[node].Migrate(ctx, component, fsys); err != nil {
			return errs.E("sqldb.Sharded.Migrate", errs.Msg("migrating the node of shards %s", rangesText(m.RangesOf(node))), err)
		}
	}
	return nil
}

// Close closes every node's database if NewSharded or OpenSharded opened
// them; a Sharded made by Single leaves its database open.
func (s *Sharded) Close() error {
	if !s.owned {
		return nil
	}
	var all []error
	for _, db := range s.r.All() {
		all = append(all, db.Close())
	}
	return errors.Join(all...)
}

// Gather runs fn on every node of s concurrently, each under a deadline of
// perNode, and returns what the nodes that answered returned, the nodes that
// did not in Result.Missing, and the map the call used (for
// Result.MissingRanges). See shard.Gather.
func Gather[T any](ctx context.Context, s *Sharded, perNode time.Duration, fn func(ctx context.Context, db *DB) ([]T, error)) (shard.Result[T], shard.Map) {
	m, dbs := s.r.Snapshot()
	r := shard.Gather(ctx, m.Nodes(), perNode, func(ctx context.Context, node string) ([]T, error) {
		return fn(ctx, dbs[node])
	})
	return r, m
}

// rangesText is "0-511,600-700".
func rangesText(rs []shard.Range) string {
	var b strings.Builder
	for i, r := range rs {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%d-%d", r.Lo, r.Hi)
	}
	return b.String()
}

// NodeError returns err as errs.Unavailable when it says the database could
// not be reached rather than that the statement failed: a closed pool, a
// broken or refused connection, a timeout. Other errors, and errors that
// already carry a kind, are returned unchanged. Stores over a Sharded pass
// their errors through it, so that a node that is down fails its users'
// calls with Unavailable (HTTP 503), not Internal.
//
// A write refused because its shard moved to another node (SQLSTATE
// ShardMovedCode, see shardmap.go) is errs.Unavailable with a retry hint of
// one second, and makes every following Sharded re-read the shard map at
// once, so that the caller's retry goes to the new node.
func NodeError(err error) error {
	if err == nil {
		return nil
	}
	if IsShardMoved(err) {
		kickMoved()
		return errs.E(errs.Unavailable, errs.RetryAfter(time.Second), errs.Msg("shard moved to another node; retry"), err)
	}
	var e *errs.Error
	if errors.As(err, &e) && errs.KindOf(err) != errs.Other {
		return err
	}
	if nodeDown(err) {
		return errs.E(errs.Unavailable, errs.Msg("database unavailable"), err)
	}
	return err
}

// nodeDown reports whether err means the node could not be used at all.
func nodeDown(err error) bool {
	if isConnErr(err) || isTimeout(err) || errors.Is(err, sql.ErrConnDone) {
		return true
	}
	// database/sql has no exported sentinel for a closed pool.
	msg := err.Error()
	return strings.Contains(msg, "sql: database is closed") || strings.Contains(msg, "connection refused")
}

// BackfillShard sets the shard column of table's rows where it is -1 (rows
// written before the column existed, or by an older instance during a
// rolling upgrade), in batches of 500 rows' keys, each batch in one
// transaction: for each distinct (keyCol, srcCol) pair it sets shard to
// shardOf(key, src) on the rows with that key. table, keyCol and srcCol are
// identifiers from code, never input.
func BackfillShard(ctx context.Context, db *DB, table, keyCol, srcCol string, shardOf func(key, src string) shard.ID) error {
	const batch = 500
	sel := fmt.Sprintf(`SELECT DISTINCT %s, %s FROM %s WHERE shard = -1 LIMIT %d`, keyCol, srcCol, table, batch)
	upd := fmt.Sprintf(`UPDATE %s SET shard = ? WHERE %s = ? AND shard = -1`, table, keyCol)
	for {
		type pair struct{ key, src string }
		var todo []pair
		rows, err := db.QueryContext(ctx, sel)
		if err != nil {
			return NodeError(err)
		}
		for rows.Next() {
			var p pair
			if err := rows.Scan(&p.key, &p.src); err != nil {
				rows.Close()
				return err
			}
			todo = append(todo, p)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return NodeError(err)
		}
		if len(todo) == 0 {
			return nil
		}
		err = db.InTx(ctx, func(tx *Tx) error {
			for _, p := range todo {
				if _, err := tx.ExecContext(ctx, upd, int(shardOf(p.key, p.src)), p.key); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return NodeError(err)
		}
	}
}

// idScatterTimeout bounds each node's answer to a look-up by an id that
// carries no shard.
const idScatterTimeout = 2 * time.Second

// NodeOfID returns the node holding the row of table whose id column is id:
// the node of the shard the id carries, or, for an id from before ids
// carried their shard, the node that has the row, asked of every node at
// once (logged, since it costs every node a query). what names the row in
// errors ("order"): errs.NotFound when no node has it, errs.Unavailable when
// none that answered has it and a node did not answer. table is a constant
// of the caller, never input.
func (s *Sharded) NodeOfID(ctx context.Context, table, id, what string) (*DB, error) {
	if db, _, err := s.ForID(id); err == nil {
		return db, nil
	}
	m, dbs := s.Snapshot()
	if nodes := m.Nodes(); len(nodes) == 1 {
		return dbs[nodes[0]], nil
	}
	s.logger().WarnContext(ctx, "sqldb: id carries no shard; asking every node", "table", table, "id", id)
	r, _ := Gather(ctx, s, idScatterTimeout, func(ctx context.Context, db *DB) ([]*DB, error) {
		var n int
		if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+table+` WHERE id = ?`, id).Scan(&n); err != nil || n == 0 {
			return nil, err
		}
		return []*DB{db}, nil
	})
	if len(r.Items) > 0 {
		return r.Items[0], nil
	}
	if !r.Complete() {
		return nil, errs.E(errs.Unavailable, errs.Msg("%s not found on the shards that answered", what),
			fmt.Errorf("nodes did not answer: %s", r.Missing[0].Err))
	}
	return nil, errs.E(errs.NotFound, errs.Msg("%s not found", what))
}
