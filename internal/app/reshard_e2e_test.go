package app_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/app"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

// TestShardsMoveUnderTheShop moves logical shards of the order service while
// the shop runs, with `globomantics shards move`: every shard of node 1 to
// node 2 (a node the shop already has), then every shard to node 3 (a node
// the shop learns of from the stored map). After each move the customers'
// order histories are whole, new orders are placed on the node now owning
// their shard, and their e-mails are sent (the new node's outbox is relayed).
func TestShardsMoveUnderTheShop(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test skipped in -short mode")
	}
	n1, n2, n3 := testenv.PostgresDSN(t), testenv.PostgresDSN(t), testenv.PostgresDSN(t)
	dir := t.TempDir()
	env := map[string]string{"GLOBO_SHARDS_ORDER": "0-511=" + n1 + ";512-1023=" + n2}
	p := &proc{name: "shop", addr: testenv.FreeAddr(t), args: []string{"--data-dir", dir}, env: env}
	p.start(t)
	waitReady(t, p)
	tp := &topology{procs: []*proc{p}, storefronts: []*proc{p}, mailDir: filepath.Join(dir, "mail")}

	// Customers, each with an order, spread over both nodes.
	type customer struct {
		c      *client
		orders []string
	}
	var product struct {
		Items []struct {
			ID string `json:"id"`
		} `json:"items"`
	}
	custs := make([]*customer, 6)
	buy := func(cu *customer, key string) {
		t.Helper()
		cu.c.must(200, "POST", "/api/v1/cart/items", map[string]any{"product_id": product.Items[0].ID, "quantity": 1})
		var o order
		cu.c.must(201, "POST", "/api/v1/checkout", checkoutBody("4242424242424242"), "Idempotency-Key", key).decode(t, &o)
		cu.orders = append(cu.orders, o.ID)
	}
	for i := range custs {
		cu := &customer{c: newClient(t, tp)}
		if i == 0 {
			cu.c.must(200, "GET", "/api/v1/products?page_size=1", nil).decode(t, &product)
		}
		email := fmt.Sprintf("mover%d@example.com", i)
		cu.c.must(201, "POST", "/api/v1/accounts", map[string]string{"email": email, "password": "correct horse", "name": "M"})
		cu.c.must(200, "POST", "/api/v1/sessions", map[string]string{"email": email, "password": "correct horse"})
		buy(cu, "first")
		custs[i] = cu
	}
	check := func(step string) {
		t.Helper()
		for i, cu := range custs {
			var list struct {
				Items []order `json:"items"`
			}
			cu.c.must(200, "GET", "/api/v1/orders", nil).decode(t, &list)
			if len(list.Items) != len(cu.orders) {
				t.Fatalf("%s: customer %d sees %d orders, want %d", step, i, len(list.Items), len(cu.orders))
			}
			for _, id := range cu.orders {
				testenv.CheckFor(t, 20*time.Second, func() error {
					if _, err := os.Stat(filepath.Join(tp.mailDir, id+".eml")); err != nil {
						return fmt.Errorf("%s: no e-mail for order %s: %v", step, id, err)
					}
					return nil
				})
			}
		}
	}
	check("before")

	move := func(args ...string) {
		t.Helper()
		var out, errb bytes.Buffer
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := app.Run(ctx, append([]string{"globomantics", "shards", "move", "--service", "order"}, args...), func(string) string { return "" }, &out, &errb); err != nil {
			t.Fatalf("shards move %v: %v\n%s%s", args, err, out.String(), errb.String())
		}
		for _, dsn := range []string{n1, n2, n3} {
			if strings.Contains(out.String()+errb.String(), dsn) {
				t.Error("the report shows a node's DSN")
			}
		}
		t.Logf("shards move %s:\n%s", args[1], out.String())
	}
	// To a node the shop has.
	move("--shards", "0-511", "--from", n1, "--to", n2)
	for i, cu := range custs {
		buy(cu, fmt.Sprintf("after-move-1-%d", i))
	}
	check("after the move to node 2")
	// To a node the shop learns of from the stored map.
	move("--shards", "0-1023", "--from", n2, "--to", n3)
	for i, cu := range custs {
		buy(cu, fmt.Sprintf("after-move-2-%d", i))
	}
	check("after the move to node 3")
}
