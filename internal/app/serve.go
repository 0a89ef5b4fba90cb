package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/globomantics/globomantics/internal/catalog"
	"github.com/globomantics/globomantics/internal/config"
	"github.com/globomantics/globomantics/internal/contracts"
	"github.com/globomantics/globomantics/internal/edge"
	"github.com/globomantics/globomantics/internal/platform/blob"
	"github.com/globomantics/globomantics/internal/platform/bus"
	"github.com/globomantics/globomantics/internal/platform/cache"
	"github.com/globomantics/globomantics/internal/platform/clock"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/fault"
	"github.com/globomantics/globomantics/internal/platform/httpx"
	"github.com/globomantics/globomantics/internal/platform/ids"
	"github.com/globomantics/globomantics/internal/platform/obs"
	"github.com/globomantics/globomantics/internal/platform/outbox"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
	"github.com/globomantics/globomantics/internal/platform/svcauth"
)

// app is one running process: the resources it opened, in the order they
// must be closed (last opened, first closed).
type app struct {
	cfg   config.Config
	plan  plan // what this process runs, in build order
	log   *slog.Logger
	clock clock.Clock

	bus   *bus.Bus
	dbs   map[string]*sqldb.DB // the local databases, by service (or service#node)
	dsns  map[string]string    // their DSNs, for messages (redact before use)
	blobs blob.Store
	cache cache.Cache
	mux   *http.ServeMux // the public listener's: the storefront, health
	imux  *http.ServeMux // the internal listener's: /svc/ APIs, health
	// addrs are the addresses bound, by listener ("public", "internal").
	addrs map[string]string
	// keys holds this process's service credentials and checks callers'.
	keys *svcauth.Keyring
	// contracts checks every message published through an outbox and
	// every message before its handler (docs/EVENTS.md).
	contracts *contracts.Registry
	// leaveEdge deregisters this process from the edge's registry (set
	// once ready, when --edge-registry is given).
	leaveEdge func()
	checks    map[string]func(context.Context) error
	closers   []func() error
	bg        []func(ctx context.Context) // background loops (outbox relays)
	subs      []subscription              // pull consumers: workers sharing a load (bus.Subscribe)
	reacts    []subscription              // push consumers: each instance reacting to every event (bus.React)
	ready     atomic.Bool
	// draining is set at shutdown: responses ask to close their connection.
	draining atomic.Bool
	peerHC   *http.Client
	// redis is the client of GLOBO_REDIS_URL (nil without): the shared
	// cache and rate-limit budgets.
	redis redis.UniversalClient
	// catalogSvc is the catalog run here (nil when it runs elsewhere), for
	// its cache statistics.
	catalogSvc *catalog.Service
	// resolvers holds where each remote service's instances are (see
	// resolver), made once per service.
	resolvers map[string]httpx.Resolver
	// obs is the process's metrics registry and tracer provider (obs.go):
	// pass obs.Registry() and obs.TracerProvider() to what instruments itself.
	obs *obs.Obs
	// faults injects failures (--faults, the checkout admin endpoint) at
	// checkout's steps, the outbox relays' points and after consumers'
	// handlers; nil unless fault injection is on.
	faults *fault.Injector
}

type subscription struct {
	name     string
	subjects []string
	handler  bus.Handler
	opts     []bus.SubOption
}

func serve(ctx context.Context, cfg config.Config, p plan, log *slog.Logger) (err error) {
	start := time.Now()
	a := &app{
		cfg:    cfg,
		plan:   p,
		log:    log,
		clock:  clock.Real{},
		mux:    http.NewServeMux(),
		imux:   http.NewServeMux(),
		checks: map[string]func(context.Context) error{},
		dbs:    map[string]*sqldb.DB{},
		dsns:   map[string]string{},
		peerHC: &http.Client{Timeout: 15 * time.Second, Transport: httpx.NewTransport()},
	}
	defer func() {
		if cerr := a.close(); err == nil {
			err = cerr
		}
	}()
	if err := a.startObs(); err != nil { // obs.go
		return err
	}
	if err := a.build(ctx); err != nil {
		if ctx.Err() != nil { // stopped by a signal while starting: not a failure
			log.Info("stopped during start-up", "err", err)
			return nil
		}
		return err
	}

	ls, err := a.listen()
	if err != nil {
		return err
	}
	a.addrs = ls.addrs
	srvErr := ls.errc
	if cfg.DebugAddr != "" {
		dbg, err := startDebug(cfg.DebugAddr, log, http.HandlerFunc(a.dataStatus))
		if err != nil {
			ls.Close()
			return err
		}
		defer dbg.Close()
	}

	// Background work: subscriptions and outbox relays.
	bgCtx, stopBG := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, fn := range a.bg {
		wg.Add(1)
		go func() { defer wg.Done(); fn(bgCtx) }()
	}
	for i, s := range slices.Concat(a.subs, a.reacts) {
		subscribe := a.bus.Subscribe
		if i >= len(a.subs) {
			subscribe = a.bus.React
		}
		if err := subscribe(ctx, s.name, s.subjects, a.contracts.Handler(a.afterHandle(s.handler)), s.opts...); err != nil {
			// A failed start leaves nothing running: no listener, no
			// handlers or relays using the stores about to be closed.
			ls.Close()
			a.bus.Drain(context.Background())
			stopBG()
			wg.Wait()
			return fmt.Errorf("subscribe %s: %w", s.name, err)
		}
	}
	a.ready.Store(true)
	a.leaveEdge = a.register()
	log.Info("globomantics ready", "addr", ls.addrs["public"], "internal_addr", ls.addrs["internal"], "services", strings.Join(cfg.Services, ","),
		"data_dir", cfg.DataDir, "nats", a.busURL(), "startup", time.Since(start).Round(time.Millisecond))

	select {
	case <-ctx.Done():
	case err := <-srvErr:
		if a.bus != nil {
			a.bus.Drain(context.Background()) // handlers in flight finish before their stores close
		}
		stopBG()
		wg.Wait()
		return fmt.Errorf("http server: %w", err)
	}

	return a.shutdown(ls, srvErr, stopBG, &wg, start)
}

// shutdownReserve is the part of the shutdown budget kept, after the HTTP
// drain, for subscriptions, outbox relays, the broker and the databases
// (or half of what the drain delay leaves, if that is less).
const shutdownReserve = 3 * time.Second

// shutdown stops the process gracefully within cfg.ShutdownTimeout:
//
//  1. readiness goes to 503 at once, but the listener stays open and
//     requests are served for cfg.DrainDelay, so load balancers polling
//     /readyz stop sending before connections are refused (closing at once
//     resets the connections still in the accept queue);
//  2. the HTTP server stops accepting and finishes the requests in flight,
//     bounded so that at least shutdownReserve of the budget is left;
//  3. subscriptions drain (handlers in flight finish), outbox relays stop,
//     and the broker and databases close, with what is left.
func (a *app) shutdown(srv *listeners, srvErr <-chan error, stopBG func(), wg *sync.WaitGroup, start time.Time) error {
	cfg, log := a.cfg, a.log
	began := time.Now()
	deadline := began.Add(cfg.ShutdownTimeout)
	sctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	a.ready.Store(false)
	a.draining.Store(true)
	log.Info("shutting down", "drain_delay", cfg.DrainDelay, "budget", cfg.ShutdownTimeout)
	if a.leaveEdge != nil {
		// Leave the edge's rotation first: it stops sending new requests
		// here at once and lets those in flight finish.
		phase := time.Now()
		a.leaveEdge()
		log.Info("shutdown: left the edge's registry", "took", since(phase))
	}

	phase := time.Now()
	if cfg.DrainDelay > 0 {
		t := time.NewTimer(cfg.DrainDelay)
		select {
		case <-t.C:
		case err := <-srvErr: // the server failed: nothing left to drain
			t.Stop()
			log.Warn("http server failed during the drain delay", "err", err)
		}
		log.Info("shutdown: drain delay over, closing the listener", "took", since(phase))
	}

	phase = time.Now()
	left := time.Until(deadline)
	hctx, hcancel := context.WithDeadline(sctx, deadline.Add(-min(shutdownReserve, left/2)))
	err := srv.Shutdown(hctx)
	hcancel()
	if err != nil {
		log.Warn("shutdown: http requests still running were cut off", "err", err, "took", since(phase))
		srv.Close() // requests still running lose their connections, not their stores
	} else {
		log.Info("shutdown: http server stopped, requests in flight finished", "took", since(phase))
	}

	if a.bus != nil {
		// Handlers in flight finish before their stores close, within what
		// is left of the shutdown budget.
		phase = time.Now()
		a.bus.Drain(sctx)
		log.Info("shutdown: subscriptions drained", "took", since(phase))
	}
	phase = time.Now()
	stopBG()
	wg.Wait()
	log.Info("shutdown: background work stopped", "took", since(phase))

	phase = time.Now()
	cerr := a.close()
	a.closers = nil // closed: nothing left for serve's deferred close
	log.Info("shutdown: broker and databases closed", "took", since(phase))
	log.Info("stopped", "after", since(start), "shutdown", since(began))
	return cerr
}

func since(t time.Time) time.Duration { return time.Since(t).Round(time.Millisecond) }

// startDebug serves the profiler and the data layer's status
// (/debug/data) on its own listener, apart from the shop.
func startDebug(addr string, log *slog.Logger, data http.Handler) (*http.Server, error) {
	mux := http.NewServeMux()
	mux.Handle("GET /debug/data", data)
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("debug listener %s: %w", addr, err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	log.Info("profiler listening", "addr", ln.Addr().String())
	return srv, nil
}

func (a *app) busURL() string {
	if a.bus == nil {
		return ""
	}
	if a.cfg.NATSURL != "" {
		return a.cfg.NATSURL
	}
	if u := a.bus.ClientURL(); u != "" {
		return "embedded " + u
	}
	return "embedded in-process"
}

func (a *app) onClose(fn func() error) { a.closers = append(a.closers, fn) }

func (a *app) close() error {
	var errList []error
	for i := len(a.closers) - 1; i >= 0; i-- {
		if err := a.closers[i](); err != nil {
			errList = append(errList, err)
		}
	}
	return errors.Join(errList...)
}

// relay starts an outbox relay for db and returns its kick function.
func (a *app) relay(db *sqldb.DB, name string) func() {
	r := outbox.NewRelay(db, a.contracts.Publisher(a.bus), a.log.With("outbox", name), a.relayOptions()...)
	a.bg = append(a.bg, r.Run)
	return r.Kick
}

// relayOptions are the options of every outbox relay of this process.
func (a *app) relayOptions() []outbox.Option {
	opts := append([]outbox.Option{outbox.WithClock(a.clock)}, a.relayObsOptions()...) // obsasync.go
	if a.faults != nil {
		opts = append(opts, outbox.WithFaults(a.faults))
	}
	return opts
}

// faultAfterHandle is the fault point between a consumer's handler that
// succeeded (its work done) and the broker's ack of the message: a crash
// there makes the broker deliver the message again.
const faultAfterHandle = "after:handle"

// faultBeforeHandle is the fault point before a consumer's handler: a delay
// there (before:handle=20ms) makes the workers slow enough for a queue to
// build, for the autoscaler's drills and tests.
const faultBeforeHandle = "before:handle"

// afterHandle puts the before:handle and after:handle fault points around
// h when fault injection is on. The bus acks a message only once its
// handler returns, so a crash after it is a crash between the work and the ack.
func (a *app) afterHandle(h bus.Handler) bus.Handler {
	if a.faults == nil {
		return h
	}
	return func(ctx context.Context, ev bus.Event) error {
		if err := a.faults.At(ctx, faultBeforeHandle); err != nil {
			return err
		}
		if err := h(ctx, ev); err != nil {
			return err
		}
		return a.faults.At(ctx, faultAfterHandle)
	}
}

// client returns an HTTP client of service s's remote instances.
func (a *app) client(s string) *httpx.Client {
	cred, _ := a.keys.Credential(a.callerOf(s))
	return httpx.NewClientFor(s, a.resolver(s), a.peerHC, httpx.WithToken(cred), httpx.WithObs(a.obs))
}

// resolver returns where service s's remote instances are: the URLs given
// with --peer, or, for a peer given as srv+http(s)://<name>, the targets of
// that SRV name, looked up now and then every second while the process
// runs (so instances come and go without a restart).
func (a *app) resolver(s string) httpx.Resolver {
	if r, ok := a.resolvers[s]; ok {
		return r
	}
	peers := a.cfg.Peers[s]
	var r httpx.Resolver = httpx.Static(peers)
	if len(peers) == 1 && strings.HasPrefix(peers[0], "edge+") {
		// The instances the edge's registry knows healthy, asked now and
		// then every second.
		r = a.follow(s, edge.NewRegistryResolver(strings.TrimPrefix(peers[0], "edge+"), a.cfg.EdgeToken, s, nil, a.log.With("peer", s)))
	}
	if len(peers) == 1 && strings.HasPrefix(peers[0], "srv+") {
		u, _ := url.Parse(peers[0]) // validated with the configuration
		var nr *net.Resolver
		if a.cfg.DNSServer != "" {
			server := a.cfg.DNSServer
			nr = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, network, server)
			}}
		}
		r = a.follow(s, httpx.NewSRV(u.Host, strings.TrimPrefix(u.Scheme, "srv+"), nr, a.log.With("peer", s)))
	}
	if a.resolvers == nil {
		a.resolvers = map[string]httpx.Resolver{}
	}
	a.resolvers[s] = r
	return r
}

// followedResolver is a resolver whose answer is looked up, and then
// refreshed while the process runs (DNS SRV, the edge's registry).
type followedResolver interface {
	httpx.Resolver
	Refresh(ctx context.Context) error
	Run(ctx context.Context, every time.Duration)
}

// follow looks peer s's instances up in r now (within 2 s; a failure is
// logged, not fatal) and then every second while the process runs.
func (a *app) follow(s string, r followedResolver) httpx.Resolver {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	if err := r.Refresh(ctx); err != nil {
		a.log.Warn("service discovery: first lookup failed; retrying every second", "peer", s, "err", err)
	}
	cancel()
	a.bg = append(a.bg, func(ctx context.Context) { r.Run(ctx, time.Second) })
	return r
}

// instanceID returns this data directory's persistent id for name, making
// one when fresh is true or none exists yet.
func (a *app) instanceID(name string, fresh bool) (string, error) {
	p := filepath.Join(a.cfg.DataDir, name+".id")
	if !fresh {
		if b, err := os.ReadFile(p); err == nil && len(strings.TrimSpace(string(b))) > 0 {
			return strings.TrimSpace(string(b)), nil
		}
	}
	id := strings.ReplaceAll(ids.New("i", a.clock.Now()), "_", "")
	if err := os.WriteFile(p, []byte(id+"\n"), 0o644); err != nil {
		return "", err
	}
	return id, nil
}

func (a *app) mountHealth() {
	a.mountHealthOn(a.mux)
	a.mountHealthOn(a.imux)
}

func (a *app) mountHealthOn(mux *http.ServeMux) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		httpx.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		if !a.ready.Load() {
			errs.WriteProblem(w, r, errs.E(errs.Unavailable, errs.Msg("starting or shutting down")))
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		results := map[string]string{}
		var mu sync.Mutex
		var wg sync.WaitGroup
		failed := false
		for name, check := range a.checks {
			wg.Add(1)
			go func() {
				defer wg.Done()
				res := "ok"
				if err := check(ctx); err != nil {
					res = errs.Detail(err)
					if res == errs.Other.Title() {
						res = err.Error()
					}
				}
				mu.Lock()
				results[name] = res
				if res != "ok" {
					failed = true
				}
				mu.Unlock()
			}()
		}
		wg.Wait()
		if failed {
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusServiceUnavailable)
			_ = json.NewEncoder(w).Encode(map[string]any{
				"type": "about:blank", "title": "Service Unavailable", "status": 503,
				"detail": "a dependency is not reachable", "checks": results,
			})
			return
		}
		httpx.WriteJSON(w, http.StatusOK, map[string]any{"status": "ready", "checks": results})
	})
}

// peerCheck is a readiness check that at least one instance of a remote
// service answers its /healthz.
func (a *app) peerCheck(s string) func(context.Context) error {
	return func(ctx context.Context) error {
		last := errors.New("no instance known")
		for _, base := range a.resolver(s).Endpoints() {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(base, "/")+"/healthz", nil)
			if err != nil {
				return err
			}
			resp, err := a.peerHC.Do(req)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return nil
				}
				err = fmt.Errorf("status %d", resp.StatusCode)
			}
			last = err
		}
		return errs.E(errs.Unavailable, errs.Msg("no instance of %s answers", s), last)
	}
}
