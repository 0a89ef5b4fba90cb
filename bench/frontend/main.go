// Command frontend measures the shop's front end behind its load balancers,
// all in one run against one storefront process, so that the ratios mean
// something on a machine whose 2 cores the load generator shares:
//
//  1. raw net/http: a trivial Go handler (in this process) answering each
//     path with the bytes the storefront answered it with, doing no work:
//     the reference of every ratio;
//  2. the storefront alone (globomantics serve, all services, SQLite);
//  3. HAProxy (/usr/sbin/haproxy, the configuration internal/edge/haproxy
//     renders) in front of the storefront;
//  4. globomantics edge in front of the storefront (skipped with a line
//     saying why when the binary has no edge command);
//  5. with Redis (a private redis-server, GLOBO_REDIS_URL) a second
//     storefront, read alone and through globomantics edge.
//
// The paths: the home page (/), a product page (/products/{id}) and the
// JSON product (/api/v1/products/{id}), the products round-robin over
// -products ids. The load is closed-loop on -c keep-alive connections for
// -d per target after a -warmup that is not counted: wrk (-t2, --latency)
// when installed, else a Go client (-gen go). No Accept-Encoding is sent
// unless -gzip, so the proxies forward rather than compress. Besides
// req/s and p50/p99, the CPU time per request of the answering server and
// of the proxy in the window is read from /proc: on a shared machine it
// varies less than throughput does.
//
//	go run ./bench/frontend                   # 32 connections, 5 s per target
//	go run ./bench/frontend -c 64 -d 10s -gen go
//	go run ./bench/frontend -rounds 3            # medians of 3 interleaved rounds
//
// The globomantics binary is built once (go build ./cmd/globomantics, or
// -bin names one); every
// server listens on 127.0.0.1 on free ports; the storefronts run with
// --rate-limits=false in a temporary data directory, removed at the end,
// on error and on Ctrl-C. The result is a Markdown table.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/globomantics/globomantics/bench/internal/measure"
	"github.com/globomantics/globomantics/internal/edge/haproxy"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	var out bytes.Buffer
	err := run(ctx, os.Args[1:], &out, os.Stderr)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "frontend bench:", err)
		os.Exit(1)
	}
	_, _ = os.Stdout.Write(out.Bytes())
}

type config struct {
	conc     int
	dur      time.Duration
	warmup   time.Duration
	gen      string
	gzip     bool
	products int
	verbose  bool
	bin      string
	rounds   int
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("frontend", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&c.conc, "c", 32, "concurrent keep-alive connections (closed loop)")
	fs.DurationVar(&c.dur, "d", 5*time.Second, "measured window per target and path (whole seconds, at most 60s)")
	fs.DurationVar(&c.warmup, "warmup", time.Second, "warm-up before each window (not counted)")
	fs.StringVar(&c.gen, "gen", "auto", "load generator: wrk, go, or auto (wrk when installed)")
	fs.BoolVar(&c.gzip, "gzip", false, "send Accept-Encoding: gzip (the proxies then compress text)")
	fs.IntVar(&c.products, "products", 24, "products read round-robin")
	fs.BoolVar(&c.verbose, "v", false, "show the servers' logs on stderr at the end")
	fs.IntVar(&c.rounds, "rounds", 1, "measure every target on the shared storefront this many times, interleaved, and report the medians (a busy machine's noise)")
	fs.StringVar(&c.bin, "bin", "", "a globomantics `binary` to run instead of building ./cmd/globomantics")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if c.conc < 2 || c.conc > 1024 {
		return c, errors.New("-c must be from 2 to 1024")
	}
	c.dur = min(c.dur.Round(time.Second), 60*time.Second)
	c.warmup = min(c.warmup.Round(time.Second), 30*time.Second)
	if c.dur < time.Second || c.warmup < 0 {
		return c, errors.New("-d must be at least 1s and -warmup not negative")
	}
	if c.rounds < 1 || c.rounds > 9 {
		return c, errors.New("-rounds must be from 1 to 9")
	}
	if c.products < 1 || c.products > 100 {
		return c, errors.New("-products must be from 1 to 100")
	}
	switch c.gen {
	case "auto":
		c.gen = "go"
		if _, err := exec.LookPath("wrk"); err == nil {
			c.gen = "wrk"
		}
	case "wrk":
		if _, err := exec.LookPath("wrk"); err != nil {
			return c, errors.New("-gen wrk: wrk not installed (apt-get install -y wrk)")
		}
	case "go":
	default:
		return c, fmt.Errorf("-gen %q: want wrk, go or auto", c.gen)
	}
	return c, nil
}

// result is one target's numbers on one path.
type result struct {
	Target   string  `json:"target"`
	Path     string  `json:"path"`
	Requests int     `json:"requests"`
	RPS      float64 `json:"rps"`
	P50ms    float64 `json:"p50_ms"`
	P99ms    float64 `json:"p99_ms"`
	Errors   int     `json:"errors"`
	Skipped  string  `json:"skipped,omitempty"`
	// CPU time per request in the measured window of the server answering
	// (storefront, or this process for raw net/http) and of the proxy.
	ServerCPUus float64 `json:"server_cpu_us_per_req"`
	ProxyCPUus  float64 `json:"proxy_cpu_us_per_req,omitempty"`
}

// The targets, by name.
const (
	tRaw      = "raw net/http"
	tShop     = "storefront"
	tHAProxy  = "HAProxy + storefront"
	tEdge     = "edge + storefront"
	tEdgeCDN  = "edge with CDN + storefront"
	tShopR    = "storefront (Redis)"
	tEdgeR    = "edge with CDN + storefront (Redis)"
	pHome     = "home /"
	pPage     = "product page"
	pJSON     = "product JSON"
	edgeAimRP = 0.6 // at least this share of HAProxy's throughput
	edgeAimP  = 1.5 // p99 at most this multiple of HAProxy's
)

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	started := time.Now().UTC()
	loadBefore := measure.LoadAvg()
	root, err := os.MkdirTemp("", "globo-benchfrontend-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(root)
	var procs procList
	defer procs.stopAll()
	defer func() {
		if c.verbose {
			procs.dumpLogs(stderr)
		}
	}()

	bin := c.bin
	if bin == "" {
		fmt.Fprintln(stderr, "building globomantics ...")
		bin = filepath.Join(root, "globomantics")
		if err := build(ctx, bin); err != nil {
			return err
		}
	}

	// 2. The storefront, all services in one process.
	shop, shopAddr, err := startShop(ctx, &procs, bin, filepath.Join(root, "shop"), nil)
	if err != nil {
		return err
	}
	shopBase := "http://" + shopAddr
	ids, err := productIDs(ctx, shopBase, c.products)
	if err != nil {
		return err
	}
	paths := map[string][]string{pHome: {"/"}}
	for _, id := range ids {
		paths[pPage] = append(paths[pPage], "/products/"+id)
		paths[pJSON] = append(paths[pJSON], "/api/v1/products/"+id)
	}

	// 1. Raw net/http, answering with the storefront's bytes.
	rawBase, stopRaw, err := startRaw(ctx, shopBase, ids[0])
	if err != nil {
		return err
	}
	defer stopRaw()

	// 3. HAProxy.
	hpAddr := measure.LoopbackAddr()
	hpCfg, err := haproxy.Render(haproxy.Config{Listen: hpAddr,
		Pools: []haproxy.Pool{{Name: "storefront", Servers: []string{shopBase}}}})
	if err != nil {
		return err
	}
	hctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	hp, err := testenv.LaunchHAProxy(hctx, filepath.Join(root, "haproxy"), hpCfg, hpAddr)
	cancel()
	if err != nil {
		return err
	}
	defer func() { _ = hp.Stop() }()
	hpBase := "http://" + hpAddr
	if err := waitOK(ctx, hpBase+"/", 20*time.Second, nil); err != nil {
		return fmt.Errorf("through HAProxy: %w\n%s", err, hp.Log())
	}

	// 4. globomantics edge: as a proxy only (its CDN cache off), the
	// like of HAProxy; and as deployed, with the CDN cache answering
	// anonymous catalog pages within their s-maxage.
	edgeBase, edgePID, edgeSkip := startEdge(ctx, &procs, bin, shopBase, "--cdn-bytes", "0")
	if edgeSkip != "" {
		fmt.Fprintln(stderr, "edge: skipped:", edgeSkip)
	}
	edgeCDNBase, edgeCDNPID, edgeCDNSkip := startEdge(ctx, &procs, bin, shopBase)

	gen := newGenerator(c, root)
	var results []result
	// measureOne loads base; serverPID and proxyPID (0: none) are the
	// processes whose CPU time is counted in the window.
	measureOne := func(target, base, path string, serverPID, proxyPID int) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "%-28s %-13s %d connections, %s + %s ...\n", target, path, c.conc, c.warmup, c.dur)
		var s0, p0, s1, p1 float64
		r, err := gen.run(ctx, base, paths[path],
			func() { s0, p0 = measure.ProcCPU(serverPID), measure.ProcCPU(proxyPID) },
			func() { s1, p1 = measure.ProcCPU(serverPID), measure.ProcCPU(proxyPID) })
		if err != nil {
			return fmt.Errorf("%s, %s: %w", target, path, err)
		}
		r.Target, r.Path = target, path
		if r.Requests > 0 {
			r.ServerCPUus = (s1 - s0) * 1e6 / float64(r.Requests)
			if proxyPID > 0 {
				r.ProxyCPUus = (p1 - p0) * 1e6 / float64(r.Requests)
			}
		}
		results = append(results, r)
		return nil
	}
	for round := range c.rounds {
		if c.rounds > 1 {
			fmt.Fprintf(stderr, "round %d of %d\n", round+1, c.rounds)
		}
		for _, p := range []string{pHome, pPage, pJSON} {
			shopPID := shop.cmd.Process.Pid
			for _, t := range []struct {
				name, base       string
				server, proxyPID int
			}{{tRaw, rawBase, os.Getpid(), 0}, {tShop, shopBase, shopPID, 0}, {tHAProxy, hpBase, shopPID, hp.PID()},
				{tEdge, edgeBase, shopPID, edgePID}, {tEdgeCDN, edgeCDNBase, shopPID, edgeCDNPID}} {
				skip := map[string]string{tEdge: edgeSkip, tEdgeCDN: edgeCDNSkip}[t.name]
				if skip != "" {
					if round == 0 {
						results = append(results, result{Target: t.name, Path: p, Skipped: skip})
					}
					continue
				}
				if err := measureOne(t.name, t.base, p, t.server, t.proxyPID); err != nil {
					return err
				}
			}
		}
	}

	// 5. Redis: a second storefront with the shared cache in Redis; the
	// first one and its proxies stop so they take no CPU.
	_ = hp.Stop()
	procs.stopAll()
	redisAddr, err := startRedis(ctx, &procs, filepath.Join(root, "redis"))
	if err != nil {
		results = append(results, result{Target: tShopR, Path: pJSON, Skipped: err.Error()}, result{Target: tEdgeR, Path: pJSON, Skipped: err.Error()})
	} else {
		shopR, shopRAddr, err := startShop(ctx, &procs, bin, filepath.Join(root, "shop-redis"), []string{"GLOBO_REDIS_URL=redis://" + redisAddr + "/0"})
		if err != nil {
			return err
		}
		shopRBase := "http://" + shopRAddr
		idsR, err := productIDs(ctx, shopRBase, c.products)
		if err != nil {
			return err
		}
		var jsonR []string
		for _, id := range idsR {
			jsonR = append(jsonR, "/api/v1/products/"+id)
		}
		paths[pJSON+" (Redis)"] = jsonR
		if err := measureOne(tShopR, shopRBase, pJSON+" (Redis)", shopR.cmd.Process.Pid, 0); err != nil {
			return err
		}
		edgeRBase, edgeRPID, skip := startEdge(ctx, &procs, bin, shopRBase)
		if skip != "" {
			results = append(results, result{Target: tEdgeR, Path: pJSON + " (Redis)", Skipped: skip})
		} else if err := measureOne(tEdgeR, edgeRBase, pJSON+" (Redis)", shopR.cmd.Process.Pid, edgeRPID); err != nil {
			return err
		}
	}

	printTable(stdout, c, started, loadBefore, measure.LoadAvg(), medians(results))
	return nil
}

// --- processes ------------------------------------------------------------

// proc is a child process whose output is kept (the last 64 KiB).
type proc struct {
	name   string
	cmd    *exec.Cmd
	out    *measure.TailBuffer
	exited chan struct{}
	once   sync.Once
}

type procList struct{ list []*proc }

func (l *procList) start(name, bin string, args, env []string) (*proc, error) {
	p := &proc{name: name, out: &measure.TailBuffer{Max: 64 << 10}, exited: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.exited) }()
	l.list = append(l.list, p)
	return p, nil
}

// stop sends SIGTERM, then SIGKILL after 15 s, and waits.
func (p *proc) stop() {
	p.once.Do(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(15 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	})
}

func (l *procList) stopAll() {
	for i := len(l.list) - 1; i >= 0; i-- {
		l.list[i].stop()
	}
}

func (l *procList) dumpLogs(w io.Writer) {
	for _, p := range l.list {
		fmt.Fprintf(w, "--- %s ---\n%s\n", p.name, p.out)
	}
}

// build compiles ./cmd/globomantics of this module into bin.
func build(ctx context.Context, bin string) error {
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(gomod)) == "" || strings.TrimSpace(string(gomod)) == os.DevNull {
		return fmt.Errorf("run this from the globomantics module (go env GOMOD: %v)", err)
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/globomantics")
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(gomod)))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/globomantics: %v\n%s", err, out)
	}
	return nil
}

// startShop starts a storefront with every service on a free port and waits
// until /readyz answers 200.
func startShop(ctx context.Context, procs *procList, bin, dataDir string, env []string) (*proc, string, error) {
	addr, debug := measure.LoopbackAddr(), measure.LoopbackAddr()
	p, err := procs.start("storefront "+filepath.Base(dataDir), bin,
		// Every service but analytics: its consumer would count the
		// benchmark's tens of thousands of page views one transaction
		// each, in this process, long after they were served, and weigh
		// on every later measurement. Scaled out it runs elsewhere; the
		// storefront still publishes the events (they wait in the stream).
		[]string{"serve", "--http-addr", addr, "--debug-addr", debug, "--data-dir", dataDir, "--rate-limits=false",
			"--services", "account,catalog,search,cart,payment,shipping,order,checkout,thumbnails,mail,storefront"},
		// Not every service runs here, so the configuration asks for
		// service credentials (nobody else calls in).
		append([]string{"GLOBO_LOG_LEVEL=warn", "GLOBO_SEED=true", "GLOBO_SERVICE_TOKEN=frontend-bench-" + strconv.FormatInt(time.Now().UnixNano(), 36)}, env...))
	if err != nil {
		return nil, "", err
	}
	fmt.Fprintf(os.Stderr, "starting the storefront on %s ...\n", addr)
	if err := waitOK(ctx, "http://"+addr+"/readyz", 90*time.Second, p); err != nil {
		return nil, "", fmt.Errorf("storefront: %w\n%s", err, p.out)
	}
	return p, addr, nil
}

// startEdge starts globomantics edge in front of backend and waits until a
// GET of / through it answers 200. It returns the edge's base URL, or why
// it is skipped (the binary has no edge command, or it did not start).
func startEdge(ctx context.Context, procs *procList, bin, backend string, extra ...string) (base string, pid int, skip string) {
	addr := measure.LoopbackAddr()
	p, err := procs.start("edge", bin, append([]string{"edge", "--listen", addr, "--backend", "storefront=" + backend}, extra...), []string{"GLOBO_LOG_LEVEL=warn"})
	if err != nil {
		return "", 0, err.Error()
	}
	if err := waitOK(ctx, "http://"+addr+"/", 20*time.Second, p); err != nil {
		p.stop()
		out := strings.TrimSpace(p.out.String())
		if strings.Contains(out, `unknown command "edge"`) {
			return "", 0, `no "edge" command in this binary`
		}
		if i := strings.LastIndexByte(out, '\n'); i >= 0 && len(out)-i < 300 {
			out = out[i+1:]
		}
		return "", 0, fmt.Sprintf("globomantics edge did not serve: %v: %.300s", err, out)
	}
	return "http://" + addr, p.cmd.Process.Pid, ""
}

// startRedis starts a private redis-server keeping nothing on disk.
func startRedis(ctx context.Context, procs *procList, dir string) (string, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return "", errors.New("redis-server not installed")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	addr := measure.LoopbackAddr()
	_, port, _ := net.SplitHostPort(addr)
	p, err := procs.start("redis", bin, []string{"--port", port, "--bind", "127.0.0.1", "--dir", dir,
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning"}, nil)
	if err != nil {
		return "", err
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			_, _ = c.Write([]byte("*1\r\n$4\r\nPING\r\n"))
			_ = c.SetReadDeadline(time.Now().Add(time.Second))
			line, _ := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if line == "+PONG\r\n" {
				return addr, nil
			}
		}
		select {
		case <-p.exited:
			return "", fmt.Errorf("redis-server exited: %s", p.out)
		default:
		}
		if time.Now().After(deadline) || !measure.SleepUntil(ctx, time.Now().Add(20*time.Millisecond)) {
			return "", fmt.Errorf("redis-server did not answer PING: %s", p.out)
		}
	}
}

// waitOK polls url until it answers 200, p exits, or timeout passes.
func waitOK(ctx context.Context, url string, timeout time.Duration, p *proc) error {
	deadline := time.Now().Add(timeout)
	hc := &http.Client{Timeout: 2 * time.Second}
	for {
		var exited <-chan struct{}
		if p != nil {
			exited = p.exited
		}
		select {
		case <-exited:
			return fmt.Errorf("%s exited", p.name)
		default:
		}
		resp, err := hc.Get(url)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
			err = fmt.Errorf("%s answered %d", url, resp.StatusCode)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready within %v: %v", timeout, err)
		}
		if !measure.SleepUntil(ctx, time.Now().Add(50*time.Millisecond)) {
			return ctx.Err()
		}
	}
}

// productIDs lists n product ids through the public API.
func productIDs(ctx context.Context, base string, n int) ([]string, error) {
	body, _, err := fetch(ctx, base+"/api/v1/products?page_size="+strconv.Itoa(n))
	if err != nil {
		return nil, err
	}
	var page struct {
		Items []struct {
			ID string `json:"id"`
		} `json:"items"`
	}
	if err := json.Unmarshal(body, &page); err != nil {
		return nil, fmt.Errorf("product list: %w", err)
	}
	var ids []string
	for _, it := range page.Items {
		ids = append(ids, it.ID)
	}
	if len(ids) == 0 {
		return nil, errors.New("the storefront lists no products")
	}
	return ids, nil
}

func fetch(ctx context.Context, url string) ([]byte, string, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return nil, "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != 200 {
		err = fmt.Errorf("GET %s: %d", url, resp.StatusCode)
	}
	return b, resp.Header.Get("Content-Type"), err
}

// startRaw serves, from memory, the bytes the storefront answered for the
// home page, a product page and a JSON product, on the same paths.
func startRaw(ctx context.Context, shopBase, id string) (string, func(), error) {
	mux := http.NewServeMux()
	for _, p := range []struct{ pattern, path string }{
		{"GET /{$}", "/"}, {"GET /products/{id}", "/products/" + id}, {"GET /api/v1/products/{id}", "/api/v1/products/" + id},
	} {
		body, ctype, err := fetch(ctx, shopBase+p.path)
		if err != nil {
			return "", nil, err
		}
		mux.HandleFunc(p.pattern, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", ctype)
			_, _ = w.Write(body)
		})
	}
	ln, err := net.Listen("tcp", measure.LoopbackAddr())
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), func() { _ = srv.Close() }, nil
}

// --- load -------------------------------------------------------------------

type generator struct {
	c   config
	dir string
}

func newGenerator(c config, dir string) *generator { return &generator{c: c, dir: dir} }

// run loads base with GETs of paths (round-robin): a warm-up, then the
// measured window, with start called just before it and end just after.
func (g *generator) run(ctx context.Context, base string, paths []string, start, end func()) (result, error) {
	if g.c.gen == "wrk" {
		return g.wrk(ctx, base, paths, start, end)
	}
	return g.goLoad(ctx, base, paths, start, end)
}

func (g *generator) wrk(ctx context.Context, base string, paths []string, start, end func()) (result, error) {
	var lua strings.Builder
	lua.WriteString("local paths = {")
	for i, p := range paths {
		if i > 0 {
			lua.WriteString(", ")
		}
		lua.WriteString(strconv.Quote(p))
	}
	lua.WriteString("}\nlocal i = 0\nrequest = function()\n  i = i + 1\n  return wrk.format(\"GET\", paths[(i % #paths) + 1])\nend\n")
	script := filepath.Join(g.dir, "paths.lua")
	if err := os.WriteFile(script, []byte(lua.String()), 0o644); err != nil {
		return result{}, err
	}
	args := func(d time.Duration) []string {
		a := []string{"-t2", "-c" + strconv.Itoa(g.c.conc), "-d" + strconv.Itoa(int(d.Seconds())) + "s", "--timeout", "10s", "--latency", "-s", script}
		if g.c.gzip {
			a = append(a, "-H", "Accept-Encoding: gzip")
		}
		return append(a, base+"/")
	}
	if g.c.warmup > 0 {
		if out, err := exec.CommandContext(ctx, "wrk", args(g.c.warmup)...).CombinedOutput(); err != nil {
			return result{}, fmt.Errorf("wrk: %v: %s", err, out)
		}
	}
	start()
	out, err := exec.CommandContext(ctx, "wrk", args(g.c.dur)...).CombinedOutput()
	end()
	if err != nil {
		return result{}, fmt.Errorf("wrk: %v: %s", err, out)
	}
	return parseWrk(string(out))
}

var (
	wrkTotal   = regexp.MustCompile(`(\d+) requests in ([0-9.]+)(us|ms|s|m)`)
	wrkPct     = regexp.MustCompile(`(?m)^\s+(50|99)(?:\.000)?%\s+([0-9.]+)(us|ms|s|m)\s*$`)
	wrkNon2xx  = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
	wrkSockets = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
)

// parseWrk reads wrk --latency output.
func parseWrk(out string) (result, error) {
	var r result
	m := wrkTotal.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("wrk output without a total: %s", out)
	}
	r.Requests, _ = strconv.Atoi(m[1])
	secs := toMs(m[2], m[3]) / 1000
	if secs > 0 {
		r.RPS = float64(r.Requests) / secs
	}
	for _, p := range wrkPct.FindAllStringSubmatch(out, -1) {
		v := toMs(p[2], p[3])
		if p[1] == "50" {
			r.P50ms = v
		} else {
			r.P99ms = v
		}
	}
	if m := wrkNon2xx.FindStringSubmatch(out); m != nil {
		n, _ := strconv.Atoi(m[1])
		r.Errors += n
	}
	if m := wrkSockets.FindStringSubmatch(out); m != nil {
		for _, s := range m[1:] {
			n, _ := strconv.Atoi(s)
			r.Errors += n
		}
	}
	return r, nil
}

func toMs(v, unit string) float64 {
	f, _ := strconv.ParseFloat(v, 64)
	switch unit {
	case "us":
		return f / 1000
	case "s":
		return f * 1000
	case "m":
		return f * 60000
	}
	return f
}

// goLoad is the Go load generator: c workers, each on its own keep-alive
// connection, each sending the next GET when the last one is answered.
func (g *generator) goLoad(ctx context.Context, base string, paths []string, start, end func()) (result, error) {
	tr := &http.Transport{MaxIdleConnsPerHost: g.c.conc, MaxConnsPerHost: g.c.conc, DisableCompression: true, IdleConnTimeout: time.Minute}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	window := func(d time.Duration) ([]time.Duration, int, time.Duration) {
		var mu sync.Mutex
		var all []time.Duration
		errCount := 0
		start := time.Now()
		end := start.Add(d)
		var wg sync.WaitGroup
		for w := range g.c.conc {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var lat []time.Duration
				e := 0
				for i := w; ctx.Err() == nil && time.Now().Before(end); i++ {
					t0 := time.Now()
					req, _ := http.NewRequestWithContext(ctx, "GET", base+paths[i%len(paths)], nil)
					if g.c.gzip {
						req.Header.Set("Accept-Encoding", "gzip")
					}
					resp, err := hc.Do(req)
					if err == nil {
						_, _ = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if resp.StatusCode != 200 {
							err = fmt.Errorf("status %d", resp.StatusCode)
						}
					}
					if err != nil {
						e++
						continue
					}
					lat = append(lat, time.Since(t0))
				}
				mu.Lock()
				all = append(all, lat...)
				errCount += e
				mu.Unlock()
			}()
		}
		wg.Wait()
		return all, errCount, time.Since(start)
	}
	window(g.c.warmup)
	start()
	lat, errCount, took := window(g.c.dur)
	end()
	if err := ctx.Err(); err != nil {
		return result{}, err
	}
	slices.Sort(lat)
	return result{Requests: len(lat), RPS: float64(len(lat)) / took.Seconds(), Errors: errCount,
		P50ms: measure.Ms(measure.Pct(lat, 50)), P99ms: measure.Ms(measure.Pct(lat, 99))}, nil
}

// --- output -------------------------------------------------------------------

// medians folds the rounds' results of each target and path into one, in
// the order they first appear: the median of each number (the upper one of
// an even count), errors and requests summed.
func medians(rs []result) []result {
	type key struct{ target, path string }
	groups := map[key][]result{}
	var order []key
	for _, r := range rs {
		k := key{r.Target, r.Path}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], r)
	}
	med := func(g []result, f func(result) float64) float64 {
		v := make([]float64, len(g))
		for i, r := range g {
			v[i] = f(r)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	out := make([]result, 0, len(order))
	for _, k := range order {
		g := groups[k]
		m := g[0]
		if len(g) > 1 {
			m.RPS = med(g, func(r result) float64 { return r.RPS })
			m.P50ms = med(g, func(r result) float64 { return r.P50ms })
			m.P99ms = med(g, func(r result) float64 { return r.P99ms })
			m.ServerCPUus = med(g, func(r result) float64 { return r.ServerCPUus })
			m.ProxyCPUus = med(g, func(r result) float64 { return r.ProxyCPUus })
			m.Requests, m.Errors = 0, 0
			for _, r := range g {
				m.Requests += r.Requests
				m.Errors += r.Errors
			}
		}
		out = append(out, m)
	}
	return out
}

func printTable(w io.Writer, c config, started time.Time, loadBefore, loadAfter string, rs []result) {
	gen := "wrk -t2"
	if c.gen == "go" {
		gen = "Go client"
	}
	fmt.Fprintf(w, "\nRun %s on %s; %d keep-alive connections (%s), %s warm-up + %s per target and path, medians of %d round(s); load average before %s, after %s.\n",
		started.Format("2006-01-02 15:04 UTC"), measure.Machine(), c.conc, gen, c.warmup, c.dur, c.rounds, loadBefore, loadAfter)
	fmt.Fprintln(w, "The load generator shares the machine's cores with the servers: compare only ratios within this run. CPU per request (from /proc, the server's and the proxy's processes in the window) depends least on what else runs.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| path | target | req/s | × raw | p50 ms | p99 ms | p99 × raw | errors | server CPU µs/req | proxy CPU µs/req |")
	fmt.Fprintln(w, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
	raw := map[string]result{}
	for _, r := range rs {
		if r.Target == tRaw {
			raw[r.Path] = r
		}
	}
	find := func(target, path string) (result, bool) {
		for _, r := range rs {
			if r.Target == target && r.Path == path && r.Skipped == "" {
				return r, true
			}
		}
		return result{}, false
	}
	for _, r := range rs {
		if r.Skipped != "" {
			fmt.Fprintf(w, "| %s | %s | skipped: %s | | | | | | | |\n", r.Path, r.Target, r.Skipped)
			continue
		}
		base, ok := raw[strings.TrimSuffix(r.Path, " (Redis)")]
		xr, xp := "-", "-"
		if ok && base.RPS > 0 && base.P99ms > 0 {
			xr, xp = fmt.Sprintf("%.2f", r.RPS/base.RPS), fmt.Sprintf("%.2f", r.P99ms/base.P99ms)
		}
		proxyCPU := "-"
		if r.ProxyCPUus > 0 {
			proxyCPU = fmt.Sprintf("%.0f", r.ProxyCPUus)
		}
		fmt.Fprintf(w, "| %s | %s | %.0f | %s | %.2f | %.2f | %s | %d | %.0f | %s |\n", r.Path, r.Target, r.RPS, xr, r.P50ms, r.P99ms, xp, r.Errors, r.ServerCPUus, proxyCPU)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "Edge against HAProxy, same storefront (aim: req/s ratio at least %.1f, p99 ratio at most %.1f):\n\n", edgeAimRP, edgeAimP)
	fmt.Fprintln(w, "| path | edge/HAProxy req/s | edge/HAProxy p99 | edge/HAProxy CPU per request | aim met |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---|")
	for _, p := range []string{pHome, pPage, pJSON} {
		h, hok := find(tHAProxy, p)
		e, eok := find(tEdge, p)
		if !hok || !eok || h.RPS == 0 || h.P99ms == 0 {
			fmt.Fprintf(w, "| %s | - | - | - | not measured |\n", p)
			continue
		}
		rr, pr := e.RPS/h.RPS, e.P99ms/h.P99ms
		met := "yes"
		if rr < edgeAimRP || pr > edgeAimP {
			met = "no"
		}
		cpu := "-"
		if h.ProxyCPUus > 0 {
			cpu = fmt.Sprintf("%.2f", e.ProxyCPUus/h.ProxyCPUus)
		}
		fmt.Fprintf(w, "| %s | %.2f | %.2f | %s | %s |\n", p, rr, pr, cpu, met)
	}
	if b, err := json.Marshal(rs); err == nil {
		fmt.Fprintf(w, "\n<!-- raw results: %s -->\n", b)
	}
}

// --- small helpers ------------------------------------------------------------
