package sqldb

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/retry"
	"github.com/globomantics/globomantics/internal/platform/shard"
)

// The shard map in the database.
//
// Every node of a sharded service holds a one-row table shard_map(id = 1,
// version, spec): the newest shard map it has been told about. The resharding
// tool (internal/reshard) writes the map of each move to every node; a
// running process follows it (Sharded.Follow), so the highest version found
// on any node wins. The first time a process follows, it seeds the table of
// every node of its configured map (GLOBO_SHARDS_<SERVICE>) with that map,
// unless the node already holds one of the same or a higher version; from
// then on a configured map older than the stored one is overridden by it.
//
// Every node also holds shard_moved(lo, hi, moved_at): the ranges of logical
// shards that moved away from it. A trigger on each sharded table (created
// by the tool at the first move) refuses, with SQLSTATE ShardMovedCode, any
// write to a row of such a shard, so a writer with an old map can never
// write a moved shard on its old node. NodeError maps that refusal to
// errs.Unavailable with a retry hint and makes every following Sharded of
// the process re-read the map at once, so that the retry lands on the new
// node.
//
// The spec column holds the map's text form, whose nodes are DSNs and may
// hold passwords: it is never logged.

// ShardMovedCode is the SQLSTATE the fence trigger raises for a write to a
// logical shard that moved away from the node.
const ShardMovedCode = "GL001"

// shardMapDDL creates the tables of the stored shard map and of the fence.
var shardMapDDL = []string{
	`CREATE TABLE IF NOT EXISTS shard_map (
		id INTEGER PRIMARY KEY CHECK (id = 1),
		version BIGINT NOT NULL,
		spec TEXT NOT NULL)`,
	`CREATE TABLE IF NOT EXISTS shard_moved (
		lo INTEGER NOT NULL,
		hi INTEGER NOT NULL,
		moved_at BIGINT NOT NULL)`,
}

// EnsureShardMapTables creates the shard_map and shard_moved tables on db
// if they do not exist (PostgreSQL or SQLite).
func EnsureShardMapTables(ctx context.Context, db *DB) error {
	for _, q := range shardMapDDL {
		// Concurrent CREATE TABLE IF NOT EXISTS may collide on the
		// catalog's unique index (PostgreSQL): once it exists, it's done.
		err := retry.DoIf(ctx, ddlPolicy, IsUniqueViolation, func(ctx context.Context) error {
			_, err := db.DB.ExecContext(ctx, q)
			return err
		})
		if err != nil {
			return NodeError(err)
		}
	}
	return nil
}

// ddlPolicy retries a CREATE TABLE IF NOT EXISTS that collided with the
// same statement of another process: three tries, a few ms apart.
var ddlPolicy = retry.Policy{Tries: 3, Base: 5 * time.Millisecond, Max: 20 * time.Millisecond}

// ReadStoredMap returns the shard map stored on db and true, or false when
// db holds none (no table, or no row).
func ReadStoredMap(ctx context.Context, db *DB) (shard.Map, bool, error) {
	var spec string
	err := db.QueryRowContext(ctx, `SELECT spec FROM shard_map WHERE id = 1`).Scan(&spec)
	switch {
	case errors.Is(err, sql.ErrNoRows) || missingTable(err):
		return shard.Map{}, false, nil
	case err != nil:
		return shard.Map{}, false, NodeError(err)
	}
	m, err := shard.ParseMap(spec)
	if err != nil {
		return shard.Map{}, false, errs.E("sqldb.ReadStoredMap", errs.Other, errs.Msg("bad shard map stored in shard_map"), err)
	}
	return m, true, nil
}

// WriteStoredMap stores m on db unless db already holds a map of the same
// or a higher version (creating the table if needed), and returns the
// version db holds afterwards.
func WriteStoredMap(ctx context.Context, db *DB, m shard.Map) (uint64, error) {
	if m.IsZero() {
		return 0, errs.E("sqldb.WriteStoredMap", errs.BadRequest, errs.Msg("empty shard map"))
	}
	if err := EnsureShardMapTables(ctx, db); err != nil {
		return 0, err
	}
	_, err := db.ExecContext(ctx, `INSERT INTO shard_map (id, version, spec) VALUES (1, ?, ?)
		ON CONFLICT (id) DO UPDATE SET version = excluded.version, spec = excluded.spec
		WHERE shard_map.version < excluded.version`, int64(m.Version()), m.String())
	if err != nil {
		return 0, NodeError(err)
	}
	var v int64
	if err := db.QueryRowContext(ctx, `SELECT version FROM shard_map WHERE id = 1`).Scan(&v); err != nil {
		return 0, NodeError(err)
	}
	return uint64(v), nil
}

// missingTable reports whether err says the table does not exist.
func missingTable(err error) bool {
	if err == nil {
		return false
	}
	return sqlState(err) == "42P01" || strings.Contains(err.Error(), "no such table")
}

// IsShardMoved reports whether err is (or wraps) the fence trigger's
// refusal of a write to a shard that moved away from the node.
func IsShardMoved(err error) bool { return err != nil && sqlState(err) == ShardMovedCode }

// moved is the process-wide signal that a write hit the fence of a moved
// shard: closed, and replaced, by kickMoved; every following Sharded waits
// on it and re-reads the stored map. It is the one piece of package state,
// because NodeError, where stores pass their errors, has no receiver.
var moved = struct {
	mu sync.Mutex
	ch chan struct{}
}{ch: make(chan struct{})}

func kickMoved() {
	moved.mu.Lock()
	close(moved.ch)
	moved.ch = make(chan struct{})
	moved.mu.Unlock()
}

func movedSignal() <-chan struct{} {
	moved.mu.Lock()
	defer moved.mu.Unlock()
	return moved.ch
}

// storedMapTimeout bounds the reading of one node's stored map.
const storedMapTimeout = time.Second

// StoredMap returns the highest-versioned map stored on the nodes of s's
// current map, and false when none holds one. Nodes that do not answer are
// skipped; it fails only when none answered.
func (s *Sharded) StoredMap(ctx context.Context) (shard.Map, bool, error) {
	r, _ := Gather(ctx, s, storedMapTimeout, func(ctx context.Context, db *DB) ([]shard.Map, error) {
		m, ok, err := ReadStoredMap(ctx, db)
		if err != nil || !ok {
			return nil, err
		}
		return []shard.Map{m}, nil
	})
	var best shard.Map
	for _, m := range r.Items {
		if best.IsZero() || m.Version() > best.Version() {
			best = m
		}
	}
	if best.IsZero() && len(r.Missing) > 0 && len(r.Missing) == len(s.Nodes()) {
		return shard.Map{}, false, errs.E("sqldb.Sharded.StoredMap", errs.Unavailable, errs.Msg("no shard node answered"), r.Missing[0].Err)
	}
	return best, !best.IsZero(), nil
}

// Refresh reads the stored maps of the nodes and switches s to the highest
// one when its version is above the current map's (opening its new nodes),
// reporting whether it switched. A stored map of the current version but a
// different assignment is an errs.Conflict and leaves s as it is.
func (s *Sharded) Refresh(ctx context.Context) (bool, error) {
	const op = "sqldb.Sharded.Refresh"
	m, ok, err := s.StoredMap(ctx)
	if err != nil || !ok {
		return false, err
	}
	cur := s.Map()
	if m.Version() < cur.Version() || (m.Version() == cur.Version() && m.SameAssignment(cur)) {
		return false, nil
	}
	if err := s.r.Swap(m); err != nil {
		return false, errs.E(op, err)
	}
	s.logger().InfoContext(ctx, "sqldb: shard map switched", "from_version", cur.Version(), "to_version", m.Version(),
		"nodes", len(m.Nodes()), "ranges", len(m.Ranges()))
	return true, nil
}

// SeedStoredMap writes s's current map to every node of it that holds
// none, or an older one (see WriteStoredMap): how a configured map seeds
// the table the first time. It carries on past nodes that fail and returns
// their errors, joined.
func (s *Sharded) SeedStoredMap(ctx context.Context) error {
	m := s.Map()
	return s.Each(ctx, func(ctx context.Context, _ string, db *DB) error {
		_, err := WriteStoredMap(ctx, db, m)
		return err
	})
}

// followKickGap is the least time between two refreshes kicked by writes
// refused at a fence.
const followKickGap = 20 * time.Millisecond

// Follow makes s follow the shard map stored in its nodes: it seeds the
// nodes with the current (configured) map where they hold none or an older
// one, switches at once to a stored map of a higher version, then, until
// ctx ends, re-reads the stored maps every interval (1 s when every <= 0)
// and at once when a write of this process is refused by the fence of a
// moved shard (see NodeError). It returns the error of the first read, if
// any; following goes on regardless, and later failures are logged.
func (s *Sharded) Follow(ctx context.Context, every time.Duration) error {
	if every <= 0 {
		every = time.Second
	}
	seedErr := s.SeedStoredMap(ctx)
	_, err := s.Refresh(ctx)
	go s.follow(ctx, every)
	return errors.Join(seedErr, err)
}

func (s *Sharded) follow(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		kicked := movedSignal()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-kicked:
		}
		if _, err := s.Refresh(ctx); err != nil && ctx.Err() == nil {
			s.logger().WarnContext(ctx, "sqldb: cannot refresh the shard map", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(followKickGap):
		}
	}
}
