package edge_test

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/edge"
	"github.com/globomantics/globomantics/internal/platform/errs"
)

// TestListPools: GET /_edge/v1/pools lists every pool with all its
// members, their sources and availability, behind the registry's token.
func TestListPools(t *testing.T) {
	static := startBackend(t, okHandler("s"))
	reg := startBackend(t, okHandler("r"))
	e := startEdge(t, edge.Config{
		Token:          "s3cret",
		InternalListen: "127.0.0.1:0",
		Backends:       map[string][]string{"catalog": {static.URL}},
	})
	c := newClient()
	base := "http://" + e.InternalAddr()
	ctx := context.Background()
	hc := &http.Client{Timeout: 2 * time.Second}

	if _, err := edge.ListPools(ctx, hc, base, "wrong"); !errs.Is(errs.Unauthorized, err) {
		t.Fatalf("ListPools with a wrong token: %v, want Unauthorized", err)
	}
	if code, err := putInstance(t, c, base, "s3cret", "cart", reg.URL, time.Second); err != nil || code != http.StatusCreated {
		t.Fatalf("PUT: %d %v", code, err)
	}
	if code, err := putInstance(t, c, base, "s3cret", "catalog", static.URL, time.Second); err != nil || code != http.StatusOK {
		t.Fatalf("PUT of a static backend: %d %v", code, err)
	}
	l, err := edge.ListPools(ctx, hc, base, "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	members := map[string]edge.Member{}
	for _, p := range l.Pools {
		names = append(names, p.Pool)
		for _, m := range p.Members {
			members[p.Pool+" "+m.URL] = m
		}
	}
	if want := []string{"cart", "catalog", "storefront"}; !slices.Equal(names, want) {
		t.Fatalf("pools = %v, want %v", names, want)
	}
	if len(members) != 2 {
		t.Fatalf("members = %v, want the cart and the catalog instance", members)
	}
	m := members["cart "+reg.URL]
	if !slices.Equal(m.Sources, []string{"registered"}) || !m.Available || !m.HasSource("registered") || m.HasSource("static") {
		t.Errorf("registered member = %+v", m)
	}
	m = members["catalog "+static.URL]
	if !slices.Equal(m.Sources, []string{"static", "registered"}) || !m.Available {
		t.Errorf("static and registered member = %+v", m)
	}

	// A member whose health check fails stays listed, unavailable.
	reg.ready.Store(http.StatusServiceUnavailable)
	checkFor(t, 2*time.Second, func() error {
		l, err := edge.ListPools(ctx, hc, base, "s3cret")
		if err != nil {
			return err
		}
		for _, p := range l.Pools {
			if p.Pool == "cart" && len(p.Members) == 1 && !p.Members[0].Available {
				return nil
			}
		}
		return fmt.Errorf("cart's member still available: %+v", l)
	})

	// Deregistered: gone from the list at once.
	req, _ := http.NewRequest(http.MethodDelete, base+"/_edge/v1/pools/cart/instances?url="+reg.URL, nil)
	req.Header.Set("Authorization", "Bearer s3cret")
	resp, err := c.Do(req)
	if err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE: %v %v", resp, err)
	}
	resp.Body.Close()
	l, err = edge.ListPools(ctx, hc, base, "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range l.Pools {
		if p.Pool == "cart" && len(p.Members) != 0 {
			t.Errorf("cart after deregistration: %+v", p.Members)
		}
	}

	// The public listener does not serve the registry API when there is an
	// internal one.
	if code, _, _, _ := get(t, c, "GET", "http://"+e.Addr()+"/_edge/v1/pools", nil, http.Header{"Authorization": {"Bearer s3cret"}}); code != http.StatusNotFound {
		t.Errorf("GET /_edge/v1/pools on the public listener: %d, want 404", code)
	}
}
