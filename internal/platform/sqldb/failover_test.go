package sqldb_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/platform/consistency"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/pgnode"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

// TestFrozenPrimary freezes the primary (SIGSTOP: connections stay open,
// nothing answers): a write in flight with no deadline ends as soon as the
// probes give up on the primary, later writes fail at once, and writes
// resume when it thaws.
func TestFrozenPrimary(t *testing.T) {
	primary, _ := cluster(t)
	db, _ := openCluster(t, sqldb.Options{})
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, `INSERT INTO kv (k, v) VALUES (?, ?)`, "a", 1); err != nil {
		t.Fatal(err)
	}
	if err := primary.Freeze(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = primary.Thaw() })
	start := time.Now()
	_, err := db.ExecContext(ctx, `UPDATE kv SET v = v + 1 WHERE k = ?`, "a")
	took := time.Since(start)
	t.Logf("write to the frozen primary ended after %v: %v", took.Round(time.Millisecond), err)
	if !errs.Is(errs.Unavailable, err) || errs.RetryAfterOf(err) <= 0 || took > 3*time.Second {
		t.Fatalf("write to a frozen primary: %v (kind %v) after %v; want Unavailable with a hint within 3s", err, errs.KindOf(err), took)
	}
	start = time.Now()
	err = db.InTx(ctx, func(tx *sqldb.Tx) error { return nil })
	if !errs.Is(errs.Unavailable, err) || time.Since(start) > 100*time.Millisecond {
		t.Errorf("InTx once the primary is known lost: %v after %v", err, time.Since(start))
	}
	if err := primary.Thaw(); err != nil {
		t.Fatal(err)
	}
	testenv.CheckFor(t, 15*time.Second, func() error {
		_, err := db.ExecContext(ctx, `UPDATE kv SET v = v + 1 WHERE k = ?`, "a")
		return err
	})
}

// TestFailover kills a replica, stops the primary and promotes the other
// replica, on one DB handle that is never reopened. It leaves the shared
// cluster healthy: the promoted node and two fresh replicas of it.
func TestFailover(t *testing.T) {
	primary, replicas := cluster(t)
	db, _ := openCluster(t, sqldb.Options{})
	ctx := context.Background()
	tok := consistency.NewToken()
	wctx := consistency.WithToken(ctx, tok)
	for i := 0; i < 10; i++ {
		if _, err := db.ExecContext(wctx, `INSERT INTO kv (k, v) VALUES (?, ?)`, fmt.Sprint("before", i), i); err != nil {
			t.Fatal(err)
		}
	}
	waitReplayed(t, db, tok)

	// Kill a replica: reads go on, none fails.
	killed, survivor := replicas[1], replicas[0]
	if err := killed.Kill(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 300; i++ {
		var n int
		if err := db.Reader(ctx, consistency.Bounded).QueryRowContext(ctx, `SELECT COUNT(*) FROM kv`).Scan(&n); err != nil || n != 10 {
			t.Fatalf("bounded read %d after killing a replica: %d, %v", i, n, err)
		}
	}
	testenv.CheckFor(t, 5*time.Second, func() error {
		if s := nodeStatus(t, db, killed); s.State != sqldb.StateDown {
			return fmt.Errorf("killed replica is %s", s.State)
		}
		return nil
	})
	if s := nodeStatus(t, db, killed); s.LastError == "" {
		t.Error("down replica reports no error")
	}

	// Stop the primary: writes fail fast with Unavailable and a retry hint,
	// both at once (before any probe noticed) and after.
	if err := primary.Stop(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		start := time.Now()
		_, err := db.ExecContext(ctx, `INSERT INTO kv (k, v) VALUES (?, ?)`, fmt.Sprint("down", i), i)
		took := time.Since(start)
		if !errs.Is(errs.Unavailable, err) || errs.RetryAfterOf(err) <= 0 || took > 2*time.Second {
			t.Fatalf("write %d with the primary stopped: %v (kind %v, retry after %v) after %v; want Unavailable with a hint within 2s",
				i, err, errs.KindOf(err), errs.RetryAfterOf(err), took)
		}
		t.Logf("write %d with the primary stopped failed after %v: %v", i, took.Round(time.Microsecond), err)
		err = db.InTx(ctx, func(tx *sqldb.Tx) error { return nil })
		if !errs.Is(errs.Unavailable, err) || errs.RetryAfterOf(err) <= 0 {
			t.Fatalf("InTx with the primary stopped: %v", err)
		}
	}
	testenv.CheckFor(t, 5*time.Second, func() error {
		if p := db.Status().Primary; p != "" {
			return fmt.Errorf("primary still %s", p)
		}
		return nil
	})
	var n int
	start := time.Now()
	err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM kv`).Scan(&n)
	if !errs.Is(errs.Unavailable, err) || errs.RetryAfterOf(err) <= 0 || time.Since(start) > time.Second {
		t.Errorf("primary read without a primary: %v after %v; want Unavailable with a hint, at once", err, time.Since(start))
	}
	// Reads that a replica can serve go on without a primary.
	if err := db.Reader(wctx, consistency.ReadYourWrites).QueryRowContext(wctx, `SELECT COUNT(*) FROM kv`).Scan(&n); err != nil || n != 10 {
		t.Fatalf("read-your-writes read without a primary: %d, %v", n, err)
	}

	// Promote the surviving replica: the same DB finds it and writes again.
	if err := survivor.Promote(ctx); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	testenv.CheckFor(t, 10*time.Second, func() error {
		_, err := db.ExecContext(wctx, `INSERT INTO kv (k, v) VALUES (?, ?)`, "after", 1)
		return err
	})
	t.Logf("writes resumed %v after the promotion", time.Since(start).Round(time.Millisecond))
	if p := db.Status().Primary; p != survivor.Addr() {
		t.Errorf("primary = %q, want the promoted %s", p, survivor.Addr())
	}
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM kv`).Scan(&n); err != nil || n != 11 {
		t.Errorf("rows on the new primary: %d, %v; want 11 (no acknowledged write lost)", n, err)
	}

	// Leave a healthy cluster for the tests that follow.
	var fresh []*pgnode.Node
	for i := 0; i < 2; i++ {
		r, err := survivor.AddReplica(ctx)
		if err != nil {
			t.Fatal(err)
		}
		fresh = append(fresh, r)
	}
	pg.mu.Lock()
	pg.primary, pg.replicas = survivor, fresh
	pg.mu.Unlock()
}
