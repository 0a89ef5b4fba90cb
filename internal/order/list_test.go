package order_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/order"
	"github.com/globomantics/globomantics/internal/order/orderdb"
	"github.com/globomantics/globomantics/internal/platform/clock"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/httpx"
	"github.com/globomantics/globomantics/internal/platform/page"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

// TestListKeyset: orders placed between page fetches make the history
// neither skip nor repeat an order, and tokens that are not this list's are
// refused; on both store engines, in process and over HTTP.
func TestListKeyset(t *testing.T) {
	for _, b := range testenv.Backends() {
		for _, mode := range []string{"service", "http"} {
			t.Run(b.Name+"/"+mode, func(t *testing.T) {
				db := b.Open(t)
				store, err := orderdb.Open(context.Background(), db)
				if err != nil {
					t.Fatal(err)
				}
				e := env{db: db, clk: clock.NewFake(time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC))}
				svc := order.NewService(store, func() {}, e.clk)
				e.api = svc
				if mode == "http" {
					srv := httptest.NewServer(order.NewHandler(svc))
					t.Cleanup(srv.Close)
					e.api = order.NewClient(httpx.NewClient("order", []string{srv.URL}, nil))
				}
				t.Run("InsertsBetweenPages", func(t *testing.T) { testListInsertsBetweenPages(t, e) })
				t.Run("BadTokens", func(t *testing.T) { testListBadTokens(t, e) })
			})
		}
	}
}

func testListInsertsBetweenPages(t *testing.T, e env) {
	ctx := context.Background()
	var want []string
	for i := range 5 {
		id := fmt.Sprintf("ord_%d", i)
		mustCreate(t, e, newOrder(id, "usr_1"))
		want = append([]string{id}, want...)
		e.clk.Advance(time.Second)
	}
	// Two orders in the same millisecond: the id breaks the tie.
	mustCreate(t, e, newOrder("ord_5a", "usr_1"))
	mustCreate(t, e, newOrder("ord_5b", "usr_1"))
	want = append([]string{"ord_5b", "ord_5a"}, want...)
	var got []string
	p := page.Request{Size: 2}
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatal("paging does not end")
		}
		pg, err := e.api.ListOrders(ctx, "usr_1", p)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range pg.Items {
			got = append(got, o.ID)
		}
		if pg.NextPageToken == "" {
			break
		}
		// A newer order arrives before the next fetch: with offsets the next
		// page would repeat an order; with keysets it shows on a new walk only.
		e.clk.Advance(time.Second)
		mustCreate(t, e, newOrder(fmt.Sprintf("ord_new%d", pages), "usr_1"))
		if p, err = page.Parse("2", pg.NextPageToken); err != nil {
			t.Fatal(err)
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("orders = %v\nwant %v", got, want)
	}
}

func testListBadTokens(t *testing.T, e env) {
	ctx := context.Background()
	for i := range 3 {
		mustCreate(t, e, newOrder(fmt.Sprintf("ord_%d", i), "usr_1"))
		e.clk.Advance(time.Second)
	}
	pg, err := e.api.ListOrders(ctx, "usr_1", page.Request{Size: 1})
	if err != nil || pg.NextPageToken == "" {
		t.Fatalf("first page: %+v, %v", pg, err)
	}
	b64 := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	for name, tok := range map[string]string{
		"another user's":     pg.NextPageToken, // asked for usr_2 below
		"another list's":     page.Token("products/id/", "prd_1"),
		"offset (old style)": b64("o:1"),
		"not base64":         "%%%%",
		"bad time":           page.Token("orders/newest/usr_2", "yesterday", "ord_1"),
		"short key":          page.Token("orders/newest/usr_2", "1"),
	} {
		_, err := e.api.ListOrders(ctx, "usr_2", page.Request{Size: 1, Token: tok})
		if !errs.Is(errs.BadRequest, err) {
			t.Errorf("%s token: %v (kind %v); want BadRequest", name, err, errs.KindOf(err))
		}
	}
	// The right user's token still works.
	if _, err := e.api.ListOrders(ctx, "usr_1", page.Request{Size: 1, Token: pg.NextPageToken}); err != nil {
		t.Errorf("a good token: %v", err)
	}
}

// TestListHTTPBadQuery: a query string that does not parse, or a bad page
// token, is a 400 problem+json rather than the first page.
func TestListHTTPBadQuery(t *testing.T) {
	svc, _ := newService(t)
	srv := httptest.NewServer(order.NewHandler(svc))
	t.Cleanup(srv.Close)
	for _, raw := range []string{
		"user_id=usr_1&page_token=%%%%",
		"user_id=usr_1&page_token=" + page.Token("products/id/", "x"),
		"user_id=usr_1&page_token=bm9wZQ",
		"user_id=usr_1&page_size=0",
		"user_id=usr_1;page_size=1",
	} {
		resp, err := http.Get(srv.URL + order.Prefix + "orders?" + raw)
		if err != nil {
			t.Fatal(err)
		}
		var p errs.Problem
		err = json.NewDecoder(resp.Body).Decode(&p)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/problem+json") || err != nil || p.Detail == "" {
			t.Errorf("GET ?%s = %d %s %+v (%v); want 400 problem+json with a detail", raw, resp.StatusCode, resp.Header.Get("Content-Type"), p, err)
		}
	}
}
