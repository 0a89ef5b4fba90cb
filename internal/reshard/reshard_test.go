package reshard_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/globomantics/globomantics/internal/order"
	"github.com/globomantics/globomantics/internal/order/orderdb"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/ids"
	"github.com/globomantics/globomantics/internal/platform/money"
	"github.com/globomantics/globomantics/internal/platform/shard"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
	"github.com/globomantics/globomantics/internal/platform/testenv"
	"github.com/globomantics/globomantics/internal/reshard"
	"github.com/globomantics/globomantics/internal/shipping"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// nodes returns two fresh databases of the package's PostgreSQL server (its
// DSNs and handles), the source S and the destination D of a move.
func nodes(t *testing.T) (dsnS, dsnD string, dbS, dbD *sqldb.DB) {
	t.Helper()
	dsnS, dsnD = testenv.PostgresDSN(t), testenv.PostgresDSN(t)
	var err error
	if dbS, err = sqldb.OpenPostgres(context.Background(), dsnS); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dbS.Close() })
	if dbD, err = sqldb.OpenPostgres(context.Background(), dsnD); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dbD.Close() })
	return dsnS, dsnD, dbS, dbD
}

func openSharded(t *testing.T, spec string) *sqldb.Sharded {
	t.Helper()
	sh, err := sqldb.OpenSharded(context.Background(), spec, sqldb.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sh.Close() })
	return sh
}

// TestFollow: a process following the map seeds the nodes with its
// configured map, switches (opening the new node) when a higher version is
// stored, at once when a write is refused by a fence; a process starting
// with an older configured map takes the stored one.
func TestFollow(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dsnS, dsnD, dbS, _ := nodes(t)
	sh := openSharded(t, "0-1023="+dsnS)
	if err := sh.Follow(ctx, 50*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	stored, ok, err := sqldb.ReadStoredMap(ctx, dbS)
	if err != nil || !ok || !stored.Equal(sh.Map()) {
		t.Fatalf("stored map after Follow: ok=%v err=%v, equal=%v; want the configured map", ok, err, stored.Equal(sh.Map()))
	}
	v1, err := sh.Map().Move(0, 99, dsnD)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sqldb.WriteStoredMap(ctx, dbS, v1); err != nil {
		t.Fatal(err)
	}
	testenv.CheckFor(t, 5*time.Second, func() error {
		if m := sh.Map(); m.Version() != 1 || m.NodeFor(0) != dsnD || m.NodeFor(100) != dsnS {
			return fmt.Errorf("map is %s", reshard.Redact(m))
		}
		return nil
	})
	// A lower version never rolls the map back.
	if _, err := sqldb.WriteStoredMap(ctx, dbS, shard.Single(dsnS)); err != nil {
		t.Fatal(err)
	}
	if ok, err := sh.Refresh(ctx); ok || err != nil || sh.Map().Version() != 1 {
		t.Fatalf("Refresh with an older stored map = %v, %v; map v%d", ok, err, sh.Map().Version())
	}

	// A process configured with the old map takes the stored one at start.
	late := openSharded(t, "0-1023="+dsnS)
	if err := late.Follow(ctx, time.Hour); err != nil {
		t.Fatal(err)
	}
	if !late.Map().Equal(v1) {
		t.Fatalf("late starter's map is %s, want %s", reshard.Redact(late.Map()), reshard.Redact(v1))
	}

	// A refused write (GL001) is Unavailable with a hint and makes the
	// followers re-read the map at once, even with an hour between polls.
	v2, _ := v1.Move(100, 199, dsnD)
	if _, err := sqldb.WriteStoredMap(ctx, dbS, v2); err != nil {
		t.Fatal(err)
	}
	err = sqldb.NodeError(&pgconn.PgError{Code: sqldb.ShardMovedCode, Message: "shard moved"})
	if !errs.Is(errs.Unavailable, err) || errs.RetryAfterOf(err) != time.Second || !sqldb.IsShardMoved(err) {
		t.Fatalf("NodeError(GL001) = %v (kind %v, retry %v)", err, errs.KindOf(err), errs.RetryAfterOf(err))
	}
	testenv.CheckFor(t, 2*time.Second, func() error {
		if v := late.Map().Version(); v != 2 {
			return fmt.Errorf("late starter at v%d after a refused write", v)
		}
		return nil
	})
}

// TestMoveUnderLoad moves shards 0-99 of the order service from S to D
// while 8 writers create orders for users of every shard through the store
// over a Sharded following the map.
func TestMoveUnderLoad(t *testing.T) {
	ctx := context.Background()
	dsnS, dsnD, dbS, dbD := nodes(t)
	if _, err := orderdb.Open(ctx, dbD); err != nil { // D holds the schema
		t.Fatal(err)
	}
	sh := openSharded(t, "0-1023="+dsnS)
	store, err := orderdb.OpenSharded(ctx, sh)
	if err != nil {
		t.Fatal(err)
	}
	fctx, stopFollow := context.WithCancel(ctx)
	defer stopFollow()
	if err := sh.Follow(fctx, time.Second); err != nil {
		t.Fatal(err)
	}

	// Users: 60 on the moving shards, 140 elsewhere.
	var users []string
	for i, in, out := 0, 0, 0; in < 60 || out < 140; i++ {
		u := fmt.Sprintf("usr_%d", i)
		if moving := shard.ForUser(u) <= 99; moving && in < 60 {
			users, in = append(users, u), in+1
		} else if !moving && out < 140 {
			users, out = append(users, u), out+1
		}
	}

	type refusal struct {
		at    time.Time
		shard shard.ID
	}
	var (
		mu        sync.Mutex
		acked     = map[string][]string{} // user -> "id:total"
		refusals  []refusal
		failures  []string
		stop      = make(chan struct{})
		wg        sync.WaitGroup
		writes    int
		writesMov int
		slowest   time.Duration // of the writes to shards outside 0-99
	)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 42))
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				u := users[rng.IntN(len(users))]
				s := shard.ForUser(u)
				now := time.Now()
				o := sample(ids.NewInShard("ord", now, uint16(s)), u, now, int64(100+rng.IntN(100000)))
				for {
					began := time.Now()
					_, _, err := store.Create(ctx, o)
					if err == nil {
						mu.Lock()
						if d := time.Since(began); s > 99 && d > slowest {
							slowest = d
						}
						acked[u] = append(acked[u], fmt.Sprintf("%s:%d", o.ID, o.Total.Amount))
						writes++
						if s <= 99 {
							writesMov++
						}
						mu.Unlock()
						break
					}
					mu.Lock()
					if s <= 99 && sqldb.IsShardMoved(err) && errs.Is(errs.Unavailable, err) {
						refusals = append(refusals, refusal{time.Now(), s})
						mu.Unlock()
						time.Sleep(5 * time.Millisecond)
						continue
					}
					failures = append(failures, fmt.Sprintf("shard %d: %v", s, err))
					mu.Unlock()
					break
				}
			}
		}(w)
	}

	time.Sleep(500 * time.Millisecond)
	started := time.Now()
	var logBuf bytes.Buffer
	rep, moveErr := reshard.Move(ctx, reshard.Options{
		Service: "order", Tables: []string{"orders", "order_items"},
		From: dsnS, To: dsnD, Lo: 0, Hi: 99,
	})
	moveTook := time.Since(started)
	// Writers go on a while on the new map, for at least 3 s in all.
	time.Sleep(max(500*time.Millisecond, 2500*time.Millisecond-moveTook))
	close(stop)
	wg.Wait()
	if moveErr != nil {
		t.Fatalf("Move: %v", moveErr)
	}
	rep.Print(&logBuf)
	t.Logf("move took %v; %d writes acknowledged (%d to the moving shards)\n%s", moveTook, writes, writesMov, logBuf.String())

	if len(failures) > 0 {
		t.Errorf("%d writes failed, e.g. %s", len(failures), failures[0])
	}
	// Refusals: only to shards 0-99 (enforced above), only from the fence on
	// and until the writers' map switched (the kick makes that prompt).
	var lastRefusal time.Duration
	for _, r := range refusals {
		if r.at.Before(rep.FencedAt) {
			t.Errorf("write to shard %d refused before the fence", r.shard)
		}
		if d := r.at.Sub(rep.SwitchedAt); d > lastRefusal {
			lastRefusal = d
		}
	}
	if lastRefusal > time.Second {
		t.Errorf("writes refused until %v after the map switched", lastRefusal)
	}
	t.Logf("fence %v (lock wait %v, catch-up %v); %d refused writes to shards 0-99, the last %v after the switch; slowest write elsewhere %v",
		rep.FenceDuration, rep.FenceLock, rep.CatchUp, len(refusals), lastRefusal, slowest)

	// The follower switched.
	if m := sh.Map(); m.Version() != 1 || m.NodeFor(0) != dsnD || m.NodeFor(99) != dsnD || m.NodeFor(100) != dsnS {
		t.Errorf("follower's map: %s", reshard.Redact(m))
	}
	// Verification covered every moved shard that had rows, and matched.
	if len(rep.Verified) == 0 {
		t.Error("nothing verified")
	}
	for s, byTable := range rep.Verified {
		for tb, c := range byTable {
			if !c.OK() || c.DestRows == 0 {
				t.Errorf("verification of shard %d %s: %+v", s, tb, c)
			}
		}
	}

	// Placement: moved shards on D only, the others on S only; two items
	// per order on the order's node.
	count := func(db *sqldb.DB, q string) int {
		var n int
		if err := db.QueryRowContext(ctx, q).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for name, c := range map[string]int{
		"S orders of 0-99":      count(dbS, `SELECT count(*) FROM orders WHERE shard <= 99`),
		"S items of 0-99":       count(dbS, `SELECT count(*) FROM order_items WHERE shard <= 99`),
		"D orders of 100-1023":  count(dbD, `SELECT count(*) FROM orders WHERE shard > 99`),
		"D items of 100-1023":   count(dbD, `SELECT count(*) FROM order_items WHERE shard > 99`),
		"S items without order": count(dbS, `SELECT count(*) FROM order_items i WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.id = i.order_id)`),
		"D items without order": count(dbD, `SELECT count(*) FROM order_items i WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.id = i.order_id)`),
	} {
		if c != 0 {
			t.Errorf("%s: %d rows, want 0", name, c)
		}
	}
	for _, db := range []*sqldb.DB{dbS, dbD} {
		if o, i := count(db, `SELECT count(*) FROM orders`), count(db, `SELECT count(*) FROM order_items`); i != 2*o {
			t.Errorf("a node holds %d orders and %d items, want 2 per order", o, i)
		}
	}

	// Per user: the orders stored (on both nodes together) are exactly the
	// acknowledged ones: same count, same checksum, no id twice.
	stored := map[string][]string{}
	seen := map[string]bool{}
	for _, db := range []*sqldb.DB{dbS, dbD} {
		rows, err := db.QueryContext(ctx, `SELECT id, user_id, total FROM orders`)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var id, u string
			var total int64
			if err := rows.Scan(&id, &u, &total); err != nil {
				t.Fatal(err)
			}
			if seen[id] {
				t.Errorf("order %s stored twice", id)
			}
			seen[id] = true
			stored[u] = append(stored[u], fmt.Sprintf("%s:%d", id, total))
		}
		rows.Close()
	}
	sum := func(xs []string) string {
		xs = slices.Clone(xs)
		slices.Sort(xs)
		h := sha256.Sum256([]byte(strings.Join(xs, ",")))
		return hex.EncodeToString(h[:8])
	}
	mismatched := 0
	for _, u := range users {
		if len(acked[u]) != len(stored[u]) || sum(acked[u]) != sum(stored[u]) {
			mismatched++
			if mismatched <= 3 {
				t.Errorf("user %s (shard %d): %d orders acknowledged (%s), %d stored (%s)",
					u, shard.ForUser(u), len(acked[u]), sum(acked[u]), len(stored[u]), sum(stored[u]))
			}
		}
	}
	if total := len(seen); total != writes {
		t.Errorf("%d orders stored, %d acknowledged", total, writes)
	}

	// Reads through the store reach the moved users on D.
	for _, u := range users[:5] {
		list, err := store.ListByUser(ctx, u, nil, 1000)
		if err != nil || len(list) != len(acked[u]) {
			t.Errorf("ListByUser(%s) = %d orders, %v; want %d", u, len(list), err, len(acked[u]))
		}
	}

	// The fence stays: a writer with the old map cannot write shard 0-99
	// on S.
	_, err = dbS.ExecContext(ctx, `INSERT INTO orders (id, user_id, email, status, currency, subtotal, shipping_cost, total,
		ship_name, ship_line1, ship_city, ship_postal_code, ship_country, payment_id, payment_status, shipment_id,
		shipment_status, tracking_number, cancel_reason, created_at, updated_at, shard)
		VALUES ('x', 'u', 'e', 's', 'USD', 0, 0, 0, '', '', '', '', '', '', '', '', '', '', '', 0, 0, 5)`)
	if !sqldb.IsShardMoved(err) {
		t.Errorf("write to a moved shard on the old node: %v, want SQLSTATE %s", err, sqldb.ShardMovedCode)
	}
}

// TestMainCLI runs the command line on a small move with no writers.
func TestMainCLI(t *testing.T) {
	ctx := context.Background()
	dsnS, dsnD, dbS, dbD := nodes(t)
	if _, err := orderdb.Open(ctx, dbD); err != nil {
		t.Fatal(err)
	}
	s, err := orderdb.Open(ctx, dbS)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		u := fmt.Sprintf("cli_%d", i)
		now := time.Now()
		if _, _, err := s.Create(ctx, sample(ids.NewInShard("ord", now, uint16(shard.ForUser(u))), u, now, 999)); err != nil {
			t.Fatal(err)
		}
	}
	var out, logs bytes.Buffer
	err = reshard.Main(ctx, []string{"shards", "move", "--service", "order", "--shards", "512-1023", "--to", dsnD,
		"--map", "0-1023=" + dsnS}, &out, &logs)
	if err != nil {
		t.Fatalf("Main: %v\n%s", err, logs.String())
	}
	t.Logf("%s", out.String())
	for _, dsn := range []string{dsnS, dsnD} {
		if strings.Contains(out.String(), dsn) || strings.Contains(logs.String(), dsn) {
			t.Error("a DSN was printed")
		}
	}
	if !strings.Contains(out.String(), "map v0 -> v1") {
		t.Errorf("report: %s", out.String())
	}
	m, ok, err := sqldb.ReadStoredMap(ctx, dbD)
	if err != nil || !ok || m.NodeFor(512) != dsnD || m.NodeFor(0) != dsnS {
		t.Errorf("stored map on D: %v %v %s", ok, err, reshard.Redact(m))
	}

	// And back, with the map read from the nodes: S's fence on 512-1023 is
	// lifted, D's set.
	out.Reset()
	if err := reshard.Main(ctx, []string{"move", "--service", "order", "--shards", "512-1023", "--from", dsnD, "--to", dsnS}, &out, &logs); err != nil {
		t.Fatalf("Main back: %v\n%s", err, logs.String())
	}
	if !strings.Contains(out.String(), "map v1 -> v2") {
		t.Errorf("report: %s", out.String())
	}
	var onS, onD int
	if err := dbS.QueryRowContext(ctx, `SELECT count(*) FROM orders`).Scan(&onS); err != nil {
		t.Fatal(err)
	}
	if err := dbD.QueryRowContext(ctx, `SELECT count(*) FROM orders`).Scan(&onD); err != nil {
		t.Fatal(err)
	}
	if onS != 50 || onD != 0 {
		t.Errorf("after moving back: %d orders on S, %d on D; want 50, 0", onS, onD)
	}
	u := testenv.KeyOnNode(t, m, dsnD, "back_") // a user of 512-1023
	now := time.Now()
	o := sample(ids.NewInShard("ord", now, uint16(shard.ForUser(u))), u, now, 1)
	if _, _, err := s.Create(ctx, o); err != nil {
		t.Errorf("write to a shard moved back to S: %v", err)
	}
	sd, err := orderdb.Open(ctx, dbD)
	if err != nil {
		t.Fatal(err)
	}
	o.ID = ids.NewInShard("ord", now.Add(time.Millisecond), uint16(shard.ForUser(u)))
	if _, _, err := sd.Create(ctx, o); !sqldb.IsShardMoved(err) || !errs.Is(errs.Unavailable, err) {
		t.Errorf("write to a shard moved away from D, on D: %v; want refused", err)
	}
}

func sample(id, user string, created time.Time, total int64) order.Order {
	return order.Order{
		ID: id, UserID: user, Email: user + "@example.com", Status: order.StatusPending,
		Items: []order.Item{
			{ProductID: "prd_a", Name: "Widget", Quantity: 2, UnitPrice: money.USD(1250), LineTotal: money.USD(2500)},
			{ProductID: "prd_b", Name: "Gadget ünicode", Quantity: 1, UnitPrice: money.USD(999), LineTotal: money.USD(999)},
		},
		Subtotal: money.USD(3499), ShippingCost: money.USD(500), Total: money.USD(total),
		ShippingAddress: shipping.Address{Name: "Ada", Line1: "1 Main St", City: "Springfield", PostalCode: "12345", Country: "US"},
		CreatedAt:       created, UpdatedAt: created,
	}
}

// TestStoredMapSQLite: the stored map works on SQLite nodes too, and the
// highest version wins.
func TestStoredMapSQLite(t *testing.T) {
	ctx := context.Background()
	db := testenv.SQLite(t)
	if _, ok, err := sqldb.ReadStoredMap(ctx, db); ok || err != nil {
		t.Fatalf("ReadStoredMap on a fresh node = %v, %v; want none", ok, err)
	}
	m0 := shard.Single("a")
	m1, _ := m0.Move(0, 9, "b")
	for _, c := range []struct {
		m    shard.Map
		want uint64
	}{{m1, 1}, {m0, 1}} {
		if v, err := sqldb.WriteStoredMap(ctx, db, c.m); err != nil || v != c.want {
			t.Fatalf("WriteStoredMap(v%d) = v%d, %v; want v%d", c.m.Version(), v, err, c.want)
		}
	}
	if got, ok, err := sqldb.ReadStoredMap(ctx, db); !ok || err != nil || !got.Equal(m1) {
		t.Fatalf("ReadStoredMap = %s, %v, %v; want %s", got, ok, err, m1)
	}
}
