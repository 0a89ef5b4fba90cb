// Package cluster runs the scaled-out shop on one machine as real processes
// of the same binary ("globomantics cluster up|status|down"): PostgreSQL
// formations under pg_auto_failover, Redis with Sentinel, a three-node NATS
// cluster, the edge and DNS, storefronts, two or more instances of every
// service and the workers. A supervisor restarts what dies, serves the
// control room, and an autoscaler grows and shrinks the worker and
// storefront groups from their measured load.
package cluster

import "time"

// Proc is what the supervisor knows of one process it runs. It is a value:
// the supervisor hands out copies.
type Proc struct {
	Name  string // unique in the fleet: "storefront-1", "catalog-2", "nats-3", "mail-1"
	Group string // the set it scales in: "storefront", "catalog", "mail", "nats", "redis", "edge", "dns"
	// Kind says what runs: "shop" (globomantics serve), "edge", "dns",
	// "nats", "redis", "sentinel", "postgres".
	Kind string
	Host string // the network-namespace host it runs in; "" for the machine's own
	PID  int    // 0 while not running
	// State is "starting", "ready", "unready", "restarting", "stopping",
	// "stopped" or "failed".
	State     string
	Restarts  int
	Started   time.Time // when the current run started
	LastExit  string    // how the previous run ended ("" if it never did)
	PublicURL string    // its public listener, if any ("http://127.0.0.1:8081")
	// InternalURL serves /readyz, /metrics and the operator endpoints of a
	// shop or edge process; "" for the others.
	InternalURL string
	// Services are the shop services it runs (--services), for shop processes.
	Services []string
	// Scalable is true for the groups the autoscaler may grow and shrink.
	Scalable bool
}
