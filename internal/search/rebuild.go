package search

import (
	"context"

	"github.com/globomantics/globomantics/internal/catalog"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/page"
)

// Catalog is what search needs of the catalog service to rebuild its index.
type Catalog interface {
	ListProducts(ctx context.Context, f catalog.ProductFilter) (catalog.ProductPage, error)
}

var _ Catalog = catalog.API(nil)

// Rebuild indexes every product of the catalog and reports how many. A new
// index starts here, then follows ItemListed events: the broker keeps events
// only for its retention period, so replaying them cannot rebuild an index of
// older products. Indexing is idempotent, so events that arrive meanwhile
// are harmless.
func (s *Service) Rebuild(ctx context.Context, cat Catalog) (int, error) {
	const op = "search.Rebuild"
	n := 0
	req := page.Request{Size: page.MaxSize}
	for {
		pg, err := cat.ListProducts(ctx, catalog.ProductFilter{Page: req})
		if err != nil {
			return n, errs.E(op, err)
		}
		for _, p := range pg.Items {
			if err := s.idx.Put(p.ID, Document{Name: p.Name, Description: p.Description, Category: p.Category, Price: p.Price.Amount, ListedAt: p.ListedAt}); err != nil {
				return n, errs.E(op, err)
			}
			n++
		}
		if pg.NextPageToken == "" {
			return n, nil
		}
		req.Token = pg.NextPageToken
	}
}
