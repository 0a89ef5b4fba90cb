package catalog_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/catalog"
	"github.com/globomantics/globomantics/internal/catalog/catalogdb"
	"github.com/globomantics/globomantics/internal/platform/blob"
	"github.com/globomantics/globomantics/internal/platform/clock"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/httpx"
	"github.com/globomantics/globomantics/internal/platform/money"
	"github.com/globomantics/globomantics/internal/platform/page"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

// TestListProductsKeyset: products listed between page fetches, before and
// after the page's position, make a category walk neither skip nor repeat a
// product; on both store engines, in process and over HTTP.
func TestListProductsKeyset(t *testing.T) {
	ctx := context.Background()
	for _, b := range testenv.Backends() {
		for _, remote := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/remote=%t", b.Name, remote), func(t *testing.T) {
				store, err := catalogdb.Open(ctx, b.Open(t))
				if err != nil {
					t.Fatal(err)
				}
				blobs, err := blob.NewFS(t.TempDir())
				if err != nil {
					t.Fatal(err)
				}
				t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
				svc := catalog.NewService(store, blobs, func() {}, clock.NewFake(t0))
				var api catalog.API = svc
				if remote {
					srv := httptest.NewServer(httpx.Middleware(testenv.Logger(t), catalog.NewHandler(svc)))
					t.Cleanup(srv.Close)
					api = catalog.NewClient(httpx.NewClient("catalog", []string{srv.URL}, nil))
				}
				if err := store.EnsureCategories(ctx, []catalog.Category{{ID: "home", Name: "Home"}, {ID: "books", Name: "Books"}}); err != nil {
					t.Fatal(err)
				}
				add := func(id, cat string) {
					t.Helper()
					err := store.CreateProduct(ctx, catalog.Record{ID: id, Name: id, Description: id, Category: cat,
						Price: money.USD(100), Stock: 1, ImageKey: "products/" + id + "/original.png", CreatedAt: t0})
					if err != nil {
						t.Fatal(err)
					}
				}
				var want []string
				for i := range 10 {
					add(fmt.Sprintf("prd_5%d", i), "home")
					want = append(want, fmt.Sprintf("prd_5%d", i))
					add(fmt.Sprintf("prd_5%da", i), "books")
				}
				var seen []string
				f := catalog.ProductFilter{Category: "home", Page: page.Request{Size: 3}}
				for pages := 0; ; pages++ {
					if pages > 10 {
						t.Fatal("paging does not end")
					}
					pg, err := api.ListProducts(ctx, f)
					if err != nil {
						t.Fatal(err)
					}
					for _, p := range pg.Items {
						seen = append(seen, p.ID)
					}
					if pg.NextPageToken == "" {
						break
					}
					// One product lands before the position (offsets would then
					// repeat one), one after it (seen at the end), one elsewhere.
					add(fmt.Sprintf("prd_0%d", pages), "home")
					add(fmt.Sprintf("prd_9%d", pages), "home")
					want = append(want, fmt.Sprintf("prd_9%d", pages))
					add(fmt.Sprintf("prd_1%d", pages), "books")
					f.Page = page.Request{Size: 3, Token: pg.NextPageToken}
				}
				if !slices.Equal(seen, want) {
					t.Fatalf("walked %v\nwant %v", seen, want)
				}
			})
		}
	}
}

// TestListProductsHTTPBadQuery: a query string that does not parse, or a
// page token that is not this list's, is a 400 problem+json.
func TestListProductsHTTPBadQuery(t *testing.T) {
	e := newEnv(t, true, false)
	for _, raw := range []string{
		"page_token=%%%%",
		"category=home&page_token=%zz",
		"category=home&page_token=" + page.Token("products/id/books", "prd_1"),
		"category=home&page_token=bzoy",
		"category=home;page_size=2",
	} {
		resp, err := http.Get(e.server.URL + catalog.PathPrefix + "products?" + raw)
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
