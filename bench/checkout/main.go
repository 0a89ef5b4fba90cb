// Command checkout measures checkout throughput: checkouts per second and
// the p50/p99 latency of POST /api/v1/checkout, beside the single-row commit
// rate of the same database engine measured in the same run, and how many
// database commits one checkout costs.
//
//	go run ./bench/checkout                          # embedded SQLite, 8 shoppers, 2 s + 10 s
//	go run ./bench/checkout -backend postgres -c 8 -d 10s
//	go run ./bench/checkout -backend sqlite -cpuprofile /tmp/checkout.pprof
//
// The whole shop runs in this process, started the way the binary starts it
// (app.Run with "serve", a fresh temporary data directory, seeded, logs at
// warn). With -backend postgres a private PostgreSQL server (pgnode: durable,
// fsync and synchronous_commit on) is started in a temporary directory on a
// free loopback port, with one database per service (GLOBO_DB_<SERVICE>).
//
// Set-up: C products are listed through the catalog's internal API with a
// stock of 1,000,000 each (shopper i buys product i, so no stock row is
// shared between shoppers), and C shoppers register and log in through the
// public API. Each shopper then loops: add one unit to the cart
// (POST /api/v1/cart/items), check out (POST /api/v1/checkout with a new
// Idempotency-Key and card 4242424242424242). Only the checkout call is
// timed, from the POST to its answer; anything but 201 is an error. A 2 s
// warm-up is not counted; a checkout counts when it ends in the measured
// window, and none starts after it.
//
// Baseline, same backend, same concurrency, after the shop has stopped: C
// goroutines each INSERT one row per transaction (autocommit) for the same
// warm-up and window. SQLite: into a table of a separate file opened with
// sqldb.OpenSQLite (the shop's pragmas: WAL, synchronous=NORMAL,
// busy_timeout, at most 8 connections). PostgreSQL: into a table of a fresh
// database on the same private server, over C connections.
//
// Commits per checkout, counted in the measured window:
//   - SQLite: a connection hook of the driver (modernc.org/sqlite
//     RegisterConnectionHook, installed before the shop opens its databases)
//     counts, per database file, every committed transaction (commit hook)
//     and those that changed at least one row (pre-update hook; the shop's
//     read transactions also take the write lock, BEGIN IMMEDIATE, so they
//     show in the first count but not the second). Rows changed per table
//     are counted too.
//   - PostgreSQL: pg_stat_database.xact_commit summed over the shop's
//     databases (every committed transaction, read-only ones included; the
//     statistics are flushed by backends about once a second, read at both
//     ends while the load runs), and the COMMIT records written to the WAL
//     between pg_current_wal_flush_lsn() at both ends, counted with
//     pg_waldump (transactions that wrote something, the whole server).
//
// The result is a Markdown table and the raw numbers as JSON. Everything
// listens on 127.0.0.1; the measured window is at most 60 s; the temporary
// directories and the private server are removed at the end, on error and on
// Ctrl-C.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"modernc.org/sqlite"

	"github.com/globomantics/globomantics/bench/internal/measure"
	"github.com/globomantics/globomantics/internal/app"
	"github.com/globomantics/globomantics/internal/platform/pgnode"
	"github.com/globomantics/globomantics/internal/platform/proctree"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
	"github.com/globomantics/globomantics/internal/platform/svcauth"
)

// services are the shop's services that keep data in a database of their own.
var services = []string{"account", "catalog", "cart", "payment", "shipping", "order", "checkout"}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// The results are printed only after run has cleaned up, so that a
	// closed stdout (a pipe into head) cannot kill the process before the
	// temporary directories and the server are gone.
	var out bytes.Buffer
	err := run(ctx, os.Args[1:], &out, os.Stderr)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "checkout bench:", err)
		os.Exit(1)
	}
	_, _ = os.Stdout.Write(out.Bytes())
}

type config struct {
	backend    string
	conc       int
	dur        time.Duration
	warmup     time.Duration
	cpuProfile string
	verbose    bool
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("checkout", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.backend, "backend", "sqlite", "sqlite (the embedded default) or postgres (a private server started here)")
	fs.IntVar(&c.conc, "c", 8, "concurrent shoppers (closed loop), and writers of the baseline")
	fs.DurationVar(&c.dur, "d", 10*time.Second, "measured window, for the shop and for the baseline (at most 60s)")
	fs.DurationVar(&c.warmup, "warmup", 2*time.Second, "warm-up before each measured window (not counted)")
	fs.StringVar(&c.cpuProfile, "cpuprofile", "", "write a 5 s CPU profile of this process (shop and shoppers), taken from the shop's /debug/pprof/profile in the middle of the window, to this file")
	fs.BoolVar(&c.verbose, "v", false, "show the shop's log (warn and above) on stderr")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if c.backend != "sqlite" && c.backend != "postgres" {
		return c, fmt.Errorf("-backend must be sqlite or postgres, not %q", c.backend)
	}
	if c.conc < 1 || c.conc > 256 {
		return c, errors.New("-c must be from 1 to 256")
	}
	if c.dur <= 0 || c.warmup < 0 {
		return c, errors.New("-d must be positive and -warmup not negative")
	}
	if c.dur > 60*time.Second {
		c.dur = 60 * time.Second
	}
	if c.warmup > 30*time.Second {
		c.warmup = 30 * time.Second
	}
	return c, nil
}

// result is everything one run measured.
type result struct {
	Backend   string `json:"backend"`
	C         int    `json:"c"`
	StartedAt string `json:"started_at"`
	Machine   string `json:"machine"`
	LoadAvg   string `json:"loadavg_before"`
	LoadAfter string `json:"loadavg_after"`

	Checkouts      int            `json:"checkouts"`
	Seconds        float64        `json:"seconds"`
	CheckoutsPerS  float64        `json:"checkouts_per_s"`
	P50ms          float64        `json:"p50_ms"`
	P90ms          float64        `json:"p90_ms"`
	P99ms          float64        `json:"p99_ms"`
	MaxMs          float64        `json:"max_ms"`
	Errors         int            `json:"errors"`
	ErrorsByStatus map[string]int `json:"errors_by_status,omitempty"`
	FirstError     string         `json:"first_error,omitempty"`
	CartErrors     int            `json:"cart_errors"`
	CPU            cpuUse         `json:"cpu_shop_window"`

	BaselineCommits   int     `json:"baseline_commits"`
	BaselineCommitsPS float64 `json:"baseline_commits_per_s"`
	BaselineP50ms     float64 `json:"baseline_p50_ms"`
	BaselineP99ms     float64 `json:"baseline_p99_ms"`
	BaselineErrors    int     `json:"baseline_errors"`
	BaselineCounted   int64   `json:"baseline_commits_counted"` // by the same counter as the shop's (hook or WAL)
	BaselineCPU       cpuUse  `json:"cpu_baseline_window"`

	Ratio float64 `json:"ratio_commits_per_s_over_checkouts_per_s"`

	// CPU per checkout in the shop's window (this process: shop and
	// shoppers; PostgreSQL: the private server) and per baseline commit.
	SelfCPUmsPerCO      float64 `json:"cpu_ms_per_checkout_this_process"`
	ServerCPUmsPerCO    float64 `json:"cpu_ms_per_checkout_postgres,omitempty"`
	BaselineSelfCPUus   float64 `json:"baseline_cpu_us_per_commit_this_process"`
	BaselineServerCPUus float64 `json:"baseline_cpu_us_per_commit_postgres,omitempty"`

	// Commits in the shop's window, and per checkout.
	Commits           int64              `json:"commits"`       // SQLite: committed transactions; PostgreSQL: xact_commit
	WriteCommits      int64              `json:"write_commits"` // SQLite: those that changed a row; PostgreSQL: WAL COMMIT records
	CommitsPerCO      float64            `json:"commits_per_checkout"`
	WriteCommitsPerCO float64            `json:"write_commits_per_checkout"`
	PerDatabase       map[string]dbTally `json:"per_database"`
	RowsPerTable      map[string]int64   `json:"rows_changed_per_table,omitempty"`
	CommitMethod      string             `json:"commit_method"`
}

type dbTally struct {
	Commits      int64   `json:"commits"`
	WriteCommits int64   `json:"write_commits,omitempty"`
	PerCheckout  float64 `json:"commits_per_checkout"`
	WritesPerCO  float64 `json:"write_commits_per_checkout,omitempty"`
}

// cpuUse is the machine's and this process's CPU over a window.
type cpuUse struct {
	BusyPct     float64 `json:"machine_busy_pct"` // all cores, of their capacity
	IOWaitPct   float64 `json:"machine_iowait_pct"`
	SelfCPUSec  float64 `json:"this_process_cpu_s"`       // shop + shoppers (or baseline writers)
	ServerCPUS  float64 `json:"postgres_cpu_s,omitempty"` // the private server's processes
	OtherCPUSec float64 `json:"other_processes_cpu_s"`    // everything else on the machine
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	c, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	res := result{Backend: c.backend, C: c.conc, StartedAt: time.Now().UTC().Format("2006-01-02 15:04 UTC"),
		Machine: measure.Machine(), LoadAvg: measure.LoadAvg()}

	root, err := os.MkdirTemp("", "globo-benchcheckout-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(root)
	// The PostgreSQL server runs as the postgres user when this runs as
	// root: it must reach its directory under root.
	if err := os.Chmod(root, 0o755); err != nil {
		return err
	}

	// The commit counters see every SQLite connection opened from now on.
	counters := installSQLiteCounters()

	var node *pgnode.Node
	env := map[string]string{
		"GLOBO_SERVICE_TOKEN": "bench-" + token(),
		"GLOBO_LOG_LEVEL":     "warn",
		"GLOBO_SEED":          "true",
		// Every shopper registers and checks out from one address: the
		// storefront's per-client limits would answer 429.
		"GLOBO_RATE_LIMITS": "false",
	}
	if c.backend == "postgres" {
		fmt.Fprintln(stderr, "starting a private PostgreSQL server ...")
		node, err = pgnode.StartPrimary(ctx, pgnode.Options{Dir: filepath.Join(root, "pg"),
			// Keep the window's WAL for pg_waldump even if a checkpoint runs.
			Settings: map[string]string{"wal_keep_size": "1GB"}})
		if err != nil {
			return err
		}
		defer func() {
			if cerr := node.Close(); cerr != nil && err == nil {
				err = fmt.Errorf("stopping PostgreSQL: %w", cerr)
			}
		}()
		for _, s := range services {
			if err := node.CreateDatabase(ctx, "shop_"+s); err != nil {
				return err
			}
			env["GLOBO_DB_"+strings.ToUpper(s)] = node.DSN("shop_" + s)
		}
		if err := node.CreateDatabase(ctx, "baseline"); err != nil {
			return err
		}
	}

	// The shop, in this process.
	shopLog := &measure.TailBuffer{Max: 64 << 10}
	var shopOut io.Writer = shopLog
	if c.verbose {
		shopOut = io.MultiWriter(shopLog, stderr)
	}
	httpAddr, debugAddr, internalAddr := measure.LoopbackAddr(), measure.LoopbackAddr(), measure.LoopbackAddr()
	if httpAddr == "" || debugAddr == "" || internalAddr == "" {
		return errors.New("no free port")
	}
	shopCtx, stopShop := context.WithCancel(ctx)
	shopDone := make(chan error, 1)
	shopArgs := []string{"globomantics", "serve", "--http-addr", httpAddr, "--debug-addr", debugAddr,
		"--internal-addr", internalAddr, "--data-dir", filepath.Join(root, "shop")}
	go func() {
		shopDone <- app.Run(shopCtx, shopArgs, func(k string) string { return env[k] }, io.Discard, shopOut)
	}()
	shopStopped := false
	stopAndWait := func() error {
		if shopStopped {
			return nil
		}
		shopStopped = true
		stopShop()
		select {
		case err := <-shopDone:
			return err
		case <-time.After(20 * time.Second):
			return errors.New("the shop did not stop within 20 s")
		}
	}
	defer func() { _ = stopAndWait() }()
	base := "http://" + httpAddr
	fmt.Fprintf(stderr, "starting the shop on %s (%s) ...\n", base, c.backend)
	if err := waitReady(ctx, base, shopDone, shopLog); err != nil {
		return err
	}

	tr := &http.Transport{MaxIdleConnsPerHost: 4 * c.conc, IdleConnTimeout: time.Minute}
	// Products are added through the catalog's internal API, as the
	// operator.
	operator, _ := svcauth.FromSharedToken(env["GLOBO_SERVICE_TOKEN"]).Credential(svcauth.Operator)
	products, err := listProducts(ctx, tr, base, "http://"+internalAddr, operator, c.conc)
	if err != nil {
		return fmt.Errorf("listing the products: %w (shop log: %s)", err, shopLog)
	}
	shoppers := make([]*shopper, c.conc)
	for i := range shoppers {
		if shoppers[i], err = newShopper(ctx, tr, base, i, products[i]); err != nil {
			return fmt.Errorf("shopper %d: %w (shop log: %s)", i, err, shopLog)
		}
	}

	var pg *pgCounter
	if node != nil {
		if pg, err = openPGCounter(ctx, node); err != nil {
			return err
		}
		defer pg.close()
	}

	// The load.
	fmt.Fprintf(stderr, "%d shoppers: warm-up %s, window %s ...\n", c.conc, c.warmup, c.dur)
	t0 := time.Now().Add(c.warmup)
	t1 := t0.Add(c.dur)
	var wg sync.WaitGroup
	for _, s := range shoppers {
		wg.Add(1)
		go func() { defer wg.Done(); s.loop(ctx, t0, t1) }()
	}
	var (
		sqlBefore, sqlAfter map[string]sqliteTally
		pgBefore, pgAfter   pgSnapshot
		cpuBefore, cpuAfter cpuSnap
		snapErr             error
		profile             []byte
		profErr             error
	)
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		if !measure.SleepUntil(ctx, t0) {
			return
		}
		cpuBefore = takeCPU(node)
		sqlBefore = counters.snapshot()
		if pg != nil {
			if pgBefore, snapErr = pg.snapshot(ctx); snapErr != nil {
				return
			}
		}
		if c.cpuProfile != "" && c.dur >= 6*time.Second {
			wait := (c.dur - 5*time.Second) / 2
			if !measure.SleepUntil(ctx, time.Now().Add(wait)) {
				return
			}
			profile, profErr = fetchProfile(ctx, debugAddr)
		}
		if !measure.SleepUntil(ctx, t1) {
			return
		}
		cpuAfter = takeCPU(node)
		sqlAfter = counters.snapshot()
		if pg != nil {
			pgAfter, snapErr = pg.snapshot(ctx)
		}
	}()
	wg.Wait()
	<-sampled
	if err := ctx.Err(); err != nil {
		return err
	}
	if snapErr != nil {
		return snapErr
	}
	res.LoadAfter = measure.LoadAvg()
	res.CPU = cpuDelta(cpuBefore, cpuAfter)

	var lat []time.Duration
	res.ErrorsByStatus = map[string]int{}
	for _, s := range shoppers {
		lat = append(lat, s.lat...)
		res.Errors += s.errs
		res.CartErrors += s.cartErrs
		for k, v := range s.byStatus {
			res.ErrorsByStatus[k] += v
		}
		if res.FirstError == "" {
			res.FirstError = s.firstErr
		}
	}
	slices.Sort(lat)
	res.Checkouts = len(lat)
	res.Seconds = c.dur.Seconds()
	res.CheckoutsPerS = float64(res.Checkouts) / res.Seconds
	res.P50ms, res.P90ms, res.P99ms = measure.Ms(measure.Pct(lat, 50)), measure.Ms(measure.Pct(lat, 90)), measure.Ms(measure.Pct(lat, 99))
	if len(lat) > 0 {
		res.MaxMs = measure.Ms(lat[len(lat)-1])
	}

	// Commits per checkout.
	res.PerDatabase = map[string]dbTally{}
	per := func(n int64) float64 {
		if res.Checkouts == 0 {
			return 0
		}
		return float64(n) / float64(res.Checkouts)
	}
	if pg == nil {
		res.CommitMethod = "SQLite driver hooks: commit hook (every committed transaction, BEGIN IMMEDIATE read transactions included) and pre-update hook (write commits: transactions that changed at least one row), per database file, in the measured window"
		res.RowsPerTable = map[string]int64{}
		for file, a := range sqlAfter {
			b := sqlBefore[file]
			d := dbTally{Commits: a.commits - b.commits, WriteCommits: a.writeCommits - b.writeCommits}
			if d.Commits == 0 {
				continue
			}
			d.PerCheckout, d.WritesPerCO = per(d.Commits), per(d.WriteCommits)
			name := strings.TrimSuffix(filepath.Base(file), ".db")
			res.PerDatabase[name] = d
			res.Commits += d.Commits
			res.WriteCommits += d.WriteCommits
			for t, n := range a.rows {
				if dn := n - b.rows[t]; dn > 0 {
					res.RowsPerTable[name+"."+t] = dn
				}
			}
		}
	} else {
		res.CommitMethod = "PostgreSQL: pg_stat_database.xact_commit summed over the shop's 7 databases (every committed transaction, read-only ones included), and COMMIT records in the WAL between pg_current_wal_flush_lsn() at both ends of the window, counted by pg_waldump --stats=record (transactions that wrote, whole server)"
		for db, a := range pgAfter.xact {
			if !strings.HasPrefix(db, "shop_") {
				continue
			}
			n := a - pgBefore.xact[db]
			res.PerDatabase[strings.TrimPrefix(db, "shop_")] = dbTally{Commits: n, PerCheckout: per(n)}
			res.Commits += n
		}
		if res.WriteCommits, err = walCommits(ctx, node, pgBefore.lsn, pgAfter.lsn); err != nil {
			return err
		}
	}
	res.CommitsPerCO, res.WriteCommitsPerCO = per(res.Commits), per(res.WriteCommits)

	if c.cpuProfile != "" {
		switch {
		case profErr != nil:
			fmt.Fprintf(stderr, "CPU profile not taken: %v\n", profErr)
		case profile == nil:
			fmt.Fprintln(stderr, "CPU profile not taken: the window is shorter than 6 s")
		default:
			if err := os.WriteFile(c.cpuProfile, profile, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(stderr, "CPU profile (5 s, mid-window) written to %s\n", c.cpuProfile)
		}
	}

	// The shop stops before the baseline runs, so that the baseline has the
	// machine to itself as the shop did (the shop's background loops and
	// PostgreSQL connections are gone).
	if err := stopAndWait(); err != nil {
		return fmt.Errorf("stopping the shop: %w\n%s", err, shopLog)
	}

	fmt.Fprintf(stderr, "baseline: %d writers, single-row INSERT commits, warm-up %s, window %s ...\n", c.conc, c.warmup, c.dur)
	if err := baseline(ctx, c, root, node, counters, &res); err != nil {
		return fmt.Errorf("baseline: %w", err)
	}
	if res.CheckoutsPerS > 0 {
		res.Ratio = res.BaselineCommitsPS / res.CheckoutsPerS
		res.SelfCPUmsPerCO = 1e3 * res.CPU.SelfCPUSec / float64(res.Checkouts)
		res.ServerCPUmsPerCO = 1e3 * res.CPU.ServerCPUS / float64(res.Checkouts)
	}
	if res.BaselineCommits > 0 {
		res.BaselineSelfCPUus = 1e6 * res.BaselineCPU.SelfCPUSec / float64(res.BaselineCommits)
		res.BaselineServerCPUus = 1e6 * res.BaselineCPU.ServerCPUS / float64(res.BaselineCommits)
	}

	printTable(stdout, res)
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	fmt.Fprintln(stdout, "\n```json")
	if err := enc.Encode(res); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "```")
	return nil
}

// waitReady polls /readyz until it answers 200 (at most 90 s).
func waitReady(ctx context.Context, base string, done <-chan error, log fmt.Stringer) error {
	deadline := time.Now().Add(90 * time.Second)
	for {
		select {
		case err := <-done:
			return fmt.Errorf("the shop exited at start: %v\n%s", err, log)
		default:
		}
		resp, err := http.Get(base + "/readyz")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the shop was not ready within 90 s (last: %v)\n%s", err, log)
		}
		if !measure.SleepUntil(ctx, time.Now().Add(100*time.Millisecond)) {
			return ctx.Err()
		}
	}
}

// listProducts lists n products with a stock of 1,000,000 each through the
// catalog's internal API, in the first category.
func listProducts(ctx context.Context, tr http.RoundTripper, base, internal, tok string, n int) ([]string, error) {
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	var cats struct {
		Items []struct {
			ID string `json:"id"`
		} `json:"items"`
	}
	if err := call(ctx, hc, "GET", base+"/api/v1/categories", nil, nil, 200, &cats); err != nil {
		return nil, err
	}
	if len(cats.Items) == 0 {
		return nil, errors.New("the seeded catalog has no category")
	}
	img := image.NewRGBA(image.Rect(0, 0, 8, 8))
	for i := range img.Pix {
		img.Pix[i] = 0x80
	}
	img.Set(0, 0, color.RGBA{R: 255, A: 255})
	var pngBuf bytes.Buffer
	if err := png.Encode(&pngBuf, img); err != nil {
		return nil, err
	}
	var out []string
	for i := range n {
		item := map[string]any{"name": fmt.Sprintf("Bench widget %d", i+1), "description": "For the checkout benchmark.",
			"category": cats.Items[0].ID, "price": map[string]any{"amount": 1250, "currency": "USD"},
			"stock": 1_000_000, "image": pngBuf.Bytes()}
		var p struct {
			ID    string `json:"id"`
			Stock int    `json:"stock"`
		}
		h := http.Header{"Authorization": {"Bearer " + tok}}
		if err := call(ctx, hc, "POST", internal+"/svc/catalog/v1/products", h, item, 201, &p); err != nil {
			return nil, err
		}
		out = append(out, p.ID)
	}
	return out, nil
}

// shopper is one customer: a cookie jar, a product to buy, and tallies.
type shopper struct {
	hc       *http.Client
	base     string
	product  string
	n        int
	id       int
	lat      []time.Duration
	errs     int
	cartErrs int
	byStatus map[string]int
	firstErr string
}

func newShopper(ctx context.Context, tr http.RoundTripper, base string, i int, product string) (*shopper, error) {
	jar, _ := cookiejar.New(nil)
	s := &shopper{hc: &http.Client{Transport: tr, Jar: jar, Timeout: 60 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		base: base, product: product, id: i, byStatus: map[string]int{}}
	email := fmt.Sprintf("shopper%d-%s@example.com", i, token()[:8])
	const password = "bench-password-1234"
	if err := call(ctx, s.hc, "POST", base+"/api/v1/accounts", nil,
		map[string]string{"email": email, "password": password, "name": fmt.Sprintf("Shopper %d", i)}, 201, nil); err != nil {
		return nil, fmt.Errorf("register: %w", err)
	}
	if err := call(ctx, s.hc, "POST", base+"/api/v1/sessions", nil,
		map[string]string{"email": email, "password": password}, 200, nil); err != nil {
		return nil, fmt.Errorf("login: %w", err)
	}
	return s, nil
}

// checkoutBody is the same for every checkout (the key differs).
var checkoutBody = mustJSON(map[string]any{
	"shipping_address": map[string]string{"name": "Ada Shopper", "line1": "1 Main St", "city": "Springfield",
		"region": "IL", "postal_code": "12345", "country": "US"},
	"payment": map[string]any{"card_number": "4242424242424242", "exp_month": 12,
		"exp_year": time.Now().Year() + 3, "cvc": "123"},
})

// loop adds one unit and checks out until t1; checkouts ending in [t0, t1)
// are counted.
func (s *shopper) loop(ctx context.Context, t0, t1 time.Time) {
	addBody := mustJSON(map[string]any{"product_id": s.product, "quantity": 1})
	for ctx.Err() == nil && time.Now().Before(t1) {
		st, body, err := post(ctx, s.hc, s.base+"/api/v1/cart/items", nil, addBody)
		if err != nil || st != 200 {
			if now := time.Now(); !now.Before(t0) && now.Before(t1) {
				s.cartErrs++
				s.note("cart", st, body, err)
			}
			measure.SleepUntil(ctx, time.Now().Add(50*time.Millisecond))
			continue
		}
		s.n++
		key := fmt.Sprintf("bench-%d-%d-%s", s.id, s.n, token()[:8])
		begin := time.Now()
		if !begin.Before(t1) {
			return
		}
		st, body, err = post(ctx, s.hc, s.base+"/api/v1/checkout", http.Header{"Idempotency-Key": {key}}, checkoutBody)
		end := time.Now()
		if end.Before(t0) || !end.Before(t1) {
			continue
		}
		if err != nil || st != 201 {
			if ctx.Err() != nil {
				return
			}
			s.errs++
			s.note("checkout", st, body, err)
			continue
		}
		s.lat = append(s.lat, end.Sub(begin))
	}
}

func (s *shopper) note(what string, status int, body []byte, err error) {
	k := fmt.Sprintf("%s %d", what, status)
	if err != nil {
		k = what + " transport error"
	}
	s.byStatus[k]++
	if s.firstErr == "" {
		if err != nil {
			s.firstErr = fmt.Sprintf("%s: %v", what, err)
		} else {
			s.firstErr = fmt.Sprintf("%s: %d %s", what, status, bytes.TrimSpace(body))
		}
	}
}

// post sends a JSON body and returns the status and the body.
func post(ctx context.Context, hc *http.Client, u string, h http.Header, body []byte) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, "POST", u, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	for k, v := range h {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, b, err
}

// call sends in (JSON, if not nil), wants status and decodes the answer into out.
func call(ctx context.Context, hc *http.Client, method, u string, h http.Header, in any, want int, out any) error {
	var rd io.Reader
	if in != nil {
		rd = bytes.NewReader(mustJSON(in))
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return err
	}
	for k, v := range h {
		req.Header[k] = v
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: %d %s", method, u, resp.StatusCode, bytes.TrimSpace(b))
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// baseline measures single-row INSERT commits with c.conc writers on the
// same backend, for the same warm-up and window.
func baseline(ctx context.Context, c config, root string, node *pgnode.Node, counters *sqliteCounters, res *result) error {
	var (
		db       *sql.DB
		closeDB  func() error
		insert   string
		pgBefore pgSnapshot
		pg       *pgCounter
		file     string
	)
	if node == nil {
		file = filepath.Join(root, "baseline", "baseline.db")
		sdb, err := sqldb.OpenSQLite(ctx, file)
		if err != nil {
			return err
		}
		db, closeDB = sdb.DB, sdb.Close
		insert = `INSERT INTO bench (writer, n, payload, at) VALUES (?, ?, ?, ?)`
		if _, err := db.ExecContext(ctx, `CREATE TABLE bench (id INTEGER PRIMARY KEY, writer INTEGER NOT NULL, n INTEGER NOT NULL, payload TEXT NOT NULL, at INTEGER NOT NULL)`); err != nil {
			closeDB()
			return err
		}
	} else {
		cfg, err := pgxConfig(node.DSN("baseline"))
		if err != nil {
			return err
		}
		db = stdlib.OpenDB(*cfg)
		db.SetMaxOpenConns(c.conc)
		db.SetMaxIdleConns(c.conc)
		closeDB = db.Close
		insert = `INSERT INTO bench (writer, n, payload, at) VALUES ($1, $2, $3, $4)`
		if _, err := db.ExecContext(ctx, `CREATE TABLE bench (id bigserial PRIMARY KEY, writer int NOT NULL, n bigint NOT NULL, payload text NOT NULL, at bigint NOT NULL)`); err != nil {
			db.Close()
			return err
		}
		if pg, err = openPGCounter(ctx, node); err != nil {
			db.Close()
			return err
		}
		defer pg.close()
	}
	defer closeDB()

	t0 := time.Now().Add(c.warmup)
	t1 := t0.Add(c.dur)
	type tally struct {
		lat  []time.Duration
		errs int
		err  error
	}
	tallies := make([]tally, c.conc)
	var wg sync.WaitGroup
	for w := range c.conc {
		wg.Add(1)
		go func(t *tally) {
			defer wg.Done()
			payload := strings.Repeat("x", 64)
			for n := 0; ctx.Err() == nil; n++ {
				begin := time.Now()
				if !begin.Before(t1) {
					return
				}
				_, err := db.ExecContext(ctx, insert, w, n, payload, begin.UnixMilli())
				end := time.Now()
				if end.Before(t0) || !end.Before(t1) {
					continue
				}
				if err != nil {
					t.errs++
					if t.err == nil {
						t.err = err
					}
					continue
				}
				t.lat = append(t.lat, end.Sub(begin))
			}
		}(&tallies[w])
	}
	var (
		before, after       map[string]sqliteTally
		cpuBefore, cpuAfter cpuSnap
		pgAfter             pgSnapshot
		snapErr             error
	)
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		if !measure.SleepUntil(ctx, t0) {
			return
		}
		cpuBefore, before = takeCPU(node), counters.snapshot()
		if pg != nil {
			if pgBefore, snapErr = pg.snapshot(ctx); snapErr != nil {
				return
			}
		}
		if !measure.SleepUntil(ctx, t1) {
			return
		}
		cpuAfter, after = takeCPU(node), counters.snapshot()
		if pg != nil {
			pgAfter, snapErr = pg.snapshot(ctx)
		}
	}()
	wg.Wait()
	<-sampled
	if err := ctx.Err(); err != nil {
		return err
	}
	if snapErr != nil {
		return snapErr
	}
	var lat []time.Duration
	for _, t := range tallies {
		lat = append(lat, t.lat...)
		res.BaselineErrors += t.errs
		if t.err != nil && res.FirstError == "" {
			res.FirstError = "baseline: " + t.err.Error()
		}
	}
	slices.Sort(lat)
	res.BaselineCommits = len(lat)
	res.BaselineCommitsPS = float64(len(lat)) / c.dur.Seconds()
	res.BaselineP50ms, res.BaselineP99ms = measure.Ms(measure.Pct(lat, 50)), measure.Ms(measure.Pct(lat, 99))
	res.BaselineCPU = cpuDelta(cpuBefore, cpuAfter)
	if node == nil {
		res.BaselineCounted = after[file].commits - before[file].commits
	} else {
		n, err := walCommits(ctx, node, pgBefore.lsn, pgAfter.lsn)
		if err != nil {
			return err
		}
		res.BaselineCounted = n
	}
	return nil
}

// --- SQLite commit counting -------------------------------------------------

// sqliteCounters counts commits per database file, over every connection
// the driver opens after installSQLiteCounters.
type sqliteCounters struct {
	mu    sync.Mutex
	files map[string]*fileCounter
}

type fileCounter struct {
	commits, writeCommits atomic.Int64
	mu                    sync.Mutex
	rows                  map[string]int64
}

type sqliteTally struct {
	commits, writeCommits int64
	rows                  map[string]int64
}

func installSQLiteCounters() *sqliteCounters {
	sc := &sqliteCounters{files: map[string]*fileCounter{}}
	sqlite.RegisterConnectionHook(func(conn sqlite.ExecQuerierContext, dsn string) error {
		h, ok := conn.(sqlite.HookRegisterer)
		if !ok {
			return nil
		}
		file := strings.TrimPrefix(dsn, "file:")
		if i := strings.IndexByte(file, '?'); i >= 0 {
			file = file[:i]
		}
		sc.mu.Lock()
		fc := sc.files[file]
		if fc == nil {
			fc = &fileCounter{rows: map[string]int64{}}
			sc.files[file] = fc
		}
		sc.mu.Unlock()
		// Hooks run on the goroutine using the connection, one at a time:
		// the connection's own state needs no lock.
		dirty := false
		h.RegisterPreUpdateHook(func(d sqlite.SQLitePreUpdateData) {
			dirty = true
			fc.mu.Lock()
			fc.rows[d.TableName]++
			fc.mu.Unlock()
		})
		h.RegisterCommitHook(func() int32 {
			fc.commits.Add(1)
			if dirty {
				fc.writeCommits.Add(1)
			}
			dirty = false
			return 0
		})
		h.RegisterRollbackHook(func() { dirty = false })
		return nil
	})
	return sc
}

func (sc *sqliteCounters) snapshot() map[string]sqliteTally {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	out := map[string]sqliteTally{}
	for f, fc := range sc.files {
		fc.mu.Lock()
		rows := make(map[string]int64, len(fc.rows))
		for t, n := range fc.rows {
			rows[t] = n
		}
		fc.mu.Unlock()
		out[f] = sqliteTally{commits: fc.commits.Load(), writeCommits: fc.writeCommits.Load(), rows: rows}
	}
	return out
}

// --- PostgreSQL commit counting ---------------------------------------------

type pgCounter struct{ db *sql.DB }

type pgSnapshot struct {
	xact map[string]int64
	lsn  string
}

func pgxConfig(dsn string) (*pgx.ConnConfig, error) { return pgx.ParseConfig(dsn) }

func openPGCounter(ctx context.Context, node *pgnode.Node) (*pgCounter, error) {
	cfg, err := pgxConfig(node.DSN("postgres"))
	if err != nil {
		return nil, err
	}
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(1)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return &pgCounter{db: db}, nil
}

func (p *pgCounter) close() { p.db.Close() }

func (p *pgCounter) snapshot(ctx context.Context) (pgSnapshot, error) {
	s := pgSnapshot{xact: map[string]int64{}}
	if err := p.db.QueryRowContext(ctx, `SELECT pg_current_wal_flush_lsn()::text`).Scan(&s.lsn); err != nil {
		return s, err
	}
	rows, err := p.db.QueryContext(ctx, `SELECT datname, xact_commit FROM pg_stat_database WHERE datname IS NOT NULL`)
	if err != nil {
		return s, err
	}
	defer rows.Close()
	for rows.Next() {
		var name string
		var n int64
		if err := rows.Scan(&name, &n); err != nil {
			return s, err
		}
		s.xact[name] = n
	}
	return s, rows.Err()
}

// walCommits counts the COMMIT records in the server's WAL from lsn0 to lsn1.
func walCommits(ctx context.Context, node *pgnode.Node, lsn0, lsn1 string) (int64, error) {
	bin := filepath.Join(pgnode.BinDir(), "pg_waldump")
	cmd := exec.CommandContext(ctx, bin, "--stats=record", "-p", filepath.Join(node.Dir(), "data", "pg_wal"), "-s", lsn0, "-e", lsn1)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("pg_waldump %s..%s: %v: %s", lsn0, lsn1, err, tailOf(out))
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	var n int64
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == "Transaction/COMMIT" {
			v, _ := strconv.ParseInt(f[1], 10, 64)
			n += v
		}
	}
	return n, nil
}

// --- CPU ----------------------------------------------------------------------

type cpuSnap struct {
	total, idle, iowait uint64 // /proc/stat "cpu" ticks
	self                float64
	server              float64
	at                  time.Time
}

func takeCPU(node *pgnode.Node) cpuSnap {
	s := cpuSnap{at: time.Now()}
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		line, _, _ := strings.Cut(string(b), "\n")
		f := strings.Fields(line)
		for i := 1; i < len(f) && i <= 8; i++ {
			v, _ := strconv.ParseUint(f[i], 10, 64)
			s.total += v
			switch i {
			case 4:
				s.idle = v
			case 5:
				s.iowait = v
			}
		}
	}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		s.self = tv(ru.Utime) + tv(ru.Stime)
	}
	if node != nil {
		if pid := postmasterPID(node); pid > 0 {
			for _, p := range append([]int{pid}, proctree.Children(pid)...) {
				f, ok := proctree.StatFields(fmt.Sprintf("/proc/%d/stat", p))
				if !ok || len(f) < 13 {
					continue
				}
				u, _ := strconv.ParseUint(f[11], 10, 64)
				st, _ := strconv.ParseUint(f[12], 10, 64)
				s.server += float64(u+st) / 100
			}
		}
	}
	return s
}

// cpuDelta: the server's CPU is the change of the sum over its processes
// alive at both ends; backends that exit in between are missed (the shop's
// pools keep theirs open).
func cpuDelta(a, b cpuSnap) cpuUse {
	var u cpuUse
	total := float64(b.total - a.total)
	if total > 0 {
		busy := total - float64(b.idle-a.idle) - float64(b.iowait-a.iowait)
		u.BusyPct = 100 * busy / total
		u.IOWaitPct = 100 * float64(b.iowait-a.iowait) / total
		u.SelfCPUSec = b.self - a.self
		u.ServerCPUS = max(0, b.server-a.server)
		u.OtherCPUSec = max(0, busy/100-u.SelfCPUSec-u.ServerCPUS)
	}
	return u
}

func postmasterPID(node *pgnode.Node) int {
	b, err := os.ReadFile(filepath.Join(node.Dir(), "data", "postmaster.pid"))
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, _ := strconv.Atoi(strings.TrimSpace(line))
	return pid
}

func tv(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }

// --- output -------------------------------------------------------------------

func printTable(w io.Writer, r result) {
	fmt.Fprintf(w, "\nRun %s on %s; load average before %s, after the shop's window %s.\n\n", r.StartedAt, r.Machine, r.LoadAvg, r.LoadAfter)
	fmt.Fprintln(w, "| backend | C | checkouts/s | p50 ms | p99 ms | errors | baseline commits/s | ratio | commits per checkout |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|")
	var cpc string
	if r.Backend == "sqlite" {
		cpc = fmt.Sprintf("%.1f (%.1f that wrote)", r.CommitsPerCO, r.WriteCommitsPerCO)
	} else {
		cpc = fmt.Sprintf("%.1f xact_commit (%.1f WAL commits)", r.CommitsPerCO, r.WriteCommitsPerCO)
	}
	fmt.Fprintf(w, "| %s | %d | %.0f | %.1f | %.1f | %d | %.0f | 1/%.0f | %s |\n",
		r.Backend, r.C, r.CheckoutsPerS, r.P50ms, r.P99ms, r.Errors+r.CartErrors, r.BaselineCommitsPS, r.Ratio, cpc)
	fmt.Fprintln(w)
	names := make([]string, 0, len(r.PerDatabase))
	for n := range r.PerDatabase {
		names = append(names, n)
	}
	slices.Sort(names)
	fmt.Fprintln(w, "| database | commits in window | per checkout | that wrote, per checkout |")
	fmt.Fprintln(w, "|---|---:|---:|---:|")
	for _, n := range names {
		d := r.PerDatabase[n]
		wr := "-"
		if r.Backend == "sqlite" {
			wr = fmt.Sprintf("%.2f", d.WritesPerCO)
		}
		fmt.Fprintf(w, "| %s | %d | %.2f | %s |\n", n, d.Commits, d.PerCheckout, wr)
	}
	fmt.Fprintf(w, "\nshop window CPU: machine busy %.0f%% (iowait %.0f%%), this process %.1f CPU-s, PostgreSQL %.1f CPU-s, other processes %.1f CPU-s\n",
		r.CPU.BusyPct, r.CPU.IOWaitPct, r.CPU.SelfCPUSec, r.CPU.ServerCPUS, r.CPU.OtherCPUSec)
	fmt.Fprintf(w, "baseline window CPU: machine busy %.0f%% (iowait %.0f%%), this process %.1f CPU-s, PostgreSQL %.1f CPU-s, other processes %.1f CPU-s\n",
		r.BaselineCPU.BusyPct, r.BaselineCPU.IOWaitPct, r.BaselineCPU.SelfCPUSec, r.BaselineCPU.ServerCPUS, r.BaselineCPU.OtherCPUSec)
	fmt.Fprintf(w, "CPU per checkout: this process %.1f ms, PostgreSQL %.1f ms; per baseline commit: this process %.0f µs, PostgreSQL %.0f µs\n",
		r.SelfCPUmsPerCO, r.ServerCPUmsPerCO, r.BaselineSelfCPUus, r.BaselineServerCPUus)
	if r.FirstError != "" {
		fmt.Fprintf(w, "first error: %s\n", r.FirstError)
	}
}

// --- small helpers ------------------------------------------------------------

func fetchProfile(ctx context.Context, debugAddr string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+debugAddr+"/debug/pprof/profile?seconds=5", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != 200 {
		err = fmt.Errorf("%d %s", resp.StatusCode, tailOf(b))
	}
	return b, err
}

func token() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func tailOf(b []byte) string {
	if len(b) > 1000 {
		b = b[len(b)-1000:]
	}
	return string(b)
}
