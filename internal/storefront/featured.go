package storefront

import (
	"cmp"
	"context"

	"golang.org/x/sync/errgroup"

	"github.com/globomantics/globomantics/internal/catalog"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/page"
)

// featuredListConcurrency bounds the category lists the featured selection
// asks the catalog for at once.
const featuredListConcurrency = 4

// featuredProducts is the home page's "Featured products": up to n
// products taken in turn from each category (in the categories' order, each
// category's products in its list order), those in stock before those sold
// out, so that the home page shows the breadth of the shop rather than the
// first category's first products. It depends on the catalog's content
// alone, never on the visitor, so the home page stays shareable (see
// sharedPage and homeProducts).
//
// Each category's first n products are asked for, at most
// featuredListConcurrency at a time. A category whose list fails is left
// out (browsing is the available side); only when every list fails is the
// page an error. Without categories, the first n products are shown.
func (s *Server) featuredProducts(ctx context.Context, n int) ([]catalog.Product, error) {
	const op = "storefront.featuredProducts"
	cats, err := s.categories(ctx)
	if err != nil || len(cats) == 0 {
		if err != nil {
			s.log.Warn("featured products: categories unavailable, showing the first products", "err", err)
		}
		pp, err := s.d.Catalog.ListProducts(ctx, catalog.ProductFilter{Page: page.Request{Size: n}})
		if err != nil {
			return nil, errs.E(op, err)
		}
		return pickFeatured(groupByCategory(pp.Items), n), nil
	}
	groups := make([][]catalog.Product, len(cats))
	failures := make([]error, len(cats))
	var g errgroup.Group
	g.SetLimit(featuredListConcurrency)
	for i, c := range cats {
		g.Go(func() error {
			pp, err := s.d.Catalog.ListProducts(ctx, catalog.ProductFilter{Category: c.ID, Page: page.Request{Size: n}})
			groups[i], failures[i] = pp.Items, err
			return nil
		})
	}
	_ = g.Wait() // the goroutines report through failures
	var firstErr error
	failed := 0
	for i, err := range failures {
		if err != nil {
			failed++
			firstErr = cmp.Or(firstErr, err)
			s.log.Warn("featured products: a category's list failed", "category", cats[i].ID, "err", err)
		}
	}
	if failed == len(cats) {
		return nil, errs.E(op, firstErr)
	}
	return pickFeatured(groups, n), nil
}

// groupByCategory splits products into one group per category, in the
// order the categories first appear, each keeping the list's order.
func groupByCategory(products []catalog.Product) [][]catalog.Product {
	var groups [][]catalog.Product
	at := map[string]int{}
	for _, p := range products {
		i, ok := at[p.Category]
		if !ok {
			i = len(groups)
			at[p.Category] = i
			groups = append(groups, nil)
		}
		groups[i] = append(groups[i], p)
	}
	return groups
}

// pickFeatured takes up to n products round-robin from groups: the first
// in-stock product of each group, then the second, and so on; when the
// products in stock run out, the sold-out ones follow in the same way. A
// product in two groups is taken once.
func pickFeatured(groups [][]catalog.Product, n int) []catalog.Product {
	out := make([]catalog.Product, 0, n)
	seen := map[string]bool{}
	for _, inStock := range []bool{true, false} {
		picks := make([][]catalog.Product, len(groups))
		left := 0
		for i, g := range groups {
			for _, p := range g {
				if (p.Stock > 0) == inStock {
					picks[i] = append(picks[i], p)
					left++
				}
			}
		}
		for round := 0; left > 0 && len(out) < n; round++ {
			for _, pp := range picks {
				if round >= len(pp) {
					continue
				}
				left--
				if p := pp[round]; !seen[p.ID] && len(out) < n {
					seen[p.ID] = true
					out = append(out, p)
				}
			}
		}
	}
	return out
}
