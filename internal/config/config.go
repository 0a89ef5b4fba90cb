// Package config holds the shop's configuration: defaults that run the whole
// shop in one process with embedded engines, overridden by environment
// variables (GLOBO_*) and then by command-line flags.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/mail"
	"net/netip"
	"net/url"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/globomantics/globomantics/internal/platform/blob"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/fault"
	"github.com/globomantics/globomantics/internal/platform/redisx"
	"github.com/globomantics/globomantics/internal/platform/shard"
)

// Service names, as used by --services and peer configuration.
const (
	Account    = "account"
	Catalog    = "catalog"
	Search     = "search"
	Cart       = "cart"
	Payment    = "payment"
	Shipping   = "shipping"
	Order      = "order"
	Checkout   = "checkout"
	Storefront = "storefront"
	Thumbnails = "thumbnails" // the thumbnail worker
	Mail       = "mail"       // the order e-mail worker
	Analytics  = "analytics"  // page views and searches, summarised
	Partner    = "partner"    // partners' listings, sales and webhook log
	Webhooks   = "webhooks"   // the partner webhook delivery worker
)

// AllServices lists every service, worker and server by name, the default
// set a process runs. The order is for display only: which service needs
// which, and so the build order, is the registry's in package app.
var AllServices = []string{Account, Catalog, Search, Cart, Payment, Shipping, Order, Checkout, Thumbnails, Mail, Analytics, Partner, Webhooks, Storefront}

// Config is the whole configuration of one process.
type Config struct {
	HTTPAddr string // where the HTTP server listens: the public storefront
	// InternalAddr is where the services' internal APIs (/svc/...) are
	// served, never on HTTPAddr when this process runs the storefront.
	// Empty: HTTPAddr when the storefront does not run here (the process
	// has no public pages), else an ephemeral port on loopback (nobody
	// else calls in).
	InternalAddr string
	// DebugAddr, when set, serves Go's profiler (/debug/pprof/) on a separate
	// listener, meant for loopback or an operations network only.
	DebugAddr string
	DataDir   string   // databases, broker storage, search index, default blob and mail dirs
	Services  []string // the services this process runs
	// Peers maps a service name to the base URLs of its instances, for the
	// services this process does not run itself.
	Peers map[string][]string
	// Databases maps a service name to a DSN ("postgres://..."); a service
	// without one uses the SQLite file <DataDir>/<service>.db.
	Databases map[string]string
	// Shards maps a service keyed by user (ShardedServices) to its shard
	// map, "0-511=<dsn>;512-1023=<dsn>" (GLOBO_SHARDS_<SERVICE>): its
	// data is split by user over those nodes instead of one database.
	Shards map[string]string

	NATSURL    string // external broker; empty runs one embedded
	NATSListen string // host:port where the embedded broker accepts other processes
	// AckWait is how long the broker waits for a consumer's ack before it
	// offers the message to another instance (a worker killed mid-job):
	// longer than any handler runs (GLOBO_ACK_WAIT); 0 is the bus's 60 s.
	AckWait time.Duration

	BlobDir string // the blob store's directory
	// BlobURL is the blob store: a directory or an S3 bucket,
	// s3://[ACCESS:SECRET@]host:port/bucket?prefix=&tls=&region=&create=
	// (credentials default to AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY);
	// empty is BlobDir. BlobSpec is it parsed, filled by Load.
	BlobURL  string
	BlobSpec blob.Spec
	MailDir  string // where the file mail sender writes messages

	// CredentialsDir is a directory of service credentials made by
	// "globomantics credentials init" (package svcauth): each service
	// presents its own to the others, and each accepts only the services
	// that call it. The process reads the verifiers and the secrets of
	// the services it runs.
	CredentialsDir string
	// ServiceToken is the other way: one shared secret from which every
	// service's credential is derived (callers are still told apart, but
	// any holder could speak as any service). One of the two is required
	// when services talk over HTTP; when a process runs everything and
	// neither is set, a random token closes the internal APIs.
	ServiceToken string

	SMTPAddr     string // host:port; when set, mail is sent by SMTP instead of files
	SMTPUser     string
	SMTPPassword string
	MailFrom     string

	// FaultInjection lets Faults and the checkout admin endpoint inject
	// failures (fail, hang, crash at a saga step; latency to a service).
	// Off by default; for crash tests and drills only.
	FaultInjection bool
	Faults         string // initial fault rules (see package fault)
	// CheckoutLease is how long a checkout instance's claim on a saga
	// lasts without renewal; another instance resumes the saga after it.
	CheckoutLease time.Duration
	// CheckoutBudget is how long a checkout request waits for its saga
	// before answering 202 (pending).
	CheckoutBudget time.Duration
	// CallbackSecret signs checkout callbacks (HMAC-SHA256); empty derives
	// one from the service token.
	CallbackSecret string

	// RedisURL, when set (redis://, rediss://, or
	// redis+sentinel://host1,host2,host3/MASTER for a master under Redis
	// Sentinel), is the Redis server that
	// holds the shared state of a scaled-out front end: for now the rate
	// limits' budgets, so that they hold across storefront instances.
	RedisURL string
	// RateLimits turns the storefront's limits on login, registration and
	// checkout on (the default); off only for load tests from one address.
	RateLimits bool
	// EdgeRegistry is the base URL of an edge's registry API (its internal
	// listener): this process registers its storefront (pool storefront,
	// its public URL) and its services (pool <service>, its internal URL)
	// there with heartbeats once ready, and leaves first at shutdown, so
	// the edge drains it before it stops accepting. Its token is
	// GLOBO_EDGE_TOKEN.
	EdgeRegistry string
	EdgeToken    string
	// Advertise and AdvertiseInternal are the URLs others reach this
	// process's public and internal listeners at; default http://<the
	// address bound>, which must then name a host.
	Advertise         string
	AdvertiseInternal string
	// DNSServer is the host:port of the DNS server that answers the SRV
	// names of peers given as srv+http://<name>; empty uses the system's.
	DNSServer string

	// TrustedProxies are the networks of the reverse proxies and load
	// balancers whose forwarding headers (the client's address) may be
	// believed. Empty trusts none. A bare IP in --trusted-proxies is a /32
	// or /128; prefixes are kept masked, and IPv4-mapped IPv6 entries
	// (::ffff:10.0.0.1) as IPv4.
	TrustedProxies []netip.Prefix

	Seed bool // seed the demo catalog on first start
	// DevPages serves development pages (/dev/mail shows every customer's
	// e-mail). Validate allows it only with an HTTPAddr on loopback (see
	// LoopbackOnly); Load turns the default off for any other address.
	DevPages      bool
	SecureCookies bool // mark cookies Secure (behind HTTPS)
	LogLevel      string
	LogFormat     string // text or json
	// OTLPEndpoint, when set, exports every span by OTLP/HTTP there (a URL
	// or host:port); spans are kept in memory either way.
	OTLPEndpoint string
	// TraceSample is the fraction of new traces recorded, in [0, 1]; a
	// request that arrives sampled is always recorded (parent-based).
	TraceSample float64
	// ShutdownTimeout bounds the whole graceful shutdown: drain delay, HTTP
	// drain, then subscriptions, relays, broker and databases.
	ShutdownTimeout time.Duration
	// DrainDelay is how long, at shutdown, the HTTP server keeps accepting
	// and serving after readiness went to 503, so that load balancers
	// polling /readyz stop sending before connections are refused. At most
	// half of ShutdownTimeout. Load defaults it to DefaultDrainDelay, or to
	// 0 when HTTPAddr is on loopback (no remote load balancer can reach it).
	DrainDelay time.Duration
}

// DefaultDrainDelay is the drain delay of a process listening beyond
// loopback, when none is configured.
const DefaultDrainDelay = 2 * time.Second

// Default is the configuration with no settings at all: the whole shop in one
// process on 127.0.0.1:8080 with its data in ./data.
func Default() Config {
	return Config{
		HTTPAddr:        "127.0.0.1:8080", // loopback: dev pages on, no drain delay
		DataDir:         "data",
		Services:        slices.Clone(AllServices),
		Peers:           map[string][]string{},
		Databases:       map[string]string{},
		Shards:          map[string]string{},
		MailFrom:        "Globomantics <orders@globomantics.example>",
		Seed:            true,
		DevPages:        true,
		LogLevel:        "info",
		LogFormat:       "text",
		TraceSample:     1,
		ShutdownTimeout: 9 * time.Second,
		CheckoutLease:   10 * time.Second,
		RateLimits:      true,
		CheckoutBudget:  3 * time.Second,
	}
}

// Load builds the configuration from defaults, then the environment, then
// flags in args (the arguments after the subcommand). Usage errors go to out.
func Load(args []string, getenv func(string) string, out io.Writer) (Config, error) {
	c := Default()
	env := func(k string) string { return strings.TrimSpace(getenv(k)) }
	setStr := func(dst *string, k string) {
		if v := env(k); v != "" {
			*dst = v
		}
	}
	setStr(&c.HTTPAddr, "GLOBO_HTTP_ADDR")
	setStr(&c.DataDir, "GLOBO_DATA_DIR")
	setStr(&c.DebugAddr, "GLOBO_DEBUG_ADDR")
	setStr(&c.InternalAddr, "GLOBO_INTERNAL_ADDR")
	setStr(&c.CredentialsDir, "GLOBO_CREDENTIALS")
	setStr(&c.EdgeRegistry, "GLOBO_EDGE_REGISTRY")
	setStr(&c.Advertise, "GLOBO_ADVERTISE")
	setStr(&c.AdvertiseInternal, "GLOBO_ADVERTISE_INTERNAL")
	c.EdgeToken = strings.TrimSpace(getenv("GLOBO_EDGE_TOKEN")) // secrets only from the environment
	setStr(&c.NATSURL, "GLOBO_NATS_URL")
	setStr(&c.NATSListen, "GLOBO_NATS_LISTEN")
	setStr(&c.BlobDir, "GLOBO_BLOB_DIR")
	c.BlobURL = strings.TrimSpace(getenv("GLOBO_BLOB_URL")) // may hold a secret: environment only
	setStr(&c.MailDir, "GLOBO_MAIL_DIR")
	setStr(&c.SMTPAddr, "GLOBO_SMTP_ADDR")
	setStr(&c.SMTPUser, "GLOBO_SMTP_USER")
	c.SMTPPassword = getenv("GLOBO_SMTP_PASSWORD") // secrets only from the environment
	c.ServiceToken = strings.TrimSpace(getenv("GLOBO_SERVICE_TOKEN"))
	setStr(&c.MailFrom, "GLOBO_MAIL_FROM")
	c.CallbackSecret = strings.TrimSpace(getenv("GLOBO_CALLBACK_SECRET"))
	setStr(&c.Faults, "GLOBO_FAULTS")
	setStr(&c.LogLevel, "GLOBO_LOG_LEVEL")
	setStr(&c.LogFormat, "GLOBO_LOG_FORMAT")
	setStr(&c.OTLPEndpoint, "OTEL_EXPORTER_OTLP_ENDPOINT") // the standard variable, below ours
	setStr(&c.OTLPEndpoint, "GLOBO_OTLP_ENDPOINT")
	if v := env("GLOBO_TRACE_SAMPLE"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return c, fmt.Errorf("GLOBO_TRACE_SAMPLE: %w", err)
		}
		c.TraceSample = f
	}
	if v := env("GLOBO_SERVICES"); v != "" {
		c.Services = splitList(v)
	}
	trustedProxies := env("GLOBO_TRUSTED_PROXIES")
	if v := env("GLOBO_PEERS"); v != "" {
		if err := parsePeers(c.Peers, v); err != nil {
			return c, err
		}
	}
	for _, s := range AllServices {
		if v := env("GLOBO_DB_" + strings.ToUpper(s)); v != "" {
			c.Databases[s] = v
		}
		if v := env("GLOBO_SHARDS_" + strings.ToUpper(s)); v != "" {
			c.Shards[s] = v
		}
	}
	var err error
	if c.Seed, err = envBool(env("GLOBO_SEED"), c.Seed); err != nil {
		return c, fmt.Errorf("GLOBO_SEED: %w", err)
	}
	if c.DevPages, err = envBool(env("GLOBO_DEV_PAGES"), c.DevPages); err != nil {
		return c, fmt.Errorf("GLOBO_DEV_PAGES: %w", err)
	}
	if c.SecureCookies, err = envBool(env("GLOBO_SECURE_COOKIES"), c.SecureCookies); err != nil {
		return c, fmt.Errorf("GLOBO_SECURE_COOKIES: %w", err)
	}
	if c.RateLimits, err = envBool(env("GLOBO_RATE_LIMITS"), c.RateLimits); err != nil {
		return c, fmt.Errorf("GLOBO_RATE_LIMITS: %w", err)
	}
	setStr(&c.DNSServer, "GLOBO_DNS_SERVER")
	c.RedisURL = strings.TrimSpace(getenv("GLOBO_REDIS_URL")) // may hold a password: environment only
	if c.FaultInjection, err = envBool(env("GLOBO_FAULT_INJECTION"), c.FaultInjection); err != nil {
		return c, fmt.Errorf("GLOBO_FAULT_INJECTION: %w", err)
	}
	for k, dst := range map[string]*time.Duration{
		"GLOBO_CHECKOUT_LEASE":   &c.CheckoutLease,
		"GLOBO_CHECKOUT_BUDGET":  &c.CheckoutBudget,
		"GLOBO_SHUTDOWN_TIMEOUT": &c.ShutdownTimeout,
		"GLOBO_DRAIN_DELAY":      &c.DrainDelay,
		"GLOBO_ACK_WAIT":         &c.AckWait,
	} {
		if v := env(k); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil {
				return c, fmt.Errorf("%s: %w", k, err)
			}
			*dst = d
		}
	}

	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&c.HTTPAddr, "http-addr", c.HTTPAddr, "`host:port` the HTTP server listens on (GLOBO_HTTP_ADDR)")
	fs.StringVar(&c.InternalAddr, "internal-addr", c.InternalAddr, "`host:port` of the services' internal APIs (/svc/), never served on --http-addr when the storefront runs here; default --http-addr without the storefront, else an ephemeral loopback port (GLOBO_INTERNAL_ADDR)")
	fs.StringVar(&c.CredentialsDir, "credentials", c.CredentialsDir, "`directory` of service credentials from \"globomantics credentials init\": each service its own (GLOBO_CREDENTIALS)")
	fs.StringVar(&c.EdgeRegistry, "edge-registry", c.EdgeRegistry, "base `URL` of an edge's registry: register this process's storefront and services there, with heartbeats, and leave it first at shutdown (GLOBO_EDGE_REGISTRY; token GLOBO_EDGE_TOKEN)")
	fs.StringVar(&c.Advertise, "advertise", c.Advertise, "`URL` others reach the public listener at; default http://<--http-addr> (GLOBO_ADVERTISE)")
	fs.StringVar(&c.AdvertiseInternal, "advertise-internal", c.AdvertiseInternal, "`URL` others reach the internal listener at; default http://<the internal address bound> (GLOBO_ADVERTISE_INTERNAL)")
	fs.StringVar(&c.DebugAddr, "debug-addr", c.DebugAddr, "`host:port` for the profiler (/debug/pprof/); off when empty (GLOBO_DEBUG_ADDR)")
	fs.StringVar(&c.DataDir, "data-dir", c.DataDir, "`directory` for databases, broker, index, blobs and mail (GLOBO_DATA_DIR)")
	services := fs.String("services", strings.Join(c.Services, ","), "comma-separated `list` of services to run, or \"all\" (GLOBO_SERVICES)")
	fs.Func("peer", "`service=url[,url...]`: instances of a service run elsewhere; repeatable (GLOBO_PEERS=\"svc=url,url;svc=url\")", func(v string) error {
		return parsePeers(c.Peers, v)
	})
	fs.StringVar(&c.NATSURL, "nats-url", c.NATSURL, "`URL` of an external NATS server; empty embeds one (GLOBO_NATS_URL)")
	fs.StringVar(&c.NATSListen, "nats-listen", c.NATSListen, "`host:port` where the embedded NATS server accepts other processes (GLOBO_NATS_LISTEN)")
	fs.DurationVar(&c.AckWait, "ack-wait", c.AckWait, "how long the broker waits for a consumer's ack before offering the message again, e.g. to another worker when one died mid-job; longer than any job runs; default 60s (GLOBO_ACK_WAIT)")
	fs.StringVar(&c.BlobDir, "blob-dir", c.BlobDir, "`directory` of the blob store; default <data-dir>/blobs (GLOBO_BLOB_DIR)")
	fs.StringVar(&c.MailDir, "mail-dir", c.MailDir, "`directory` where order e-mails are written; default <data-dir>/mail (GLOBO_MAIL_DIR)")
	fs.StringVar(&c.SMTPAddr, "smtp-addr", c.SMTPAddr, "`host:port` of an SMTP server; when set, e-mail is sent there (GLOBO_SMTP_ADDR)")
	fs.BoolVar(&c.Seed, "seed", c.Seed, "seed the demo catalog on first start (GLOBO_SEED)")
	fs.BoolVar(&c.DevPages, "dev-pages", c.DevPages, "serve development pages such as /dev/mail, which shows every order e-mail; on by default only when --http-addr is on loopback (127.0.0.1, ::1, localhost); asking for it with any other address is refused (GLOBO_DEV_PAGES)")
	fs.BoolVar(&c.SecureCookies, "secure-cookies", c.SecureCookies, "mark cookies Secure, for a shop served over HTTPS (GLOBO_SECURE_COOKIES)")
	fs.BoolVar(&c.RateLimits, "rate-limits", c.RateLimits, "limit login, registration and checkout attempts per client and per account; turn off only for load tests (GLOBO_RATE_LIMITS)")
	fs.StringVar(&c.DNSServer, "dns-server", c.DNSServer, "`host:port` of the DNS server for peers given as srv+http://<SRV name>; empty uses the system's (GLOBO_DNS_SERVER)")
	fs.BoolVar(&c.FaultInjection, "fault-injection", c.FaultInjection, "allow injected faults (--faults, the checkout admin endpoint); for crash tests only (GLOBO_FAULT_INJECTION)")
	fs.StringVar(&c.Faults, "faults", c.Faults, "fault `rules` in force from the start, e.g. before:capture_payment=crash; implies --fault-injection (GLOBO_FAULTS)")
	fs.DurationVar(&c.CheckoutLease, "checkout-lease", c.CheckoutLease, "how long a checkout instance's claim on a saga lasts unrenewed (GLOBO_CHECKOUT_LEASE)")
	fs.DurationVar(&c.CheckoutBudget, "checkout-budget", c.CheckoutBudget, "how long a checkout waits for its saga before answering 202 (GLOBO_CHECKOUT_BUDGET)")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", c.ShutdownTimeout, "bound on the whole graceful shutdown after SIGTERM, drain delay included (GLOBO_SHUTDOWN_TIMEOUT)")
	fs.DurationVar(&c.DrainDelay, "drain-delay", c.DrainDelay, "at shutdown, how long to keep serving after /readyz turned 503, for load balancers to stop sending; at most half of --shutdown-timeout; default "+DefaultDrainDelay.String()+", or 0 when --http-addr is on loopback (GLOBO_DRAIN_DELAY)")
	fs.StringVar(&trustedProxies, "trusted-proxies", trustedProxies, "comma-separated `CIDRs` (a bare IP is one address) of proxies whose forwarded client addresses are believed; empty trusts none (GLOBO_TRUSTED_PROXIES)")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "debug, info, warn or error (GLOBO_LOG_LEVEL)")
	fs.StringVar(&c.LogFormat, "log-format", c.LogFormat, "text or json (GLOBO_LOG_FORMAT)")
	fs.StringVar(&c.OTLPEndpoint, "otlp-endpoint", c.OTLPEndpoint, "OTLP/HTTP collector `URL` (or host:port) to export traces to; none when empty (GLOBO_OTLP_ENDPOINT, or OTEL_EXPORTER_OTLP_ENDPOINT)")
	fs.Float64Var(&c.TraceSample, "trace-sample", c.TraceSample, "`fraction` of new traces recorded, 0 to 1; requests arriving sampled are always recorded (GLOBO_TRACE_SAMPLE)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	set := map[string]bool{ // settings given rather than defaulted
		"dev-pages":   env("GLOBO_DEV_PAGES") != "",
		"drain-delay": env("GLOBO_DRAIN_DELAY") != "",
	}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if !c.LoopbackOnly() {
		// Beyond loopback, visitors could read every order e-mail, and a
		// load balancer may be polling /readyz.
		if !set["dev-pages"] {
			c.DevPages = false
		}
		if !set["drain-delay"] {
			c.DrainDelay = min(DefaultDrainDelay, c.ShutdownTimeout/2)
		}
	}
	var problems []string
	c.TrustedProxies, problems = parsePrefixes(trustedProxies)
	c.Services = splitList(*services)
	if len(c.Services) == 1 && c.Services[0] == "all" {
		c.Services = slices.Clone(AllServices)
	}
	if c.BlobDir == "" {
		c.BlobDir = filepath.Join(c.DataDir, "blobs")
	}
	if c.MailDir == "" {
		c.MailDir = filepath.Join(c.DataDir, "mail")
	}
	spec := c.BlobURL
	if spec == "" {
		spec = c.BlobDir
	}
	if bs, err := blob.ParseSpec(spec, getenv); err != nil {
		problems = append(problems, "GLOBO_BLOB_URL: "+errs.Detail(err)) // the secret is redacted
	} else {
		c.BlobSpec = bs
	}
	if c.Faults != "" {
		c.FaultInjection = true
	}
	return c, c.validate(problems)
}

// LoopbackOnly reports whether HTTPAddr's host is a loopback address
// (127.0.0.0/8, ::1) or localhost, so that only this machine can connect.
// An empty host (":8080") listens on every interface.
func (c Config) LoopbackOnly() bool {
	host, _, err := net.SplitHostPort(c.HTTPAddr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// parsePrefixes parses a comma-separated list of CIDR prefixes and bare IP
// addresses, and names each entry it cannot parse.
func parsePrefixes(s string) ([]netip.Prefix, []string) {
	var out []netip.Prefix
	var problems []string
	for _, e := range splitList(s) {
		var p netip.Prefix
		var err error
		if strings.Contains(e, "/") {
			p, err = netip.ParsePrefix(e)
		} else {
			var ip netip.Addr
			if ip, err = netip.ParseAddr(e); err == nil {
				if ip.Zone() != "" {
					err = errors.New("has a zone")
				}
				p = netip.PrefixFrom(ip, ip.BitLen())
			}
		}
		if err != nil {
			problems = append(problems, fmt.Sprintf("trusted proxy %q: want an IP address or a CIDR prefix such as 10.0.0.0/8", e))
			continue
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		out = append(out, p.Masked())
	}
	return out, problems
}

// ShardedServices are the services keyed by user, whose data may be split
// over shard nodes (GLOBO_SHARDS_<SERVICE>). Catalog and shipping are not
// keyed by user; they replicate instead.
var ShardedServices = []string{Account, Cart, Payment, Order, Checkout}

// checkDSN reports what is wrong with a database DSN, without repeating it
// (it may hold a password): a PostgreSQL URL must parse, with a host and a
// database name; anything else is a SQLite path.
func checkDSN(dsn string) error {
	if !strings.HasPrefix(dsn, "postgres://") && !strings.HasPrefix(dsn, "postgresql://") {
		if strings.Contains(dsn, "://") {
			return errors.New("not a PostgreSQL URL (postgres://...) nor a SQLite file path")
		}
		return nil
	}
	u, err := url.Parse(dsn)
	if err != nil {
		return errors.New("malformed PostgreSQL URL")
	}
	if u.Host == "" {
		return errors.New("PostgreSQL URL has no host")
	}
	if strings.Trim(u.Path, "/") == "" {
		return errors.New("PostgreSQL URL names no database")
	}
	if _, err := url.ParseQuery(u.RawQuery); err != nil {
		return errors.New("PostgreSQL URL has a malformed query string")
	}
	return nil
}

// Runs reports whether this process runs service s.
func (c Config) Runs(s string) bool { return slices.Contains(c.Services, s) }

// Validate reports every problem with the configuration that it can see on
// its own, in one error. Whether the services run here find the services
// they need (here or as peers) is checked against the registry of
// components by package app.
func (c Config) Validate() error { return c.validate(nil) }

// validate is Validate reporting, with its own findings, the problems Load
// found while parsing.
func (c Config) validate(problems []string) error {
	problems = slices.Clone(problems)
	if _, _, err := net.SplitHostPort(c.HTTPAddr); err != nil {
		problems = append(problems, fmt.Sprintf("http address %q: %v", c.HTTPAddr, err))
	}
	if c.DebugAddr != "" {
		if _, _, err := net.SplitHostPort(c.DebugAddr); err != nil {
			problems = append(problems, fmt.Sprintf("debug address %q: %v", c.DebugAddr, err))
		}
	}
	if c.DataDir == "" {
		problems = append(problems, "data directory must not be empty")
	}
	for svc, dsn := range c.Databases {
		if err := checkDSN(dsn); err != nil {
			problems = append(problems, fmt.Sprintf("GLOBO_DB_%s: %v", strings.ToUpper(svc), err))
		}
	}
	for svc, spec := range c.Shards {
		if !slices.Contains(ShardedServices, svc) {
			problems = append(problems, fmt.Sprintf("GLOBO_SHARDS_%s: %s is not sharded (sharded: %s)", strings.ToUpper(svc), svc, strings.Join(ShardedServices, ", ")))
			continue
		}
		m, err := shard.ParseMap(spec)
		if err != nil {
			problems = append(problems, fmt.Sprintf("GLOBO_SHARDS_%s: %s", strings.ToUpper(svc), errs.Detail(err)))
			continue
		}
		for i, node := range m.Nodes() {
			if err := checkDSN(node); err != nil {
				problems = append(problems, fmt.Sprintf("GLOBO_SHARDS_%s: node %d: %v", strings.ToUpper(svc), i+1, err))
			}
		}
	}
	if len(c.Services) == 0 {
		problems = append(problems, "no services to run")
	}
	for _, s := range c.Services {
		if !slices.Contains(AllServices, s) {
			problems = append(problems, fmt.Sprintf("unknown service %q (known: %s)", s, strings.Join(AllServices, ", ")))
		}
	}
	for s, urls := range c.Peers {
		if !slices.Contains(AllServices, s) {
			problems = append(problems, fmt.Sprintf("peer for unknown service %q", s))
		}
		for _, u := range urls {
			pu, err := url.Parse(u)
			switch {
			case err == nil && (pu.Scheme == "srv+http" || pu.Scheme == "srv+https"):
				if len(urls) != 1 || !strings.HasPrefix(pu.Host, "_") || pu.Port() != "" || strings.Trim(pu.Path, "/") != "" {
					problems = append(problems, fmt.Sprintf("peer %s: %q: an SRV peer is the only one of its service and names an SRV record such as srv+http://_%s._tcp.shop.example", s, u, s))
				}
			case err == nil && (pu.Scheme == "edge+http" || pu.Scheme == "edge+https"):
				if len(urls) != 1 || pu.Host == "" || strings.Trim(pu.Path, "/") != "" {
					problems = append(problems, fmt.Sprintf("peer %s: %q: an edge registry peer is the only one of its service and names the edge's registry, such as edge+http://10.0.0.2:9001", s, u))
				}
			case err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "":
				problems = append(problems, fmt.Sprintf("peer %s: %q is not an http(s) base URL, srv+http(s)://<SRV name> nor edge+http(s)://<edge registry>", s, u))
			}
		}
	}
	if c.Split() && c.ServiceToken == "" && c.CredentialsDir == "" {
		problems = append(problems, "services in separate processes need credentials: --credentials DIR (from \"globomantics credentials init --dir DIR\") or GLOBO_SERVICE_TOKEN, the same on every process")
	}
	for name, v := range map[string]string{"--edge-registry": c.EdgeRegistry, "--advertise": c.Advertise, "--advertise-internal": c.AdvertiseInternal} {
		if v == "" {
			continue
		}
		if u, err := url.Parse(v); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || strings.Trim(u.Path, "/") != "" {
			problems = append(problems, fmt.Sprintf("%s %q is not an http(s) base URL", name, v))
		}
	}
	if c.EdgeRegistry != "" && c.Advertise == "" {
		if host, _, err := net.SplitHostPort(c.HTTPAddr); err == nil {
			if ip, err := netip.ParseAddr(host); host == "" || (err == nil && ip.IsUnspecified()) {
				problems = append(problems, fmt.Sprintf("--edge-registry: --http-addr %s names no host the edge could reach: give --advertise", c.HTTPAddr))
			}
		}
	}
	if c.ServiceToken != "" && c.CredentialsDir != "" {
		problems = append(problems, "GLOBO_SERVICE_TOKEN and --credentials exclude each other: choose one kind of service credentials")
	}
	if c.InternalAddr != "" {
		if _, _, err := net.SplitHostPort(c.InternalAddr); err != nil {
			problems = append(problems, fmt.Sprintf("internal address %q: %v", c.InternalAddr, err))
		} else if c.InternalAddr == c.HTTPAddr && c.Runs(Storefront) {
			problems = append(problems, fmt.Sprintf("--internal-addr %s is --http-addr: the internal APIs are never served on the storefront's public port", c.InternalAddr))
		}
	}
	if c.ServiceToken != "" && len(c.ServiceToken) < MinServiceTokenLen {
		problems = append(problems, fmt.Sprintf("GLOBO_SERVICE_TOKEN must be at least %d characters", MinServiceTokenLen))
	}
	if _, err := mail.ParseAddress(c.MailFrom); err != nil {
		problems = append(problems, fmt.Sprintf("mail from address %q: %v", c.MailFrom, err))
	}
	if c.NATSURL != "" && c.NATSListen != "" {
		problems = append(problems, "--nats-url and --nats-listen exclude each other: connect to a broker or embed one")
	}
	if c.CheckoutLease < 500*time.Millisecond || c.CheckoutLease > 10*time.Minute {
		problems = append(problems, fmt.Sprintf("checkout lease %s: want 500ms to 10m", c.CheckoutLease))
	}
	if c.AckWait != 0 && (c.AckWait < 2*time.Second || c.AckWait > 10*time.Minute) {
		problems = append(problems, fmt.Sprintf("ack wait %s: want 2s to 10m", c.AckWait))
	}
	if c.CheckoutBudget < 0 || c.CheckoutBudget > time.Minute {
		problems = append(problems, fmt.Sprintf("checkout budget %s: want 0 to 1m", c.CheckoutBudget))
	}
	if c.Faults != "" {
		if err := fault.New(nil).Set(c.Faults); err != nil {
			problems = append(problems, "faults: "+errs.Detail(err))
		}
	}
	if c.DevPages && !c.LoopbackOnly() {
		problems = append(problems, fmt.Sprintf("--dev-pages needs --http-addr on loopback (127.0.0.1, ::1 or localhost), not %q: /dev/mail shows every customer's order e-mail to whoever can connect", c.HTTPAddr))
	}
	if c.ShutdownTimeout < time.Second || c.ShutdownTimeout > 10*time.Minute {
		problems = append(problems, fmt.Sprintf("shutdown timeout %s: want 1s to 10m", c.ShutdownTimeout))
	}
	if c.RedisURL != "" {
		if err := redisx.Validate(c.RedisURL); err != nil {
			problems = append(problems, "GLOBO_REDIS_URL: "+errs.Detail(err))
		}
	}
	if c.DNSServer != "" {
		if _, _, err := net.SplitHostPort(c.DNSServer); err != nil {
			problems = append(problems, fmt.Sprintf("dns server %q: want host:port", c.DNSServer))
		}
	}
	if c.DrainDelay < 0 || c.DrainDelay > c.ShutdownTimeout/2 {
		problems = append(problems, fmt.Sprintf("drain delay %s: want 0 to half the shutdown timeout (%s)", c.DrainDelay, c.ShutdownTimeout/2))
	}
	for i, p := range c.TrustedProxies {
		if !p.IsValid() {
			problems = append(problems, fmt.Sprintf("trusted proxy %d: not a valid prefix", i+1))
		}
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		problems = append(problems, fmt.Sprintf("log format %q: want text or json", c.LogFormat))
	}
	if !(c.TraceSample >= 0 && c.TraceSample <= 1) { // NaN too
		problems = append(problems, fmt.Sprintf("trace sample %v: want a fraction from 0 to 1", c.TraceSample))
	}
	if ep := c.OTLPEndpoint; ep != "" && !validOTLPEndpoint(ep) {
		problems = append(problems, fmt.Sprintf("OTLP endpoint %q: want http(s)://host:port[/path] or host:port", ep))
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		problems = append(problems, fmt.Sprintf("log level %q: want debug, info, warn or error", c.LogLevel))
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		return errors.New("invalid configuration: " + strings.Join(problems, "; "))
	}
	return nil
}

// MinServiceTokenLen is the shortest service token accepted.
const MinServiceTokenLen = 16

// Split reports whether this process is part of a shop split over several
// processes: it runs only some services, or calls peers.
func (c Config) Split() bool {
	if len(c.Peers) > 0 {
		return true
	}
	for _, s := range AllServices {
		if !c.Runs(s) {
			return true
		}
	}
	return false
}

// DatabaseFor is the DSN of service s's database.
func (c Config) DatabaseFor(s string) string {
	if dsn := c.Databases[s]; dsn != "" {
		return dsn
	}
	return filepath.Join(c.DataDir, s+".db")
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" && !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

func parsePeers(dst map[string][]string, v string) error {
	for _, part := range strings.Split(v, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, urls, ok := strings.Cut(part, "=")
		if !ok || strings.TrimSpace(name) == "" {
			return fmt.Errorf("peer %q: want service=url[,url...]", part)
		}
		name = strings.TrimSpace(name)
		dst[name] = append(dst[name], splitList(urls)...)
	}
	return nil
}

func envBool(v string, def bool) (bool, error) {
	switch strings.ToLower(v) {
	case "":
		return def, nil
	case "1", "true", "yes", "on":
		return true, nil
	case "0", "false", "no", "off":
		return false, nil
	}
	return def, fmt.Errorf("%q is not a boolean", v)
}

// validOTLPEndpoint reports whether ep is an http(s) URL with a host, or a
// bare host:port.
func validOTLPEndpoint(ep string) bool {
	if !strings.Contains(ep, "://") {
		_, _, err := net.SplitHostPort(ep)
		return err == nil
	}
	u, err := url.Parse(ep)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}
