package search_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/globomantics/globomantics/internal/catalog"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/page"
	"github.com/globomantics/globomantics/internal/search"
)

// pagedCatalog serves n products in pages, as the catalog does.
type pagedCatalog struct {
	n     int
	calls int
	fail  bool
}

func (c *pagedCatalog) ListProducts(_ context.Context, f catalog.ProductFilter) (catalog.ProductPage, error) {
	c.calls++
	if c.fail {
		return catalog.ProductPage{}, errs.E(errs.Unavailable, errs.Msg("catalog down"))
	}
	var pg catalog.ProductPage
	start := 0
	if f.Page.Token != "" {
		key, err := f.Page.After("products/id/", 1)
		if err != nil {
			return catalog.ProductPage{}, err
		}
		start, _ = strconv.Atoi(key[0])
	}
	end := min(start+f.Page.Size, c.n)
	for i := start; i < end; i++ {
		pg.Items = append(pg.Items, catalog.Product{
			ID: fmt.Sprintf("prd_%04d", i), Name: fmt.Sprintf("Lamp number %d", i),
			Description: "A lamp for reading.", Category: "home",
		})
	}
	if end < c.n {
		pg.NextPageToken = page.Token("products/id/", strconv.Itoa(end))
	}
	return pg, nil
}

func TestRebuildIndexesTheWholeCatalog(t *testing.T) {
	idx, err := search.OpenIndex(filepath.Join(t.TempDir(), "idx"))
	if err != nil {
		t.Fatal(err)
	}
	defer idx.Close()
	svc := search.NewService(idx, nil)
	cat := &pagedCatalog{n: 250}
	n, err := svc.Rebuild(context.Background(), cat)
	if err != nil || n != 250 {
		t.Fatalf("Rebuild = %d, %v; want 250", n, err)
	}
	if cat.calls != 3 {
		t.Errorf("catalog pages read = %d, want 3", cat.calls)
	}
	if c, _ := idx.Count(); c != 250 {
		t.Errorf("index holds %d documents, want 250", c)
	}
	res, err := svc.Search(context.Background(), search.Query{Text: "lamp"}, page.Request{Size: 10})
	if err != nil || res.Total != 250 {
		t.Fatalf("search after rebuild: total %d, %v", res.Total, err)
	}
	// Rebuilding again is idempotent.
	if _, err := svc.Rebuild(context.Background(), cat); err != nil {
		t.Fatal(err)
	}
	if c, _ := idx.Count(); c != 250 {
		t.Errorf("after a second rebuild the index holds %d documents, want 250", c)
	}
}

func TestRebuildReportsCatalogErrors(t *testing.T) {
	idx, err := search.OpenIndex(filepath.Join(t.TempDir(), "idx"))
	if err != nil {
		t.Fatal(err)
	}
	defer idx.Close()
	_, err = search.NewService(idx, nil).Rebuild(context.Background(), &pagedCatalog{n: 5, fail: true})
	if !errs.Is(errs.Unavailable, err) {
		t.Fatalf("err = %v, want Unavailable", err)
	}
}
