package storefront

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/globomantics/globomantics/internal/catalog"
	"github.com/globomantics/globomantics/internal/platform/errs"
)

// Browsing is the "available" side of the storefront's CAP choice. The
// category list is read through a look-aside cache: fresh for 60 seconds,
// after which the catalog is asked again; a second, long-lived copy is kept
// so that when the catalog cannot answer, visitors still get the last known
// categories rather than an error. A category added or renamed may therefore
// take up to a minute to appear (longer during a catalog outage). Carts,
// sessions and orders are never served from this cache.
const (
	categoriesKey      = "storefront:categories"
	categoriesStaleKey = "storefront:categories:stale"
	categoriesTTL      = 60 * time.Second
	categoriesStaleTTL = 24 * time.Hour

	// catalogCacheControl lets browsers keep catalog responses for a
	// short while, and shared caches (the edge's CDN, a point of
	// presence) for a second: a change shows there as fast as on the
	// storefront's own shared answers (pageCacheTTL).
	catalogCacheControl = "public, max-age=30, s-maxage=1"
	// privateCacheControl marks anything about one visitor.
	privateCacheControl = "private, no-store"
)

// categories returns the categories, from the cache when it holds a fresh
// copy. The result must not be modified.
func (s *Server) categories(ctx context.Context) ([]catalog.Category, error) {
	if cats, ok := s.cachedCategories(ctx, categoriesKey); ok {
		return cats, nil
	}
	cats, err := s.d.Catalog.ListCategories(ctx)
	if err != nil {
		if stale, ok := s.cachedCategories(ctx, categoriesStaleKey); ok {
			s.log.Warn("catalog unavailable, serving cached categories", "err", err)
			return stale, nil
		}
		return nil, errs.E("storefront.categories", err)
	}
	if cats == nil {
		cats = []catalog.Category{}
	}
	if b, err := json.Marshal(cats); err == nil {
		if err := s.d.Cache.Set(ctx, categoriesKey, b, categoriesTTL); err != nil {
			s.log.Warn("category cache set failed", "err", err)
		}
		_ = s.d.Cache.Set(ctx, categoriesStaleKey, b, categoriesStaleTTL)
	}
	return cats, nil
}

func (s *Server) cachedCategories(ctx context.Context, key string) ([]catalog.Category, bool) {
	b, ok, err := s.d.Cache.Get(ctx, key)
	if err != nil {
		s.log.Warn("category cache get failed", "err", err)
		return nil, false
	}
	if !ok {
		return nil, false
	}
	var cats []catalog.Category
	if err := json.Unmarshal(b, &cats); err != nil || cats == nil {
		return nil, false
	}
	return cats, true
}

// category returns the category with id, or errs.NotFound.
func (s *Server) category(ctx context.Context, id string) (catalog.Category, error) {
	cats, err := s.categories(ctx)
	if err != nil {
		return catalog.Category{}, err
	}
	for _, c := range cats {
		if c.ID == id {
			return c, nil
		}
	}
	return catalog.Category{}, errs.E("storefront.category", errs.NotFound, errs.Msg("no such category"))
}

// writeCacheable writes v, a catalog answer, as JSON that shared caches may
// keep for a short while, with a strong ETag over the body (a matching
// If-None-Match gets 304) and the StalenessHeader.
func (s *Server) writeCacheable(w http.ResponseWriter, r *http.Request, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return errs.E("storefront.writeCacheable", err)
	}
	b = append(b, '\n')
	etag := etagOf(b)
	h := w.Header()
	h.Set("Cache-Control", catalogCacheControl)
	h.Set("ETag", etag)
	h.Set(StalenessHeader, strconv.Itoa(int((s.d.CatalogStaleness+time.Second-1)/time.Second)))
	if etagMatches(r.Header.Get("If-None-Match"), etag) {
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	h.Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
	return nil
}

// etagMatches applies If-None-Match's weak comparison: any listed tag (with
// or without W/) equal to etag, or "*".
func etagMatches(header, etag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimSpace(t)
		if t == "*" || strings.TrimPrefix(t, "W/") == etag {
			return true
		}
	}
	return false
}

// etagOf is the strong ETag of a body: 144 bits of its SHA-256, for
// catalog answers, shared pages and the API documents alike.
func etagOf(b []byte) string {
	sum := sha256.Sum256(b)
	return `"` + base64.RawURLEncoding.EncodeToString(sum[:18]) + `"`
}
