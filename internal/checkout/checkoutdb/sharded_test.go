package checkoutdb_test

import (
	"context"
	"testing"

	"github.com/globomantics/globomantics/internal/checkout"
	"github.com/globomantics/globomantics/internal/checkout/checkoutdb"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/shard"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

// TestSharded runs the conformance suite over two nodes splitting the
// shards, then checks that attempts land on their user's node with its
// shard, and that with one node closed only its users fail, with
// errs.Unavailable.
func TestSharded(t *testing.T) {
	ctx := context.Background()
	suite := map[string]func(t *testing.T, s *checkoutdb.Store){
		"BeginCreatesOnce":     testBeginOnce,
		"KeysAreScopedToUsers": testScoped,
		"FinishTwice":          testFinishTwice,
		"RestartRetryable":     testRestartRetryable,
	}
	for _, b := range testenv.ShardedBackends() {
		t.Run(b.Name, func(t *testing.T) {
			for name, fn := range suite {
				t.Run(name, func(t *testing.T) {
					sh, _ := b.Open(t)
					s, err := checkoutdb.OpenSharded(ctx, sh)
					if err != nil {
						t.Fatal(err)
					}
					fn(t, s)
				})
			}
			sh, nodes := b.Open(t)
			s, err := checkoutdb.OpenSharded(ctx, sh)
			if err != nil {
				t.Fatal(err)
			}
			m := sh.Map()
			nodeA, nodeB := testenv.FirstAndLast(sh)
			ua := testenv.KeyOnNode(t, m, nodeA, "usr_a")
			ub := testenv.KeyOnNode(t, m, nodeB, "usr_b")
			for _, u := range []string{ua, ub} {
				if _, _, err := s.Begin(ctx, started(u, "k1", "ord_"+u)); err != nil {
					t.Fatal(err)
				}
				for name, db := range nodes {
					var n int
					if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM checkout_attempts WHERE user_id = ? AND shard = ?`, u, int(shard.ForUser(u))).Scan(&n); err != nil {
						t.Fatal(err)
					}
					if want := m.NodeFor(shard.ForUser(u)) == name; (n == 1) != want {
						t.Errorf("attempt of %s on node %s: %d rows", u, name, n)
					}
				}
			}
			// Rows from before the shard column get it at the next Open.
			for _, db := range nodes {
				if _, err := db.ExecContext(ctx, `UPDATE checkout_attempts SET shard = -1`); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := checkoutdb.OpenSharded(ctx, sh); err != nil {
				t.Fatal(err)
			}
			for _, db := range nodes {
				var n int
				if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM checkout_attempts WHERE shard = -1`).Scan(&n); err != nil || n != 0 {
					t.Errorf("attempts without a shard after Open: %d, %v", n, err)
				}
			}
			if nodeA == nodeB {
				return
			}
			nodes[nodeB].Close()
			if _, err := s.Get(ctx, ua, "k1"); err != nil {
				t.Errorf("Get on the live node = %v", err)
			}
			if err := s.Finish(ctx, ua, "k1", checkout.Outcome{}, t0); err != nil {
				t.Errorf("Finish on the live node = %v", err)
			}
			if _, err := s.Get(ctx, ub, "k1"); !errs.Is(errs.Unavailable, err) {
				t.Errorf("Get on the closed node = %v, want Unavailable", err)
			}
			if _, _, err := s.Begin(ctx, started(ub, "k2", "ord_x")); !errs.Is(errs.Unavailable, err) {
				t.Errorf("Begin on the closed node = %v, want Unavailable", err)
			}
			if err := s.Finish(ctx, ub, "k1", checkout.Outcome{}, t0); !errs.Is(errs.Unavailable, err) {
				t.Errorf("Finish on the closed node = %v, want Unavailable", err)
			}
			if _, err := s.Restart(ctx, ub, "k1", "ord_y", t0); !errs.Is(errs.Unavailable, err) {
				t.Errorf("Restart on the closed node = %v, want Unavailable", err)
			}
		})
	}
}
