// Package pgauto runs pg_auto_failover on one machine from the installed
// binaries: a monitor and formations of keeper-managed PostgreSQL nodes, each
// node on its own port and in its own directory under one base directory,
// all on 127.0.0.1 with trust authentication and no TLS. It is for tests and
// for development topologies, not for production deployment.
//
// A formation has one primary and streaming standbys; the monitor promotes
// a standby when the primary is lost. Clients use the multi-host DSN from
// URI, whose target_session_attrs=read-write makes the driver find the
// current primary on every new connection.
//
// Durability: pg_auto_failover uses synchronous replication whenever a
// standby is healthy (synchronous_standby_names = 'ANY n (...)'). With
// Sync, a formation of three or more nodes has number_sync_standbys = 1: a
// commit is acknowledged only once a standby has flushed it, so an
// acknowledged write survives the loss of the primary; losing one of two
// standbys changes nothing; losing every standby makes commits wait (they
// block, they do not fail) until a standby is back. Without Sync a formation
// keeps pg_auto_failover's default: with two nodes, losing the standby moves
// the primary to wait_primary with synchronous replication off, so writes
// continue but would not survive a second failure before the standby is
// back (pg_auto_failover then refuses to promote the lagging standby, so the
// loss needs a person, not silent rollback). After a failover the new
// primary is in wait_primary, asynchronous, until a remaining standby has
// re-attached (about a second here): a second failure inside that window
// could lose the writes acknowledged in it.
//
// Every process the package starts, and all of pg_autoctl's state (its XDG
// config, data and runtime directories), lives under the base directory;
// Stop ends the processes and removes it.
package pgauto

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/globomantics/globomantics/internal/platform/proctree"
)

// ErrNoPrimary is returned by Primary when no node is currently a writable
// primary.
var ErrNoPrimary = errors.New("pgauto: no primary")

// DefaultSettings returns the PostgreSQL settings every node gets unless
// overridden: small memory so that many servers share one machine (the
// values pg_autoctl computes assume one server per machine, e.g. a quarter
// of RAM as shared_buffers), and WAL for logical replication.
func DefaultSettings() map[string]string {
	return map[string]string{
		"shared_buffers":       "16MB",
		"max_connections":      "100",
		"work_mem":             "4MB",
		"maintenance_work_mem": "32MB",
		"effective_cache_size": "256MB",
		"wal_keep_size":        "256MB",
		"max_wal_size":         "256MB",
		"min_wal_size":         "64MB",
		// Shards move between formations by logical replication
		// (globomantics shards move).
		"wal_level": "logical",
	}
}

// Timeouts tune how fast a lost primary is replaced. pg_auto_failover's
// defaults (health checks every 5 s, unhealthy after 20 s, a 30 s wait for
// the old primary to demote itself) are for a network and measured about a
// minute from the loss of a primary's machine to writes on a new primary
// here; DefaultTimeouts are for nodes on one machine.
type Timeouts struct {
	// HealthCheck is the monitor's probe period and connect timeout
	// (pgautofailover.health_check_period, health_check_timeout; two
	// retries HealthCheck apart).
	HealthCheck time.Duration
	// Unhealthy is how long a node's pg_autoctl must have been silent, as
	// well as failing health checks, before failover starts
	// (pgautofailover.node_considered_unhealthy_timeout).
	Unhealthy time.Duration
	// Partition is how long a primary's pg_autoctl that reaches neither the
	// monitor nor a standby waits before demoting its primary (the
	// keeper's timeout.network_partition_timeout).
	Partition time.Duration
	// Demote is how long the monitor waits for an unreachable primary to
	// have demoted itself before promoting a standby
	// (pgautofailover.primary_demote_timeout). It must exceed Partition, so
	// that two primaries never accept writes at once.
	Demote time.Duration
}

// DefaultTimeouts returns the timeouts for nodes on one machine: failover
// starts about 4 s after a primary is lost and a standby is promoted after
// about 6 s more.
func DefaultTimeouts() Timeouts {
	return Timeouts{HealthCheck: time.Second, Unhealthy: 4 * time.Second, Partition: 3 * time.Second, Demote: 6 * time.Second}
}

// PgAutoFailoverTimeouts returns pg_auto_failover's own defaults.
func PgAutoFailoverTimeouts() Timeouts {
	return Timeouts{HealthCheck: 5 * time.Second, Unhealthy: 20 * time.Second, Partition: 20 * time.Second, Demote: 30 * time.Second}
}

func (t Timeouts) validate() error {
	if t.HealthCheck <= 0 || t.Unhealthy <= 0 || t.Partition < time.Second || t.Demote <= t.Partition {
		return fmt.Errorf("pgauto: timeouts %+v: all must be positive, Partition at least 1s and Demote more than Partition", t)
	}
	return nil
}

func (t Timeouts) monitorSettings() map[string]string {
	ms := func(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) }
	return map[string]string{
		"pgautofailover.health_check_period":               ms(t.HealthCheck),
		"pgautofailover.health_check_timeout":              ms(t.HealthCheck),
		"pgautofailover.health_check_max_retries":          "2",
		"pgautofailover.health_check_retry_delay":          ms(t.HealthCheck),
		"pgautofailover.node_considered_unhealthy_timeout": ms(t.Unhealthy),
		"pgautofailover.primary_demote_timeout":            ms(t.Demote),
	}
}

// Options configures Start: a monitor and one formation.
type Options struct {
	// Dir is the base directory, created if missing; every ancestor must be
	// searchable by the postgres user. Stop removes it.
	Dir string
	// Name is the formation's name; "default" when empty.
	Name string
	// Nodes is the number of keeper-managed nodes; 3 when zero.
	Nodes int
	// Sync requires a standby's acknowledgement of every commit (see the
	// package comment); it needs at least 3 nodes.
	Sync bool
	// Detach lets the processes outlive this process (for a command that
	// starts servers and exits); otherwise they are stopped if it dies.
	Detach bool
	// Settings override DefaultSettings for every PostgreSQL server.
	Settings map[string]string
	// Timeouts tune failover; zero means DefaultTimeouts.
	Timeouts Timeouts
	// BinDir holds pg_ctl and postgres; empty finds the newest
	// /usr/lib/postgresql/*/bin with the pgautofailover extension.
	BinDir string
	// Log receives one line per event; nil discards.
	Log *slog.Logger
}

// Start starts a monitor and a formation of o.Nodes nodes, and returns once
// one node is primary and the others secondary (and, with Sync, commits wait
// for a standby). Stopping the formation also stops the monitor. On error
// nothing is left running.
func Start(ctx context.Context, o Options) (*Formation, error) {
	m, err := StartMonitor(ctx, MonitorOptions{Dir: o.Dir, Detach: o.Detach, Settings: o.Settings, Timeouts: o.Timeouts, BinDir: o.BinDir, Log: o.Log})
	if err != nil {
		return nil, err
	}
	f, err := m.StartFormation(ctx, FormationOptions{Name: o.Name, Nodes: o.Nodes, Sync: o.Sync})
	if err != nil {
		_ = m.Stop(context.WithoutCancel(ctx))
		return nil, err
	}
	f.ownsMonitor = true
	return f, nil
}

// MonitorOptions configures StartMonitor.
type MonitorOptions struct {
	// Dir is the base directory of the monitor and its formations, created
	// if missing; every ancestor must be searchable by the postgres user.
	Dir string
	// Detach lets the processes outlive this process.
	Detach bool
	// Settings override DefaultSettings for every PostgreSQL server.
	Settings map[string]string
	// Timeouts tune failover; zero means DefaultTimeouts.
	Timeouts Timeouts
	// BinDir holds pg_ctl and postgres; empty finds the newest
	// /usr/lib/postgresql/*/bin with the pgautofailover extension.
	BinDir string
	// Log receives one line per event; nil discards.
	Log *slog.Logger
	// Host is the address the monitor listens on and is reached at (its
	// pg_autoctl --hostname and --listen); empty means 127.0.0.1.
	Host string
	// TrustNet, a CIDR such as "10.201.7.0/24", is trusted by every server
	// (monitor and nodes) for any user and database and for replication,
	// besides the rules pg_autoctl writes; empty adds nothing.
	TrustNet string
	// Start, if set, starts every pg_autoctl command that creates or runs
	// the server on address addr (a node's or the monitor's Host, when
	// not empty), e.g. in the network namespace holding addr. cmd is
	// prepared (path, arguments, environment, credential); Start must only
	// start it. Other pg_autoctl commands start here.
	Start func(addr string, cmd *exec.Cmd) error
}

// Monitor is a running pg_auto_failover monitor and the formations it
// manages. Its methods are safe for concurrent use.
type Monitor struct {
	r        *runner
	log      *slog.Logger
	detach   bool
	settings map[string]string
	timeouts Timeouts
	user     string
	trustNet string
	node     *node

	mu         sync.Mutex
	formations []*Formation
	saveMu     sync.Mutex // serialises writes of the state file
	// regMu serialises the formations' registrations with the monitor
	// (create formation, the first node's create): formations started at
	// once (devpg starts its main and shard formations together) had the
	// monitor refuse a node's registration now and then.
	regMu sync.Mutex
}

// Node describes one PostgreSQL server run by a pg_autoctl process.
type Node struct {
	Name string `json:"name"`
	Port int    `json:"port"`
	Dir  string `json:"dir"` // PGDATA is Dir/pgdata; pg_autoctl's output is Dir/pg_autoctl.log
	PID  int    `json:"pid"` // the pg_autoctl process, leader of its process group
	// Host is the address the server listens on and is reached at; empty
	// means 127.0.0.1.
	Host string `json:"host,omitempty"`
}

// Addr is the node's address: Host, or 127.0.0.1.
func (n Node) Addr() string {
	if n.Host == "" {
		return "127.0.0.1"
	}
	return n.Host
}

type node struct {
	Node
	keeper *proc
}

func (n *node) pgdata() string  { return filepath.Join(n.Dir, "pgdata") }
func (n *node) logPath() string { return filepath.Join(n.Dir, "pg_autoctl.log") }
func (n *node) info() Node {
	i := n.Node
	if n.keeper != nil {
		i.PID = n.keeper.pid
	}
	return i
}

// StartMonitor creates and runs a pg_auto_failover monitor in o.Dir/monitor
// and returns once it accepts connections. On error nothing is left running.
func StartMonitor(ctx context.Context, o MonitorOptions) (*Monitor, error) {
	if o.Dir == "" {
		return nil, errors.New("pgauto: no base directory")
	}
	r, err := newRunner(o.Dir, o.BinDir)
	if err != nil {
		return nil, err
	}
	r.starter = o.Start
	if _, err := os.Stat(filepath.Join(r.base, stateFile)); err == nil {
		return nil, fmt.Errorf("pgauto: %s already holds a monitor; use Attach", r.base)
	}
	if o.Timeouts == (Timeouts{}) {
		o.Timeouts = DefaultTimeouts()
	}
	if err := o.Timeouts.validate(); err != nil {
		return nil, err
	}
	m := &Monitor{r: r, log: o.Log, detach: o.Detach, settings: DefaultSettings(), timeouts: o.Timeouts, user: dbUser(r), trustNet: o.TrustNet}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	for k, v := range o.Settings {
		m.settings[k] = v
	}
	start := time.Now()
	n := &node{Node: Node{Name: "monitor", Dir: filepath.Join(r.base, "monitor"), Host: o.Host}}
	if n.Port, err = freePort(); err != nil {
		return nil, err
	}
	m.node = n
	fail := func(err error) (*Monitor, error) {
		m.stopNode(context.WithoutCancel(ctx), n, n.keeper)
		return nil, err
	}
	if err := r.mkdir(n.Dir); err != nil {
		return nil, err
	}
	if _, err := r.runOn(ctx, n.Host, "create", "monitor", "--pgdata", n.pgdata(), "--pgport", strconv.Itoa(n.Port),
		"--pgctl", filepath.Join(r.bin, "pg_ctl"), "--auth", "trust", "--no-ssl",
		"--hostname", n.Addr(), "--listen", n.Addr()); err != nil {
		return fail(fmt.Errorf("pgauto: create monitor: %w", err))
	}
	if err := m.appendHBA(n.pgdata()); err != nil {
		return fail(err)
	}
	monSettings := m.timeouts.monitorSettings()
	for k, v := range m.settings {
		monSettings[k] = v
	}
	if err := appendSettings(n.pgdata(), monSettings); err != nil {
		return fail(err)
	}
	if n.keeper, err = r.start(n.Host, n.logPath(), m.detach, "run", "--pgdata", n.pgdata()); err != nil {
		return fail(err)
	}
	if err := m.waitConnect(ctx); err != nil {
		return fail(err)
	}
	if err := m.save(); err != nil {
		return fail(err)
	}
	m.log.Info("pgauto: monitor running", "port", n.Port, "dir", n.Dir, "took", time.Since(start).Round(time.Millisecond))
	return m, nil
}

func dbUser(r *runner) string {
	if r.cred != nil {
		return "postgres"
	}
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return "postgres"
}

func (m *Monitor) waitConnect(ctx context.Context) error {
	return poll(ctx, 2*time.Minute, func(ctx context.Context) (bool, error) {
		if !m.node.keeper.alive() {
			return false, fmt.Errorf("pgauto: monitor exited: %s", tailFile(m.node.logPath(), 10))
		}
		c, err := pgx.Connect(ctx, m.URI())
		if err != nil {
			return false, nil
		}
		defer c.Close(ctx)
		_, err = c.Exec(ctx, "SELECT 1 FROM pgautofailover.formation LIMIT 1")
		return err == nil, nil
	})
}

// URI is the monitor's connection string.
func (m *Monitor) URI() string {
	return fmt.Sprintf("postgres://autoctl_node@%s:%d/pg_auto_failover?sslmode=disable", m.node.Addr(), m.node.Port)
}

// Dir is the base directory.
func (m *Monitor) Dir() string { return m.r.base }

// Node describes the monitor's own PostgreSQL server and pg_autoctl process.
func (m *Monitor) Node() Node { return m.node.info() }

// Formations lists the formations started or attached, in start order.
func (m *Monitor) Formations() []*Formation {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]*Formation(nil), m.formations...)
}

// Formation returns the formation called name, or nil.
func (m *Monitor) Formation(name string) *Formation {
	for _, f := range m.Formations() {
		if f.name == name {
			return f
		}
	}
	return nil
}

// Running reports whether the monitor's pg_autoctl process is alive.
func (m *Monitor) Running() bool { return m.node.keeper.alive() }

// FormationOptions configures StartFormation.
type FormationOptions struct {
	// Name is the formation's name; "default" when empty.
	Name string
	// Nodes is the number of keeper-managed nodes; 3 when zero.
	Nodes int
	// Sync requires a standby's acknowledgement of every commit even when
	// only one standby is left (number_sync_standbys = 1); it needs at
	// least 3 nodes.
	Sync bool
	// Hosts are the nodes' addresses (see Node.Host), by index; a missing
	// or empty one means 127.0.0.1.
	Hosts []string
}

// Formation is a primary and its standbys under the monitor's automatic
// failover. Its methods are safe for concurrent use.
type Formation struct {
	m           *Monitor
	name        string
	sync        bool
	nodes       []*node // fixed at creation; mu guards their Port and keeper
	ownsMonitor bool
	mu          sync.Mutex
}

// StartFormation creates the formation on the monitor and starts its nodes:
// the first becomes primary and the others standbys cloned from it. It
// returns once every node is in its steady state. On error the formation's
// nodes are stopped.
func (m *Monitor) StartFormation(ctx context.Context, o FormationOptions) (*Formation, error) {
	if o.Name == "" {
		o.Name = "default"
	}
	if o.Nodes == 0 {
		o.Nodes = 3
	}
	if o.Nodes < 1 {
		return nil, fmt.Errorf("pgauto: formation %s: %d nodes", o.Name, o.Nodes)
	}
	if o.Sync && o.Nodes < 3 {
		return nil, fmt.Errorf("pgauto: formation %s: Sync needs at least 3 nodes (number_sync_standbys = 1 needs 2 standbys), have %d", o.Name, o.Nodes)
	}
	if m.Formation(o.Name) != nil {
		return nil, fmt.Errorf("pgauto: formation %s already started", o.Name)
	}
	if _, deadline := ctx.Deadline(); !deadline {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 3*time.Minute)
		defer cancel()
	}
	start := time.Now()
	f := &Formation{m: m, name: o.Name, sync: o.Sync}
	for i := range o.Nodes {
		f.nodes = append(f.nodes, &node{Node: Node{
			Name: fmt.Sprintf("%s-%d", o.Name, i+1),
			Dir:  filepath.Join(m.r.base, o.Name, fmt.Sprintf("node%d", i+1)),
		}})
		if i < len(o.Hosts) {
			f.nodes[i].Host = o.Hosts[i]
		}
	}
	// Listed (and saved) from the start, so that a process that dies while
	// starting leaves a record of what to stop.
	m.mu.Lock()
	m.formations = append(m.formations, f)
	m.mu.Unlock()
	fail := func(err error) (*Formation, error) {
		f.stopNodes(context.WithoutCancel(ctx))
		m.forget(f)
		_ = os.RemoveAll(filepath.Join(m.r.base, o.Name))
		_ = m.save()
		return nil, fmt.Errorf("pgauto: formation %s: %w", o.Name, err)
	}
	m.regMu.Lock()
	if o.Name != "default" {
		if _, err := m.r.run(ctx, "create", "formation", "--pgdata", m.node.pgdata(), "--formation", o.Name,
			"--kind", "pgsql", "--dbname", "postgres"); err != nil {
			m.regMu.Unlock()
			return fail(err)
		}
	}
	// The first node is created and configured before it runs, so that the
	// standbys, cloned from it with pg_basebackup, inherit its settings.
	first := f.nodes[0]
	err := f.createNode(ctx, first, false)
	m.regMu.Unlock()
	if err != nil {
		return fail(err)
	}
	if err := appendSettings(first.pgdata(), m.settings); err != nil {
		return fail(err)
	}
	if err := m.appendHBA(first.pgdata()); err != nil { // the standbys copy it
		return fail(err)
	}
	if err := f.setPartitionTimeout(ctx, first, false); err != nil {
		return fail(err)
	}
	k, err := m.r.start(first.Host, first.logPath(), m.detach, "run", "--pgdata", first.pgdata())
	if err != nil {
		return fail(err)
	}
	f.setKeeper(first, k)
	if err := m.save(); err != nil {
		return fail(err)
	}
	if err := f.waitStates(ctx, map[string]int{"single": 1}, 1); err != nil {
		return fail(err)
	}
	for _, n := range f.nodes[1:] {
		if err := f.createNode(ctx, n, true); err != nil {
			return fail(err)
		}
	}
	if err := m.save(); err != nil {
		return fail(err)
	}
	if err := f.WaitHealthy(ctx); err != nil {
		return fail(err)
	}
	for _, n := range f.nodes[1:] {
		if err := f.setPartitionTimeout(ctx, n, true); err != nil {
			return fail(err)
		}
	}
	if o.Sync {
		if err := f.setNumberSyncStandbys(ctx, 1); err != nil {
			return fail(err)
		}
		if err := f.waitSyncStandbys(ctx); err != nil {
			return fail(err)
		}
	}
	m.log.Info("pgauto: formation ready", "formation", o.Name, "nodes", o.Nodes, "sync", o.Sync,
		"took", time.Since(start).Round(time.Millisecond))
	return f, nil
}

// createNode registers n with the monitor. With run, pg_autoctl keeps
// running it (a standby is cloned, then follows); without, it returns after
// creating the node, stopped.
func (f *Formation) createNode(ctx context.Context, n *node, run bool) error {
	r := f.m.r
	if err := r.mkdir(n.Dir); err != nil {
		return err
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	f.mu.Lock()
	n.Port = port
	f.mu.Unlock()
	args := []string{"create", "postgres", "--pgdata", n.pgdata(), "--pgport", strconv.Itoa(port),
		"--pgctl", filepath.Join(r.bin, "pg_ctl"), "--listen", n.Addr(), "--hostname", n.Addr(),
		"--auth", "trust", "--no-ssl", "--name", n.Name, "--formation", f.name, "--monitor", f.m.URI()}
	if !run {
		if _, err := r.runOn(ctx, n.Host, args...); err != nil {
			return fmt.Errorf("create node %s: %w", n.Name, err)
		}
		return nil
	}
	k, err := r.start(n.Host, n.logPath(), f.m.detach, append(args, "--run")...)
	if err != nil {
		return err
	}
	f.setKeeper(n, k)
	return nil
}

func (f *Formation) setKeeper(n *node, k *proc) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n.keeper = k
}

func (f *Formation) keeper(n *node) *proc {
	f.mu.Lock()
	defer f.mu.Unlock()
	return n.keeper
}

// setPartitionTimeout sets the keeper's network partition timeout in n's
// pg_autoctl configuration, and with reload signals the running pg_autoctl
// to read it.
func (f *Formation) setPartitionTimeout(ctx context.Context, n *node, reload bool) error {
	secs := strconv.Itoa(int(f.m.timeouts.Partition.Round(time.Second).Seconds()))
	if _, err := f.m.r.run(ctx, "config", "set", "--pgdata", n.pgdata(), "timeout.network_partition_timeout", secs); err != nil {
		return fmt.Errorf("node %s: %w", n.Name, err)
	}
	if reload {
		if _, err := f.m.r.run(ctx, "reload", "--pgdata", n.pgdata()); err != nil {
			return fmt.Errorf("node %s: %w", n.Name, err)
		}
	}
	return nil
}

// appendHBA lets the monitor's TrustNet in to the server on pgdata (any
// user and database, and replication, with trust), after pg_autoctl's
// rules.
func (m *Monitor) appendHBA(pgdata string) error {
	if m.trustNet == "" {
		return nil
	}
	fh, err := os.OpenFile(filepath.Join(pgdata, "pg_hba.conf"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("pgauto: pg_hba: %w", err)
	}
	_, err = fmt.Fprintf(fh, "\n# Added by pgauto (TrustNet)\nhost all all %s trust\nhost replication all %s trust\n", m.trustNet, m.trustNet)
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("pgauto: pg_hba: %w", err)
	}
	return nil
}

// appendSettings appends settings to postgresql.conf, after the include of
// pg_autoctl's computed settings, so that they win.
func appendSettings(pgdata string, settings map[string]string) error {
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString("\n# Settings by pgauto (override pg_autoctl's computed tuning)\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "%s = '%s'\n", k, strings.ReplaceAll(settings[k], "'", "''"))
	}
	fh, err := os.OpenFile(filepath.Join(pgdata, "postgresql.conf"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("pgauto: settings: %w", err)
	}
	if _, err := fh.WriteString(b.String()); err != nil {
		fh.Close()
		return fmt.Errorf("pgauto: settings: %w", err)
	}
	if err := fh.Close(); err != nil {
		return fmt.Errorf("pgauto: settings: %w", err)
	}
	return nil
}

// Name is the formation's name.
func (f *Formation) Name() string { return f.name }

// Sync reports whether the formation was started with Sync.
func (f *Formation) Sync() bool { return f.sync }

// Monitor is the monitor that manages the formation.
func (f *Formation) Monitor() *Monitor { return f.m }

// Nodes describes the formation's nodes; indexes are the ones KillNode,
// Primary and NodeState.Index use.
func (f *Formation) Nodes() []Node {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]Node, len(f.nodes))
	for i, n := range f.nodes {
		out[i] = n.info()
	}
	return out
}

// URI is the multi-host DSN for database db that connects to whichever
// node is the read-write primary.
func (f *Formation) URI(db string) string {
	nodes := f.Nodes()
	hosts := make([]string, len(nodes))
	for i, n := range nodes {
		hosts[i] = fmt.Sprintf("%s:%d", n.Addr(), n.Port)
	}
	return fmt.Sprintf("postgres://%s@%s/%s?sslmode=disable&target_session_attrs=read-write",
		f.m.user, strings.Join(hosts, ","), db)
}

// NodeURI is the DSN for database db on node i alone, primary or standby.
func (f *Formation) NodeURI(i int, db string) string {
	n := f.Nodes()[i]
	return fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=disable", f.m.user, n.Addr(), n.Port, db)
}

// NodeState is one node as the monitor sees it (pg_autoctl show state).
type NodeState struct {
	Index    int    `json:"-"` // into Nodes(); -1 for a node this Formation did not start
	NodeID   int    `json:"node_id"`
	Name     string `json:"nodename"`
	Host     string `json:"nodehost"`
	Port     int    `json:"nodeport"`
	Current  string `json:"current_group_state"`
	Assigned string `json:"assigned_group_state"`
	Health   int    `json:"health"` // 1 healthy, 0 unhealthy, -1 unknown
	LSN      string `json:"reported_lsn"`
	TLI      int    `json:"reported_tli"`
}

// State asks the monitor for the state of every node of the formation.
func (f *Formation) State(ctx context.Context) ([]NodeState, error) {
	out, err := f.m.r.run(ctx, "show", "state", "--pgdata", f.m.node.pgdata(), "--formation", f.name, "--json")
	if err != nil {
		return nil, fmt.Errorf("pgauto: state of %s: %w", f.name, err)
	}
	var states []NodeState
	if s := strings.TrimSpace(string(out)); s != "" {
		if err := json.Unmarshal([]byte(s), &states); err != nil {
			return nil, fmt.Errorf("pgauto: state of %s: %w", f.name, err)
		}
	}
	nodes := f.Nodes()
	for i := range states {
		states[i].Index = -1
		for j, n := range nodes {
			if n.Port == states[i].Port {
				states[i].Index = j
			}
		}
	}
	return states, nil
}

// writable are the states in which a node accepts writes.
func writable(s NodeState) bool {
	return s.Current == s.Assigned && (s.Current == "primary" || s.Current == "wait_primary" || s.Current == "single")
}

// Primary returns the index of the node the monitor reports as the
// writable primary, or ErrNoPrimary.
func (f *Formation) Primary(ctx context.Context) (int, error) {
	states, err := f.State(ctx)
	if err != nil {
		return -1, err
	}
	for _, s := range states {
		if writable(s) && s.Index >= 0 {
			return s.Index, nil
		}
	}
	return -1, ErrNoPrimary
}

// WaitPrimary waits until a node other than notNode (-1: any) is the
// writable primary and returns its index.
func (f *Formation) WaitPrimary(ctx context.Context, notNode int) (int, error) {
	idx := -1
	err := poll(ctx, 0, func(ctx context.Context) (bool, error) {
		i, err := f.Primary(ctx)
		if errors.Is(err, ErrNoPrimary) || err == nil && i == notNode {
			return false, nil
		}
		idx = i
		return err == nil, err
	})
	if err != nil {
		return -1, fmt.Errorf("pgauto: wait for a primary of %s: %w", f.name, err)
	}
	return idx, nil
}

// WaitHealthy waits until one node is primary and every other is
// secondary, each in the state the monitor assigned it.
func (f *Formation) WaitHealthy(ctx context.Context) error {
	if len(f.nodes) == 1 {
		return f.waitStates(ctx, map[string]int{"single": 1}, 1)
	}
	return f.waitStates(ctx, map[string]int{"primary": 1, "secondary": len(f.nodes) - 1}, len(f.nodes))
}

// waitStates waits until the monitor reports total nodes, each settled
// (current = assigned), in the states counted by want.
func (f *Formation) waitStates(ctx context.Context, want map[string]int, total int) error {
	var last []NodeState
	err := poll(ctx, 0, func(ctx context.Context) (bool, error) {
		for _, n := range f.nodes {
			if k := f.keeper(n); k != nil && !k.alive() {
				return false, fmt.Errorf("pg_autoctl of node %s exited: %s", n.Name, tailFile(n.logPath(), 10))
			}
		}
		states, err := f.State(ctx)
		if err != nil {
			return false, nil // the monitor may be busy; try again
		}
		last = states
		if len(states) != total {
			return false, nil
		}
		got := map[string]int{}
		for _, s := range states {
			if s.Current != s.Assigned {
				return false, nil
			}
			got[s.Current]++
		}
		for k, v := range want {
			if got[k] != v {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("wait for states %v: %w (last: %s)", want, err, summary(last))
	}
	return nil
}

func summary(states []NodeState) string {
	var parts []string
	for _, s := range states {
		parts = append(parts, fmt.Sprintf("%s=%s/%s", s.Name, s.Current, s.Assigned))
	}
	return strings.Join(parts, " ")
}

// setNumberSyncStandbys sets the formation's number_sync_standbys on the
// monitor. (pg_autoctl set formation number-sync-standbys hides the
// monitor's reason for a refusal; the SQL function reports it.)
func (f *Formation) setNumberSyncStandbys(ctx context.Context, n int) error {
	c, err := pgx.Connect(ctx, f.m.URI())
	if err != nil {
		return fmt.Errorf("connect to monitor: %w", err)
	}
	defer c.Close(ctx)
	var cur int
	if err := c.QueryRow(ctx, "SELECT number_sync_standbys FROM pgautofailover.formation WHERE formationid = $1", f.name).Scan(&cur); err != nil {
		return fmt.Errorf("number_sync_standbys: %w", err)
	}
	if cur == n {
		return nil
	}
	if _, err := c.Exec(ctx, "SELECT pgautofailover.set_formation_number_sync_standbys($1, $2)", f.name, n); err != nil {
		return fmt.Errorf("set number_sync_standbys %d: %w", n, err)
	}
	return nil
}

// waitSyncStandbys waits until the formation is healthy and its primary's
// synchronous_standby_names names standbys.
func (f *Formation) waitSyncStandbys(ctx context.Context) error {
	return poll(ctx, 0, func(ctx context.Context) (bool, error) {
		if err := f.WaitHealthy(ctx); err != nil {
			return false, err
		}
		p, err := f.Primary(ctx)
		if err != nil {
			return false, nil
		}
		c, err := pgx.Connect(ctx, f.NodeURI(p, "postgres"))
		if err != nil {
			return false, nil
		}
		defer c.Close(ctx)
		var names string
		if err := c.QueryRow(ctx, "SHOW synchronous_standby_names").Scan(&names); err != nil {
			return false, nil
		}
		return strings.HasPrefix(names, "ANY 1 ") && strings.Count(names, ",") >= 1, nil
	})
}

// KillNode SIGKILLs node i's pg_autoctl process group and its PostgreSQL
// server with all its processes, as if its machine was lost, and returns
// once they are gone. The monitor is not told.
func (f *Formation) KillNode(i int) error {
	if i < 0 || i >= len(f.nodes) {
		return fmt.Errorf("pgauto: no node %d in %s", i, f.name)
	}
	n := f.nodes[i]
	k := f.keeper(n)
	if k == nil {
		return fmt.Errorf("pgauto: node %s never ran", n.Name)
	}
	pm := postmaster(n.pgdata())
	kids := proctree.Children(pm)
	if k.alive() {
		_ = syscall.Kill(-k.pid, syscall.SIGKILL)
	}
	if pm != 0 {
		_ = syscall.Kill(pm, syscall.SIGKILL)
	}
	for _, k := range kids {
		_ = syscall.Kill(k, syscall.SIGKILL)
	}
	if !k.waitGone(5 * time.Second) {
		return fmt.Errorf("pgauto: node %s: pg_autoctl %d survived SIGKILL", n.Name, k.pid)
	}
	pmProc := &proc{pid: pm}
	if !pmProc.waitGone(5 * time.Second) {
		return fmt.Errorf("pgauto: node %s: postgres %d survived SIGKILL", n.Name, pm)
	}
	f.m.log.Info("pgauto: node killed", "formation", f.name, "node", n.Name, "keeper", k.pid, "postmaster", pm)
	return nil
}

// CreateDatabase creates database name on the primary and returns once
// every running node has it, so that URI(name) works at once (pgx stops
// trying the hosts of a multi-host DSN at the first "database does not
// exist", which a standby says until it has replayed the creation). An
// existing database is not an error.
func (f *Formation) CreateDatabase(ctx context.Context, name string) error {
	c, err := pgx.Connect(ctx, f.URI("postgres"))
	if err != nil {
		return fmt.Errorf("pgauto: create database %s on %s: %w", name, f.name, err)
	}
	defer c.Close(ctx)
	_, err = c.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	var pe *pgconn.PgError
	if err != nil && !(errors.As(err, &pe) && pe.Code == "42P04") { // 42P04: duplicate_database
		return fmt.Errorf("pgauto: create database %s on %s: %w", name, f.name, err)
	}
	for i, n := range f.nodes {
		k := f.keeper(n)
		if k == nil || !k.alive() {
			continue
		}
		err := poll(ctx, 30*time.Second, func(ctx context.Context) (bool, error) {
			var exists bool
			c, err := pgx.Connect(ctx, f.NodeURI(i, "postgres"))
			if err != nil {
				return false, nil // restarting, or gone: checked again below
			}
			defer c.Close(ctx)
			err = c.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists)
			return err == nil && exists || !k.alive(), nil
		})
		if err != nil {
			return fmt.Errorf("pgauto: create database %s on %s: node %s: %w", name, f.name, n.Name, err)
		}
	}
	return nil
}

// Stop stops the formation's nodes and removes their directories (the
// monitor keeps listing them); a formation from Start also stops its
// monitor and removes the base directory. It returns an error if a process
// survived.
func (f *Formation) Stop(ctx context.Context) error {
	if f.ownsMonitor {
		return f.m.Stop(ctx)
	}
	err := f.stopNodes(ctx)
	f.m.forget(f)
	if rerr := os.RemoveAll(filepath.Join(f.m.r.base, f.name)); rerr != nil && err == nil {
		err = fmt.Errorf("pgauto: %w", rerr)
	}
	if serr := f.m.save(); serr != nil && err == nil {
		err = serr
	}
	return err
}

// forget removes f from the monitor's list.
func (m *Monitor) forget(f *Formation) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, g := range m.formations {
		if g == f {
			m.formations = append(m.formations[:i], m.formations[i+1:]...)
			return
		}
	}
}

func (f *Formation) stopNodes(ctx context.Context) error {
	var wg sync.WaitGroup
	errc := make(chan error, len(f.nodes))
	for _, n := range f.nodes {
		k := f.keeper(n)
		wg.Go(func() { errc <- f.m.stopNode(ctx, n, k) })
	}
	wg.Wait()
	close(errc)
	var all []error
	for err := range errc {
		all = append(all, err)
	}
	return errors.Join(all...)
}

// Stop stops every formation's nodes, then the monitor, and removes the
// base directory. It returns an error if a process survived.
func (m *Monitor) Stop(ctx context.Context) error {
	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		all []error
	)
	for _, f := range m.Formations() {
		wg.Go(func() {
			err := f.stopNodes(ctx)
			mu.Lock()
			all = append(all, err)
			mu.Unlock()
		})
	}
	wg.Wait()
	all = append(all, m.stopNode(ctx, m.node, m.node.keeper))
	if err := errors.Join(all...); err != nil {
		return err // keep the directory (logs) when something survived
	}
	if err := os.RemoveAll(m.r.base); err != nil {
		return fmt.Errorf("pgauto: %w", err)
	}
	m.log.Info("pgauto: stopped", "dir", m.r.base)
	return nil
}

// stopNode asks pg_autoctl (k, nil if it never ran) to stop the node with
// an immediate shutdown of PostgreSQL, escalating to SIGKILL; it returns an
// error if a process of the node survived.
func (m *Monitor) stopNode(ctx context.Context, n *node, k *proc) error {
	start := time.Now()
	defer func() {
		m.log.Debug("pgauto: node stopped", "node", n.Name, "took", time.Since(start).Round(time.Millisecond))
	}()
	if k.alive() {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := m.r.run(sctx, "stop", "--pgdata", n.pgdata(), "--immediate")
		cancel()
		if err != nil {
			m.log.Debug("pgauto: pg_autoctl stop", "node", n.Name, "err", err)
		}
		if !k.waitGone(15 * time.Second) {
			m.log.Warn("pgauto: pg_autoctl did not stop; killing", "node", n.Name, "pid", k.pid)
			_ = syscall.Kill(-k.pid, syscall.SIGKILL)
			k.waitGone(5 * time.Second)
		}
	}
	if pm := postmaster(n.pgdata()); pm != 0 {
		m.log.Warn("pgauto: postgres left running; killing", "node", n.Name, "pid", pm)
		killServer(n.pgdata())
		(&proc{pid: pm}).waitGone(5 * time.Second)
	}
	var survivors []string
	if k.alive() {
		survivors = append(survivors, fmt.Sprintf("pg_autoctl %d", k.pid))
	}
	if pm := postmaster(n.pgdata()); pm != 0 {
		survivors = append(survivors, fmt.Sprintf("postgres %d", pm))
	}
	if len(survivors) > 0 {
		return fmt.Errorf("pgauto: node %s: still running: %s", n.Name, strings.Join(survivors, ", "))
	}
	return nil
}

// poll calls fn until it reports done or an error, or ctx ends; a positive
// timeout bounds the wait further.
func poll(ctx context.Context, timeout time.Duration, fn func(ctx context.Context) (bool, error)) error {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	wait := 20 * time.Millisecond
	for {
		done, err := fn(ctx)
		if err != nil {
			return err
		}
		if done {
			return nil
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		wait = min(2*wait, 250*time.Millisecond)
	}
}

// The base directory's description, read by Attach.
const stateFile = "pgauto.json"

type savedFormation struct {
	Name  string `json:"name"`
	Sync  bool   `json:"sync"`
	Nodes []Node `json:"nodes"`
}

type savedState struct {
	Monitor    Node              `json:"monitor"`
	User       string            `json:"user"`
	Settings   map[string]string `json:"settings"`
	Timeouts   Timeouts          `json:"timeouts"`
	BinDir     string            `json:"bin_dir"`
	Formations []savedFormation  `json:"formations"`
}

func (m *Monitor) save() error {
	m.saveMu.Lock()
	defer m.saveMu.Unlock()
	s := savedState{Monitor: m.node.info(), User: m.user, Settings: m.settings, Timeouts: m.timeouts, BinDir: m.r.bin}
	for _, f := range m.Formations() {
		s.Formations = append(s.Formations, savedFormation{Name: f.name, Sync: f.sync, Nodes: f.Nodes()})
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("pgauto: save: %w", err)
	}
	tmp := filepath.Join(m.r.base, stateFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("pgauto: save: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(m.r.base, stateFile)); err != nil {
		return fmt.Errorf("pgauto: save: %w", err)
	}
	return nil
}

// Attach returns the monitor and formations that a Detach start left
// running in dir (possibly from another process), so that they can be
// inspected and stopped. It does not check that they still run.
func Attach(ctx context.Context, dir string, log *slog.Logger) (*Monitor, error) {
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		return nil, fmt.Errorf("pgauto: attach: %w", err)
	}
	var s savedState
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("pgauto: attach %s: %w", dir, err)
	}
	r, err := newRunner(dir, s.BinDir)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Monitor{r: r, log: log, detach: true, settings: s.Settings, timeouts: s.Timeouts, user: s.User,
		node: &node{Node: s.Monitor, keeper: &proc{pid: s.Monitor.PID}}}
	for _, sf := range s.Formations {
		f := &Formation{m: m, name: sf.Name, sync: sf.Sync}
		for _, n := range sf.Nodes {
			f.nodes = append(f.nodes, &node{Node: n, keeper: &proc{pid: n.PID}})
		}
		m.formations = append(m.formations, f)
	}
	return m, ctx.Err()
}
