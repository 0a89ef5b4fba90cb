// Package cdn is the edge's shared HTTP cache, a point of presence in front
// of the storefronts: product images, thumbnails, static files and public
// catalog answers are fetched from a storefront once and then served from
// memory until they go stale.
//
// It follows the useful subset of RFC 9111 for shared caches. Only GET
// responses (HEAD is answered from them) to requests without Authorization
// are stored, and only when the origin says how long they stay fresh for a
// shared cache (s-maxage, or max-age with public or immutable), with no
// Set-Cookie, private, no-store or no-cache, and no Vary other than
// Accept-Encoding and Cookie. Accept-Encoding variants are kept apart by the
// normalized coding (zstd, gzip or identity, see compress.Negotiate), which
// is also what the origin is asked for; a response that varies by Cookie is
// stored only when fetched for a request without cookies, and served only to
// those (the storefront's catalog pages for anonymous visitors). Stale entries are revalidated with their validators;
// concurrent misses on one key make one origin request; range requests and
// responses too large to store pass straight through, streamed.
//
// The key is the request's path and query: one Cache serves one site.
package cdn

import (
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/globomantics/globomantics/internal/platform/clock"
)

// Defaults for the zero values of Config.
const (
	DefaultMaxBytes       = 64 << 20
	DefaultMaxObjectBytes = 8 << 20
)

// entryOverhead is the rough cost in bytes of an entry beyond its body,
// key and header text: the structs, map slots and slices.
const entryOverhead = 256

// Config configures a Cache. Zero values take the defaults.
type Config struct {
	// MaxBytes bounds the memory of stored responses (bodies, headers,
	// keys); the least recently used are evicted beyond it. Default 64 MiB.
	MaxBytes int64
	// MaxObjectBytes is the largest body stored; larger ones are streamed
	// through. Default 8 MiB, and never more than MaxBytes.
	MaxObjectBytes int64
	// Clock tells the time for freshness and ages. Default clock.Real{}.
	Clock clock.Clock
}

// Stats are a Cache's counters since it was made, and its current size.
type Stats struct {
	Hits        int64 `json:"hits"`        // answered from a fresh entry
	Misses      int64 `json:"misses"`      // fetched from the origin to fill the cache
	Stale       int64 `json:"stale"`       // answered from a stale entry while it was revalidated (stale-while-revalidate)
	Revalidated int64 `json:"revalidated"` // stale entries the origin confirmed with 304
	Collapsed   int64 `json:"collapsed"`   // requests that waited for another request's fetch instead of making their own
	Passes      int64 `json:"passes"`      // requests sent to the origin without the cache (not cacheable, HEAD misses, failed collapses)
	Stores      int64 `json:"stores"`      // responses stored
	Evictions   int64 `json:"evictions"`   // entries evicted to stay within MaxBytes
	Bytes       int64 `json:"bytes"`       // current size, as counted against MaxBytes
	Objects     int64 `json:"objects"`     // current number of entries
}

// Cache is an in-memory shared HTTP cache. Build it with New and put it in
// front of a handler with Wrap; it is safe for concurrent use.
type Cache struct {
	clk      clock.Clock
	maxBytes int64
	maxObj   int64

	mu      sync.Mutex
	entries map[string]*entry
	lru     entry // sentinel of the recency list: lru.next is the most recent
	bytes   int64
	flights map[string]*flight

	hits, misses, stale, revalidated, collapsed, passes, stores, evictions atomic.Int64

	// Shared, never modified values of X-Cache.
	xHit, xMiss, xStale, xRevalidated []string
}

// entry is a stored response. It is never changed once stored (a refresh
// stores a new entry), so it is read without the lock.
type entry struct {
	key        string
	path       string
	prev, next *entry

	status     int
	header     http.Header // as sent, with Content-Length, without Age
	body       []byte
	etag       string
	lastMod    time.Time // zero if none
	lastModRaw string
	storedAt   time.Time
	initialAge time.Duration
	pol        policy
	size       int64
}

// age is the entry's current age (RFC 9111, 4.2.3, trusting the origin's
// Age rather than its Date: origins are in the same data centre).
func (e *entry) age(now time.Time) time.Duration {
	return e.initialAge + max(0, now.Sub(e.storedAt))
}

// flight is one origin fetch that concurrent requests for a key wait for.
type flight struct {
	done  chan struct{}
	entry *entry // the stored result, nil if it could not be stored
}

// New returns an empty cache configured by cfg.
func New(cfg Config) *Cache {
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	if cfg.MaxObjectBytes <= 0 {
		cfg.MaxObjectBytes = DefaultMaxObjectBytes
	}
	cfg.MaxObjectBytes = min(cfg.MaxObjectBytes, cfg.MaxBytes)
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	c := &Cache{
		clk:          cfg.Clock,
		maxBytes:     cfg.MaxBytes,
		maxObj:       cfg.MaxObjectBytes,
		entries:      map[string]*entry{},
		flights:      map[string]*flight{},
		xHit:         []string{"HIT"},
		xMiss:        []string{"MISS"},
		xStale:       []string{"STALE"},
		xRevalidated: []string{"REVALIDATED"},
	}
	c.lru.next, c.lru.prev = &c.lru, &c.lru
	return c
}

// Stats returns the cache's counters and size.
func (c *Cache) Stats() Stats {
	c.mu.Lock()
	bytes, objects := c.bytes, int64(len(c.entries))
	c.mu.Unlock()
	return Stats{
		Hits:        c.hits.Load(),
		Misses:      c.misses.Load(),
		Stale:       c.stale.Load(),
		Revalidated: c.revalidated.Load(),
		Collapsed:   c.collapsed.Load(),
		Passes:      c.passes.Load(),
		Stores:      c.stores.Load(),
		Evictions:   c.evictions.Load(),
		Bytes:       bytes,
		Objects:     objects,
	}
}

// Purge removes every entry whose URL path starts with prefix ("" removes
// all) and returns how many it removed. A fetch in flight when Purge runs
// may still store its result.
func (c *Cache) Purge(prefix string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, e := range c.entries {
		if strings.HasPrefix(e.path, prefix) {
			c.remove(e)
			n++
		}
	}
	return n
}

// get returns the entry for the key without variant (a response that does
// not vary), else for the key with the variant, and marks it used. key is
// the base key followed by the variant; baseLen is the base key's length.
func (c *Cache) get(key []byte, baseLen int) *entry {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[string(key[:baseLen])]
	if e == nil {
		e = c.entries[string(key)]
	}
	if e != nil && c.lru.next != e {
		unlink(e)
		c.pushFront(e)
	}
	return e
}

// put stores e, replacing what was stored under its key, and evicts the
// least recently used entries beyond MaxBytes. A response that does not
// vary replaces its variants, and a variant the response that did not.
func (c *Cache) put(e *entry, base string) {
	if e.size > c.maxBytes {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.entries[e.key]; old != nil {
		c.remove(old)
	}
	if e.pol.varies {
		if old := c.entries[base]; old != nil {
			c.remove(old)
		}
	} else {
		for _, v := range [...]string{"zstd", "gzip", "identity"} {
			if old := c.entries[base+v]; old != nil {
				c.remove(old)
			}
		}
	}
	c.entries[e.key] = e
	c.pushFront(e)
	c.bytes += e.size
	for c.bytes > c.maxBytes && c.lru.prev != &c.lru {
		c.remove(c.lru.prev)
		c.evictions.Add(1)
	}
	c.stores.Add(1)
}

// drop removes the entry stored under key if it is e.
func (c *Cache) drop(e *entry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries[e.key] == e {
		c.remove(e)
	}
}

// remove unlinks e and forgets it; c.mu is held.
func (c *Cache) remove(e *entry) {
	delete(c.entries, e.key)
	unlink(e)
	c.bytes -= e.size
}

func (c *Cache) pushFront(e *entry) {
	e.prev, e.next = &c.lru, c.lru.next
	c.lru.next.prev = e
	c.lru.next = e
}

func unlink(e *entry) {
	e.prev.next = e.next
	e.next.prev = e.prev
	e.prev, e.next = nil, nil
}
