package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ClusterReplicas is how many copies of a Synced stream the bus keeps when
// it is connected to a JetStream cluster of at least that many nodes (R3):
// one node may be lost without losing an acknowledged message or the
// stream's quorum. See docs/decisions/0009-broker-durability.md.
const ClusterReplicas = 3

// DefaultClusterName names the cluster of shop-run NATS nodes unless
// NodeOptions.ClusterName says otherwise.
const DefaultClusterName = "globomantics"

// NodeOptions configure one node of a NATS JetStream cluster run by the
// shop's own binary (globomantics nats serve).
type NodeOptions struct {
	// Name is the node's server name, unique in the cluster and stable
	// across restarts (JetStream keys its Raft state by it).
	Name string
	// ListenAddr is the host:port clients connect to.
	ListenAddr string
	// ClusterAddr is the host:port the other nodes' routes connect to.
	ClusterAddr string
	// Routes are the cluster URLs (nats://host:port) of the nodes to
	// connect to; the node's own may be among them, so every node can be
	// given the same list.
	Routes []string
	// ClusterName names the cluster; empty is DefaultClusterName.
	ClusterName string
	// StoreDir is where the node keeps JetStream data and its Raft logs.
	StoreDir string
	// Log receives the server's own log lines; nil is slog.Default().
	Log *slog.Logger
}

// Node is a running cluster node.
type Node struct {
	ns *server.Server
	nc *nats.Conn // in-process connection answering BrokerSyncSubject
}

// serverOptions are the options every NATS server the shop runs shares,
// embedded or as a cluster node: JetStream on StoreDir with every write
// fsynced before it is acknowledged (durability.go).
func serverOptions(name, storeDir string) *server.Options {
	opts := &server.Options{
		ServerName: name,
		JetStream:  true,
		StoreDir:   storeDir,
		NoSigs:     true,
		NoLog:      true,
		MaxPayload: 8 << 20,
	}
	durableServer(opts) // fsync before ack: see durability.go
	return opts
}

// StartNode starts a cluster node and returns once it accepts clients. The
// cluster's JetStream is usable once a majority of its nodes are up (bus.Open
// keeps trying until then). Errors are configuration errors or a port in use.
func StartNode(o NodeOptions) (*Node, error) {
	if o.Name == "" || o.StoreDir == "" || o.ListenAddr == "" || o.ClusterAddr == "" {
		return nil, errors.New("bus: a cluster node needs a name, a store directory, a listen address and a cluster address")
	}
	opts := serverOptions(o.Name, o.StoreDir)
	opts.NoLog = false
	host, port, err := splitHostPort(o.ListenAddr)
	if err != nil {
		return nil, err
	}
	opts.Host, opts.Port = host, port
	chost, cport, err := splitHostPort(o.ClusterAddr)
	if err != nil {
		return nil, err
	}
	opts.Cluster = server.ClusterOpts{Name: o.ClusterName, Host: chost, Port: cport}
	if opts.Cluster.Name == "" {
		opts.Cluster.Name = DefaultClusterName
	}
	for _, r := range o.Routes {
		r = strings.TrimSpace(r)
		if r == "" {
			continue
		}
		u, err := url.Parse(r)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("bus: route %q is not a URL like nats://host:port", r)
		}
		opts.Routes = append(opts.Routes, u)
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("bus: nats node %s: %w", o.Name, err)
	}
	log := o.Log
	if log == nil {
		log = slog.Default()
	}
	ns.SetLoggerV2(serverLog{log.With("node", o.Name)}, false, false, false)
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("bus: nats node %s did not accept clients in 10s", o.Name)
	}
	n := &Node{ns: ns}
	// Clients of the cluster ask how it syncs (checkExternalSync); the
	// node answers with its own configuration, as the embedded broker's
	// process does.
	nc, err := nats.Connect(ns.ClientURL(), nats.InProcessServer(ns), nats.Name(o.Name+"-sync"))
	if err == nil {
		n.nc = nc
		err = (&Bus{ns: ns, nc: nc}).answerSyncQueries()
	}
	if err != nil {
		n.Shutdown()
		return nil, fmt.Errorf("bus: nats node %s: %w", o.Name, err)
	}
	return n, nil
}

// ClientURL is the URL clients use to reach the node.
func (n *Node) ClientURL() string { return n.ns.ClientURL() }

// Shutdown stops the node and waits until it has stopped.
func (n *Node) Shutdown() {
	if n.nc != nil {
		n.nc.Close()
	}
	n.ns.Shutdown()
	n.ns.WaitForShutdown()
}

// ServeNode runs a cluster node until ctx ends, then shuts it down.
func ServeNode(ctx context.Context, o NodeOptions) error {
	n, err := StartNode(o)
	if err != nil {
		return err
	}
	log := o.Log
	if log == nil {
		log = slog.Default()
	}
	log.Info("nats node ready", "node", o.Name, "url", n.ClientURL(), "cluster", o.ClusterAddr, "routes", len(o.Routes), "store", o.StoreDir)
	<-ctx.Done()
	n.Shutdown()
	log.Info("nats node stopped", "node", o.Name)
	return nil
}

// serverLog passes the NATS server's log lines to slog.
type serverLog struct{ l *slog.Logger }

func (s serverLog) Noticef(format string, v ...any) { s.l.Info(fmt.Sprintf(format, v...)) }
func (s serverLog) Warnf(format string, v ...any)   { s.l.Warn(fmt.Sprintf(format, v...)) }
func (s serverLog) Fatalf(format string, v ...any)  { s.l.Error(fmt.Sprintf(format, v...)) }
func (s serverLog) Errorf(format string, v ...any)  { s.l.Error(fmt.Sprintf(format, v...)) }
func (s serverLog) Debugf(format string, v ...any)  { s.l.Debug(fmt.Sprintf(format, v...)) }
func (s serverLog) Tracef(format string, v ...any)  { s.l.Debug(fmt.Sprintf(format, v...)) }

// clusterSize is how many servers the connection's server belongs to: 1 for
// a server that is not part of a cluster, otherwise the distinct servers the
// connection knows (the URLs it was given and those the server announces for
// the other nodes of its cluster).
func clusterSize(nc *nats.Conn) int {
	if nc.ConnectedClusterName() == "" {
		return 1
	}
	hosts := map[string]bool{}
	for _, s := range nc.Servers() {
		u, err := url.Parse(s)
		if err != nil || u.Host == "" {
			hosts[s] = true
			continue
		}
		hosts[u.Host] = true
	}
	return max(len(hosts), 1)
}

// streamReplicas is the number of replicas Open gives stream s over nc: R3
// for a Synced stream on a cluster of at least three nodes, R1 otherwise (a
// Buffered stream's asynchronous persistence exists for one replica only).
func streamReplicas(s StreamSpec, nc *nats.Conn) int {
	if s.Persistence == Buffered || clusterSize(nc) < ClusterReplicas {
		return 1
	}
	return ClusterReplicas
}

// lookupWait bounds ensureStream's first question to JetStream.
const lookupWait = 2 * time.Second

// ensureStream creates stream s, or updates it to the configuration the bus
// wants, with its replicas chosen by streamReplicas. An existing stream with
// more replicas keeps them (the bus never scales a stream down).
func (b *Bus) ensureStream(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, s StreamSpec) error {
	cfg := streamConfig(s)
	cfg.Replicas = streamReplicas(s, nc)
	// The lookup also tells whether JetStream answers at all: a cluster
	// whose nodes are still electing their meta leader does not, and
	// the caller retries soon rather than after its whole budget.
	lctx, cancel := context.WithTimeout(ctx, lookupWait)
	st, err := js.Stream(lctx, s.Name)
	cancel()
	if err == nil {
		if have := st.CachedInfo().Config.Replicas; have > cfg.Replicas {
			cfg.Replicas = have
		}
	} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("bus: stream %s: %w", s.Name, err)
	}
	if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
		// A cluster with a node down cannot place three replicas yet: the
		// caller retries until its connect timeout.
		return fmt.Errorf("bus: create stream %s (R%d): %w", s.Name, cfg.Replicas, err)
	}
	if cfg.Replicas > 1 {
		b.log.Info("stream replicated", "stream", s.Name, "replicas", cfg.Replicas, "cluster", nc.ConnectedClusterName())
	}
	return nil
}
