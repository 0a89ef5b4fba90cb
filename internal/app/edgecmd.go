package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"github.com/globomantics/globomantics/internal/edge"
)

const edgeUsage = `Usage:
  globomantics edge [--listen HOST:PORT] --backend POOL=URL[,URL...] [--backend ...]
                    [--internal-listen HOST:PORT] [--policy p2c|least|round_robin] [flags]

A layer-7 load balancer. The public listener sends everything to pool
"storefront" except /_edge/ (the edge's own API) and never /svc/ (404). The
internal listener, when set, sends /svc/SERVICE/... to pool SERVICE and serves
the registry API and /_edge/status. Backends come from --backend (static URLs,
or srv+http://_svc._tcp.zone with --dns-server), and from servers registering
themselves:
  PUT    /_edge/v1/pools/POOL/instances   {"url":"http://IP:PORT","ttl_ms":3000}
  DELETE /_edge/v1/pools/POOL/instances?url=http://IP:PORT
  GET    /_edge/v1/pools/POOL/instances
The registry API and status need the bearer token of GLOBO_EDGE_TOKEN; without
one they answer only when their listener is on loopback. So do the edge's
recent traces, GET /_edge/obs/v1/traces (?trace_id=ID for one); its Prometheus
metrics are at GET /metrics on the internal listener, with no token.

Flags:
`

// runEdge runs "globomantics edge" until ctx ends, then drains.
func runEdge(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer, log *slog.Logger) error {
	fs := flag.NewFlagSet("edge", flag.ContinueOnError)
	fs.SetOutput(stdout)
	fs.Usage = func() { fmt.Fprint(stdout, edgeUsage); fs.PrintDefaults() }
	cfg := edge.Config{Backends: map[string][]string{}, Log: log}
	var policy string
	debugAddr := fs.String("debug-addr", "", "`host:port` for the profiler (/debug/pprof/); off when empty")
	cdnBytes := fs.Int64("cdn-bytes", edge.DefaultCDNBytes, "bytes of the CDN cache of /static/ and /media/ (0 disables)")
	fs.StringVar(&cfg.Listen, "listen", "127.0.0.1:8000", "public `host:port`")
	fs.StringVar(&cfg.InternalListen, "internal-listen", "", "internal `host:port` for /svc/, the registry API and status (none when empty)")
	fs.StringVar(&policy, "policy", "p2c", "balancing policy: p2c, least or round_robin")
	fs.StringVar(&cfg.DNSServer, "dns-server", "", "`host:port` of the DNS server asked for srv+ backends (system resolver when empty)")
	fs.DurationVar(&cfg.HealthInterval, "health-interval", edge.DefaultHealthInterval, "time between health checks (GET /readyz) of a backend")
	fs.DurationVar(&cfg.HealthTimeout, "health-timeout", edge.DefaultHealthTimeout, "timeout of one health check")
	fs.IntVar(&cfg.EjectAfter, "eject-after", edge.DefaultEjectAfter, "consecutive failed requests before a backend is ejected")
	fs.DurationVar(&cfg.BackendTimeout, "backend-timeout", edge.DefaultBackendTimeout, "time a backend has to send response headers (then 504)")
	fs.Int64Var(&cfg.MaxBody, "max-body", edge.DefaultMaxBody, "largest request body in bytes (larger: 413)")
	fs.StringVar(&cfg.TLSCert, "tls-cert", "", "certificate `file`: serve HTTPS and HTTP/2 on the public listener")
	fs.StringVar(&cfg.TLSKey, "tls-key", "", "key `file` of --tls-cert")
	fs.BoolVar(&cfg.H2C, "h2c", false, "accept HTTP/2 without TLS (h2c, prior knowledge)")
	fs.DurationVar(&cfg.DrainDelay, "drain-delay", 0, "at shutdown, time between /_edge/readyz answering 503 and closing the listeners")
	otlp := fs.String("otlp-endpoint", edgeOTLPDefault(getenv), "OTLP/HTTP collector `URL` (or host:port) to export traces to; none when empty (GLOBO_OTLP_ENDPOINT, or OTEL_EXPORTER_OTLP_ENDPOINT)")
	sample := fs.Float64("trace-sample", 1, "`fraction` of new traces recorded, 0 to 1 (requests arriving sampled are always recorded)")
	seen := map[string]bool{}
	fs.Func("backend", "`pool=URL[,URL...]`: a pool's backends (http://host:port, or one srv+http://NAME); repeat per pool", func(v string) error {
		name, list, ok := strings.Cut(v, "=")
		name = strings.TrimSpace(name)
		if !ok || name == "" || strings.TrimSpace(list) == "" {
			return fmt.Errorf("want pool=URL[,URL...], got %q", v)
		}
		if seen[name] {
			return fmt.Errorf("pool %q given twice", name)
		}
		seen[name] = true
		for _, u := range strings.Split(list, ",") {
			if u = strings.TrimSpace(u); u == "" {
				return fmt.Errorf("--backend %q: empty URL in the list", v)
			}
			cfg.Backends[name] = append(cfg.Backends[name], u)
		}
		return nil
	})
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("edge: unexpected argument %q", fs.Arg(0))
	}
	p, err := edge.ParsePolicy(policy)
	if err != nil {
		return err
	}
	cfg.Policy = p
	if *cdnBytes < 0 {
		return errors.New("edge: --cdn-bytes must not be negative")
	}
	cfg.CDNBytes = *cdnBytes
	cfg.Token = strings.TrimSpace(getenv("GLOBO_EDGE_TOKEN")) // secrets only from the environment
	// Traces and metrics of the edge (obs.go).
	o, err := newEdgeObs(*otlp, *sample)
	if err != nil {
		return err
	}
	defer shutdownObs(o)
	cfg.Obs = o
	e, err := edge.New(cfg)
	if err != nil {
		return err
	}
	if *debugAddr != "" {
		dbg, err := startDebug(*debugAddr, log, http.NotFoundHandler())
		if err != nil {
			return err
		}
		defer dbg.Close()
	}
	return e.Run(ctx)
}
