// Package dns is the shop's small authoritative DNS server: it answers SRV
// (and A/AAAA) records of a zone for the service instances that pass their
// health check, with short TTLs, so that clients (httpx.SRV) discover their
// backends through it.
//
// Names of a zone "shop.test." with instances of service "catalog":
//
//	_catalog._tcp.shop.test.            SRV  10 10 <port> <target>  (one per healthy instance)
//	catalog-<n>.shop.test.              A    <ip>  a configured instance (AAAA for IPv6; only while healthy)
//	catalog-127-0-0-1-8081.shop.test.   A    <ip>  a registered instance, named after its IP and port
//	catalog.shop.test.                  A    <ip>  one per distinct IP of the healthy instances
//
// Instances come from the configuration (Config.Instances; n is the
// instance's index in the configured list) and from registries
// (Config.Registries, e.g. the edge's registry, polled every
// RegistryInterval): a registered instance is named
// <svc>-<ip with dashes>-<port> (an IPv6 address as 32 hex digits), so the
// same instance keeps its name when it comes back. The service name's A
// records make edge.<zone> the addresses of the healthy edges when the
// edges are configured as service "edge" (--instance edge=http://IP:PORT).
//
// The SRV targets are names, not addresses, because Go's resolver rejects
// numeric SRV targets; the SRV answer carries the targets' addresses in its
// additional section. Every record has a TTL of 1 s. A name of the zone that
// is not one of these is NXDOMAIN; a known name asked for another type, an
// SRV name with no healthy instance and an unhealthy target are NOERROR with
// no answer; negative answers carry the zone's SOA (TTL 1) in the authority
// section. A name outside the zone is REFUSED.
//
// Health: every Interval (default 500 ms) each instance's health path
// (/readyz; HealthPaths may give another per service) is asked with a
// Timeout (default 400 ms), and an instance new from a registry is asked at
// once. An instance starts unhealthy, becomes healthy after one answer 2xx
// and unhealthy again after two consecutive failures (an error, a timeout or
// another status), so one lost probe does not drop it but a dead one is
// gone within about two intervals plus a timeout. An instance that leaves
// every registry leaves the answers at the next poll.
package dns

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/globomantics/globomantics/internal/platform/clock"
)

// Defaults of Config.
const (
	DefaultInterval         = 500 * time.Millisecond
	DefaultTimeout          = 400 * time.Millisecond
	DefaultRegistryInterval = 500 * time.Millisecond
	DefaultRegistryTimeout  = time.Second
	// DefaultHealthPath is the path asked of an instance whose service has
	// no entry in Config.HealthPaths.
	DefaultHealthPath = "/readyz"
	// TTL of every record, positive or negative, in seconds.
	TTL = 1
	// failuresToDrop is how many consecutive failed checks make a healthy
	// instance unhealthy.
	failuresToDrop = 2
)

// Config is what a Server serves.
type Config struct {
	// Zone is the zone's name, e.g. "shop.test" (the final dot is optional).
	Zone string
	// Addr is the host:port the server listens on, UDP and TCP; port 0
	// picks a free port (the same one for both).
	Addr string
	// Instances maps a service name (a DNS label: lower-case letters,
	// digits and '-') to the base URLs of its instances, http://IP:port or
	// https://IP:port ("localhost" stands for 127.0.0.1).
	Instances map[string][]string
	// Registries are asked for more instances every RegistryInterval (with
	// RegistryTimeout); the server answers for the union of Instances and
	// the last good answer of each registry.
	Registries []Registry
	// RegistryInterval between polls of the registries (default 500 ms);
	// RegistryTimeout of one poll (default 1 s).
	RegistryInterval, RegistryTimeout time.Duration
	// HealthPaths gives the path of the health check of a service's
	// instances, e.g. {"edge": "/_edge/readyz"}; DefaultHealthPath otherwise.
	HealthPaths map[string]string
	// Interval between health checks (default 500 ms); Timeout of one
	// check (default 400 ms).
	Interval, Timeout time.Duration
	// StatusAddr, when not empty, is the host:port of an HTTP listener that
	// serves Status as JSON at / and /status.
	StatusAddr string
	// Clock nil is the wall clock; it stamps checks and registry polls.
	Clock clock.Clock
	// Log nil is slog.Default().
	Log *slog.Logger
}

// Where an instance comes from, in InstanceStatus.Source.
const (
	SourceStatic   = "static"
	SourceRegistry = "registry"
)

// InstanceStatus is one instance's health, as Status reports it.
type InstanceStatus struct {
	Service   string    `json:"service"`
	Target    string    `json:"target"` // <svc>-<n>.<zone> or <svc>-<ip>-<port>.<zone>
	URL       string    `json:"url"`
	Source    string    `json:"source"` // SourceStatic or SourceRegistry
	Healthy   bool      `json:"healthy"`
	Failures  int       `json:"consecutive_failures"`
	LastCheck time.Time `json:"last_check,omitzero"`
	LastError string    `json:"last_error,omitempty"`
}

type instance struct {
	service string
	target  string // fqdn, lower case
	url     string // as configured or registered
	probe   string // the health check's URL, with the IP the zone gives out
	port    uint16
	ip      netip.Addr
	source  string

	// guarded by Server.mu
	healthy   bool
	failures  int
	lastCheck time.Time
	lastErr   string
}

// names is one version of the zone's names; it is replaced, never changed.
type names struct {
	services  map[string][]*instance // "_svc._tcp.<zone>" -> instances
	hosts     map[string][]*instance // "svc.<zone>" -> instances
	targets   map[string]*instance   // "svc-n.<zone>" -> instance
	instances []*instance            // static ones in configuration order, then registered ones
	known     map[string]bool        // every name that exists in the zone
}

// Server is the authoritative server of one zone. Make it with New, then
// Run it.
type Server struct {
	zone        string // fqdn, lower case
	addr        string
	interval    time.Duration
	timeout     time.Duration
	regInterval time.Duration
	regTimeout  time.Duration
	healthPaths map[string]string
	status      string
	clock       clock.Clock
	log         *slog.Logger
	client      *http.Client

	static     []*instance // from Config.Instances, in configuration order
	registries []*registryState
	kick       chan struct{} // asks checkLoop for a check of every instance now

	mu         sync.RWMutex // guards names, registered and the health fields of instances
	names      *names
	registered map[string][]string // the union of the registries' last good answers

	started  chan struct{}
	udpAddr  string
	httpAddr string
}

var labelRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// New checks cfg and returns a server ready to Run; every problem of the
// configuration (zone, listen address, status address, services, instance
// URLs) is reported, naming it.
func New(cfg Config) (*Server, error) {
	var problems []error
	zone, err := checkZone(cfg.Zone)
	if err != nil {
		problems = append(problems, err)
	}
	if err := checkAddr(cfg.Addr); err != nil {
		problems = append(problems, fmt.Errorf("dns: listen address %q: %w", cfg.Addr, err))
	}
	if cfg.StatusAddr != "" {
		if err := checkAddr(cfg.StatusAddr); err != nil {
			problems = append(problems, fmt.Errorf("dns: status address %q: %w", cfg.StatusAddr, err))
		}
	}
	if cfg.Interval < 0 || cfg.Timeout < 0 || cfg.RegistryInterval < 0 || cfg.RegistryTimeout < 0 {
		problems = append(problems, errors.New("dns: negative health-check or registry interval or timeout"))
	}
	if len(cfg.Instances) == 0 && len(cfg.Registries) == 0 {
		problems = append(problems, errors.New("dns: no instances: give at least one service with its instance URLs, or a registry"))
	}
	for svc, p := range cfg.HealthPaths {
		if !strings.HasPrefix(p, "/") || strings.ContainsAny(p, "?# ") {
			problems = append(problems, fmt.Errorf("dns: health path %q of %s: want an absolute path", p, svc))
		}
	}
	s := &Server{
		zone:        zone,
		addr:        cfg.Addr,
		interval:    cmpOr(cfg.Interval, DefaultInterval),
		timeout:     cmpOr(cfg.Timeout, DefaultTimeout),
		regInterval: cmpOr(cfg.RegistryInterval, DefaultRegistryInterval),
		regTimeout:  cmpOr(cfg.RegistryTimeout, DefaultRegistryTimeout),
		healthPaths: cfg.HealthPaths,
		status:      cfg.StatusAddr,
		clock:       cfg.Clock,
		log:         cfg.Log,
		kick:        make(chan struct{}, 1),
		started:     make(chan struct{}),
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.clock == nil {
		s.clock = clock.Real{}
	}
	s.client = &http.Client{Timeout: s.timeout}
	for _, r := range cfg.Registries {
		if r == nil {
			problems = append(problems, errors.New("dns: a nil registry"))
			continue
		}
		s.registries = append(s.registries, &registryState{reg: r})
	}
	svcs := make([]string, 0, len(cfg.Instances))
	for svc := range cfg.Instances {
		svcs = append(svcs, svc)
	}
	slices.Sort(svcs)
	for _, svc := range svcs {
		urls := cfg.Instances[svc]
		if !labelRE.MatchString(svc) {
			problems = append(problems, fmt.Errorf("dns: service name %q: want a DNS label (a-z, 0-9, '-')", svc))
			continue
		}
		if len(urls) == 0 {
			problems = append(problems, fmt.Errorf("dns: service %q has no instance URLs", svc))
			continue
		}
		for n, raw := range urls {
			in, err := s.newInstance(svc, raw, SourceStatic, func(netip.Addr, uint16) string { return svc + "-" + strconv.Itoa(n) })
			if err != nil {
				problems = append(problems, fmt.Errorf("dns: instance %q of %s: %w", raw, svc, err))
				continue
			}
			s.static = append(s.static, in)
		}
	}
	if len(problems) > 0 {
		return nil, errors.Join(problems...)
	}
	nm, clashes := s.build(nil, nil)
	if len(clashes) > 0 {
		for _, c := range clashes {
			problems = append(problems, errors.New("dns: "+c))
		}
		return nil, errors.Join(problems...)
	}
	s.names = nm
	return s, nil
}

// newInstance parses raw and names the instance label(ip, port).<zone>.
func (s *Server) newInstance(svc, raw, source string, label func(netip.Addr, uint16) string) (*instance, error) {
	scheme, ip, port, err := checkInstance(raw)
	if err != nil {
		return nil, err
	}
	l := label(ip, port)
	if !labelRE.MatchString(l) {
		return nil, fmt.Errorf("its name %q is not a DNS label (at most 63 characters)", l)
	}
	path := DefaultHealthPath
	if p, ok := s.healthPaths[svc]; ok {
		path = p
	}
	return &instance{
		service: svc,
		target:  l + "." + s.zone,
		url:     strings.TrimSuffix(raw, "/"),
		port:    port,
		ip:      ip,
		source:  source,
		probe:   scheme + "://" + net.JoinHostPort(ip.String(), strconv.Itoa(int(port))) + path,
	}, nil
}

// registeredLabel names a registered instance after its address:
// <svc>-127-0-0-1-8081, or <svc>-<32 hex digits>-<port> for IPv6.
func registeredLabel(svc string) func(netip.Addr, uint16) string {
	return func(ip netip.Addr, port uint16) string {
		var a string
		if ip.Is4() {
			a = strings.ReplaceAll(ip.String(), ".", "-")
		} else {
			b := ip.As16()
			a = hex.EncodeToString(b[:])
		}
		return svc + "-" + a + "-" + strconv.Itoa(int(port))
	}
}

// build makes the zone's names from the static instances and the
// registered URLs (service -> URLs), reusing the instances of prev (and so
// their health) that are still there. It returns the problems of
// registered entries it left out (and of clashing names), one line each.
func (s *Server) build(prev *names, registered map[string][]string) (*names, []string) {
	nm := &names{
		services: map[string][]*instance{},
		hosts:    map[string][]*instance{},
		targets:  map[string]*instance{},
		known:    map[string]bool{s.zone: true, "_tcp." + s.zone: true}, // _tcp: empty non-terminal above the SRV names
	}
	var problems []string
	old := map[string]*instance{}
	if prev != nil {
		for _, in := range prev.instances {
			old[in.service+" "+in.url] = in
		}
	}
	byAddr := map[string]bool{} // "svc scheme://ip:port" of the instances added
	add := func(in *instance) bool {
		if nm.targets[in.target] != nil {
			problems = append(problems, fmt.Sprintf("name %s is given twice (service names clash); %s of %s left out", in.target, in.url, in.service))
			return false
		}
		nm.known[in.target] = true
		nm.targets[in.target] = in
		srvName := "_" + in.service + "._tcp." + s.zone
		nm.known[srvName] = true
		nm.services[srvName] = append(nm.services[srvName], in)
		nm.instances = append(nm.instances, in)
		byAddr[in.service+" "+in.probe] = true
		return true
	}
	for _, in := range s.static {
		add(in)
	}
	svcs := make([]string, 0, len(registered))
	for svc := range registered {
		svcs = append(svcs, svc)
	}
	slices.Sort(svcs)
	for _, svc := range svcs {
		if !labelRE.MatchString(svc) {
			problems = append(problems, fmt.Sprintf("registered service %q is not a DNS label (a-z, 0-9, '-'); left out", svc))
			continue
		}
		urls := slices.Clone(registered[svc])
		slices.Sort(urls)
		for _, raw := range slices.Compact(urls) {
			in, err := s.newInstance(svc, raw, SourceRegistry, registeredLabel(svc))
			if err != nil {
				problems = append(problems, fmt.Sprintf("registered instance %q of %s left out: %v", raw, svc, err))
				continue
			}
			if byAddr[svc+" "+in.probe] {
				continue // configured too, under its configured name
			}
			if o := old[svc+" "+in.url]; o != nil && o.target == in.target && o.source == SourceRegistry {
				in = o
			}
			add(in)
		}
	}
	for srvName, list := range nm.services {
		svc := list[0].service
		host := svc + "." + s.zone
		if nm.targets[host] != nil {
			problems = append(problems, fmt.Sprintf("name %s of service %s is also an instance's name; it names the instance only", host, svc))
			continue
		}
		nm.known[host] = true
		nm.hosts[host] = nm.services[srvName]
	}
	slices.Sort(problems)
	return nm, problems
}

func cmpOr(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

func checkZone(z string) (string, error) {
	z = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(z), "."))
	if z == "" {
		return "", errors.New("dns: zone: missing (e.g. shop.test)")
	}
	for _, l := range strings.Split(z, ".") {
		if !labelRE.MatchString(l) {
			return "", fmt.Errorf("dns: zone %q: label %q is not a DNS label (a-z, 0-9, '-')", z, l)
		}
	}
	if len(z) > 200 {
		return "", fmt.Errorf("dns: zone %q: too long", z)
	}
	return z + ".", nil
}

func checkAddr(a string) error {
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return errors.New("want host:port")
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("bad port %q", port)
	}
	if host != "" && host != "localhost" {
		if _, err := netip.ParseAddr(host); err != nil {
			return fmt.Errorf("host %q: want an IP address", host)
		}
	}
	return nil
}

// checkInstance parses a base URL http(s)://IP[:port][/].
func checkInstance(raw string) (string, netip.Addr, uint16, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", netip.Addr{}, 0, errors.New("not a URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", netip.Addr{}, 0, errors.New("want http://IP:port or https://IP:port")
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", netip.Addr{}, 0, errors.New("want a base URL with no path, query or user")
	}
	host := u.Hostname()
	if host == "localhost" {
		host = "127.0.0.1"
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || ip.Zone() != "" {
		return "", netip.Addr{}, 0, fmt.Errorf("host %q is not an IP address: only IP hosts are supported (localhost is 127.0.0.1)", u.Hostname())
	}
	port := 80
	if u.Scheme == "https" {
		port = 443
	}
	if p := u.Port(); p != "" {
		port, err = strconv.Atoi(p)
		if err != nil || port < 1 || port > 65535 {
			return "", netip.Addr{}, 0, fmt.Errorf("bad port %q", p)
		}
	}
	return u.Scheme, ip.Unmap(), uint16(port), nil
}

// Zone is the zone's name, fully qualified and lower case ("shop.test.").
func (s *Server) Zone() string { return s.zone }

// Addr is the address the server listens on (UDP and TCP), once Run has
// bound it; WaitStarted waits for that.
func (s *Server) Addr() string {
	select {
	case <-s.started:
		return s.udpAddr
	default:
		return ""
	}
}

// StatusAddr is the address of the status listener once started, or "".
func (s *Server) StatusAddr() string {
	select {
	case <-s.started:
		return s.httpAddr
	default:
		return ""
	}
}

// Started is closed when Run has bound its listeners.
func (s *Server) Started() <-chan struct{} { return s.started }

// Status reports every instance and its health: the configured ones in
// configuration order (services sorted by name), then the registered ones
// (sorted by service and URL).
func (s *Server) Status() []InstanceStatus {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]InstanceStatus, 0, len(s.names.instances))
	for _, in := range s.names.instances {
		out = append(out, InstanceStatus{
			Service: in.service, Target: in.target, URL: in.url, Source: in.source,
			Healthy: in.healthy, Failures: in.failures, LastCheck: in.lastCheck, LastError: in.lastErr,
		})
	}
	return out
}

// Run binds the UDP and TCP listeners (and the status listener), checks
// health every interval and answers queries until ctx ends; then it shuts
// down and returns nil. It returns an error when a listener cannot be bound.
func (s *Server) Run(ctx context.Context) error {
	pc, ln, err := listenBoth(s.addr)
	if err != nil {
		return fmt.Errorf("dns: listen on %s: %w", s.addr, err)
	}
	var hs *http.Server
	var hl net.Listener
	if s.status != "" {
		hl, err = net.Listen("tcp", s.status)
		if err != nil {
			pc.Close()
			ln.Close()
			return fmt.Errorf("dns: status listener on %s: %w", s.status, err)
		}
		s.httpAddr = hl.Addr().String()
		mux := http.NewServeMux()
		mux.HandleFunc("GET /{$}", s.serveStatus)
		mux.HandleFunc("GET /status", s.serveStatus)
		hs = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	}
	s.udpAddr = pc.LocalAddr().String()
	h := mdns.HandlerFunc(s.serveDNS)
	udp := &mdns.Server{PacketConn: pc, Handler: h}
	tcp := &mdns.Server{Listener: ln, Handler: h}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 3)
	serve := func(name string, f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil && ctx.Err() == nil {
				errc <- fmt.Errorf("dns: %s: %w", name, err)
				cancel()
			}
		}()
	}
	serve("udp", udp.ActivateAndServe)
	serve("tcp", tcp.ActivateAndServe)
	if hs != nil {
		serve("status", func() error {
			if err := hs.Serve(hl); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
	}
	wg.Add(1)
	go func() { defer wg.Done(); s.checkLoop(ctx) }()
	if len(s.registries) > 0 {
		wg.Add(1)
		go func() { defer wg.Done(); s.pollLoop(ctx) }()
	}
	s.log.Info("dns server started", "zone", s.zone, "addr", s.udpAddr, "status", s.httpAddr,
		"instances", len(s.static), "registries", len(s.registries))
	close(s.started)

	<-ctx.Done()
	sctx, scancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer scancel()
	_ = udp.ShutdownContext(sctx)
	_ = tcp.ShutdownContext(sctx)
	if hs != nil {
		_ = hs.Shutdown(sctx)
	}
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
		s.log.Info("dns server stopped")
		return nil
	}
}

// listenBoth binds UDP and TCP on the same address; with port 0 it picks
// the UDP port first and retries when TCP cannot have the same one.
func listenBoth(addr string) (net.PacketConn, net.Listener, error) {
	_, port, _ := net.SplitHostPort(addr)
	var last error
	for range 10 {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, nil, err
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
		last = err
		if port != "0" {
			break
		}
	}
	return nil, nil, last
}

func (s *Server) serveStatus(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"zone": s.zone, "instances": s.Status(), "registries": s.RegistryStatus()})
}

// checkLoop checks every instance now and then every interval, and at
// once when kicked (an instance is new).
func (s *Server) checkLoop(ctx context.Context) {
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		s.checkAll(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.kick:
		}
	}
}

func (s *Server) checkAll(ctx context.Context) {
	s.mu.RLock()
	list := s.names.instances
	s.mu.RUnlock()
	var wg sync.WaitGroup
	for _, in := range list {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := s.check(ctx, in)
			if ctx.Err() != nil {
				return
			}
			s.record(in, err)
		}()
	}
	wg.Wait()
}

func (s *Server) check(ctx context.Context, in *instance) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, in.probe, nil)
	if err != nil {
		return err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("/readyz answered %s", resp.Status)
	}
	return nil
}

func (s *Server) record(in *instance, err error) {
	s.mu.Lock()
	was := in.healthy
	in.lastCheck = s.clock.Now()
	if err == nil {
		in.healthy, in.failures, in.lastErr = true, 0, ""
	} else {
		in.failures++
		in.lastErr = err.Error()
		if in.failures >= failuresToDrop {
			in.healthy = false
		}
	}
	now := in.healthy
	s.mu.Unlock()
	switch {
	case now && !was:
		s.log.Info("instance healthy", "service", in.service, "target", in.target, "url", in.url)
	case !now && was:
		s.log.Warn("instance unhealthy", "service", in.service, "target", in.target, "url", in.url, "err", err)
	}
}

// serveDNS answers one query.
func (s *Server) serveDNS(w mdns.ResponseWriter, q *mdns.Msg) {
	m := s.answer(q)
	size := mdns.MinMsgSize
	if _, tcp := w.RemoteAddr().(*net.TCPAddr); tcp {
		size = mdns.MaxMsgSize
	} else if opt := q.IsEdns0(); opt != nil {
		size = max(int(opt.UDPSize()), mdns.MinMsgSize)
	}
	m.Truncate(size)
	_ = w.WriteMsg(m)
}

// answer builds the reply to q.
func (s *Server) answer(q *mdns.Msg) *mdns.Msg {
	m := new(mdns.Msg)
	m.SetReply(q)
	m.RecursionAvailable = false
	if opt := q.IsEdns0(); opt != nil {
		m.SetEdns0(max(opt.UDPSize(), mdns.MinMsgSize), false)
	}
	if q.Opcode != mdns.OpcodeQuery {
		m.Rcode = mdns.RcodeNotImplemented
		return m
	}
	if len(q.Question) != 1 {
		m.Rcode = mdns.RcodeFormatError
		return m
	}
	qq := q.Question[0]
	name := strings.ToLower(qq.Name)
	if qq.Qclass != mdns.ClassINET || !mdns.IsSubDomain(s.zone, name) {
		m.Rcode = mdns.RcodeRefused
		return m
	}
	m.Authoritative = true
	s.mu.RLock()
	defer s.mu.RUnlock()
	nm := s.names
	if !nm.known[name] {
		m.Rcode = mdns.RcodeNameError
		m.Ns = []mdns.RR{s.soa()}
		return m
	}
	hdr := func(t uint16) mdns.RR_Header {
		return mdns.RR_Header{Name: qq.Name, Rrtype: t, Class: mdns.ClassINET, Ttl: TTL}
	}
	switch {
	case name == s.zone && (qq.Qtype == mdns.TypeSOA || qq.Qtype == mdns.TypeANY):
		soa := s.soa()
		soa.Hdr.Name = qq.Name
		m.Answer = append(m.Answer, soa)
	case qq.Qtype == mdns.TypeSRV || qq.Qtype == mdns.TypeANY:
		for _, in := range nm.services[name] {
			if !in.healthy {
				continue
			}
			m.Answer = append(m.Answer, &mdns.SRV{Hdr: hdr(mdns.TypeSRV), Priority: 10, Weight: 10, Port: in.port, Target: in.target})
			m.Extra = append(m.Extra, addrRR(in))
		}
		if qq.Qtype == mdns.TypeANY {
			m.Answer = append(m.Answer, addrRRs(nm, name, qq.Name, true, true)...)
		}
	case qq.Qtype == mdns.TypeA || qq.Qtype == mdns.TypeAAAA:
		m.Answer = append(m.Answer, addrRRs(nm, name, qq.Name, qq.Qtype == mdns.TypeA, qq.Qtype == mdns.TypeAAAA)...)
	}
	if len(m.Answer) == 0 {
		m.Ns = []mdns.RR{s.soa()}
	}
	return m
}

// addrRRs are the A (v4) and/or AAAA (v6) records of name (lower case),
// named qname: those of a healthy target, or of the distinct addresses of a
// service's healthy instances. s.mu must be held.
func addrRRs(nm *names, name, qname string, v4, v6 bool) []mdns.RR {
	list := nm.hosts[name]
	if in := nm.targets[name]; in != nil {
		list = []*instance{in}
	}
	var out []mdns.RR
	seen := map[netip.Addr]bool{}
	for _, in := range list {
		if !in.healthy || seen[in.ip] || (in.ip.Is4() && !v4) || (!in.ip.Is4() && !v6) {
			continue
		}
		seen[in.ip] = true
		rr := addrRR(in)
		rr.Header().Name = qname
		out = append(out, rr)
	}
	return out
}

// addrRR is the A or AAAA record of an instance's target.
func addrRR(in *instance) mdns.RR {
	if in.ip.Is4() {
		return &mdns.A{Hdr: mdns.RR_Header{Name: in.target, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: TTL}, A: in.ip.AsSlice()}
	}
	return &mdns.AAAA{Hdr: mdns.RR_Header{Name: in.target, Rrtype: mdns.TypeAAAA, Class: mdns.ClassINET, Ttl: TTL}, AAAA: in.ip.AsSlice()}
}

// soa is the zone's minimal SOA record, for negative answers (TTL and
// minimum 1 s, so a negative answer is not remembered longer than a
// positive one).
func (s *Server) soa() *mdns.SOA {
	return &mdns.SOA{
		Hdr:     mdns.RR_Header{Name: s.zone, Rrtype: mdns.TypeSOA, Class: mdns.ClassINET, Ttl: TTL},
		Ns:      "ns." + s.zone,
		Mbox:    "hostmaster." + s.zone,
		Serial:  1,
		Refresh: 60,
		Retry:   10,
		Expire:  600,
		Minttl:  TTL,
	}
}
