// Command shardwrites measures how order writes scale with shard nodes: it
// starts N real PostgreSQL servers (pgnode), pins each one's processes to its
// own CPU core with taskset, splits the 1024 logical shards evenly among
// them, and drives the same closed-loop load through the real order store
// (orderdb over sqldb.OpenSharded): W writers, each creating orders for users
// drawn at random from a large pool, for a warm-up and then a measured
// window. It prints writes per second, latency percentiles, per-node write
// counts, per-core CPU use and the ratio of each run to the one-node run.
//
//	go run ./bench/shardwrites                      # 1 node, then 2 nodes; 32 writers, 2 s + 10 s
//	go run ./bench/shardwrites -nodes 1,2,1,2 -d 20s
//	go run ./bench/shardwrites -wait-load 0.5 -wait-max 30m -json
//
// The load generator is this process; on a machine with as many cores as
// nodes it shares them with the servers (see -client-cpus and -gomaxprocs).
// Servers run with durable settings (fsync, synchronous_commit and
// full_page_writes on) unless -fast is given. Every server and directory is
// removed at the end, on error and on Ctrl-C.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/globomantics/globomantics/bench/internal/measure"
	"github.com/globomantics/globomantics/internal/order"
	"github.com/globomantics/globomantics/internal/order/orderdb"
	"github.com/globomantics/globomantics/internal/platform/ids"
	"github.com/globomantics/globomantics/internal/platform/money"
	"github.com/globomantics/globomantics/internal/platform/pgnode"
	"github.com/globomantics/globomantics/internal/platform/proctree"
	"github.com/globomantics/globomantics/internal/platform/shard"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
	"github.com/globomantics/globomantics/internal/shipping"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "shardwrites:", err)
		os.Exit(1)
	}
}

// config is what the flags set.
type config struct {
	nodes      []int
	writers    int
	warmup     time.Duration
	dur        time.Duration
	users      int
	maxConns   int
	fast       bool
	cores      []int
	clientCPUs string
	gomaxprocs int
	waitLoad   float64
	waitMax    time.Duration
	jsonOut    bool
	verbose    bool
	cpuProfile string
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var (
		c     config
		nodes string
		cores string
	)
	fs := flag.NewFlagSet("shardwrites", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&nodes, "nodes", "1,2", "runs to make, in order: the number of shard nodes of each (shards split evenly)")
	fs.IntVar(&c.writers, "writers", 32, "concurrent writers (closed loop), the same in every run")
	fs.DurationVar(&c.warmup, "warmup", 2*time.Second, "warm-up before the measured window (not counted)")
	fs.DurationVar(&c.dur, "d", 10*time.Second, "measured window (at most 5m)")
	fs.IntVar(&c.users, "users", 100000, "size of the pool of user ids orders are spread over")
	fs.IntVar(&c.maxConns, "maxconns", 0, "connection pool size per node (0: -writers, so the pool never limits a one-node run)")
	fs.BoolVar(&c.fast, "fast", false, "start the servers with pgnode's Fast option (fsync, synchronous_commit, full_page_writes off)")
	fs.StringVar(&cores, "cores", "", "CPU cores for node 1, 2, ... (default 0,1,...,ncpu-1, reused round-robin)")
	fs.StringVar(&c.clientCPUs, "client-cpus", "", `pin this load-generating process to these cores (taskset list, e.g. "1"); "nodes": in each run, to the cores of that run's nodes (1 node: all on one core); empty: not pinned`)
	fs.IntVar(&c.gomaxprocs, "gomaxprocs", 0, "GOMAXPROCS of the load generator (0: the runtime's default)")
	fs.Float64Var(&c.waitLoad, "wait-load", 0, "before each run, poll /proc/loadavg every 30 s until the 1-minute load is below this (0: don't wait)")
	fs.DurationVar(&c.waitMax, "wait-max", 30*time.Minute, "give up waiting for -wait-load after this long in all (and measure anyway, saying so)")
	fs.BoolVar(&c.jsonOut, "json", false, "print the results as one JSON document instead of text")
	fs.BoolVar(&c.verbose, "v", false, "log node starts and stops to stderr")
	fs.StringVar(&c.cpuProfile, "cpuprofile", "", "write a CPU profile of the load generator (all runs) to this file")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	for _, s := range strings.Split(nodes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > 16 {
			return c, fmt.Errorf("-nodes: %q is not a node count in 1..16", s)
		}
		c.nodes = append(c.nodes, n)
	}
	if cores == "" {
		for i := range runtime.NumCPU() {
			c.cores = append(c.cores, i)
		}
	} else {
		for _, s := range strings.Split(cores, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil || n < 0 {
				return c, fmt.Errorf("-cores: %q is not a core number", s)
			}
			c.cores = append(c.cores, n)
		}
	}
	if c.writers < 1 || c.users < 1 || c.dur <= 0 || c.warmup < 0 {
		return c, errors.New("-writers, -users and -d must be positive, -warmup not negative")
	}
	if c.dur > 5*time.Minute {
		c.dur = 5 * time.Minute
	}
	if c.maxConns <= 0 {
		c.maxConns = c.writers
	}
	return c, nil
}

// result is one run's measurements.
type result struct {
	Nodes        int           `json:"nodes"`
	Cores        []int         `json:"cores"`
	Writes       int           `json:"writes"`
	Errors       int           `json:"errors"`
	FirstError   string        `json:"first_error,omitempty"`
	Seconds      float64       `json:"seconds"`
	WritesPerSec float64       `json:"writes_per_sec"`
	P50ms        float64       `json:"p50_ms"`
	P90ms        float64       `json:"p90_ms"`
	P99ms        float64       `json:"p99_ms"`
	MaxMs        float64       `json:"max_ms"`
	PerNode      []nodeResult  `json:"per_node"`
	CPU          []coreUse     `json:"cpu"`
	ClientCPUSec float64       `json:"client_cpu_sec"`
	Client       string        `json:"client"` // where the load generator ran`
	LoadBefore   string        `json:"loadavg_before"`
	WaitedQuiet  string        `json:"waited_quiet,omitempty"`
	Elapsed      time.Duration `json:"-"`
}

// nodeResult is one node's share of a run.
type nodeResult struct {
	Name        string  `json:"name"`
	Shards      string  `json:"shards"`
	Core        int     `json:"core"`
	Writes      int     `json:"writes"`       // counted by the client in the window
	Share       float64 `json:"share"`        // of the run's writes
	Rows        int     `json:"rows"`         // orders rows on the node at the end (warm-up included)
	ServerCPU   float64 `json:"server_cpu_s"` // CPU seconds of the node's processes in the window
	Affinity    string  `json:"affinity"`     // Cpus_allowed_list of its processes at the end: list -> count
	PostmasterP int     `json:"postmaster_pid"`
}

// coreUse is one core's use during the measured window, in percent.
type coreUse struct {
	Core   int     `json:"core"`
	Busy   float64 `json:"busy_pct"`
	IOWait float64 `json:"iowait_pct"`
	Steal  float64 `json:"steal_pct"`
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	if c.gomaxprocs > 0 {
		runtime.GOMAXPROCS(c.gomaxprocs)
	}
	if c.clientCPUs != "" && c.clientCPUs != "nodes" {
		if out, err := exec.Command("taskset", "-apc", c.clientCPUs, strconv.Itoa(os.Getpid())).CombinedOutput(); err != nil {
			return fmt.Errorf("pinning the load generator to %s: %v: %s", c.clientCPUs, err, out)
		}
	}
	if c.cpuProfile != "" {
		f, err := os.Create(c.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	log := slog.New(slog.DiscardHandler)
	if c.verbose {
		log = slog.New(slog.NewTextHandler(stderr, nil))
	}
	mode := "durable (fsync=on, synchronous_commit=on, full_page_writes=on)"
	if c.fast {
		mode = "fast (pgnode Fast: fsync=off, synchronous_commit=off, full_page_writes=off)"
	}
	where := "cores " + cpusAllowed(os.Getpid())
	if c.clientCPUs == "nodes" {
		where = "the cores of each run's nodes"
	}
	header := fmt.Sprintf("shardwrites: %d writers, warm-up %s, window %s, %d users, pool %d conns/node, %s; load generator (this process, GOMAXPROCS=%d) on %s, shared with the servers; %d CPUs",
		c.writers, c.warmup, c.dur, c.users, c.maxConns, mode, runtime.GOMAXPROCS(0), where, runtime.NumCPU())
	if !c.jsonOut {
		fmt.Fprintln(stdout, header)
	}
	waitDeadline := time.Now().Add(c.waitMax) // one budget for all the runs
	var results []result
	for _, n := range c.nodes {
		if err := ctx.Err(); err != nil {
			return err
		}
		waited := ""
		if c.waitLoad > 0 {
			waited = waitQuiet(ctx, c.waitLoad, waitDeadline, stderr)
		}
		r, err := runOnce(ctx, c, n, log)
		if err != nil {
			return fmt.Errorf("run with %d node(s): %w", n, err)
		}
		r.WaitedQuiet = waited
		results = append(results, r)
		if !c.jsonOut {
			printResult(stdout, r)
		}
	}
	if c.jsonOut {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Header  string   `json:"header"`
			Results []result `json:"results"`
		}{header, results})
	}
	printSummary(stdout, results)
	return nil
}

// runOnce starts n nodes, pins them, loads them and stops them.
func runOnce(ctx context.Context, c config, n int, log *slog.Logger) (res result, err error) {
	res = result{Nodes: n, LoadBefore: measure.LoadAvg()}
	start := time.Now()
	var nodes []*pgnode.Node
	defer func() {
		for _, nd := range nodes {
			if cerr := nd.Close(); cerr != nil && err == nil {
				err = fmt.Errorf("stopping %s: %w", nd.Addr(), cerr)
			}
		}
	}()
	pids := make([]int, n)
	for i := range n {
		nd, err := pgnode.StartPrimary(ctx, pgnode.Options{Fast: c.fast, Log: log})
		if err != nil {
			return res, err
		}
		nodes = append(nodes, nd)
		core := c.cores[i%len(c.cores)]
		res.Cores = append(res.Cores, core)
		if pids[i], err = postmasterPID(nd); err != nil {
			return res, err
		}
		// Before any load: the postmaster and its running children; the
		// backends and workers it forks later inherit the affinity.
		if err := pin(pids[i], core); err != nil {
			return res, err
		}
		if err := nd.CreateDatabase(ctx, "orders"); err != nil {
			return res, err
		}
	}

	if c.clientCPUs == "nodes" {
		var list []string
		for _, core := range res.Cores {
			list = append(list, strconv.Itoa(core))
		}
		if out, err := exec.Command("taskset", "-apc", strings.Join(list, ","), strconv.Itoa(os.Getpid())).CombinedOutput(); err != nil {
			return res, fmt.Errorf("pinning the load generator: %v: %s", err, out)
		}
	}

	// The shard map: 1024 logical shards split evenly, in order.
	var spec strings.Builder
	dsnIndex := map[string]int{}
	for i, nd := range nodes {
		lo, hi := i*shard.Count/n, (i+1)*shard.Count/n-1
		dsn := nd.DSN("orders")
		dsnIndex[dsn] = i
		fmt.Fprintf(&spec, "%d-%d=%s;", lo, hi, dsn)
		res.PerNode = append(res.PerNode, nodeResult{Name: fmt.Sprintf("node%d", i+1), Shards: fmt.Sprintf("%d-%d", lo, hi),
			Core: res.Cores[i], PostmasterP: pids[i]})
	}
	sh, err := sqldb.OpenSharded(ctx, spec.String(), sqldb.Options{MaxConns: c.maxConns})
	if err != nil {
		return res, err
	}
	defer sh.Close()
	store, err := orderdb.OpenSharded(ctx, sh)
	if err != nil {
		return res, err
	}
	var nodeOf [shard.Count]int
	m := sh.Map()
	for s := range shard.Count {
		nodeOf[s] = dsnIndex[m.NodeFor(shard.ID(s))]
	}

	users := make([]string, c.users)
	for i := range users {
		users[i] = fmt.Sprintf("usr_%08d", i)
	}

	// The load: writers run from now; the window is [t0, t1). A write
	// counts when it ends inside the window; no write starts after t1.
	t0 := time.Now().Add(c.warmup)
	t1 := t0.Add(c.dur)
	type tally struct {
		lat      []time.Duration
		perNode  []int
		errs     int
		firstErr error
	}
	tallies := make([]tally, c.writers)
	var wg sync.WaitGroup
	for w := range c.writers {
		tallies[w].perNode = make([]int, n)
		wg.Add(1)
		go func(t *tally) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
			for ctx.Err() == nil {
				begin := time.Now()
				if !begin.Before(t1) {
					return
				}
				user := users[rng.IntN(len(users))]
				s := shard.ForUser(user)
				_, _, err := store.Create(ctx, newOrder(user, s, begin))
				end := time.Now()
				if end.Before(t0) || !end.Before(t1) {
					continue
				}
				if err != nil {
					if ctx.Err() == nil {
						t.errs++
						if t.firstErr == nil {
							t.firstErr = err
						}
					}
					continue
				}
				t.lat = append(t.lat, end.Sub(begin))
				t.perNode[nodeOf[s]]++
			}
		}(&tallies[w])
	}

	// CPU use over the window: per core, this process, each node's processes.
	var before, after snapshot
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		if !measure.SleepUntil(ctx, t0) {
			return
		}
		before = take(pids)
		// Taken now: the runtime adjusts GOMAXPROCS to a new affinity within a second or so.
		res.Client = fmt.Sprintf("cores %s, GOMAXPROCS %d", cpusAllowed(os.Getpid()), runtime.GOMAXPROCS(0))
		if !measure.SleepUntil(ctx, t1) {
			return
		}
		after = take(pids)
	}()
	wg.Wait()
	<-sampled
	if err := ctx.Err(); err != nil {
		return res, err
	}

	var all []time.Duration
	for _, t := range tallies {
		all = append(all, t.lat...)
		res.Errors += t.errs
		if t.firstErr != nil && res.FirstError == "" {
			res.FirstError = t.firstErr.Error()
		}
		for i, k := range t.perNode {
			res.PerNode[i].Writes += k
		}
	}
	slices.Sort(all)
	res.Writes = len(all)
	res.Seconds = c.dur.Seconds()
	res.WritesPerSec = float64(res.Writes) / res.Seconds
	res.P50ms, res.P90ms, res.P99ms = measure.Ms(measure.Pct(all, 50)), measure.Ms(measure.Pct(all, 90)), measure.Ms(measure.Pct(all, 99))
	if len(all) > 0 {
		res.MaxMs = measure.Ms(all[len(all)-1])
	}
	res.CPU = coreDelta(before.cores, after.cores)
	res.ClientCPUSec = after.self - before.self
	dbs := sh.All()
	for i := range res.PerNode {
		p := &res.PerNode[i]
		if res.Writes > 0 {
			p.Share = float64(p.Writes) / float64(res.Writes)
		}
		p.ServerCPU = procDelta(before.procs[i], after.procs[i])
		p.Affinity = affinityOf(pids[i])
		db := dbs[nodes[i].DSN("orders")]
		if db != nil {
			if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM orders`).Scan(&p.Rows); err != nil {
				return res, fmt.Errorf("counting the orders of %s: %w", p.Name, err)
			}
		}
	}
	res.Elapsed = time.Since(start)
	return res, nil
}

// newOrder is a valid pending order of two items for user, in shard s.
func newOrder(user string, s shard.ID, now time.Time) order.Order {
	now = now.UTC()
	return order.Order{
		ID: ids.NewInShard("ord", now, uint16(s)), UserID: user, Email: user + "@example.com", Status: order.StatusPending,
		Items: []order.Item{
			{ProductID: "prd_a", Name: "Widget", Quantity: 2, UnitPrice: money.USD(1250), LineTotal: money.USD(2500)},
			{ProductID: "prd_b", Name: "Gadget", Quantity: 1, UnitPrice: money.USD(999), LineTotal: money.USD(999)},
		},
		Subtotal: money.USD(3499), ShippingCost: money.USD(500), Total: money.USD(3999),
		ShippingAddress: shipping.Address{Name: "Ada", Line1: "1 Main St", City: "Springfield", PostalCode: "12345", Country: "US"},
		CreatedAt:       now, UpdatedAt: now,
	}
}

// postmasterPID reads the first line of the node's data/postmaster.pid
// and checks that the process is a running postgres.
func postmasterPID(nd *pgnode.Node) (int, error) {
	b, err := os.ReadFile(filepath.Join(nd.Dir(), "data", "postmaster.pid"))
	if err != nil {
		return 0, fmt.Errorf("reading the postmaster's pid: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("bad postmaster.pid %q", line)
	}
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil || !strings.HasPrefix(string(comm), "postgres") {
		return 0, fmt.Errorf("pid %d from postmaster.pid is not a running postgres", pid)
	}
	return pid, nil
}

// pin sets the CPU affinity of the postmaster pid and of every process it
// has already started (checkpointer, walwriter, autovacuum launcher, ...),
// all their threads, to core.
func pin(pid, core int) error {
	for _, p := range append([]int{pid}, proctree.Children(pid)...) {
		out, err := exec.Command("taskset", "-apc", strconv.Itoa(core), strconv.Itoa(p)).CombinedOutput()
		if err != nil && processAlive(p) {
			return fmt.Errorf("taskset -apc %d %d: %v: %s", core, p, err, bytes.TrimSpace(out))
		}
	}
	return nil
}

func processAlive(pid int) bool {
	_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
	return err == nil
}

// affinityOf summarises the Cpus_allowed_list of pid and its children,
// e.g. "0 x41" (41 processes allowed on core 0 only).
func affinityOf(pid int) string {
	count := map[string]int{}
	for _, p := range append([]int{pid}, proctree.Children(pid)...) {
		if l := cpusAllowed(p); l != "" {
			count[l]++
		}
	}
	var parts []string
	for l, k := range count {
		parts = append(parts, fmt.Sprintf("%s x%d", l, k))
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

// cpusAllowed is the Cpus_allowed_list of a process.
func cpusAllowed(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Cpus_allowed_list:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// snapshot is the CPU counters at one instant.
type snapshot struct {
	cores map[int][]uint64 // /proc/stat cpuN: user nice system idle iowait irq softirq steal
	self  float64          // CPU seconds of this process
	procs []map[int]uint64 // per node: pid -> utime+stime ticks
}

// userHZ is the unit of /proc times (USER_HZ, 100 on Linux).
const userHZ = 100

func take(pids []int) snapshot {
	s := snapshot{cores: map[int][]uint64{}}
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) < 9 || !strings.HasPrefix(f[0], "cpu") || f[0] == "cpu" {
				continue
			}
			core, err := strconv.Atoi(f[0][3:])
			if err != nil {
				continue
			}
			v := make([]uint64, 8)
			for i := range v {
				v[i], _ = strconv.ParseUint(f[i+1], 10, 64)
			}
			s.cores[core] = v
		}
	}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		s.self = tv(ru.Utime) + tv(ru.Stime)
	}
	for _, pid := range pids {
		m := map[int]uint64{}
		for _, p := range append([]int{pid}, proctree.Children(pid)...) {
			f, ok := proctree.StatFields(fmt.Sprintf("/proc/%d/stat", p))
			if !ok || len(f) < 13 {
				continue
			}
			u, _ := strconv.ParseUint(f[11], 10, 64)
			st, _ := strconv.ParseUint(f[12], 10, 64)
			m[p] = u + st
		}
		s.procs = append(s.procs, m)
	}
	return s
}

func tv(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }

func coreDelta(a, b map[int][]uint64) []coreUse {
	var out []coreUse
	for core, vb := range b {
		va, ok := a[core]
		if !ok {
			continue
		}
		d := make([]float64, 8)
		var total float64
		for i := range d {
			d[i] = float64(vb[i] - va[i])
			total += d[i]
		}
		if total == 0 {
			continue
		}
		idle, iowait, steal := d[3], d[4], d[7]
		out = append(out, coreUse{Core: core, Busy: 100 * (total - idle - iowait - steal) / total,
			IOWait: 100 * iowait / total, Steal: 100 * steal / total})
	}
	slices.SortFunc(out, func(x, y coreUse) int { return x.Core - y.Core })
	return out
}

// procDelta is the CPU seconds the processes used between a and b; a
// process started in between counts whole.
func procDelta(a, b map[int]uint64) float64 {
	var ticks uint64
	for p, t := range b {
		if t0, ok := a[p]; ok && t >= t0 {
			ticks += t - t0
		} else if !ok {
			ticks += t
		}
	}
	return float64(ticks) / userHZ
}

// waitQuiet polls the 1-minute load average every 30 s until it is below
// limit, at most until deadline; it says how that went.
func waitQuiet(ctx context.Context, limit float64, deadline time.Time, stderr io.Writer) string {
	began := time.Now()
	for {
		la := measure.LoadAvg()
		one, _ := strconv.ParseFloat(strings.Fields(la + " x")[0], 64)
		if one < limit {
			return fmt.Sprintf("quiet (load %s) after %s", la, time.Since(began).Round(time.Second))
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Sprintf("NOT quiet: load %s after waiting %s; measured anyway", la, time.Since(began).Round(time.Second))
		}
		fmt.Fprintf(stderr, "shardwrites: %s load %s, waiting for < %.2f\n", time.Now().Format("15:04:05"), la, limit)
		select {
		case <-ctx.Done():
		case <-time.After(30 * time.Second):
		}
	}
}

func printResult(w io.Writer, r result) {
	fmt.Fprintf(w, "\n== %d node(s), cores %v (loadavg before: %s", r.Nodes, r.Cores, r.LoadBefore)
	if r.WaitedQuiet != "" {
		fmt.Fprintf(w, "; %s", r.WaitedQuiet)
	}
	fmt.Fprintf(w, ")\n")
	fmt.Fprintf(w, "writes/s %.0f  (%d writes in %.0f s, %d errors)  latency p50 %.2f ms  p90 %.2f ms  p99 %.2f ms  max %.2f ms\n",
		r.WritesPerSec, r.Writes, r.Seconds, r.Errors, r.P50ms, r.P90ms, r.P99ms, r.MaxMs)
	if r.FirstError != "" {
		fmt.Fprintf(w, "first error: %s\n", r.FirstError)
	}
	for _, p := range r.PerNode {
		fmt.Fprintf(w, "  %s shards %-9s core %d: %6d writes (%.1f%%), %.2f server CPU-s in window (%.0f µs/write), %d rows in total; affinity of its processes: %s\n",
			p.Name, p.Shards, p.Core, p.Writes, 100*p.Share, p.ServerCPU, perWrite(p.ServerCPU, p.Writes), p.Rows, p.Affinity)
	}
	var cpu []string
	for _, c := range r.CPU {
		cpu = append(cpu, fmt.Sprintf("cpu%d busy %.0f%% iowait %.0f%% steal %.0f%%", c.Core, c.Busy, c.IOWait, c.Steal))
	}
	fmt.Fprintf(w, "  %s; load generator (%s) %.2f CPU-s (%.0f µs/write)\n", strings.Join(cpu, ", "), r.Client, r.ClientCPUSec, perWrite(r.ClientCPUSec, r.Writes))
}

func perWrite(sec float64, writes int) float64 {
	if writes == 0 {
		return 0
	}
	return sec / float64(writes) * 1e6
}

func printSummary(w io.Writer, rs []result) {
	var base float64
	for _, r := range rs {
		if r.Nodes == 1 {
			base = r.WritesPerSec
			break
		}
	}
	fmt.Fprintf(w, "\n== summary\n")
	for _, r := range rs {
		line := fmt.Sprintf("%d node(s): %8.0f writes/s  p50 %.2f ms  p99 %.2f ms", r.Nodes, r.WritesPerSec, r.P50ms, r.P99ms)
		if base > 0 {
			ratio := r.WritesPerSec / base
			line += fmt.Sprintf("  ratio to 1 node %.2fx  (scaling efficiency %.0f%% of %dx)", ratio, 100*ratio/float64(r.Nodes), r.Nodes)
		}
		fmt.Fprintln(w, line)
	}
}
