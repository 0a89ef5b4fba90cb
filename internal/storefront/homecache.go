package storefront

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/globomantics/globomantics/internal/catalog"
	"github.com/globomantics/globomantics/internal/platform/clock"
	"github.com/globomantics/globomantics/internal/platform/errs"
)

// The catalog pages an anonymous visitor sees (home, category, product) are
// the same for every anonymous visitor: the header has no account and a
// cart count of 0, and the forms carry no token (cross-origin posts are
// refused by origin headers, see checkOrigin). So each such page is
// rendered at most once per pageCacheTTL per instance and then served from
// memory to every visitor with no session, cart or read-after cookie;
// concurrent misses of one page wait for a single render. Anyone with one
// of those cookies gets a page rendered for them, every time.
//
// Staleness: the storefront hears of no catalog changes, so a changed price
// or stock shows on a cached page within pageCacheTTL (on top of the
// catalog's own caches), well inside what catalog answers already promise
// (Deps.CatalogStaleness) and what the page tells shared caches
// (catalogCacheControl).
const (
	// pageCacheTTL is how long a rendered anonymous page is served: a
	// catalog change (whose cache entries the catalog deletes at once)
	// shows within it.
	pageCacheTTL = time.Second
	// pageCacheMax bounds the pages kept (distinct paths and queries): past
	// it, new pages are rendered for each request until entries expire.
	pageCacheMax = 1024
	// pageCacheMaxKey is the longest path and query that is cached.
	pageCacheMaxKey = 512
	// homeListTTL is how long the home page's product list is reused for
	// the pages that are not shared (logged-in visitors, carts).
	homeListTTL = time.Second
	// renderTimeout bounds a shared render, which runs on after the
	// visitor who started it has gone, for the others waiting on it.
	renderTimeout = 10 * time.Second
)

// pageCache holds rendered anonymous pages and the home page's product
// list. It is safe for concurrent use.
type pageCache struct {
	clk clock.Clock
	ttl time.Duration
	max int

	mu    sync.RWMutex
	pages map[string]*cachedPage

	list        atomic.Pointer[cachedList]
	flights     singleflight.Group // pages, by key
	listFlights singleflight.Group

	hits, misses, renders, listLoads atomic.Int64
}

// cachedPage is one rendered page, served as is; it is never modified
// once stored.
type cachedPage struct {
	header  http.Header // as the page set it, plus the ETag; slices clipped
	body    []byte
	etag    string
	expires time.Time
}

type cachedList struct {
	products []catalog.Product
	expires  time.Time
}

// pageCacheStats counts the page cache's use since the server started.
type pageCacheStats struct {
	Hits, Misses, Renders, ListLoads int64
}

func newPageCache(clk clock.Clock) *pageCache {
	return &pageCache{clk: clk, ttl: pageCacheTTL, max: pageCacheMax, pages: map[string]*cachedPage{}}
}

func (c *pageCache) stats() pageCacheStats {
	return pageCacheStats{Hits: c.hits.Load(), Misses: c.misses.Load(), Renders: c.renders.Load(), ListLoads: c.listLoads.Load()}
}

func (c *pageCache) get(key string, now time.Time) *cachedPage {
	c.mu.RLock()
	p := c.pages[key]
	c.mu.RUnlock()
	if p == nil || !now.Before(p.expires) {
		return nil
	}
	return p
}

func (c *pageCache) put(key string, p *cachedPage, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.pages[key]; !ok && len(c.pages) >= c.max {
		for k, old := range c.pages {
			if !now.Before(old.expires) {
				delete(c.pages, k)
			}
		}
		if len(c.pages) >= c.max {
			return
		}
	}
	c.pages[key] = p
}

// errUncacheable says a render could not be shared (not a 200, or it set
// a cookie): the visitor's page is rendered for them alone.
var errUncacheable = errors.New("storefront: page not shareable")

// sharedVisitor reports whether r's visitor sees the shared anonymous
// page: nothing personal (see personal) and no read-after positions (whose
// reads must see the visitor's own writes).
func (s *Server) sharedVisitor(r *http.Request) bool {
	if s.personal(r) {
		return false
	}
	_, err := r.Cookie(s.cookieName(ReadAfterCookie))
	return err != nil
}

// sharedPage serves a public catalog page: from the page cache for a
// shared visitor (rendering it once when missing or expired, with
// concurrent misses waiting for that render), by calling page directly
// for anyone else. page must render the same answer for every shared
// visitor of the same path and query.
func (s *Server) sharedPage(w http.ResponseWriter, r *http.Request, page func(http.ResponseWriter, *http.Request) error) error {
	if !s.sharedVisitor(r) {
		return page(w, r)
	}
	return s.sharedAnswer(w, r, page)
}

// sharedAnswer is sharedPage for answers that are the same for every
// visitor, whatever their cookies (the JSON product API): all of them are
// served from the page cache.
func (s *Server) sharedAnswer(w http.ResponseWriter, r *http.Request, page func(http.ResponseWriter, *http.Request) error) error {
	c := s.shared
	key := r.URL.Path + "?" + r.URL.RawQuery
	if c == nil || len(key) > pageCacheMaxKey {
		return page(w, r)
	}
	if p := c.get(key, s.d.Clock.Now()); p != nil {
		c.hits.Add(1)
		p.serve(w, r)
		return nil
	}
	c.misses.Add(1)
	ch := c.flights.DoChan(key, func() (any, error) {
		if p := c.get(key, s.d.Clock.Now()); p != nil {
			return p, nil
		}
		// The render outlives the visitor who started it when others wait.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), renderTimeout)
		defer cancel()
		c.renders.Add(1)
		rec := &pageRecorder{header: http.Header{}}
		// The shared render is the whole answer, whatever this visitor's
		// copy is: serve answers If-None-Match for each.
		rr := r.Clone(ctx)
		rr.Header.Del("If-None-Match")
		if err := page(rec, rr); err != nil {
			return nil, err
		}
		if rec.status != http.StatusOK || len(rec.header.Values("Set-Cookie")) > 0 {
			return nil, errUncacheable
		}
		p := newCachedPage(rec, s.d.Clock.Now().Add(c.ttl))
		c.put(key, p, s.d.Clock.Now())
		return p, nil
	})
	var res singleflight.Result
	select {
	case res = <-ch:
	case <-r.Context().Done():
		return errs.E("storefront.sharedPage", errs.Unavailable, r.Context().Err())
	}
	if errors.Is(res.Err, errUncacheable) {
		return page(w, r)
	}
	if res.Err != nil {
		return res.Err
	}
	res.Val.(*cachedPage).serve(w, r)
	return nil
}

func newCachedPage(rec *pageRecorder, expires time.Time) *cachedPage {
	etag := etagOf(rec.body)
	h := make(http.Header, len(rec.header)+1)
	for k, v := range rec.header {
		h[k] = slices.Clip(slices.Clone(v))
	}
	h["Etag"] = []string{etag}
	// With its length known the answer goes out in one piece, not chunked.
	h["Content-Length"] = []string{strconv.Itoa(len(rec.body))}
	return &cachedPage{header: h, body: rec.body, etag: etag, expires: expires}
}

// serve writes the page: its headers replace those already set (the
// private Cache-Control of pageHandler), and a matching If-None-Match gets
// 304. The header values are shared, clipped slices: adding to them
// copies.
func (p *cachedPage) serve(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	for k, v := range p.header {
		h[k] = v
	}
	if etagMatches(r.Header.Get("If-None-Match"), p.etag) {
		h.Del("Content-Length")
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(p.body)
}

// pageRecorder captures a page render for the cache.
type pageRecorder struct {
	header http.Header
	status int
	body   []byte
}

func (r *pageRecorder) Header() http.Header { return r.header }

func (r *pageRecorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}

func (r *pageRecorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	r.body = append(r.body, b...)
	return len(b), nil
}

// homeProducts returns the home page's products (the featured selection,
// featured.go), reusing a list loaded less than homeListTTL ago;
// concurrent loads are collapsed into one. The result must not be
// modified.
func (s *Server) homeProducts(ctx context.Context) ([]catalog.Product, error) {
	c := s.shared
	load := func(ctx context.Context) ([]catalog.Product, error) {
		return s.featuredProducts(ctx, homeProducts)
	}
	if c == nil {
		return load(ctx)
	}
	if l := c.list.Load(); l != nil && s.d.Clock.Now().Before(l.expires) {
		return l.products, nil
	}
	ch := c.listFlights.DoChan("home", func() (any, error) {
		if l := c.list.Load(); l != nil && s.d.Clock.Now().Before(l.expires) {
			return l.products, nil
		}
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), renderTimeout)
		defer cancel()
		c.listLoads.Add(1)
		items, err := load(lctx)
		if err != nil {
			return nil, err
		}
		c.list.Store(&cachedList{products: items, expires: s.d.Clock.Now().Add(homeListTTL)})
		return items, nil
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		return res.Val.([]catalog.Product), nil
	case <-ctx.Done():
		return nil, errs.E("storefront.homeProducts", errs.Unavailable, ctx.Err())
	}
}
