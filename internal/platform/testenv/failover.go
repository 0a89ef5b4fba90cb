package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/platform/ids"
	"github.com/globomantics/globomantics/internal/platform/pgauto"
)

// The package's shared pg_auto_failover formation: a primary and two
// streaming replicas with synchronous commit, started on first use (it
// costs about 15 s of two cores) and stopped by Main.
var failover struct {
	mu   sync.Mutex
	done bool
	f    *pgauto.Formation
	dir  string
	err  error
}

// Formation returns the package's shared formation of three nodes (one
// primary, two replicas, synchronous replication) under pg_auto_failover,
// starting it on first use. Tests must not kill its nodes: use
// NewFormation for that. Skips when pg_autoctl is not installed, unless
// Required.
func Formation(tb testing.TB) *pgauto.Formation {
	tb.Helper()
	failover.mu.Lock()
	defer failover.mu.Unlock()
	if !failover.done {
		failover.done = true
		failover.f, failover.dir, failover.err = startFormation("shared", 3)
	}
	if errors.Is(failover.err, pgauto.ErrNotInstalled) && !Required() {
		tb.Skip("pg_autoctl or PostgreSQL not installed")
	}
	if failover.err != nil {
		tb.Fatalf("pg_auto_failover formation: %v", failover.err)
	}
	return failover.f
}

// FailoverDSN creates a fresh database on the shared Formation and returns
// its multi-host DSN (every node, target_session_attrs=read-write).
func FailoverDSN(tb testing.TB) string {
	tb.Helper()
	f := Formation(tb)
	name := strings.ReplaceAll(strings.ToLower(ids.New("t", time.Now())), "_", "")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := f.CreateDatabase(ctx, name); err != nil {
		tb.Fatalf("create database on the formation: %v", err)
	}
	return f.URI(name)
}

// NewFormation starts a private formation of n nodes (synchronous when n is
// 3 or more) that the test may kill nodes of; it is stopped when the test
// ends.
func NewFormation(tb testing.TB, n int) *pgauto.Formation {
	tb.Helper()
	f, dir, err := startFormation("private", n)
	if errors.Is(err, pgauto.ErrNotInstalled) && !Required() {
		tb.Skip("pg_autoctl or PostgreSQL not installed")
	}
	if err != nil {
		tb.Fatalf("pg_auto_failover formation: %v", err)
	}
	tb.Cleanup(func() { stopFormation(f, dir) })
	return f
}

func startFormation(name string, nodes int) (*pgauto.Formation, string, error) {
	// Not t.TempDir: its parent is 0700 and PostgreSQL runs as postgres.
	dir, err := os.MkdirTemp("", "globo-pgauto-")
	if err != nil {
		return nil, "", err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		os.RemoveAll(dir)
		return nil, "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	f, err := pgauto.Start(ctx, pgauto.Options{Dir: dir, Name: name, Nodes: nodes, Sync: nodes >= 3, BinDir: os.Getenv("GLOBO_PG_BIN")})
	if err != nil {
		os.RemoveAll(dir)
		return nil, "", err
	}
	return f, dir, nil
}

func stopFormation(f *pgauto.Formation, dir string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := f.Stop(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "testenv: stop formation:", err)
	}
	os.RemoveAll(dir)
}

func stopSharedFormation() {
	failover.mu.Lock()
	defer failover.mu.Unlock()
	if failover.f != nil {
		stopFormation(failover.f, failover.dir)
		failover.f = nil
	}
}
