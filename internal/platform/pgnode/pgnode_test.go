package pgnode_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/globomantics/globomantics/internal/platform/pgnode"
)

func query(t *testing.T, n *pgnode.Node, q string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, n.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var v int64
	if err := c.QueryRow(ctx, q).Scan(&v); err != nil {
		t.Fatalf("%s on %s: %v", q, n.Name(), err)
	}
	return v
}

// checkFor polls fn until it returns nil or timeout passes.
func checkFor(t *testing.T, timeout time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for wait := 5 * time.Millisecond; ; wait = min(2*wait, 200*time.Millisecond) {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", timeout, err)
		}
		time.Sleep(wait)
	}
}

func TestPrimaryAndReplica(t *testing.T) {
	ctx := context.Background()
	p, err := pgnode.StartPrimary(ctx, pgnode.Options{Fast: true})
	if errors.Is(err, pgnode.ErrNoBinaries) && os.Getenv("GLOBO_REQUIRE_SERVICES") != "1" {
		t.Skip("PostgreSQL binaries not installed")
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	r, err := p.AddReplica(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if query(t, r, `SELECT pg_is_in_recovery()::int`) != 1 || query(t, p, `SELECT pg_is_in_recovery()::int`) != 0 {
		t.Fatal("roles are wrong")
	}
	if err := p.Exec(ctx, `CREATE TABLE t (v BIGINT)`); err != nil {
		t.Fatal(err)
	}
	count := func(want int64) func() error {
		return func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c, err := pgx.Connect(ctx, r.DSN("postgres"))
			if err != nil {
				return err
			}
			defer c.Close(ctx)
			var n int64
			if err := c.QueryRow(ctx, `SELECT COUNT(*) FROM t`).Scan(&n); err != nil {
				return err
			}
			if n != want {
				return fmt.Errorf("replica has %d rows, want %d", n, want)
			}
			return nil
		}
	}
	if err := p.Exec(ctx, `INSERT INTO t VALUES (1)`); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 10*time.Second, count(1))

	// Paused, the replica does not see new rows; resumed, it does.
	if err := r.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.Exec(ctx, `INSERT INTO t VALUES (2)`); err != nil {
		t.Fatal(err)
	}
	if err := p.Exec(ctx, `SELECT pg_switch_wal()`); err != nil { // nudge WAL out
		t.Fatal(err)
	}
	if err := count(1)(); err != nil {
		t.Fatalf("paused replica: %v", err)
	}
	if err := r.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 10*time.Second, count(2))

	// Killed and restarted, the replica streams again.
	if err := r.Kill(); err != nil || r.Running() {
		t.Fatalf("kill: %v, running %v", err, r.Running())
	}
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.Exec(ctx, `INSERT INTO t VALUES (3)`); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 10*time.Second, count(3))

	// Stop the primary and promote the replica.
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := r.Promote(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.Exec(ctx, `INSERT INTO t VALUES (4)`); err != nil {
		t.Fatalf("write on the promoted replica: %v", err)
	}
	dir := p.Dir()
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if r.Running() {
		t.Error("Close left a node of the cluster running")
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("Close left %s behind: %v", dir, err)
	}
}
