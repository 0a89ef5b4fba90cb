package storefront

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/globomantics/globomantics/internal/catalog"
)

// AnalyticsEvents receives the storefront's analytics events, fire-and-
// forget: the calls must return at once whatever the broker does
// (analytics.Emitter counts in memory and publishes a summary per second,
// never blocks on the broker).
type AnalyticsEvents interface {
	PageViewed(productID string)
	SearchMade(query string, results int)
}

// PopularProducts is what the storefront asks the analytics service for its
// "Popular now" strip: the ids of the most viewed products of the last
// window, most viewed first (analytics.Service and analytics.Client).
type PopularProducts interface {
	PopularProductIDs(ctx context.Context, window time.Duration, limit int) ([]string, error)
}

const (
	// popularWindow and popularLimit choose the home page's strip: the
	// most viewed products of the last day.
	popularWindow = 24 * time.Hour
	popularLimit  = 8
	// popularTimeout bounds the look-up (analytics, then the catalog) a
	// home page render may wait for; past it the page has no strip.
	popularTimeout = 250 * time.Millisecond
	// popularTTL is how long the list is reused from the cache, and
	// popularDownTTL how long, after analytics failed, the page goes
	// without a strip before analytics is asked again: a service that is
	// down or not run costs one timeout per popularDownTTL, not per page.
	popularTTL     = 30 * time.Second
	popularDownTTL = 10 * time.Second
	popularKey     = "storefront:popular:v1"
)

// pageViewed tells analytics that a product page was served (GET only:
// HEAD and conditional requests for a page are views too, HEAD is not).
func (s *Server) pageViewed(r *http.Request, productID string) {
	if s.d.Analytics != nil && r.Method == http.MethodGet {
		s.d.Analytics.PageViewed(productID)
	}
}

// searchMade tells analytics that a search was answered with results
// products on its first page.
func (s *Server) searchMade(query string, results int) {
	if s.d.Analytics != nil {
		s.d.Analytics.SearchMade(query, results)
	}
}

// popularNow is the home page's "Popular now" strip: the most viewed
// products that the catalog still has, most viewed first. It fails soft:
// with no analytics service, one that is down or slow, or a catalog error,
// it returns nothing and the page shows no strip.
func (s *Server) popularNow(ctx context.Context) []catalog.Product {
	if s.d.Popular == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, popularTimeout)
	defer cancel()
	ids, ok := s.cachedPopular(ctx)
	if !ok {
		ids = s.loadPopular(ctx)
	}
	if len(ids) == 0 {
		return nil
	}
	found, err := s.d.Catalog.GetProducts(ctx, ids)
	if err != nil {
		s.log.Debug("popular products: catalog unavailable", "err", err)
		return nil
	}
	byID := make(map[string]catalog.Product, len(found))
	for _, p := range found {
		byID[p.ID] = p
	}
	out := make([]catalog.Product, 0, len(ids))
	for _, id := range ids {
		if p, ok := byID[id]; ok {
			out = append(out, p)
			delete(byID, id)
		}
	}
	return out
}

// cachedPopular is the list of popular ids from the cache; an empty list
// means analytics failed a moment ago.
func (s *Server) cachedPopular(ctx context.Context) ([]string, bool) {
	raw, ok, err := s.d.Cache.Get(ctx, popularKey)
	if err != nil || !ok {
		return nil, false
	}
	var ids []string
	if json.Unmarshal(raw, &ids) != nil {
		return nil, false
	}
	return ids, true
}

// loadPopular asks analytics for the popular ids and caches the answer, or
// an empty list for popularDownTTL when analytics fails.
func (s *Server) loadPopular(ctx context.Context) []string {
	ids, err := s.d.Popular.PopularProductIDs(ctx, popularWindow, popularLimit)
	ttl := popularTTL
	if err != nil {
		s.log.Debug("popular products unavailable: home page without the strip", "err", err)
		ids, ttl = []string{}, popularDownTTL
	}
	if b, err := json.Marshal(ids); err == nil {
		_ = s.d.Cache.Set(ctx, popularKey, b, ttl) // a cache error costs a look-up, no more
	}
	return ids
}
