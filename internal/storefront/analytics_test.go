package storefront

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/analytics"
	"github.com/globomantics/globomantics/internal/analytics/analyticsdb"
	"github.com/globomantics/globomantics/internal/platform/bus"
	"github.com/globomantics/globomantics/internal/platform/httpx"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

// recordedEvents records the analytics events the storefront sends.
type recordedEvents struct {
	mu       sync.Mutex
	views    []string
	searches []string // "query=results"
}

func (r *recordedEvents) PageViewed(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.views = append(r.views, id)
}

func (r *recordedEvents) SearchMade(q string, n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.searches = append(r.searches, q+"="+itoa(n))
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// TestAnalyticsEvents checks what the pages tell analytics: every product
// page served (also from the shared page cache), never a missing product
// or a HEAD; the first page of each search with its result count.
func TestAnalyticsEvents(t *testing.T) {
	rec := &recordedEvents{}
	e := newEnv(t, func(d *Deps) { d.Analytics = rec })
	b := e.browser()
	for range 3 { // one render, two answers from the page cache
		wantStatus(t, b.do("GET", "/products/prd_01", nil), 200)
	}
	wantStatus(t, b.do("GET", "/products/prd_02", nil), 200)
	wantStatus(t, b.do("HEAD", "/products/prd_02", nil), 200)
	wantStatus(t, b.do("GET", "/products/prd_nope", nil), 404)
	wantStatus(t, b.do("GET", "/search?q=lamp", nil), 200)
	wantStatus(t, b.do("GET", "/search?q=zzz", nil), 200)
	wantStatus(t, b.do("GET", "/search", nil), 200)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if got, want := strings.Join(rec.views, ","), "prd_01,prd_01,prd_01,prd_02"; got != want {
		t.Errorf("page views %s, want %s", got, want)
	}
	if got, want := strings.Join(rec.searches, ","), "lamp=2,zzz=0"; got != want {
		t.Errorf("searches %s, want %s", got, want)
	}
}

// analyticsService is a real analytics service over SQLite with the given
// views counted, and a client of it over HTTP.
func analyticsService(t *testing.T, views ...string) (*analytics.Service, *analytics.Client) {
	t.Helper()
	ctx := context.Background()
	st, err := analyticsdb.Open(ctx, testenv.SQLite(t))
	if err != nil {
		t.Fatal(err)
	}
	svc := analytics.NewService(st, realClock{}, nil)
	for i, id := range views {
		raw, _ := json.Marshal(analytics.PageViewed{ProductID: id, ViewedAt: time.Now().UTC()})
		if err := svc.Handle(ctx, bus.Event{ID: "pv" + itoa(i), Type: analytics.SubjectPageViewed, Data: raw}); err != nil {
			t.Fatal(err)
		}
	}
	srv := httptest.NewServer(analytics.NewHandler(svc))
	t.Cleanup(srv.Close)
	return svc, analytics.NewClient(httpx.NewClient("analytics", []string{srv.URL}, nil))
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now().UTC() }

// TestPopularStrip checks the home page's "Popular now": the most viewed
// products first, a product the catalog no longer has left out, and no
// strip at all without analytics.
func TestPopularStrip(t *testing.T) {
	_, client := analyticsService(t, "prd_03", "prd_01", "prd_03", "prd_gone", "prd_gone", "prd_gone", "prd_01", "prd_03")
	e := newEnv(t, func(d *Deps) { d.Popular = client })
	body := e.browser().do("GET", "/", nil).body
	wantContains(t, body, "Popular now")
	strip := body[strings.Index(body, "Popular now"):strings.Index(body, "Featured products")]
	i3, i1 := strings.Index(strip, "Claw Hammer"), strings.Index(strip, "Desk Lamp")
	if i3 < 0 || i1 < 0 || i3 > i1 || strings.Contains(strip, "prd_gone") || strings.Count(strip, `class="card"`) != 2 {
		t.Errorf("strip (want Claw Hammer, then Desk Lamp, nothing else):\n%s", strip)
	}

	plain := newEnv(t).browser().do("GET", "/", nil).body
	if strings.Contains(plain, "Popular now") {
		t.Error("a storefront without analytics shows the strip")
	}
}

// TestPopularStripFailsSoft points the storefront at an analytics service
// that is down: the home page renders, without the strip, and the failure
// is remembered for popularDownTTL so that pages do not wait for it each
// time.
func TestPopularStripFailsSoft(t *testing.T) {
	addr := testenv.FreeAddr(t) // nothing listens there
	down := analytics.NewClient(httpx.NewClient("analytics", []string{"http://" + addr}, nil))
	e := newEnv(t, func(d *Deps) { d.Popular = down })
	b := e.browser()
	start := time.Now()
	r := b.do("GET", "/", nil)
	wantStatus(t, r, 200)
	wantContains(t, r.body, "Featured products")
	if strings.Contains(r.body, "Popular now") {
		t.Error("strip shown with analytics down")
	}
	t.Logf("home page with analytics down: %v", time.Since(start))
	// The failure is remembered for popularDownTTL, then forgotten.
	if raw, ok, _ := e.cache.Get(context.Background(), popularKey); !ok || string(raw) != "[]" {
		t.Errorf("failure not remembered: %q %v", raw, ok)
	}
	e.clock.Advance(popularDownTTL + time.Second)
	if _, ok, _ := e.cache.Get(context.Background(), popularKey); ok {
		t.Error("failure remembered past popularDownTTL")
	}
}
