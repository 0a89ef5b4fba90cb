package analytics

import (
	"cmp"
	"context"
	"hash/maphash"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/globomantics/globomantics/internal/platform/bus"
	"github.com/globomantics/globomantics/internal/platform/clock"
	"github.com/globomantics/globomantics/internal/platform/ids"
)

// Emitter counts, in memory, the product pages and searches a storefront
// serves, and publishes one summary of each per interval (PageViewsCounted,
// SearchesCounted) instead of one message per event: a page view costs a
// map increment under one of emitterShards locks, with no allocation unless
// the product is new in the window, and the JSON and the broker's round
// trip are paid once a second, not once a page. PageViewed and SearchMade
// never wait on the broker. It is safe for concurrent use.
//
// The trade: counts live in this process until the summary is published.
// Run publishes what was counted when its context ends (a clean stop, after
// the HTTP server has finished its requests), so a clean stop loses nothing;
// a crash loses at most the last interval (1 s by default), and a summary
// the broker refuses is dropped and counted (Failed). Each window keeps at
// most MaxKeys distinct products and MaxKeys distinct queries: past that,
// views and searches of new keys are dropped, counted (Dropped, the
// summary's dropped field and a log line), so a flood of made-up ids or
// queries cannot grow memory.
type Emitter struct {
	pub      bus.Publisher
	clock    clock.Clock
	log      *slog.Logger
	instance string
	every    time.Duration
	timeout  time.Duration
	shardCap int // distinct keys per shard and window
	seed     maphash.Seed

	views    [emitterShards]viewShard
	searches [emitterShards]searchShard

	flushMu sync.Mutex // one flush at a time: Run's tick and Flush
	start   time.Time  // the current window's start, under flushMu

	// viewsDropped and searchesDropped are the current window's dropped
	// views and searches, dropped all of them since the emitter was made.
	viewsDropped, searchesDropped, dropped, sent, failed atomic.Int64
}

// emitterShards is how many locks the counts are spread over, so that
// concurrent requests rarely wait on each other.
const emitterShards = 16

// viewShard and searchShard are one lock's part of the current window's
// counts. The padding keeps two shards' locks off one cache line.
type viewShard struct {
	mu      sync.Mutex
	m       map[string]int64
	counted int64 // since the emitter was made (Stats)
	_       [32]byte
}

type searchShard struct {
	mu      sync.Mutex
	m       map[string]*SearchCount
	counted int64
	_       [32]byte
}

// EmitterOptions tune an Emitter; zero values get the defaults.
type EmitterOptions struct {
	// Instance names this storefront in its summaries' ids; "" means a
	// fresh id, so a restarted process never reuses its predecessor's.
	Instance string
	// Interval is how often the counts are published; 0 means 1 s.
	Interval time.Duration
	// MaxKeys bounds the distinct products, and the distinct queries,
	// counted per window; 0 means DefaultMaxKeys.
	MaxKeys int
	// PublishTimeout bounds one publish (the broker's acknowledgement);
	// 0 means 2 s. A summary whose publish fails is counted and dropped.
	PublishTimeout time.Duration
}

// DefaultMaxKeys is the default bound on distinct products and distinct
// queries per window: far more than a second of one storefront's traffic
// sees, small enough (about a megabyte) to be harmless.
const DefaultMaxKeys = 10000

// MaxSummaryCounts is the most counts one summary message carries; a
// window with more is published in several parts, each well under the
// broker's message size limit.
const MaxSummaryCounts = 1000

// NewEmitter returns an emitter publishing through pub (the bus); log may be
// nil. Nothing is published until Run runs.
func NewEmitter(pub bus.Publisher, clk clock.Clock, log *slog.Logger, o EmitterOptions) *Emitter {
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	if o.MaxKeys <= 0 {
		o.MaxKeys = DefaultMaxKeys
	}
	if o.PublishTimeout <= 0 {
		o.PublishTimeout = 2 * time.Second
	}
	if log == nil {
		log = slog.Default()
	}
	now := clk.Now()
	if o.Instance == "" {
		o.Instance = ids.New("sf", now)
	}
	e := &Emitter{pub: pub, clock: clk, log: log, instance: o.Instance, every: o.Interval, timeout: o.PublishTimeout,
		shardCap: max(1, (o.MaxKeys+emitterShards-1)/emitterShards), seed: maphash.MakeSeed(), start: now}
	for i := range e.views {
		e.views[i].m = make(map[string]int64)
		e.searches[i].m = make(map[string]*SearchCount)
	}
	return e
}

// Instance is the instance id the emitter's summaries carry.
func (e *Emitter) Instance() string { return e.instance }

func (e *Emitter) shard(key string) int {
	return int(maphash.String(e.seed, key) % emitterShards)
}

// PageViewed counts, without waiting, that the page of product productID
// was served.
func (e *Emitter) PageViewed(productID string) {
	if productID == "" {
		return
	}
	sh := &e.views[e.shard(productID)]
	sh.mu.Lock()
	if n, ok := sh.m[productID]; ok {
		sh.m[productID] = n + 1
		sh.counted++
	} else if len(sh.m) < e.shardCap {
		// The key is kept past the request: a copy, so the map does not
		// pin the request's memory.
		sh.m[strings.Clone(productID)] = 1
		sh.counted++
	} else {
		sh.mu.Unlock()
		e.drop(&e.viewsDropped)
		return
	}
	sh.mu.Unlock()
}

// SearchMade counts, without waiting, a search for query (normalised here)
// whose first page showed results products.
func (e *Emitter) SearchMade(query string, results int) {
	q := NormalizeQuery(query)
	if q == "" {
		return
	}
	sh := &e.searches[e.shard(q)]
	sh.mu.Lock()
	c, ok := sh.m[q]
	if !ok {
		if len(sh.m) >= e.shardCap {
			sh.mu.Unlock()
			e.drop(&e.searchesDropped)
			return
		}
		c = &SearchCount{Query: q}
		sh.m[q] = c
	}
	c.Searches++
	if results <= 0 {
		c.NoResult++
	}
	sh.counted++
	sh.mu.Unlock()
}

func (e *Emitter) drop(window *atomic.Int64) {
	window.Add(1)
	if n := e.dropped.Add(1); n == 1 || n%10000 == 0 {
		e.log.Warn("analytics: too many distinct keys in the window: views or searches dropped", "dropped", n, "max_keys", e.shardCap*emitterShards)
	}
}

// Run publishes the counts every interval until ctx ends, then publishes
// what was counted since the last time (bounded by the publish timeout,
// on a context of its own since ctx is over), so a clean stop loses
// nothing. The app stops it after the HTTP server has finished serving and
// before the broker closes.
func (e *Emitter) Run(ctx context.Context) {
	t := time.NewTicker(e.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			e.Flush(context.WithoutCancel(ctx))
			return
		case <-t.C:
			e.Flush(ctx)
		}
	}
}

// Flush publishes, at once, what was counted since the last flush as one
// window (nothing when nothing was counted), each publish bounded by the
// publish timeout.
func (e *Emitter) Flush(ctx context.Context) {
	e.flushMu.Lock()
	defer e.flushMu.Unlock()
	end := e.clock.Now()
	start := e.start
	e.start = end
	viewsDropped, searchesDropped := e.viewsDropped.Swap(0), e.searchesDropped.Swap(0)
	var views []ProductViews
	for i := range e.views {
		sh := &e.views[i]
		sh.mu.Lock()
		m := sh.m
		if len(m) == 0 {
			sh.mu.Unlock()
			continue // nothing counted: the map stays the shard's
		}
		// A fresh map of the same size: the next window likely sees
		// the same products, and this one is read outside the lock.
		sh.m = make(map[string]int64, len(m))
		sh.mu.Unlock()
		for id, n := range m {
			views = append(views, ProductViews{ProductID: id, Views: n})
		}
	}
	var searches []SearchCount
	for i := range e.searches {
		sh := &e.searches[i]
		sh.mu.Lock()
		m := sh.m
		if len(m) == 0 {
			sh.mu.Unlock()
			continue // nothing counted: the map stays the shard's
		}
		// A fresh map of the same size: the next window likely sees
		// the same products, and this one is read outside the lock.
		sh.m = make(map[string]*SearchCount, len(m))
		sh.mu.Unlock()
		for _, c := range m {
			searches = append(searches, *c)
		}
	}
	if viewsDropped > 0 || searchesDropped > 0 {
		e.log.Warn("analytics window summarised with keys dropped", "window_start", start, "window_end", end,
			"views_dropped", viewsDropped, "searches_dropped", searchesDropped)
	}
	if len(views) == 0 && len(searches) == 0 {
		return
	}
	// Sorted, so that the parts of a window are the same whoever reads them.
	slices.SortFunc(views, func(a, b ProductViews) int { return cmp.Compare(a.ProductID, b.ProductID) })
	slices.SortFunc(searches, func(a, b SearchCount) int { return cmp.Compare(a.Query, b.Query) })
	for part, from := 0, 0; from < len(views); part, from = part+1, from+MaxSummaryCounts {
		s := PageViewsCounted{Instance: e.instance, WindowStart: start, WindowEnd: end, Part: part,
			Counts: views[from:min(from+MaxSummaryCounts, len(views))]}
		if part == 0 {
			s.Dropped = viewsDropped
		}
		e.publish(ctx, SubjectPageViewsCounted, SummaryID("pv", e.instance, start, part), s)
	}
	for part, from := 0, 0; from < len(searches); part, from = part+1, from+MaxSummaryCounts {
		s := SearchesCounted{Instance: e.instance, WindowStart: start, WindowEnd: end, Part: part,
			Counts: searches[from:min(from+MaxSummaryCounts, len(searches))]}
		if part == 0 {
			s.Dropped = searchesDropped
		}
		e.publish(ctx, SubjectSearchesCounted, SummaryID("sq", e.instance, start, part), s)
	}
}

// publish publishes one summary, counting the outcome.
func (e *Emitter) publish(ctx context.Context, subject, id string, data any) {
	pctx, cancel := context.WithTimeout(ctx, e.timeout)
	err := e.pub.Publish(pctx, subject, id, data)
	cancel()
	if err != nil {
		if n := e.failed.Add(1); n == 1 || n%100 == 0 {
			e.log.Warn("analytics summary not published: its counts are lost", "subject", subject, "id", id, "failed", n, "err", err)
		}
		return
	}
	e.sent.Add(1)
}

// EmitterStats counts an emitter's work since it was made.
type EmitterStats struct {
	Counted int64 `json:"counted"` // views and searches counted
	Dropped int64 `json:"dropped"` // views and searches of new keys past MaxKeys
	Sent    int64 `json:"sent"`    // summary messages acknowledged by the broker
	Failed  int64 `json:"failed"`  // summary messages whose publish failed
}

// Stats reports the emitter's counts.
func (e *Emitter) Stats() EmitterStats {
	var counted int64
	for i := range e.views {
		e.views[i].mu.Lock()
		counted += e.views[i].counted
		e.views[i].mu.Unlock()
		e.searches[i].mu.Lock()
		counted += e.searches[i].counted
		e.searches[i].mu.Unlock()
	}
	return EmitterStats{Counted: counted, Dropped: e.dropped.Load(), Sent: e.sent.Load(), Failed: e.failed.Load()}
}
