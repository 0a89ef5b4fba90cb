// Package reshard moves a range of logical shards of a sharded service from
// one PostgreSQL node to another while the service runs, on PostgreSQL's own
// logical replication:
//
//  1. the destination holds the service's schema (Options.Migrate, or the
//     service already ran on a map naming it);
//  2. a publication on the source, filtered to the moving shards (shard
//     BETWEEN lo AND hi), and a subscription on the destination copy the rows
//     and then stream every later change;
//  3. the fence: one short transaction on the source locks the tables against
//     writes (waiting for those in flight), records the range in shard_moved
//     and reads the WAL position; from its commit a trigger refuses, with
//     SQLSTATE sqldb.ShardMovedCode, every write to those shards there, and
//     to no other;
//  4. catch-up: the replication slot confirms the destination has applied
//     everything up to that position;
//  5. the new map (Map.Move, version + 1) is written to shard_map on every
//     node; running processes follow it (sqldb.Sharded.Follow), at once
//     after a refused write;
//  6. verification: per shard and table, row counts and an md5 of the rows
//     ordered by primary key, on the source and on the destination as of the
//     switch (a snapshot taken before the map was written);
//  7. clean-up: subscription, slot and publication dropped, then the moved
//     rows deleted from the source in batches. The fence stays.
//
// DSNs may hold passwords: nothing here logs or prints one; nodes are named
// by their index in the shard map, or as "source" and "destination".
package reshard

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/shard"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
)

// Options says what to move where.
type Options struct {
	// Service names the service ("order"); it names the publication,
	// slot and subscription.
	Service string
	// Tables are the sharded tables to move, each with a shard column and a
	// primary key. Empty: every table of the source's schema that has a
	// shard column.
	Tables []string
	// From and To are the DSNs of the source and destination nodes, as the
	// shard map names them. From empty: the node holding Lo in the map.
	From, To string
	// Lo and Hi bound the logical shards to move, inclusive; the map must
	// give all of them to From.
	Lo, Hi shard.ID
	// Map is the current shard map in text form; empty, or older than the
	// map stored in the nodes: the stored one.
	Map string
	// Migrate, if set, is run on the destination first, to create the
	// service's schema (e.g. db.Migrate(ctx, "order", fsys)).
	Migrate func(ctx context.Context, db *sqldb.DB) error
	// SyncTimeout bounds the initial copy (default 30 min).
	SyncTimeout time.Duration
	// CatchUpTimeout bounds the wait, fenced, for the destination to apply
	// the source's last changes (default 30 s); past it the fence is lifted
	// and the move abandoned.
	CatchUpTimeout time.Duration
	// CleanupGrace is how long the moved rows stay on the source after the
	// switch before they are deleted (default 2 s): reads are not fenced,
	// and a process that has not yet seen the new map (followers poll every
	// second) still reads the source's frozen copy rather than nothing.
	CleanupGrace time.Duration
	// DeleteBatch is how many rows each clean-up transaction deletes from
	// the source (default 1000).
	DeleteBatch int
	// Log receives one line per step; nil discards.
	Log *slog.Logger
}

// Check is one table's rows of one shard, on both nodes.
type Check struct {
	SourceRows, DestRows int64
	SourceSum, DestSum   string // md5 of the rows as text, in primary-key order; "" for none
}

// OK reports whether both nodes hold the same rows.
func (c Check) OK() bool { return c.SourceRows == c.DestRows && c.SourceSum == c.DestSum }

// Report says what a move did and how long its steps took.
type Report struct {
	Service     string
	Lo, Hi      shard.ID
	Tables      []string
	FromVersion uint64 // the map's version before the move
	ToVersion   uint64 // after it
	// CopyDuration runs from the subscription's creation to the end of the
	// initial copy of every table.
	CopyDuration time.Duration
	// FenceDuration runs from the LOCK on the source to the new map being
	// stored on every node: the time writes to the moving shards may wait
	// or be refused (plus the followers' delay to notice the new map).
	FenceDuration time.Duration
	// FenceLock is how long the LOCK waited for the writes in flight.
	FenceLock time.Duration
	// CatchUp runs from the fence's commit to the destination's confirming
	// the fence's WAL position.
	CatchUp time.Duration
	// FencedAt is the start of the LOCK; SwitchedAt the moment the new map
	// was on every node.
	FencedAt, SwitchedAt time.Time
	// Verified holds, for every moved shard that has rows, per table, the
	// counts and checksums on both nodes.
	Verified map[shard.ID]map[string]Check
	// RowsDeleted counts the moved rows deleted from the source, per table.
	RowsDeleted map[string]int64
	// NewMap is the map after the move, nodes shown by index ("#0").
	NewMap string
}

// Rows returns the rows verified, per table, on the destination.
func (r Report) Rows() map[string]int64 {
	out := map[string]int64{}
	for _, byTable := range r.Verified {
		for t, c := range byTable {
			out[t] += c.DestRows
		}
	}
	return out
}

// Print writes the report, one line per fact, then one per shard.
func (r Report) Print(w io.Writer) {
	fmt.Fprintf(w, "moved shards %d-%d of %s: map v%d -> v%d (%s)\n", r.Lo, r.Hi, r.Service, r.FromVersion, r.ToVersion, r.NewMap)
	fmt.Fprintf(w, "tables: %s\n", strings.Join(r.Tables, ", "))
	fmt.Fprintf(w, "copy: %v\nfence: %v (lock wait %v, catch-up %v)\n", r.CopyDuration.Round(time.Millisecond),
		r.FenceDuration.Round(time.Microsecond), r.FenceLock.Round(time.Microsecond), r.CatchUp.Round(time.Microsecond))
	rows := r.Rows()
	for _, t := range r.Tables {
		fmt.Fprintf(w, "verified %s: %d rows; deleted from source: %d\n", t, rows[t], r.RowsDeleted[t])
	}
	ids := make([]shard.ID, 0, len(r.Verified))
	for s := range r.Verified {
		ids = append(ids, s)
	}
	slices.Sort(ids)
	for _, s := range ids {
		var parts []string
		for _, t := range r.Tables {
			c := r.Verified[s][t]
			sum := c.DestSum
			if len(sum) > 12 {
				sum = sum[:12]
			}
			parts = append(parts, fmt.Sprintf("%s=%d/%s", t, c.DestRows, sum))
		}
		fmt.Fprintf(w, "shard %d: %s\n", s, strings.Join(parts, " "))
	}
}

// Move moves shards opts.Lo to opts.Hi from opts.From to opts.To (see the
// package comment) and returns its report. It fails with errs.BadRequest for
// bad options (a range the map does not give to From, From equal to To, a
// table without a shard column or primary key), errs.Conflict when another
// map of a higher version appeared meanwhile or the verification finds a
// difference (then nothing is deleted from the source), errs.Unavailable
// when a node cannot be reached. Before the fence, a failure leaves the map
// and the source as they were (the replication objects are dropped); a
// failure to catch up lifts the fence again.
func Move(ctx context.Context, opts Options) (rep Report, err error) {
	const op = "reshard.Move"
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.SyncTimeout <= 0 {
		opts.SyncTimeout = 30 * time.Minute
	}
	if opts.CatchUpTimeout <= 0 {
		opts.CatchUpTimeout = 30 * time.Second
	}
	if opts.CleanupGrace <= 0 {
		opts.CleanupGrace = 2 * time.Second
	}
	if opts.DeleteBatch <= 0 {
		opts.DeleteBatch = 1000
	}
	rep = Report{Service: opts.Service, Lo: opts.Lo, Hi: opts.Hi}
	if !validName.MatchString(opts.Service) {
		return rep, errs.E(op, errs.BadRequest, errs.Msg("bad service name %q", opts.Service))
	}
	if opts.Lo > opts.Hi || !opts.Hi.Valid() {
		return rep, errs.E(op, errs.BadRequest, errs.Msg("bad shard range %d-%d", opts.Lo, opts.Hi))
	}
	if opts.To == "" || (opts.From == "" && opts.Map == "") {
		return rep, errs.E(op, errs.BadRequest, errs.Msg("need the destination, and the source or the current map"))
	}

	// The current map: given, or stored in the nodes; the higher wins.
	var cur shard.Map
	if opts.Map != "" {
		if cur, err = shard.ParseMap(opts.Map); err != nil {
			return rep, errs.E(op, err)
		}
	}
	if opts.From == "" {
		opts.From = cur.NodeFor(opts.Lo)
	}
	if opts.From == opts.To {
		return rep, errs.E(op, errs.BadRequest, errs.Msg("source and destination are the same node"))
	}
	src, err := sqldb.OpenPostgres(ctx, opts.From)
	if err != nil {
		return rep, errs.E(op, errs.Unavailable, errs.Msg("cannot open the source node"), err)
	}
	defer src.Close()
	dst, err := sqldb.OpenPostgres(ctx, opts.To)
	if err != nil {
		return rep, errs.E(op, errs.Unavailable, errs.Msg("cannot open the destination node"), err)
	}
	defer dst.Close()
	for _, db := range []*sqldb.DB{src, dst} {
		stored, ok, err := sqldb.ReadStoredMap(ctx, db)
		if err != nil {
			return rep, errs.E(op, err)
		}
		if ok && (cur.IsZero() || stored.Version() > cur.Version()) {
			cur = stored
		}
	}
	if cur.IsZero() {
		return rep, errs.E(op, errs.BadRequest, errs.Msg("no shard map given and none stored on the source"))
	}
	for s := int(opts.Lo); s <= int(opts.Hi); s++ {
		if cur.NodeFor(shard.ID(s)) != opts.From {
			return rep, errs.E(op, errs.BadRequest, errs.Msg("shard %d is not on the source node in map v%d", s, cur.Version()))
		}
	}
	next, err := cur.Move(opts.Lo, opts.Hi, opts.To)
	if err != nil {
		return rep, errs.E(op, err)
	}
	rep.FromVersion, rep.ToVersion, rep.NewMap = cur.Version(), next.Version(), Redact(next)

	// 1. Schema on the destination.
	if opts.Migrate != nil {
		if err := opts.Migrate(ctx, dst); err != nil {
			return rep, errs.E(op, errs.Msg("migrating the destination"), err)
		}
	}
	tables := opts.Tables
	if len(tables) == 0 {
		if tables, err = shardedTables(ctx, src); err != nil {
			return rep, errs.E(op, err)
		}
	}
	infos := make([]tableInfo, 0, len(tables))
	for _, t := range tables {
		if !validName.MatchString(t) {
			return rep, errs.E(op, errs.BadRequest, errs.Msg("bad table name %q", t))
		}
		ti, err := describe(ctx, src, t)
		if err != nil {
			return rep, errs.E(op, err)
		}
		if _, err := describe(ctx, dst, t); err != nil {
			return rep, errs.E(op, errs.Msg("the destination lacks the service's schema: run its migrations there first"), err)
		}
		infos = append(infos, ti)
	}
	if infos, err = childrenFirst(ctx, src, infos); err != nil {
		return rep, errs.E(op, err)
	}
	for _, ti := range infos {
		rep.Tables = append(rep.Tables, ti.name)
		var n int64
		q := fmt.Sprintf(`SELECT count(*) FROM %s WHERE shard BETWEEN $1 AND $2`, ti.name)
		if err := dst.DB.QueryRowContext(ctx, q, int(opts.Lo), int(opts.Hi)).Scan(&n); err != nil {
			return rep, errs.E(op, sqldb.NodeError(err))
		}
		if n != 0 {
			return rep, errs.E(op, errs.Conflict, errs.Msg("the destination already holds %d rows of shards %d-%d in %s", n, opts.Lo, opts.Hi, ti.name))
		}
	}
	slices.Reverse(rep.Tables) // parents first, for people

	m := &mover{opts: opts, log: log, src: src, dst: dst, tables: infos,
		name: fmt.Sprintf("globo_reshard_%s_%d_%d", strings.ToLower(opts.Service), opts.Lo, opts.Hi)}
	for _, db := range []*sqldb.DB{src, dst} {
		if err := m.prepareNode(ctx, db); err != nil {
			return rep, errs.E(op, err)
		}
	}

	// 2. Copy and stream.
	m.dropReplication(ctx) // leftovers of an earlier, failed run
	start := time.Now()
	if err := m.subscribe(ctx); err != nil {
		m.dropReplication(context.WithoutCancel(ctx))
		return rep, errs.E(op, err)
	}
	log.Info("reshard: subscription created; copying", "service", opts.Service, "shards", rangeText(opts.Lo, opts.Hi))
	if err := m.waitSynced(ctx); err != nil {
		m.dropReplication(context.WithoutCancel(ctx))
		return rep, errs.E(op, err)
	}
	rep.CopyDuration = time.Since(start)
	log.Info("reshard: initial copy done", "took", rep.CopyDuration)

	// 3. Fence.
	fenceLSN, err := m.fence(ctx, &rep)
	if err != nil {
		m.dropReplication(context.WithoutCancel(ctx))
		return rep, errs.E(op, err)
	}
	log.Info("reshard: fenced", "lock_wait", rep.FenceLock, "lsn", fenceLSN)

	// 4. Catch up.
	caught := time.Now()
	if err := m.waitCaughtUp(ctx, fenceLSN); err != nil {
		// Abandon: lift the fence, so the source serves the shards again.
		bg := context.WithoutCancel(ctx)
		if uerr := m.unfence(bg); uerr != nil {
			log.Error("reshard: cannot lift the fence after a failed catch-up; shards refused on the source", "shards", rangeText(opts.Lo, opts.Hi), "err", uerr)
		}
		m.dropReplication(bg)
		return rep, errs.E(op, err)
	}
	rep.CatchUp = time.Since(caught)

	// A snapshot of the destination as of the switch, for verification.
	snap, err := dst.DB.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true})
	if err == nil {
		var one int
		err = snap.QueryRowContext(ctx, `SELECT 1`).Scan(&one)
	}
	if err != nil {
		bg := context.WithoutCancel(ctx)
		_ = m.unfence(bg)
		m.dropReplication(bg)
		return rep, errs.E(op, sqldb.NodeError(err))
	}
	defer snap.Rollback()

	// 5. Switch the map everywhere.
	if err := m.clearDestFence(ctx); err != nil {
		bg := context.WithoutCancel(ctx)
		_ = m.unfence(bg)
		m.dropReplication(bg)
		return rep, errs.E(op, err)
	}
	if err := m.writeMapEverywhere(ctx, cur, next); err != nil {
		// The map may be on some nodes already: the move stands (the
		// followers take the highest version); the operator re-runs the
		// write. Replication stays for that reason.
		return rep, errs.E(op, errs.Msg("storing the new shard map; re-run to finish"), err)
	}
	rep.SwitchedAt = time.Now()
	rep.FenceDuration = rep.SwitchedAt.Sub(rep.FencedAt)
	log.Info("reshard: map switched", "version", next.Version(), "fence", rep.FenceDuration, "catch_up", rep.CatchUp)

	// 6. Verify.
	rep.Verified, err = m.verify(ctx, snap)
	_ = snap.Rollback()
	if err != nil {
		return rep, errs.E(op, err)
	}
	var bad []string
	for s, byTable := range rep.Verified {
		for t, c := range byTable {
			if !c.OK() {
				bad = append(bad, fmt.Sprintf("shard %d %s: source %d rows %s, destination %d rows %s", s, t, c.SourceRows, c.SourceSum, c.DestRows, c.DestSum))
			}
		}
	}
	// 7. Clean up: replication first (a delete on the source must not reach
	// the destination), then the source's rows, unless verification failed.
	m.dropReplication(ctx)
	if len(bad) > 0 {
		sort.Strings(bad)
		return rep, errs.E(op, errs.Conflict, errs.Msg("verification failed; the source keeps its rows"), errors.New(strings.Join(bad, "; ")))
	}
	if err := sleep(ctx, opts.CleanupGrace-time.Since(rep.SwitchedAt)); err != nil {
		return rep, errs.E(op, errs.Unavailable, errs.Msg("interrupted before deleting the moved rows from the source"), err)
	}
	if rep.RowsDeleted, err = m.deleteMoved(ctx); err != nil {
		return rep, errs.E(op, errs.Msg("deleting the moved rows from the source; re-run the clean-up"), err)
	}
	log.Info("reshard: done", "rows_deleted", rep.RowsDeleted)
	return rep, nil
}

// validName is what an identifier from options may look like.
var validName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,40}$`)

// Redact returns m's text form with every node replaced by its index in
// m.Nodes() ("v3;0-99=#1;100-1023=#0").
func Redact(m shard.Map) string {
	nodes := m.Nodes()
	var b strings.Builder
	fmt.Fprintf(&b, "v%d", m.Version())
	for _, r := range m.Ranges() {
		fmt.Fprintf(&b, ";%s=#%d", rangeText(r.Lo, r.Hi), slices.Index(nodes, r.Node))
	}
	return b.String()
}

func rangeText(lo, hi shard.ID) string {
	if lo == hi {
		return lo.String()
	}
	return lo.String() + "-" + hi.String()
}

// mover holds one move's state.
type mover struct {
	opts     Options
	log      *slog.Logger
	src, dst *sqldb.DB
	tables   []tableInfo // children before parents
	name     string      // of the publication, slot and subscription
}

type tableInfo struct {
	name string
	pk   []string
}

// shardedTables lists the tables of db's current schema with a shard column.
func shardedTables(ctx context.Context, db *sqldb.DB) ([]string, error) {
	rows, err := db.DB.QueryContext(ctx, `SELECT c.table_name FROM information_schema.columns c
		JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name
		WHERE c.table_schema = current_schema() AND c.column_name = 'shard' AND t.table_type = 'BASE TABLE'
		ORDER BY c.table_name`)
	if err != nil {
		return nil, sqldb.NodeError(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	if len(out) == 0 && rows.Err() == nil {
		return nil, errs.E(errs.BadRequest, errs.Msg("the source has no table with a shard column"))
	}
	return out, rows.Err()
}

// describe returns t's primary key, checking it has one and a shard column.
func describe(ctx context.Context, db *sqldb.DB, t string) (tableInfo, error) {
	var hasShard bool
	if err := db.DB.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM information_schema.columns
		WHERE table_schema = current_schema() AND table_name = $1 AND column_name = 'shard')`, t).Scan(&hasShard); err != nil {
		return tableInfo{}, sqldb.NodeError(err)
	}
	if !hasShard {
		return tableInfo{}, errs.E(errs.BadRequest, errs.Msg("table %s has no shard column", t))
	}
	rows, err := db.DB.QueryContext(ctx, `SELECT a.attname FROM pg_index i
		JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
		WHERE i.indrelid = to_regclass($1) AND i.indisprimary
		ORDER BY array_position(i.indkey::int2[], a.attnum)`, t)
	if err != nil {
		return tableInfo{}, sqldb.NodeError(err)
	}
	defer rows.Close()
	ti := tableInfo{name: t}
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			return tableInfo{}, err
		}
		ti.pk = append(ti.pk, `"`+c+`"`)
	}
	if err := rows.Err(); err != nil {
		return tableInfo{}, err
	}
	if len(ti.pk) == 0 {
		return tableInfo{}, errs.E(errs.BadRequest, errs.Msg("table %s has no primary key", t))
	}
	return ti, nil
}

// childrenFirst orders tables so that a table referencing another by a
// foreign key comes before it (the order rows can be deleted in).
func childrenFirst(ctx context.Context, db *sqldb.DB, ts []tableInfo) ([]tableInfo, error) {
	refs := map[string][]string{} // child -> parents
	rows, err := db.DB.QueryContext(ctx, `SELECT c.conrelid::regclass::text, c.confrelid::regclass::text
		FROM pg_constraint c WHERE c.contype = 'f'`)
	if err != nil {
		return nil, sqldb.NodeError(err)
	}
	defer rows.Close()
	for rows.Next() {
		var child, parent string
		if err := rows.Scan(&child, &parent); err != nil {
			return nil, err
		}
		refs[child] = append(refs[child], parent)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	// A table goes after every table in ts that references it.
	var out []tableInfo
	placed := map[string]bool{}
	for len(out) < len(ts) {
		progress := false
		for _, t := range ts {
			if placed[t.name] {
				continue
			}
			ready := true
			for _, o := range ts {
				if !placed[o.name] && o.name != t.name && slices.Contains(refs[o.name], t.name) {
					ready = false
				}
			}
			if ready {
				out = append(out, t)
				placed[t.name] = true
				progress = true
			}
		}
		if !progress { // a cycle: keep the given order for the rest
			for _, t := range ts {
				if !placed[t.name] {
					out = append(out, t)
					placed[t.name] = true
				}
			}
		}
	}
	return out, nil
}

// fenceFunction refuses writes to rows of shards listed in shard_moved,
// unless the transaction set globo.reshard_cleanup (the mover's own
// deletes). Logical replication's apply workers do not fire it.
const fenceFunction = `CREATE OR REPLACE FUNCTION globo_shard_fence() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
	IF coalesce(current_setting('globo.reshard_cleanup', true), '') = 'on' THEN
		IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
		RETURN NEW;
	END IF;
	IF TG_OP IN ('UPDATE', 'DELETE') AND EXISTS (SELECT 1 FROM shard_moved WHERE OLD.shard BETWEEN lo AND hi) THEN
		RAISE EXCEPTION 'shard moved' USING ERRCODE = '` + sqldb.ShardMovedCode + `', DETAIL = 'shard ' || OLD.shard;
	END IF;
	IF TG_OP IN ('INSERT', 'UPDATE') AND EXISTS (SELECT 1 FROM shard_moved WHERE NEW.shard BETWEEN lo AND hi) THEN
		RAISE EXCEPTION 'shard moved' USING ERRCODE = '` + sqldb.ShardMovedCode + `', DETAIL = 'shard ' || NEW.shard;
	END IF;
	IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
	RETURN NEW;
END $$`

// prepareNode creates, on db, the shard_map and shard_moved tables, the
// fence trigger on every table, and sets the tables' replica identity to
// FULL (a publication's row filter on shard, outside the primary key, needs
// it for UPDATE and DELETE). Each step only when missing: the ALTER and
// CREATE TRIGGER take short table locks.
func (m *mover) prepareNode(ctx context.Context, db *sqldb.DB) error {
	if err := sqldb.EnsureShardMapTables(ctx, db); err != nil {
		return err
	}
	if _, err := db.DB.ExecContext(ctx, fenceFunction); err != nil {
		return sqldb.NodeError(err)
	}
	for _, t := range m.tables {
		var ident string
		var hasTrigger bool
		if err := db.DB.QueryRowContext(ctx, `SELECT c.relreplident::text,
			EXISTS (SELECT 1 FROM pg_trigger g WHERE g.tgrelid = c.oid AND g.tgname = 'globo_shard_fence')
			FROM pg_class c WHERE c.oid = to_regclass($1)`, t.name).Scan(&ident, &hasTrigger); err != nil {
			return sqldb.NodeError(err)
		}
		if ident != "f" {
			if _, err := db.DB.ExecContext(ctx, fmt.Sprintf(`ALTER TABLE %s REPLICA IDENTITY FULL`, t.name)); err != nil {
				return sqldb.NodeError(err)
			}
		}
		if !hasTrigger {
			if _, err := db.DB.ExecContext(ctx, fmt.Sprintf(`CREATE OR REPLACE TRIGGER globo_shard_fence
				BEFORE INSERT OR UPDATE OR DELETE ON %s FOR EACH ROW EXECUTE FUNCTION globo_shard_fence()`, t.name)); err != nil {
				return sqldb.NodeError(err)
			}
		}
	}
	return nil
}

// subscribe creates the publication and the slot on the source and the
// subscription on the destination.
func (m *mover) subscribe(ctx context.Context) error {
	var parts []string
	for _, t := range m.tables {
		parts = append(parts, fmt.Sprintf("%s WHERE (shard BETWEEN %d AND %d)", t.name, m.opts.Lo, m.opts.Hi))
	}
	if _, err := m.src.DB.ExecContext(ctx, fmt.Sprintf(`CREATE PUBLICATION %s FOR TABLE %s`, m.name, strings.Join(parts, ", "))); err != nil {
		return errs.E("reshard", errs.Msg("creating the publication on the source"), sqldb.NodeError(err))
	}
	// The slot is made here, not by CREATE SUBSCRIPTION, which hangs when
	// both nodes are databases of one server.
	if _, err := m.src.DB.ExecContext(ctx, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, m.name); err != nil {
		return errs.E("reshard", errs.Msg("creating the replication slot on the source"), sqldb.NodeError(err))
	}
	conn, err := libpqConnString(m.opts.From)
	if err != nil {
		return err
	}
	q := fmt.Sprintf(`CREATE SUBSCRIPTION %s CONNECTION %s PUBLICATION %s
		WITH (copy_data = true, create_slot = false, slot_name = %s, synchronous_commit = 'on')`, m.name, quote(conn), m.name, m.name)
	if _, err := m.dst.DB.ExecContext(ctx, q); err != nil {
		// The error may quote the connection string: keep only its code.
		return errs.E("reshard", errs.Unavailable, errs.Msg("creating the subscription on the destination"), redactErr(err))
	}
	return nil
}

// waitSynced waits for the initial copy of every table.
func (m *mover) waitSynced(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, m.opts.SyncTimeout)
	defer cancel()
	for {
		var total, pending, failures int64
		err := m.dst.DB.QueryRowContext(ctx, `SELECT count(*), count(*) FILTER (WHERE r.srsubstate NOT IN ('r', 's')),
			coalesce((SELECT sync_error_count + apply_error_count FROM pg_stat_subscription_stats st WHERE st.subid = s.oid), 0)
			FROM pg_subscription s LEFT JOIN pg_subscription_rel r ON r.srsubid = s.oid
			WHERE s.subname = $1 GROUP BY s.oid`, m.name).Scan(&total, &pending, &failures)
		if err != nil {
			return errs.E("reshard", errs.Msg("waiting for the initial copy"), sqldb.NodeError(err))
		}
		if failures > 0 {
			return errs.E("reshard", errs.Conflict, errs.Msg("the subscription failed on the destination (see its server log)"))
		}
		if total >= int64(len(m.tables)) && pending == 0 {
			return nil
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return errs.E("reshard", errs.Unavailable, errs.Msg("the initial copy did not finish in %v", m.opts.SyncTimeout), err)
		}
	}
}

// fence closes the moving shards on the source and returns the WAL position
// at which every write to them is in the WAL.
func (m *mover) fence(ctx context.Context, rep *Report) (string, error) {
	// Parents first, the order writers take them in (a row of a child
	// table is written after its parent's): locking a child first would
	// deadlock with a writer holding the parent.
	var names []string
	for _, t := range m.tables {
		names = append(names, t.name)
	}
	slices.Reverse(names)
	for attempt := 0; ; attempt++ {
		rep.FencedAt = time.Now()
		lsn, err := m.fenceOnce(ctx, names, rep)
		if err == nil {
			return lsn, nil
		}
		// A long transaction in the way: give up the lock (writers queued
		// behind it go on) and try again.
		if st := sqlState(err); (st == "55P03" || st == "40P01") && attempt < 5 {
			m.log.Warn("reshard: fence lock timed out; retrying", "attempt", attempt+1)
			if err := sleep(ctx, 200*time.Millisecond); err != nil {
				return "", err
			}
			continue
		}
		return "", errs.E("reshard", errs.Msg("fencing the shards on the source"), sqldb.NodeError(err))
	}
}

func (m *mover) fenceOnce(ctx context.Context, names []string, rep *Report) (string, error) {
	tx, err := m.src.DB.BeginTx(ctx, nil)
	if err != nil {
		return "", err
	}
	defer tx.Rollback()
	// The lock waits for the writes in flight, blocking new ones behind it
	// for its own length only; the commit is flushed at once, so that the
	// WAL position read here is one the walsender can send.
	for _, q := range []string{`SET LOCAL lock_timeout = '2s'`, `SET LOCAL synchronous_commit = on`} {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return "", err
		}
	}
	if _, err := tx.ExecContext(ctx, fmt.Sprintf(`LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE`, strings.Join(names, ", "))); err != nil {
		return "", err
	}
	rep.FenceLock = time.Since(rep.FencedAt)
	if _, err := tx.ExecContext(ctx, `INSERT INTO shard_moved (lo, hi, moved_at) VALUES ($1, $2, $3)`,
		int(m.opts.Lo), int(m.opts.Hi), time.Now().UnixMilli()); err != nil {
		return "", err
	}
	// The insert position, not the write position: a commit of a writer
	// that finished before the lock may not be written out yet.
	var lsn string
	if err := tx.QueryRowContext(ctx, `SELECT pg_current_wal_insert_lsn()::text`).Scan(&lsn); err != nil {
		return "", err
	}
	return lsn, tx.Commit()
}

// unfence removes the move's range from the source's shard_moved.
func (m *mover) unfence(ctx context.Context) error {
	_, err := m.src.DB.ExecContext(ctx, `DELETE FROM shard_moved WHERE lo = $1 AND hi = $2`, int(m.opts.Lo), int(m.opts.Hi))
	return sqldb.NodeError(err)
}

// clearDestFence removes the moving shards from the destination's
// shard_moved (they may have moved away from it before), splitting ranges
// that overlap them only in part.
func (m *mover) clearDestFence(ctx context.Context) error {
	lo, hi := int(m.opts.Lo), int(m.opts.Hi)
	return m.dst.InTx(ctx, func(tx *sqldb.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT lo, hi, moved_at FROM shard_moved WHERE lo <= ? AND hi >= ? FOR UPDATE`, hi, lo)
		if err != nil {
			return err
		}
		type fenced struct {
			lo, hi int
			at     int64
		}
		var over []fenced
		for rows.Next() {
			var f fenced
			if err := rows.Scan(&f.lo, &f.hi, &f.at); err != nil {
				rows.Close()
				return err
			}
			over = append(over, f)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if len(over) == 0 {
			return nil
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM shard_moved WHERE lo <= ? AND hi >= ?`, hi, lo); err != nil {
			return err
		}
		for _, f := range over {
			if f.lo < lo {
				if _, err := tx.ExecContext(ctx, `INSERT INTO shard_moved (lo, hi, moved_at) VALUES (?, ?, ?)`, f.lo, lo-1, f.at); err != nil {
					return err
				}
			}
			if f.hi > hi {
				if _, err := tx.ExecContext(ctx, `INSERT INTO shard_moved (lo, hi, moved_at) VALUES (?, ?, ?)`, hi+1, f.hi, f.at); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// waitCaughtUp waits until the slot confirms lsn.
func (m *mover) waitCaughtUp(ctx context.Context, lsn string) error {
	ctx, cancel := context.WithTimeout(ctx, m.opts.CatchUpTimeout)
	defer cancel()
	for {
		var done bool
		err := m.src.DB.QueryRowContext(ctx, `SELECT coalesce(confirmed_flush_lsn >= $1::pg_lsn, false)
			FROM pg_replication_slots WHERE slot_name = $2`, lsn, m.name).Scan(&done)
		if err != nil {
			return errs.E("reshard", errs.Msg("waiting for the destination to catch up"), sqldb.NodeError(err))
		}
		if done {
			return nil
		}
		if err := sleep(ctx, 2*time.Millisecond); err != nil {
			return errs.E("reshard", errs.Unavailable, errs.Msg("the destination did not catch up in %v", m.opts.CatchUpTimeout), err)
		}
	}
}

// writeMapEverywhere stores next on every node of cur and next (highest
// version wins), failing with errs.Conflict when a node holds a higher one.
// Nodes are named in errors by their index in next.Nodes().
func (m *mover) writeMapEverywhere(ctx context.Context, cur, next shard.Map) error {
	nodes := next.Nodes()
	for _, n := range cur.Nodes() {
		if !slices.Contains(nodes, n) {
			nodes = append(nodes, n)
		}
	}
	var all []error
	for i, n := range nodes {
		var db *sqldb.DB
		switch n {
		case m.opts.From:
			db = m.src
		case m.opts.To:
			db = m.dst
		default:
			var err error
			if db, err = sqldb.OpenPostgres(ctx, n); err != nil {
				all = append(all, errs.E("reshard", errs.Unavailable, errs.Msg("node #%d: cannot open", i)))
				continue
			}
		}
		v, err := sqldb.WriteStoredMap(ctx, db, next)
		if db != m.src && db != m.dst {
			db.Close()
		}
		switch {
		case err != nil:
			all = append(all, errs.E("reshard", errs.Msg("node #%d", i), redactErr(err)))
		case v != next.Version():
			all = append(all, errs.E("reshard", errs.Conflict, errs.Msg("node #%d holds shard map v%d, above this move's v%d", i, v, next.Version())))
		}
	}
	return errors.Join(all...)
}
