package search_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/catalog"
	"github.com/globomantics/globomantics/internal/platform/bus"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/httpx"
	"github.com/globomantics/globomantics/internal/platform/money"
	"github.com/globomantics/globomantics/internal/platform/page"
	"github.com/globomantics/globomantics/internal/platform/testenv"
	"github.com/globomantics/globomantics/internal/search"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// fixture is a search service on a fresh index and the API under test, which
// is either the service itself or an HTTP client of it.
type fixture struct {
	svc *search.Service
	api search.API
}

func newService(tb testing.TB) (*search.Service, *search.Index) {
	tb.Helper()
	idx, err := search.OpenIndex(filepath.Join(tb.TempDir(), "search.bleve"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { idx.Close() })
	return search.NewService(idx, testenv.Logger(tb)), idx
}

// apiModes makes the fixtures the suites run against: *Service, and
// *Client talking to NewHandler(service) over HTTP.
func apiModes() map[string]func(t *testing.T) fixture {
	return map[string]func(t *testing.T) fixture{
		"service": func(t *testing.T) fixture {
			svc, _ := newService(t)
			return fixture{svc: svc, api: svc}
		},
		"http": func(t *testing.T) fixture {
			svc, _ := newService(t)
			srv := httptest.NewServer(search.NewHandler(svc))
			t.Cleanup(srv.Close)
			return fixture{svc: svc, api: search.NewClient(httpx.NewClient("search", []string{srv.URL}, nil))}
		},
	}
}

// TestAPI runs the contract suite against each of apiModes.
func TestAPI(t *testing.T) {
	for name, mk := range apiModes() {
		t.Run(name, func(t *testing.T) { runContract(t, mk) })
	}
}

func listed(id, name, desc, category string) bus.Event {
	data := fmt.Sprintf(`{"product_id":%q,"name":%q,"description":%q,"category":%q,"price":{"amount":1000,"currency":"USD"},"image_key":"img/%s"}`,
		id, name, desc, category, id)
	return bus.Event{ID: "ev-" + id, Type: catalog.SubjectItemListed, Data: []byte(data)}
}

func feed(t *testing.T, svc *search.Service, evs ...bus.Event) {
	t.Helper()
	for _, ev := range evs {
		if err := svc.HandleEvent(context.Background(), ev); err != nil {
			t.Fatalf("HandleEvent(%s): %v", ev.ID, err)
		}
	}
}

func ids(r search.Result) []string {
	out := make([]string, len(r.Hits))
	for i, h := range r.Hits {
		out[i] = h.ProductID
	}
	return out
}

func contains(r search.Result, id string) bool {
	for _, h := range r.Hits {
		if h.ProductID == id {
			return true
		}
	}
	return false
}

// mustSearch searches for the words q, as run does.
func mustSearch(t *testing.T, api search.API, q string, p page.Request) search.Result {
	t.Helper()
	return run(t, api, search.Query{Text: q}, p)
}

var catalogue = []bus.Event{
	listed("p1", "Brass Desk Lamp", "A warm reading light with a heavy base.", "lighting"),
	listed("p2", "Floor Lamps Set", "Two tall lights for the living room.", "lighting"),
	listed("p3", "Oak Reading Chair", "Comfortable chair; pairs well with a lantern.", "furniture"),
	listed("p4", "Camping Lantern", "Battery powered, runs for days.", "outdoor"),
	listed("p5", "Running Shoes", "Lightweight trainers.", "sport"),
}

func runContract(t *testing.T, mk func(t *testing.T) fixture) {
	ctx := context.Background()

	t.Run("validation", func(t *testing.T) {
		f := mk(t)
		feed(t, f.svc, catalogue...)
		for _, tc := range []struct {
			name string
			q    string
			p    page.Request
		}{
			{"empty", "", page.Request{}},
			{"spaces", " \t\n ", page.Request{}},
			{"too long", strings.Repeat("a", search.MaxQueryLen+1), page.Request{}},
			{"page too big", "lamp", page.Request{Size: page.MaxSize + 1}},
			{"negative size", "lamp", page.Request{Size: -1}},
			{"zero offset", "lamp", page.Request{Size: 5, Token: page.Token("search/score/x", "0")}},
			{"garbage token", "lamp", page.Request{Size: 5, Token: "%%%%"}},
			{"old offset token", "lamp", page.Request{Size: 5, Token: "bzoy"}},
			{"another query's token", "lamp", page.Request{Size: 5, Token: search.SearchToken(search.Query{Text: "lamps"}, 5)}},
			{"another list's token", "lamp", page.Request{Size: 5, Token: page.Token("products/id/", "prd_1")}},
			{"beyond window", "lamp", page.Request{Size: 10, Token: search.SearchToken(search.Query{Text: "lamp"}, search.MaxResultWindow)}},
		} {
			_, err := f.api.Search(ctx, search.Query{Text: tc.q}, tc.p)
			if !errs.Is(errs.BadRequest, err) {
				t.Errorf("%s: err = %v (kind %v), want BadRequest", tc.name, err, errs.KindOf(err))
			}
		}
		// A page crossing the result window is cut short, not refused.
		if _, err := f.api.Search(ctx, search.Query{Text: "lamp"}, page.Request{Size: 10, Token: search.SearchToken(search.Query{Text: " lamp "}, search.MaxResultWindow-5)}); err != nil {
			t.Errorf("page crossing the window: %v", err)
		}
		// 200 characters (not bytes) is still fine.
		if _, err := f.api.Search(ctx, search.Query{Text: strings.Repeat("é", search.MaxQueryLen)}, page.Request{}); err != nil {
			t.Errorf("query of %d characters: %v", search.MaxQueryLen, err)
		}
	})

	t.Run("stemming", func(t *testing.T) {
		f := mk(t)
		feed(t, f.svc, catalogue...)
		r := mustSearch(t, f.api, "lamps", page.Request{})
		if !contains(r, "p1") || !contains(r, "p2") {
			t.Errorf(`"lamps" = %v, want p1 ("Lamp") and p2 ("Lamps")`, ids(r))
		}
		r = mustSearch(t, f.api, "LAMP", page.Request{})
		if !contains(r, "p1") || !contains(r, "p2") {
			t.Errorf(`"LAMP" = %v, want p1 and p2`, ids(r))
		}
		if contains(r, "p4") || contains(r, "p5") {
			t.Errorf(`"LAMP" = %v, matched unrelated products`, ids(r))
		}
	})

	t.Run("prefix of last word", func(t *testing.T) {
		f := mk(t)
		feed(t, f.svc, catalogue...)
		r := mustSearch(t, f.api, "lam", page.Request{})
		if !contains(r, "p1") || !contains(r, "p2") {
			t.Errorf(`"lam" = %v, want the lamps`, ids(r))
		}
		// The prefix works on the unstemmed word: "runn" finds "Running".
		r = mustSearch(t, f.api, "runn", page.Request{})
		if len(r.Hits) == 0 || r.Hits[0].ProductID != "p5" {
			t.Errorf(`"runn" = %v, want p5 first`, ids(r))
		}
		// Only the last word is a prefix; "desk l" still finds the desk lamp.
		r = mustSearch(t, f.api, "desk l", page.Request{})
		if len(r.Hits) == 0 || r.Hits[0].ProductID != "p1" {
			t.Errorf(`"desk l" = %v, want p1 first`, ids(r))
		}
	})

	t.Run("typo in a long word", func(t *testing.T) {
		f := mk(t)
		feed(t, f.svc, catalogue...)
		r := mustSearch(t, f.api, "lanterm", page.Request{})
		if !contains(r, "p4") {
			t.Errorf(`"lanterm" = %v, want p4 (one typo)`, ids(r))
		}
		// Short words must match exactly: "lamb" is not "lamp".
		r = mustSearch(t, f.api, "oak lamb", page.Request{})
		if contains(r, "p1") || contains(r, "p2") {
			t.Errorf(`"oak lamb" = %v, matched a lamp`, ids(r))
		}
	})

	t.Run("name ranks above description", func(t *testing.T) {
		f := mk(t)
		feed(t, f.svc, catalogue...)
		r := mustSearch(t, f.api, "lantern", page.Request{})
		got := ids(r)
		if len(got) < 2 || got[0] != "p4" || !contains(r, "p3") {
			t.Fatalf(`"lantern" = %v, want p4 (name) first, then p3 (description)`, got)
		}
		if r.Hits[0].Score <= r.Hits[1].Score {
			t.Errorf("scores not descending: %v", r.Hits)
		}
	})

	t.Run("category", func(t *testing.T) {
		f := mk(t)
		feed(t, f.svc, catalogue...)
		r := mustSearch(t, f.api, "Furniture", page.Request{})
		if len(r.Hits) != 1 || r.Hits[0].ProductID != "p3" {
			t.Errorf(`"Furniture" = %v, want exactly p3`, ids(r))
		}
		// The category is stemmed like the other words: the singular
		// finds a category named in the plural ("book" finds "books").
		feed(t, f.svc, listed("p9", "The Lighthouse Keeper", "A quiet novel. Paperback.", "books"))
		r = mustSearch(t, f.api, "book", page.Request{})
		if len(r.Hits) != 1 || r.Hits[0].ProductID != "p9" {
			t.Errorf(`"book" = %v, want exactly p9 (category books)`, ids(r))
		}
	})

	t.Run("no match", func(t *testing.T) {
		f := mk(t)
		feed(t, f.svc, catalogue...)
		r := mustSearch(t, f.api, "zeppelin", page.Request{})
		if r.Total != 0 || len(r.Hits) != 0 || r.Hits == nil || r.NextPageToken != "" {
			t.Errorf(`"zeppelin" = %+v, want an empty, non-nil page`, r)
		}
	})

	t.Run("pagination", func(t *testing.T) {
		f := mk(t)
		const n = 25
		for i := 0; i < n; i++ {
			feed(t, f.svc, listed(fmt.Sprintf("w%02d", i), fmt.Sprintf("Widget %d", i), "A widget.", "widgets"))
		}
		feed(t, f.svc, listed("x1", "Gadget", "Not a match.", "gadgets"))

		seen := map[string]bool{}
		p := page.Request{Size: 10}
		pages := 0
		for {
			r := mustSearch(t, f.api, "widget", p)
			pages++
			if r.Total != n {
				t.Fatalf("page %d: Total = %d, want %d", pages, r.Total, n)
			}
			for _, h := range r.Hits {
				if seen[h.ProductID] {
					t.Fatalf("page %d repeats %s", pages, h.ProductID)
				}
				seen[h.ProductID] = true
			}
			if r.NextPageToken == "" {
				if len(r.Hits) != 5 {
					t.Errorf("last page has %d hits, want 5", len(r.Hits))
				}
				break
			}
			if len(r.Hits) != 10 {
				t.Fatalf("page %d has %d hits, want 10", pages, len(r.Hits))
			}
			next, err := page.Parse("10", r.NextPageToken)
			if err != nil {
				t.Fatalf("next token %q: %v", r.NextPageToken, err)
			}
			p = next
		}
		if pages != 3 || len(seen) != n {
			t.Errorf("got %d pages and %d products, want 3 and %d", pages, len(seen), n)
		}
		// A page past the end is empty, not an error.
		r := mustSearch(t, f.api, "widget", page.Request{Size: 10, Token: search.SearchToken(search.Query{Text: "widget"}, 40)})
		if len(r.Hits) != 0 || r.NextPageToken != "" || r.Total != n {
			t.Errorf("page past the end = %+v", r)
		}
	})

	t.Run("redelivery is idempotent", func(t *testing.T) {
		f := mk(t)
		feed(t, f.svc, catalogue...)
		feed(t, f.svc, catalogue...)
		r := mustSearch(t, f.api, "lamp", page.Request{})
		if r.Total != 2 {
			t.Errorf(`"lamp" after redelivery: Total = %d (%v), want 2`, r.Total, ids(r))
		}
	})

	t.Run("events that are not for the index change nothing", func(t *testing.T) {
		f := mk(t)
		other := listed("q1", "Quilt", "Warm.", "bedding")
		other.Type = "globo.order.placed"
		bad := bus.Event{ID: "bad", Type: catalog.SubjectItemListed, Data: []byte(`{"product_id":`)}
		noID := listed("", "Quilt", "Warm.", "bedding")
		feed(t, f.svc, other, bad, noID)
		r := mustSearch(t, f.api, "quilt", page.Request{})
		if r.Total != 0 {
			t.Errorf(`"quilt" = %v, want nothing indexed`, ids(r))
		}
	})
}

// TestFeedFromBus feeds the index through a real embedded broker, the way the
// app subscribes it.
func TestFeedFromBus(t *testing.T) {
	ctx := context.Background()
	b := testenv.Bus(t)
	svc, _ := newService(t)
	if err := b.Subscribe(ctx, "search-test", []string{catalog.SubjectItemListed}, svc.HandleEvent); err != nil {
		t.Fatal(err)
	}
	items := []catalog.ItemListed{
		{ProductID: "b1", Name: "Copper Kettle", Description: "Whistles when the water boils.", Category: "kitchen", Price: money.USD(3900)},
		{ProductID: "b2", Name: "Tea Cups", Description: "Set of four, for the kettle.", Category: "kitchen", Price: money.USD(1900)},
	}
	for _, it := range items {
		if err := b.Publish(ctx, catalog.SubjectItemListed, "listed-"+it.ProductID, it); err != nil {
			t.Fatal(err)
		}
	}
	testenv.CheckFor(t, 10*time.Second, func() error {
		r, err := svc.Search(ctx, search.Query{Text: "kettles"}, page.Request{})
		if err != nil {
			return err
		}
		if got := ids(r); len(got) != 2 || got[0] != "b1" {
			return fmt.Errorf(`"kettles" = %v, want [b1 b2]`, got)
		}
		return nil
	})
}

// TestPersistence checks documents survive closing and reopening the index.
func TestPersistence(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "search.bleve")
	idx, err := search.OpenIndex(dir)
	if err != nil {
		t.Fatal(err)
	}
	svc := search.NewService(idx, testenv.Logger(t))
	feed(t, svc, catalogue...)
	if err := idx.Close(); err != nil {
		t.Fatal(err)
	}

	idx, err = search.OpenIndex(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer idx.Close()
	if n, err := idx.Count(); err != nil || n != uint64(len(catalogue)) {
		t.Fatalf("Count after reopen = %d, %v; want %d", n, err, len(catalogue))
	}
	r, err := search.NewService(idx, testenv.Logger(t)).Search(ctx, search.Query{Text: "lamps"}, page.Request{})
	if err != nil {
		t.Fatal(err)
	}
	if !contains(r, "p1") || !contains(r, "p2") {
		t.Errorf(`"lamps" after reopen = %v, want p1 and p2`, ids(r))
	}
}

// BenchmarkSearch searches an index of 1000 products.
func BenchmarkSearch(b *testing.B) {
	idx, err := search.OpenIndex(filepath.Join(b.TempDir(), "search.bleve"))
	if err != nil {
		b.Fatal(err)
	}
	defer idx.Close()
	svc := search.NewService(idx, testenv.Logger(b))
	adjectives := []string{"brass", "oak", "copper", "woollen", "glass", "steel", "linen", "ceramic", "walnut", "marble"}
	nouns := []string{"lamp", "chair", "kettle", "lantern", "table", "rug", "vase", "clock", "mirror", "shelf"}
	for i := 0; i < 1000; i++ {
		a, n := adjectives[i%len(adjectives)], nouns[(i/len(adjectives))%len(nouns)]
		d := search.Document{
			Name:        fmt.Sprintf("%s %s %d", a, n, i),
			Description: fmt.Sprintf("A %s %s, model %d, made to last; pairs with a %s.", a, n, i, nouns[(i+3)%len(nouns)]),
			Category:    n,
		}
		if err := idx.Put(fmt.Sprintf("p%04d", i), d); err != nil {
			b.Fatal(err)
		}
	}
	ctx := context.Background()
	for _, q := range []string{"lamps", "brass lan", "coper kettle"} {
		b.Run(q, func(b *testing.B) {
			for b.Loop() {
				r, err := svc.Search(ctx, search.Query{Text: q}, page.Request{Size: 20})
				if err != nil || len(r.Hits) == 0 {
					b.Fatalf("Search(%q) = %d hits, %v", q, len(r.Hits), err)
				}
			}
		})
	}
}
