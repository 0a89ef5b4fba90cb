package sqldb_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/platform/consistency"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/pgnode"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

// TestMain starts the package's replicated cluster (one primary, two
// replicas) once, then runs the tests under testenv.Main, which also stops
// testenv's own server. The cluster's servers die with the test process
// (Pdeathsig); pgnode reaps their directory on its next start.
func TestMain(m *testing.M) {
	startCluster()
	testenv.Main(m)
}

// pg is the shared cluster. The failover test changes its shape and leaves
// a healthy one behind: a primary and two replicas.
var pg struct {
	mu       sync.Mutex
	err      error
	primary  *pgnode.Node
	replicas []*pgnode.Node
	dbs      atomic.Int64
}

func startCluster() {
	ctx := context.Background()
	p, err := pgnode.StartPrimary(ctx, pgnode.Options{Fast: true})
	if err != nil {
		pg.err = err
		return
	}
	pg.primary = p
	for i := 0; i < 2; i++ {
		r, err := p.AddReplica(ctx)
		if err != nil {
			pg.err = err
			return
		}
		pg.replicas = append(pg.replicas, r)
	}
}

// cluster returns the shared cluster's nodes, skipping the test when
// PostgreSQL is not installed (failing it under GLOBO_REQUIRE_SERVICES=1).
func cluster(tb testing.TB) (*pgnode.Node, []*pgnode.Node) {
	tb.Helper()
	if pg.err != nil {
		if errors.Is(pg.err, pgnode.ErrNoBinaries) && !testenv.Required() {
			tb.Skip("PostgreSQL binaries not installed")
		}
		tb.Fatalf("cluster: %v", pg.err)
	}
	pg.mu.Lock()
	defer pg.mu.Unlock()
	return pg.primary, append([]*pgnode.Node(nil), pg.replicas...)
}

// logBuffer collects a DB's log lines for the test to show and inspect.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// openCluster creates a fresh database on the primary with table kv, opens
// it through a multi-host DSN naming the replicas first, and waits until
// every replica has replayed the table and is in rotation.
func openCluster(t *testing.T, opts sqldb.Options, nodes ...*pgnode.Node) (*sqldb.DB, *logBuffer) {
	t.Helper()
	ctx := context.Background()
	primary, replicas := cluster(t)
	if len(nodes) == 0 {
		nodes = append(append(nodes, replicas...), primary)
	}
	name := fmt.Sprintf("c%d", pg.dbs.Add(1))
	if err := primary.CreateDatabase(ctx, name); err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	if opts.Log == nil {
		opts.Log = slog.New(slog.NewTextHandler(logs, nil))
	}
	db, err := sqldb.OpenWith(ctx, pgnode.MultiHostDSN(name, "target_session_attrs=read-write", nodes...), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		db.Close()
		if t.Failed() || testing.Verbose() {
			t.Logf("cluster log:\n%s", logs)
		}
	})
	if db.Source() != name {
		t.Errorf("Source() = %q, want the database name %q", db.Source(), name)
	}
	tok := consistency.NewToken()
	if _, err := db.ExecContext(consistency.WithToken(ctx, tok), kvTable); err != nil {
		t.Fatal(err)
	}
	waitReplayed(t, db, tok)
	return db, logs
}

// waitReplayed waits until every replica of db is in rotation and has
// replayed the positions in tok.
func waitReplayed(t *testing.T, db *sqldb.DB, tok *consistency.Token) {
	t.Helper()
	want := tok.Position(db.Source())
	testenv.CheckFor(t, 15*time.Second, func() error {
		for _, n := range db.Status().Nodes {
			if n.Role == sqldb.RolePrimary {
				continue
			}
			lsn, _ := consistency.ParseLSN(n.LSN)
			if n.State != sqldb.StateInRotation || lsn < want {
				return fmt.Errorf("%s is %s/%s at %s, want in rotation at %s", n.Addr, n.Role, n.State, n.LSN, consistency.FormatLSN(want))
			}
		}
		return nil
	})
}

func nodeStatus(t *testing.T, db *sqldb.DB, n *pgnode.Node) sqldb.NodeStatus {
	t.Helper()
	for _, s := range db.Status().Nodes {
		if s.Addr == n.Addr() {
			return s
		}
	}
	t.Fatalf("node %s not in status", n.Addr())
	return sqldb.NodeStatus{}
}

func TestClusterDiscoversRoles(t *testing.T) {
	primary, replicas := cluster(t)
	db, _ := openCluster(t, sqldb.Options{})
	st := db.Status()
	if st.Primary != primary.Addr() || len(st.Nodes) != 3 {
		t.Fatalf("status = %+v, want primary %s and 3 nodes", st, primary.Addr())
	}
	for _, r := range replicas {
		if s := nodeStatus(t, db, r); s.Role != sqldb.RoleReplica || s.State != sqldb.StateInRotation {
			t.Errorf("replica %s: %s/%s", r.Addr(), s.Role, s.State)
		}
	}
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"role":"replica"`) || strings.Contains(string(b), "postgres@") {
		t.Errorf("status JSON %s", b)
	}
	// Writes go to the primary; a read asking for nothing goes there too.
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, `INSERT INTO kv (k, v) VALUES (?, ?)`, "a", 1); err != nil {
		t.Fatal(err)
	}
	var inRecovery bool
	if err := db.QueryRowContext(ctx, `SELECT pg_is_in_recovery()`).Scan(&inRecovery); err != nil || inRecovery {
		t.Errorf("plain read: in recovery %v, %v; want the primary", inRecovery, err)
	}
	if err := db.Reader(ctx, consistency.Bounded).QueryRowContext(ctx, `SELECT pg_is_in_recovery()`).Scan(&inRecovery); err != nil || !inRecovery {
		t.Errorf("bounded read: in recovery %v, %v; want a replica", inRecovery, err)
	}
	// A level in the context routes plain reads.
	bctx := consistency.WithLevel(ctx, consistency.Bounded)
	if err := db.QueryRowContext(bctx, `SELECT pg_is_in_recovery()`).Scan(&inRecovery); err != nil || !inRecovery {
		t.Errorf("read with Bounded in ctx: in recovery %v, %v; want a replica", inRecovery, err)
	}
}

func TestWritesRecordPositions(t *testing.T) {
	db, _ := openCluster(t, sqldb.Options{})
	tok := consistency.NewToken()
	ctx := consistency.WithToken(context.Background(), tok)
	if _, err := db.ExecContext(ctx, `INSERT INTO kv (k, v) VALUES (?, ?)`, "x", 1); err != nil {
		t.Fatal(err)
	}
	p1 := tok.Position(db.Source())
	if p1 == 0 {
		t.Fatal("ExecContext recorded no position")
	}
	err := db.InTx(ctx, func(tx *sqldb.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE kv SET v = v + 1 WHERE k = ?`, "x")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if p2 := tok.Position(db.Source()); p2 <= p1 {
		t.Errorf("InTx position %s, want past %s", consistency.FormatLSN(p2), consistency.FormatLSN(p1))
	}
	// A rolled-back transaction still works, and without a token nothing is recorded.
	other := consistency.NewToken()
	_ = db.InTx(context.Background(), func(tx *sqldb.Tx) error { return errors.New("no") })
	if !other.Empty() {
		t.Error("token changed")
	}
}

// TestReadYourWrites pauses replay on one replica and keeps it in rotation
// (a lag bound of an hour), so that only the per-replica position check
// stands between a reader and stale data.
func TestReadYourWrites(t *testing.T) {
	_, replicas := cluster(t)
	db, _ := openCluster(t, sqldb.Options{MaxLag: time.Hour})
	ctx := context.Background()
	setup := consistency.NewToken()
	if _, err := db.ExecContext(consistency.WithToken(ctx, setup), `INSERT INTO kv (k, v) VALUES (?, ?)`, "w", 0); err != nil {
		t.Fatal(err)
	}
	waitReplayed(t, db, setup)
	paused := replicas[0]
	if err := paused.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = paused.Resume(context.Background()) })
	before := db.Status()

	tok := consistency.NewToken()
	wctx := consistency.WithToken(ctx, tok)
	bctx := consistency.WithToken(ctx, consistency.NewToken()) // a reader that wrote nothing
	const pairs = 1000
	staleBounded := 0
	for i := 1; i <= pairs; i++ {
		if _, err := db.ExecContext(wctx, `UPDATE kv SET v = ? WHERE k = ?`, i, "w"); err != nil {
			t.Fatal(err)
		}
		var v int
		if err := db.Reader(wctx, consistency.ReadYourWrites).QueryRowContext(wctx, `SELECT v FROM kv WHERE k = ?`, "w").Scan(&v); err != nil {
			t.Fatal(err)
		}
		if v != i {
			t.Fatalf("pair %d: read-your-writes read %d: stale", i, v)
		}
		if err := db.Reader(bctx, consistency.Bounded).QueryRowContext(bctx, `SELECT v FROM kv WHERE k = ?`, "w").Scan(&v); err != nil {
			t.Fatal(err)
		}
		if v != i {
			staleBounded++
		}
	}
	after := db.Status()
	reads := func(s sqldb.Status, n *pgnode.Node) int64 {
		for _, ns := range s.Nodes {
			if ns.Addr == n.Addr() {
				return ns.Reads
			}
		}
		return 0
	}
	r0, r1 := reads(after, replicas[0])-reads(before, replicas[0]), reads(after, replicas[1])-reads(before, replicas[1])
	var p0, p1 int64
	for i, s := range []sqldb.Status{before, after} {
		for _, ns := range s.Nodes {
			if ns.Role == sqldb.RolePrimary {
				p0, p1 = map[bool]int64{true: ns.Reads, false: p0}[i == 0], map[bool]int64{true: ns.Reads, false: p1}[i == 1]
			}
		}
	}
	t.Logf("%d write-then-read pairs: %d reads (read-your-writes and bounded) on the primary; bounded reads on the paused replica %d, on the other replica %d; %d bounded reads older than the last write",
		pairs, p1-p0, r0, r1, staleBounded)
	if r0 == 0 || r1 == 0 {
		t.Errorf("bounded reads did not use both replicas: %d, %d", r0, r1)
	}
	if staleBounded == 0 {
		t.Error("no bounded read saw stale data: the paused replica was not read at all?")
	}

	// Once the healthy replica has replayed the writer's last write, the
	// writer's reads go to it, never to the paused one.
	testenv.CheckFor(t, 10*time.Second, func() error {
		lsn, _ := consistency.ParseLSN(nodeStatus(t, db, replicas[1]).LSN)
		if lsn < tok.Position(db.Source()) {
			return fmt.Errorf("replica at %s, token at %s", consistency.FormatLSN(lsn), consistency.FormatLSN(tok.Position(db.Source())))
		}
		return nil
	})
	b0, b1 := nodeStatus(t, db, replicas[0]).Reads, nodeStatus(t, db, replicas[1]).Reads
	for i := 0; i < 20; i++ {
		var v int
		if err := db.Reader(wctx, consistency.ReadYourWrites).QueryRowContext(wctx, `SELECT v FROM kv WHERE k = ?`, "w").Scan(&v); err != nil || v != pairs {
			t.Fatalf("read-your-writes after replay: %d, %v", v, err)
		}
	}
	if d0, d1 := nodeStatus(t, db, replicas[0]).Reads-b0, nodeStatus(t, db, replicas[1]).Reads-b1; d0 != 0 || d1 != 20 {
		t.Errorf("read-your-writes reads: paused replica %d, caught-up replica %d; want 0 and 20", d0, d1)
	}
}

func TestLaggingReplicaLeavesRotation(t *testing.T) {
	_, replicas := cluster(t)
	db, logs := openCluster(t, sqldb.Options{})
	ctx := context.Background()
	paused := replicas[0]
	if err := paused.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = paused.Resume(context.Background()) })
	// Keep the primary busy so that its position moves.
	wctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; wctx.Err() == nil; i++ {
			_, _ = db.ExecContext(wctx, `INSERT INTO kv (k, v) VALUES (?, ?)`, fmt.Sprint("k", i), i)
			select {
			case <-wctx.Done():
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	defer func() { stop(); wg.Wait() }()

	start := time.Now()
	testenv.CheckFor(t, 10*time.Second, func() error {
		if s := nodeStatus(t, db, paused); s.State != sqldb.StateLagging {
			return fmt.Errorf("paused replica %s, lag %.2fs", s.State, s.LagSeconds)
		}
		return nil
	})
	s := nodeStatus(t, db, paused)
	t.Logf("paused replica left rotation after %v: lag %.2fs, %d bytes", time.Since(start).Round(10*time.Millisecond), s.LagSeconds, s.LagBytes)
	if s.LagSeconds <= 1 || s.LagBytes == 0 {
		t.Errorf("lagging replica reports lag %.2fs, %d bytes", s.LagSeconds, s.LagBytes)
	}
	before := s.Reads
	for i := 0; i < 50; i++ {
		var n int
		if err := db.Reader(ctx, consistency.Bounded).QueryRowContext(ctx, `SELECT COUNT(*) FROM kv`).Scan(&n); err != nil {
			t.Fatal(err)
		}
	}
	if got := nodeStatus(t, db, paused).Reads; got != before {
		t.Errorf("a lagging replica served %d bounded reads", got-before)
	}
	if err := paused.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	testenv.CheckFor(t, 10*time.Second, func() error {
		if s := nodeStatus(t, db, paused); s.State != sqldb.StateInRotation {
			return fmt.Errorf("resumed replica %s, lag %.2fs", s.State, s.LagSeconds)
		}
		return nil
	})
	if l := logs.String(); !strings.Contains(l, "to=replica/lagging") || !strings.Contains(l, "from=replica/lagging") {
		t.Errorf("state changes not logged:\n%s", l)
	}
}

func TestQueryTimeoutIsUnavailable(t *testing.T) {
	db, _ := openCluster(t, sqldb.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := db.QueryContext(ctx, `SELECT pg_sleep(5)`)
	if !errs.Is(errs.Unavailable, err) || time.Since(start) > 2*time.Second {
		t.Errorf("query past its deadline: %v after %v, want Unavailable at once", err, time.Since(start))
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel2()
	var x string
	err = db.QueryRowContext(ctx2, `SELECT pg_sleep(5)::text`).Scan(&x)
	if !errs.Is(errs.Unavailable, errs.E("store.Get", err)) {
		t.Errorf("QueryRow past its deadline: %v (kind %v), want Unavailable", err, errs.KindOf(err))
	}
	// A server-side statement_timeout (57014) is Unavailable too.
	err = db.InTx(context.Background(), func(tx *sqldb.Tx) error {
		if _, err := tx.ExecContext(context.Background(), `SET LOCAL statement_timeout = 50`); err != nil {
			return err
		}
		_, err := tx.ExecContext(context.Background(), `SELECT pg_sleep(5)`)
		return err
	})
	if !errs.Is(errs.Unavailable, err) {
		t.Errorf("statement_timeout: %v (kind %v), want Unavailable", err, errs.KindOf(err))
	}
}

// TestExplicitReplicaDSNs: replicas named apart from the main DSN (which
// names only the primary) are discovered and used the same way.
func TestExplicitReplicaDSNs(t *testing.T) {
	primary, replicas := cluster(t)
	ctx := context.Background()
	name := fmt.Sprintf("c%d", pg.dbs.Add(1))
	if err := primary.CreateDatabase(ctx, name); err != nil {
		t.Fatal(err)
	}
	db, err := sqldb.OpenWith(ctx, primary.DSN(name), sqldb.Options{
		Source:   "orders-db",
		Replicas: []string{replicas[0].DSN(name), replicas[1].DSN(name)},
		Log:      testenv.Logger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if db.Source() != "orders-db" {
		t.Errorf("Source() = %q", db.Source())
	}
	tok := consistency.NewToken()
	if _, err := db.ExecContext(consistency.WithToken(ctx, tok), kvTable); err != nil {
		t.Fatal(err)
	}
	if tok.Position("orders-db") == 0 {
		t.Error("write position not recorded under the configured source")
	}
	waitReplayed(t, db, tok)
	if st := db.Status(); len(st.Nodes) != 3 || st.Primary != primary.Addr() {
		t.Errorf("status %+v", st)
	}
}

func TestSQLiteIsOneLocalNode(t *testing.T) {
	db := testenv.SQLite(t)
	ctx := consistency.WithLevel(context.Background(), consistency.Bounded)
	if _, err := db.ExecContext(ctx, kvTable); err != nil {
		t.Fatal(err)
	}
	if q := db.Reader(ctx, consistency.ReadYourWrites); q != sqldb.Querier(db) {
		t.Errorf("SQLite Reader = %T, want the DB itself", q)
	}
	var n int
	if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM kv`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if st := db.Status(); len(st.Nodes) != 1 || st.Nodes[0].Role != sqldb.RolePrimary || st.Source != "test.db" {
		t.Errorf("status %+v", st)
	}
}
