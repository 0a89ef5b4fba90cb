package edge

import (
	"net/http"
	"strings"
	"sync/atomic"

	"github.com/globomantics/globomantics/internal/edge/cdn"
	"github.com/globomantics/globomantics/internal/platform/compress"
)

// content is the public listener's path to the storefront pool. GET and
// HEAD requests that could be shared go through the CDN cache (when
// cfg.CDNBytes > 0): every request for /static/ and /media/, and any other
// from a client with no cookie and no Authorization (an anonymous visitor,
// whose catalog pages the storefront marks public with s-maxage); the
// cache stores only what the answer's Cache-Control allows, compressed
// variants included (compression runs behind it). Everything else goes
// to the proxy, compressed for clients that accept an encoding.
type content struct {
	proxy    http.Handler
	compress http.Handler // compress.Handler(proxy)
	cached   http.Handler // cache in front of compress; nil without a cache
	cache    *cdn.Cache
	bypassed atomic.Int64 // requests that could not use the cache
}

func newContent(cfg Config, proxy http.Handler) *content {
	c := &content{proxy: proxy, compress: compress.Handler(proxy)}
	if cfg.CDNBytes > 0 {
		c.cache = cdn.New(cdn.Config{MaxBytes: cfg.CDNBytes, Clock: cfg.Clock})
		c.cached = c.cache.Wrap(c.compress)
	}
	return c
}

// shareable reports whether r may be answered from, or fill, the cache.
func shareable(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	p := r.URL.Path
	if strings.HasPrefix(p, "/static/") || strings.HasPrefix(p, "/media/") {
		return true
	}
	return len(r.Header["Cookie"]) == 0 && len(r.Header["Authorization"]) == 0
}

// ServeHTTP routes r: the cache for shareable requests, else the proxy,
// through the compressor only for clients that accept an encoding.
func (c *content) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case c.cached != nil && shareable(r):
		c.cached.ServeHTTP(w, r)
	case len(r.Header["Accept-Encoding"]) == 0:
		c.bypassed.Add(1)
		c.proxy.ServeHTTP(w, r)
	default:
		c.bypassed.Add(1)
		c.compress.ServeHTTP(w, r)
	}
}

// cdnStats is the cache's counters, or nil without a cache.
func (c *content) cdnStats() *cdn.Stats {
	if c.cache == nil {
		return nil
	}
	s := c.cache.Stats()
	return &s
}
