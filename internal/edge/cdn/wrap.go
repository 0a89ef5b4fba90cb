package cdn

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/globomantics/globomantics/internal/platform/compress"
)

// backgroundTimeout bounds a stale-while-revalidate refresh, which no
// client waits for.
const backgroundTimeout = 30 * time.Second

// Wrap returns a handler that answers from the cache what it can and sends
// the rest to next, storing what may be stored. Answers carry X-Cache (HIT,
// MISS, REVALIDATED, or STALE while a stale-while-revalidate refresh runs)
// and, when from the cache, Age.
func (c *Cache) Wrap(next http.Handler) http.Handler {
	return &wrapped{c: c, next: next}
}

type wrapped struct {
	c    *Cache
	next http.Handler
}

func (h *wrapped) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c := h.c
	if !cacheableRequest(r) {
		h.pass(w, r)
		return
	}
	variant := compress.Negotiate(r.Header.Get("Accept-Encoding"))
	var kb [256]byte
	path := r.URL.RawPath
	if path == "" {
		path = r.URL.Path
	}
	key := append(kb[:0], path...)
	key = append(key, '?')
	key = append(key, r.URL.RawQuery...)
	key = append(key, 0)
	baseLen := len(key)
	key = append(key, variant...)

	t := target{path: path, variant: variant, cookie: len(r.Header["Cookie"]) > 0}
	now := c.clk.Now()
	e := c.get(key, baseLen)
	if e != nil && e.pol.cookie && t.cookie {
		e = nil // kept for visitors without cookies only
	}
	if e != nil {
		age := e.age(now)
		if age < e.pol.fresh {
			c.hits.Add(1)
			c.serve(w, r, e, age, c.xHit)
			return
		}
		if age < e.pol.fresh+e.pol.swr {
			c.stale.Add(1)
			c.serve(w, r, e, age, c.xStale)
			t.key, t.base = string(key), string(key[:baseLen])
			h.refreshInBackground(r, t, e)
			return
		}
		if !e.pol.validor {
			e = nil
		}
	}
	if r.Method == http.MethodHead {
		// Not worth filling the cache for: the origin answers HEAD.
		h.pass(w, r)
		return
	}
	t.key, t.base = string(key), string(key[:baseLen])
	h.fetch(w, r, t, e)
}

// target is where a request's response is stored.
type target struct {
	key     string // base + variant
	base    string // path, '?', query, NUL
	path    string
	variant string // the normalized Accept-Encoding
	cookie  bool   // the request has cookies
}

// flightKey keys the fetches requests may share: requests with cookies do
// not share the fetches of requests without, whose answers may be
// stored for visitors without cookies only.
func (t target) flightKey() string {
	if t.cookie {
		return t.key + "\x00c"
	}
	return t.key
}

// pass sends r to the origin without the cache.
func (h *wrapped) pass(w http.ResponseWriter, r *http.Request) {
	h.c.passes.Add(1)
	w.Header()["X-Cache"] = h.c.xMiss
	h.next.ServeHTTP(w, r)
}

// serve answers r from e, whose age is age: 304 when the client's
// validators match, headers only for HEAD, else the stored body in one
// write.
func (c *Cache) serve(w http.ResponseWriter, r *http.Request, e *entry, age time.Duration, xcache []string) {
	h := w.Header()
	for k, v := range e.header {
		h[k] = v
	}
	h["Age"] = []string{strconv.FormatInt(int64(age/time.Second), 10)}
	h["X-Cache"] = xcache
	if e.status == http.StatusOK && notModified(r, e) {
		delete(h, "Content-Length")
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.WriteHeader(e.status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(e.body)
	}
}

// notModified reports whether the client's conditional headers match e
// (RFC 9110, 13.2.2: If-None-Match, or else If-Modified-Since).
func notModified(r *http.Request, e *entry) bool {
	if inm := r.Header.Get("If-None-Match"); inm != "" {
		return e.etag != "" && etagMatch(inm, e.etag)
	}
	if ims := r.Header.Get("If-Modified-Since"); ims != "" && !e.lastMod.IsZero() {
		t, err := http.ParseTime(ims)
		return err == nil && !e.lastMod.After(t)
	}
	return false
}

// fetch gets the response for key from the origin, or waits for the fetch
// another request already started. stale, if not nil, is the stale entry to
// revalidate.
func (h *wrapped) fetch(w http.ResponseWriter, r *http.Request, t target, stale *entry) {
	c := h.c
	key := t.flightKey()
	c.mu.Lock()
	if f := c.flights[key]; f != nil {
		c.mu.Unlock()
		c.collapsed.Add(1)
		select {
		case <-f.done:
		case <-r.Context().Done():
			return // the client left
		}
		if e := f.entry; e != nil {
			c.serve(w, r, e, e.age(c.clk.Now()), c.xHit)
			return
		}
		h.pass(w, r) // the answer could not be shared: ask for one's own
		return
	}
	f := &flight{done: make(chan struct{})}
	c.flights[key] = f
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.flights, key)
		c.mu.Unlock()
		close(f.done)
	}()
	f.entry = h.fill(w, r, t, stale)
}

// refreshInBackground revalidates a stale entry served under
// stale-while-revalidate, unless a fetch for its key is already running.
func (h *wrapped) refreshInBackground(r *http.Request, t target, stale *entry) {
	c := h.c
	key := t.flightKey()
	c.mu.Lock()
	if c.flights[key] != nil {
		c.mu.Unlock()
		return
	}
	f := &flight{done: make(chan struct{})}
	c.flights[key] = f
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), backgroundTimeout)
	req := r.Clone(ctx)
	req.Method = http.MethodGet
	req.Header.Del("If-None-Match")
	req.Header.Del("If-Modified-Since")
	go func() {
		defer cancel()
		defer func() {
			// A panicking origin (a reverse proxy aborting, say) must not
			// take the edge down from a goroutine no server guards: the
			// entry stays stale and the next request tries again.
			_ = recover()
			c.mu.Lock()
			delete(c.flights, key)
			c.mu.Unlock()
			close(f.done)
		}()
		f.entry = h.fill(&discard{header: http.Header{}}, req, t, stale)
	}()
}

// fill sends r to the origin, asking for the variant (and revalidating
// stale if not nil), answers the client through w as the response arrives,
// and stores the response if it may. It returns the stored entry, or nil.
func (h *wrapped) fill(w http.ResponseWriter, r *http.Request, t target, stale *entry) *entry {
	c := h.c
	out := r.Clone(r.Context())
	out.Header.Del("If-None-Match")
	out.Header.Del("If-Modified-Since")
	out.Header.Set("Accept-Encoding", t.variant)
	if stale != nil {
		if stale.etag != "" {
			out.Header.Set("If-None-Match", stale.etag)
		}
		if stale.lastModRaw != "" {
			out.Header.Set("If-Modified-Since", stale.lastModRaw)
		}
	}
	rec := &recorder{c: c, w: w, r: r, stale: stale, t: t, header: http.Header{}}
	h.next.ServeHTTP(rec, out)
	if !rec.wrote {
		rec.WriteHeader(http.StatusOK)
	}
	switch rec.mode {
	case modeRevalidated:
		c.revalidated.Add(1)
		e := rec.refreshed
		if e.pol.fresh >= 0 {
			c.put(e, t.base)
		} else {
			c.drop(stale)
		}
		c.serveIfClient(w, r, e)
		return e
	case modeStore, modeStoreQuiet:
		c.misses.Add(1)
		if rec.buf == nil || (rec.pol.hasLen && int64(len(rec.buf)) != rec.pol.length) {
			return nil // too large, or cut short
		}
		e := c.newEntry(t.key, t.path, rec.code, rec.header, rec.buf, rec.pol, rec.at)
		c.put(e, t.base)
		return e
	default:
		c.misses.Add(1)
		if stale != nil && rec.code < 500 {
			// The origin no longer lets this be stored as it was. (After
			// a server error the stale entry is kept for the next try.)
			c.drop(stale)
		}
		return nil
	}
}

// serveIfClient answers a client from a freshly revalidated entry; the
// background refresh's discard writer has no client.
func (c *Cache) serveIfClient(w http.ResponseWriter, r *http.Request, e *entry) {
	if _, ok := w.(*discard); ok {
		return
	}
	c.serve(w, r, e, e.age(c.clk.Now()), c.xRevalidated)
}

// newEntry builds the entry for a response received at.
func (c *Cache) newEntry(key, path string, code int, hdr http.Header, body []byte, pol policy, at time.Time) *entry {
	if cap(body) > len(body)+len(body)/8 {
		body = slices.Clone(body) // do not keep what append grew
	}
	body = slices.Clip(body)
	e := &entry{
		key:      key,
		path:     path,
		status:   code,
		body:     body,
		storedAt: at,
		pol:      pol,
	}
	e.header = make(http.Header, len(hdr)+1)
	size := int64(len(key) + len(path) + len(body) + entryOverhead)
	for k, v := range hdr {
		if unstored(k) {
			continue
		}
		e.header[k] = slices.Clip(slices.Clone(v))
		for _, s := range v {
			size += int64(len(k) + len(s) + 4)
		}
	}
	e.header["Content-Length"] = []string{strconv.Itoa(len(body))}
	e.size = size
	e.setDerived(hdr)
	return e
}

// setDerived fills the fields read from the response header.
func (e *entry) setDerived(hdr http.Header) {
	e.etag = e.header.Get("ETag")
	e.lastModRaw = e.header.Get("Last-Modified")
	e.lastMod = time.Time{}
	if e.lastModRaw != "" {
		if t, err := http.ParseTime(e.lastModRaw); err == nil {
			e.lastMod = t
		}
	}
	e.initialAge = 0
	if a := parseSeconds(hdr.Get("Age")); a > 0 {
		e.initialAge = a
	}
}

// refresh returns the entry stale updated by a 304's header received at
// (RFC 9111, 4.3.4). Its pol.fresh is -1 when the new header no longer lets
// it be stored.
func (c *Cache) refresh(stale *entry, hdr http.Header, withCookies bool, at time.Time) *entry {
	e := &entry{
		key:      stale.key,
		path:     stale.path,
		status:   stale.status,
		body:     stale.body,
		storedAt: at,
		header:   make(http.Header, len(stale.header)),
	}
	for k, v := range stale.header {
		e.header[k] = v
	}
	size := int64(len(e.key) + len(e.path) + len(e.body) + entryOverhead)
	for k, v := range hdr {
		if notRefreshed(k) {
			continue
		}
		e.header[k] = slices.Clip(slices.Clone(v))
	}
	for k, v := range e.header {
		for _, s := range v {
			size += int64(len(k) + len(s) + 4)
		}
	}
	e.size = size
	e.setDerived(hdr)
	pol, ok := storable(e.status, e.header, stale.variantOf(), withCookies, c.maxObj)
	if !ok {
		pol.fresh = -1
	}
	e.pol = pol
	return e
}

// variantOf is the coding the entry's body is in, as a variant name.
func (e *entry) variantOf() string {
	switch ce := e.header.Get("Content-Encoding"); ce {
	case "", compress.Identity:
		return compress.Identity
	default:
		return ce
	}
}

// The modes of a recorder, chosen when the origin's status arrives.
const (
	modePass        = iota // not stored: streamed to the client
	modeStore              // stored and streamed to the client
	modeStoreQuiet         // stored; the client got a 304 from its own validators
	modeRevalidated        // the origin confirmed the stale entry with 304
)

// recorder is the ResponseWriter the origin writes a fill into: it streams
// to the client and keeps a copy of what may be stored.
type recorder struct {
	c     *Cache
	w     http.ResponseWriter // the client's
	r     *http.Request       // the client's request
	stale *entry
	t     target

	header    http.Header
	wrote     bool
	code      int
	at        time.Time
	mode      int
	pol       policy
	buf       []byte // the body so far; nil once too large
	refreshed *entry
}

// Header is the origin's header; once the response is passed through, the
// client's, so that trailers reach the client.
func (rec *recorder) Header() http.Header {
	if rec.wrote && rec.mode == modePass {
		return rec.w.Header()
	}
	return rec.header
}

// Unwrap lets http.ResponseController reach the client's connection.
func (rec *recorder) Unwrap() http.ResponseWriter { return rec.w }

func (rec *recorder) WriteHeader(code int) {
	if rec.wrote {
		return
	}
	if code >= 100 && code < 200 {
		rec.copyHeader()
		rec.w.WriteHeader(code)
		if code == http.StatusSwitchingProtocols {
			rec.wrote, rec.code, rec.mode = true, code, modePass
		}
		return
	}
	rec.wrote, rec.code, rec.at = true, code, rec.c.clk.Now()
	if code == http.StatusNotModified && rec.stale != nil {
		rec.mode = modeRevalidated
		rec.refreshed = rec.c.refresh(rec.stale, rec.header, rec.t.cookie, rec.at)
		return // the client is answered from the refreshed entry
	}
	pol, ok := storable(code, rec.header, rec.t.variant, rec.t.cookie, rec.c.maxObj)
	if !ok {
		rec.mode = modePass
		rec.copyHeader()
		rec.w.Header()["X-Cache"] = rec.c.xMiss
		rec.w.WriteHeader(code)
		return
	}
	rec.mode, rec.pol = modeStore, pol
	rec.buf = make([]byte, 0, min(max(pol.length, 512), rec.c.maxObj))
	rec.copyHeader()
	h := rec.w.Header()
	h["X-Cache"] = rec.c.xMiss
	if code == http.StatusOK {
		if etag, lm := rec.header.Get("ETag"), rec.header.Get("Last-Modified"); etag != "" || lm != "" {
			probe := &entry{etag: etag}
			if t, err := http.ParseTime(lm); err == nil {
				probe.lastMod = t
			}
			if notModified(rec.r, probe) {
				rec.mode = modeStoreQuiet
				delete(h, "Content-Length")
				rec.w.WriteHeader(http.StatusNotModified)
				return
			}
		}
	}
	rec.w.WriteHeader(code)
}

// copyHeader copies the origin's header to the client's, over what outer
// handlers set.
func (rec *recorder) copyHeader() {
	h := rec.w.Header()
	for k, v := range rec.header {
		h[k] = v
	}
}

func (rec *recorder) Write(p []byte) (int, error) {
	if !rec.wrote {
		rec.WriteHeader(http.StatusOK)
	}
	switch rec.mode {
	case modeRevalidated:
		return len(p), nil // a 304 has no body
	case modeStore, modeStoreQuiet:
		if rec.buf != nil {
			if int64(len(rec.buf)+len(p)) > rec.c.maxObj {
				rec.buf = nil // too large: only streamed
			} else {
				rec.buf = append(rec.buf, p...)
			}
		}
		if rec.mode == modeStoreQuiet {
			return len(p), nil
		}
	}
	return rec.w.Write(p)
}

// FlushError flushes what the origin sent so far to the client.
func (rec *recorder) FlushError() error {
	if !rec.wrote {
		rec.WriteHeader(http.StatusOK)
	}
	if rec.mode == modePass || rec.mode == modeStore {
		return http.NewResponseController(rec.w).Flush()
	}
	return nil
}

// Flush is FlushError for http.Flusher.
func (rec *recorder) Flush() { _ = rec.FlushError() }

// discard is the client of a background refresh.
type discard struct{ header http.Header }

func (d *discard) Header() http.Header         { return d.header }
func (d *discard) Write(p []byte) (int, error) { return len(p), nil }
func (d *discard) WriteHeader(int)             {}
