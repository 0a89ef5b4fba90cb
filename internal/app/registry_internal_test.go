package app

import (
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/globomantics/globomantics/internal/config"
)

// TestRegistryOrder: the registry names every configurable service once,
// sorts with every component after what it needs, and sorts the same way
// whatever order it is declared in.
func TestRegistryOrder(t *testing.T) {
	reg := components()
	var names []string
	for _, c := range reg {
		names = append(names, c.name)
		if c.build == nil {
			t.Errorf("%s has no build function", c.name)
		}
	}
	if !sameSet(names, config.AllServices) {
		t.Fatalf("registry %v, config.AllServices %v: they must name the same components", names, config.AllServices)
	}
	sorted, err := sortComponents(reg)
	if err != nil {
		t.Fatal(err)
	}
	checkOrder(t, sorted)
	want := namesOf(sorted)
	// Reversed declaration: still a valid order, and deterministic.
	rev := slices.Clone(reg)
	slices.Reverse(rev)
	r1, err := sortComponents(rev)
	if err != nil {
		t.Fatal(err)
	}
	checkOrder(t, r1)
	r2, _ := sortComponents(rev)
	if !slices.Equal(namesOf(r1), namesOf(r2)) {
		t.Errorf("two sorts of one list differ: %v, %v", namesOf(r1), namesOf(r2))
	}
	again, _ := sortComponents(reg)
	if !slices.Equal(namesOf(again), want) {
		t.Errorf("sort not deterministic: %v then %v", want, namesOf(again))
	}
}

func TestSortComponentsRefusesBadGraphs(t *testing.T) {
	_, err := sortComponents([]component{{name: "a", needs: []string{"b"}}, {name: "b", needs: []string{"c"}}, {name: "c", needs: []string{"a"}}, {name: "d"}})
	if err == nil || !strings.Contains(err.Error(), "cycle") || !strings.Contains(err.Error(), "a, b, c") {
		t.Errorf("cycle: err = %v", err)
	}
	_, err = sortComponents([]component{{name: "a", needs: []string{"ghost"}}})
	if err == nil || !strings.Contains(err.Error(), "ghost") {
		t.Errorf("unknown need: err = %v", err)
	}
	_, err = sortComponents([]component{{name: "a"}, {name: "a"}})
	if err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("duplicate: err = %v", err)
	}
}

// TestPlanDerivesNeeds: the broker and blob store needs, the remote clients
// and the refusals all come from the registry.
func TestPlanDerivesNeeds(t *testing.T) {
	load := func(args ...string) config.Config {
		t.Helper()
		cfg, err := config.Load(args, func(k string) string {
			if k == "GLOBO_SERVICE_TOKEN" {
				return "0123456789abcdef0123"
			}
			return ""
		}, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	for _, tc := range []struct {
		args        []string
		local       []string
		remote      []string
		bus, blobs  bool
		wantErrPart string
	}{
		{args: []string{"--services", "search,catalog"}, local: []string{"catalog", "search"}, bus: true, blobs: true},
		{args: []string{"--services", "cart,catalog"}, local: []string{"catalog", "cart"}, bus: true, blobs: true},
		{args: []string{"--services", "payment,shipping"}, local: []string{"payment", "shipping"}, bus: true},
		{args: []string{"--services", "mail"}, local: []string{"mail"}, bus: true},
		{args: []string{"--services", "cart", "--peer", "catalog=http://c:1", "--peer", "order=http://o:1"},
			local: []string{"cart"}, remote: []string{"catalog", "order"}},
		{args: []string{"--services", "checkout,cart"}, wantErrPart: "service checkout needs payment: run it here or give its instances with --peer payment=URL"},
		{args: []string{"--services", "storefront"}, wantErrPart: "service storefront needs account"},
		{args: []string{"--services", "catalog", "--peer", "mail=http://m:1"}, wantErrPart: "peer mail: it has no API"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			p, err := newPlan(load(tc.args...))
			if tc.wantErrPart != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErrPart) {
					t.Fatalf("err = %v, want %q", err, tc.wantErrPart)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := namesOf(p.local); !slices.Equal(got, tc.local) {
				t.Errorf("local = %v, want %v", got, tc.local)
			}
			if got := namesOf(p.remote); !sameSet(got, tc.remote) {
				t.Errorf("remote = %v, want %v", got, tc.remote)
			}
			if p.bus != tc.bus || p.blobs != tc.blobs {
				t.Errorf("bus %v blobs %v, want %v %v", p.bus, p.blobs, tc.bus, tc.blobs)
			}
		})
	}
}

func TestRedactDSN(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://shop:s3cret@db:5432/catalog?sslmode=disable": "postgres://shop:xxxxx@db:5432/catalog?sslmode=disable",
		"postgres://db/catalog?password=s3cret&sslmode=disable":  "postgres://db/catalog?password=xxxxx&sslmode=disable",
		"host=db user=shop password=s3cret dbname=catalog":       "host=db user=shop password=xxxxx dbname=catalog",
		"host=db password='s3 cret' dbname=catalog":              "host=db password=xxxxx dbname=catalog",
		"data/catalog.db": "data/catalog.db",
	} {
		if got := redactDSN(in); got != want || strings.Contains(got, "s3") {
			t.Errorf("redactDSN(%q) = %q, want %q", in, got, want)
		}
	}
}

func checkOrder(t *testing.T, sorted []component) {
	t.Helper()
	pos := map[string]int{}
	for i, c := range sorted {
		pos[c.name] = i
	}
	for _, c := range sorted {
		for _, n := range c.needs {
			if pos[n] > pos[c.name] {
				t.Errorf("%s comes before %s, which it needs: %v", c.name, n, namesOf(sorted))
			}
		}
	}
}

func namesOf(list []component) []string {
	var out []string
	for _, c := range list {
		out = append(out, c.name)
	}
	return out
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
