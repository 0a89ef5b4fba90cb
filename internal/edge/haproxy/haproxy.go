// Package haproxy renders an haproxy.cfg (HAProxy 2.6) that does the job of
// "globomantics edge": a layer-7 load balancer in front of the shop's
// storefronts, for operators who prefer HAProxy. The backends of a pool are
// static URLs and/or DNS SRV names answered by the shop's DNS server
// (internal/dns), so instances that appear in DNS get traffic without an
// edit of the configuration.
//
// What the rendered configuration promises, matching the edge:
//   - health checks GET /readyz every 500 ms; 2 failures (a 503 while the
//     shop drains included) take a server out, 1 success brings it back;
//   - a request that failed to connect is retried (at most 2 times) on
//     another server; idempotent requests (GET, HEAD, OPTIONS, PUT, DELETE
//     or any request carrying Idempotency-Key) are also retried after an
//     empty response or a 503; other requests are never resent once sent;
//   - X-Forwarded-For/-Proto/-Host, a sane X-Request-Id kept or generated
//     (echoed on the response), keep-alive to servers with http-reuse always,
//     gzip of text responses, a body limit (413 when Content-Length is over),
//     /svc/ paths refused on the public listener (404), problem+json errors;
//   - /_haproxy/healthz answers 200 while HAProxy runs; an optional stats
//     listener serves the stats page and Prometheus metrics (/metrics).
package haproxy

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/globomantics/globomantics/internal/platform/errs"
)

// Defaults of Config fields left zero.
const (
	DefaultHealthPath     = "/readyz"
	DefaultHealthInterval = 500 * time.Millisecond
	DefaultFall           = 2
	DefaultRise           = 1
	DefaultConnectTimeout = 2 * time.Second
	DefaultServerTimeout  = 30 * time.Second
	DefaultClientTimeout  = 30 * time.Second
	DefaultRequestTimeout = 10 * time.Second
	DefaultIdleTimeout    = 120 * time.Second
	DefaultMaxBody        = 10 << 20
	DefaultRetries        = 2
	DefaultSRVSlots       = 16
	DefaultBalance        = "random(2)" // power of two choices, as the edge's p2c
	DefaultPool           = "storefront"
	DefaultMaxConn        = 4096
)

// Pool is one group of interchangeable backends.
type Pool struct {
	// Name is the pool's name: letters, digits, '-' and '_'.
	Name string
	// Servers are static base URLs, http://host:port (a host name is
	// resolved once, when HAProxy starts).
	Servers []string
	// SRV are DNS SRV names (e.g. _storefront._tcp.shop.test) whose targets
	// become servers, looked up through Config.DNSServer.
	SRV []string
	// SRVSlots is how many servers one SRV name may yield (the
	// server-template count); DefaultSRVSlots when zero.
	SRVSlots int
}

// Config describes the load balancer. Zero durations and counts take the
// defaults above.
type Config struct {
	// Listen is the public listener, host:port or :port.
	Listen string
	// InternalListen, when set, is a listener routing /svc/{pool}/... to
	// the pool of that name (back-end load balancing between services).
	InternalListen string
	// StatsListen, when set, is a listener serving the stats page on / and
	// Prometheus metrics on /metrics.
	StatsListen string
	// Pools are the backends; the public listener sends everything to
	// DefaultPool (the pool named "storefront" unless set).
	Pools       []Pool
	DefaultPool string
	// DNSServer is the host:port (an IP address) of the DNS server that
	// answers the pools' SRV names; required when a pool has SRV names.
	DNSServer string
	// Balance is HAProxy's balance algorithm: random(2) (default),
	// leastconn or roundrobin.
	Balance string

	HealthPath     string
	HealthInterval time.Duration
	Fall, Rise     int

	ConnectTimeout time.Duration // dialing a server
	ServerTimeout  time.Duration // a server's silence, response headers included
	ClientTimeout  time.Duration // a client's silence
	RequestTimeout time.Duration // a client sending its request headers
	IdleTimeout    time.Duration // a client's keep-alive connection between requests

	// MaxBody is the largest Content-Length accepted (413 above).
	MaxBody int64
	// Retries is how many times a failed request may be tried again.
	Retries int
	// MaxConn is the process's connection limit.
	MaxConn int
	// Threads is nbthread; 0 lets HAProxy use every CPU.
	Threads int
	// AccessLog logs every request to stderr (costs throughput); state
	// changes of servers are logged either way.
	AccessLog bool
}

var (
	nameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
	srvRE  = regexp.MustCompile(`^_[A-Za-z0-9-]+\._(tcp|udp)(\.[A-Za-z0-9-]+)+\.?$`)
)

// withDefaults returns c with zero fields set to the defaults.
func (c Config) withDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.HealthInterval, DefaultHealthInterval)
	def(&c.ConnectTimeout, DefaultConnectTimeout)
	def(&c.ServerTimeout, DefaultServerTimeout)
	def(&c.ClientTimeout, DefaultClientTimeout)
	def(&c.RequestTimeout, DefaultRequestTimeout)
	def(&c.IdleTimeout, DefaultIdleTimeout)
	if c.HealthPath == "" {
		c.HealthPath = DefaultHealthPath
	}
	if c.Fall == 0 {
		c.Fall = DefaultFall
	}
	if c.Rise == 0 {
		c.Rise = DefaultRise
	}
	if c.MaxBody == 0 {
		c.MaxBody = DefaultMaxBody
	}
	if c.Retries == 0 {
		c.Retries = DefaultRetries
	}
	if c.MaxConn == 0 {
		c.MaxConn = DefaultMaxConn
	}
	if c.Balance == "" {
		c.Balance = DefaultBalance
	}
	if c.DefaultPool == "" {
		c.DefaultPool = DefaultPool
	}
	for i := range c.Pools {
		if c.Pools[i].SRVSlots == 0 {
			c.Pools[i].SRVSlots = DefaultSRVSlots
		}
	}
	return c
}

// validate reports every problem of c (with defaults applied) in one error.
func (c Config) validate() error {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	checkListen := func(flag, a string) {
		if a == "" {
			return
		}
		if _, p, err := net.SplitHostPort(a); err != nil || p == "" {
			bad("%s %q: want host:port or :port", flag, a)
		} else if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			bad("%s %q: bad port", flag, a)
		}
	}
	if c.Listen == "" {
		bad("listen address missing")
	}
	checkListen("listen", c.Listen)
	checkListen("internal listen", c.InternalListen)
	checkListen("stats listen", c.StatsListen)
	if len(c.Pools) == 0 {
		bad("no pools")
	}
	seen := map[string]bool{}
	anySRV := false
	for _, p := range c.Pools {
		if !nameRE.MatchString(p.Name) {
			bad("pool name %q: want 1-64 of [A-Za-z0-9_-]", p.Name)
		}
		if seen[p.Name] {
			bad("pool %q given twice", p.Name)
		}
		seen[p.Name] = true
		if len(p.Servers) == 0 && len(p.SRV) == 0 {
			bad("pool %q has no servers", p.Name)
		}
		for _, s := range p.Servers {
			if _, err := serverAddr(s); err != nil {
				bad("pool %q: %v", p.Name, err)
			}
		}
		for _, s := range p.SRV {
			if !srvRE.MatchString(s) {
				bad("pool %q: SRV name %q: want _service._tcp.domain", p.Name, s)
			}
			anySRV = true
		}
		if p.SRVSlots < 1 || p.SRVSlots > 1024 {
			bad("pool %q: SRV slots %d: want 1 to 1024", p.Name, p.SRVSlots)
		}
	}
	if !seen[c.DefaultPool] {
		bad("no pool named %q for the public listener", c.DefaultPool)
	}
	if anySRV {
		if c.DNSServer == "" {
			bad("SRV backends need a DNS server address")
		} else if h, p, err := net.SplitHostPort(c.DNSServer); err != nil || net.ParseIP(h) == nil || p == "" {
			bad("DNS server %q: want IP:port", c.DNSServer)
		}
	}
	switch c.Balance {
	case "random(2)", "leastconn", "roundrobin":
	default:
		bad("balance %q: want random(2), leastconn or roundrobin", c.Balance)
	}
	if !strings.HasPrefix(c.HealthPath, "/") || strings.ContainsAny(c.HealthPath, " \t\r\n\"'\\#") {
		bad("health path %q: want an absolute path without spaces or quotes", c.HealthPath)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"health interval", c.HealthInterval}, {"connect timeout", c.ConnectTimeout}, {"server timeout", c.ServerTimeout},
		{"client timeout", c.ClientTimeout}, {"request timeout", c.RequestTimeout}, {"idle timeout", c.IdleTimeout}} {
		if d.v < time.Millisecond {
			bad("%s %v: want at least 1ms", d.name, d.v)
		}
	}
	if c.Fall < 1 || c.Rise < 1 {
		bad("fall and rise must be at least 1")
	}
	if c.MaxBody < 1 {
		bad("max body %d: want positive", c.MaxBody)
	}
	if c.Retries < 0 || c.Retries > 10 {
		bad("retries %d: want 0 to 10", c.Retries)
	}
	if c.MaxConn < 1 || c.Threads < 0 || c.Threads > 64 {
		bad("maxconn must be positive and threads 0 to 64")
	}
	if len(problems) > 0 {
		return errs.E("haproxy.Render", errs.Invalid, errs.Msg("%s", strings.Join(problems, "; ")))
	}
	return nil
}

// serverAddr turns a base URL http://host:port into host:port.
func serverAddr(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("server %q: %v", raw, err)
	}
	if u.Scheme != "http" {
		return "", fmt.Errorf("server %q: only http:// base URLs are supported", raw)
	}
	if u.Hostname() == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("server %q: want http://host:port", raw)
	}
	port := u.Port()
	if port == "" {
		port = "80"
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("server %q: bad port", raw)
	}
	if strings.ContainsAny(u.Hostname(), " \t#\"'\\") {
		return "", fmt.Errorf("server %q: bad host", raw)
	}
	return net.JoinHostPort(u.Hostname(), port), nil
}

// ms renders d as HAProxy milliseconds.
func ms(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) + "ms" }

// problem is an http-request return / http-error line body in
// problem+json (RFC 9457).
func problem(status int, title string) string {
	return fmt.Sprintf(`status %d content-type "application/problem+json" string "{\"type\":\"about:blank\",\"title\":\"%s\",\"status\":%d}"`, status, title, status)
}

// textTypes are the response types compressed with gzip.
var textTypes = "text/html text/plain text/css text/javascript application/javascript application/json application/problem+json image/svg+xml application/xml"

// Render returns the haproxy.cfg text for cfg, or an errs.Invalid error
// naming every problem of cfg.
func Render(cfg Config) ([]byte, error) {
	c := cfg.withDefaults()
	if err := c.validate(); err != nil {
		return nil, err
	}
	var b bytes.Buffer
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }

	w("# Generated by globomantics (internal/edge/haproxy) for HAProxy 2.6. Do not edit: regenerate.")
	w("global")
	w("    maxconn %d", c.MaxConn)
	if c.Threads > 0 {
		w("    nbthread %d", c.Threads)
	}
	w("    log stderr format raw local0 notice")
	w("    tune.bufsize 32768")
	w("")
	w("defaults")
	w("    mode http")
	if c.AccessLog {
		w("    log global")
		w("    option httplog")
	}
	w("    option http-keep-alive")
	w("    option forwardfor")
	w("    option redispatch 1")
	w("    retries %d", c.Retries)
	w("    retry-on conn-failure empty-response 503")
	w("    http-reuse always")
	w("    balance %s", c.Balance)
	w("    timeout connect %s", ms(c.ConnectTimeout))
	w("    timeout client %s", ms(c.ClientTimeout))
	w("    timeout server %s", ms(c.ServerTimeout))
	w("    timeout http-request %s", ms(c.RequestTimeout))
	w("    timeout http-keep-alive %s", ms(c.IdleTimeout))
	w("    timeout queue %s", ms(c.ConnectTimeout))
	w("    timeout check %s", ms(min(c.HealthInterval*2, time.Second)))
	w("    unique-id-format %%[uuid()]")
	w("    default-server inter %s fastinter %s downinter %s fall %d rise %d observe layer4 error-limit 3 on-error mark-down",
		ms(c.HealthInterval), ms(c.HealthInterval), ms(c.HealthInterval), c.Fall, c.Rise)
	for _, s := range []struct {
		code  int
		title string
	}{{400, "Bad Request"}, {408, "Request Timeout"}, {500, "Internal Server Error"}, {502, "Bad Gateway"}, {503, "Service Unavailable"}, {504, "Gateway Timeout"}} {
		w("    http-error %s", problem(s.code, s.title))
	}
	w("")

	anySRV := false
	for _, p := range c.Pools {
		anySRV = anySRV || len(p.SRV) > 0
	}
	if anySRV {
		w("resolvers globo")
		w("    nameserver dns1 %s", c.DNSServer)
		w("    accepted_payload_size 8192")
		w("    resolve_retries 3")
		w("    timeout resolve 1s")
		w("    timeout retry 500ms")
		w("    hold valid 1s")
		w("    hold other 1s")
		w("    hold refused 1s")
		w("    hold nx 1s")
		w("    hold timeout 1s")
		w("    hold obsolete 1s")
		w("")
	}

	// The front ends share the request handling: id, forwarding headers,
	// body limit.
	common := func() {
		w("    http-request set-header X-Request-Id %%[unique-id] unless { req.hdr(x-request-id) -m reg ^[A-Za-z0-9._-]{1,64}$ }")
		w("    http-request set-var(txn.request_id) req.hdr(x-request-id)")
		w("    http-after-response set-header X-Request-Id %%[var(txn.request_id)]")
		w("    http-request set-header X-Forwarded-Proto https if { ssl_fc }")
		w("    http-request set-header X-Forwarded-Proto http unless { ssl_fc }")
		w("    http-request set-header X-Forwarded-Host %%[req.hdr(host)] if { req.hdr(host) -m found }")
		w("    http-request return %s if { req.hdr_val(content-length) gt %d }", problem(413, "Content Too Large"), c.MaxBody)
	}
	w("frontend public")
	w("    bind %s", c.Listen)
	w("    monitor-uri /_haproxy/healthz")
	common()
	w("    http-request return %s if { path_beg /svc/ }", problem(404, "Not Found"))
	w("    default_backend %s", c.DefaultPool)
	w("")
	if c.InternalListen != "" {
		w("frontend internal")
		w("    bind %s", c.InternalListen)
		w("    monitor-uri /_haproxy/healthz")
		common()
		prefixes := make([]string, 0, len(c.Pools))
		for _, p := range c.Pools {
			prefixes = append(prefixes, "/svc/"+p.Name+"/")
		}
		w("    acl known_pool path_beg %s", strings.Join(prefixes, " "))
		w("    http-request return %s unless known_pool", problem(404, "Not Found"))
		for _, p := range c.Pools {
			w("    use_backend %s if { path_beg /svc/%s/ }", p.Name, p.Name)
		}
		w("")
	}
	if c.StatsListen != "" {
		w("frontend stats")
		w("    bind %s", c.StatsListen)
		w("    http-request use-service prometheus-exporter if { path /metrics }")
		w("    stats enable")
		w("    stats uri /")
		w("    stats refresh 5s")
		w("")
	}

	for _, p := range c.Pools {
		w("backend %s", p.Name)
		w("    option httpchk")
		w("    http-check send meth GET uri %s ver HTTP/1.1 hdr Host localhost", c.HealthPath)
		w("    http-check expect status 200-299")
		// Requests that may have reached a server are resent only when
		// idempotent; failed connects are retried for every method.
		w("    http-request disable-l7-retry unless METH_GET or METH_HEAD or METH_OPTIONS or { method PUT DELETE } or { req.hdr(idempotency-key) -m found }")
		w("    compression algo gzip")
		w("    compression type %s", textTypes)
		for i, s := range p.Servers {
			addr, _ := serverAddr(s)
			w("    server %s%d %s check", shortName(p.Name), i+1, addr)
		}
		for i, s := range p.SRV {
			w("    server-template %ssrv%d_ %d %s resolvers globo resolve-prefer ipv4 init-addr none check", shortName(p.Name), i+1, p.SRVSlots, strings.TrimSuffix(s, "."))
		}
		w("")
	}
	return b.Bytes(), nil
}

// shortName is the prefix of a pool's server names.
func shortName(pool string) string { return strings.ReplaceAll(pool, "-", "_") + "_" }

// Check asks the haproxy binary at bin (Binary() when empty) whether cfg is
// a valid configuration (haproxy -c) and returns HAProxy's warnings about
// it, one a line. An invalid configuration is an errs.Invalid error
// carrying HAProxy's messages; a missing binary is errs.Unavailable.
func Check(ctx context.Context, bin string, cfg []byte) (warnings []string, err error) {
	const op = "haproxy.Check"
	if bin == "" {
		bin = Binary()
		if bin == "" {
			return nil, errs.E(op, errs.Unavailable, errs.Msg("haproxy binary not found"))
		}
	}
	dir, err := os.MkdirTemp("", "globo-haproxy-check-")
	if err != nil {
		return nil, errs.E(op, err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(path, cfg, 0o600); err != nil {
		return nil, errs.E(op, err)
	}
	out, err := exec.CommandContext(ctx, bin, "-c", "-f", path).CombinedOutput()
	if err != nil {
		return nil, errs.E(op, errs.Invalid, errs.Msg("haproxy -c: %s", strings.TrimSpace(string(out))), err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "[WARNING]") || strings.Contains(line, "[ALERT]") {
			warnings = append(warnings, strings.TrimSpace(line))
		}
	}
	return warnings, nil
}

// Binary returns the path of the haproxy binary: on PATH, or where Debian
// installs it; "" when there is none.
func Binary() string {
	if p, err := exec.LookPath("haproxy"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/haproxy", "/usr/local/sbin/haproxy"} {
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p
		}
	}
	return ""
}
