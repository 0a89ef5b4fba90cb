package cartdb_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/cart"
	"github.com/globomantics/globomantics/internal/cart/cartdb"
	"github.com/globomantics/globomantics/internal/platform/clock"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

// lockEnv is the cart service over the store on one sharded backend, with a
// fake clock, and owners placed on the first and last node.
type lockEnv struct {
	s      *cartdb.Store
	svc    *cart.Service
	clk    *clock.Fake
	sh     *sqldb.Sharded
	nodes  map[string]*sqldb.DB
	owners []string // a user and a visitor on each end node
}

func newLockEnv(t *testing.T, b testenv.ShardedBackend) *lockEnv {
	t.Helper()
	sh, nodes := b.Open(t)
	clk := clock.NewFake(t0)
	s, err := cartdb.OpenSharded(context.Background(), sh, cartdb.WithClock(clk))
	if err != nil {
		t.Fatal(err)
	}
	m := sh.Map()
	nodeA, nodeB := testenv.FirstAndLast(sh)
	return &lockEnv{s: s, svc: cart.NewService(s, nil, clk), clk: clk, sh: sh, nodes: nodes, owners: []string{
		"user:" + testenv.KeyOnNode(t, m, nodeA, "usr_a"),
		"user:" + testenv.KeyOnNode(t, m, nodeB, "usr_b"),
		testenv.KeyOnNode(t, m, nodeA, "anon:ta"),
		testenv.KeyOnNode(t, m, nodeB, "anon:tb"),
	}}
}

// render is a cart as "id×qty ...", or "empty".
func render(c cart.Cart) string {
	var parts []string
	for _, it := range c.Items {
		parts = append(parts, fmt.Sprintf("%s×%d", it.ProductID, it.Quantity))
	}
	if len(parts) == 0 {
		return "empty"
	}
	return strings.Join(parts, " ")
}

func renderLines(ls cart.Lines) string { return render(ls.Cart()) }

func wantConflict(t *testing.T, what string, err error, detail string) {
	t.Helper()
	if !errs.Is(errs.Conflict, err) || !strings.Contains(errs.Detail(err), detail) {
		t.Errorf("%s: %v (kind %v, detail %q), want Conflict saying %q", what, err, errs.KindOf(err), errs.Detail(err), detail)
	}
}

func (e *lockEnv) lock(t *testing.T, owner, id, want string) cart.Cart {
	t.Helper()
	c, err := e.svc.Lock(context.Background(), owner, id)
	if err != nil {
		t.Fatalf("Lock(%q, %q): %v", owner, id, err)
	}
	if got := render(c); got != want {
		t.Errorf("Lock(%q, %q) snapshot = %s, want %s", owner, id, got, want)
	}
	return c
}

func (e *lockEnv) complete(t *testing.T, owner, id, want string) {
	t.Helper()
	c, err := e.svc.CompleteCheckout(context.Background(), owner, id)
	if err != nil {
		t.Fatalf("CompleteCheckout(%q, %q): %v", owner, id, err)
	}
	if got := render(c); got != want {
		t.Errorf("CompleteCheckout(%q, %q) = %s, want %s", owner, id, got, want)
	}
	if got := renderLines(get(t, e.s, owner)); got != want {
		t.Errorf("cart %q after CompleteCheckout = %s, want %s", owner, got, want)
	}
}

func (e *lockEnv) unlock(t *testing.T, owner, id string) {
	t.Helper()
	if err := e.svc.Unlock(context.Background(), owner, id); err != nil {
		t.Fatalf("Unlock(%q, %q): %v", owner, id, err)
	}
}

// TestLocks runs the checkout lock's rules (cart.Service over the store) on
// every sharded backend, for owners on either node.
func TestLocks(t *testing.T) {
	for _, b := range testenv.ShardedBackends() {
		t.Run(b.Name, func(t *testing.T) {
			e := newLockEnv(t, b)
			for _, owner := range e.owners {
				t.Run(owner, func(t *testing.T) {
					t.Run("Lifecycle", func(t *testing.T) { testLockLifecycle(t, e, owner) })
					t.Run("EmptyAndUnknown", func(t *testing.T) { testLockEmptyAndUnknown(t, e, owner) })
					t.Run("ChangesWhileLocked", func(t *testing.T) { testLockChanges(t, e, owner) })
					t.Run("Stale", func(t *testing.T) { testLockStale(t, e, owner) })
					t.Run("Concurrent", func(t *testing.T) { testLockConcurrent(t, e, owner) })
				})
			}
			t.Run("Placement", func(t *testing.T) { testLockPlacement(t, e) })
		})
	}
}

func testLockLifecycle(t *testing.T, e *lockEnv, owner string) {
	ctx := context.Background()
	mustSet(t, e.s, owner, cart.Lines{line("a", 2, 100, 0), line("b", 1, 200, time.Millisecond)})
	snap := e.lock(t, owner, "L1", "a×2 b×1")
	if snap.Version <= 0 || snap.Total.Amount != 400 {
		t.Errorf("snapshot = %+v, want a positive version and a total of 400", snap)
	}
	// Lines may still change; the snapshot does not.
	mustSet(t, e.s, owner, cart.Lines{line("a", 5, 100, 0), line("b", 1, 200, time.Millisecond), line("c", 1, 5, 2*time.Millisecond)})
	again := e.lock(t, owner, "L1", "a×2 b×1")
	if again.Version != snap.Version {
		t.Errorf("repeated Lock version = %d, want %d", again.Version, snap.Version)
	}
	_, err := e.svc.Lock(ctx, owner, "L2")
	wantConflict(t, "Lock by another checkout", err, "already being checked out")

	// Complete takes exactly the snapshot out, once.
	e.complete(t, owner, "L1", "a×3 c×1")
	e.complete(t, owner, "L1", "a×3 c×1")
	e.unlock(t, owner, "L1") // after Complete: changes nothing
	e.complete(t, owner, "L1", "a×3 c×1")
	_, err = e.svc.Lock(ctx, owner, "L1")
	wantConflict(t, "Lock after Complete", err, "has ended")

	// The cart is free again.
	e.lock(t, owner, "L2", "a×3 c×1")
	e.unlock(t, owner, "L2")
	e.unlock(t, owner, "L2")
	_, err = e.svc.Lock(ctx, owner, "L2")
	wantConflict(t, "late Lock after Unlock", err, "has ended")
	_, err = e.svc.CompleteCheckout(ctx, owner, "L2")
	wantConflict(t, "Complete after Unlock", err, "has ended")
	if got := renderLines(get(t, e.s, owner)); got != "a×3 c×1" {
		t.Errorf("cart after Unlock = %s, want it untouched", got)
	}
	// Clear leaves the lock in place.
	e.lock(t, owner, "L3", "a×3 c×1")
	if err := e.svc.Clear(ctx, owner); err != nil {
		t.Fatal(err)
	}
	_, err = e.svc.Lock(ctx, owner, "L4")
	wantConflict(t, "Lock of a cleared locked cart", err, "already being checked out")
	e.complete(t, owner, "L3", "empty")
}

func testLockEmptyAndUnknown(t *testing.T, e *lockEnv, owner string) {
	ctx := context.Background()
	mustSet(t, e.s, owner, nil)
	if c := e.lock(t, owner, "E1", "empty"); c.Items == nil || c.Total.Amount != 0 {
		t.Errorf("empty snapshot = %+v, want no items (non-nil), zero total", c)
	}
	mustSet(t, e.s, owner, cart.Lines{line("a", 1, 100, 0)})
	e.lock(t, owner, "E1", "empty")
	e.complete(t, owner, "E1", "a×1")

	// A compensation that arrives before its Lock wins: the Lock is refused.
	e.unlock(t, owner, "E2")
	_, err := e.svc.Lock(ctx, owner, "E2")
	wantConflict(t, "Lock after an early Unlock", err, "has ended")
	_, err = e.svc.CompleteCheckout(ctx, owner, "E2")
	wantConflict(t, "Complete after an early Unlock", err, "has ended")
	_, err = e.svc.CompleteCheckout(ctx, owner, "E3")
	wantConflict(t, "Complete of a lock id that never locked", err, "not locked")
	// Neither holds the cart.
	e.lock(t, owner, "E4", "a×1")
	e.unlock(t, owner, "E4")
	if got := renderLines(get(t, e.s, owner)); got != "a×1" {
		t.Errorf("cart = %s, want a×1", got)
	}
	mustSet(t, e.s, owner, nil)
}

func testLockChanges(t *testing.T, e *lockEnv, owner string) {
	mustSet(t, e.s, owner, cart.Lines{line("a", 3, 100, 0), line("b", 2, 200, time.Millisecond), line("c", 1, 5, 2*time.Millisecond)})
	e.lock(t, owner, "C1", "a×3 b×2 c×1")
	// a lowered below the snapshot, b raised, c removed, d added.
	mustSet(t, e.s, owner, cart.Lines{line("a", 1, 100, 0), line("b", 7, 200, time.Millisecond), line("d", 4, 9, 3*time.Millisecond)})
	e.complete(t, owner, "C1", "b×5 d×4")
	mustSet(t, e.s, owner, nil)
}

func testLockStale(t *testing.T, e *lockEnv, owner string) {
	ctx := context.Background()
	mustSet(t, e.s, owner, cart.Lines{line("a", 1, 100, 0)})
	e.lock(t, owner, "S1", "a×1")
	mustSet(t, e.s, owner, cart.Lines{line("a", 2, 100, 0)})
	e.clk.Advance(cart.StaleLockAge - time.Minute)
	_, err := e.svc.Lock(ctx, owner, "S2")
	wantConflict(t, "Lock before the lock is stale", err, "already being checked out")
	e.clk.Advance(time.Minute)
	e.lock(t, owner, "S2", "a×2") // takes over
	e.lock(t, owner, "S2", "a×2")
	_, err = e.svc.Lock(ctx, owner, "S1")
	wantConflict(t, "Lock of the checkout taken over", err, "has ended")
	_, err = e.svc.CompleteCheckout(ctx, owner, "S1")
	wantConflict(t, "Complete of the checkout taken over", err, "has ended")
	e.unlock(t, owner, "S1") // no-op: S2 still holds the cart
	_, err = e.svc.Lock(ctx, owner, "S3")
	wantConflict(t, "Lock while the new checkout holds", err, "already being checked out")
	e.complete(t, owner, "S2", "empty")
}

func testLockConcurrent(t *testing.T, e *lockEnv, owner string) {
	ctx := context.Background()
	mustSet(t, e.s, owner, cart.Lines{line("a", 1, 100, 0)})
	const n = 20
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		winner []string
	)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("K%d", i)
			_, err := e.svc.Lock(ctx, owner, id)
			switch {
			case err == nil:
				mu.Lock()
				winner = append(winner, id)
				mu.Unlock()
			case !errs.Is(errs.Conflict, err):
				t.Errorf("Lock %s: %v, want nil or Conflict", id, err)
			}
		}()
	}
	wg.Wait()
	if len(winner) != 1 {
		t.Fatalf("%d checkouts locked the cart (%v), want exactly 1", len(winner), winner)
	}
	e.lock(t, owner, winner[0], "a×1")
	e.complete(t, owner, winner[0], "empty")
}

// testLockPlacement checks the lock rows live on their cart's node, with its
// shard.
func testLockPlacement(t *testing.T, e *lockEnv) {
	ctx := context.Background()
	m := e.sh.Map()
	for _, o := range e.owners {
		want := cartdb.OwnerShard(o)
		for name, db := range e.nodes {
			var n int
			if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM cart_locks WHERE owner = ? AND shard = ?`, o, int(want)).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if home := m.NodeFor(want) == name; home != (n > 0) {
				t.Errorf("locks of %s on node %s: %d (home %v)", o, name, n, home)
			}
		}
	}
}

// TestDeleteAbandoned checks the sweep deletes only visitors' carts not
// updated for the period, and lock records past their retention, on every
// node.
func TestDeleteAbandoned(t *testing.T) {
	ctx := context.Background()
	const month = 30 * 24 * time.Hour
	for _, b := range testenv.ShardedBackends() {
		t.Run(b.Name, func(t *testing.T) {
			e := newLockEnv(t, b)
			userA, userB, anonA, anonB := e.owners[0], e.owners[1], e.owners[2], e.owners[3]
			m := e.sh.Map()
			freshA := testenv.KeyOnNode(t, m, m.NodeFor(cartdb.OwnerShard(anonA)), "anon:fresh")
			// Many old visitors' carts, to cross a batch.
			var many []string
			for i := 0; i < 230; i++ {
				many = append(many, fmt.Sprintf("anon:many%d", i))
			}
			for _, o := range append([]string{userA, userB, anonA, anonB}, many...) {
				mustSet(t, e.s, o, cart.Lines{line("a", 1, 100, 0)})
			}
			// A cart from before update times were kept.
			old := testenv.KeyOnNode(t, m, m.NodeFor(cartdb.OwnerShard(anonB)), "anon:old")
			mustSet(t, e.s, old, cart.Lines{line("a", 1, 100, 0)})
			if _, err := e.nodes[m.NodeFor(cartdb.OwnerShard(old))].ExecContext(ctx, `UPDATE carts SET updated_at = 0 WHERE owner = ?`, old); err != nil {
				t.Fatal(err)
			}
			// A lock held for good (past LockRetention by the first sweep).
			e.lock(t, anonB, "R2", "a×1")

			e.clk.Advance(month - time.Hour)
			mustSet(t, e.s, freshA, cart.Lines{line("a", 1, 100, 0)})
			// A lock that ended recently.
			e.lock(t, userA, "R1", "a×1")
			e.unlock(t, userA, "R1")
			e.clk.Advance(time.Hour + time.Minute)
			n, err := e.svc.DeleteAbandoned(ctx, month)
			if err != nil {
				t.Fatal(err)
			}
			// anonB was updated by its Lock; it is as old as the others.
			if want := 2 + len(many); n != want {
				t.Errorf("DeleteAbandoned deleted %d carts, want %d", n, want)
			}
			for _, o := range []string{anonA, anonB, many[0], many[len(many)-1]} {
				wantLines(t, e.s, o, nil)
			}
			for _, o := range []string{userA, userB, freshA, old} {
				if ls := get(t, e.s, o); len(ls) != 1 {
					t.Errorf("cart %s = %+v, want it kept", o, ls)
				}
			}
			// Nothing left of the deleted carts; the held lock past
			// LockRetention is gone, and the recently ended one kept, so it
			// is still refused.
			for _, db := range e.nodes {
				var lines int
				if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM cart_lines WHERE owner LIKE 'anon:many%'`).Scan(&lines); err != nil || lines != 0 {
					t.Errorf("lines of deleted carts left: %d, %v", lines, err)
				}
			}
			_, err = e.svc.Lock(ctx, userA, "R1")
			wantConflict(t, "Lock of an ended checkout within retention", err, "has ended")
			e.lock(t, anonB, "R3", "empty") // R2's record is gone
			e.unlock(t, anonB, "R3")

			// The cart without an update time got the first sweep's time: it
			// goes a period later, with freshA. Past LockRetention the lock
			// records go too.
			e.clk.Advance(month + time.Minute)
			if n, err = e.svc.DeleteAbandoned(ctx, month); err != nil || n != 2 {
				t.Errorf("second DeleteAbandoned = %d, %v; want 2 (freshA and the cart without a time)", n, err)
			}
			wantLines(t, e.s, old, nil)
			wantLines(t, e.s, freshA, nil)
			for _, o := range []string{userA, userB} {
				if ls := get(t, e.s, o); len(ls) != 1 {
					t.Errorf("cart %s = %+v, want it kept", o, ls)
				}
			}
			for name, db := range e.nodes {
				var locks int
				if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM cart_locks`).Scan(&locks); err != nil || locks != 0 {
					t.Errorf("node %s: %d lock records left, %v", name, locks, err)
				}
			}
			if n, err = e.svc.DeleteAbandoned(ctx, month); err != nil || n != 0 {
				t.Errorf("repeated DeleteAbandoned = %d, %v; want 0", n, err)
			}
		})
	}
}
