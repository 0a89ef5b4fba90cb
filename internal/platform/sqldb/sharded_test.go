package sqldb_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/ids"
	"github.com/globomantics/globomantics/internal/platform/shard"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

// TestShardedSingle: Single routes every key, id and shard to its one
// database, and Close leaves that database open.
func TestShardedSingle(t *testing.T) {
	db := testenv.SQLite(t)
	s := sqldb.Single(db)
	for _, key := range []string{"usr_1", "alice@example.com", ""} {
		got, sh, err := s.For(key)
		if err != nil || got != db || sh != shard.ForKey(key) {
			t.Errorf("For(%q) = %p, %d, %v", key, got, sh, err)
		}
	}
	id := ids.NewInShard("ord", time.Now(), 700)
	if got, sh, err := s.ForID(id); err != nil || got != db || sh != 700 {
		t.Errorf("ForID = %p, %d, %v", got, sh, err)
	}
	if _, _, err := s.ForID(ids.New("ord", time.Now())); !errs.Is(errs.NotFound, err) {
		t.Errorf("ForID(id without a shard) = %v, want NotFound", err)
	}
	if !s.Single() || len(s.Nodes()) != 1 || s.Nodes()[0] != sqldb.SingleNode {
		t.Errorf("Nodes() = %v", s.Nodes())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Ping(context.Background()); err != nil {
		t.Errorf("Close of a Single closed its database: %v", err)
	}
}

// TestShardedTwoNodes: OpenSharded over two SQLite files routes by the map,
// migrates every node, reports the shards of a closed node in a Gather, and
// turns the closed node's errors into errs.Unavailable; a malformed map is
// refused without quoting a DSN.
func TestShardedTwoNodes(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	pathA, pathB := filepath.Join(dir, "a.db"), filepath.Join(dir, "b.db")
	s, err := sqldb.OpenSharded(ctx, "0-511="+pathA+";512-1023="+pathB, sqldb.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if s.Single() || len(s.All()) != 2 || s.Map().String() != "0-511="+pathA+";512-1023="+pathB {
		t.Fatalf("map %s, %d nodes", s.Map(), len(s.All()))
	}
	all := s.All()
	dbA, dbB := all[pathA], all[pathB]
	for sh, want := range map[shard.ID]*sqldb.DB{0: dbA, 511: dbA, 512: dbB, 1023: dbB} {
		if got, err := s.ForShard(sh); err != nil || got != want {
			t.Errorf("ForShard(%d) wrong node, %v", sh, err)
		}
		if got, _, err := s.ForID(ids.NewInShard("x", time.Now(), uint16(sh))); err != nil || got != want {
			t.Errorf("ForID(shard %d) wrong node, %v", sh, err)
		}
	}
	if _, err := s.ForShard(shard.Count); !errs.Is(errs.BadRequest, err) {
		t.Errorf("ForShard(out of range) = %v", err)
	}
	key := testenv.KeyOnNode(t, s.Map(), pathB, "usr_")
	if got, sh, err := s.ForUser(key); err != nil || got != dbB || sh != shard.ForUser(key) {
		t.Errorf("ForUser(%s) = wrong node, %d, %v", key, sh, err)
	}

	// Migrate applies to every node.
	if err := s.Migrate(ctx, "t", migrationFS(`CREATE TABLE things (id TEXT PRIMARY KEY, shard INTEGER NOT NULL DEFAULT -1);`)); err != nil {
		t.Fatal(err)
	}
	for _, db := range []*sqldb.DB{dbA, dbB} {
		if _, err := db.ExecContext(ctx, `INSERT INTO things (id) VALUES ('k1'), ('k2')`); err != nil {
			t.Fatal(err)
		}
	}
	// BackfillShard fills in the shard column.
	err = s.Each(ctx, func(ctx context.Context, _ string, db *sqldb.DB) error {
		return sqldb.BackfillShard(ctx, db, "things", "id", "id", func(k, _ string) shard.ID { return shard.ForKey(k) })
	})
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if err := dbB.QueryRowContext(ctx, `SELECT COUNT(*) FROM things WHERE shard = ?`, int(shard.ForKey("k2"))).Scan(&n); err != nil || n != 1 {
		t.Errorf("backfilled rows = %d, %v", n, err)
	}

	// Node b goes down: Gather answers with a's rows and names b's shards;
	// b's errors are Unavailable; a carries on.
	dbB.Close()
	r, m := sqldb.Gather(ctx, s, time.Second, func(ctx context.Context, db *sqldb.DB) ([]string, error) {
		var id string
		err := db.QueryRowContext(ctx, `SELECT id FROM things ORDER BY id LIMIT 1`).Scan(&id)
		return []string{id}, err
	})
	if len(r.Items) != 1 || r.Items[0] != "k1" {
		t.Errorf("Gather items = %v", r.Items)
	}
	if rs := r.MissingRanges(m); len(rs) != 1 || rs[0].Lo != 512 || rs[0].Hi != 1023 {
		t.Errorf("MissingRanges = %v", rs)
	}
	_, err = dbB.ExecContext(ctx, `DELETE FROM things`)
	if err := sqldb.NodeError(err); !errs.Is(errs.Unavailable, err) {
		t.Errorf("NodeError(closed node) = %v, want Unavailable", err)
	}
	if _, err := dbA.ExecContext(ctx, `DELETE FROM things WHERE id = 'k2'`); err != nil {
		t.Errorf("the live node failed: %v", err)
	}
	if err := sqldb.NodeError(errs.E(errs.NotFound, errors.New("x"))); !errs.Is(errs.NotFound, err) {
		t.Errorf("NodeError changed a kind: %v", err)
	}
	if err := sqldb.NodeError(errors.New("syntax error")); errs.Is(errs.Unavailable, err) {
		t.Errorf("NodeError(statement error) = Unavailable")
	}

	// A malformed map names no DSN.
	_, err = sqldb.OpenSharded(ctx, "0-511=postgres://u:secret@h/db", sqldb.Options{})
	if !errs.Is(errs.BadRequest, err) || strings.Contains(errs.Detail(err), "secret") {
		t.Errorf("OpenSharded(gap) = %v", err)
	}
}
