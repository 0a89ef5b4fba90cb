// Package devpg implements "globomantics dev postgres up|status|down": real
// PostgreSQL topologies under pg_auto_failover on one machine, in the
// background, for development and for end-to-end runs.
//
// up starts one monitor and:
//
//   - the main formation, a primary and (by default) two streaming replicas
//     under automatic failover, synchronous (a commit waits for a standby),
//     holding every service's database (catalog, shipping, and the money
//     services account, order, payment, checkout, cart);
//   - shard formations (by default two), each a primary and one replica,
//     holding the sharded services' databases (account, cart, order,
//     payment, checkout).
//
// It prints the shop's configuration as shell lines (export GLOBO_DB_... and
// GLOBO_SHARDS_...), so that eval "$(globomantics dev postgres up --dir D)"
// configures a shell. The processes outlive the command; D/state.json
// records them and status and down read it.
package devpg

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/globomantics/globomantics/internal/platform/pgauto"
)

// services lists the services with a database, all on the main formation.
func services() []string {
	return []string{"account", "catalog", "cart", "payment", "shipping", "order", "checkout"}
}

// shardedServices lists the services whose databases also live on every
// shard formation.
func shardedServices() []string { return []string{"account", "cart", "order", "payment", "checkout"} }

// LogicalShards is the number of logical shards the shard maps divide
// among the shard formations.
const LogicalShards = 1024

const usage = `usage: globomantics dev postgres <command> --dir DIR [flags]

commands:
  up       start PostgreSQL under pg_auto_failover in DIR, in the background, and
           print the shop's configuration as shell export lines
  status   show every formation's nodes and their states
  down     stop everything started in DIR and remove its data

flags of up:
`

// State is what up records in DIR/state.json.
type State struct {
	Dir     string          `json:"dir"`
	Started time.Time       `json:"started"`
	Monitor pgauto.Node     `json:"monitor"`
	Main    FormationInfo   `json:"main"`
	Shards  []FormationInfo `json:"shards,omitempty"`
	// Env are the shell lines up printed.
	Env []string `json:"env"`
}

// FormationInfo records one formation: its nodes (ports, directories,
// pg_autoctl pids), its multi-host DSN template and its databases.
type FormationInfo struct {
	Name      string        `json:"name"`
	Sync      bool          `json:"sync"`
	Nodes     []pgauto.Node `json:"nodes"`
	Databases []string      `json:"databases"`
	// Range is the logical shards [First, Last] a shard formation holds.
	First int `json:"first_shard,omitempty"`
	Last  int `json:"last_shard,omitempty"`
}

// Placement puts up's servers on other addresses than 127.0.0.1 (the
// fleet's network-namespace hosts); the zero Placement changes nothing.
type Placement struct {
	// MonitorHost is the monitor's address (pgauto.MonitorOptions.Host).
	MonitorHost string
	// NodeHost, if set, is the address of node i (0-based) of every
	// formation (pgauto.FormationOptions.Hosts).
	NodeHost func(i int) string
	// TrustNet and Start are pgauto.MonitorOptions' TrustNet and Start.
	TrustNet string
	Start    func(addr string, cmd *exec.Cmd) error
}

// Main runs the dev postgres command with args (the words after
// "dev postgres"). Shell lines go to stdout, progress and errors to stderr.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return MainWith(ctx, args, Placement{}, stdout, stderr)
}

// MainWith is Main with up's servers placed by p.
func MainWith(ctx context.Context, args []string, p Placement, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("dev postgres: missing command")
	}
	cmd := args[0]
	fs := flag.NewFlagSet("dev postgres "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "", "`directory` for the data, logs and state.json (required)")
	replicas := fs.Int("replicas", 2, "streaming replicas of the main formation (synchronous with 2 or more)")
	shards := fs.Int("shards", 2, "shard formations for the sharded services")
	shardReplicas := fs.Int("shard-replicas", 1, "streaming replicas of each shard formation")
	verbose := fs.Bool("v", false, "log every step")
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	if err := fs.Parse(args[1:]); err != nil {
		return fmt.Errorf("dev postgres %s: %w", cmd, err)
	}
	if *dir == "" {
		fs.Usage()
		return fmt.Errorf("dev postgres %s: --dir is required", cmd)
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		return fmt.Errorf("dev postgres %s: %w", cmd, err)
	}
	level := slog.LevelWarn
	if cmd == "up" {
		level = slog.LevelInfo
	}
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	switch cmd {
	case "up":
		if *replicas < 0 || *shards < 0 || *shardReplicas < 0 {
			return errors.New("dev postgres up: negative --replicas, --shards or --shard-replicas")
		}
		return up(ctx, abs, shape{replicas: *replicas, shards: *shards, shardReplicas: *shardReplicas}, p, stdout, log)
	case "status":
		return status(ctx, abs, stdout, log)
	case "down":
		return down(ctx, abs, stdout, log)
	default:
		fs.Usage()
		return fmt.Errorf("dev postgres: unknown command %q", cmd)
	}
}

type shape struct{ replicas, shards, shardReplicas int }

func statePath(dir string) string { return filepath.Join(dir, "state.json") }
func baseDir(dir string) string   { return filepath.Join(dir, "pg") }

// ReadState reads DIR/state.json; the error wraps os.ErrNotExist when
// nothing was started there.
func ReadState(dir string) (*State, error) {
	b, err := os.ReadFile(statePath(dir))
	if err != nil {
		return nil, fmt.Errorf("dev postgres: %w", err)
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("dev postgres: %s: %w", statePath(dir), err)
	}
	return &s, nil
}

func up(ctx context.Context, dir string, sh shape, place Placement, stdout io.Writer, log *slog.Logger) error {
	if s, err := ReadState(dir); err == nil {
		m, err := pgauto.Attach(ctx, baseDir(dir), log)
		if err == nil && m.Running() {
			fmt.Fprintf(stdout, "# dev postgres: already up in %s (started %s); run down first to change it\n", dir, s.Started.Format(time.RFC3339))
			for _, l := range s.Env {
				fmt.Fprintln(stdout, l)
			}
			return nil
		}
		return fmt.Errorf("dev postgres up: %s holds a topology that is not running; run down first", dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("dev postgres up: %w", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil { // PostgreSQL runs as postgres
		return fmt.Errorf("dev postgres up: %w", err)
	}
	start := time.Now()
	m, err := pgauto.StartMonitor(ctx, pgauto.MonitorOptions{Dir: baseDir(dir), Detach: true, Log: log,
		Host: place.MonitorHost, TrustNet: place.TrustNet, Start: place.Start})
	if err != nil {
		return fmt.Errorf("dev postgres up: %w", err)
	}
	fail := func(err error) error {
		if serr := m.Stop(context.WithoutCancel(ctx)); serr != nil {
			err = errors.Join(err, serr)
		}
		return fmt.Errorf("dev postgres up: %w", err)
	}

	type plan struct {
		opts      pgauto.FormationOptions
		databases []string
		first     int
		last      int
	}
	plans := []plan{{opts: pgauto.FormationOptions{Name: "main", Nodes: 1 + sh.replicas, Sync: sh.replicas >= 2}, databases: services()}}
	for i := range sh.shards {
		plans = append(plans, plan{
			opts:      pgauto.FormationOptions{Name: fmt.Sprintf("shard%d", i), Nodes: 1 + sh.shardReplicas, Sync: sh.shardReplicas >= 2},
			databases: shardedServices(),
			first:     i * LogicalShards / sh.shards,
			last:      (i+1)*LogicalShards/sh.shards - 1,
		})
	}
	formations := make([]*pgauto.Formation, len(plans))
	errs := make([]error, len(plans))
	var wg sync.WaitGroup
	for i, p := range plans {
		if place.NodeHost != nil {
			for j := range p.opts.Nodes {
				p.opts.Hosts = append(p.opts.Hosts, place.NodeHost(j))
			}
		}
		wg.Go(func() {
			f, err := m.StartFormation(ctx, p.opts)
			if err != nil {
				errs[i] = err
				return
			}
			formations[i] = f
			for _, db := range p.databases {
				if err := f.CreateDatabase(ctx, db); err != nil {
					errs[i] = err
					return
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fail(err)
	}

	s := State{Dir: dir, Started: start.UTC(), Monitor: m.Node()}
	for i, p := range plans {
		fi := FormationInfo{Name: p.opts.Name, Sync: p.opts.Sync, Nodes: formations[i].Nodes(), Databases: p.databases, First: p.first, Last: p.last}
		if i == 0 {
			s.Main = fi
		} else {
			s.Shards = append(s.Shards, fi)
		}
	}
	s.Env = envLines(s, formations[0], formations[1:])
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fail(err)
	}
	if err := os.WriteFile(statePath(dir), b, 0o644); err != nil {
		return fail(err)
	}
	log.Info("dev postgres: up", "dir", dir, "formations", len(plans), "took", time.Since(start).Round(time.Millisecond))
	for _, l := range s.Env {
		fmt.Fprintln(stdout, l)
	}
	return nil
}

// envLines renders the configuration as shell lines.
func envLines(s State, main *pgauto.Formation, shards []*pgauto.Formation) []string {
	sync := "synchronous while a replica is healthy"
	if len(s.Main.Nodes) == 1 {
		sync = "no replica"
	}
	if s.Main.Sync {
		sync = "synchronous: a commit waits for one standby"
	}
	lines := []string{
		fmt.Sprintf("# globomantics dev postgres in %s: pg_auto_failover monitor %s", s.Dir, main.Monitor().URI()),
		fmt.Sprintf("# main formation %q: %d nodes, %s; every service's database", s.Main.Name, len(s.Main.Nodes), sync),
	}
	for _, svc := range services() {
		lines = append(lines, fmt.Sprintf("export GLOBO_DB_%s='%s'", strings.ToUpper(svc), main.URI(svc)))
	}
	if len(shards) == 0 {
		return lines
	}
	shardSync := "synchronous while a replica is healthy"
	if s.Shards[0].Sync {
		shardSync = "synchronous: a commit waits for one standby"
	}
	lines = append(lines, fmt.Sprintf("# Shard maps, read by the sharding work: GLOBO_SHARDS_<SERVICE>='<first>-<last>=<dsn>;...', logical shards 0-%d over %d shard formations (primary + %d replica(s) each, %s)",
		LogicalShards-1, len(shards), len(s.Shards[0].Nodes)-1, shardSync))
	for _, svc := range shardedServices() {
		parts := make([]string, len(shards))
		for i, f := range shards {
			parts[i] = fmt.Sprintf("%d-%d=%s", s.Shards[i].First, s.Shards[i].Last, f.URI(svc))
		}
		lines = append(lines, fmt.Sprintf("export GLOBO_SHARDS_%s='%s'", strings.ToUpper(svc), strings.Join(parts, ";")))
	}
	return lines
}

func status(ctx context.Context, dir string, stdout io.Writer, log *slog.Logger) error {
	s, err := ReadState(dir)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("dev postgres status: nothing is up in %s", dir)
	}
	if err != nil {
		return err
	}
	m, err := pgauto.Attach(ctx, baseDir(dir), log)
	if err != nil {
		return fmt.Errorf("dev postgres status: %w", err)
	}
	fmt.Fprintf(stdout, "# dev postgres in %s, started %s\n", s.Dir, s.Started.Format(time.RFC3339))
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	mon := m.Node()
	fmt.Fprintf(tw, "monitor\t%s:%d\tpid %d\t%s\n", mon.Addr(), mon.Port, mon.PID, running(m.Running()))
	var all []error
	if !m.Running() {
		all = append(all, errors.New("the monitor is not running"))
	}
	formations := m.Formations()
	sort.SliceStable(formations, func(i, j int) bool { // main first, then shards in order
		return formations[i].Name() == "main" || formations[j].Name() != "main" && formations[i].Name() < formations[j].Name()
	})
	for _, f := range formations {
		kind := "async"
		if f.Sync() {
			kind = "sync"
		}
		fmt.Fprintf(tw, "formation %s (%s)\tnode\tstate\tassigned\thealth\tpid\n", f.Name(), kind)
		states, err := f.State(ctx)
		if err != nil {
			all = append(all, err)
		}
		byIndex := map[int]pgauto.NodeState{}
		for _, st := range states {
			byIndex[st.Index] = st
		}
		for i, n := range f.Nodes() {
			st, ok := byIndex[i]
			cur, assigned, health := "?", "?", "?"
			if ok {
				cur, assigned, health = st.Current, st.Assigned, healthWord(st.Health)
			}
			fmt.Fprintf(tw, "  %s\t%s:%d\t%s\t%s\t%s\t%d\n", n.Name, n.Addr(), n.Port, cur, assigned, health, n.PID)
		}
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("dev postgres status: %w", err)
	}
	if err := errors.Join(all...); err != nil {
		return fmt.Errorf("dev postgres status: %w", err)
	}
	return nil
}

func running(b bool) string {
	if b {
		return "running"
	}
	return "NOT RUNNING"
}

func healthWord(h int) string {
	switch h {
	case 1:
		return "healthy"
	case 0:
		return "unhealthy"
	default:
		return "unknown"
	}
}

func down(ctx context.Context, dir string, stdout io.Writer, log *slog.Logger) error {
	if _, err := ReadState(dir); errors.Is(err, os.ErrNotExist) {
		if _, err := os.Stat(filepath.Join(baseDir(dir), "pgauto.json")); err != nil {
			fmt.Fprintf(stdout, "# dev postgres: nothing is up in %s\n", dir)
			return nil
		}
	}
	m, err := pgauto.Attach(ctx, baseDir(dir), log)
	if err != nil {
		return fmt.Errorf("dev postgres down: %w", err)
	}
	if err := m.Stop(ctx); err != nil {
		return fmt.Errorf("dev postgres down: %w", err)
	}
	if err := os.Remove(statePath(dir)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("dev postgres down: %w", err)
	}
	fmt.Fprintf(stdout, "# dev postgres: stopped everything in %s\n", dir)
	return nil
}
