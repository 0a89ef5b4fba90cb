package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/globomantics/globomantics/internal/platform/bus"
)

const natsUsage = `Usage:
  globomantics nats serve --name N --listen HOST:PORT --cluster HOST:PORT
                          --routes nats://HOST:PORT,... --store-dir D

Runs one node of a NATS JetStream cluster: the same NATS server the shop
embeds, with cluster routes, every write fsynced before it is acknowledged
(sync_interval: always), until SIGINT or SIGTERM. Start three nodes, each with
its own --name, ports and --store-dir and the same --routes (every node's
--cluster address), then point the shop at all of them:
--nats-url nats://HOST:PORT,nats://HOST:PORT,nats://HOST:PORT. The shop's
streams are then replicated on three nodes (R3).

Flags:
`

// natsMain runs "globomantics nats serve": one node of a JetStream cluster
// until ctx ends. It logs to stderr.
func natsMain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "serve" {
		fmt.Fprint(stderr, natsUsage)
		if len(args) > 0 && (args[0] == "help" || args[0] == "-h" || args[0] == "--help") {
			return nil
		}
		if len(args) == 0 {
			return errors.New("nats: missing command (known: serve)")
		}
		return fmt.Errorf("nats: unknown command %q (known: serve)", args[0])
	}
	fs := flag.NewFlagSet("nats serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, natsUsage); fs.PrintDefaults() }
	var o bus.NodeOptions
	var routes string
	fs.StringVar(&o.Name, "name", "", "this node's `name`, unique in the cluster and the same across restarts")
	fs.StringVar(&o.ListenAddr, "listen", "127.0.0.1:4222", "`HOST:PORT` clients connect to")
	fs.StringVar(&o.ClusterAddr, "cluster", "127.0.0.1:6222", "`HOST:PORT` the other nodes' routes connect to")
	fs.StringVar(&routes, "routes", "", "comma-separated cluster `URLs` (nats://HOST:PORT) of the nodes; this node's own may be in the list")
	fs.StringVar(&o.ClusterName, "cluster-name", bus.DefaultClusterName, "`name` of the cluster, the same on every node")
	fs.StringVar(&o.StoreDir, "store-dir", "", "`directory` of this node's JetStream data")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("nats serve: unexpected arguments %q", fs.Args())
	}
	var missing []string
	if o.Name == "" {
		missing = append(missing, "--name")
	}
	if o.StoreDir == "" {
		missing = append(missing, "--store-dir")
	}
	if routes == "" {
		missing = append(missing, "--routes")
	}
	if len(missing) > 0 {
		fs.Usage()
		return fmt.Errorf("nats serve: missing %s", strings.Join(missing, ", "))
	}
	o.Routes = strings.Split(routes, ",")
	o.Log = slog.New(slog.NewTextHandler(stderr, nil))
	return bus.ServeNode(ctx, o)
}
