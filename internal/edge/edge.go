// Package edge is the shop's layer-7 load balancer: an HTTP reverse proxy
// in front of pools of backends (the storefronts on the public listener,
// the back-end services under /svc/{service}/ on the internal one), with
// active health checks, passive ejection, budgeted retries on another
// backend, and a registry API through which servers join and leave a pool
// without configuration changes.
package edge

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/globomantics/globomantics/internal/platform/clock"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/httpx"
	"github.com/globomantics/globomantics/internal/platform/obs"
)

// DefaultPool is the pool the public listener routes to.
const DefaultPool = "storefront"

// Defaults of Config's zero fields.
const (
	DefaultHealthInterval = 500 * time.Millisecond
	DefaultHealthTimeout  = time.Second
	DefaultBackendTimeout = 30 * time.Second
	DefaultMaxBody        = 10 << 20
	DefaultEjectAfter     = 3
	DefaultCDNBytes       = 64 << 20
	DefaultSRVRefresh     = time.Second
)

// Config configures an Edge. Zero fields take the defaults above.
type Config struct {
	Listen         string              // public listener, host:port
	InternalListen string              // internal listener (services, registry, status); none when empty
	Backends       map[string][]string // pool -> backend URLs (http://host:port) or one srv+http://NAME
	DNSServer      string              // host:port of the DNS server for srv+ backends; system resolver when empty
	Policy         Policy
	HealthInterval time.Duration
	HealthTimeout  time.Duration
	HealthPath     string // "/readyz" when empty
	EjectAfter     int    // consecutive failures before passive ejection
	BackendTimeout time.Duration
	MaxBody        int64  // request body limit; negative disables
	TLSCert        string // with TLSKey: serve HTTPS (and HTTP/2) on the public listener
	TLSKey         string
	H2C            bool  // accept HTTP/2 without TLS on the listeners
	CDNBytes       int64 // size of the CDN cache of /static/ and /media/; 0 disables (set CDNBytes<0 for the default)
	DrainDelay     time.Duration
	Token          string // bearer token of the registry API and status
	SRVRefresh     time.Duration
	RetryPercent   int // retries per 100 requests over 10 s (default 20)
	RetryMinPerSec int // retries per second allowed regardless of traffic (default 3)
	Clock          clock.Clock
	Log            *slog.Logger
	// Obs, when set, traces every request (the proxied request carries
	// the edge's span as traceparent), measures it, exports the edge's
	// state (edge_backend_up, edge_backend_requests_total,
	// edge_cdn_requests_total) in its registry, and serves /metrics on the
	// internal listener and the span store at /_edge/obs/v1/traces (observe.go).
	Obs *obs.Obs
}

// Edge is the load balancer. Create it with New, bind with Listen, run
// with Serve (or both with Run).
type Edge struct {
	cfg       Config
	clock     clock.Clock
	log       *slog.Logger
	transport *h1Transport
	buffers   *bufferPool
	budget    *retryBudget
	health    *http.Client
	ids       requestIDs

	mu    sync.RWMutex
	pools map[string]*pool
	srvs  []srvSource

	public   *pool
	content  *content
	draining atomic.Bool
	stats    totals

	pubLn, intLn   net.Listener
	pubSrv, intSrv *http.Server
	adminLoopback  bool
}

type srvSource struct {
	pool *pool
	srv  *httpx.SRV
}

type totals struct {
	requests, retries, budgetRefused    atomic.Int64
	tooLarge, badGateway                atomic.Int64
	gatewayTimeout, unavailable, notFnd atomic.Int64
}

// New checks cfg and builds an Edge; nothing is bound or started.
func New(cfg Config) (*Edge, error) {
	const op = "edge.New"
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:8000"
	}
	if cfg.HealthInterval <= 0 {
		cfg.HealthInterval = DefaultHealthInterval
	}
	if cfg.HealthTimeout <= 0 {
		cfg.HealthTimeout = DefaultHealthTimeout
	}
	if cfg.HealthPath == "" {
		cfg.HealthPath = "/readyz"
	}
	if cfg.EjectAfter <= 0 {
		cfg.EjectAfter = DefaultEjectAfter
	}
	if cfg.BackendTimeout <= 0 {
		cfg.BackendTimeout = DefaultBackendTimeout
	}
	if cfg.MaxBody == 0 {
		cfg.MaxBody = DefaultMaxBody
	}
	if cfg.CDNBytes < 0 {
		cfg.CDNBytes = DefaultCDNBytes
	}
	if cfg.SRVRefresh <= 0 {
		cfg.SRVRefresh = DefaultSRVRefresh
	}
	if cfg.RetryPercent <= 0 {
		cfg.RetryPercent = 20
	}
	if cfg.RetryMinPerSec <= 0 {
		cfg.RetryMinPerSec = 3
	}
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		return nil, errs.E(op, errs.Invalid, errs.Msg("--tls-cert and --tls-key go together"))
	}
	e := &Edge{
		cfg:       cfg,
		clock:     cfg.Clock,
		log:       cfg.Log,
		transport: newH1Transport(cfg.BackendTimeout),
		buffers:   newBufferPool(),
		budget:    newRetryBudget(cfg.Clock, cfg.RetryPercent, cfg.RetryMinPerSec),
		health: &http.Client{
			Timeout: cfg.HealthTimeout,
			Transport: &http.Transport{
				Proxy:               nil,
				MaxIdleConnsPerHost: 2,
				IdleConnTimeout:     30 * time.Second,
				DisableCompression:  true,
			},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		ids:   newRequestIDs(),
		pools: map[string]*pool{},
	}
	var resolver *net.Resolver
	if cfg.DNSServer != "" {
		addr := cfg.DNSServer
		resolver = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}}
	}
	e.public = e.poolFor(DefaultPool)
	e.content = newContent(cfg, e.public.proxy)
	var problems []error
	for name, list := range cfg.Backends {
		if !validPoolName(name) {
			problems = append(problems, fmt.Errorf("pool name %q: want [a-z0-9_-]+", name))
			continue
		}
		p := e.poolFor(name)
		for _, raw := range list {
			if scheme, rest, ok := strings.Cut(raw, "+"); ok && strings.HasPrefix(scheme, "srv") {
				target, name, ok := strings.Cut(rest, "://")
				if !ok || (target != "http" && target != "https") || name == "" {
					problems = append(problems, fmt.Errorf("backend %q: want srv+http://_svc._tcp.zone", raw))
					continue
				}
				e.srvs = append(e.srvs, srvSource{pool: p, srv: httpx.NewSRV(name, target, resolver, e.log)})
				continue
			}
			if _, _, err := p.add(raw, SourceStatic); err != nil {
				problems = append(problems, err)
			}
		}
	}
	if len(problems) > 0 {
		return nil, errs.E(op, errs.Invalid, errs.Msg("%v", errors.Join(problems...)))
	}
	if cfg.Obs != nil {
		if err := cfg.Obs.Registry().Register(newCollector(e)); err != nil {
			return nil, errs.E(op, err)
		}
	}
	return e, nil
}

func validPoolName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// poolFor returns the pool named name, creating it.
func (e *Edge) poolFor(name string) *pool {
	e.mu.RLock()
	p := e.pools[name]
	e.mu.RUnlock()
	if p != nil {
		return p
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if p = e.pools[name]; p == nil {
		p = newPool(name, e.cfg.Policy)
		p.proxy = e.newPoolProxy(p, name != DefaultPool)
		e.pools[name] = p
	}
	return p
}

func (e *Edge) lookupPool(name string) *pool {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.pools[name]
}

// Listen binds the listeners; Addr and InternalAddr are valid after it.
func (e *Edge) Listen() error {
	const op = "edge.Listen"
	ln, err := net.Listen("tcp", e.cfg.Listen)
	if err != nil {
		return errs.E(op, err)
	}
	e.pubLn = ln
	admin := ln
	if e.cfg.InternalListen != "" {
		iln, err := net.Listen("tcp", e.cfg.InternalListen)
		if err != nil {
			ln.Close()
			return errs.E(op, err)
		}
		e.intLn = iln
		admin = iln
	}
	e.adminLoopback = isLoopback(admin.Addr())
	return nil
}

func isLoopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

// Addr is the public listener's address (after Listen).
func (e *Edge) Addr() string { return e.pubLn.Addr().String() }

// InternalAddr is the internal listener's address, or "" when there is none.
func (e *Edge) InternalAddr() string {
	if e.intLn == nil {
		return ""
	}
	return e.intLn.Addr().String()
}

// Run binds the listeners and serves until ctx ends.
func (e *Edge) Run(ctx context.Context) error {
	if err := e.Listen(); err != nil {
		return err
	}
	return e.Serve(ctx)
}

// Serve serves on the bound listeners until ctx ends, then drains: the
// readiness check answers 503, after DrainDelay the servers stop accepting
// and the requests in flight finish.
func (e *Edge) Serve(ctx context.Context) error {
	if e.pubLn == nil {
		return errs.E("edge.Serve", errs.Other, errs.Msg("Serve before Listen"))
	}
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Go(func() { e.healthLoop(bg) })
	wg.Go(func() { e.reapLoop(bg) })
	for _, s := range e.srvs {
		wg.Go(func() { e.srvLoop(bg, s) })
	}
	defer func() { stopBG(); wg.Wait() }()

	e.pubSrv = e.newServer(e.observe(e.publicHandler(), true))
	errc := make(chan error, 2)
	go func() {
		var err error
		if e.cfg.TLSCert != "" {
			err = e.pubSrv.ServeTLS(e.pubLn, e.cfg.TLSCert, e.cfg.TLSKey)
		} else {
			err = e.pubSrv.Serve(e.pubLn)
		}
		errc <- err
	}()
	if e.intLn != nil {
		e.intSrv = e.newServer(e.observe(e.internalHandler(), false))
		go func() { errc <- e.intSrv.Serve(e.intLn) }()
	}
	e.log.Info("edge listening", "addr", e.Addr(), "internal", e.InternalAddr(), "policy", e.cfg.Policy.String())

	select {
	case err := <-errc:
		e.closeServers()
		return errs.E("edge.Serve", err)
	case <-ctx.Done():
	}
	e.draining.Store(true)
	e.log.Info("edge draining", "delay", e.cfg.DrainDelay)
	if e.cfg.DrainDelay > 0 {
		t := time.NewTimer(e.cfg.DrainDelay)
		<-t.C
	}
	sctx, cancel := context.WithTimeout(context.Background(), e.cfg.BackendTimeout+5*time.Second)
	defer cancel()
	var errsOut []error
	if err := e.pubSrv.Shutdown(sctx); err != nil {
		errsOut = append(errsOut, err)
	}
	if e.intSrv != nil {
		if err := e.intSrv.Shutdown(sctx); err != nil {
			errsOut = append(errsOut, err)
		}
	}
	e.transport.CloseIdleConnections()
	e.log.Info("edge stopped")
	if len(errsOut) > 0 {
		e.closeServers()
		return errs.E("edge.Serve", errors.Join(errsOut...))
	}
	return nil
}

func (e *Edge) closeServers() {
	if e.pubSrv != nil {
		e.pubSrv.Close()
	}
	if e.intSrv != nil {
		e.intSrv.Close()
	}
}

func (e *Edge) newServer(h http.Handler) *http.Server {
	var p http.Protocols
	p.SetHTTP1(true)
	if e.cfg.TLSCert != "" {
		p.SetHTTP2(true)
	}
	if e.cfg.H2C {
		p.SetUnencryptedHTTP2(true)
	}
	return &http.Server{
		Handler:           h,
		Protocols:         &p,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(e.log.Handler(), slog.LevelDebug),
	}
}

func (p Policy) String() string {
	switch p {
	case PolicyLeast:
		return "least"
	case PolicyRoundRobin:
		return "round_robin"
	}
	return "p2c"
}

// requestIDs generates request ids: a random prefix per process and a counter.
type requestIDs struct {
	prefix string
	n      atomic.Uint64
}

func newRequestIDs() requestIDs {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return requestIDs{prefix: hex.EncodeToString(b[:]) + "-"}
}

func (ids *requestIDs) next() string {
	var buf [40]byte
	out := append(buf[:0], ids.prefix...)
	out = appendBase36(out, ids.n.Add(1))
	return string(out)
}

func appendBase36(b []byte, n uint64) []byte {
	const digits = "0123456789abcdefghijklmnopqrstuvwxyz"
	var tmp [16]byte
	i := len(tmp)
	for {
		i--
		tmp[i] = digits[n%36]
		n /= 36
		if n == 0 {
			break
		}
	}
	return append(b, tmp[i:]...)
}

// saneRequestID reports whether an incoming X-Request-Id may be kept.
func saneRequestID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
