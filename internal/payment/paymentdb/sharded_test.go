package paymentdb_test

import (
	"context"
	"testing"

	"github.com/globomantics/globomantics/internal/payment"
	"github.com/globomantics/globomantics/internal/payment/paymentdb"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/ids"
	"github.com/globomantics/globomantics/internal/platform/shard"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

// TestSharded runs the store over one node and over two: a payment lands on
// its order's node with its order's shard, look-ups by payment id (with a
// shard or, for old ids, without) and by order id work across nodes, and
// with one node closed only its payments fail, with errs.Unavailable.
func TestSharded(t *testing.T) {
	ctx := context.Background()
	for _, b := range testenv.ShardedBackends() {
		t.Run(b.Name, func(t *testing.T) {
			sh, nodes := b.Open(t)
			st, err := paymentdb.OpenSharded(ctx, sh)
			if err != nil {
				t.Fatal(err)
			}
			m := sh.Map()
			nodeA, nodeB := testenv.FirstAndLast(sh)
			orderOn := func(node, prefix string) string {
				u := testenv.KeyOnNode(t, m, node, prefix)
				return ids.NewInShard("ord", t0, uint16(shard.ForUser(u)))
			}
			ordA, ordB := orderOn(nodeA, "usr_a"), orderOn(nodeB, "usr_b")
			pays := map[string]payment.Payment{}
			for _, o := range []string{ordA, ordB} {
				p := newPayment(o)
				p.ID = ids.NewInShard("pay", t0, uint16(shard.OfIDOrKey(o)))
				if err := create(ctx, st, p); err != nil {
					t.Fatal(err)
				}
				pays[o] = p
				for name, db := range nodes {
					var n int
					if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM payments WHERE id = ? AND shard = ?`, p.ID, int(shard.OfIDOrKey(o))).Scan(&n); err != nil {
						t.Fatal(err)
					}
					if want := m.NodeFor(shard.OfIDOrKey(o)) == name; (n == 1) != want {
						t.Errorf("payment of %s on node %s: %d rows", o, name, n)
					}
				}
				if got, err := st.Get(ctx, p.ID); err != nil || got != p {
					t.Errorf("Get = %+v, %v", got, err)
				}
				if got, err := st.GetByOrder(ctx, o); err != nil || got != p {
					t.Errorf("GetByOrder = %+v, %v", got, err)
				}
				if _, err := st.Update(ctx, p.ID, capture); err != nil {
					t.Errorf("Update = %v", err)
				}
			}

			// Old ids: a payment id without a shard is found by asking every node.
			old := newPayment("ord_old")
			if err := create(ctx, st, old); err != nil {
				t.Fatal(err)
			}
			if got, err := st.Get(ctx, old.ID); err != nil || got != old {
				t.Errorf("Get(old id) = %+v, %v", got, err)
			}
			if _, err := st.Update(ctx, old.ID, capture); err != nil {
				t.Errorf("Update(old id) = %v", err)
			}
			if _, err := st.Get(ctx, ids.New("pay", t0)); !errs.Is(errs.NotFound, err) {
				t.Errorf("Get(unknown old id) = %v, want NotFound", err)
			}

			// A payment id carrying another shard than its order's is refused.
			if nodeA != nodeB {
				bad := newPayment(ids.NewInShard("ord", t0, uint16(shard.OfIDOrKey(ordA))))
				bad.ID = ids.NewInShard("pay", t0, uint16(shard.OfIDOrKey(ordB)))
				if err := create(ctx, st, bad); !errs.Is(errs.Invalid, err) {
					t.Errorf("Create with a mismatched id = %v, want Invalid", err)
				}
			}

			// Rows from before the shard column get it at the next Open.
			for _, db := range nodes {
				if _, err := db.ExecContext(ctx, `UPDATE payments SET shard = -1`); err != nil {
					t.Fatal(err)
				}
				if _, err := db.ExecContext(ctx, `UPDATE payment_ledger SET shard = -1`); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := paymentdb.OpenSharded(ctx, sh); err != nil {
				t.Fatal(err)
			}
			home := nodes[m.NodeFor(shard.OfIDOrKey(ordB))]
			var got int
			if err := home.QueryRowContext(ctx, `SELECT shard FROM payments WHERE order_id = ?`, ordB).Scan(&got); err != nil || got != int(shard.OfIDOrKey(ordB)) {
				t.Errorf("backfilled shard = %d, %v; want %d", got, err, shard.OfIDOrKey(ordB))
			}
			var left int
			if err := home.QueryRowContext(ctx, `SELECT COUNT(*) FROM payment_ledger WHERE order_id = ? AND shard <> ?`, ordB, int(shard.OfIDOrKey(ordB))).Scan(&left); err != nil || left != 0 {
				t.Errorf("ledger rows of %s without their shard after Open: %d, %v", ordB, left, err)
			}

			if nodeA == nodeB {
				return
			}
			nodes[nodeB].Close()
			if _, err := st.Get(ctx, pays[ordA].ID); err != nil {
				t.Errorf("Get on the live node = %v", err)
			}
			if _, err := st.GetByOrder(ctx, ordA); err != nil {
				t.Errorf("GetByOrder on the live node = %v", err)
			}
			if _, err := st.Get(ctx, pays[ordB].ID); !errs.Is(errs.Unavailable, err) {
				t.Errorf("Get on the closed node = %v, want Unavailable", err)
			}
			if _, err := st.GetByOrder(ctx, ordB); !errs.Is(errs.Unavailable, err) {
				t.Errorf("GetByOrder on the closed node = %v, want Unavailable", err)
			}
			p := newPayment(orderOn(nodeB, "usr_c"))
			if err := create(ctx, st, p); !errs.Is(errs.Unavailable, err) {
				t.Errorf("Create on the closed node = %v, want Unavailable", err)
			}
			if _, err := st.Update(ctx, pays[ordB].ID, func(*payment.Payment) (*payment.Entry, error) { return nil, nil }); !errs.Is(errs.Unavailable, err) {
				t.Errorf("Update on the closed node = %v, want Unavailable", err)
			}
		})
	}
}

// capture is an Update function that captures the payment.
func capture(p *payment.Payment) (*payment.Entry, error) {
	p.Status = payment.StatusCaptured
	e := entry(*p, payment.KindCapture)
	return &e, nil
}
