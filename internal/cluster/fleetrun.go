package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/redis/go-redis/v9"

	"github.com/globomantics/globomantics/internal/devpg"
	"github.com/globomantics/globomantics/internal/platform/netns"
	"github.com/globomantics/globomantics/internal/platform/pgauto"
	"github.com/globomantics/globomantics/internal/platform/proctree"
	"github.com/globomantics/globomantics/internal/platform/svcauth"
)

// extraDatabases are the services with a database of their own that
// devpg does not create; the fleet adds them to the main formation.
var extraDatabases = []string{"partner", "analytics"}

// fleet is what "cluster run" knows beyond the supervisor's children.
type fleet struct {
	dir      string
	state    *State // its Specs are refreshed from the supervisor on change
	planned  []Spec // the specs up wrote, started stage by stage
	base     State  // a copy of state with Specs = planned, never changed
	edgeTok  string
	operator string     // "operator.<secret>"
	net      *netns.Net // the hosts (up --hosts), else nil

	mu       sync.Mutex
	reserved map[int][]net.Listener // ports of the specs not started yet
	pg       *devpg.State
	dbEnv    []string
	pgProcs  []Proc
	stage    string
	ready    bool
	failed   error
}

// OperatorCredential is the operator's service credential ("operator.<secret>"),
// presented as "Authorization: Bearer <it>" to any /svc/ API and to the
// control listener's POST endpoints off loopback.
func (s *Supervisor) OperatorCredential() string {
	return s.fleetField(func(f *fleet) string { return f.operator })
}

// EdgeToken is the bearer token of the edge's registry and status API.
func (s *Supervisor) EdgeToken() string {
	return s.fleetField(func(f *fleet) string { return f.edgeTok })
}

// ShopURL is the edge's public URL: the shop.
func (s *Supervisor) ShopURL() string {
	return s.fleetField(func(f *fleet) string { return f.base.ShopURL })
}

// ControlURL is the control listener's URL (the control room and /api/).
func (s *Supervisor) ControlURL() string {
	return s.fleetField(func(f *fleet) string { return f.base.ControlURL })
}

// EdgeInternalURL is the edge's internal listener (/svc/ pools, registry).
func (s *Supervisor) EdgeInternalURL() string {
	return s.fleetField(func(f *fleet) string { return f.base.EdgeInternalURL })
}

// RedisURL is the redis+sentinel:// URL every shop process uses.
func (s *Supervisor) RedisURL() string {
	return s.fleetField(func(f *fleet) string { return f.base.RedisURL })
}

// Dir is the fleet's directory (blobs in Dir/blobs, e-mails in Dir/mail).
func (s *Supervisor) Dir() string { return s.fleetField(func(f *fleet) string { return f.dir }) }

// NATSURLs are the client URLs of the three NATS nodes.
func (s *Supervisor) NATSURLs() []string {
	if s.fleet == nil {
		return nil
	}
	return append([]string(nil), s.fleet.base.NATSURLs...)
}

// Postgres is the PostgreSQL formations' state (nil until they run, and
// outside "cluster run").
func (s *Supervisor) Postgres() *devpg.State {
	if s.fleet == nil {
		return nil
	}
	s.fleet.mu.Lock()
	defer s.fleet.mu.Unlock()
	return s.fleet.pg
}

func (s *Supervisor) fleetField(get func(*fleet) string) string {
	if s.fleet == nil {
		return ""
	}
	return get(s.fleet)
}

// Procs returns a copy of every process's state: the PostgreSQL nodes
// first (pg_autoctl keeps those running, not the supervisor; their State is
// "ready" while the port answers), then the children in start order.
func (s *Supervisor) Procs() []Proc {
	var out []Proc
	if s.fleet != nil {
		s.fleet.mu.Lock()
		out = append(out, s.fleet.pgProcs...)
		s.fleet.mu.Unlock()
	}
	return append(out, s.childProcs()...)
}

func (f *fleet) setStage(log *slog.Logger, stage string) {
	f.mu.Lock()
	f.stage = stage
	f.mu.Unlock()
	log.Info("cluster: starting", "stage", stage)
}

// RunOptions are the hooks "cluster run" offers the composition root.
type RunOptions struct {
	// ControlRoom builds the handler of / on the control listener; nil
	// serves the control room (NewControlRoom over the supervisor, the
	// broker's dead letters and the autoscaler's decisions).
	ControlRoom func(*Supervisor) http.Handler
	// Autoscale, when set, runs once the fleet is ready, until ctx ends;
	// nil runs FleetAutoscaler when the fleet was set up with it.
	Autoscale func(ctx context.Context, s *Supervisor)
}

// runFleet is "cluster run --dir D": it starts the fleet recorded in
// D/cluster.json in stages, serves the control listener, and stops it all
// (PostgreSQL last) when ctx ends.
func runFleet(ctx context.Context, dir string, o RunOptions, log *slog.Logger) (err error) {
	st, err := ReadState(dir)
	if err != nil {
		return err
	}
	var hostNet *netns.Net
	if st.Hosts {
		if hostNet, err = st.makeNet(ctx, log); err != nil {
			return fmt.Errorf("cluster run: hosts: %w", err)
		}
	}
	st.Supervisor = os.Getpid()
	if err := st.write(); err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	f := &fleet{dir: dir, state: st, planned: slices.Clone(st.Specs), base: *st, net: hostNet}
	f.base.Specs = f.planned
	planned := f.planned
	s := &Supervisor{Log: log, Exe: exe, fleet: f}
	if hostNet != nil {
		s.Launcher = hostLauncher(hostNet)
	}
	var stateMu sync.Mutex
	s.Changed = func() {
		stateMu.Lock()
		defer stateMu.Unlock()
		st.Specs = s.Specs()
		f.mu.Lock()
		starting := !f.ready
		f.mu.Unlock()
		if starting { // keep the specs of the stages still to start
			have := map[string]bool{}
			for _, sp := range st.Specs {
				have[sp.Name] = true
			}
			for _, sp := range planned {
				if !have[sp.Name] {
					st.Specs = append(st.Specs, sp)
				}
			}
		}
		if err := st.write(); err != nil {
			log.Error("cluster: write state", "err", err)
		}
	}
	s.Env = f.env
	f.reserve()
	s.BeforeStart = f.release
	s.NewSpec = f.newSpec
	if err := f.prepare(); err != nil { // before the control room, which takes the tokens
		return fmt.Errorf("cluster run: %w", err)
	}
	scaler := FleetAutoscaler(s, log)
	if o.ControlRoom != nil {
		s.ControlRoom = o.ControlRoom(s)
	} else {
		deadLetters, closeDL := DeadLettersFromNATS(s.NATSURLs(), log)
		defer closeDL()
		room := NewControlRoom(ControlRoomConfig{Fleet: s, OperatorToken: s.OperatorCredential(), EdgeToken: s.EdgeToken(),
			DeadLetters: deadLetters, Decisions: scaler.DecisionLines, Log: log})
		go func() { _ = room.Run(ctx) }()
		s.ControlRoom = room
	}
	ln, err := net.Listen("tcp", hostPort(st.ListenHost, st.ControlPort))
	if err != nil {
		return fmt.Errorf("cluster run: control listener: %w", err)
	}
	srv := &http.Server{Handler: s.controlHandler(!isLoopback(st.ListenHost)), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	log.Info("cluster: control listener", "url", st.ControlURL)
	if st.RootAddr != "" { // reachable from the hosts, POSTs with the operator's credential
		rln, err := net.Listen("tcp", hostPort(st.RootAddr, st.ControlPort))
		if err != nil {
			return fmt.Errorf("cluster run: control listener on the hosts' network: %w", err)
		}
		rsrv := &http.Server{Handler: s.controlHandler(true), ReadHeaderTimeout: 10 * time.Second}
		go func() { _ = rsrv.Serve(rln) }()
		defer rsrv.Close()
	}

	defer func() {
		log.Info("cluster: stopping the fleet")
		s.StopAll(15 * time.Second)
		var out bytes.Buffer
		if derr := devpg.Main(context.WithoutCancel(ctx), []string{"down", "--dir", filepath.Join(dir, "pg")}, &out, logWriter{log}); derr != nil {
			log.Error("cluster: postgres down", "err", derr)
			err = errors.Join(err, derr)
		}
		if hostNet != nil {
			if nerr := hostNet.Close(); nerr != nil {
				log.Error("cluster: removing the hosts", "err", nerr)
				err = errors.Join(err, nerr)
			}
		}
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		_ = srv.Shutdown(sctx)
		cancel()
		s.changed()
		stateMu.Lock()
		st.Supervisor = 0
		for i := range st.Specs {
			st.Specs[i].PID, st.Specs[i].PGID = 0, 0
		}
		_ = st.write()
		stateMu.Unlock()
		log.Info("cluster: stopped")
	}()

	if err := f.start(ctx, s, log); err != nil {
		f.mu.Lock()
		f.failed = err
		f.mu.Unlock()
		log.Error("cluster: start failed", "err", err)
		return err
	}
	f.mu.Lock()
	f.ready = true
	f.mu.Unlock()
	log.Info("cluster: ready", "shop", st.ShopURL, "control", st.ControlURL)
	switch {
	case o.Autoscale != nil:
		go o.Autoscale(ctx, s)
	case st.Autoscale:
		go func() { _ = scaler.Run(ctx) }()
	}
	<-ctx.Done()
	return nil
}

// reserve listens on every planned port until its process starts, so that
// the PostgreSQL nodes, which pick free ports when they start, cannot take
// one.
func (f *fleet) reserve() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reserved = map[int][]net.Listener{}
	hosts := []string{f.base.ListenHost}
	if f.base.ListenHost != "127.0.0.1" {
		hosts = append(hosts, "127.0.0.1")
	}
	for _, sp := range f.planned {
		for _, p := range sp.Ports {
			for _, h := range hosts {
				if ln, err := net.Listen("tcp", hostPort(h, p)); err == nil {
					f.reserved[p] = append(f.reserved[p], ln)
				}
			}
		}
	}
}

// release frees the reserved ports of sp just before it starts.
func (f *fleet) release(sp Spec) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, p := range sp.Ports {
		for _, ln := range f.reserved[p] {
			ln.Close()
		}
		delete(f.reserved, p)
	}
}

// prepare makes the credentials, the edge token and the shared directories.
func (f *fleet) prepare() error {
	st := &f.base
	names := []string{svcauth.Operator}
	for _, c := range st.Components {
		names = append(names, c.Name)
	}
	creds := filepath.Join(f.dir, "creds")
	if err := svcauth.InitDir(creds, names); err != nil {
		return fmt.Errorf("credentials: %w", err)
	}
	b, err := os.ReadFile(filepath.Join(creds, svcauth.Operator+".secret"))
	if err != nil {
		return err
	}
	f.operator = svcauth.Operator + "." + strings.TrimSpace(string(b))
	tokPath := filepath.Join(f.dir, "edge.token")
	if b, err := os.ReadFile(tokPath); err == nil {
		f.edgeTok = strings.TrimSpace(string(b))
	} else {
		if f.edgeTok, err = newToken(); err != nil {
			return err
		}
		if err := os.WriteFile(tokPath, []byte(f.edgeTok+"\n"), 0o600); err != nil {
			return err
		}
	}
	for _, d := range []string{"blobs", "mail", "logs"} {
		if err := os.MkdirAll(filepath.Join(f.dir, d), 0o755); err != nil {
			return err
		}
	}
	return nil
}

// start brings the fleet up stage by stage, each bounded.
func (f *fleet) start(ctx context.Context, s *Supervisor, log *slog.Logger) error {
	st := f.state

	// PostgreSQL.
	f.setStage(log, "postgres")
	if err := f.startPostgres(ctx, log); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	go f.watchPostgres(ctx)

	stage := func(name string, timeout time.Duration, pick func(Spec) bool, then func(context.Context) error) error {
		f.setStage(log, name)
		var names []string
		for _, sp := range f.planned {
			if pick(sp) {
				if sp.Kind == "redis" || sp.Kind == "sentinel" {
					if err := writeRedisConfig(&f.base, sp); err != nil {
						return err
					}
				}
				s.Start(sp)
				names = append(names, sp.Name)
			}
		}
		sctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		if err := s.WaitReady(sctx, names...); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if then != nil {
			if err := then(sctx); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		}
		return nil
	}
	if err := stage("redis", time.Minute, func(sp Spec) bool { return sp.Kind == "redis" }, nil); err != nil {
		return err
	}
	if err := stage("sentinel", time.Minute, func(sp Spec) bool { return sp.Kind == "sentinel" }, func(ctx context.Context) error {
		return pollUntil(ctx, func() error { return sentinelsReady(ctx, f.planned) })
	}); err != nil {
		return err
	}
	if err := stage("nats", time.Minute, func(sp Spec) bool { return sp.Kind == "nats" }, func(ctx context.Context) error {
		return pollUntil(ctx, func() error { return jetStreamReady(st.NATSURLs) })
	}); err != nil {
		return err
	}
	if err := stage("edge and dns", time.Minute, func(sp Spec) bool { return sp.Kind == "edge" || sp.Kind == "dns" }, nil); err != nil {
		return err
	}
	stages := map[int]bool{}
	for _, sp := range f.planned {
		if sp.Kind == "shop" {
			stages[sp.Stage] = true
		}
	}
	for n := 0; n < 100; n++ {
		if !stages[n] {
			continue
		}
		var groups []string
		for _, sp := range f.planned {
			if sp.Kind == "shop" && sp.Stage == n && !slices.Contains(groups, sp.Group) {
				groups = append(groups, sp.Group)
			}
		}
		if err := stage(strings.Join(groups, ","), 3*time.Minute, func(sp Spec) bool { return sp.Kind == "shop" && sp.Stage == n }, nil); err != nil {
			return err
		}
	}
	return nil
}

// pollUntil calls fn every 200 ms until it succeeds or ctx ends.
func pollUntil(ctx context.Context, fn func() error) error {
	for {
		err := fn()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// startPostgres runs devpg up in D/pg (or finds it up), adds the databases
// devpg does not make, and keeps the shop's settings for the children.
func (f *fleet) startPostgres(ctx context.Context, log *slog.Logger) error {
	pgDir := filepath.Join(f.dir, "pg")
	var out bytes.Buffer
	var place devpg.Placement
	if f.net != nil {
		place = pgPlacement(f.net)
	}
	if err := devpg.MainWith(ctx, []string{"up", "--dir", pgDir}, place, &out, logWriter{log}); err != nil {
		return err
	}
	ps, err := devpg.ReadState(pgDir)
	if err != nil {
		return err
	}
	env := parseEnvLines(ps.Env)
	m, err := pgauto.Attach(ctx, filepath.Join(pgDir, "pg"), log)
	if err != nil {
		return err
	}
	main := m.Formation(ps.Main.Name)
	if main == nil {
		return fmt.Errorf("no formation %q", ps.Main.Name)
	}
	for _, db := range extraDatabases {
		if err := main.CreateDatabase(ctx, db); err != nil {
			return err
		}
		env = append(env, "GLOBO_DB_"+strings.ToUpper(db)+"="+main.URI(db))
	}
	if f.net != nil {
		f.state.DBEnv = env // written with the state once processes start (none runs yet)
	}
	f.mu.Lock()
	f.pg, f.dbEnv = ps, env
	f.mu.Unlock()
	f.refreshPostgres(ctx)
	return nil
}

// parseEnvLines turns devpg's "export K='V'" lines into K=V.
func parseEnvLines(lines []string) []string {
	var out []string
	for _, l := range lines {
		kv, ok := strings.CutPrefix(l, "export ")
		if !ok {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		out = append(out, k+"="+strings.Trim(v, "'"))
	}
	return out
}

// watchPostgres refreshes the PostgreSQL nodes' states every 2 s.
func (f *fleet) watchPostgres(ctx context.Context) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f.refreshPostgres(ctx)
		}
	}
}

func (f *fleet) refreshPostgres(ctx context.Context) {
	f.mu.Lock()
	ps := f.pg
	f.mu.Unlock()
	if ps == nil {
		return
	}
	var procs []Proc
	add := func(group string, n pgauto.Node) {
		state := "unready"
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		if checkReady(cctx, "tcp:"+hostPort(n.Addr(), n.Port)) == nil {
			state = "ready"
		}
		cancel()
		if !proctree.Alive(n.PID) {
			state = "failed"
		}
		procs = append(procs, Proc{Name: "pg-" + n.Name, Group: group, Kind: "postgres", PID: n.PID, State: state,
			InternalURL: "postgres://" + hostPort(n.Addr(), n.Port)})
	}
	add("postgres-monitor", ps.Monitor)
	for _, n := range ps.Main.Nodes {
		add("postgres-"+ps.Main.Name, n)
	}
	for _, sh := range ps.Shards {
		for _, n := range sh.Nodes {
			add("postgres-"+sh.Name, n)
		}
	}
	f.mu.Lock()
	f.pgProcs = procs
	f.mu.Unlock()
}

// env is the environment of a child beyond its spec's: secrets and the
// data layer's settings.
func (f *fleet) env(sp Spec) []string {
	switch sp.Kind {
	case "edge", "dns":
		return []string{"GLOBO_EDGE_TOKEN=" + f.edgeTok}
	case "shop":
		f.mu.Lock()
		defer f.mu.Unlock()
		return append([]string{"GLOBO_EDGE_TOKEN=" + f.edgeTok, "GLOBO_REDIS_URL=" + f.base.RedisURL}, f.dbEnv...)
	}
	return nil
}

// newSpec makes the spec of instance index of a scalable group on ports
// not in taken.
func (f *fleet) newSpec(group string, index int, taken []int) (Spec, error) {
	st := &f.base
	pp := &ports{host: st.ListenHost, taken: map[int]bool{st.ControlPort: true, st.DNSPort: true}}
	for _, p := range taken {
		pp.taken[p] = true
	}
	var tmpl *Spec
	for i := range st.Specs {
		if st.Specs[i].Group == group {
			tmpl = &st.Specs[i]
			break
		}
	}
	if tmpl == nil {
		return Spec{}, fmt.Errorf("no instance of %s to copy", group)
	}
	sp := Spec{Name: fmt.Sprintf("%s-%d", group, index), Group: group, Kind: tmpl.Kind, Index: index, Stage: tmpl.Stage,
		Services: append([]string(nil), tmpl.Services...), Scalable: true, Self: true}
	ps, err := pp.get(2, nil)
	if err != nil {
		return Spec{}, err
	}
	sp.Ports = ps
	st.shopArgs(&sp)
	if st.HostAddrs != nil {
		sp.Host = tmpl.Host
		st.rehostSpec(&sp, st.rewriter(&sp))
	}
	sp.Dir = filepath.Join(f.dir, "procs", sp.Name)
	sp.Log = filepath.Join(f.dir, "logs", sp.Name+".log")
	return sp, nil
}

// writeRedisConfig writes a Redis server's or sentinel's first
// configuration unless it has one (it rewrites it at failovers).
func writeRedisConfig(st *State, sp Spec) error {
	path := sp.Argv[1]
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(st.redisConfig(&sp)), 0o644)
}

// sentinelsReady reports nil once every sentinel knows both replicas and
// the two other sentinels: before that a dead master is not replaced.
func sentinelsReady(ctx context.Context, specs []Spec) error {
	for _, sp := range specs {
		if sp.Kind != "sentinel" {
			continue
		}
		c := redis.NewSentinelClient(&redis.Options{Addr: strings.TrimPrefix(sp.Ready, "redis:"), MaxRetries: -1})
		m, err := c.Master(ctx, SentinelMaster).Result()
		c.Close()
		if err != nil {
			return err
		}
		if m["num-slaves"] != "2" || m["num-other-sentinels"] != "2" {
			return fmt.Errorf("sentinel %s knows %s replicas and %s other sentinels", sp.Name, m["num-slaves"], m["num-other-sentinels"])
		}
	}
	return nil
}

// jetStreamReady reports nil once the NATS cluster has a JetStream meta
// leader (streams can be made).
func jetStreamReady(urls []string) error {
	nc, err := nats.Connect(strings.Join(urls, ","), nats.Timeout(time.Second), nats.MaxReconnects(0))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := nc.JetStream(nats.MaxWait(time.Second))
	if err != nil {
		return err
	}
	_, err = js.AccountInfo()
	return err
}

// logWriter passes another package's text output to the log, a line each.
type logWriter struct{ l *slog.Logger }

func (w logWriter) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		if line != "" {
			w.l.Info(line)
		}
	}
	return len(p), nil
}

var _ io.Writer = logWriter{}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
