package analytics_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/analytics"
	"github.com/globomantics/globomantics/internal/analytics/analyticsdb"
	"github.com/globomantics/globomantics/internal/platform/bus"
	"github.com/globomantics/globomantics/internal/platform/clock"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/httpx"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var now0 = time.Date(2031, 5, 17, 10, 30, 0, 0, time.UTC)

func newService(t *testing.T, b testenv.Backend) (*analytics.Service, *clock.Fake) {
	t.Helper()
	st, err := analyticsdb.Open(context.Background(), b.Open(t))
	if err != nil {
		t.Fatal(err)
	}
	clk := clock.NewFake(now0)
	return analytics.NewService(st, clk, testenv.Logger(t)), clk
}

func event(t *testing.T, subject, id string, data any) bus.Event {
	t.Helper()
	raw, err := json.Marshal(data)
	if err != nil {
		t.Fatal(err)
	}
	return bus.Event{ID: id, Type: subject, Time: now0, Data: raw}
}

// TestConsumerIdempotent applies the same event (the same message id) twice,
// as a redelivery would, on SQLite and PostgreSQL: it counts once.
func TestConsumerIdempotent(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			svc, _ := newService(t, b)
			pv := event(t, analytics.SubjectPageViewed, "pv_1", analytics.PageViewed{ProductID: "prd_1", ViewedAt: now0})
			sm := event(t, analytics.SubjectSearchMade, "sm_1", analytics.SearchMade{Query: "Lamp", Results: 0, SearchedAt: now0})
			for i, want := range []bool{true, false} {
				if fresh, err := svc.Apply(ctx, pv); err != nil || fresh != want {
					t.Fatalf("page view delivery %d: fresh %v, %v; want %v", i+1, fresh, err, want)
				}
				if err := svc.Handle(ctx, sm); err != nil {
					t.Fatalf("search delivery %d: %v", i+1, err)
				}
			}
			// A second view with another id does count.
			if err := svc.Handle(ctx, event(t, analytics.SubjectPageViewed, "pv_2", analytics.PageViewed{ProductID: "prd_1", ViewedAt: now0})); err != nil {
				t.Fatal(err)
			}
			pop, err := svc.Popular(ctx, time.Hour, 8)
			if err != nil {
				t.Fatal(err)
			}
			if want := []analytics.ProductViews{{ProductID: "prd_1", Views: 2}}; !reflect.DeepEqual(pop, want) {
				t.Errorf("Popular = %v, want %v (pv_1 delivered twice, pv_2 once)", pop, want)
			}
			rep, err := svc.Searches(ctx, time.Hour, 8)
			if err != nil {
				t.Fatal(err)
			}
			want := []analytics.QueryCount{{Query: "lamp", Searches: 1}}
			if !reflect.DeepEqual(rep.Top, want) || !reflect.DeepEqual(rep.NoResult, want) {
				t.Errorf("Searches = %+v, want top and no-result %v (normalised, counted once)", rep, want)
			}
		})
	}
}

// TestConsumerSummaries applies storefront summaries on SQLite and
// PostgreSQL: a redelivered summary (the same instance and window) counts
// once, summaries of two instances for one window both count, and a page
// view from an older storefront (the per-event subject, during a rolling
// upgrade) adds to the same counts.
func TestConsumerSummaries(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			svc, _ := newService(t, b)
			start := now0.Add(-time.Second)
			pvs := func(instance string) analytics.PageViewsCounted {
				return analytics.PageViewsCounted{Instance: instance, WindowStart: start, WindowEnd: now0,
					Counts: []analytics.ProductViews{{ProductID: "prd_a", Views: 5}, {ProductID: "prd_b", Views: 2}}}
			}
			sqs := analytics.SearchesCounted{Instance: "sf1", WindowStart: start, WindowEnd: now0,
				Counts: []analytics.SearchCount{{Query: "desk lamp", Searches: 4, NoResult: 0}, {Query: "Unicorn", Searches: 2, NoResult: 2}, {Query: "unicorn", Searches: 1, NoResult: 1}}}
			id1 := analytics.SummaryID("pv", "sf1", start, 0)
			for i, want := range []bool{true, false} {
				if fresh, err := svc.Apply(ctx, event(t, analytics.SubjectPageViewsCounted, id1, pvs("sf1"))); err != nil || fresh != want {
					t.Fatalf("summary delivery %d: fresh %v, %v; want %v", i+1, fresh, err, want)
				}
				if err := svc.Handle(ctx, event(t, analytics.SubjectSearchesCounted, analytics.SummaryID("sq", "sf1", start, 0), sqs)); err != nil {
					t.Fatalf("searches delivery %d: %v", i+1, err)
				}
			}
			if err := svc.Handle(ctx, event(t, analytics.SubjectPageViewsCounted, analytics.SummaryID("pv", "sf2", start, 0), pvs("sf2"))); err != nil {
				t.Fatal(err)
			}
			if err := svc.Handle(ctx, event(t, analytics.SubjectPageViewed, "pv_old", analytics.PageViewed{ProductID: "prd_b", ViewedAt: now0})); err != nil {
				t.Fatal(err)
			}
			pop, err := svc.Popular(ctx, time.Hour, 8)
			if err != nil {
				t.Fatal(err)
			}
			if want := []analytics.ProductViews{{ProductID: "prd_a", Views: 10}, {ProductID: "prd_b", Views: 5}}; !reflect.DeepEqual(pop, want) {
				t.Errorf("Popular = %v, want %v", pop, want)
			}
			rep, err := svc.Searches(ctx, time.Hour, 8)
			if err != nil {
				t.Fatal(err)
			}
			if want := []analytics.QueryCount{{Query: "desk lamp", Searches: 4}, {Query: "unicorn", Searches: 3}}; !reflect.DeepEqual(rep.Top, want) {
				t.Errorf("top = %v, want %v", rep.Top, want)
			}
			if want := []analytics.QueryCount{{Query: "unicorn", Searches: 3}}; !reflect.DeepEqual(rep.NoResult, want) {
				t.Errorf("no result = %v, want %v", rep.NoResult, want)
			}
		})
	}
}

// TestConsumerRefusesBadEvents checks that an event that cannot be counted
// is a permanent failure (a dead letter at once), never a retry loop.
func TestConsumerRefusesBadEvents(t *testing.T) {
	svc, _ := newService(t, testenv.Backends()[0])
	ctx := context.Background()
	for name, ev := range map[string]bus.Event{
		"other subject":   event(t, "globo.order.placed", "x1", map[string]string{}),
		"not an object":   {ID: "x2", Type: analytics.SubjectPageViewed, Data: json.RawMessage(`[]`)},
		"no product":      event(t, analytics.SubjectPageViewed, "x3", analytics.PageViewed{ViewedAt: now0}),
		"no time":         event(t, analytics.SubjectSearchMade, "x4", analytics.SearchMade{Query: "q"}),
		"negative result": event(t, analytics.SubjectSearchMade, "x5", analytics.SearchMade{Query: "q", Results: -1, SearchedAt: now0}),
		"summary without instance": event(t, analytics.SubjectPageViewsCounted, "x6", analytics.PageViewsCounted{WindowStart: now0, WindowEnd: now0,
			Counts: []analytics.ProductViews{{ProductID: "prd_1", Views: 1}}}),
		"summary window backwards": event(t, analytics.SubjectPageViewsCounted, "x7", analytics.PageViewsCounted{Instance: "sf1", WindowStart: now0, WindowEnd: now0.Add(-time.Second)}),
		"summary zero views": event(t, analytics.SubjectPageViewsCounted, "x8", analytics.PageViewsCounted{Instance: "sf1", WindowStart: now0, WindowEnd: now0,
			Counts: []analytics.ProductViews{{ProductID: "prd_1", Views: 0}}}),
		"summary more no-result than searches": event(t, analytics.SubjectSearchesCounted, "x9", analytics.SearchesCounted{Instance: "sf1", WindowStart: now0, WindowEnd: now0,
			Counts: []analytics.SearchCount{{Query: "q", Searches: 1, NoResult: 2}}}),
		"summary not an object": {ID: "x10", Type: analytics.SubjectSearchesCounted, Data: json.RawMessage(`"x"`)},
	} {
		if err := svc.Handle(ctx, ev); !bus.IsPermanent(err) {
			t.Errorf("%s: Handle = %v, want a permanent error", name, err)
		}
	}
}

// TestWindows checks that the window counts whole hours back from now and
// that old hours drop out as the clock moves.
func TestWindows(t *testing.T) {
	ctx := context.Background()
	svc, clk := newService(t, testenv.Backends()[0])
	for i, at := range []time.Time{now0, now0.Add(-90 * time.Minute), now0.Add(-23 * time.Hour)} {
		ev := event(t, analytics.SubjectPageViewed, "w"+string(rune('a'+i)), analytics.PageViewed{ProductID: "prd_" + string(rune('a'+i)), ViewedAt: at})
		if err := svc.Handle(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	count := func(window time.Duration) int {
		pv, err := svc.Popular(ctx, window, 10)
		if err != nil {
			t.Fatal(err)
		}
		return len(pv)
	}
	// now0 is 10:30: a 30-minute window starts at 10:00 (this hour only),
	// a 1-hour one at 09:00 (rounded out to the whole hour), which holds
	// the view of 09:00.
	if got := count(30 * time.Minute); got != 1 {
		t.Errorf("30m window: %d products, want 1", got)
	}
	if got := count(time.Hour); got != 2 {
		t.Errorf("1h window: %d products, want 2", got)
	}
	if got := count(2 * time.Hour); got != 2 {
		t.Errorf("2h window: %d products, want 2", got)
	}
	if got := count(24 * time.Hour); got != 3 {
		t.Errorf("24h window: %d products, want 3", got)
	}
	clk.Advance(2 * time.Hour)
	if got := count(24 * time.Hour); got != 2 {
		t.Errorf("24h window two hours later: %d products, want 2", got)
	}
}

// TestAPI runs the same checks on the service in process and through its
// HTTP client and handler.
func TestAPI(t *testing.T) {
	for _, mode := range []string{"in-process", "http"} {
		t.Run(mode, func(t *testing.T) {
			ctx := context.Background()
			svc, _ := newService(t, testenv.Backends()[0])
			var api analytics.API = svc
			ids := func(window time.Duration, limit int) ([]string, error) {
				return svc.PopularProductIDs(ctx, window, limit)
			}
			if mode == "http" {
				srv := httptest.NewServer(analytics.NewHandler(svc))
				t.Cleanup(srv.Close)
				c := analytics.NewClient(httpx.NewClient("analytics", []string{srv.URL}, nil))
				api = c
				ids = func(window time.Duration, limit int) ([]string, error) {
					return c.PopularProductIDs(ctx, window, limit)
				}
			}
			for i, p := range []string{"prd_b", "prd_a", "prd_b", "prd_c", "prd_b", "prd_a"} {
				if err := svc.Handle(ctx, event(t, analytics.SubjectPageViewed, "pv"+string(rune('0'+i)), analytics.PageViewed{ProductID: p, ViewedAt: now0})); err != nil {
					t.Fatal(err)
				}
			}
			for i, s := range []analytics.SearchMade{{Query: "desk lamp", Results: 3}, {Query: "Desk  Lamp", Results: 3}, {Query: "unicorn", Results: 0}} {
				s.SearchedAt = now0
				if err := svc.Handle(ctx, event(t, analytics.SubjectSearchMade, "sm"+string(rune('0'+i)), s)); err != nil {
					t.Fatal(err)
				}
			}
			pop, err := api.Popular(ctx, 24*time.Hour, 2)
			if err != nil {
				t.Fatal(err)
			}
			if want := []analytics.ProductViews{{ProductID: "prd_b", Views: 3}, {ProductID: "prd_a", Views: 2}}; !reflect.DeepEqual(pop, want) {
				t.Errorf("Popular = %v, want %v", pop, want)
			}
			if got, err := ids(24*time.Hour, 8); err != nil || !reflect.DeepEqual(got, []string{"prd_b", "prd_a", "prd_c"}) {
				t.Errorf("PopularProductIDs = %v, %v", got, err)
			}
			rep, err := api.Searches(ctx, 24*time.Hour, 10)
			if err != nil {
				t.Fatal(err)
			}
			if want := []analytics.QueryCount{{Query: "desk lamp", Searches: 2}, {Query: "unicorn", Searches: 1}}; !reflect.DeepEqual(rep.Top, want) {
				t.Errorf("top = %v, want %v", rep.Top, want)
			}
			if want := []analytics.QueryCount{{Query: "unicorn", Searches: 1}}; !reflect.DeepEqual(rep.NoResult, want) {
				t.Errorf("no result = %v, want %v", rep.NoResult, want)
			}
			for _, bad := range []struct {
				window time.Duration
				limit  int
			}{{0, 8}, {31 * 24 * time.Hour, 8}, {time.Hour, 0}, {time.Hour, 101}} {
				if _, err := api.Popular(ctx, bad.window, bad.limit); !errs.Is(errs.BadRequest, err) {
					t.Errorf("Popular(%v, %d) = %v, want errs.BadRequest", bad.window, bad.limit, err)
				}
			}
		})
	}
}

// TestHTTP checks the raw answers: JSON shapes, defaults, bad parameters and
// the operator's HTML report.
func TestHTTP(t *testing.T) {
	ctx := context.Background()
	svc, _ := newService(t, testenv.Backends()[0])
	if err := svc.Handle(ctx, event(t, analytics.SubjectSearchMade, "s1", analytics.SearchMade{Query: "<script>", Results: 0, SearchedAt: now0})); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(analytics.NewHandler(svc))
	t.Cleanup(srv.Close)
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/svc/analytics/v1/popular"); code != 200 || body != `{"window":"24h0m0s","products":[]}`+"\n" {
		t.Errorf("popular with no views = %d %q", code, body)
	}
	if code, body := get("/svc/analytics/v1/searches?window=1h"); code != 200 || !strings.Contains(body, `"no_result":[{"query":"\u003cscript\u003e","searches":1}]`) {
		t.Errorf("searches = %d %s", code, body)
	}
	for _, q := range []string{"window=forever", "limit=x", "window=-1h", "limit=1000", "window=%%"} {
		if code, _ := get("/svc/analytics/v1/popular?" + q); code != http.StatusBadRequest {
			t.Errorf("?%s: %d, want 400", q, code)
		}
	}
	code, body := get("/svc/analytics/v1/report")
	if code != 200 || !strings.Contains(body, "Searches with no result") || !strings.Contains(body, "&lt;script&gt;") || strings.Contains(body, "<script>") {
		t.Errorf("report = %d\n%s", code, body)
	}
}

func TestNormalizeQuery(t *testing.T) {
	for in, want := range map[string]string{
		"  Desk   LAMP\t":         "desk lamp",
		"ÜNICORN":                 "ünicorn",
		"a\nb\x00c":               "a b c",
		"   ":                     "",
		"bad\xffutf8":             "badutf8",
		strings.Repeat("x", 150):  strings.Repeat("x", 100),
		strings.Repeat("ab ", 60): strings.TrimSpace(strings.Repeat("ab ", 34))[:100],
	} {
		if got := analytics.NormalizeQuery(in); got != want {
			t.Errorf("NormalizeQuery(%q) = %q, want %q", in, got, want)
		}
	}
}
