package sqldb

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/globomantics/globomantics/internal/platform/consistency"
	"github.com/globomantics/globomantics/internal/platform/errs"
)

// Options configures a PostgreSQL cluster opened by OpenWith. The zero value
// is ready to use.
type Options struct {
	// Source names the cluster in consistency tokens; default: the
	// database name of the DSN.
	Source string
	// Replicas are DSNs of further nodes (usually replicas), in addition to
	// the hosts the main DSN lists. Roles are discovered, not configured.
	Replicas []string
	// MaxLag is how far behind the primary a replica may be and stay in
	// rotation (default 1 s). Keep it at least twice ProbeInterval.
	MaxLag time.Duration
	// ProbeInterval is how often every node is probed (default 250 ms).
	ProbeInterval time.Duration
	// ProbeTimeout bounds one probe (default 1 s); a node that does not
	// answer in time is down.
	ProbeTimeout time.Duration
	// RetryAfter is the retry hint on Unavailable errors when no primary
	// answers (default 1 s).
	RetryAfter time.Duration
	// MaxConns bounds the connections of each node's pool (default 16).
	MaxConns int
	// Log receives one line per node state change; nil discards.
	Log *slog.Logger
	// Now is the clock lag is measured with; nil is time.Now.
	Now func() time.Time
	// Registerer receives the database's metrics (observe.go); nil: none.
	// Applies to SQLite too.
	Registerer prometheus.Registerer
	// TracerProvider makes a span per transaction; nil: none.
	TracerProvider trace.TracerProvider
	// DBName is the db_name label of the metrics (the service); default
	// Source.
	DBName string
}

func (o *Options) defaults() {
	if o.MaxLag <= 0 {
		o.MaxLag = time.Second
	}
	if o.ProbeInterval <= 0 {
		o.ProbeInterval = 250 * time.Millisecond
	}
	if o.ProbeTimeout <= 0 {
		o.ProbeTimeout = time.Second
	}
	if o.RetryAfter <= 0 {
		o.RetryAfter = time.Second
	}
	if o.MaxConns <= 0 {
		o.MaxConns = 16
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Role is what a node is in replication, as its last probe found.
type Role string

// The roles.
const (
	RolePrimary Role = "primary"
	RoleReplica Role = "replica"
	RoleUnknown Role = "unknown" // never answered a probe
)

// State says whether a node serves traffic.
type State string

// The states.
const (
	// StateInRotation: the primary, or a replica within the lag bound.
	StateInRotation State = "in-rotation"
	// StateLagging: a replica further behind than the bound; it serves no
	// reads until it catches up.
	StateLagging State = "lagging"
	// StateDown: the last probe or query failed on a connection error; the
	// node is probed again with backoff.
	StateDown State = "down"
)

// NodeStatus is one node as Status reports it.
type NodeStatus struct {
	Addr  string `json:"addr"` // host:port, never credentials
	Role  Role   `json:"role"`
	State State  `json:"state"`
	// LSN is the node's position: replayed (replica) or flushed (primary).
	LSN        string  `json:"lsn"`
	LagBytes   uint64  `json:"lag_bytes"`
	LagSeconds float64 `json:"lag_seconds"`
	// ReplayAgeSeconds is, on a replica, how long ago (by its own clock) the
	// last replayed transaction committed; it grows on an idle primary
	// without any lag, so it is shown, not used for routing.
	ReplayAgeSeconds *float64  `json:"replay_age_seconds,omitempty"`
	Reads            int64     `json:"reads"`
	LastError        string    `json:"last_error,omitempty"`
	Since            time.Time `json:"since"` // when State last changed
}

// Status is a snapshot of the cluster behind a DB, safe to serve as JSON.
type Status struct {
	Name       string       `json:"name"`
	Source     string       `json:"source"`
	Dialect    Dialect      `json:"dialect"`
	Primary    string       `json:"primary,omitempty"` // addr of the current primary; empty when none
	MaxLagSecs float64      `json:"max_lag_seconds"`
	Nodes      []NodeStatus `json:"nodes"`
}

// errNoPrimary is the cause of writes refused while no primary answers.
var errNoPrimary = errors.New("no primary reachable")

// errPrimaryLost cancels writes in flight on a primary that stopped being
// one (it failed its probes, or another node took over).
var errPrimaryLost = errors.New("primary lost while the write was in flight")

// epoch lasts as long as one node is the primary.
type epoch struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
}

func newEpoch() *epoch {
	ctx, cancel := context.WithCancelCause(context.Background())
	return &epoch{ctx, cancel}
}

// nodeKey is where a primary-pool connection remembers its node.
const nodeKey = "globomantics.sqldb.node"

type cluster struct {
	name, source string
	opts         Options
	log          *slog.Logger
	nodes        []*node
	primaryPool  *sql.DB
	primaryRead  *reader // reads on the primary pool
	view         atomic.Pointer[view]
	epoch        atomic.Pointer[epoch]
	cancel       context.CancelFunc
	wg           sync.WaitGroup
	obs          *observer // nil: not observed (observe.go)

	mu   sync.Mutex // guards the node fields marked so, hist, and view changes
	hist []sample   // the primary's flush LSN, each the first time it was seen
}

type sample struct {
	lsn uint64
	at  time.Time
}

// view is an immutable routing snapshot, replaced after every probe.
type view struct {
	primary  *node
	replicas []replicaView // in rotation only
}

type replicaView struct {
	n   *node
	lsn uint64 // replayed, as of the last probe
	lag time.Duration
}

type node struct {
	addr  string
	cfg   *pgx.ConnConfig
	pool  *sql.DB
	rd    *reader
	reads atomic.Int64
	kick  chan struct{}

	// guarded by cluster.mu
	role      Role
	state     State
	lsn       uint64
	replayAge *float64
	lagBytes  uint64
	lag       time.Duration
	lastErr   string
	failures  int
	since     time.Time
}

// openCluster parses dsn (one or several hosts) and opts.Replicas, opens one
// pool per node and a pool that follows the primary, and probes every node
// once before returning; it fails when no node answers.
func openCluster(ctx context.Context, dsn string, opts Options) (*DB, error) {
	opts.defaults()
	base, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("open postgres: %w", err)
	}
	cfgs := splitHosts(base)
	for _, r := range opts.Replicas {
		rc, err := pgx.ParseConfig(r)
		if err != nil {
			return nil, fmt.Errorf("open postgres: replica: %w", err)
		}
		cfgs = append(cfgs, splitHosts(rc)...)
	}
	c := &cluster{name: "postgres", source: opts.Source, opts: opts, log: opts.Log}
	if c.source == "" {
		c.source = base.Database
	}
	seen := map[string]bool{}
	for _, cfg := range cfgs {
		addr := net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port)))
		if seen[addr] {
			continue
		}
		seen[addr] = true
		n := &node{addr: addr, cfg: cfg, role: RoleUnknown, state: StateDown, kick: make(chan struct{}, 1), since: opts.Now()}
		n.pool = stdlib.OpenDB(*cfg)
		n.pool.SetMaxOpenConns(opts.MaxConns)
		n.pool.SetMaxIdleConns(opts.MaxConns)
		n.rd = &reader{c: c, n: n, pool: n.pool}
		c.nodes = append(c.nodes, n)
	}
	pcfg := base.Copy()
	pcfg.Fallbacks = nil
	pcfg.ValidateConnect = pgconn.ValidateConnectTargetSessionAttrsReadWrite
	if pcfg.ConnectTimeout == 0 {
		pcfg.ConnectTimeout = 2 * time.Second
	}
	c.primaryPool = stdlib.OpenDB(*pcfg,
		stdlib.OptionBeforeConnect(c.beforeConnect),
		stdlib.OptionAfterConnect(c.afterConnect),
		stdlib.OptionResetSession(c.resetSession))
	c.primaryPool.SetMaxOpenConns(opts.MaxConns)
	c.primaryPool.SetMaxIdleConns(opts.MaxConns)
	c.primaryRead = &reader{c: c, pool: c.primaryPool}
	c.view.Store(&view{})
	c.epoch.Store(newEpoch())

	// First discovery, all nodes at once.
	conns := make([]*pgx.Conn, len(c.nodes))
	var wg sync.WaitGroup
	results := make([]probeResult, len(c.nodes))
	errsOf := make([]error, len(c.nodes))
	for i, n := range c.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errsOf[i] = c.probe(ctx, n, &conns[i])
		}()
	}
	wg.Wait()
	answered := 0
	for i, n := range c.nodes {
		c.update(n, results[i], errsOf[i])
		if errsOf[i] == nil {
			answered++
		}
	}
	if answered == 0 {
		for _, conn := range conns {
			if conn != nil {
				conn.Close(context.Background())
			}
		}
		c.close()
		return nil, fmt.Errorf("open postgres: no node answered: %w", errors.Join(errsOf...))
	}
	pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	c.cancel = cancel
	for i, n := range c.nodes {
		c.wg.Add(1)
		go c.probeLoop(pctx, n, conns[i])
	}
	return (&DB{DB: c.primaryPool, Dialect: Postgres, name: c.name, source: c.source, c: c}).instrument(opts), nil
}

// splitHosts turns a config naming several hosts into one config per host
// (a host's TLS and plain-text attempts stay together as its fallbacks).
func splitHosts(base *pgx.ConnConfig) []*pgx.ConnConfig {
	type hp struct {
		host string
		port uint16
	}
	all := append([]*pgconn.FallbackConfig{{Host: base.Host, Port: base.Port, TLSConfig: base.TLSConfig}}, base.Fallbacks...)
	var order []hp
	groups := map[hp][]*pgconn.FallbackConfig{}
	for _, f := range all {
		k := hp{f.Host, f.Port}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], f)
	}
	out := make([]*pgx.ConnConfig, 0, len(order))
	for _, k := range order {
		g := groups[k]
		cfg := base.Copy()
		cfg.Host, cfg.Port, cfg.TLSConfig = g[0].Host, g[0].Port, g[0].TLSConfig
		cfg.Fallbacks = g[1:]
		cfg.ValidateConnect = nil // roles are discovered by probing
		if cfg.ConnectTimeout == 0 {
			cfg.ConnectTimeout = 2 * time.Second
		}
		out = append(out, cfg)
	}
	return out
}

// beforeConnect points a new primary-pool connection at the current primary.
func (c *cluster) beforeConnect(_ context.Context, cfg *pgx.ConnConfig) error {
	p := c.view.Load().primary
	if p == nil {
		return c.noPrimary("sqldb.connect")
	}
	cfg.Host, cfg.Port, cfg.TLSConfig = p.cfg.Host, p.cfg.Port, p.cfg.TLSConfig
	cfg.Fallbacks = p.cfg.Fallbacks
	return nil
}

func (c *cluster) afterConnect(_ context.Context, conn *pgx.Conn) error {
	cfg := conn.Config()
	for _, n := range c.nodes {
		if n.cfg.Host == cfg.Host && n.cfg.Port == cfg.Port {
			conn.PgConn().CustomData()[nodeKey] = n
			return nil
		}
	}
	_ = conn.Close(context.Background()) // stdlib does not close it on our error
	return c.noPrimary("sqldb.connect")
}

// resetSession drops a pooled connection to a node that is no longer the
// primary, so that after a failover no write reaches the old one.
func (c *cluster) resetSession(_ context.Context, conn *pgx.Conn) error {
	n, _ := conn.PgConn().CustomData()[nodeKey].(*node)
	if n == nil || n != c.view.Load().primary {
		return driver.ErrBadConn
	}
	return nil
}

type probeResult struct {
	role      Role
	lsn       uint64
	replayAge *float64
}

const probeSQL = `SELECT pg_is_in_recovery(),
	(CASE WHEN pg_is_in_recovery() THEN COALESCE(pg_last_wal_replay_lsn(), '0/0') ELSE pg_current_wal_flush_lsn() END)::text,
	EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())::float8`

// probe asks n for its role and WAL position on the probe connection *conn,
// (re)connecting as needed.
func (c *cluster) probe(ctx context.Context, n *node, conn **pgx.Conn) (probeResult, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.ProbeTimeout)
	defer cancel()
	if *conn == nil || (*conn).IsClosed() {
		cc, err := pgx.ConnectConfig(ctx, n.cfg)
		if err != nil {
			return probeResult{}, err
		}
		*conn = cc
	}
	var (
		inRecovery bool
		lsn        string
		age        *float64
	)
	if err := (*conn).QueryRow(ctx, probeSQL).Scan(&inRecovery, &lsn, &age); err != nil {
		(*conn).Close(context.Background())
		*conn = nil
		return probeResult{}, err
	}
	pos, err := consistency.ParseLSN(lsn)
	if err != nil {
		return probeResult{}, err
	}
	r := probeResult{role: RolePrimary, lsn: pos}
	if inRecovery {
		r.role, r.replayAge = RoleReplica, age
	}
	return r, nil
}

func (c *cluster) probeLoop(ctx context.Context, n *node, conn *pgx.Conn) {
	defer c.wg.Done()
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	t := time.NewTimer(c.opts.ProbeInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.kick:
		case <-t.C:
		}
		r, err := c.probe(ctx, n, &conn)
		if ctx.Err() != nil {
			return
		}
		failures := c.update(n, r, err)
		t.Reset(c.backoff(failures))
	}
}

// backoff is the wait before the next probe of a node that failed the last
// failures probes in a row: the probe interval, doubling up to 5 s.
func (c *cluster) backoff(failures int) time.Duration {
	d := c.opts.ProbeInterval
	for i := 1; i < failures && d < 5*time.Second; i++ {
		d *= 2
	}
	return min(d, max(5*time.Second, c.opts.ProbeInterval))
}

// update records a probe's outcome and publishes a new view; it returns the
// node's count of consecutive failures.
func (c *cluster) update(n *node, r probeResult, err error) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.opts.Now()
	if err != nil {
		n.failures++
		n.lastErr = err.Error()
		c.setState(n, n.role, StateDown, now)
	} else {
		n.failures = 0
		n.lsn, n.replayAge = r.lsn, r.replayAge
		if n.state == StateDown {
			st := StateInRotation
			if r.role == RoleReplica {
				if n.lagBytes, n.lag = c.lagOf(r.lsn, now); n.lag > c.opts.MaxLag {
					st = StateLagging
				}
			}
			c.setState(n, r.role, st, now)
		} else {
			c.setState(n, r.role, n.state, now)
		}
	}
	c.rebuild(now)
	return n.failures
}

// eject marks n down after a query on it failed with a connection error.
func (c *cluster) eject(n *node, err error) {
	c.mu.Lock()
	if n.state != StateDown {
		n.failures++
		n.lastErr = err.Error()
		c.setState(n, n.role, StateDown, c.opts.Now())
		c.rebuild(c.opts.Now())
	}
	c.mu.Unlock()
}

// kickAll asks every node to be probed now (after a write failed on the
// primary with a connection error).
func (c *cluster) kickAll() {
	for _, n := range c.nodes {
		select {
		case n.kick <- struct{}{}:
		default:
		}
	}
}

// setState changes n's role and state, logging one line when either changes.
// c.mu is held.
func (c *cluster) setState(n *node, role Role, st State, now time.Time) {
	if role == n.role && st == n.state {
		return
	}
	attrs := []any{"db", c.source, "node", n.addr, "from", string(n.role) + "/" + string(n.state),
		"to", string(role) + "/" + string(st)}
	if role == RoleReplica {
		attrs = append(attrs, "lag", n.lag, "lag_bytes", n.lagBytes)
	}
	if st == StateDown {
		attrs = append(attrs, "err", n.lastErr)
	}
	if st == StateDown || st == StateLagging {
		c.log.Warn("sqldb: node state", attrs...)
	} else {
		c.log.Info("sqldb: node state", attrs...)
	}
	if st != n.state {
		n.since = now
	}
	n.role, n.state = role, st
}

// rebuild chooses the primary, measures each replica's lag, moves replicas
// in and out of rotation and publishes the view. c.mu is held.
func (c *cluster) rebuild(now time.Time) {
	old := c.view.Load().primary
	var p *node
	if old != nil && old.role == RolePrimary && old.state != StateDown {
		p = old // sticky: a second node claiming to be primary does not win
	} else {
		for _, n := range c.nodes {
			if n.role == RolePrimary && n.state != StateDown {
				p = n
				break
			}
		}
	}
	if p != old {
		e := c.epoch.Swap(newEpoch())
		e.cancel(errPrimaryLost)
	}
	if p != old && p != nil {
		c.hist = c.hist[:0]
		addr := ""
		if old != nil {
			addr = old.addr
		}
		c.log.Info("sqldb: primary", "db", c.source, "node", p.addr, "previous", addr)
	} else if p == nil && old != nil {
		c.log.Warn("sqldb: no primary", "db", c.source, "previous", old.addr)
	}
	if p != nil {
		if len(c.hist) == 0 || p.lsn > c.hist[len(c.hist)-1].lsn {
			if len(c.hist) >= 4096 {
				c.hist = append(c.hist[:0], c.hist[2048:]...)
			}
			c.hist = append(c.hist, sample{p.lsn, now})
		}
	}
	v := &view{primary: p}
	for _, n := range c.nodes {
		if n.role != RoleReplica || n.state == StateDown {
			if n.role == RolePrimary && n.state != StateDown && n != p {
				c.log.Warn("sqldb: second node claims to be primary", "db", c.source, "node", n.addr)
			}
			continue
		}
		if p == nil {
			// No primary to measure against (it is lost, a failover is
			// under way, and no write can happen meanwhile): replicas keep
			// the state they had, so that reads that may go to a replica
			// (the available services' browsing) go on.
			if n.state == StateInRotation {
				v.replicas = append(v.replicas, replicaView{n: n, lsn: n.lsn, lag: n.lag})
			}
			continue
		}
		n.lagBytes, n.lag = c.lagOf(n.lsn, now)
		switch {
		case n.state == StateInRotation && n.lag > c.opts.MaxLag:
			c.setState(n, n.role, StateLagging, now)
		case n.state == StateLagging && n.lag <= c.opts.MaxLag/2:
			c.setState(n, n.role, StateInRotation, now)
		}
		if n.state == StateInRotation {
			v.replicas = append(v.replicas, replicaView{n: n, lsn: n.lsn, lag: n.lag})
		}
	}
	c.view.Store(v)
}

// lagOf measures a replica that has replayed up to lsn against the
// primary's history: no lag at or past the primary's last known position,
// otherwise the time since the primary was first seen past lsn. c.mu is held.
func (c *cluster) lagOf(lsn uint64, now time.Time) (uint64, time.Duration) {
	if len(c.hist) == 0 {
		return 0, 0
	}
	last := c.hist[len(c.hist)-1].lsn
	if lsn >= last {
		return 0, 0
	}
	i := sort.Search(len(c.hist), func(i int) bool { return c.hist[i].lsn > lsn })
	return last - lsn, max(0, now.Sub(c.hist[i].at))
}

// route picks the node a read at level l is sent to.
func (c *cluster) route(ctx context.Context, l consistency.Level) *reader {
	if l == consistency.Primary {
		return c.primaryRead
	}
	v := c.view.Load()
	if len(v.replicas) == 0 {
		return c.primaryRead
	}
	bound := c.opts.MaxLag
	if d, ok := consistency.StalenessFrom(ctx); ok && d < bound {
		bound = d
	}
	var need uint64
	if l == consistency.ReadYourWrites {
		need = consistency.TokenFrom(ctx).Position(c.source)
	}
	// A random start spreads reads evenly whatever the mix of levels
	// (a shared round-robin counter synchronises with alternating callers).
	start := int(rand.Uint32())
	for i := range v.replicas {
		r := &v.replicas[(start+i)%len(v.replicas)]
		// The replica chosen is the one whose replayed position is checked.
		if r.lag <= bound && r.lsn >= need {
			return r.n.rd
		}
	}
	return c.primaryRead
}

// writable fails fast when no primary is known.
func (c *cluster) writable(op string) error {
	if c.view.Load().primary == nil {
		return c.noPrimary(op)
	}
	return nil
}

// bind derives from ctx a context for a write that is cancelled when the
// current primary is lost, so that a write to a primary that hangs ends when
// its probes fail instead of waiting on a context with no deadline. lost
// reports whether that happened.
func (c *cluster) bind(ctx context.Context) (_ context.Context, done func(), lost func() bool) {
	cctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(c.epoch.Load().ctx, func() { cancel(errPrimaryLost) })
	return cctx, func() { stop(); cancel(nil) }, func() bool { return context.Cause(cctx) == errPrimaryLost }
}

// noPrimary is the error of an operation refused for want of a primary.
func (c *cluster) noPrimary(op string) error {
	return errs.E(op, errs.Unavailable, errs.RetryAfter(c.opts.RetryAfter), errs.Msg("database unavailable"), errNoPrimary)
}

// observe records in tok the WAL insert position of the primary conn is on,
// just after a commit on conn: at or past the end of that commit's record
// whatever synchronous_commit says.
// token is the consistency token a write under ctx records its position
// in, or nil when there is none to keep: the caller has no token, or the
// cluster has a single node, which no read could be sent away from (this
// spares every write of an unreplicated database a round trip).
func (c *cluster) token(ctx context.Context) *consistency.Token {
	if len(c.nodes) < 2 {
		return nil
	}
	return consistency.TokenFrom(ctx)
}

func (c *cluster) observe(ctx context.Context, conn *sql.Conn, tok *consistency.Token) {
	var lsn string
	err := conn.QueryRowContext(context.WithoutCancel(ctx), `SELECT pg_current_wal_insert_lsn()::text`).Scan(&lsn)
	if err == nil {
		var pos uint64
		if pos, err = consistency.ParseLSN(lsn); err == nil {
			tok.Observe(c.source, pos)
			return
		}
	}
	// The commit happened; only its position is unknown. Reads of this
	// caller may then miss it on a replica: say so loudly.
	c.log.Error("sqldb: write committed but its WAL position is unknown", "db", c.source, "err", err)
}

// fail maps a database error: timeouts and cancellations to Unavailable,
// connection failures to Unavailable with a retry hint (probing every node
// at once when it happened on the primary). Other errors are returned as is.
func (c *cluster) fail(op string, err error, n *node) error {
	switch {
	case err == nil:
		return nil
	case isTimeout(err):
		return errs.E(op, errs.Unavailable, errs.Msg("database timeout"), err)
	case isConnErr(err) || (n == nil && sqlState(err) == "25006"):
		if n == nil {
			c.kickAll()
		} else {
			c.eject(n, err)
		}
		return errs.E(op, errs.Unavailable, errs.RetryAfter(c.opts.RetryAfter), errs.Msg("database unavailable"), err)
	}
	return err
}

// failWrite is fail for a write on the primary, which is Unavailable with a
// retry hint when it was cancelled because the primary was lost.
func (c *cluster) failWrite(op string, err error, lost func() bool) error {
	if err != nil && lost() {
		return errs.E(op, errs.Unavailable, errs.RetryAfter(c.opts.RetryAfter), errs.Msg("database unavailable"), fmt.Errorf("%w: %w", errPrimaryLost, err))
	}
	return c.fail(op, err, nil)
}

func (c *cluster) status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := Status{Name: c.name, Source: c.source, Dialect: Postgres, MaxLagSecs: c.opts.MaxLag.Seconds()}
	if p := c.view.Load().primary; p != nil {
		s.Primary = p.addr
	}
	for _, n := range c.nodes {
		ns := NodeStatus{Addr: n.addr, Role: n.role, State: n.state, LSN: consistency.FormatLSN(n.lsn),
			Reads: n.reads.Load(), LastError: n.lastErr, Since: n.since}
		if n.role == RoleReplica {
			ns.LagBytes, ns.LagSeconds, ns.ReplayAgeSeconds = n.lagBytes, n.lag.Seconds(), n.replayAge
		}
		s.Nodes = append(s.Nodes, ns)
	}
	return s
}

func (c *cluster) close() error {
	if c.cancel != nil {
		c.cancel()
	}
	c.wg.Wait()
	var all []error
	for _, n := range c.nodes {
		all = append(all, n.pool.Close())
	}
	all = append(all, c.primaryPool.Close())
	return errors.Join(all...)
}

// reader sends reads to one node's pool, or (n nil) to the primary's.
type reader struct {
	c    *cluster
	n    *node
	pool *sql.DB
}

var _ Querier = (*reader)(nil)

func (r *reader) count() {
	if n := r.n; n != nil {
		n.reads.Add(1)
	} else if p := r.c.view.Load().primary; p != nil {
		p.reads.Add(1)
	}
}

// ExecContext runs q on the reader's node; on a replica that fails (it is
// read-only), so stores write through DB or Tx.
func (r *reader) ExecContext(ctx context.Context, q string, args ...any) (res sql.Result, err error) {
	if r.c.obs != nil {
		defer func(start time.Time) { r.c.obs.done(q, "", roleOf(r.n), start, err) }(time.Now())
	}
	if r.n == nil {
		if err := r.c.writable("sqldb.Exec"); err != nil {
			return nil, err
		}
	}
	res, err = r.pool.ExecContext(ctx, rebind(Postgres, q), args...)
	return res, r.c.fail("sqldb.Exec", err, r.n)
}

// QueryContext runs q on the reader's node. A replica that fails on a
// connection error or a recovery conflict is ejected and the read is
// retried once on the primary.
func (r *reader) QueryContext(ctx context.Context, q string, args ...any) (rows *sql.Rows, err error) {
	if r.c.obs != nil {
		// A replica's read retried on the primary is recorded twice: here
		// (by its final outcome) and as the primary's read.
		defer func(start time.Time) { r.c.obs.read(q, roleOf(r.n), start, err) }(time.Now())
	}
	if r.n == nil {
		if err := r.c.writable("sqldb.Query"); err != nil {
			return nil, err
		}
	}
	q = rebind(Postgres, q)
	rows, err = r.pool.QueryContext(ctx, q, args...)
	if err != nil && r.n != nil && ctx.Err() == nil && retryOnPrimary(err) {
		if isConnErr(err) {
			r.c.eject(r.n, err)
		}
		return r.c.primaryRead.QueryContext(ctx, q, args...)
	}
	if err != nil {
		return nil, r.c.fail("sqldb.Query", err, r.n)
	}
	r.count()
	return rows, nil
}

// QueryRowContext runs q on the reader's node, with QueryContext's retry;
// errors are reported by Scan, as database/sql does.
func (r *reader) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	if r.n == nil && r.c.view.Load().primary == nil {
		// database/sql has no way to build a Row holding our error; the
		// primary pool's connector refuses at once with errNoPrimary.
		return r.pool.QueryRowContext(ctx, rebind(Postgres, q), args...)
	}
	q = rebind(Postgres, q)
	start := time.Now()
	row := r.pool.QueryRowContext(ctx, q, args...)
	r.c.obs.read(q, roleOf(r.n), start, row.Err())
	if err := row.Err(); err != nil && r.n != nil && ctx.Err() == nil && retryOnPrimary(err) {
		if isConnErr(err) {
			r.c.eject(r.n, err)
		}
		return r.c.primaryRead.QueryRowContext(ctx, q, args...)
	}
	r.count()
	return row
}

// retryOnPrimary reports whether a failed replica read may be sent to the
// primary: the replica is unreachable, or cancelled the query on a
// recovery conflict.
func retryOnPrimary(err error) bool {
	return isConnErr(err) || sqlState(err) == "40001"
}

func sqlState(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// isTimeout: the caller's deadline passed, it cancelled, or the server
// cancelled the statement (statement_timeout).
func isTimeout(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		pgconn.Timeout(err) || sqlState(err) == "57014"
}

// isConnErr reports whether err means the node could not be reached or the
// connection broke, rather than that the statement failed.
func isConnErr(err error) bool {
	if errors.Is(err, errNoPrimary) || errors.Is(err, driver.ErrBadConn) || errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, pgconn.ErrReadOnlyConnection) {
		return true
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	switch st := sqlState(err); {
	case strings.HasPrefix(st, "08"), st == "57P01", st == "57P02", st == "57P03":
		return true
	case st != "":
		return false
	}
	return strings.Contains(err.Error(), "conn closed")
}
