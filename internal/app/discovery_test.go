package app_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/cart"
	"github.com/globomantics/globomantics/internal/catalog"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/httpx"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

// TestPeersFromDNS: a process given a peer as srv+http://<name> finds its
// instances in DNS while it runs: the cart service reaches the catalog
// through the SRV records of a zone the test changes, follows a new
// instance, and says clearly when there is none.
func TestPeersFromDNS(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end suite skipped in -short mode")
	}
	const name = "_catalog._tcp.shop.test"
	zone := testenv.DNSZone(t)
	dir := t.TempDir()
	catA := &proc{name: "catalog-a", addr: testenv.FreeAddr(t), env: tokenEnv(),
		args: []string{"--data-dir", dir + "/a", "--services", "catalog", "--nats-listen", testenv.FreeAddr(t)}}
	catA.start(t)
	waitReady(t, catA)
	zone.SetSRV(name, catA.addr)
	carts := &proc{name: "cart", addr: testenv.FreeAddr(t), env: tokenEnv(),
		args: []string{"--data-dir", dir + "/cart", "--services", "cart", "--peer", "catalog=srv+http://" + name, "--dns-server", zone.Addr()}}
	carts.start(t)
	waitReady(t, carts)

	ctx := context.Background()
	cat := catalog.NewClient(httpx.NewClient("catalog", []string{catA.url()}, nil, httpx.WithToken(credential("storefront"))))
	page, err := cat.ListProducts(ctx, catalog.ProductFilter{})
	if err != nil || len(page.Items) == 0 {
		t.Fatalf("products: %v, %v", page.Items, err)
	}
	prod := page.Items[0].ID
	cc := cart.NewClient(httpx.NewClient("cart", []string{carts.url()}, nil, httpx.WithToken(credential("storefront"))))
	// The cart service asks the catalog (through DNS) for the product.
	if _, err := cc.AddItem(ctx, "user:dns", prod, 1); err != nil {
		t.Fatalf("add through the SRV peer: %v", err)
	}

	// The zone names no instance any more: a clear 503, and readiness says so.
	zone.SetSRV(name)
	testenv.CheckFor(t, 5*time.Second, func() error {
		if _, err := cc.AddItem(ctx, "user:dns", prod, 1); !errs.Is(errs.Unavailable, err) {
			return fmt.Errorf("add with no catalog instance = %v, want Unavailable", err)
		}
		resp, err := http.Get(carts.url() + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			return fmt.Errorf("readyz %d with no catalog instance", resp.StatusCode)
		}
		return nil
	})

	// The instance is back under the name: the cart follows, no restart.
	zone.SetSRV(name, catA.addr)
	testenv.CheckFor(t, 5*time.Second, func() error {
		_, err := cc.AddItem(ctx, "user:dns", prod, 1)
		return err
	})
}
