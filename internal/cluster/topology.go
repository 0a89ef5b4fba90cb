package cluster

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/globomantics/globomantics/internal/platform/freeport"
)

// Component is one service, worker or server of the shop as the cluster
// needs to know it: the components it calls (needs and optional uses) and
// whether it has an internal API peers reach. The composition root passes
// the registry's list, so the service graph is written down in one place.
type Component struct {
	Name   string
	Needs  []string // called, and required for readiness
	Uses   []string // called when present
	HasAPI bool
}

// Groups of the fleet that are not shop services.
const (
	GroupPostgres   = "postgres"
	GroupRedis      = "redis"
	GroupSentinel   = "sentinel"
	GroupNATS       = "nats"
	GroupEdge       = "edge"
	GroupDNS        = "dns"
	GroupStorefront = "storefront"
)

// workerGroups are the scalable worker groups; the storefront scales too.
var workerGroups = []string{"thumbnails", "mail", "webhooks"}

// ScalableGroups lists the groups Add and Remove accept.
func ScalableGroups() []string { return append([]string{GroupStorefront}, workerGroups...) }

// SentinelMaster is the name the fleet's sentinels know the Redis master by.
const SentinelMaster = "globo"

// Spec is how the supervisor runs one process; specs are kept in
// D/cluster.json so that a restarted fleet reuses names and ports.
type Spec struct {
	Name  string `json:"name"`
	Group string `json:"group"`
	Kind  string `json:"kind"` // shop, edge, dns, nats, redis, sentinel
	Index int    `json:"index"`
	// Host is the network-namespace host it runs in; "" for this machine.
	Host        string   `json:"host,omitempty"`
	Stage       int      `json:"stage"` // start order: lower first; stopped in reverse
	Ports       []int    `json:"ports"`
	Services    []string `json:"services,omitempty"`
	Scalable    bool     `json:"scalable,omitempty"`
	PublicURL   string   `json:"public_url,omitempty"`
	InternalURL string   `json:"internal_url,omitempty"`
	// Ready is how readiness is polled: "http:<url>" (2xx), "redis:<addr>"
	// (PING) or "tcp:<addr>".
	Ready string `json:"ready"`
	// Self marks a process of this binary (argv[0] is then os.Executable
	// at start).
	Self bool     `json:"self,omitempty"`
	Argv []string `json:"argv"`
	Env  []string `json:"env,omitempty"` // KEY=VALUE added to the filtered environment
	Dir  string   `json:"dir"`           // working directory, under the fleet's directory
	Log  string   `json:"log"`
	// PID and PGID of the current run, recorded for down when the
	// supervisor is gone.
	PID  int `json:"pid,omitempty"`
	PGID int `json:"pgid,omitempty"`
}

// State is D/cluster.json: the shape of the fleet, its ports and the
// processes last started. up writes it first; afterwards only the
// supervisor does.
type State struct {
	Dir             string   `json:"dir"`
	ListenHost      string   `json:"listen_host"`
	Storefronts     int      `json:"storefronts"`
	Instances       int      `json:"instances"`
	Workers         int      `json:"workers"`
	RateLimits      bool     `json:"rate_limits"`
	Faults          bool     `json:"fault_injection"`
	Autoscale       bool     `json:"autoscale"`
	ControlPort     int      `json:"control_port"`
	DNSPort         int      `json:"dns_port"`
	ShopURL         string   `json:"shop_url"`
	ControlURL      string   `json:"control_url"`
	EdgeInternalURL string   `json:"edge_internal_url"`
	NATSURLs        []string `json:"nats_urls"`
	RedisURL        string   `json:"redis_url"`
	Supervisor      int      `json:"supervisor_pid,omitempty"`
	// Hosts: the fleet spans network-namespace hosts (see hosts.go);
	// NetPrefix, RootAddr and HostAddrs are the supervisor's Net.
	Hosts     bool              `json:"hosts,omitempty"`
	NetPrefix string            `json:"net_prefix,omitempty"`
	RootAddr  string            `json:"root_addr,omitempty"`
	HostAddrs map[string]string `json:"host_addrs,omitempty"`
	// DBEnv (with Hosts) is the data layer's settings the shop processes
	// get, GLOBO_DB_* and GLOBO_SHARDS_* naming the nodes' host addresses:
	// what an operator's tool (payments audit) must use too.
	DBEnv []string `json:"db_env,omitempty"`
	Specs []Spec   `json:"procs"`
	// Components is the service graph the specs were made from (for Add).
	Components []Component `json:"components"`
}

func statePath(dir string) string { return filepath.Join(dir, "cluster.json") }

// ReadState reads D/cluster.json; the error wraps os.ErrNotExist when no
// fleet was ever set up in dir.
func ReadState(dir string) (*State, error) {
	b, err := os.ReadFile(statePath(dir))
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("cluster: %s: %w", statePath(dir), err)
	}
	return &s, nil
}

// write replaces D/cluster.json atomically.
func (s *State) write() error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp := statePath(s.Dir) + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, statePath(s.Dir))
}

// urlHost is the host others connect to for a listener bound on host.
func urlHost(host string) string {
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		return "127.0.0.1"
	}
	return host
}

func hostPort(host string, port int) string { return net.JoinHostPort(host, strconv.Itoa(port)) }

// ports hands out free ports, never the same one twice, preferring the
// ones recorded for a name (when still free).
type ports struct {
	host  string
	taken map[int]bool
}

func (p *ports) free(port int) bool {
	if p.taken[port] {
		return false
	}
	for _, h := range []string{"127.0.0.1", p.host} {
		l, err := net.Listen("tcp", hostPort(h, port))
		if err != nil {
			return false
		}
		l.Close()
	}
	return true
}

// get returns n ports: the previous ones where all are still free.
func (p *ports) get(n int, prev []int) ([]int, error) {
	if len(prev) == n {
		ok := true
		for _, q := range prev {
			if !p.free(q) {
				ok = false
				break
			}
		}
		if ok {
			for _, q := range prev {
				p.taken[q] = true
			}
			return prev, nil
		}
	}
	out := make([]int, 0, n)
	for len(out) < n {
		var q int
		var err error
		for range 50 {
			if q, err = freeport.Get(); err != nil {
				return nil, err
			}
			if p.free(q) {
				break
			}
			q = 0
		}
		if q == 0 {
			return nil, errors.New("cluster: no free port found")
		}
		p.taken[q] = true
		out = append(out, q)
	}
	return out, nil
}

// plan is the input of a topology.
type plan struct {
	dir         string
	listenHost  string
	storefronts int
	instances   int
	workers     int
	rateLimits  bool
	faults      bool
	autoscale   bool
	hosts       bool // place processes on network-namespace hosts
	components  []Component
}

// buildState makes the fleet's specs, reusing prev's ports per name when
// they are still free.
func buildState(pl plan, prev *State) (*State, error) {
	old := map[string][]int{}
	controlPrev := []int{}
	if prev != nil {
		for _, s := range prev.Specs {
			old[s.Name] = s.Ports
		}
		controlPrev = []int{prev.ControlPort}
	}
	pp := &ports{host: pl.listenHost, taken: map[int]bool{}}
	h := urlHost(pl.listenHost)
	s := &State{Dir: pl.dir, ListenHost: pl.listenHost, Storefronts: pl.storefronts, Instances: pl.instances, Workers: pl.workers,
		RateLimits: pl.rateLimits, Faults: pl.faults, Autoscale: pl.autoscale, Hosts: pl.hosts, Components: pl.components}
	cp, err := pp.get(1, controlPrev)
	if err != nil {
		return nil, err
	}
	s.ControlPort = cp[0]
	s.ControlURL = "http://" + hostPort(h, s.ControlPort)
	// Specs are added to a list of pointers first (one stays valid while
	// more are added) and copied into s.Specs at the end.
	var all []*Spec
	add := func(sp Spec, n int) (*Spec, error) {
		ps, err := pp.get(n, old[sp.Name])
		if err != nil {
			return nil, err
		}
		sp.Ports = ps
		all = append(all, &sp)
		return &sp, nil
	}

	// Redis: a master, two replicas, three sentinels.
	for i := 1; i <= 3; i++ {
		if _, err := add(Spec{Name: fmt.Sprintf("redis-%d", i), Group: GroupRedis, Kind: "redis", Index: i, Stage: 1}, 1); err != nil {
			return nil, err
		}
	}
	var sentinels []string
	for i := 1; i <= 3; i++ {
		sp, err := add(Spec{Name: fmt.Sprintf("sentinel-%d", i), Group: GroupSentinel, Kind: "sentinel", Index: i, Stage: 2}, 1)
		if err != nil {
			return nil, err
		}
		sentinels = append(sentinels, hostPort(h, sp.Ports[0]))
	}
	s.RedisURL = "redis+sentinel://" + strings.Join(sentinels, ",") + "/" + SentinelMaster

	// NATS: three nodes, ports client and cluster.
	var natsSpecs []*Spec
	for i := 1; i <= 3; i++ {
		sp, err := add(Spec{Name: fmt.Sprintf("nats-%d", i), Group: GroupNATS, Kind: "nats", Index: i, Stage: 3, Self: true}, 2)
		if err != nil {
			return nil, err
		}
		natsSpecs = append(natsSpecs, sp)
		s.NATSURLs = append(s.NATSURLs, "nats://"+hostPort(h, sp.Ports[0]))
	}
	var routes []string
	for _, sp := range natsSpecs {
		routes = append(routes, "nats://"+hostPort(h, sp.Ports[1]))
	}
	for _, sp := range natsSpecs {
		sp.Argv = []string{"nats", "serve", "--name", sp.Name, "--listen", hostPort(pl.listenHost, sp.Ports[0]),
			"--cluster", hostPort(pl.listenHost, sp.Ports[1]), "--routes", strings.Join(routes, ","),
			"--store-dir", filepath.Join(pl.dir, "nats", sp.Name)}
		sp.Ready = "tcp:" + hostPort(h, sp.Ports[0])
		sp.InternalURL = "nats://" + hostPort(h, sp.Ports[0])
	}

	// The edge: public and internal listeners.
	edge, err := add(Spec{Name: "edge-1", Group: GroupEdge, Kind: "edge", Index: 1, Stage: 4, Self: true}, 2)
	if err != nil {
		return nil, err
	}
	edge.PublicURL = "http://" + hostPort(h, edge.Ports[0])
	edge.InternalURL = "http://" + hostPort(h, edge.Ports[1])
	edge.Argv = []string{"edge", "--listen", hostPort(pl.listenHost, edge.Ports[0]), "--internal-listen", hostPort(pl.listenHost, edge.Ports[1])}
	edge.Ready = "http:" + edge.InternalURL + "/_edge/readyz"
	s.ShopURL = edge.PublicURL
	s.EdgeInternalURL = edge.InternalURL

	// DNS: the zone shop.test following the edge's registry.
	dns, err := add(Spec{Name: "dns-1", Group: GroupDNS, Kind: "dns", Index: 1, Stage: 4, Self: true}, 2)
	if err != nil {
		return nil, err
	}
	s.DNSPort = dns.Ports[0]
	dns.InternalURL = "http://" + hostPort(h, dns.Ports[1])
	dns.Argv = []string{"dns", "serve", "--zone", "shop.test", "--listen", hostPort(pl.listenHost, s.DNSPort),
		"--registry", edge.InternalURL, "--instance", "edge=" + edge.PublicURL, "--status-addr", hostPort(pl.listenHost, dns.Ports[1])}
	dns.Ready = "http:" + dns.InternalURL + "/status"

	// Shop processes: one service per process, --instances of each, in
	// stages by the depth of their needs; then workers; then storefronts.
	depth := depths(pl.components)
	var services []string
	for _, c := range pl.components {
		if c.Name == GroupStorefront || slices.Contains(workerGroups, c.Name) {
			continue
		}
		services = append(services, c.Name)
	}
	sort.SliceStable(services, func(i, j int) bool { return depth[services[i]] < depth[services[j]] })
	for _, svc := range services {
		for i := 1; i <= pl.instances; i++ {
			if _, err := add(Spec{Name: fmt.Sprintf("%s-%d", svc, i), Group: svc, Kind: "shop", Index: i, Stage: 10 + depth[svc], Services: []string{svc}, Self: true}, 2); err != nil {
				return nil, err
			}
		}
	}
	maxDepth := 0
	for _, d := range depth {
		maxDepth = max(maxDepth, d)
	}
	for _, w := range workerGroups {
		for i := 1; i <= pl.workers; i++ {
			if _, err := add(Spec{Name: fmt.Sprintf("%s-%d", w, i), Group: w, Kind: "shop", Index: i, Stage: 11 + maxDepth, Services: []string{w}, Scalable: true, Self: true}, 2); err != nil {
				return nil, err
			}
		}
	}
	for i := 1; i <= pl.storefronts; i++ {
		if _, err := add(Spec{Name: fmt.Sprintf("storefront-%d", i), Group: GroupStorefront, Kind: "shop", Index: i, Stage: 12 + maxDepth, Services: []string{GroupStorefront}, Scalable: true, Self: true}, 2); err != nil {
			return nil, err
		}
	}
	for _, sp := range all {
		s.Specs = append(s.Specs, *sp)
	}
	for i := range s.Specs {
		sp := &s.Specs[i]
		if sp.Kind == "shop" {
			s.shopArgs(sp)
		}
		if sp.Kind == "redis" || sp.Kind == "sentinel" {
			s.redisArgs(sp)
		}
		sp.Dir = filepath.Join(pl.dir, "procs", sp.Name)
		sp.Log = filepath.Join(pl.dir, "logs", sp.Name+".log")
		if pl.hosts {
			sp.Host = hostFor(*sp)
		}
	}
	return s, nil
}

// depths gives each component the length of its longest chain of needs.
func depths(cs []Component) map[string]int {
	byName := map[string]Component{}
	for _, c := range cs {
		byName[c.Name] = c
	}
	out := map[string]int{}
	var visit func(n string, seen int) int
	visit = func(n string, seen int) int {
		if d, ok := out[n]; ok {
			return d
		}
		if seen > len(cs) { // a cycle: the registry refuses those anyway
			return 0
		}
		d := 0
		for _, m := range byName[n].Needs {
			d = max(d, 1+visit(m, seen+1))
		}
		out[n] = d
		return d
	}
	for _, c := range cs {
		visit(c.Name, 0)
	}
	return out
}

func (s *State) component(name string) Component {
	for _, c := range s.Components {
		if c.Name == name {
			return c
		}
	}
	return Component{Name: name}
}

// shopArgs sets the argv of a shop process ("serve" with one service)
// from its ports and the current instances of the services it calls.
func (s *State) shopArgs(sp *Spec) {
	h := urlHost(s.ListenHost)
	sp.PublicURL = "http://" + hostPort(h, sp.Ports[0])
	sp.InternalURL = "http://" + hostPort(h, sp.Ports[1])
	sp.Ready = "http:" + sp.InternalURL + "/readyz"
	argv := []string{"serve", "--services", strings.Join(sp.Services, ","),
		"--http-addr", hostPort(s.ListenHost, sp.Ports[0]), "--internal-addr", hostPort(s.ListenHost, sp.Ports[1]),
		"--advertise", sp.PublicURL, "--advertise-internal", sp.InternalURL,
		"--data-dir", filepath.Join(s.Dir, "procs", sp.Name),
		"--blob-dir", filepath.Join(s.Dir, "blobs"), "--mail-dir", filepath.Join(s.Dir, "mail"),
		"--nats-url", strings.Join(s.NATSURLs, ","),
		"--credentials", filepath.Join(s.Dir, "creds"),
		"--edge-registry", s.EdgeInternalURL,
		"--dns-server", hostPort(h, s.DNSPort),
	}
	if !s.RateLimits {
		argv = append(argv, "--rate-limits=false")
	}
	if sp.Group == GroupStorefront {
		argv = append(argv, "--trusted-proxies", h)
	}
	if s.Faults && (sp.Group == "checkout" || sp.Group == "payment") {
		argv = append(argv, "--fault-injection")
	}
	var calls []string
	for _, svc := range sp.Services {
		c := s.component(svc)
		calls = append(calls, c.Needs...)
		calls = append(calls, c.Uses...)
	}
	slices.Sort(calls)
	for _, callee := range slices.Compact(calls) {
		if slices.Contains(sp.Services, callee) || !s.component(callee).HasAPI {
			continue
		}
		var urls []string
		for _, o := range s.Specs {
			if o.Kind == "shop" && slices.Contains(o.Services, callee) {
				urls = append(urls, "http://"+hostPort(h, o.Ports[1]))
			}
		}
		if len(urls) > 0 {
			argv = append(argv, "--peer", callee+"="+strings.Join(urls, ","))
		}
	}
	sp.Argv = argv
}

// redisArgs sets the argv of a Redis server or sentinel: a configuration
// file it may rewrite (sentinel's failovers persist there).
func (s *State) redisArgs(sp *Spec) {
	h := urlHost(s.ListenHost)
	conf := filepath.Join(s.Dir, "redis", sp.Name, sp.Kind+".conf")
	addr := hostPort(h, sp.Ports[0])
	sp.Ready = "redis:" + addr
	sp.InternalURL = "redis://" + addr
	if sp.Kind == "sentinel" {
		sp.Argv = []string{"redis-sentinel", conf}
		return
	}
	sp.Argv = []string{"redis-server", conf}
}

// redisConfig is the first configuration file of a Redis server or
// sentinel (written only when absent: they rewrite it themselves).
func (s *State) redisConfig(sp *Spec) string {
	dir := filepath.Dir(sp.Argv[1])
	master := s.spec("redis-1")
	h, bind := s.addrOf(master), s.listenOf(sp)
	if sp.Kind == "sentinel" {
		return fmt.Sprintf(`port %d
bind %s
daemonize no
dir %s
loglevel notice
sentinel resolve-hostnames no
sentinel monitor %s %s %d 2
sentinel down-after-milliseconds %s 2000
sentinel failover-timeout %s 6000
sentinel parallel-syncs %s 1
`, sp.Ports[0], bind, dir, SentinelMaster, h, master.Ports[0], SentinelMaster, SentinelMaster, SentinelMaster) + hostsRedisConfig(sp)
	}
	conf := fmt.Sprintf(`port %d
bind %s
daemonize no
dir %s
loglevel notice
save ""
appendonly yes
appendfsync everysec
repl-diskless-sync yes
repl-diskless-sync-delay 0
`, sp.Ports[0], bind, dir)
	if sp.Name != "redis-1" {
		conf += fmt.Sprintf("replicaof %s %d\n", h, master.Ports[0])
	}
	return conf + hostsRedisConfig(sp)
}

func (s *State) spec(name string) *Spec {
	for i := range s.Specs {
		if s.Specs[i].Name == name {
			return &s.Specs[i]
		}
	}
	return nil
}

// newToken returns 32 random bytes in hex.
func newToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}
