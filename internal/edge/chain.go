package edge

import (
	"net/http"
	"strings"

	"github.com/globomantics/globomantics/internal/edge/cdn"
	"github.com/globomantics/globomantics/internal/platform/compress"
)

// content is the public listener's path to the storefront pool:
// compression, then the CDN cache for GET and HEAD of /static/ and
// /media/ (when cfg.CDNBytes > 0), then the proxy.
type content struct {
	proxy    http.Handler
	cached   http.Handler // cache in front of proxy; nil without a cache
	cache    *cdn.Cache
	inner    http.Handler // cached-or-proxy chooser
	compress http.Handler // compress.Handler(inner)
}

func newContent(cfg Config, proxy http.Handler) *content {
	c := &content{proxy: proxy}
	if cfg.CDNBytes > 0 {
		c.cache = cdn.New(cdn.Config{MaxBytes: cfg.CDNBytes, Clock: cfg.Clock})
		c.cached = c.cache.Wrap(proxy)
	}
	c.inner = http.HandlerFunc(c.route)
	c.compress = compress.Handler(c.inner)
	return c
}

// route sends cacheable paths through the cache.
func (c *content) route(w http.ResponseWriter, r *http.Request) {
	if c.cached != nil && (r.Method == http.MethodGet || r.Method == http.MethodHead) &&
		(strings.HasPrefix(r.URL.Path, "/static/") || strings.HasPrefix(r.URL.Path, "/media/")) {
		c.cached.ServeHTTP(w, r)
		return
	}
	c.proxy.ServeHTTP(w, r)
}

// ServeHTTP compresses only for clients that accept an encoding: without
// Accept-Encoding the answer is identity, and the compressor's writer is
// skipped.
func (c *content) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if len(r.Header["Accept-Encoding"]) == 0 {
		c.inner.ServeHTTP(w, r)
		return
	}
	c.compress.ServeHTTP(w, r)
}

// cdnStats is the cache's counters, or nil without a cache.
func (c *content) cdnStats() *cdn.Stats {
	if c.cache == nil {
		return nil
	}
	s := c.cache.Stats()
	return &s
}
