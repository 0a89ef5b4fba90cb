package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/globomantics/globomantics/internal/platform/netns"
)

const usage = `usage: globomantics cluster <command> --dir DIR [flags]

commands:
  up      start the scaled-out shop as real processes in DIR, in the background,
          and print the shop's URL and the control room's URL, a line each
  status  show every process: name, group, state, pid, restarts, URL
          (exit status 1 unless all are ready)
  down    stop the fleet (storefronts first, PostgreSQL last) and remove its data
  partition  cut the --hosts named (comma-separated) from the fleet's other hosts
          (a fleet started with up --hosts: shop1, shop2, infra)
  heal    undo every partition
  run     the supervisor itself (started by up)

flags:
`

// Options are what the composition root gives the cluster command.
type Options struct {
	// Components is the shop's service graph (from the app's registry).
	Components []Component
	RunOptions
}

// Main runs "globomantics cluster" with args (the words after "cluster"):
// results on stdout, progress and errors on stderr.
func Main(ctx context.Context, args []string, o Options, stdout, stderr io.Writer) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fmt.Fprint(stderr, usage)
		return errors.New("cluster: missing command (up, status, down)")
	}
	cmd := args[0]
	fs := flag.NewFlagSet("cluster "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	dir := fs.String("dir", "", "`directory` of the fleet: data, logs, credentials and cluster.json (required)")
	storefronts := fs.Int("storefronts", 3, "storefront processes (up)")
	instances := fs.Int("instances", 2, "processes of each service (up)")
	workers := fs.Int("workers", 1, "processes of each worker: thumbnails, mail, webhooks (up)")
	host := fs.String("listen-host", "127.0.0.1", "`address` every listener binds (up)")
	timeout := fs.Duration("timeout", 5*time.Minute, "how long up waits for the fleet to be ready")
	rateLimits := fs.Bool("rate-limits", true, "limit login, registration and checkout attempts (off for load tests and test suites)")
	autoscale := fs.Bool("autoscale", true, "grow and shrink the worker and storefront groups from their load (up)")
	faults := fs.Bool("fault-injection", true, "let checkout and payment take injected faults (the control room's knobs); only on loopback")
	var hosts string
	if cmd == "partition" {
		fs.StringVar(&hosts, "hosts", "", "the `hosts` to cut off from the others, comma-separated (partition)")
	} else {
		fs.Var((*hostsValue)(&hosts), "hosts", "run the fleet on three network-namespace hosts, shop1, shop2 and infra; needs root and ip (up)")
	}
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return fmt.Errorf("cluster %s: %w", cmd, err)
	}
	if *dir == "" || fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("cluster %s: --dir is required, and no other arguments", cmd)
	}
	abs, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	switch cmd {
	case "up":
		if *storefronts < 1 || *instances < 1 || *workers < 1 {
			return errors.New("cluster up: --storefronts, --instances and --workers must be at least 1")
		}
		onHosts, err := hostsFlag(hosts)
		if err != nil {
			return err
		}
		if onHosts && *host != "127.0.0.1" {
			return errors.New("cluster up: --hosts places every listener on its host's address; leave --listen-host alone")
		}
		pl := plan{dir: abs, listenHost: *host, storefronts: *storefronts, instances: *instances, workers: *workers,
			rateLimits: *rateLimits, faults: *faults && isLoopback(*host) && !onHosts, autoscale: *autoscale, hosts: onHosts, components: o.Components}
		return up(ctx, pl, *timeout, stdout, stderr)
	case "status":
		return status(ctx, abs, stdout)
	case "down":
		return down(ctx, abs, stderr)
	case "partition":
		return partitionCmd(ctx, abs, hosts, stderr)
	case "heal":
		return healCmd(ctx, abs, stderr)
	case "run":
		log := slog.New(slog.NewTextHandler(stderr, nil))
		return runFleet(ctx, abs, o.RunOptions, log)
	}
	fs.Usage()
	return fmt.Errorf("cluster: unknown command %q", cmd)
}

// missingBinaries names the server binaries the fleet runs that are not
// installed, with the Debian packages that install them.
func missingBinaries() error {
	var missing []string
	look := func(bin, pkg string, alt ...string) {
		if _, err := exec.LookPath(bin); err == nil {
			return
		}
		for _, a := range alt {
			if m, _ := filepath.Glob(a); len(m) > 0 {
				return
			}
		}
		missing = append(missing, fmt.Sprintf("%s (Debian package %s)", bin, pkg))
	}
	look("pg_autoctl", "pg-auto-failover-cli")
	if m, _ := filepath.Glob("/usr/lib/postgresql/*/lib/pgautofailover.so"); len(m) == 0 {
		missing = append(missing, "the pgautofailover extension (Debian package postgresql-15-auto-failover)")
	}
	look("postgres", "postgresql-15", "/usr/lib/postgresql/*/bin/postgres")
	look("initdb", "postgresql-15", "/usr/lib/postgresql/*/bin/initdb")
	look("redis-server", "redis-server")
	look("redis-sentinel", "redis-sentinel")
	if len(missing) > 0 {
		return fmt.Errorf("cluster up: missing %s; install them (apt-get install pg-auto-failover-cli postgresql-15-auto-failover postgresql-15 redis-server redis-sentinel)", strings.Join(missing, ", "))
	}
	return nil
}

// running reports a live supervisor or a live recorded process of the
// fleet in dir.
func running(st *State) (what string, ok bool) {
	if ownedBy(st.Supervisor, st.Dir) {
		return fmt.Sprintf("its supervisor runs (pid %d)", st.Supervisor), true
	}
	for _, sp := range st.Specs {
		if sp.PID > 0 && ownedBy(sp.PID, st.Dir) {
			return fmt.Sprintf("%s still runs (pid %d) though the supervisor is gone", sp.Name, sp.PID), true
		}
	}
	return "", false
}

func up(ctx context.Context, pl plan, timeout time.Duration, stdout, stderr io.Writer) error {
	if err := missingBinaries(); err != nil {
		return err
	}
	prev, err := ReadState(pl.dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if prev != nil {
		if what, ok := running(prev); ok {
			return fmt.Errorf("cluster up: a fleet is already running in %s: %s; see \"globomantics cluster status --dir %s\", or stop it with \"globomantics cluster down --dir %s\"", pl.dir, what, pl.dir, pl.dir)
		}
		if err := removeNet(ctx, prev); err != nil {
			return fmt.Errorf("cluster up: the hosts of the last run: %w", err)
		}
	}
	if pl.hosts {
		if err := netns.Available(); err != nil {
			return fmt.Errorf("cluster up --hosts: %w", err)
		}
	}
	if err := os.MkdirAll(filepath.Join(pl.dir, "logs"), 0o755); err != nil {
		return err
	}
	if err := os.Chmod(pl.dir, 0o755); err != nil { // PostgreSQL runs as postgres below it
		return err
	}
	st, err := buildState(pl, prev)
	if err != nil {
		return fmt.Errorf("cluster up: %w", err)
	}
	if err := st.write(); err != nil {
		return fmt.Errorf("cluster up: %w", err)
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	logPath := filepath.Join(pl.dir, "logs", "supervisor.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(exe, "cluster", "run", "--dir", pl.dir)
	cmd.Dir = pl.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	t0 := time.Now()
	err = cmd.Start()
	logf.Close()
	if err != nil {
		return fmt.Errorf("cluster up: start the supervisor: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	fmt.Fprintf(stderr, "cluster up: supervisor pid %d, log %s\n", cmd.Process.Pid, logPath)

	fail := func(why error) error {
		fmt.Fprintf(stderr, "cluster up: %v\n--- last lines of %s ---\n%s\n---\n", why, logPath, tail(logPath, 40))
		fmt.Fprintln(stderr, "cluster up: stopping what was started")
		if derr := down(context.WithoutCancel(ctx), pl.dir, stderr); derr != nil {
			why = errors.Join(why, derr)
		}
		return fmt.Errorf("cluster up: %w", why)
	}
	deadline := time.After(timeout)
	hc := &http.Client{Timeout: 2 * time.Second}
	lastStage := ""
	for {
		var rd Readiness
		resp, err := hc.Get(st.ControlURL + "/api/ready")
		if err == nil {
			_ = json.NewDecoder(resp.Body).Decode(&rd)
			resp.Body.Close()
			if rd.Ready {
				break
			}
			if rd.Error != "" {
				return fail(errors.New(rd.Error))
			}
			if rd.Stage != lastStage {
				fmt.Fprintf(stderr, "cluster up: %s (%s)\n", rd.Stage, time.Since(t0).Round(time.Second))
				lastStage = rd.Stage
			}
		}
		select {
		case err := <-exited:
			return fail(fmt.Errorf("the supervisor exited: %v", err))
		case <-deadline:
			return fail(fmt.Errorf("not ready after %v (stage %q)", timeout, lastStage))
		case <-ctx.Done():
			return fail(ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
	fmt.Fprintf(stderr, "cluster up: ready in %s\n", time.Since(t0).Round(100*time.Millisecond))
	if again, err := ReadState(pl.dir); err == nil && again.Hosts { // the supervisor moved it onto the hosts
		st.ShopURL = again.ShopURL
	}
	fmt.Fprintln(stdout, st.ShopURL)
	fmt.Fprintln(stdout, st.ControlURL)
	return nil
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func status(ctx context.Context, dir string, stdout io.Writer) error {
	st, err := ReadState(dir)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("cluster status: no fleet in %s", dir)
	}
	if err != nil {
		return err
	}
	var procs []Proc
	live := false
	if ownedBy(st.Supervisor, dir) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, st.ControlURL+"/api/procs", nil)
		resp, err := (&http.Client{Timeout: 3 * time.Second}).Do(req)
		if err == nil {
			live = resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&procs) == nil
			resp.Body.Close()
		}
	}
	if !live {
		fmt.Fprintf(stdout, "# supervisor not running in %s: the processes last recorded\n", dir)
		procs = procs[:0]
		for _, sp := range st.Specs {
			state := "stopped"
			if sp.PID > 0 && ownedBy(sp.PID, dir) {
				state = "orphaned"
			}
			procs = append(procs, Proc{Name: sp.Name, Group: sp.Group, Kind: sp.Kind, State: state, PID: sp.PID, PublicURL: sp.PublicURL, InternalURL: sp.InternalURL})
		}
	} else {
		fmt.Fprintf(stdout, "# fleet in %s: shop %s, control room %s\n", dir, st.ShopURL, st.ControlURL)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tGROUP\tSTATE\tPID\tRESTARTS\tURL")
	notReady := 0
	for _, p := range procs {
		u := p.InternalURL
		if p.PublicURL != "" && (p.Group == GroupStorefront || p.Kind == "edge") || u == "" {
			u = p.PublicURL
		}
		if p.State != "ready" {
			notReady++
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\n", p.Name, p.Group, p.State, p.PID, p.Restarts, u)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if !live {
		return errors.New("cluster status: supervisor not running")
	}
	if notReady > 0 {
		return fmt.Errorf("cluster status: %d of %d processes not ready", notReady, len(procs))
	}
	return nil
}
