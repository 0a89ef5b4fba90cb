package cluster

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/globomantics/globomantics/internal/devpg"
	"github.com/globomantics/globomantics/internal/platform/netns"
)

// The fleet's hosts under "cluster up --hosts": three network namespaces
// (internal/platform/netns) on one bridge, each with an address of its own
// on a private /24. The supervisor and the control listener stay in the
// root namespace, which reaches every host (and which a partition never
// cuts); the control listener answers on 127.0.0.1 and on the Net's root
// address.
//
// Placement (hostFor, pgHostFor):
//
//	host   processes
//	shop1  edge-1, dns-1; storefront-1, -3 (odd); instance 1 (odd) of every
//	       service; every worker (thumbnails, mail, webhooks); redis-1 (the
//	       master), sentinel-1, -2; nats-1, -2; PostgreSQL: node 1 of every
//	       formation (the primary at start) and node 3 of the main one
//	shop2  storefront-2 (even); instance 2 (even) of every service; redis-2
//	       (a replica); PostgreSQL: node 2 of every formation (a replica)
//	infra  the pg_auto_failover monitor; redis-3 (a replica), sentinel-3;
//	       nats-3
//
// shop1 and infra hold the majorities of NATS (2+1 of 3) and Sentinel (2+1
// of 3), so cutting shop2 off leaves them working on the majority side.
//
// PostgreSQL runs on the hosts too (pgPlacement): devpg starts each
// pg_autoctl (and so its postgres) as the postgres user in its host's
// namespace, listening on and registered with the host's address, every
// server trusting the Net's /24. A partition therefore cuts streaming
// replication and the monitor's health checks as well: with shop2 cut off,
// the monitor on infra finds node 2 of every formation unreachable. The
// main formation (synchronous, number_sync_standbys 1) keeps committing on
// node 1 with node 3, on shop1, as its standby; a shard formation (two
// nodes) stalls commits on shop1 until the monitor has marked node 2
// unhealthy and moved the primary to wait_primary (asynchronous), a few
// seconds with pgauto's DefaultTimeouts. After heal node 2 catches up and
// is a secondary again.
const (
	HostShop1 = "shop1"
	HostShop2 = "shop2"
	HostInfra = "infra"
)

// fleetHosts are the hosts of a fleet made with --hosts, in address order
// (shop1 .2, shop2 .3, infra .4).
func fleetHosts() []string { return []string{HostShop1, HostShop2, HostInfra} }

// netBase is the base of the Net prefixes the supervisor makes
// (netns.NewPrefix), so that a later up removes those of dead supervisors.
const netBase = "gcl"

// hostFor is the host a process runs on under --hosts (see the table
// above).
func hostFor(sp Spec) string {
	switch sp.Kind {
	case "redis":
		return fleetHosts()[(sp.Index-1)%3]
	case "sentinel", "nats":
		if sp.Index%3 == 0 {
			return HostInfra
		}
		return HostShop1
	case "edge", "dns":
		return HostShop1
	}
	if slices.Contains(workerGroups, sp.Group) {
		return HostShop1
	}
	if sp.Index%2 == 0 {
		return HostShop2
	}
	return HostShop1
}

// pgHostFor is the host whose address serves node i (0-based) of a
// formation.
func pgHostFor(i int) string {
	if i == 1 {
		return HostShop2
	}
	return HostShop1
}

// loopbackPort matches the addresses buildState writes for every listener.
var loopbackPort = regexp.MustCompile(`127\.0\.0\.1:(\d+)`)

// rehost rewrites s, whose specs buildState made on 127.0.0.1 with a Host
// each, so that every listener binds its host's address and every URL and
// peer list names it. Ports are unique in a fleet, so a port says whose
// address replaces 127.0.0.1 in front of it.
func (s *State) rehost() {
	rw := s.rewriter()
	for i := range s.Specs {
		s.rehostSpec(&s.Specs[i], rw)
	}
	s.ShopURL, s.EdgeInternalURL, s.RedisURL = rw(s.ShopURL), rw(s.EdgeInternalURL), rw(s.RedisURL)
	for i, u := range s.NATSURLs {
		s.NATSURLs[i] = rw(u)
	}
}

// rewriter returns the function that moves "127.0.0.1:port" onto the
// address of the host whose process (among s's specs and extra) has port.
func (s *State) rewriter(extra ...*Spec) func(string) string {
	byPort := map[string]string{}
	mark := func(sp *Spec) {
		if a := s.HostAddrs[sp.Host]; a != "" {
			for _, p := range sp.Ports {
				byPort[strconv.Itoa(p)] = a
			}
		}
	}
	for i := range s.Specs {
		mark(&s.Specs[i])
	}
	for _, sp := range extra {
		mark(sp)
	}
	return func(v string) string {
		return loopbackPort.ReplaceAllStringFunc(v, func(m string) string {
			port := m[len("127.0.0.1:"):]
			if a, ok := byPort[port]; ok {
				return a + ":" + port
			}
			return m
		})
	}
}

// rehostSpec rewrites one spec's command line, environment and URLs with
// rw (from rewriter); storefronts trust the edge's address.
func (s *State) rehostSpec(sp *Spec, rw func(string) string) {
	edgeAddr := ""
	if e := s.spec("edge-1"); e != nil {
		edgeAddr = s.HostAddrs[e.Host]
	}
	for j, a := range sp.Argv {
		sp.Argv[j] = rw(a)
		if j > 0 && sp.Argv[j-1] == "--trusted-proxies" && edgeAddr != "" {
			sp.Argv[j] = edgeAddr
		}
	}
	for j, e := range sp.Env {
		sp.Env[j] = rw(e)
	}
	sp.PublicURL, sp.InternalURL, sp.Ready = rw(sp.PublicURL), rw(sp.InternalURL), rw(sp.Ready)
}

// listenOf is the address sp's listeners bind: its host's, or the fleet's
// listen host.
func (s *State) listenOf(sp *Spec) string {
	if a := s.HostAddrs[sp.Host]; a != "" {
		return a
	}
	return s.ListenHost
}

// addrOf is the address others dial to reach sp.
func (s *State) addrOf(sp *Spec) string {
	if a := s.HostAddrs[sp.Host]; a != "" {
		return a
	}
	return urlHost(s.ListenHost)
}

// makeNet is the supervisor's first step under --hosts: it removes the Nets
// of supervisors that died (and the one this directory recorded), makes
// the hosts, records the prefix and the addresses in s and moves every
// spec onto its host's address.
func (s *State) makeNet(ctx context.Context, log *slog.Logger) (*netns.Net, error) {
	if stale, err := netns.RemoveStale(ctx, netBase); err != nil {
		log.Warn("cluster: removing stale namespaces", "prefixes", stale, "err", err)
	}
	if s.NetPrefix != "" {
		if err := netns.Remove(ctx, s.NetPrefix); err != nil {
			return nil, err
		}
	}
	prefix, err := netns.NewPrefix(netBase)
	if err != nil {
		return nil, err
	}
	n, err := netns.New(ctx, prefix, fleetHosts()...)
	if err != nil {
		return nil, err
	}
	s.NetPrefix, s.RootAddr = prefix, n.RootAddr()
	s.HostAddrs = map[string]string{}
	for _, h := range n.Hosts() {
		s.HostAddrs[h] = n.Addr(h)
	}
	s.rehost()
	log.Info("cluster: hosts", "prefix", prefix, "subnet", n.Subnet(), "addrs", s.HostAddrs)
	return n, nil
}

// hostLauncher runs a process with a Host in that host's namespace (ip
// netns exec, which execs in place: the pid is the process's own).
func hostLauncher(n *netns.Net) Launcher {
	return func(l Launch) (*exec.Cmd, error) {
		cmd, err := LocalLauncher(l)
		if err != nil || l.Host == "" {
			return cmd, err
		}
		argv, err := n.Wrap(l.Host, append([]string{cmd.Path}, cmd.Args[1:]...)...)
		if err != nil {
			closeLog(cmd)
			return nil, err
		}
		cmd.Path, cmd.Args = argv[0], argv
		return cmd, nil
	}
}

// pgPlacement puts devpg's servers on the hosts (see the placement notes):
// the monitor on infra, node i of every formation on pgHostFor(i), each
// pg_autoctl started in its host's namespace as the postgres user, every
// server trusting the Net's subnet.
func pgPlacement(n *netns.Net) devpg.Placement {
	hostOf := map[string]string{}
	for _, h := range n.Hosts() {
		hostOf[n.Addr(h)] = h
	}
	return devpg.Placement{
		MonitorHost: n.Addr(HostInfra),
		NodeHost:    func(i int) string { return n.Addr(pgHostFor(i)) },
		TrustNet:    n.Subnet(),
		Start: func(addr string, cmd *exec.Cmd) error {
			h, ok := hostOf[addr]
			if !ok {
				return fmt.Errorf("no host has address %s", addr)
			}
			return n.Start(h, cmd)
		},
	}
}

// partitionCmd is "cluster partition --dir D --hosts h1,h2": it cuts the
// listed hosts from the fleet's other hosts (both ways) until heal.
func partitionCmd(ctx context.Context, dir, hosts string, stderr io.Writer) error {
	st, n, err := openNet(ctx, dir)
	if err != nil {
		return fmt.Errorf("cluster partition: %w", err)
	}
	var a, b []string
	for _, h := range strings.Split(hosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			a = append(a, h)
		}
	}
	for _, h := range n.Hosts() {
		if !slices.Contains(a, h) {
			b = append(b, h)
		}
	}
	if len(a) == 0 || len(b) == 0 {
		return fmt.Errorf("cluster partition: --hosts must name some but not all of %s", strings.Join(n.Hosts(), ", "))
	}
	if err := n.Partition(a, b); err != nil {
		return fmt.Errorf("cluster partition: %w", err)
	}
	fmt.Fprintf(stderr, "cluster partition: %s cut from %s in %s (heal with \"globomantics cluster heal --dir %s\")\n",
		strings.Join(a, ","), strings.Join(b, ","), st.Dir, st.Dir)
	return nil
}

// healCmd is "cluster heal --dir D": it undoes every partition.
func healCmd(ctx context.Context, dir string, stderr io.Writer) error {
	st, n, err := openNet(ctx, dir)
	if err != nil {
		return fmt.Errorf("cluster heal: %w", err)
	}
	if err := n.Heal(); err != nil {
		return fmt.Errorf("cluster heal: %w", err)
	}
	fmt.Fprintf(stderr, "cluster heal: every host of %s reaches every other\n", st.Dir)
	return nil
}

func openNet(ctx context.Context, dir string) (*State, *netns.Net, error) {
	st, err := ReadState(dir)
	if err != nil {
		return nil, nil, err
	}
	if st.NetPrefix == "" {
		return nil, nil, fmt.Errorf("the fleet in %s has no hosts (up --hosts)", dir)
	}
	n, err := netns.Open(ctx, st.NetPrefix)
	if err != nil {
		return nil, nil, err
	}
	return st, n, nil
}

// removeNet deletes the fleet's namespaces (and kills what still runs in
// them); nothing recorded is no error.
func removeNet(ctx context.Context, st *State) error {
	if st.NetPrefix == "" {
		return nil
	}
	return netns.Remove(ctx, st.NetPrefix)
}

// hostsFlag reads up's --hosts: absent or "false" is off; "true" (or "3",
// the only number of hosts there is) is on.
func hostsFlag(v string) (bool, error) {
	switch v {
	case "", "false", "0":
		return false, nil
	case "true", "1", "3":
		return true, nil
	}
	return false, fmt.Errorf("cluster up: --hosts %q: want true (three hosts: shop1, shop2, infra) or false", v)
}

// hostsValue is up's --hosts as a flag that may be given bare.
type hostsValue string

func (v *hostsValue) String() string     { return string(*v) }
func (v *hostsValue) Set(s string) error { *v = hostsValue(s); return nil }
func (v *hostsValue) IsBoolFlag() bool   { return true }

// hostsRedisConfig is what a Redis server or sentinel on a host adds to
// its configuration: it is reached from the other hosts over the fleet's
// private /24, not only over loopback, which protected mode would refuse.
func hostsRedisConfig(sp *Spec) string {
	if sp.Host == "" {
		return ""
	}
	return "protected-mode no\n"
}
