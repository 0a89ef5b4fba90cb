package cluster

import (
	"context"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/platform/netns"
)

// hostsState is a fleet planned with --hosts and moved onto made-up host
// addresses, as the supervisor does with its Net's.
func hostsState(t *testing.T) *State {
	t.Helper()
	st, err := buildState(plan{dir: t.TempDir(), listenHost: "127.0.0.1", storefronts: 3, instances: 2, workers: 1, hosts: true, components: testComponents()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	st.HostAddrs = map[string]string{HostShop1: "10.201.9.2", HostShop2: "10.201.9.3", HostInfra: "10.201.9.4"}
	st.rehost()
	return st
}

func TestHostsPlacement(t *testing.T) {
	st := hostsState(t)
	on := map[string]map[string]int{} // host -> group -> processes
	for _, sp := range st.Specs {
		if on[sp.Host] == nil {
			on[sp.Host] = map[string]int{}
		}
		on[sp.Host][sp.Group]++
		addr := st.HostAddrs[sp.Host]
		if addr == "" {
			t.Fatalf("%s: host %q", sp.Name, sp.Host)
		}
		all := strings.Join(append(append([]string{sp.Ready, sp.PublicURL, sp.InternalURL}, sp.Argv...), sp.Env...), " ")
		if strings.Contains(all, "127.0.0.1") {
			t.Errorf("%s still names 127.0.0.1: %s", sp.Name, all)
		}
		if sp.Kind == "shop" && !strings.Contains(all, "--http-addr "+addr+":") {
			t.Errorf("%s on %s does not listen on %s: %s", sp.Name, sp.Host, addr, all)
		}
		if !strings.Contains(sp.Ready, addr+":") {
			t.Errorf("%s on %s: readiness %s", sp.Name, sp.Host, sp.Ready)
		}
	}
	// Majorities of NATS and Sentinel on shop1 + infra, nothing of them on
	// shop2; both shops serve every service.
	for _, g := range []string{GroupNATS, GroupSentinel} {
		if on[HostShop1][g] != 2 || on[HostInfra][g] != 1 || on[HostShop2][g] != 0 {
			t.Errorf("%s: shop1 %d, infra %d, shop2 %d; want 2, 1, 0", g, on[HostShop1][g], on[HostInfra][g], on[HostShop2][g])
		}
	}
	for _, g := range []string{"account", "catalog", "search", "checkout", GroupStorefront} {
		if on[HostShop1][g] == 0 || on[HostShop2][g] == 0 {
			t.Errorf("%s: shop1 %d, shop2 %d; want both", g, on[HostShop1][g], on[HostShop2][g])
		}
	}
	if sp := st.spec("redis-1"); sp.Host != HostShop1 {
		t.Errorf("the Redis master is on %s", sp.Host)
	}
	if !strings.Contains(st.ShopURL, "10.201.9.2:") || !strings.Contains(st.RedisURL, "10.201.9.4:") || strings.Contains(strings.Join(st.NATSURLs, ","), "127.0.0.1") {
		t.Errorf("shop %s, redis %s, nats %v", st.ShopURL, st.RedisURL, st.NATSURLs)
	}
	sf := strings.Join(st.spec("storefront-2").Argv, " ")
	if !strings.Contains(sf, "--trusted-proxies 10.201.9.2 ") {
		t.Errorf("storefront-2 does not trust the edge on shop1: %s", sf)
	}
	red := st.spec("redis-3")
	conf := st.redisConfig(red)
	if !strings.Contains(conf, "bind 10.201.9.4\n") || !strings.Contains(conf, "replicaof 10.201.9.2 ") || !strings.Contains(conf, "protected-mode no\n") {
		t.Errorf("redis-3 configuration:\n%s", conf)
	}
	// An instance added later lands on its template's host.
	f := &fleet{dir: st.Dir, base: *st}
	sp, err := f.newSpec(GroupStorefront, 4, nil)
	if err != nil {
		t.Fatal(err)
	}
	if sp.Host != HostShop1 || !strings.Contains(sp.PublicURL, "10.201.9.2:") || strings.Contains(strings.Join(sp.Argv, " "), "127.0.0.1") {
		t.Errorf("storefront-4: host %s, %s, %q", sp.Host, sp.PublicURL, sp.Argv)
	}
}

func TestHostsFlag(t *testing.T) {
	for v, want := range map[string]bool{"": false, "false": false, "true": true, "3": true} {
		if got, err := hostsFlag(v); err != nil || got != want {
			t.Errorf("hostsFlag(%q) = %v, %v", v, got, err)
		}
	}
	if _, err := hostsFlag("5"); err == nil {
		t.Error("hostsFlag(5) accepted")
	}
}

// TestHostsLauncherAndPlacement runs a process on a host through the
// launcher, and one as PostgreSQL's are started (pgPlacement), and cuts
// them by a partition.
func TestHostsLauncherAndPlacement(t *testing.T) {
	if err := netns.Available(); err != nil {
		t.Skip(err)
	}
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not found")
	}
	ctx := context.Background()
	prefix, err := netns.NewPrefix("gclt")
	if err != nil {
		t.Fatal(err)
	}
	n, err := netns.New(ctx, prefix, fleetHosts()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })

	// A server on shop2, launched as the supervisor launches.
	addr := n.Addr(HostShop2) + ":18099"
	cmd, err := hostLauncher(n)(Launch{Argv: []string{py, "-m", "http.server", "--bind", n.Addr(HostShop2), "18099"}, Dir: t.TempDir(), Host: HostShop2})
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	closeLog(cmd)
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	checkFor(t, 10*time.Second, func() error {
		resp, err := http.Get("http://" + addr + "/")
		if err == nil {
			resp.Body.Close()
		}
		return err
	})

	// A server on infra, started as pgPlacement starts pg_autoctl (a
	// prepared command forked inside the namespace).
	place := pgPlacement(n)
	if place.MonitorHost != n.Addr(HostInfra) || place.NodeHost(1) != n.Addr(HostShop2) || place.NodeHost(2) != n.Addr(HostShop1) || place.TrustNet != n.Subnet() {
		t.Errorf("placement: monitor %s, node 2 %s, node 3 %s, trust %s", place.MonitorHost, place.NodeHost(1), place.NodeHost(2), place.TrustNet)
	}
	infraAddr := n.Addr(HostInfra) + ":18098"
	icmd := exec.Command(py, "-c", "import http.server as h\nclass H(h.BaseHTTPRequestHandler):\n  def do_GET(s):\n    s.send_response(200); s.end_headers(); s.wfile.write(b'infra')\nh.HTTPServer(('"+n.Addr(HostInfra)+"', 18098), H).serve_forever()")
	if err := place.Start(n.Addr(HostInfra), icmd); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = icmd.Process.Kill(); _ = icmd.Wait() })
	if err := place.Start("10.255.255.1", exec.Command(py)); err == nil {
		t.Error("pgPlacement started a command for an address no host has")
	}
	get := func(from string) error {
		c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DialContext: n.Dialer(from)}}
		resp, err := c.Get("http://" + infraAddr + "/")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if string(b) != "infra" {
			return io.ErrUnexpectedEOF
		}
		return nil
	}
	checkFor(t, 10*time.Second, func() error { return get(HostShop1) })
	if err := n.Partition([]string{HostShop2}, []string{HostShop1, HostInfra}); err != nil {
		t.Fatal(err)
	}
	if err := get(HostShop2); err == nil {
		t.Error("shop2 reached infra's server across the partition")
	}
	if err := get(HostShop1); err != nil {
		t.Errorf("shop1 lost infra's server: %v", err)
	}
	if err := n.Heal(); err != nil {
		t.Fatal(err)
	}
	if err := get(HostShop2); err != nil {
		t.Errorf("after healing, from shop2: %v", err)
	}
}
