package devpg_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver

	"github.com/globomantics/globomantics/internal/devpg"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

// TestMain doubles as the command: with GLOBO_DEVPG_ARGS set, the test
// binary runs devpg.Main with those arguments (one a line) and exits, so
// that the test can check what outlives the command.
func TestMain(m *testing.M) {
	if args, ok := os.LookupEnv("GLOBO_DEVPG_ARGS"); ok {
		if err := devpg.Main(context.Background(), strings.Split(args, "\n"), os.Stdout, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestUpStatusDown brings a topology up in the background, checks status
// and that every printed DSN takes a write, then brings it down and checks
// that no process it started is left.
func TestUpStatusDown(t *testing.T) {
	if _, err := exec.LookPath("pg_autoctl"); err != nil {
		if !testenv.Required() {
			t.Skip("pg_autoctl not installed")
		}
		t.Fatal(err)
	}
	ctx := context.Background()
	// Not t.TempDir: its parent is 0700 and PostgreSQL runs as postgres.
	dir, err := os.MkdirTemp("", "devpg-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// Each command runs in a process of its own, as from a shell.
	run := func(args ...string) (string, error) {
		t.Helper()
		var stdout, stderr bytes.Buffer
		cmd := exec.CommandContext(ctx, os.Args[0])
		cmd.Env = append(os.Environ(), "GLOBO_DEVPG_ARGS="+strings.Join(append(args, "--dir", dir), "\n"))
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		if err != nil || testing.Verbose() {
			t.Logf("%s:\n%s%s", strings.Join(args, " "), stdout.String(), stderr.String())
		}
		return stdout.String(), err
	}

	// The default shape (3-node main formation, two 2-node shard
	// formations) takes about 50 s here; -short brings up 2 + 2 nodes.
	upArgs, mainNodes, shards := []string{"up", "-v"}, 3, 2
	if testing.Short() {
		upArgs, mainNodes, shards = []string{"up", "-v", "--replicas", "1", "--shards", "1"}, 2, 1
	}
	start := time.Now()
	out, err := run(upArgs...)
	t.Cleanup(func() { _, _ = run("down") }) // after a failure
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("up (%d-node main formation, %d shard formations of 2 nodes) took %v", mainNodes, shards, time.Since(start).Round(time.Millisecond))

	env := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(l, "export "); ok {
			k, val, _ := strings.Cut(v, "=")
			env[k] = strings.Trim(val, "'")
		}
	}
	var dsns []string
	for _, svc := range []string{"ACCOUNT", "CATALOG", "CART", "PAYMENT", "SHIPPING", "ORDER", "CHECKOUT"} {
		dsn := env["GLOBO_DB_"+svc]
		if n := strings.Count(dsn, "127.0.0.1:"); n != mainNodes || !strings.Contains(dsn, "target_session_attrs=read-write") {
			t.Errorf("GLOBO_DB_%s = %q, want a multi-host read-write DSN over %d nodes", svc, dsn, mainNodes)
		}
		dsns = append(dsns, dsn)
	}
	for _, svc := range []string{"ACCOUNT", "CART", "ORDER", "PAYMENT", "CHECKOUT"} {
		m := env["GLOBO_SHARDS_"+svc]
		parts := strings.Split(m, ";")
		if len(parts) != shards || !strings.HasPrefix(m, "0-") || !strings.Contains(parts[len(parts)-1], "-1023=postgres://") {
			t.Errorf("GLOBO_SHARDS_%s = %q, want %d ranges covering 0-1023", svc, m, shards)
		}
		for _, p := range parts {
			_, dsn, _ := strings.Cut(p, "=")
			dsns = append(dsns, dsn)
		}
	}
	for _, dsn := range dsns {
		db, err := sql.Open("pgx", dsn)
		if err != nil {
			t.Fatal(err)
		}
		_, err = db.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS probe (v int); INSERT INTO probe VALUES (1)")
		db.Close()
		if err != nil {
			t.Errorf("write to %s: %v", dsn, err)
		}
	}

	out, err = run("up")
	if err != nil || !strings.Contains(out, "already up") || !strings.Contains(out, "export GLOBO_DB_CATALOG=") {
		t.Errorf("second up: err=%v, out=%q; want 'already up' and the configuration", err, out)
	}

	out, err = run("status")
	if err != nil {
		t.Fatal(err)
	}
	primaries, secondaries := 0, 0
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) >= 4 && f[2] == f[3] {
			switch f[2] {
			case "primary":
				primaries++
			case "secondary":
				secondaries++
			}
		}
	}
	if primaries != 1+shards || secondaries != mainNodes-1+shards {
		t.Errorf("status shows %d primaries and %d secondaries, want %d and %d:\n%s", primaries, secondaries, 1+shards, mainNodes-1+shards, out)
	}

	// Every process up started: pg_autoctl (group leaders) and postmasters.
	st, err := devpg.ReadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	pids := []int{st.Monitor.PID, postmasterPID(t, st.Monitor.Dir)}
	for _, fi := range append(st.Shards, st.Main) {
		for _, n := range fi.Nodes {
			pids = append(pids, n.PID, postmasterPID(t, n.Dir))
		}
	}

	start = time.Now()
	if _, err := run("down", "-v"); err != nil {
		t.Fatal(err)
	}
	t.Logf("down took %v", time.Since(start).Round(time.Millisecond))
	testenv.CheckFor(t, 10*time.Second, func() error {
		for _, pid := range pids {
			if alive(pid) {
				return fmt.Errorf("process %d still running after down", pid)
			}
		}
		return nil
	})
	if _, err := os.Stat(filepath.Join(dir, "state.json")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state.json after down: %v", err)
	}
	if _, err := run("status"); err == nil {
		t.Error("status after down: no error")
	}
	if out, err := run("down"); err != nil || !strings.Contains(out, "nothing is up") {
		t.Errorf("second down: err=%v out=%q", err, out)
	}
}

func postmasterPID(t *testing.T, nodeDir string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(nodeDir, "pgdata", "postmaster.pid"))
	if err != nil {
		t.Fatal(err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || (b[i+2] != 'Z' && b[i+2] != 'X')
}
