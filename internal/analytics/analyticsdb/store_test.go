package analyticsdb_test

import (
	"context"
	"fmt"
	"os"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/analytics"
	"github.com/globomantics/globomantics/internal/analytics/analyticsdb"
	"github.com/globomantics/globomantics/internal/platform/inbox"
	"github.com/globomantics/globomantics/internal/platform/money"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var t0 = time.Date(2031, 5, 17, 10, 30, 0, 0, time.UTC)

// TestStore is the conformance suite of analyticsdb.Store, run against
// SQLite and PostgreSQL.
func TestStore(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			open := func(t *testing.T) *analyticsdb.Store {
				t.Helper()
				st, err := analyticsdb.Open(context.Background(), b.Open(t))
				if err != nil {
					t.Fatal(err)
				}
				return st
			}
			t.Run("views counted per product and hour", func(t *testing.T) { testViews(t, open(t)) })
			t.Run("a redelivered event counts once", func(t *testing.T) { testRedelivery(t, open(t)) })
			t.Run("searches and searches with no result", func(t *testing.T) { testSearches(t, open(t)) })
			t.Run("concurrent deliveries of one event", func(t *testing.T) { testConcurrent(t, open(t)) })
			t.Run("forget", func(t *testing.T) { testForget(t, open(t)) })
			t.Run("revenue per hour, once per capture", func(t *testing.T) { testRevenue(t, open(t)) })
			t.Run("migrations are idempotent", func(t *testing.T) {
				db := b.Open(t)
				for i := 0; i < 2; i++ {
					if _, err := analyticsdb.Open(context.Background(), db); err != nil {
						t.Fatalf("Open #%d: %v", i+1, err)
					}
				}
			})
		})
	}
}

var seq int

func view(t *testing.T, st *analyticsdb.Store, product string, at time.Time) {
	t.Helper()
	seq++
	fresh, err := st.ApplyPageView(context.Background(), fmt.Sprintf("pv-%d", seq), analytics.PageViewed{ProductID: product, ViewedAt: at}, at)
	if err != nil || !fresh {
		t.Fatalf("ApplyPageView = %v, %v", fresh, err)
	}
}

func search(t *testing.T, st *analyticsdb.Store, q string, results int, at time.Time) {
	t.Helper()
	seq++
	fresh, err := st.ApplySearch(context.Background(), fmt.Sprintf("sm-%d", seq), analytics.SearchMade{Query: q, Results: results, SearchedAt: at}, at)
	if err != nil || !fresh {
		t.Fatalf("ApplySearch = %v, %v", fresh, err)
	}
}

func testViews(t *testing.T, st *analyticsdb.Store) {
	ctx := context.Background()
	for range 3 {
		view(t, st, "prd_a", t0)
	}
	view(t, st, "prd_a", t0.Add(-2*time.Hour)) // an earlier hour
	view(t, st, "prd_b", t0)
	view(t, st, "prd_b", t0.Add(time.Minute))
	view(t, st, "prd_c", t0.Add(-30*time.Hour)) // outside a day
	got, err := st.Popular(ctx, t0.Add(-24*time.Hour), 10)
	if err != nil {
		t.Fatal(err)
	}
	want := []analytics.ProductViews{{ProductID: "prd_a", Views: 4}, {ProductID: "prd_b", Views: 2}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Popular(24h) = %v, want %v", got, want)
	}
	got, _ = st.Popular(ctx, t0.Add(-time.Hour), 10) // this hour and the last
	if want := []analytics.ProductViews{{ProductID: "prd_a", Views: 3}, {ProductID: "prd_b", Views: 2}}; !reflect.DeepEqual(got, want) {
		t.Errorf("Popular(1h) = %v, want %v", got, want)
	}
	got, _ = st.Popular(ctx, t0.Add(-48*time.Hour), 1)
	if want := []analytics.ProductViews{{ProductID: "prd_a", Views: 4}}; !reflect.DeepEqual(got, want) {
		t.Errorf("Popular(limit 1) = %v, want %v", got, want)
	}
}

func testRedelivery(t *testing.T, st *analyticsdb.Store) {
	ctx := context.Background()
	ev := analytics.PageViewed{ProductID: "prd_a", ViewedAt: t0}
	for i, want := range []bool{true, false, false} {
		fresh, err := st.ApplyPageView(ctx, "same-id", ev, t0)
		if err != nil || fresh != want {
			t.Fatalf("delivery %d: %v, %v; want fresh=%v", i+1, fresh, err, want)
		}
	}
	sm := analytics.SearchMade{Query: "lamp", Results: 0, SearchedAt: t0}
	for i, want := range []bool{true, false} {
		fresh, err := st.ApplySearch(ctx, "search-id", sm, t0)
		if err != nil || fresh != want {
			t.Fatalf("search delivery %d: %v, %v; want fresh=%v", i+1, fresh, err, want)
		}
	}
	got, _ := st.Popular(ctx, t0.Add(-time.Hour), 10)
	if want := []analytics.ProductViews{{ProductID: "prd_a", Views: 1}}; !reflect.DeepEqual(got, want) {
		t.Errorf("after three deliveries Popular = %v, want %v", got, want)
	}
	none, _ := st.TopSearches(ctx, t0.Add(-time.Hour), 10, true)
	if want := []analytics.QueryCount{{Query: "lamp", Searches: 1}}; !reflect.DeepEqual(none, want) {
		t.Errorf("after two deliveries no-result searches = %v, want %v", none, want)
	}
}

func testSearches(t *testing.T, st *analyticsdb.Store) {
	ctx := context.Background()
	for range 3 {
		search(t, st, "desk lamp", 4, t0)
	}
	search(t, st, "desk lamp", 0, t0)
	search(t, st, "unicorn", 0, t0)
	search(t, st, "unicorn", 0, t0.Add(-3*time.Hour))
	search(t, st, "bulb", 2, t0)
	top, err := st.TopSearches(ctx, t0.Add(-24*time.Hour), 10, false)
	if err != nil {
		t.Fatal(err)
	}
	if want := []analytics.QueryCount{{Query: "desk lamp", Searches: 4}, {Query: "unicorn", Searches: 2}, {Query: "bulb", Searches: 1}}; !reflect.DeepEqual(top, want) {
		t.Errorf("top = %v, want %v", top, want)
	}
	none, err := st.TopSearches(ctx, t0.Add(-24*time.Hour), 10, true)
	if err != nil {
		t.Fatal(err)
	}
	if want := []analytics.QueryCount{{Query: "unicorn", Searches: 2}, {Query: "desk lamp", Searches: 1}}; !reflect.DeepEqual(none, want) {
		t.Errorf("no result = %v, want %v", none, want)
	}
}

func testConcurrent(t *testing.T, st *analyticsdb.Store) {
	ctx := context.Background()
	var wg sync.WaitGroup
	var mu sync.Mutex
	fresh := 0
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// 8 distinct events, each delivered twice at once.
			f, err := st.ApplyPageView(ctx, fmt.Sprintf("c-%d", i%8), analytics.PageViewed{ProductID: "prd_hot", ViewedAt: t0}, t0)
			if err != nil {
				t.Error(err)
			}
			if f {
				mu.Lock()
				fresh++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	got, _ := st.Popular(ctx, t0.Add(-time.Hour), 10)
	if want := []analytics.ProductViews{{ProductID: "prd_hot", Views: 8}}; fresh != 8 || !reflect.DeepEqual(got, want) {
		t.Errorf("%d fresh, Popular = %v; want 8 and %v", fresh, got, want)
	}
}

func testForget(t *testing.T, st *analyticsdb.Store) {
	ctx := context.Background()
	old := t0.Add(-40 * 24 * time.Hour)
	if _, err := st.ApplyPageView(ctx, "old-id", analytics.PageViewed{ProductID: "prd_old", ViewedAt: old}, old); err != nil {
		t.Fatal(err)
	}
	view(t, st, "prd_new", t0)
	search(t, st, "old query", 0, old)
	if err := st.Forget(ctx, t0.Add(-31*24*time.Hour), t0.Add(-8*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	got, _ := st.Popular(ctx, old.Add(-time.Hour), 10)
	if want := []analytics.ProductViews{{ProductID: "prd_new", Views: 1}}; !reflect.DeepEqual(got, want) {
		t.Errorf("after Forget Popular = %v, want %v", got, want)
	}
	if top, _ := st.TopSearches(ctx, old.Add(-time.Hour), 10, false); len(top) != 0 {
		t.Errorf("after Forget searches = %v", top)
	}
	// The old id's inbox record went too: it would count again.
	if fresh, err := st.ApplyPageView(ctx, "old-id", analytics.PageViewed{ProductID: "prd_old", ViewedAt: t0}, t0); err != nil || !fresh {
		t.Errorf("a forgotten id = %v, %v; want fresh", fresh, err)
	}
}

// TestInboxMigration keeps the store's inbox migration the shared one.
func TestInboxMigration(t *testing.T) {
	b, err := os.ReadFile("migrations/00002_inbox.sql")
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != inbox.Migration {
		t.Errorf("migrations/00002_inbox.sql differs from inbox.Migration:\n%s", b)
	}
}

func testRevenue(t *testing.T, st *analyticsdb.Store) {
	ctx := context.Background()
	hour := t0.Truncate(time.Hour)
	old := t0.Add(-40 * 24 * time.Hour)
	for _, c := range []struct {
		id   string
		at   time.Time
		cash money.Money
		want bool
	}{
		{"ord_1/captured", t0, money.USD(1000), true},
		{"ord_1/captured", t0, money.USD(1000), false}, // redelivered
		{"ord_2/captured", t0.Add(time.Minute), money.USD(250), true},
		{"ord_3/captured", t0.Add(-time.Hour), money.USD(99), true},
		{"ord_4/captured", t0, money.Money{Amount: 700, Currency: "EUR"}, true},
		{"ord_old/captured", old, money.USD(5), true},
	} {
		fresh, err := st.ApplyPaymentCaptured(ctx, c.id, analytics.PaymentCaptured{OrderID: c.id, Amount: c.cash, CapturedAt: c.at}, c.at)
		if err != nil || fresh != c.want {
			t.Fatalf("ApplyPaymentCaptured(%s) = %v, %v; want %v", c.id, fresh, err, c.want)
		}
	}
	// A page view with the id of a capture is another consumer's: it counts.
	if fresh, err := st.ApplyPageView(ctx, "ord_1/captured", analytics.PageViewed{ProductID: "prd_1", ViewedAt: t0}, t0); err != nil || !fresh {
		t.Errorf("page view with a capture's id = %v, %v; want fresh (inboxes are per consumer)", fresh, err)
	}
	got, err := st.Revenue(ctx, hour.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	want := []analytics.HourlyRevenue{
		{Hour: hour, Captured: money.Money{Amount: 700, Currency: "EUR"}, Payments: 1},
		{Hour: hour, Captured: money.USD(1250), Payments: 2},
		{Hour: hour.Add(-time.Hour), Captured: money.USD(99), Payments: 1},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Revenue = %+v, want %+v", got, want)
	}
	if err := st.Forget(ctx, t0.Add(-31*24*time.Hour), t0.Add(-8*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got, err := st.Revenue(ctx, old.Add(-time.Hour)); err != nil || len(got) != len(want) {
		t.Errorf("after Forget Revenue = %+v, %v; want the %d recent hours only", got, err, len(want))
	}
}
