package orderdb_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/order"
	"github.com/globomantics/globomantics/internal/order/orderdb"
	"github.com/globomantics/globomantics/internal/platform/clock"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/httpx"
	"github.com/globomantics/globomantics/internal/platform/ids"
	"github.com/globomantics/globomantics/internal/platform/page"
	"github.com/globomantics/globomantics/internal/platform/shard"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

// TestSharded runs the store over one node and over two nodes splitting the
// shards: rows land on the node of their user's shard with that shard in
// their shard column, look-ups by id (with a shard, or without one: old ids)
// work across nodes, the operators' list gathers every node, and with one
// node closed its users get errs.Unavailable while the other node's users
// and the list's other shards carry on.
func TestSharded(t *testing.T) {
	ctx := context.Background()
	for _, b := range testenv.ShardedBackends() {
		t.Run(b.Name, func(t *testing.T) {
			sh, nodes := b.Open(t)
			s, err := orderdb.OpenSharded(ctx, sh)
			if err != nil {
				t.Fatal(err)
			}
			m := sh.Map()
			nodeA, nodeB := testenv.FirstAndLast(sh)
			ua := testenv.KeyOnNode(t, m, nodeA, "usr_a")
			ub := testenv.KeyOnNode(t, m, nodeB, "usr_b")
			newID := func(user string, at time.Time) string {
				return ids.NewInShard("ord", at, uint16(shard.ForUser(user)))
			}

			// Placement: each order and its items on its user's node, with
			// its shard; nothing on the other node.
			var made []string
			for i, u := range []string{ua, ub, ua, ub} {
				at := t0.Add(time.Duration(i) * time.Minute)
				o := sample(newID(u, at), u, at)
				mustCreate(t, s, o)
				made = append(made, o.ID)
				for name, db := range nodes {
					var n, items int
					var got int
					err := db.QueryRowContext(ctx, `SELECT COUNT(*), COALESCE(MAX(shard), -2) FROM orders WHERE id = ?`, o.ID).Scan(&n, &got)
					if err != nil {
						t.Fatal(err)
					}
					if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM order_items WHERE order_id = ? AND shard = ?`, o.ID, int(shard.ForUser(u))).Scan(&items); err != nil {
						t.Fatal(err)
					}
					owner := m.NodeFor(shard.ForUser(u)) == name
					if owner && (n != 1 || got != int(shard.ForUser(u)) || items != 2) {
						t.Errorf("order of %s on its node %s: %d rows, shard %d, %d items; want 1, %d, 2", u, name, n, got, items, shard.ForUser(u))
					}
					if !owner && n != 0 {
						t.Errorf("order of %s also on node %s", u, name)
					}
				}
			}

			// Look-ups across nodes, and an event in the user's node's outbox.
			for _, u := range []string{ua, ub} {
				list, err := s.ListByUser(ctx, u, nil, 10)
				if err != nil || len(list) != 2 {
					t.Fatalf("ListByUser(%s) = %d orders, %v; want 2", u, len(list), err)
				}
				if _, err := s.Get(ctx, list[0].ID); err != nil {
					t.Errorf("Get(%s) = %v", list[0].ID, err)
				}
				_, err = s.Update(ctx, list[0].ID, func(o *order.Order) (*order.Event, error) {
					o.Status = order.StatusConfirmed
					return &order.Event{Subject: order.SubjectOrderPlaced, ID: o.ID, Data: order.OrderPlaced{Order: *o}}, nil
				})
				if err != nil {
					t.Fatal(err)
				}
				var n int
				home := nodes[m.NodeFor(shard.ForUser(u))]
				if err := home.QueryRowContext(ctx, `SELECT COUNT(*) FROM outbox WHERE seq_id = ?`, list[0].ID).Scan(&n); err != nil || n != 1 {
					t.Errorf("outbox of %s's node has %d rows for its order, %v; want 1", u, n, err)
				}
			}
			// Order numbers: each found through the node of the shard it
			// carries, where its order lives.
			for _, id := range made {
				o, err := s.Get(ctx, id)
				if err != nil {
					t.Fatal(err)
				}
				got, err := s.GetByNumber(ctx, o.Number)
				if err != nil || got.ID != id {
					t.Errorf("GetByNumber(%s) = %s, %v; want %s", o.Number, got.ID, err, id)
				}
				home := nodes[m.NodeFor(shard.ForUser(o.UserID))]
				var n int
				if err := home.QueryRowContext(ctx, `SELECT COUNT(*) FROM orders WHERE number = ?`, o.Number).Scan(&n); err != nil || n != 1 {
					t.Errorf("number %s on its home node: %d rows, %v", o.Number, n, err)
				}
			}

			if outboxes := s.Outboxes(); len(outboxes) != len(nodes) {
				t.Errorf("Outboxes() = %d databases, want %d", len(outboxes), len(nodes))
			}

			// An id carrying another user's shard is refused.
			if nodeA != nodeB {
				bad := sample(newID(ua, t0), ub, t0)
				if _, _, err := s.Create(ctx, bad); !errs.Is(errs.Invalid, err) {
					t.Errorf("Create with an id of another shard = %v, want Invalid", err)
				}
			}

			// An old id, without a shard: found on whichever node has it.
			legacy := sample(ids.New("ord", t0), ub, t0.Add(time.Hour))
			mustCreate(t, s, legacy)
			if got, err := s.Get(ctx, legacy.ID); err != nil || got.UserID != ub {
				t.Errorf("Get(old id) = %+v, %v", got.UserID, err)
			}
			if _, err := s.Update(ctx, legacy.ID, func(o *order.Order) (*order.Event, error) {
				o.CancelReason = "x"
				return nil, nil
			}); err != nil {
				t.Errorf("Update(old id) = %v", err)
			}
			if _, err := s.Get(ctx, ids.New("ord", t0)); !errs.Is(errs.NotFound, err) {
				t.Errorf("Get(unknown old id) = %v, want NotFound", err)
			}
			made = append(made, legacy.ID)

			// Rows written before the shard column get it at the next Open.
			home := nodes[m.NodeFor(shard.ForUser(ub))]
			if _, err := home.ExecContext(ctx, `UPDATE orders SET shard = -1 WHERE user_id = ?`, ub); err != nil {
				t.Fatal(err)
			}
			if _, err := home.ExecContext(ctx, `UPDATE order_items SET shard = -1`); err != nil {
				t.Fatal(err)
			}
			if _, err := orderdb.OpenSharded(ctx, sh); err != nil {
				t.Fatal(err)
			}
			for _, table := range []string{"orders", "order_items"} {
				var n int
				if err := home.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+table+` WHERE shard = -1`).Scan(&n); err != nil || n != 0 {
					t.Errorf("%s rows without a shard after Open: %d, %v", table, n, err)
				}
			}
			var got int
			if err := home.QueryRowContext(ctx, `SELECT shard FROM orders WHERE id = ?`, legacy.ID).Scan(&got); err != nil || got != int(shard.ForUser(ub)) {
				t.Errorf("backfilled shard = %d, %v; want %d", got, err, shard.ForUser(ub))
			}

			// The operators' list, over HTTP, walked page by page.
			svc := order.NewService(s, nil, clock.NewFake(t0))
			srv := httptest.NewServer(order.NewHandler(svc))
			t.Cleanup(srv.Close)
			client := order.NewClient(httpx.NewClient("order", []string{srv.URL}, nil))
			from, to := t0.Add(-time.Minute), t0.Add(2*time.Hour)
			var walked []string
			p := page.Request{Size: 2}
			for {
				pg, err := client.AdminListOrders(ctx, from, to, p)
				if err != nil {
					t.Fatal(err)
				}
				if pg.Total != len(made) || len(pg.MissingShards) != 0 {
					t.Errorf("page: total %d, missing %v; want %d, none", pg.Total, pg.MissingShards, len(made))
				}
				for _, o := range pg.Items {
					walked = append(walked, o.ID)
				}
				if pg.NextPageToken == "" {
					break
				}
				p.Token = pg.NextPageToken
			}
			want := slices.Clone(made)
			slices.Reverse(want) // newest first: the legacy order, then the others in reverse
			if !slices.Equal(walked, want) {
				t.Errorf("walked %v\nwant %v", walked, want)
			}
			if _, err := client.AdminListOrders(ctx, to, from, page.Request{}); !errs.Is(errs.Invalid, err) {
				t.Errorf("reversed range = %v, want Invalid", err)
			}

			if nodeA == nodeB {
				return
			}
			// Node b goes down.
			nodes[nodeB].Close()
			aOrder := made[0]
			if _, err := s.Get(ctx, aOrder); err != nil {
				t.Errorf("Get of a user on the live node = %v", err)
			}
			if _, err := s.ListByUser(ctx, ua, nil, 10); err != nil {
				t.Errorf("ListByUser of a user on the live node = %v", err)
			}
			mustCreate(t, s, sample(newID(ua, t0.Add(3*time.Hour)), ua, t0.Add(3*time.Hour)))
			if _, err := s.Get(ctx, made[1]); !errs.Is(errs.Unavailable, err) {
				t.Errorf("Get of a user on the closed node = %v, want Unavailable", err)
			}
			if _, err := s.ListByUser(ctx, ub, nil, 10); !errs.Is(errs.Unavailable, err) {
				t.Errorf("ListByUser on the closed node = %v, want Unavailable", err)
			}
			if _, _, err := s.Create(ctx, sample(newID(ub, t0), ub, t0)); !errs.Is(errs.Unavailable, err) {
				t.Errorf("Create on the closed node = %v, want Unavailable", err)
			}
			if _, err := s.Update(ctx, made[1], func(o *order.Order) (*order.Event, error) { return nil, nil }); !errs.Is(errs.Unavailable, err) {
				t.Errorf("Update on the closed node = %v, want Unavailable", err)
			}
			// An old id found nowhere, with a node down: not NotFound.
			if _, err := s.Get(ctx, ids.New("ord", t0)); !errs.Is(errs.Unavailable, err) {
				t.Errorf("Get(unknown old id) with a node down = %v, want Unavailable", err)
			}

			// The list answers with node a's orders and names b's shards.
			res, err := http.Get(srv.URL + order.Prefix + "admin/orders?" + url.Values{
				"from": {from.Format(time.RFC3339)}, "to": {to.Add(2 * time.Hour).Format(time.RFC3339)}}.Encode())
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			var body struct {
				Items []struct {
					UserID string `json:"user_id"`
				} `json:"items"`
				Total         int `json:"total"`
				MissingShards []struct {
					Lo, Hi int
					Error  string
				} `json:"missing_shards"`
			}
			if err := json.NewDecoder(res.Body).Decode(&body); err != nil || res.StatusCode != http.StatusOK {
				t.Fatalf("admin list with a node down: %d, %v", res.StatusCode, err)
			}
			if body.Total != 3 || len(body.Items) != 3 {
				t.Errorf("admin list with a node down: total %d, %d items; want node a's 3", body.Total, len(body.Items))
			}
			for _, it := range body.Items {
				if it.UserID != ua {
					t.Errorf("listed an order of %s from the closed node", it.UserID)
				}
			}
			if len(body.MissingShards) != 1 || body.MissingShards[0].Lo != 512 || body.MissingShards[0].Hi != 1023 || body.MissingShards[0].Error == "" {
				t.Errorf("missing_shards = %+v, want [{512 1023 <error>}]", body.MissingShards)
			}
		})
	}
}
