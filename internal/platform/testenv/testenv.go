// Package testenv starts the real servers tests run against: SQLite files,
// a private PostgreSQL server, an embedded NATS JetStream broker. Each lives
// in a temporary directory on free ports and is gone when the test ends.
//
// Tests that need PostgreSQL skip when its binaries are missing, unless
// GLOBO_REQUIRE_SERVICES=1, when they fail instead.
package testenv

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/platform/bus"
	"github.com/globomantics/globomantics/internal/platform/freeport"
	"github.com/globomantics/globomantics/internal/platform/ids"
	"github.com/globomantics/globomantics/internal/platform/pgnode"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
)

// Required reports whether missing service binaries must fail tests.
func Required() bool { return os.Getenv("GLOBO_REQUIRE_SERVICES") == "1" }

// Main runs the package's tests and then stops the servers they started.
// Use it as: func TestMain(m *testing.M) { testenv.Main(m) }.
func Main(m *testing.M) {
	code := m.Run()
	stopSharedFormation()
	stopPostgres()
	os.Exit(code)
}

// Logger is a logger that writes to the test log (tb.Log) at warn level and
// above, so a failing test shows the warnings that led to it and a passing
// one stays quiet unless run with -v. Records logged after the test's
// clean-up began are dropped, so a server still stopping in the background
// cannot make the test panic. With GLOBO_TEST_DEBUG set it writes every
// record, debug included, to standard error instead.
func Logger(tb testing.TB) *slog.Logger {
	tb.Helper()
	if os.Getenv("GLOBO_TEST_DEBUG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	w := &tbWriter{tb: tb}
	tb.Cleanup(w.stop)
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// tbWriter passes each record the text handler writes (one Write per
// record) to tb.Log until stop is called.
type tbWriter struct {
	mu      sync.Mutex
	tb      testing.TB
	stopped bool
}

func (w *tbWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.stopped {
		w.tb.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}

func (w *tbWriter) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stopped = true
}

// CorruptFile overwrites the middle third of the file at path with random
// bytes, in whole 4 KiB pages where the file is large enough, leaving its
// first page (a database header) intact, as a failing disk might.
func CorruptFile(tb testing.TB, path string) {
	tb.Helper()
	st, err := os.Stat(path)
	if err != nil {
		tb.Fatal(err)
	}
	const pageSize = 4096
	size := st.Size()
	start, n := size/3, size/3
	if size >= 4*pageSize {
		start = max(pageSize, start/pageSize*pageSize)
		n = max(pageSize, n/pageSize*pageSize)
	}
	if n == 0 {
		tb.Fatalf("CorruptFile: %s is empty", path)
	}
	garbage := make([]byte, n)
	if _, err := rand.Read(garbage); err != nil {
		tb.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(garbage, start); err != nil {
		tb.Fatal(err)
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
}

// SQLite opens a fresh SQLite database in a temp directory.
func SQLite(tb testing.TB) *sqldb.DB {
	tb.Helper()
	db, err := sqldb.OpenSQLite(context.Background(), filepath.Join(tb.TempDir(), "test.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

// Postgres returns a fresh, empty database on the package's private
// PostgreSQL server, starting the server on first use.
func Postgres(tb testing.TB) *sqldb.DB {
	tb.Helper()
	dsn := PostgresDSN(tb)
	db, err := sqldb.OpenPostgres(context.Background(), dsn)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	return db
}

// PostgresDSN creates a fresh database on the private server and returns its DSN.
func PostgresDSN(tb testing.TB) string {
	tb.Helper()
	pg, err := startPostgres()
	if err != nil {
		if !Required() && err == errNoPostgres {
			tb.Skip("PostgreSQL binaries not installed")
		}
		tb.Fatalf("postgres: %v", err)
	}
	name := strings.ReplaceAll(strings.ToLower(ids.New("t", time.Now())), "_", "")
	admin, err := sqldb.OpenPostgres(context.Background(), pg.dsn("postgres"))
	if err != nil {
		tb.Fatal(err)
	}
	defer admin.Close()
	if _, err := admin.DB.Exec("CREATE DATABASE " + name); err != nil {
		tb.Fatal(err)
	}
	return pg.dsn(name)
}

// Backend is a named database constructor for conformance suites.
type Backend struct {
	Name string
	Open func(tb testing.TB) *sqldb.DB
}

// Backends lists SQLite and PostgreSQL, for running one suite against both.
func Backends() []Backend {
	return []Backend{{"sqlite", SQLite}, {"postgres", Postgres}}
}

type pgServer struct {
	dir  string
	port int
	cmd  *exec.Cmd
}

func (p *pgServer) dsn(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", p.port, db)
}

var (
	pgMu   sync.Mutex
	pg     *pgServer
	pgErr  error
	pgDone bool

	errNoPostgres = fmt.Errorf("postgres binaries not found")
)

func startPostgres() (*pgServer, error) {
	pgMu.Lock()
	defer pgMu.Unlock()
	if pgDone {
		return pg, pgErr
	}
	pgDone = true
	pg, pgErr = launchPostgres()
	return pg, pgErr
}

func launchPostgres() (*pgServer, error) {
	bin := pgnode.BinDir()
	if bin == "" {
		return nil, errNoPostgres
	}
	dir, err := os.MkdirTemp("", "globo-pg-")
	if err != nil {
		return nil, err
	}
	var cred *syscall.Credential
	if os.Geteuid() == 0 { // PostgreSQL refuses to run as root
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("running as root and no postgres user: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			return nil, err
		}
	}
	data := filepath.Join(dir, "data")
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync", "--no-instructions")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	initdb.Dir = dir
	if out, err := initdb.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %v: %s", err, out)
	}
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(filepath.Join(bin, "postgres"), "-D", data, "-p", strconv.Itoa(port), "-k", dir,
		"-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
		"-c", "full_page_writes=off", "-c", "max_connections=200", "-c", "shared_buffers=32MB",
		// Logical replication, for online resharding (internal/reshard).
		"-c", "wal_level=logical", "-c", "max_replication_slots=20", "-c", "max_wal_senders=20",
		"-c", "max_logical_replication_workers=8", "-c", "max_worker_processes=16")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL}
	cmd.Dir = dir
	logf, _ := os.Create(filepath.Join(dir, "postgres.log"))
	if logf != nil && cred != nil {
		_ = logf.Chown(int(cred.Uid), int(cred.Gid))
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s := &pgServer{dir: dir, port: port, cmd: cmd}
	deadline := time.Now().Add(20 * time.Second)
	for {
		db, err := sqldb.OpenPostgres(context.Background(), s.dsn("postgres"))
		if err == nil {
			db.Close()
			return s, nil
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(dir, "postgres.log"))
			s.stop()
			return nil, fmt.Errorf("postgres did not start: %v: %s", err, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *pgServer) stop() {
	if s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(syscall.SIGINT) // fast shutdown
		done := make(chan struct{})
		go func() { _ = s.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = s.cmd.Process.Kill()
			<-done
		}
	}
	os.RemoveAll(s.dir)
}

func stopPostgres() {
	pgMu.Lock()
	defer pgMu.Unlock()
	if pg != nil {
		pg.stop()
		pg = nil
	}
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago,
// below the kernel's ephemeral range, so that the local end of an outgoing
// connection cannot take it before the server binds it (see freeport).
func FreePort() (int, error) { return freeport.Get() }

// FreeAddr returns "127.0.0.1:<free port>".
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	p, err := FreePort()
	if err != nil {
		tb.Fatal(err)
	}
	return "127.0.0.1:" + strconv.Itoa(p)
}

// Bus starts an embedded NATS JetStream broker in a temp directory.
func Bus(tb testing.TB) *bus.Bus {
	tb.Helper()
	b, err := bus.Open(context.Background(), bus.Options{StoreDir: tb.TempDir(), Name: tb.Name(), Log: Logger(tb)})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { b.Close() })
	return b
}

// CheckFor calls fn until it returns nil or timeout passes, then fails the
// test with fn's last error.
func CheckFor(tb testing.TB, timeout time.Duration, fn func() error) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	wait := 5 * time.Millisecond
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("condition not met after %v: %v", timeout, err)
		}
		time.Sleep(wait)
		if wait < 200*time.Millisecond {
			wait *= 2
		}
	}
}
