package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/globomantics/globomantics/internal/dns"
)

const dnsUsage = `Usage:
  globomantics dns serve --zone ZONE --listen HOST:PORT
                         [--instance SVC=URL[,URL...] ...] [--registry EDGE_URL[,EDGE_URL...]]
                         [--registry-pools POOL,...] [--registry-interval 500ms]
                         [--health-path SVC=/PATH ...] [--interval 500ms] [--timeout 400ms]
                         [--status-addr HOST:PORT]

Serves the shop's zone as an authoritative DNS server (UDP and TCP) that
answers only for healthy instances, with a TTL of 1 s:

  _SVC._tcp.ZONE          SRV  10 10 PORT TARGET   one per healthy instance
  SVC-N.ZONE              A    IP (AAAA for IPv6) of configured instance N, while healthy
  SVC-A-B-C-D-PORT.ZONE   A    A.B.C.D, a registered instance at that address, while healthy
  SVC.ZONE                A    the distinct IPs of the service's healthy instances

The instances are those of --instance plus those of the edges' registries
(--registry, the base URL of an edge's internal listener, token from
GLOBO_EDGE_TOKEN): every --registry-interval the server asks each edge for its
pools (GET /_edge/v1/pools; each pool is a service, only --registry-pools when
given) and serves the instances registered or configured there, so an instance
that leaves the registry leaves the answers at the next poll. An edge that does
not answer is logged once per outage and its last list is kept.

The edges themselves: give them as service "edge" (--instance
edge=http://IP:PORT,...), checked at /_edge/readyz; edge.ZONE then has the A
records of the healthy edges and _edge._tcp.ZONE their ports.

Every --interval each instance's health path (/readyz unless --health-path) is
asked (with --timeout): an instance is healthy after one 2xx answer and
unhealthy after two consecutive failures. Instance URLs must have an IP host
(localhost is 127.0.0.1); registered instances with another host are left out
(and logged). Names outside the zone are REFUSED. Point services at it with
  globomantics serve --dns-server HOST:PORT --peer SVC=srv+http://_SVC._tcp.ZONE

Flags:
`

// dnsMain runs "globomantics dns serve" until ctx ends; the server logs
// its address, every change of an instance's health and of the registries'
// lists to stderr. The edges' token is getenv("GLOBO_EDGE_TOKEN").
func dnsMain(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "serve" {
		fmt.Fprint(stderr, dnsUsage)
		if len(args) == 0 {
			return errors.New("dns: missing command (known: serve)")
		}
		if args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
			return nil
		}
		return fmt.Errorf("dns: unknown command %q (known: serve)", args[0])
	}
	fs := flag.NewFlagSet("dns serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, dnsUsage); fs.PrintDefaults() }
	cfg := dns.Config{Instances: map[string][]string{}, HealthPaths: map[string]string{"edge": "/_edge/readyz"}}
	fs.StringVar(&cfg.Zone, "zone", "", "the `zone` served, e.g. shop.test")
	fs.StringVar(&cfg.Addr, "listen", "127.0.0.1:5353", "`host:port` to answer on, UDP and TCP")
	fs.DurationVar(&cfg.Interval, "interval", dns.DefaultInterval, "time between health checks of an instance")
	fs.DurationVar(&cfg.Timeout, "timeout", dns.DefaultTimeout, "timeout of one health check")
	fs.StringVar(&cfg.StatusAddr, "status-addr", "", "`host:port` of an HTTP listener serving the instances' health as JSON (none when empty)")
	fs.DurationVar(&cfg.RegistryInterval, "registry-interval", dns.DefaultRegistryInterval, "time between polls of the registries")
	var registries, pools string
	fs.StringVar(&registries, "registry", "", "`URL[,URL...]`: base URLs of edges' internal listeners whose registries give instances (token GLOBO_EDGE_TOKEN)")
	fs.StringVar(&pools, "registry-pools", "", "`pool,...`: only these pools of the registries (all when empty)")
	healthSet := map[string]bool{}
	fs.Func("health-path", "`svc=/path`: the health check's path for a service's instances (default /readyz; edge: /_edge/readyz); repeat for each service", func(v string) error {
		svc, path, ok := strings.Cut(v, "=")
		svc = strings.TrimSpace(svc)
		if !ok || svc == "" || !strings.HasPrefix(path, "/") {
			return fmt.Errorf("want svc=/path, got %q", v)
		}
		if healthSet[svc] {
			return fmt.Errorf("service %q given twice", svc)
		}
		healthSet[svc] = true
		cfg.HealthPaths[svc] = path
		return nil
	})
	var instErr []error
	fs.Func("instance", "`svc=URL[,URL...]`: a service's instances (base URLs http://IP:port); repeat for each service", func(v string) error {
		svc, list, ok := strings.Cut(v, "=")
		svc = strings.TrimSpace(svc)
		if !ok || svc == "" || strings.TrimSpace(list) == "" {
			return fmt.Errorf("want svc=URL[,URL...], got %q", v)
		}
		if _, dup := cfg.Instances[svc]; dup {
			return fmt.Errorf("service %q given twice", svc)
		}
		var urls []string
		for _, u := range strings.Split(list, ",") {
			if u = strings.TrimSpace(u); u == "" {
				instErr = append(instErr, fmt.Errorf("dns serve: --instance %q: empty URL in the list", v))
				continue
			}
			urls = append(urls, u)
		}
		cfg.Instances[svc] = urls
		return nil
	})
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("dns serve: unexpected argument %q", fs.Arg(0))
	}
	if cfg.Interval <= 0 || cfg.Timeout <= 0 || cfg.RegistryInterval <= 0 {
		instErr = append(instErr, errors.New("dns serve: --interval, --timeout and --registry-interval must be positive"))
	}
	var poolList []string
	for _, p := range strings.Split(pools, ",") {
		if p = strings.TrimSpace(p); p != "" {
			poolList = append(poolList, p)
		}
	}
	if len(poolList) > 0 && registries == "" {
		instErr = append(instErr, errors.New("dns serve: --registry-pools needs --registry"))
	}
	token := getenv("GLOBO_EDGE_TOKEN")
	for _, u := range strings.Split(registries, ",") {
		if u = strings.TrimSpace(u); u == "" {
			continue
		}
		r, err := dns.NewEdgeRegistry(u, token, poolList, nil)
		if err != nil {
			instErr = append(instErr, fmt.Errorf("dns serve: --registry: %w", err))
			continue
		}
		cfg.Registries = append(cfg.Registries, r)
	}
	cfg.Log = slog.New(slog.NewTextHandler(stderr, nil))
	s, err := dns.New(cfg)
	if err != nil || len(instErr) > 0 {
		return errors.Join(append(instErr, err)...)
	}
	return s.Run(ctx)
}
