package cartdb_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/cart"
	"github.com/globomantics/globomantics/internal/cart/cartdb"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

// merge is the cart service's Merge rule: quantities of a product in both
// carts add up (capped), other lines of from are appended, from ends empty.
func merge(from, to *cart.Lines) error {
	for _, l := range *from {
		found := false
		for i := range *to {
			if (*to)[i].ProductID == l.ProductID {
				(*to)[i].Quantity = min((*to)[i].Quantity+l.Quantity, cart.MaxQuantity)
				found = true
			}
		}
		if !found {
			*to = append(*to, l)
		}
	}
	*from = nil
	return nil
}

// TestSharded runs the store over one node and over two: carts land on
// their owner's node with its shard ("user:<id>" on the user's shard), a
// merge of an anonymous cart into a user's cart on another node moves the
// lines once, in either lock order, even when retried after stopping
// between its two commits, and with one node closed only its carts fail,
// with errs.Unavailable.
func TestSharded(t *testing.T) {
	ctx := context.Background()
	for _, b := range testenv.ShardedBackends() {
		t.Run(b.Name, func(t *testing.T) {
			sh, nodes := b.Open(t)
			s, err := cartdb.OpenSharded(ctx, sh)
			if err != nil {
				t.Fatal(err)
			}
			m := sh.Map()
			nodeA, nodeB := testenv.FirstAndLast(sh)
			userA := "user:" + testenv.KeyOnNode(t, m, nodeA, "usr_a")
			userB := "user:" + testenv.KeyOnNode(t, m, nodeB, "usr_b")
			anonA := testenv.KeyOnNode(t, m, nodeA, "anon:ta")
			anonB := testenv.KeyOnNode(t, m, nodeB, "anon:tb")

			t.Run("Placement", func(t *testing.T) {
				for _, o := range []string{userA, userB, anonA, anonB} {
					if err := s.Update(ctx, o, set(cart.Lines{line("p", 1, 100, 0)})); err != nil {
						t.Fatal(err)
					}
					want := cartdb.OwnerShard(o)
					for name, db := range nodes {
						var carts, lines int
						if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM carts WHERE owner = ? AND shard = ?`, o, int(want)).Scan(&carts); err != nil {
							t.Fatal(err)
						}
						if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM cart_lines WHERE owner = ? AND shard = ?`, o, int(want)).Scan(&lines); err != nil {
							t.Fatal(err)
						}
						home := m.NodeFor(want) == name
						if home && (carts != 1 || lines != 1) || !home && (carts != 0 || lines != 0) {
							t.Errorf("cart %s on node %s: %d carts, %d lines (home %v)", o, name, carts, lines, home)
						}
					}
					if err := s.Delete(ctx, o); err != nil {
						t.Fatal(err)
					}
				}
			})

			t.Run("MergeAcrossNodes", func(t *testing.T) {
				// Both lock orders: the anonymous cart's node first, and last.
				for _, pair := range [][2]string{{anonB, userA}, {anonA, userB}} {
					from, to := pair[0], pair[1]
					mustSet(t, s, from, cart.Lines{line("a", 2, 100, 0), line("b", 1, 200, time.Millisecond)})
					mustSet(t, s, to, cart.Lines{line("a", 1, 100, 0)})
					if err := s.UpdatePair(ctx, from, to, merge); err != nil {
						t.Fatal(err)
					}
					wantLines(t, s, from, nil)
					wantLines(t, s, to, cart.Lines{line("a", 3, 100, 0), line("b", 1, 200, time.Millisecond)})
					// Merging again changes nothing.
					if err := s.UpdatePair(ctx, from, to, merge); err != nil {
						t.Fatal(err)
					}
					wantLines(t, s, to, cart.Lines{line("a", 3, 100, 0), line("b", 1, 200, time.Millisecond)})
					for _, db := range nodes {
						var n int
						if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM cart_merges`).Scan(&n); err != nil || n != 0 {
							t.Errorf("cart_merges rows left: %d, %v", n, err)
						}
					}

					// A failure writes neither cart.
					mustSet(t, s, from, cart.Lines{line("c", 1, 5, 0)})
					sentinel := errors.New("no")
					if err := s.UpdatePair(ctx, from, to, func(a, b *cart.Lines) error { *a = nil; return sentinel }); err != sentinel {
						t.Errorf("UpdatePair = %v, want the fn's error", err)
					}
					if err := s.UpdatePair(ctx, from, to, func(a, b *cart.Lines) error {
						*a = nil
						*b = cart.Lines{line("d", 1, 1, 0), line("d", 1, 1, 0)}
						return nil
					}); err == nil {
						t.Error("a pair update with a bad cart succeeded")
					}
					if err := s.UpdatePair(ctx, from, to, func(a, b *cart.Lines) error {
						*a = cart.Lines{line("d", 0, 1, 0)}
						return nil
					}); err == nil {
						t.Error("a pair update with a bad first cart succeeded")
					}
					wantLines(t, s, from, cart.Lines{line("c", 1, 5, 0)})
					wantLines(t, s, to, cart.Lines{line("a", 3, 100, 0), line("b", 1, 200, time.Millisecond)})
					mustSet(t, s, from, nil)
					mustSet(t, s, to, nil)
				}
			})

			if nodeA == nodeB {
				return
			}

			t.Run("RetryAfterStopBetweenCommits", func(t *testing.T) {
				// The state a merge of anonB into userA leaves when it stops
				// after writing userA (and its record) but before emptying
				// anonB: a retry must finish it without adding again.
				fromLines := cart.Lines{line("a", 2, 100, 0)}
				mustSet(t, s, anonB, fromLines)
				mustSet(t, s, userA, cart.Lines{line("a", 3, 100, 0)}) // 1 + 2, merged
				after, _ := json.Marshal(cart.Lines(nil))
				home := nodes[m.NodeFor(cartdb.OwnerShard(userA))]
				// The record names anonB's lines and its stamp as they were
				// when the merge locked it (the merge's own write of anonB,
				// which would have changed the stamp, never happened).
				var stamp string
				if err := nodes[m.NodeFor(cartdb.OwnerShard(anonB))].QueryRowContext(ctx, `SELECT stamp FROM carts WHERE owner = ?`, anonB).Scan(&stamp); err != nil {
					t.Fatal(err)
				}
				if _, err := home.ExecContext(ctx, `INSERT INTO cart_merges (to_owner, from_owner, from_digest, from_after, created_at, shard)
					VALUES (?, ?, ?, ?, 0, ?)`, userA, anonB, cartdb.Digest(get(t, s, anonB))+":"+stamp, string(after), int(cartdb.OwnerShard(userA))); err != nil {
					t.Fatal(err)
				}
				if err := s.UpdatePair(ctx, anonB, userA, merge); err != nil {
					t.Fatal(err)
				}
				wantLines(t, s, anonB, nil)
				wantLines(t, s, userA, cart.Lines{line("a", 3, 100, 0)})
				mustSet(t, s, userA, nil)
			})

			t.Run("ConcurrentPairsBothWays", func(t *testing.T) {
				// Pair updates across the nodes in both directions, and
				// single updates, neither deadlock nor lose a unit.
				inc := func(ls *cart.Lines) error {
					if len(*ls) == 0 {
						*ls = cart.Lines{line("p", 1, 100, 0)}
					} else {
						(*ls)[0].Quantity++
					}
					return nil
				}
				move := func(a, b *cart.Lines) error {
					if len(*a) == 0 {
						return nil
					}
					if (*a)[0].Quantity--; (*a)[0].Quantity == 0 {
						*a = nil
					}
					if len(*b) == 0 {
						*b = cart.Lines{line("p", 1, 100, 0)}
					} else {
						(*b)[0].Quantity++
					}
					return nil
				}
				const workers, rounds = 4, 4
				var wg sync.WaitGroup
				errc := make(chan error, 3*workers*rounds)
				for w := 0; w < workers; w++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for r := 0; r < rounds; r++ {
							errc <- s.Update(ctx, userA, inc)
							if w%2 == 0 {
								errc <- s.UpdatePair(ctx, userA, anonB, move)
							} else {
								errc <- s.UpdatePair(ctx, anonB, userA, move)
							}
						}
					}()
				}
				wg.Wait()
				close(errc)
				for err := range errc {
					if err != nil {
						t.Fatal(err)
					}
				}
				total := 0
				for _, o := range []string{userA, anonB} {
					for _, l := range get(t, s, o) {
						total += l.Quantity
					}
				}
				if total != workers*rounds {
					t.Errorf("total quantity = %d, want %d", total, workers*rounds)
				}
			})

			t.Run("NodeDown", func(t *testing.T) {
				mustSet(t, s, userA, cart.Lines{line("p", 1, 100, 0)})
				nodes[nodeB].Close()
				if _, err := s.Get(ctx, userA); err != nil {
					t.Errorf("Get on the live node = %v", err)
				}
				if err := s.Update(ctx, anonA, set(cart.Lines{line("q", 1, 1, 0)})); err != nil {
					t.Errorf("Update on the live node = %v", err)
				}
				if _, err := s.Get(ctx, userB); !errs.Is(errs.Unavailable, err) {
					t.Errorf("Get on the closed node = %v, want Unavailable", err)
				}
				if err := s.Update(ctx, userB, set(nil)); !errs.Is(errs.Unavailable, err) {
					t.Errorf("Update on the closed node = %v, want Unavailable", err)
				}
				if err := s.Delete(ctx, anonB); !errs.Is(errs.Unavailable, err) {
					t.Errorf("Delete on the closed node = %v, want Unavailable", err)
				}
				if err := s.UpdatePair(ctx, anonB, userA, merge); !errs.Is(errs.Unavailable, err) {
					t.Errorf("UpdatePair with the closed node = %v, want Unavailable", err)
				}
				wantLines(t, s, userA, cart.Lines{line("p", 1, 100, 0)})
			})
		})
	}
}

func mustSet(t *testing.T, s *cartdb.Store, owner string, lines cart.Lines) {
	t.Helper()
	if err := s.Update(context.Background(), owner, set(lines)); err != nil {
		t.Fatal(err)
	}
}
