package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/globomantics/globomantics/internal/edge/haproxy"
)

const haproxyUsage = `Usage:
  globomantics edge haproxy-config --backend POOL=URL[,URL...] [--backend ...]
                                   [--dns-server IP:PORT] [--listen HOST:PORT] [flags]

Writes to standard output an haproxy.cfg (HAProxy 2.6) that does the edge's
job: every request of the public listener goes to pool "storefront" (/svc/
is refused), health checks GET /readyz every 500 ms (2 failures out, 1
success back: a draining shop answering 503 leaves rotation), failed
connects are retried on another server, idempotent requests also after an
empty answer or a 503, X-Forwarded-*, X-Request-Id, gzip, a body limit, and
/_haproxy/healthz. Backends are http://host:port URLs, or
srv+http://_SVC._tcp.ZONE names looked up (TTL 1 s) through --dns-server,
e.g. "globomantics dns serve", so new instances get traffic without a new
configuration. Run it with: haproxy -f haproxy.cfg

Example:
  globomantics edge haproxy-config --listen :8000 \
    --backend storefront=http://127.0.0.1:8081,http://127.0.0.1:8082 \
    --backend storefront=srv+http://_storefront._tcp.shop.test --dns-server 127.0.0.1:5353

Flags:
`

// runHAProxyConfig runs "globomantics edge haproxy-config": it writes the
// haproxy.cfg its flags describe to stdout, or nothing and an error naming
// every problem of the flags. With --check the text is first validated by
// the installed haproxy (haproxy -c).
func runHAProxyConfig(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("edge haproxy-config", flag.ContinueOnError)
	var flagOut strings.Builder
	fs.SetOutput(&flagOut)
	fs.Usage = func() { flagOut.WriteString(haproxyUsage); fs.PrintDefaults() }
	var cfg haproxy.Config
	var check bool
	pools := map[string]*haproxy.Pool{}
	var order []string
	var problems []error
	fs.StringVar(&cfg.Listen, "listen", ":8000", "public `host:port` (or :port)")
	fs.StringVar(&cfg.InternalListen, "internal-listen", "", "`host:port` routing /svc/{pool}/... to the pool of that name (none when empty)")
	fs.StringVar(&cfg.StatsListen, "stats-listen", "", "`host:port` serving HAProxy's stats page on / and Prometheus metrics on /metrics (none when empty)")
	fs.StringVar(&cfg.DNSServer, "dns-server", "", "`IP:port` of the DNS server asked for srv+http:// backends")
	fs.StringVar(&cfg.Balance, "balance", haproxy.DefaultBalance, "balance algorithm: random(2) (power of two choices), leastconn or roundrobin")
	fs.StringVar(&cfg.HealthPath, "health-path", haproxy.DefaultHealthPath, "`path` of the health check")
	fs.DurationVar(&cfg.HealthInterval, "health-interval", haproxy.DefaultHealthInterval, "time between health checks of a server")
	fs.IntVar(&cfg.Fall, "fall", haproxy.DefaultFall, "failed checks that take a server out")
	fs.IntVar(&cfg.Rise, "rise", haproxy.DefaultRise, "good checks that bring it back")
	fs.DurationVar(&cfg.ConnectTimeout, "connect-timeout", haproxy.DefaultConnectTimeout, "time to connect to a server")
	fs.DurationVar(&cfg.ServerTimeout, "backend-timeout", haproxy.DefaultServerTimeout, "time a server may stay silent, response headers included (then 504)")
	fs.DurationVar(&cfg.ClientTimeout, "client-timeout", haproxy.DefaultClientTimeout, "time a client may stay silent")
	fs.DurationVar(&cfg.IdleTimeout, "idle-timeout", haproxy.DefaultIdleTimeout, "keep-alive time of an idle client connection")
	fs.Int64Var(&cfg.MaxBody, "max-body", haproxy.DefaultMaxBody, "largest request Content-Length in bytes (larger: 413)")
	fs.IntVar(&cfg.Retries, "retries", haproxy.DefaultRetries, "retries of a failed request, each on another server")
	fs.IntVar(&cfg.MaxConn, "maxconn", haproxy.DefaultMaxConn, "HAProxy's connection limit")
	fs.IntVar(&cfg.Threads, "threads", 0, "HAProxy threads (0: one per CPU)")
	fs.BoolVar(&cfg.AccessLog, "access-log", false, "log every request to HAProxy's stderr")
	fs.BoolVar(&check, "check", false, "validate the result with the installed haproxy (haproxy -c) before writing it")
	fs.Func("backend", "`pool=URL[,URL...]`: a pool's servers (http://host:port, or srv+http://_SVC._tcp.ZONE); repeatable, also for one pool", func(v string) error {
		name, list, ok := strings.Cut(v, "=")
		name = strings.TrimSpace(name)
		if !ok || name == "" || strings.TrimSpace(list) == "" {
			return fmt.Errorf("want pool=URL[,URL...], got %q", v)
		}
		p := pools[name]
		if p == nil {
			p = &haproxy.Pool{Name: name}
			pools[name] = p
			order = append(order, name)
		}
		for _, u := range strings.Split(list, ",") {
			u = strings.TrimSpace(u)
			switch {
			case u == "":
				problems = append(problems, fmt.Errorf("--backend %q: empty URL in the list", v))
			case strings.HasPrefix(u, "srv+http://"):
				p.SRV = append(p.SRV, strings.TrimPrefix(u, "srv+http://"))
			default:
				p.Servers = append(p.Servers, u)
			}
		}
		return nil
	})
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			_, werr := io.WriteString(stdout, flagOut.String())
			return werr
		}
		return fmt.Errorf("edge haproxy-config: %w\n%s", err, flagOut.String())
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("edge haproxy-config: unexpected argument %q", fs.Arg(0))
	}
	for _, name := range order {
		cfg.Pools = append(cfg.Pools, *pools[name])
	}
	text, err := haproxy.Render(cfg)
	if err != nil || len(problems) > 0 {
		return errors.Join(append(problems, err)...)
	}
	if check {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := haproxy.Check(ctx, "", text); err != nil {
			return err
		}
	}
	_, err = stdout.Write(text)
	return err
}
