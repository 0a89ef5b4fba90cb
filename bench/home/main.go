// Command home measures the storefront's anonymous home page against a raw
// net/http handler in the same run: closed-loop throughput and p50/p90/p99
// latency of GET / without cookies, for the shop and for the baseline, and
// their ratio.
//
//	go run ./bench/home                                # build the shop once, 32 connections, 2 s + 10 s
//	go run ./bench/home -binary /tmp/globo-old         # an already built shop binary (e.g. an older commit)
//	go run ./bench/home -products -cpuprofile /tmp/home.pprof
//
// The shop runs as one real process, started from its binary (built once
// from ./cmd/globomantics into a temporary directory unless -binary is
// given) with "serve" on a fresh temporary data directory: embedded SQLite,
// the demo catalog seeded, logs at warn, --rate-limits=false. The baseline
// is another process (this program, run again with -serve-baseline): a raw
// net/http handler answering every GET with the bytes of the shop's home
// page as fetched once before the load, as text/html, doing no I/O. Both
// listen on 127.0.0.1 on free ports.
//
// Load: C workers in this process, each sending one request at a time
// (closed loop) over keep-alive connections, without Accept-Encoding (the
// same uncompressed body from both servers) and without cookies. First the
// baseline, then the shop (then, with -products, the shop's HTML product
// pages and the JSON product API, round-robin over 24 products). Each target
// gets a warm-up that is not counted and a measured window; a request
// counts when it ends in the window and none starts after it. Anything but
// 200 is an error, and so is a shop answer to an anonymous visitor that sets
// a cookie.
//
// The result is a Markdown table and the raw numbers as JSON. With
// -cpuprofile a 5 s CPU profile of the shop process is taken from its debug
// listener (/debug/pprof/profile) in the middle of the shop's home-page
// window. The temporary directory is removed at the end, on error and on
// Ctrl-C; both server processes are stopped.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/globomantics/globomantics/bench/internal/measure"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	var out bytes.Buffer
	err := run(ctx, os.Args[1:], &out, os.Stderr)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "home bench:", err)
		os.Exit(1)
	}
	_, _ = os.Stdout.Write(out.Bytes())
}

type config struct {
	binary        string
	conc          int
	dur           time.Duration
	warmup        time.Duration
	products      bool
	cpuProfile    string
	verbose       bool
	serveBaseline string // internal: serve the baseline on this address
	body          string // internal: the baseline's body file
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("home", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.binary, "binary", "", "a built shop binary to run; empty: build ./cmd/globomantics once into a temporary directory")
	fs.IntVar(&c.conc, "c", 32, "concurrent connections (closed loop)")
	fs.DurationVar(&c.dur, "d", 10*time.Second, "measured window per target (at most 60s)")
	fs.DurationVar(&c.warmup, "warmup", 2*time.Second, "warm-up before each window (not counted)")
	fs.BoolVar(&c.products, "products", false, "also measure the HTML product pages and GET /api/v1/products/{id}")
	fs.StringVar(&c.cpuProfile, "cpuprofile", "", "write a 5 s CPU profile of the shop, taken in the middle of its home-page window, to this file")
	fs.BoolVar(&c.verbose, "v", false, "show the shop's log (warn and above) on stderr")
	fs.StringVar(&c.serveBaseline, "serve-baseline", "", "internal: serve the baseline on this address and nothing else")
	fs.StringVar(&c.body, "body", "", "internal: the baseline's body (a file)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if c.conc < 1 || c.conc > 256 {
		return c, errors.New("-c must be from 1 to 256")
	}
	if c.dur <= 0 || c.warmup < 0 {
		return c, errors.New("-d must be positive and -warmup not negative")
	}
	c.dur = min(c.dur, 60*time.Second)
	c.warmup = min(c.warmup, 30*time.Second)
	return c, nil
}

// target is one measured load.
type target struct {
	Label    string   `json:"label"`
	URLs     []string `json:"-"`
	Requests int      `json:"requests"`
	Errors   int      `json:"errors"`
	FirstErr string   `json:"first_error,omitempty"`
	RPS      float64  `json:"rps"`
	Ratio    float64  `json:"ratio_to_baseline"`
	P50ms    float64  `json:"p50_ms"`
	P90ms    float64  `json:"p90_ms"`
	P99ms    float64  `json:"p99_ms"`
	CPUSec   float64  `json:"server_cpu_s"` // the serving process's CPU in the window
	// checkCookies makes a Set-Cookie in an answer an error (the shop must
	// not give an anonymous visitor a cookie for a catalog page).
	checkCookies bool
}

type result struct {
	StartedAt string    `json:"started_at"`
	Machine   string    `json:"machine"`
	Binary    string    `json:"binary"`
	C         int       `json:"c"`
	Window    string    `json:"window"`
	LoadAvg   string    `json:"loadavg_before"`
	BodyBytes int       `json:"home_body_bytes"`
	Targets   []*target `json:"targets"`
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	if c.serveBaseline != "" {
		return serveBaseline(ctx, c.serveBaseline, c.body)
	}
	root, err := os.MkdirTemp("", "globo-benchhome-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(root)

	bin := c.binary
	if bin == "" {
		bin = filepath.Join(root, "globomantics")
		fmt.Fprintln(stderr, "building ./cmd/globomantics ...")
		build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/globomantics")
		build.Stdout, build.Stderr = stderr, stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("building the shop: %w", err)
		}
	} else if bin, err = filepath.Abs(bin); err != nil {
		return err
	}
	res := result{StartedAt: time.Now().UTC().Format("2006-01-02 15:04 UTC"), Machine: measure.Machine(), Binary: bin,
		C: c.conc, Window: fmt.Sprintf("%s + %s warm-up", c.dur, c.warmup), LoadAvg: measure.LoadAvg()}

	// The shop.
	shopAddr, debugAddr, baseAddr := measure.LoopbackAddr(), measure.LoopbackAddr(), measure.LoopbackAddr()
	if shopAddr == "" || debugAddr == "" || baseAddr == "" {
		return errors.New("no free port")
	}
	shopLog := &measure.TailBuffer{Max: 64 << 10}
	var logOut io.Writer = shopLog
	if c.verbose {
		logOut = io.MultiWriter(shopLog, stderr)
	}
	shop := exec.Command(bin, "serve", "--http-addr", shopAddr, "--debug-addr", debugAddr,
		"--data-dir", filepath.Join(root, "data"), "--rate-limits=false")
	shop.Env = append(os.Environ(), "GLOBO_LOG_LEVEL=warn", "GLOBO_SEED=true")
	shop.Stdout, shop.Stderr = logOut, logOut
	fmt.Fprintf(stderr, "starting the shop on %s ...\n", shopAddr)
	stopShop, err := start(shop)
	if err != nil {
		return err
	}
	defer stopShop()
	shopBase := "http://" + shopAddr
	if err := waitOK(ctx, shopBase+"/readyz", shop, shopLog); err != nil {
		return err
	}

	tr := &http.Transport{MaxIdleConnsPerHost: 2 * c.conc, MaxConnsPerHost: 2 * c.conc,
		DisableCompression: true, IdleConnTimeout: time.Minute}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}

	// The baseline serves the shop's own home page.
	home, err := get(ctx, hc, shopBase+"/")
	if err != nil {
		return fmt.Errorf("the home page: %w\n%s", err, shopLog)
	}
	res.BodyBytes = len(home)
	bodyFile := filepath.Join(root, "home.html")
	if err := os.WriteFile(bodyFile, home, 0o600); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	base := exec.Command(self, "-serve-baseline", baseAddr, "-body", bodyFile)
	base.Stderr = stderr
	stopBase, err := start(base)
	if err != nil {
		return err
	}
	defer stopBase()
	if err := waitOK(ctx, "http://"+baseAddr+"/", base, &measure.TailBuffer{}); err != nil {
		return err
	}

	targets := []*target{
		{Label: "baseline (raw net/http, same body)", URLs: []string{"http://" + baseAddr + "/"}},
		{Label: "shop, / anonymous", URLs: []string{shopBase + "/"}, checkCookies: true},
	}
	if c.products {
		ids, err := productIDs(ctx, hc, shopBase)
		if err != nil {
			return err
		}
		var pages, api []string
		for _, id := range ids {
			pages = append(pages, shopBase+"/products/"+id)
			api = append(api, shopBase+"/api/v1/products/"+id)
		}
		targets = append(targets,
			&target{Label: fmt.Sprintf("shop, /products/{id} anonymous (%d ids)", len(ids)), URLs: pages, checkCookies: true},
			&target{Label: fmt.Sprintf("shop, /api/v1/products/{id} (%d ids)", len(ids)), URLs: api})
	}
	pids := map[*target]int{targets[0]: base.Process.Pid}
	for _, t := range targets[1:] {
		pids[t] = shop.Process.Pid
	}
	for i, t := range targets {
		fmt.Fprintf(stderr, "%s: warm-up %s, window %s ...\n", t.Label, c.warmup, c.dur)
		var profile func()
		if i == 1 && c.cpuProfile != "" {
			profile = func() {
				if err := saveProfile(ctx, debugAddr, c.cpuProfile); err != nil {
					fmt.Fprintln(stderr, "cpu profile:", err)
				}
			}
		}
		load(ctx, hc, c, t, pids[t], profile)
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	for _, t := range targets {
		if b := targets[0].RPS; b > 0 {
			t.Ratio = t.RPS / b
		}
	}
	res.Targets = targets
	printTable(stdout, res)
	b, _ := json.MarshalIndent(res, "", "  ")
	fmt.Fprintf(stdout, "\n```json\n%s\n```\n", b)
	return nil
}

// load runs t's closed loop: a warm-up, then the measured window. profile,
// if not nil, runs in the middle of the window.
func load(ctx context.Context, hc *http.Client, c config, t *target, pid int, profile func()) {
	t0 := time.Now().Add(c.warmup)
	t1 := t0.Add(c.dur)
	type tally struct {
		lat   []time.Duration
		errs  int
		first string
	}
	tallies := make([]tally, c.conc)
	var wg sync.WaitGroup
	for w := range c.conc {
		wg.Add(1)
		go func(tl *tally) {
			defer wg.Done()
			for i := w; ctx.Err() == nil; i++ {
				begin := time.Now()
				if !begin.Before(t1) {
					return
				}
				err := hit(ctx, hc, t.URLs[i%len(t.URLs)], t.checkCookies)
				end := time.Now()
				if end.Before(t0) || !end.Before(t1) {
					continue
				}
				if err != nil {
					tl.errs++
					if tl.first == "" {
						tl.first = err.Error()
					}
					continue
				}
				tl.lat = append(tl.lat, end.Sub(begin))
			}
		}(&tallies[w])
	}
	var cpu0, cpu1 float64
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		if !measure.SleepUntil(ctx, t0) {
			return
		}
		cpu0 = measure.ProcCPU(pid)
		if profile != nil && c.dur >= 6*time.Second {
			if measure.SleepUntil(ctx, time.Now().Add((c.dur-5*time.Second)/2)) {
				profile()
			}
		}
		if measure.SleepUntil(ctx, t1) {
			cpu1 = measure.ProcCPU(pid)
		}
	}()
	wg.Wait()
	<-sampled
	var lat []time.Duration
	for _, tl := range tallies {
		lat = append(lat, tl.lat...)
		t.Errors += tl.errs
		if t.FirstErr == "" {
			t.FirstErr = tl.first
		}
	}
	slices.Sort(lat)
	t.Requests = len(lat)
	t.RPS = float64(len(lat)) / c.dur.Seconds()
	t.P50ms, t.P90ms, t.P99ms = measure.Ms(measure.Pct(lat, 50)), measure.Ms(measure.Pct(lat, 90)), measure.Ms(measure.Pct(lat, 99))
	t.CPUSec = max(0, cpu1-cpu0)
}

// hit sends one GET without cookies and reads the whole answer.
func hit(ctx context.Context, hc *http.Client, u string, checkCookies bool) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	switch {
	case err != nil:
		return err
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("GET %s: status %d", u, resp.StatusCode)
	case checkCookies && len(resp.Header.Values("Set-Cookie")) > 0:
		return fmt.Errorf("GET %s: an anonymous visitor got a cookie: %q", u, resp.Header.Values("Set-Cookie"))
	}
	return nil
}

func get(ctx context.Context, hc *http.Client, u string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: status %d", u, resp.StatusCode)
	}
	return b, err
}

// productIDs lists up to 24 product ids through the public API.
func productIDs(ctx context.Context, hc *http.Client, base string) ([]string, error) {
	b, err := get(ctx, hc, base+"/api/v1/products?page_size=24")
	if err != nil {
		return nil, err
	}
	var list struct {
		Items []struct {
			ID string `json:"id"`
		} `json:"items"`
	}
	if err := json.Unmarshal(b, &list); err != nil {
		return nil, err
	}
	var ids []string
	for _, p := range list.Items {
		ids = append(ids, p.ID)
	}
	if len(ids) == 0 {
		return nil, errors.New("the shop lists no products")
	}
	return ids, nil
}

// serveBaseline is the raw net/http yardstick: every GET gets the body.
func serveBaseline(ctx context.Context, addr, bodyFile string) error {
	b, err := os.ReadFile(bodyFile)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write(b)
	})
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// start starts cmd and returns how to stop it: SIGTERM, then SIGKILL after
// 10 s.
func start(cmd *exec.Cmd) (stop func(), err error) {
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	var once sync.Once
	return func() {
		once.Do(func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
				<-done
			}
		})
	}, nil
}

// waitOK polls u until it answers 200, the process exits, or 90 s pass.
func waitOK(ctx context.Context, u string, cmd *exec.Cmd, log fmt.Stringer) error {
	deadline := time.Now().Add(90 * time.Second)
	for {
		if cmd.ProcessState != nil || (cmd.Process != nil && cmd.Process.Signal(syscall.Signal(0)) != nil) {
			return fmt.Errorf("%s exited at start\n%s", cmd.Path, log)
		}
		resp, err := http.Get(u)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready within 90 s (last: %v)\n%s", u, err, log)
		}
		if !measure.SleepUntil(ctx, time.Now().Add(50*time.Millisecond)) {
			return ctx.Err()
		}
	}
}

func saveProfile(ctx context.Context, debugAddr, file string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+debugAddr+"/debug/pprof/profile?seconds=5", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return os.WriteFile(file, b, 0o644)
}

func printTable(w io.Writer, r result) {
	fmt.Fprintf(w, "Run %s on %s; %d connections, %s per target, load generator on the same machine; load average before %s; home page %d bytes.\n\n",
		r.StartedAt, r.Machine, r.C, r.Window, r.LoadAvg, r.BodyBytes)
	fmt.Fprintln(w, "| target | req/s | ratio to baseline | p50 ms | p90 ms | p99 ms | server CPU ms/req | errors |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|")
	for _, t := range r.Targets {
		per := 0.0
		if t.Requests > 0 {
			per = 1000 * t.CPUSec / float64(t.Requests)
		}
		fmt.Fprintf(w, "| %s | %.0f | %.2f | %.2f | %.2f | %.2f | %.3f | %d |\n",
			t.Label, t.RPS, t.Ratio, t.P50ms, t.P90ms, t.P99ms, per, t.Errors)
	}
	for _, t := range r.Targets {
		if t.FirstErr != "" {
			fmt.Fprintf(w, "\nfirst error of %s: %s\n", t.Label, t.FirstErr)
		}
	}
}
