// Package app is the composition root: it reads the configuration, builds the
// services this process runs, wires each dependency either to the in-process
// service or to an HTTP client of its remote instances, and runs the HTTP
// server, the broker subscriptions and the outbox relays until stopped.
package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/globomantics/globomantics/internal/config"
	"github.com/globomantics/globomantics/internal/devpg"
	"github.com/globomantics/globomantics/internal/platform/obs"
	"github.com/globomantics/globomantics/internal/reshard"
)

// Run is the whole program: args[0] is the program name, args[1] the
// subcommand (serve when absent). It returns when the subcommand is done; for
// serve, after a graceful shutdown on SIGINT/SIGTERM or when ctx ends.
func Run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if len(args) == 0 {
		args = []string{"globomantics"}
	}
	cmd, rest := "serve", args[1:]
	if len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		cmd, rest = rest[0], rest[1:]
	}
	switch cmd {
	case "serve":
		cfg, err := config.Load(rest, getenv, stderr)
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		// The service graph is checked against the registry before
		// anything is opened, and its problems reported beside the
		// configuration's own.
		p, perr := newPlan(cfg)
		if err != nil || perr != nil {
			return errors.Join(err, perr)
		}
		return serve(ctx, cfg, p, newLogger(cfg, stderr))
	case "version":
		fmt.Fprintln(stdout, "globomantics", Version())
		return nil
	case "shards":
		return reshard.MainWith(ctx, rest, stdout, stderr, shardSchemas())
	case "payments":
		return paymentsMain(ctx, rest, getenv, stdout, stderr)
	case "dns":
		return dnsMain(ctx, rest, getenv, stderr)
	case "edge":
		if len(rest) > 0 && rest[0] == "haproxy-config" {
			return runHAProxyConfig(rest[1:], stdout)
		}
		return runEdge(ctx, rest, getenv, stdout, slog.New(slog.NewTextHandler(stderr, nil)))
	case "credentials":
		return credentialsMain(rest, stdout, stderr)
	case "dlq":
		return dlqMain(ctx, rest, getenv, stdout, stderr)
	case "partners":
		return partnersMain(ctx, rest, getenv, stdout, stderr)
	case "nats":
		return natsMain(ctx, rest, stdout, stderr)
	case "cluster":
		return clusterMain(ctx, rest, stdout, stderr)
	case "load":
		return loadMain(ctx, rest, stdout, stderr)
	case "dev":
		if len(rest) > 0 && rest[0] == "postgres" {
			return devpg.Main(ctx, rest[1:], stdout, stderr)
		}
		usage(stderr)
		return fmt.Errorf("unknown dev command %q (known: postgres)", strings.Join(rest, " "))
	case "help", "-h", "-help", "--help":
		usage(stdout)
		return nil
	}
	usage(stderr)
	return fmt.Errorf("unknown command %q", cmd)
}

func usage(w io.Writer) {
	fmt.Fprintf(w, `Globomantics: an online shop built as a distributed system.

Usage:
  globomantics [serve] [flags]   run the shop (all services by default)
  globomantics version           print the version
  globomantics shards move --service S --shards LO-HI --to DSN
                                 move logical shards of a sharded service to another
                                 node while the shop runs (PostgreSQL logical replication)
  globomantics dev postgres up|status|down --dir D
                                 real PostgreSQL on this machine under pg_auto_failover:
                                 a primary with two replicas and two shard formations;
                                 up prints the GLOBO_DB_* / GLOBO_SHARDS_* settings
  globomantics payments audit [--data-dir D | --dsn DSN | --shards MAP] [--json]
                                 check the payment ledger: money conserved, every
                                 payment's status agreeing with its entries
  globomantics dns serve --zone Z --listen HOST:PORT --instance SVC=URL[,URL...]  authoritative DNS: SRV/A of healthy instances only
  globomantics edge --backend storefront=URL[,URL...] [--internal-listen H:P] [--policy p2c|least|round_robin]
                                 layer-7 load balancer: health checks, registry of
                                 instances, retries, draining, CDN cache, compression
  globomantics edge haproxy-config --backend storefront=URL,... --listen H:P
                                 the same topology as an haproxy.cfg, for HAProxy
  globomantics credentials init --dir D
                                 a credential per service (and the operator) for
                                 --credentials: each service accepts only its callers
  globomantics partners create --name NAME [--webhook-url URL] | list  [--data-dir D | --dsn DSN]
                                 partners of the partner API; create prints the new
                                 API key alone on its last line (kept hashed)
  globomantics dlq list|show ID|replay ID|replay --all [--subject S] [--nats-url URL]
                                 list, inspect and replay the messages consumers gave up on
  globomantics nats serve --name N --listen H:P --cluster H:P --routes nats://H:P,... --store-dir D
                                 one node of a NATS JetStream cluster (the shop's own engine,
                                 fsync before ack); three nodes give the shop R3 streams
  globomantics load --url URL --rate R --duration D [--mix browse=40,...] [--html F] [--json F]
                                 open-loop load generator: shopper sessions at a fixed
                                 arrival rate, report per step (shop: --rate-limits=false)
  globomantics cluster up|status|down --dir D [--storefronts 3] [--instances 2] [--hosts]
                                 the scaled-out shop as real processes on this machine,
                                 supervised, with a control room and autoscaling; up prints
                                 the shop's URL and the control room's URL; --hosts spreads
                                 it over network namespaces (cluster partition|heal)
  globomantics help              print this help

Run "globomantics serve -h" for the flags. Every flag also has a GLOBO_* environment variable.
Services: %s
`, strings.Join(config.AllServices, ", "))
}

// Version is the module version and VCS revision the binary was built from.
func Version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += " (" + s.Value[:12] + ")"
		}
	}
	return v + " " + bi.GoVersion
}

func newLogger(cfg config.Config, w io.Writer) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: lvl}
	// Every line logged with a request's context carries its request id
	// and trace ids.
	if cfg.LogFormat == "json" {
		return slog.New(obs.NewLogHandler(slog.NewJSONHandler(w, opts)))
	}
	return slog.New(obs.NewLogHandler(slog.NewTextHandler(w, opts)))
}
