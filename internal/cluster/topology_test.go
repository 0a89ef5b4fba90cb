package cluster

import (
	"slices"
	"strings"
	"testing"
)

func testComponents() []Component {
	return []Component{
		{Name: "account", HasAPI: true}, {Name: "catalog", HasAPI: true},
		{Name: "search", Needs: []string{"catalog"}, HasAPI: true},
		{Name: "checkout", Needs: []string{"catalog", "search"}, HasAPI: true},
		{Name: "mail"}, {Name: "thumbnails", Needs: []string{"catalog"}}, {Name: "webhooks"},
		{Name: "storefront", Needs: []string{"account", "catalog", "search", "checkout"}, Uses: []string{"analytics"}},
	}
}

func TestBuildState(t *testing.T) {
	dir := t.TempDir()
	st, err := buildState(plan{dir: dir, listenHost: "127.0.0.1", storefronts: 3, instances: 2, workers: 1, components: testComponents()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]string{}
	byName := map[string]Spec{}
	for _, sp := range st.Specs {
		byName[sp.Name] = sp
		if len(sp.Argv) == 0 || sp.Ready == "" || sp.Dir == "" {
			t.Errorf("%s: incomplete spec %+v", sp.Name, sp)
		}
		for _, p := range sp.Ports {
			if other, dup := seen[p]; dup {
				t.Errorf("port %d given to %s and %s", p, other, sp.Name)
			}
			seen[p] = sp.Name
		}
	}
	for _, name := range []string{"redis-1", "redis-3", "sentinel-3", "nats-3", "edge-1", "dns-1", "account-2", "checkout-1", "mail-1", "storefront-3"} {
		if _, ok := byName[name]; !ok {
			t.Errorf("no %s", name)
		}
	}
	if a := byName["nats-2"].Argv; a[0] != "nats" || a[1] != "serve" {
		t.Errorf("nats-2 argv %q", a)
	}
	if a := byName["edge-1"].Argv; a[0] != "edge" {
		t.Errorf("edge-1 argv %q", a)
	}
	sf := strings.Join(byName["storefront-1"].Argv, " ")
	for _, want := range []string{"--peer checkout=http://", "--trusted-proxies 127.0.0.1", "--edge-registry " + st.EdgeInternalURL, "--services storefront"} {
		if !strings.Contains(sf, want) {
			t.Errorf("storefront argv %q lacks %q", sf, want)
		}
	}
	if strings.Contains(sf, "analytics=") {
		t.Errorf("storefront given a peer that does not run: %q", sf)
	}
	if !(byName["catalog-1"].Stage < byName["search-1"].Stage && byName["search-1"].Stage < byName["checkout-1"].Stage &&
		byName["checkout-1"].Stage < byName["mail-1"].Stage && byName["mail-1"].Stage < byName["storefront-1"].Stage) {
		t.Errorf("stages out of order")
	}
	// A second up reuses the ports.
	again, err := buildState(plan{dir: dir, listenHost: "127.0.0.1", storefronts: 3, instances: 2, workers: 1, components: testComponents()}, st)
	if err != nil {
		t.Fatal(err)
	}
	for i := range st.Specs {
		if !slices.Equal(st.Specs[i].Ports, again.Specs[i].Ports) {
			t.Errorf("%s: ports %v then %v", st.Specs[i].Name, st.Specs[i].Ports, again.Specs[i].Ports)
		}
	}
	if again.ControlPort != st.ControlPort {
		t.Errorf("control port %d then %d", st.ControlPort, again.ControlPort)
	}
}
