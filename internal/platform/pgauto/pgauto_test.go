package pgauto_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver

	"github.com/globomantics/globomantics/internal/platform/pgauto"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

// One formation for the package: starting one costs ~15 s of two cores.
var shared struct {
	once sync.Once
	f    *pgauto.Formation
	dir  string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.f != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		if err := shared.f.Stop(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "stop formation:", err)
			code = 1
		}
		cancel()
		if _, err := os.Stat(shared.dir); !errors.Is(err, os.ErrNotExist) {
			fmt.Fprintln(os.Stderr, "base dir left behind:", shared.dir, err)
			code = 1
		}
	}
	os.Exit(code)
}

// formation returns the package's 3-node synchronous formation, starting it
// on first use.
func formation(t *testing.T) *pgauto.Formation {
	t.Helper()
	shared.once.Do(func() {
		// Not t.TempDir: its parent is 0700 and PostgreSQL runs as postgres.
		shared.dir, shared.err = os.MkdirTemp("", "pgauto-test-")
		if shared.err != nil {
			return
		}
		if shared.err = os.Chmod(shared.dir, 0o755); shared.err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		start := time.Now()
		shared.f, shared.err = pgauto.Start(ctx, pgauto.Options{
			Dir: shared.dir, Name: "test", Nodes: 3, Sync: true, Log: testenv.Logger(t),
			BinDir: os.Getenv("GLOBO_PG_BIN"),
		})
		if shared.err == nil {
			t.Logf("formation of 3 nodes ready in %v", time.Since(start).Round(time.Millisecond))
		} else {
			os.RemoveAll(shared.dir)
		}
	})
	if errors.Is(shared.err, pgauto.ErrNotInstalled) && !testenv.Required() {
		t.Skip("pg_autoctl or PostgreSQL not installed")
	}
	if shared.err != nil {
		t.Fatalf("start formation: %v", shared.err)
	}
	return shared.f
}

func openDB(t *testing.T, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestFormation(t *testing.T) {
	ctx := context.Background()
	f := formation(t)

	states, err := f.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}
	for _, s := range states {
		if s.Index < 0 || s.Current != s.Assigned {
			t.Errorf("node %+v: unknown or unsettled", s)
		}
		count[s.Current]++
	}
	if len(states) != 3 || count["primary"] != 1 || count["secondary"] != 2 {
		t.Fatalf("states = %+v, want one primary and two secondaries", states)
	}
	p, err := f.Primary(ctx)
	if err != nil {
		t.Fatal(err)
	}

	// pg_autoctl's per-node state is under the base directory, not in the
	// postgres user's home or /tmp/pg_autoctl.
	for _, d := range []string{"/var/lib/postgresql/.config/pg_autoctl", "/var/lib/postgresql/.local/share/pg_autoctl", "/tmp/pg_autoctl"} {
		if _, err := os.Stat(d + shared.dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("pg_autoctl state outside the base dir: %s%s (%v)", d, shared.dir, err)
		}
	}

	uri := f.URI("app")
	nodes := f.Nodes()
	want := fmt.Sprintf("postgres://postgres@127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d/app?sslmode=disable&target_session_attrs=read-write",
		nodes[0].Port, nodes[1].Port, nodes[2].Port)
	if os.Geteuid() == 0 && uri != want {
		t.Errorf("URI = %q, want %q", uri, want)
	}

	// Sync: every commit waits for one of the two standbys.
	var names string
	if err := openDB(t, f.NodeURI(p, "postgres")).QueryRowContext(ctx, "SHOW synchronous_standby_names").Scan(&names); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(names, "ANY 1 (") {
		t.Errorf("synchronous_standby_names = %q, want ANY 1 (two standbys)", names)
	}
	var sb string
	if err := openDB(t, f.NodeURI(p, "postgres")).QueryRowContext(ctx, "SHOW shared_buffers").Scan(&sb); err != nil {
		t.Fatal(err)
	}
	if sb != "16MB" {
		t.Errorf("shared_buffers = %s, want the 16MB default setting", sb)
	}
	var wl string
	if err := openDB(t, f.NodeURI(p, "postgres")).QueryRowContext(ctx, "SHOW wal_level").Scan(&wl); err != nil {
		t.Fatal(err)
	}
	if wl != "logical" {
		t.Errorf("wal_level = %s, want logical (shards move by logical replication)", wl)
	}

	if err := f.CreateDatabase(ctx, "app"); err != nil {
		t.Fatal(err)
	}
	if err := f.CreateDatabase(ctx, "app"); err != nil {
		t.Fatalf("second CreateDatabase: %v", err)
	}
	db := openDB(t, uri)
	if _, err := db.ExecContext(ctx, "CREATE TABLE t (v text); INSERT INTO t VALUES ('hello')"); err != nil {
		t.Fatal(err)
	}
	for i := range nodes {
		if i == p {
			continue
		}
		standby := openDB(t, f.NodeURI(i, "app"))
		testenv.CheckFor(t, 10*time.Second, func() error {
			var v string
			return standby.QueryRowContext(ctx, "SELECT v FROM t").Scan(&v)
		})
		if _, err := standby.ExecContext(ctx, "INSERT INTO t VALUES ('no')"); err == nil {
			t.Errorf("standby %d accepted a write", i)
		}
	}
}

// TestFailover kills the primary (PostgreSQL and pg_autoctl, SIGKILL) under
// a stream of writes and checks that writes resume on the promoted standby
// with no acknowledged write lost. It reports the time from the kill to the
// first acknowledged write and how writes failed in between.
func TestFailover(t *testing.T) {
	ctx := context.Background()
	f := formation(t)
	if err := f.CreateDatabase(ctx, "failover"); err != nil {
		t.Fatal(err)
	}
	db := openDB(t, f.URI("failover"))
	db.SetMaxOpenConns(2)
	if _, err := db.ExecContext(ctx, "CREATE TABLE writes (id bigint PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())"); err != nil {
		t.Fatal(err)
	}
	old, err := f.Primary(ctx)
	if err != nil {
		t.Fatal(err)
	}

	const (
		maxRows     = 4000
		maxDuration = 30 * time.Second
		afterFirst  = 2 * time.Second // writes to keep doing once writes are back
	)
	var (
		acked      []int64 // acknowledged inserts
		failed     []int64 // inserts that returned an error: may or may not be committed
		errKinds   = map[string]int{}
		errExample = map[string]string{}
		killedAt   atomic.Int64 // unix ns when KillNode returned
		firstOK    time.Time    // ack of the first insert started after the kill
		syncAtOK   string       // synchronous_standby_names right after that ack
		ackedN     atomic.Int64
	)
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		start := time.Now()
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for id := int64(1); id <= maxRows && time.Since(start) < maxDuration; id++ {
			if !firstOK.IsZero() && time.Since(firstOK) > afterFirst {
				return
			}
			began := time.Now()
			ictx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_, err := db.ExecContext(ictx, "INSERT INTO writes (id) VALUES ($1)", id)
			cancel()
			if err == nil {
				acked = append(acked, id)
				ackedN.Add(1)
				if k := killedAt.Load(); k != 0 && firstOK.IsZero() && began.UnixNano() > k {
					firstOK = time.Now()
					_ = db.QueryRowContext(ctx, "SHOW synchronous_standby_names").Scan(&syncAtOK)
				}
			} else {
				failed = append(failed, id)
				kind, msg := classify(err)
				errKinds[kind]++
				if _, ok := errExample[kind]; !ok {
					errExample[kind] = msg
				}
			}
			<-tick.C
		}
	}()

	testenv.CheckFor(t, 20*time.Second, func() error {
		if n := ackedN.Load(); n < 200 {
			return fmt.Errorf("%d writes acknowledged before the kill", n)
		}
		return nil
	})
	killStart := time.Now()
	if err := f.KillNode(old); err != nil {
		t.Fatal(err)
	}
	killedAt.Store(time.Now().UnixNano())
	newP, err := f.WaitPrimary(ctx, old)
	if err != nil {
		t.Fatal(err)
	}
	promoted := time.Since(killStart)
	<-writerDone
	logEvents(t, f, killStart)

	if firstOK.IsZero() {
		t.Fatalf("no write succeeded after the kill (%d acked before; errors %v)", len(acked), errKinds)
	}
	failover := firstOK.Sub(killStart)
	t.Logf("FAILOVER: kill of primary node %d -> monitor reports node %d writable after %v; first acknowledged write %v after the kill",
		old, newP, promoted.Round(time.Millisecond), failover.Round(time.Millisecond))
	t.Logf("writes: %d acknowledged, %d failed; synchronous_standby_names at the first write after the kill: %q", len(acked), len(failed), syncAtOK)
	kinds := make([]string, 0, len(errKinds))
	for k := range errKinds {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		t.Logf("  error %dx %s\n      e.g. %s", errKinds[k], k, errExample[k])
	}

	// Every acknowledged write is on the new primary.
	check := openDB(t, f.URI("failover"))
	present := map[int64]bool{}
	rows, err := check.QueryContext(ctx, "SELECT id FROM writes")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		present[id] = true
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	var lost []int64
	for _, id := range acked {
		if !present[id] {
			lost = append(lost, id)
		}
	}
	if len(lost) > 0 {
		t.Errorf("%d acknowledged writes lost: %v", len(lost), lost[:min(len(lost), 20)])
	}
	committedFailed := 0
	for _, id := range failed {
		if present[id] {
			committedFailed++
		}
	}
	t.Logf("rows on the new primary: %d (all %d acknowledged present; %d of the %d failed inserts were committed anyway)",
		len(present), len(acked)-len(lost), committedFailed, len(failed))

	var names string
	if err := check.QueryRowContext(ctx, "SHOW synchronous_standby_names").Scan(&names); err != nil {
		t.Fatal(err)
	}
	t.Logf("new primary's synchronous_standby_names: %s", names)
	states, _ := f.State(ctx)
	for _, s := range states {
		t.Logf("  node %d %s: %s/%s health=%d", s.Index, s.Name, s.Current, s.Assigned, s.Health)
	}
}

// logEvents logs the monitor's events since t0, oldest first.
func logEvents(t *testing.T, f *pgauto.Formation, t0 time.Time) {
	t.Helper()
	mon := openDB(t, f.Monitor().URI())
	rows, err := mon.QueryContext(context.Background(),
		`SELECT eventtime, nodename, reportedstate, goalstate, description FROM pgautofailover.event
		  WHERE formationid = $1 AND eventtime >= $2 ORDER BY eventid`, f.Name(), t0.Add(-time.Second))
	if err != nil {
		t.Logf("monitor events: %v", err)
		return
	}
	defer rows.Close()
	for rows.Next() {
		var at time.Time
		var node, reported, goal, desc string
		if err := rows.Scan(&at, &node, &reported, &goal, &desc); err != nil {
			t.Logf("monitor events: %v", err)
			return
		}
		t.Logf("  +%6.2fs %s %s -> %s: %s", at.Sub(t0).Seconds(), node, reported, goal, firstLine(desc))
	}
}

var digits = regexp.MustCompile(`[0-9]+`)

// classify groups a write error by Go type and SQLSTATE, with numbers
// (ports, pids) masked.
func classify(err error) (kind, msg string) {
	msg = err.Error()
	var pe *pgconn.PgError
	var ce *pgconn.ConnectError
	switch {
	case errors.As(err, &pe):
		kind = fmt.Sprintf("*pgconn.PgError SQLSTATE %s", pe.Code)
	case errors.As(err, &ce):
		kind = "*pgconn.ConnectError"
	case errors.Is(err, context.DeadlineExceeded):
		kind = "context.DeadlineExceeded"
	default:
		kind = fmt.Sprintf("%T", err)
	}
	if pgconn.SafeToRetry(err) {
		kind += " (SafeToRetry)"
	}
	if pgconn.Timeout(err) {
		kind += " (Timeout)"
	}
	return kind + ": " + digits.ReplaceAllString(firstLine(msg), "N"), msg
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 160 {
		s = s[:160]
	}
	return s
}

// TestWritesWaitWithoutStandby kills every standby and checks that, with
// Sync, a commit is not acknowledged while no standby is left, even after
// the monitor has noticed: it waits, and fails only by the caller's
// deadline. Run after TestFailover it kills the one standby left.
func TestWritesWaitWithoutStandby(t *testing.T) {
	ctx := context.Background()
	f := formation(t)
	if err := f.CreateDatabase(ctx, "nostandby"); err != nil {
		t.Fatal(err)
	}
	db := openDB(t, f.URI("nostandby"))
	if _, err := db.ExecContext(ctx, "CREATE TABLE w (id int)"); err != nil {
		t.Fatal(err)
	}
	// After TestFailover the new primary may still be in wait_primary.
	var states []pgauto.NodeState
	testenv.CheckFor(t, 30*time.Second, func() error {
		var err error
		if states, err = f.State(ctx); err != nil {
			return err
		}
		count := map[string]int{}
		for _, s := range states {
			if s.Health == 1 {
				if s.Current != s.Assigned {
					return fmt.Errorf("node %s: %s -> %s", s.Name, s.Current, s.Assigned)
				}
				count[s.Current]++
			}
		}
		if count["primary"] != 1 || count["secondary"] < 1 {
			return fmt.Errorf("states %v", count)
		}
		return nil
	})
	var killed []int
	for _, s := range states {
		if s.Current == "secondary" && s.Index >= 0 {
			if err := f.KillNode(s.Index); err != nil {
				t.Fatal(err)
			}
			killed = append(killed, s.Index)
		}
	}
	if len(killed) == 0 {
		t.Fatalf("no standby to kill: %+v", states)
	}
	// Wait until the monitor has marked them unhealthy and had time to
	// react, so that what follows is its steady answer.
	testenv.CheckFor(t, 30*time.Second, func() error {
		states, err := f.State(ctx)
		if err != nil {
			return err
		}
		for _, s := range states {
			for _, k := range killed {
				if s.Index == k && s.Health != 0 {
					return fmt.Errorf("node %d health %d", k, s.Health)
				}
			}
		}
		return nil
	})
	pctx, pcancel := context.WithTimeout(ctx, 10*time.Second)
	defer pcancel()
	p, err := f.WaitPrimary(pctx, -1)
	if err != nil {
		t.Fatal(err)
	}
	var names string
	if err := openDB(t, f.NodeURI(p, "postgres")).QueryRowContext(ctx, "SHOW synchronous_standby_names").Scan(&names); err != nil {
		t.Fatal(err)
	}

	wctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	start := time.Now()
	_, err = db.ExecContext(wctx, "INSERT INTO w VALUES (1)")
	if err == nil {
		t.Fatalf("a write was acknowledged with every standby lost (synchronous_standby_names %q)", names)
	}
	kind, _ := classify(err)
	t.Logf("standbys %v killed; primary node %d keeps synchronous_standby_names %q; the write failed after %v by its deadline: %s",
		killed, p, names, time.Since(start).Round(time.Millisecond), kind)

	// The cancelled commit was already written on the primary: it becomes
	// visible there although no standby has it.
	var n int
	if err := openDB(t, f.NodeURI(p, "nostandby")).QueryRowContext(ctx, "SELECT count(*) FROM w").Scan(&n); err != nil {
		t.Fatal(err)
	}
	t.Logf("rows visible on the primary after the cancelled write: %d (committed locally, not replicated)", n)
}
