package orderdb_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/order"
	"github.com/globomantics/globomantics/internal/order/orderdb"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/ids"
	"github.com/globomantics/globomantics/internal/platform/shard"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

// TestTombstone is the conformance suite of Store.Tombstone on one node and
// on two: an order id cancelled before it was created is recorded on the
// node of the shard the id carries, refuses a later or concurrent Create,
// and is never shown as an order.
func TestTombstone(t *testing.T) {
	ctx := context.Background()
	for _, b := range testenv.ShardedBackends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			sh, nodes := b.Open(t)
			s, err := orderdb.OpenSharded(ctx, sh)
			if err != nil {
				t.Fatal(err)
			}
			m := sh.Map()
			_, nodeB := testenv.FirstAndLast(sh)
			user := testenv.KeyOnNode(t, m, nodeB, "usr_t")
			n := 0
			newID := func() string {
				n++
				return ids.NewInShard("ord", t0.Add(time.Duration(n)*time.Millisecond), uint16(shard.ForUser(user)))
			}

			t.Run("before create", func(t *testing.T) {
				id := newID()
				for range 2 { // recording again is a no-op
					if err := s.Tombstone(ctx, id, t0); err != nil {
						t.Fatalf("Tombstone: %v", err)
					}
				}
				// On the id's node, with its shard, and nowhere else.
				for name, db := range nodes {
					var rows, got int
					if err := db.QueryRowContext(ctx, `SELECT COUNT(*), COALESCE(MAX(shard), -2) FROM orders WHERE id = ?`, id).Scan(&rows, &got); err != nil {
						t.Fatal(err)
					}
					owner := name == nodeB
					if owner && (rows != 1 || got != int(shard.ForUser(user))) || !owner && rows != 0 {
						t.Errorf("node %s holds %d tombstone rows of shard %d (owner %v)", name, rows, got, owner)
					}
				}
				_, created, err := s.Create(ctx, sample(id, user, t0))
				if !errs.Is(errs.Conflict, err) || created {
					t.Fatalf("Create after Tombstone = created %v, %v; want Conflict", created, err)
				}
				if _, err := s.Get(ctx, id); !errs.Is(errs.NotFound, err) {
					t.Fatalf("Get of a tombstone = %v, want NotFound", err)
				}
				called := false
				if _, err := s.Update(ctx, id, func(*order.Order) (*order.Event, error) { called = true; return nil, nil }); !errs.Is(errs.NotFound, err) || called {
					t.Fatalf("Update of a tombstone = %v (fn called %v), want NotFound", err, called)
				}
				if list, err := s.ListByUser(ctx, user, nil, 10); err != nil || len(list) != 0 {
					t.Fatalf("ListByUser = %d orders, %v; want none", len(list), err)
				}
				if list, err := s.ListByUser(ctx, "", nil, 10); err != nil || len(list) != 0 {
					t.Fatalf("ListByUser(\"\") = %d orders, %v; want none", len(list), err)
				}
				r, err := s.ListRange(ctx, order.RangeQuery{From: t0.Add(-time.Hour), To: t0.Add(time.Hour), Limit: 10})
				if err != nil || len(r.Orders) != 0 || len(r.CountByStatus) != 0 {
					t.Fatalf("ListRange = %+v, %v; want nothing", r, err)
				}
				var items int
				for _, db := range nodes {
					var k int
					if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM order_items WHERE order_id = ?`, id).Scan(&k); err != nil {
						t.Fatal(err)
					}
					items += k
				}
				if items != 0 {
					t.Fatalf("the refused Create wrote %d items", items)
				}
			})

			t.Run("after create", func(t *testing.T) {
				id := newID()
				want := mustCreate(t, s, sample(id, user, t0))
				if err := s.Tombstone(ctx, id, t0); !errs.Is(errs.Conflict, err) {
					t.Fatalf("Tombstone of an existing order = %v, want Conflict", err)
				}
				if got, err := s.Get(ctx, id); err != nil || got.Status != want.Status || len(got.Items) != 2 {
					t.Fatalf("Get = %+v, %v; want the order unchanged", got, err)
				}
			})

			t.Run("races create", func(t *testing.T) {
				const k = 16
				idList := make([]string, k)
				for i := range idList {
					idList[i] = newID()
				}
				var wg sync.WaitGroup
				createErr := make([]error, k)
				created := make([]bool, k)
				tombErr := make([]error, k)
				for i, id := range idList {
					wg.Add(2)
					go func() {
						defer wg.Done()
						_, created[i], createErr[i] = s.Create(ctx, sample(id, user, t0))
					}()
					go func() {
						defer wg.Done()
						tombErr[i] = s.Tombstone(ctx, id, t0)
					}()
				}
				wg.Wait()
				wins := 0
				for i, id := range idList {
					_, getErr := s.Get(ctx, id)
					switch {
					case createErr[i] == nil && created[i] && errs.Is(errs.Conflict, tombErr[i]) && getErr == nil:
						wins++
					case errs.Is(errs.Conflict, createErr[i]) && tombErr[i] == nil && errs.Is(errs.NotFound, getErr):
					default:
						t.Errorf("%s: Create created %v, %v; Tombstone %v; Get %v: not one winner", id, created[i], createErr[i], tombErr[i], getErr)
					}
				}
				t.Logf("%d of %d creates won the race", wins, k)
			})

			t.Run("id without a shard", func(t *testing.T) {
				id := ids.New("ord", t0)
				err := s.Tombstone(ctx, id, t0)
				if sh.Single() {
					if err != nil {
						t.Fatalf("Tombstone on one node = %v", err)
					}
					if _, _, err := s.Create(ctx, sample(id, user, t0)); !errs.Is(errs.Conflict, err) {
						t.Fatalf("Create after Tombstone = %v, want Conflict", err)
					}
					return
				}
				if !errs.Is(errs.Invalid, err) {
					t.Fatalf("Tombstone of an id without a shard on two nodes = %v, want Invalid", err)
				}
				for name, db := range nodes {
					if c := count(t, db, id); c != 0 {
						t.Errorf("node %s holds %d rows of it", name, c)
					}
				}
			})
		})
	}
}

func count(t *testing.T, db *sqldb.DB, id string) int {
	t.Helper()
	var n int
	if err := db.QueryRowContext(context.Background(), `SELECT COUNT(*) FROM orders WHERE id = ?`, id).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
