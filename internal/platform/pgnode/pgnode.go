// Package pgnode starts real PostgreSQL servers from the installed binaries:
// a primary, streaming replicas cloned from it with pg_basebackup, and the
// operations a test or a developer needs on them (pause and resume replay,
// promote, stop, kill). Each node listens on 127.0.0.1 on a free port and
// lives in its own directory.
//
// When the process runs as root the servers run as the postgres user, and
// they are killed if the process that started them dies (Linux Pdeathsig),
// so nothing outlives a crashed test.
package pgnode

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/globomantics/globomantics/internal/platform/freeport"
	"github.com/globomantics/globomantics/internal/platform/proctree"
)

// ErrNoBinaries is returned by StartPrimary when no PostgreSQL binaries are
// installed (neither GLOBO_PG_BIN, /usr/lib/postgresql/*/bin nor PATH has initdb).
var ErrNoBinaries = errors.New("pgnode: PostgreSQL binaries not found")

// Options configures the nodes of one cluster.
type Options struct {
	// BinDir holds initdb, postgres, pg_ctl and pg_basebackup. Empty: the
	// newest /usr/lib/postgresql/*/bin, or the directory of initdb on PATH.
	BinDir string
	// Dir is the directory under which each node gets its own directory.
	// Empty: a new temporary directory, removed by Close.
	Dir string
	// Fast turns durability off (fsync, full_page_writes,
	// synchronous_commit) for tests; never for data that matters.
	Fast bool
	// Settings are extra server settings (name -> value), applied to every node.
	Settings map[string]string
	// Log receives one line per node started or stopped; nil discards.
	Log *slog.Logger
	// StartTimeout bounds how long a node may take to accept connections
	// (default 30 s).
	StartTimeout time.Duration
}

// Node is one running (or stopped) PostgreSQL server. Its methods are safe
// for concurrent use.
type Node struct {
	opts Options
	bin  string
	dir  string // the node's own directory: data/, postgres.log
	port int
	cred *syscall.Credential
	name string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	closed bool
	shared *shared
}

// shared is the state the nodes of one cluster have in common.
type shared struct {
	mu    sync.Mutex
	root  string
	owned bool
	next  int
	nodes []*Node
}

// StartPrimary initialises a new data directory and starts a primary that
// accepts replication connections (wal_level=replica) with trust
// authentication for the user postgres on 127.0.0.1. It returns
// ErrNoBinaries when PostgreSQL is not installed.
func StartPrimary(ctx context.Context, opts Options) (*Node, error) {
	bin := opts.BinDir
	if bin == "" {
		bin = BinDir()
	}
	if bin == "" {
		return nil, ErrNoBinaries
	}
	opts.BinDir = bin
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = 30 * time.Second
	}
	cred, err := credential()
	if err != nil {
		return nil, err
	}
	sh := &shared{root: opts.Dir}
	if sh.root == "" {
		reapStale()
		if sh.root, err = os.MkdirTemp("", "globo-pgnode-"); err != nil {
			return nil, err
		}
		sh.owned = true
		if err := os.WriteFile(filepath.Join(sh.root, "owner.pid"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
			sh.remove()
			return nil, err
		}
	} else if err := os.MkdirAll(sh.root, 0o755); err != nil {
		return nil, err
	}
	if err := chownDir(sh.root, cred); err != nil {
		sh.remove()
		return nil, err
	}
	n, err := sh.newNode(opts, bin, cred, "primary")
	if err != nil {
		sh.remove()
		return nil, err
	}
	initdb := exec.CommandContext(ctx, filepath.Join(bin, "initdb"), "-D", n.dataDir(), "-U", "postgres",
		"--auth=trust", "-E", "UTF8", "--no-sync", "--no-instructions")
	if out, err := n.run(initdb); err != nil {
		sh.remove()
		return nil, fmt.Errorf("pgnode: initdb: %v: %s", err, out)
	}
	if err := n.Start(ctx); err != nil {
		sh.remove()
		return nil, err
	}
	return n, nil
}

// AddReplica clones n with pg_basebackup (-R -X stream) and starts the clone
// as a hot standby streaming from n. n must be running; it may itself be a
// replica (cascading replication).
func (n *Node) AddReplica(ctx context.Context) (*Node, error) {
	r, err := n.shared.newNode(n.opts, n.bin, n.cred, "replica")
	if err != nil {
		return nil, err
	}
	bb := exec.CommandContext(ctx, filepath.Join(n.bin, "pg_basebackup"), "-h", "127.0.0.1", "-p", strconv.Itoa(n.port),
		"-U", "postgres", "-D", r.dataDir(), "-R", "-X", "stream", "--checkpoint=fast", "--no-sync")
	if out, err := r.run(bb); err != nil {
		return nil, fmt.Errorf("pgnode: pg_basebackup from %s: %v: %s", n.Addr(), err, out)
	}
	if err := r.Start(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// Start starts the server of a stopped or killed node on its old port and
// waits until it accepts connections (a standby: until it accepts
// read-only ones).
func (n *Node) Start(ctx context.Context) error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return errors.New("pgnode: node is closed")
	}
	if n.cmd != nil {
		n.mu.Unlock()
		return nil
	}
	args := []string{"-D", n.dataDir(), "-p", strconv.Itoa(n.port), "-k", n.dir,
		"-c", "listen_addresses=127.0.0.1", "-c", "wal_level=replica", "-c", "hot_standby=on",
		"-c", "max_wal_senders=10", "-c", "max_connections=200", "-c", "shared_buffers=32MB",
		"-c", "cluster_name=" + n.name}
	if n.opts.Fast {
		args = append(args, "-c", "fsync=off", "-c", "full_page_writes=off", "-c", "synchronous_commit=off")
	}
	keys := make([]string, 0, len(n.opts.Settings))
	for k := range n.opts.Settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		args = append(args, "-c", k+"="+n.opts.Settings[k])
	}
	cmd := exec.Command(filepath.Join(n.bin, "postgres"), args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: n.cred, Pdeathsig: syscall.SIGKILL}
	cmd.Dir = n.dir
	logf, err := os.OpenFile(n.LogFile(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		n.mu.Unlock()
		return err
	}
	if n.cred != nil {
		_ = logf.Chown(int(n.cred.Uid), int(n.cred.Gid))
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		n.mu.Unlock()
		return fmt.Errorf("pgnode: start %s: %w", n.name, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(exited) }()
	n.cmd, n.exited = cmd, exited
	n.mu.Unlock()

	ctx, cancel := context.WithTimeout(ctx, n.opts.StartTimeout)
	defer cancel()
	for wait := 20 * time.Millisecond; ; {
		err := n.ping(ctx)
		if err == nil {
			n.opts.Log.Info("postgres node started", "node", n.name, "addr", n.Addr(), "dir", n.dir)
			return nil
		}
		select {
		case <-exited:
			b, _ := os.ReadFile(n.LogFile())
			n.forget(cmd)
			return fmt.Errorf("pgnode: %s exited at start: %s", n.name, tail(b))
		case <-ctx.Done():
			b, _ := os.ReadFile(n.LogFile())
			_ = n.Kill()
			return fmt.Errorf("pgnode: %s did not accept connections: %v: %s", n.name, err, tail(b))
		case <-time.After(wait):
		}
		if wait < 200*time.Millisecond {
			wait *= 2
		}
	}
}

func (n *Node) ping(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	c, err := pgx.Connect(cctx, n.DSN("postgres"))
	if err != nil {
		return err
	}
	defer c.Close(context.WithoutCancel(ctx))
	return c.Ping(cctx)
}

// Name is the node's name in its cluster ("primary", "replica1", ...), also
// its cluster_name setting.
func (n *Node) Name() string { return n.name }

// Port is the TCP port the node listens on, on 127.0.0.1.
func (n *Node) Port() int { return n.port }

// Addr is "127.0.0.1:port".
func (n *Node) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(n.port)) }

// Dir is the node's directory (its data directory is Dir()/data).
func (n *Node) Dir() string { return n.dir }

// LogFile is the path of the server's log.
func (n *Node) LogFile() string { return filepath.Join(n.dir, "postgres.log") }

// DSN is a connection URL for database db on this node as user postgres.
func (n *Node) DSN(db string) string {
	return fmt.Sprintf("postgres://postgres@%s/%s?sslmode=disable", n.Addr(), db)
}

// HostPort is "127.0.0.1:port", the form a multi-host DSN lists.
func (n *Node) HostPort() string { return n.Addr() }

// MultiHostDSN is a URL naming all of nodes for database db, with the
// extra query (e.g. "target_session_attrs=read-write"; may be empty).
func MultiHostDSN(db, query string, nodes ...*Node) string {
	s := "postgres://postgres@"
	for i, n := range nodes {
		if i > 0 {
			s += ","
		}
		s += n.Addr()
	}
	s += "/" + db + "?sslmode=disable"
	if query != "" {
		s += "&" + query
	}
	return s
}

// Exec runs one statement on database postgres of the node.
func (n *Node) Exec(ctx context.Context, sql string, args ...any) error {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(cctx, n.DSN("postgres"))
	if err != nil {
		return fmt.Errorf("pgnode: %s: %w", n.name, err)
	}
	defer c.Close(context.WithoutCancel(ctx))
	if _, err := c.Exec(cctx, sql, args...); err != nil {
		return fmt.Errorf("pgnode: %s: %s: %w", n.name, sql, err)
	}
	return nil
}

// CreateDatabase creates database name on the node (a primary).
func (n *Node) CreateDatabase(ctx context.Context, name string) error {
	return n.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
}

// Pause pauses WAL replay on a replica (pg_wal_replay_pause): it keeps
// receiving WAL but its data stops advancing until Resume.
func (n *Node) Pause(ctx context.Context) error { return n.Exec(ctx, "SELECT pg_wal_replay_pause()") }

// Resume resumes WAL replay on a replica paused by Pause.
func (n *Node) Resume(ctx context.Context) error { return n.Exec(ctx, "SELECT pg_wal_replay_resume()") }

// Promote makes a replica a primary (pg_promote, waiting up to 30 s for the
// promotion to finish).
func (n *Node) Promote(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, 35*time.Second)
	defer cancel()
	c, err := pgx.Connect(cctx, n.DSN("postgres"))
	if err != nil {
		return fmt.Errorf("pgnode: promote %s: %w", n.name, err)
	}
	defer c.Close(context.WithoutCancel(ctx))
	var ok bool
	if err := c.QueryRow(cctx, "SELECT pg_promote(true, 30)").Scan(&ok); err != nil {
		return fmt.Errorf("pgnode: promote %s: %w", n.name, err)
	}
	if !ok {
		return fmt.Errorf("pgnode: promote %s: not promoted within 30 s", n.name)
	}
	n.opts.Log.Info("postgres node promoted", "node", n.name, "addr", n.Addr())
	return nil
}

// Kill ends the server with SIGKILL, as a crash would, and waits for it to
// exit. Killing a stopped node does nothing.
func (n *Node) Kill() error { return n.signal(syscall.SIGKILL, "killed") }

// Stop shuts the server down fast (SIGINT: connections are closed, no
// waiting for clients) and waits for it to exit, up to 15 s, then kills it.
// The data directory is kept; Start starts it again.
func (n *Node) Stop() error { return n.signal(syscall.SIGINT, "stopped") }

// Freeze stops the server and all its processes with SIGSTOP, as a hung
// machine would: connections stay open and nothing answers. Thaw undoes it.
func (n *Node) Freeze() error { return n.signalAll(syscall.SIGSTOP) }

// Thaw resumes a server frozen by Freeze.
func (n *Node) Thaw() error { return n.signalAll(syscall.SIGCONT) }

// signalAll sends sig to the postmaster and to its children (backends,
// walsender, background workers).
func (n *Node) signalAll(sig syscall.Signal) error {
	n.mu.Lock()
	cmd := n.cmd
	n.mu.Unlock()
	if cmd == nil {
		return fmt.Errorf("pgnode: %s is not running", n.name)
	}
	pid := cmd.Process.Pid
	for _, child := range proctree.Children(pid) {
		_ = syscall.Kill(child, sig)
	}
	return syscall.Kill(pid, sig)
}

func (n *Node) signal(sig syscall.Signal, what string) error {
	n.mu.Lock()
	cmd, exited := n.cmd, n.exited
	n.mu.Unlock()
	if cmd == nil {
		return nil
	}
	_ = n.signalAll(syscall.SIGCONT) // a frozen server must run to exit
	children := proctree.Children(cmd.Process.Pid)
	// The server may run as another user, but we started it: signalling
	// our child is allowed.
	if err := cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("pgnode: %s %s: %w", what, n.name, err)
	}
	select {
	case <-exited:
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}
	// A killed postmaster's backends live on for a moment, holding its
	// shared memory: a Start before they are gone fails with "pre-existing
	// shared memory block is still in use". The server has exited only once
	// they have (they notice the postmaster's death and quit; those that do
	// not within 5 s are killed, once).
	if !waitGone(children, 5*time.Second) {
		for _, c := range children {
			if proctree.Alive(c) {
				_ = syscall.Kill(c, syscall.SIGKILL)
			}
		}
		waitGone(children, time.Second)
	}
	n.forget(cmd)
	n.opts.Log.Info("postgres node "+what, "node", n.name, "addr", n.Addr())
	return nil
}

// waitGone waits up to d for every process of pids to be gone, and
// reports whether they all are.
func waitGone(pids []int, d time.Duration) bool {
	for deadline := time.Now().Add(d); ; time.Sleep(20 * time.Millisecond) {
		if !slices.ContainsFunc(pids, proctree.Alive) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}

func (n *Node) forget(cmd *exec.Cmd) {
	n.mu.Lock()
	if n.cmd == cmd {
		n.cmd, n.exited = nil, nil
	}
	n.mu.Unlock()
}

// Running reports whether the node's server process is running.
func (n *Node) Running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cmd != nil
}

// Close stops the node and, when StartPrimary made the cluster's directory,
// stops every node of the cluster and removes the directory; Close on any
// node of such a cluster closes them all.
func (n *Node) Close() error {
	sh := n.shared
	sh.mu.Lock()
	nodes := append([]*Node(nil), sh.nodes...)
	sh.mu.Unlock()
	if !sh.owned {
		nodes = []*Node{n}
	}
	var first error
	for _, m := range nodes {
		if err := m.Stop(); err != nil && first == nil {
			first = err
		}
		m.mu.Lock()
		m.closed = true
		m.mu.Unlock()
	}
	if sh.owned {
		sh.remove()
	}
	return first
}

func (sh *shared) remove() {
	if sh.owned {
		_ = os.RemoveAll(sh.root)
	}
}

func (sh *shared) newNode(opts Options, bin string, cred *syscall.Credential, kind string) (*Node, error) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	name := kind
	if kind == "replica" {
		sh.next++
		name = "replica" + strconv.Itoa(sh.next)
	}
	dir, err := os.MkdirTemp(sh.root, name+"-")
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	if err := chownDir(dir, cred); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	n := &Node{opts: opts, bin: bin, dir: dir, port: port, cred: cred, name: name, shared: sh}
	sh.nodes = append(sh.nodes, n)
	return n, nil
}

func (n *Node) dataDir() string { return filepath.Join(n.dir, "data") }

// run runs a helper binary as the server's user, in the node's directory.
func (n *Node) run(cmd *exec.Cmd) ([]byte, error) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: n.cred, Pdeathsig: syscall.SIGKILL}
	cmd.Dir = n.dir
	return cmd.CombinedOutput()
}

// reapStale removes the temporary directories of clusters whose owning
// process is gone without calling Close (a killed test binary: its servers
// died with it, through Pdeathsig).
func reapStale() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "globo-pgnode-*"))
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "owner.pid"))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(string(b))
		if err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			_ = os.RemoveAll(d)
		}
	}
}

// BinDir is the directory of the PostgreSQL server binaries: GLOBO_PG_BIN,
// else the newest /usr/lib/postgresql/<v>/bin, else the directory of initdb
// on PATH; "" when none is installed.
func BinDir() string {
	if d := os.Getenv("GLOBO_PG_BIN"); d != "" {
		return d
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(matches) > 0 {
		sort.Slice(matches, func(i, j int) bool { return version(matches[i]) < version(matches[j]) })
		return filepath.Dir(matches[len(matches)-1])
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p)
	}
	return ""
}

// version is the major version in /usr/lib/postgresql/<v>/bin/initdb.
func version(path string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(path))))
	return v
}

// credential is the postgres user's when running as root (PostgreSQL
// refuses to run as root), nil otherwise.
func credential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("pgnode: running as root and no postgres user: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

func chownDir(dir string, cred *syscall.Credential) error {
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	if cred == nil {
		return nil
	}
	return os.Chown(dir, int(cred.Uid), int(cred.Gid))
}

func freePort() (int, error) { return freeport.Get() }

func tail(b []byte) []byte {
	if len(b) > 2000 {
		return b[len(b)-2000:]
	}
	return b
}
