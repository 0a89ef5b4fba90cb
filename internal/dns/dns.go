// Package dns is the shop's small authoritative DNS server: it answers SRV
// (and A/AAAA) records of a zone for the service instances that pass their
// health check, with short TTLs, so that clients (httpx.SRV) discover their
// backends through it.
//
// Names of a zone "shop.test." with instances of service "catalog":
//
//	_catalog._tcp.shop.test.  SRV  10 10 <port> catalog-<n>.shop.test.  (one per healthy instance)
//	catalog-<n>.shop.test.    A    <ip>  (AAAA for an IPv6 instance; only while healthy)
//
// n is the instance's index in the configured list. The SRV targets are
// names, not addresses, because Go's resolver rejects numeric SRV targets;
// the SRV answer carries the targets' addresses in its additional section.
// Every record has a TTL of 1 s. A name of the zone that is not one of these
// is NXDOMAIN; a known name asked for another type, an SRV name with no
// healthy instance and an unhealthy target are NOERROR with no answer; negative
// answers carry the zone's SOA (TTL 1) in the authority section. A name
// outside the zone is REFUSED.
//
// Health: every Interval (default 500 ms) each instance's /readyz is asked
// with a Timeout (default 400 ms). An instance starts unhealthy, becomes
// healthy after one answer 2xx and unhealthy again after two consecutive
// failures (an error, a timeout or another status), so one lost probe does
// not drop it but a dead one is gone within about two intervals plus a
// timeout.
package dns

import (
	"context"
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
)

// Defaults of Config.
const (
	DefaultInterval = 500 * time.Millisecond
	DefaultTimeout  = 400 * time.Millisecond
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
	// Interval between health checks (default 500 ms); Timeout of one
	// check (default 400 ms).
	Interval, Timeout time.Duration
	// StatusAddr, when not empty, is the host:port of an HTTP listener that
	// serves Status as JSON at / and /status.
	StatusAddr string
	// Log nil is slog.Default().
	Log *slog.Logger
}

// InstanceStatus is one instance's health, as Status reports it.
type InstanceStatus struct {
	Service   string    `json:"service"`
	Target    string    `json:"target"` // <svc>-<n>.<zone>
	URL       string    `json:"url"`
	Healthy   bool      `json:"healthy"`
	Failures  int       `json:"consecutive_failures"`
	LastCheck time.Time `json:"last_check,omitzero"`
	LastError string    `json:"last_error,omitempty"`
}

type instance struct {
	service string
	target  string // fqdn, lower case
	url     string // as configured
	probe   string // the /readyz URL, with the IP the zone gives out
	port    uint16
	ip      netip.Addr

	// guarded by Server.mu
	healthy   bool
	failures  int
	lastCheck time.Time
	lastErr   string
}

// Server is the authoritative server of one zone. Make it with New, then
// Run it.
type Server struct {
	zone     string // fqdn, lower case
	addr     string
	interval time.Duration
	timeout  time.Duration
	status   string
	log      *slog.Logger
	client   *http.Client

	services  map[string][]*instance // "_svc._tcp.<zone>" -> instances
	targets   map[string]*instance   // "svc-n.<zone>" -> instance
	instances []*instance            // in configuration order
	known     map[string]bool        // every name that exists in the zone

	mu sync.RWMutex // guards the health fields of instances

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
	if cfg.Interval < 0 || cfg.Timeout < 0 {
		problems = append(problems, errors.New("dns: negative health-check interval or timeout"))
	}
	if len(cfg.Instances) == 0 {
		problems = append(problems, errors.New("dns: no instances: give at least one service with its instance URLs"))
	}
	s := &Server{
		zone:     zone,
		addr:     cfg.Addr,
		interval: cmpOr(cfg.Interval, DefaultInterval),
		timeout:  cmpOr(cfg.Timeout, DefaultTimeout),
		status:   cfg.StatusAddr,
		log:      cfg.Log,
		services: map[string][]*instance{},
		targets:  map[string]*instance{},
		known:    map[string]bool{},
		started:  make(chan struct{}),
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.client = &http.Client{Timeout: s.timeout}
	s.known[zone] = true
	s.known["_tcp."+zone] = true // empty non-terminal above the SRV names
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
		srvName := "_" + svc + "._tcp." + zone
		s.known[srvName] = true
		s.services[srvName] = nil
		for n, raw := range urls {
			scheme, ip, port, err := checkInstance(raw)
			if err != nil {
				problems = append(problems, fmt.Errorf("dns: instance %q of %s: %w", raw, svc, err))
				continue
			}
			in := &instance{
				service: svc,
				target:  svc + "-" + strconv.Itoa(n) + "." + zone,
				url:     strings.TrimSuffix(raw, "/"),
				port:    port,
				ip:      ip,
				probe:   scheme + "://" + net.JoinHostPort(ip.String(), strconv.Itoa(int(port))) + "/readyz",
			}
			if s.targets[in.target] != nil {
				problems = append(problems, fmt.Errorf("dns: name %s is given twice (service names clash)", in.target))
				continue
			}
			s.known[in.target] = true
			s.targets[in.target] = in
			s.services[srvName] = append(s.services[srvName], in)
			s.instances = append(s.instances, in)
		}
	}
	if len(problems) > 0 {
		return nil, errors.Join(problems...)
	}
	return s, nil
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

// Status reports every instance and its health, in configuration order
// (services sorted by name).
func (s *Server) Status() []InstanceStatus {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]InstanceStatus, 0, len(s.instances))
	for _, in := range s.instances {
		out = append(out, InstanceStatus{
			Service: in.service, Target: in.target, URL: in.url,
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
	s.log.Info("dns server started", "zone", s.zone, "addr", s.udpAddr, "status", s.httpAddr, "instances", len(s.instances))
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
	_ = json.NewEncoder(w).Encode(map[string]any{"zone": s.zone, "instances": s.Status()})
}

// checkLoop checks every instance now and then every interval.
func (s *Server) checkLoop(ctx context.Context) {
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		s.checkAll(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Server) checkAll(ctx context.Context) {
	var wg sync.WaitGroup
	for _, in := range s.instances {
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
	in.lastCheck = time.Now()
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
	if !s.known[name] {
		m.Rcode = mdns.RcodeNameError
		m.Ns = []mdns.RR{s.soa()}
		return m
	}
	hdr := func(t uint16) mdns.RR_Header {
		return mdns.RR_Header{Name: qq.Name, Rrtype: t, Class: mdns.ClassINET, Ttl: TTL}
	}
	s.mu.RLock()
	switch {
	case name == s.zone && (qq.Qtype == mdns.TypeSOA || qq.Qtype == mdns.TypeANY):
		soa := s.soa()
		soa.Hdr.Name = qq.Name
		m.Answer = append(m.Answer, soa)
	case qq.Qtype == mdns.TypeSRV || qq.Qtype == mdns.TypeANY:
		for _, in := range s.services[name] {
			if !in.healthy {
				continue
			}
			m.Answer = append(m.Answer, &mdns.SRV{Hdr: hdr(mdns.TypeSRV), Priority: 10, Weight: 10, Port: in.port, Target: in.target})
			m.Extra = append(m.Extra, addrRR(in))
		}
		if in := s.targets[name]; qq.Qtype == mdns.TypeANY && in != nil && in.healthy {
			rr := addrRR(in)
			rr.Header().Name = qq.Name
			m.Answer = append(m.Answer, rr)
		}
	case qq.Qtype == mdns.TypeA || qq.Qtype == mdns.TypeAAAA:
		if in := s.targets[name]; in != nil && in.healthy && (qq.Qtype == mdns.TypeA) == in.ip.Is4() {
			rr := addrRR(in)
			rr.Header().Name = qq.Name
			m.Answer = append(m.Answer, rr)
		}
	}
	s.mu.RUnlock()
	if len(m.Answer) == 0 {
		m.Ns = []mdns.RR{s.soa()}
	}
	return m
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
