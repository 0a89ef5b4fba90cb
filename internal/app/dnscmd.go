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
  globomantics dns serve --zone ZONE --listen HOST:PORT --instance SVC=URL[,URL...] [--instance ...]
                         [--interval 500ms] [--timeout 400ms] [--status-addr HOST:PORT]

Serves the shop's zone as an authoritative DNS server (UDP and TCP) that
answers only for healthy instances, with a TTL of 1 s:

  _SVC._tcp.ZONE  SRV   10 10 PORT SVC-N.ZONE   one per healthy instance
  SVC-N.ZONE      A     IP (AAAA for IPv6), while instance N is healthy

Every --interval each instance's /readyz is asked (with --timeout): an instance
is healthy after one 2xx answer and unhealthy after two consecutive failures.
Instance URLs must have an IP host (localhost is 127.0.0.1). Names outside the
zone are REFUSED. Point services at it with
  globomantics serve --dns-server HOST:PORT --peer SVC=srv+http://_SVC._tcp.ZONE

Flags:
`

// dnsMain runs "globomantics dns serve" until ctx ends; the server logs
// its address and every change of an instance's health to stderr.
func dnsMain(ctx context.Context, args []string, stderr io.Writer) error {
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
	cfg := dns.Config{Instances: map[string][]string{}}
	fs.StringVar(&cfg.Zone, "zone", "", "the `zone` served, e.g. shop.test")
	fs.StringVar(&cfg.Addr, "listen", "127.0.0.1:5353", "`host:port` to answer on, UDP and TCP")
	fs.DurationVar(&cfg.Interval, "interval", dns.DefaultInterval, "time between health checks of an instance")
	fs.DurationVar(&cfg.Timeout, "timeout", dns.DefaultTimeout, "timeout of one health check")
	fs.StringVar(&cfg.StatusAddr, "status-addr", "", "`host:port` of an HTTP listener serving the instances' health as JSON (none when empty)")
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
	if cfg.Interval <= 0 || cfg.Timeout <= 0 {
		instErr = append(instErr, errors.New("dns serve: --interval and --timeout must be positive"))
	}
	cfg.Log = slog.New(slog.NewTextHandler(stderr, nil))
	s, err := dns.New(cfg)
	if err != nil || len(instErr) > 0 {
		return errors.Join(append(instErr, err)...)
	}
	return s.Run(ctx)
}
