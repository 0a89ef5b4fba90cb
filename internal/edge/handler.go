package edge

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/globomantics/globomantics/internal/platform/httpx"
)

// publicHandler routes /_edge/ to the edge itself, refuses /svc/, and
// proxies everything else to the storefront pool.
func (e *Edge) publicHandler() http.Handler {
	admin := e.adminHandler()
	content := e.content
	return e.front(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path := r.URL.Path
		switch {
		case strings.HasPrefix(path, "/_edge/"):
			if path == "/_edge/readyz" {
				e.readyz(w, r)
				return
			}
			if e.intLn != nil {
				e.notFound(w, r)
				return
			}
			admin.ServeHTTP(w, r)
		case strings.HasPrefix(path, "/svc/") || path == "/svc":
			e.notFound(w, r)
		default:
			content.ServeHTTP(w, r)
		}
	}))
}

// internalHandler routes /svc/{service}/... to pool {service} and serves
// the registry API and status.
func (e *Edge) internalHandler() http.Handler {
	admin := e.adminHandler()
	return e.front(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path := r.URL.Path
		switch {
		case path == "/_edge/readyz":
			e.readyz(w, r)
		case path == "/metrics" && e.cfg.Obs != nil: // unauthenticated, like /readyz
			e.cfg.Obs.Metrics().ServeHTTP(w, r)
		case strings.HasPrefix(path, "/_edge/"):
			admin.ServeHTTP(w, r)
		case strings.HasPrefix(path, "/svc/"):
			name, _, _ := strings.Cut(path[len("/svc/"):], "/")
			p := e.lookupPool(name)
			if p == nil {
				e.notFound(w, r)
				return
			}
			p.proxy.ServeHTTP(w, r)
		default:
			e.notFound(w, r)
		}
	}))
}

func (e *Edge) notFound(w http.ResponseWriter, r *http.Request) {
	e.stats.notFnd.Add(1)
	writeProblem(w, r, http.StatusNotFound, "Not Found", "no such resource")
}

func (e *Edge) readyz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if e.draining.Load() {
		http.Error(w, "draining", http.StatusServiceUnavailable)
		return
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte("ok\n"))
}

// front gives every request its id, enforces the body limit and, at debug
// level only, writes the access log.
func (e *Edge) front(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.stats.requests.Add(1)
		id := ""
		if v := r.Header["X-Request-Id"]; len(v) == 1 && saneRequestID(v[0]) {
			id = v[0]
		} else {
			id = e.ids.next()
			r.Header["X-Request-Id"] = []string{id}
		}
		w.Header()["X-Request-Id"] = r.Header["X-Request-Id"]
		if max := e.cfg.MaxBody; max > 0 {
			if r.ContentLength > max {
				e.stats.tooLarge.Add(1)
				w.Header().Set("Connection", "close")
				writeProblem(w, r, http.StatusRequestEntityTooLarge, "Request Entity Too Large", "the request body is larger than the edge accepts")
				return
			}
			if r.Body != nil && r.Body != http.NoBody {
				r.Body = http.MaxBytesReader(w, r.Body, max)
			}
		}
		if !e.log.Enabled(r.Context(), slog.LevelDebug) {
			next.ServeHTTP(w, r)
			return
		}
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(sw, r)
		e.log.Debug("access", "id", id, "method", r.Method, "path", r.URL.Path, "status", sw.status,
			"bytes", sw.bytes, "remote", r.RemoteAddr, "dur", time.Since(start))
	})
}

type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
	wrote  bool
}

func (s *statusWriter) WriteHeader(code int) {
	if !s.wrote && code >= 200 {
		s.status, s.wrote = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(p []byte) (int, error) {
	s.wrote = true
	n, err := s.ResponseWriter.Write(p)
	s.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// Flush passes a flush through (ReverseProxy flushes streamed responses).
func (s *statusWriter) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// adminHandler serves the registry API and the status, behind the token.
func (e *Edge) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /_edge/status", httpx.Handler(e.status))
	mux.Handle("PUT /_edge/v1/pools/{pool}/instances", httpx.Handler(e.register))
	mux.Handle("DELETE /_edge/v1/pools/{pool}/instances", httpx.Handler(e.deregister))
	mux.Handle("GET /_edge/v1/pools/{pool}/instances", httpx.Handler(e.instances))
	mux.Handle("GET /_edge/v1/pools", httpx.Handler(e.listPools))
	if e.cfg.Obs != nil {
		mux.Handle("GET /_edge/obs/v1/traces", e.cfg.Obs.Traces())
		mux.Handle("GET /_edge/metrics", e.cfg.Obs.Metrics()) // when there is no internal listener
	}
	mux.HandleFunc("/", e.notFound)
	if e.cfg.Token != "" {
		return httpx.RequireToken(e.cfg.Token, mux)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !e.adminLoopback {
			writeProblem(w, r, http.StatusForbidden, "Forbidden",
				"the edge's registry API needs a token (GLOBO_EDGE_TOKEN) unless it listens on loopback only")
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// passiveFailure counts a failed proxied request; after EjectAfter in a
// row the backend is ejected for 1 s, 2 s, 4 s ... up to 30 s.
func (e *Edge) passiveFailure(p *pool, b *Backend) {
	b.failures.Add(1)
	n := b.consecFails.Add(1)
	if int(n) < e.cfg.EjectAfter {
		return
	}
	now := e.clock.Now()
	if u := b.ejectedUntil.Load(); u != 0 && now.UnixNano() < u {
		return // already ejected
	}
	k := b.ejections.Add(1) - 1
	d := time.Second << min(k, 5)
	if d > 30*time.Second {
		d = 30 * time.Second
	}
	b.ejectedUntil.Store(now.Add(d).UnixNano())
	e.log.Warn("backend ejected", "pool", p.name, "backend", b.url, "for", d, "consecutive_failures", n)
}

// passiveSuccess resets a backend's failure count and ejection backoff.
func (e *Edge) passiveSuccess(b *Backend) {
	if b.consecFails.Load() != 0 {
		b.consecFails.Store(0)
	}
	if b.ejections.Load() != 0 {
		b.ejections.Store(0)
		b.ejectedUntil.Store(0)
	}
}

// healthLoop checks every backend's health path each HealthInterval.
func (e *Edge) healthLoop(ctx context.Context) {
	t := time.NewTicker(e.cfg.HealthInterval)
	defer t.Stop()
	for {
		e.mu.RLock()
		pools := make([]*pool, 0, len(e.pools))
		for _, p := range e.pools {
			pools = append(pools, p)
		}
		e.mu.RUnlock()
		for _, p := range pools {
			for _, b := range p.backends() {
				if b.checking.CompareAndSwap(false, true) {
					go func() {
						defer b.checking.Store(false)
						e.check(ctx, p, b)
					}()
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// check asks one backend's health path: one 2xx makes it healthy, a 503
// (draining) unhealthy at once, two other failures in a row unhealthy.
func (e *Edge) check(parent context.Context, p *pool, b *Backend) {
	ctx, cancel := context.WithTimeout(parent, e.cfg.HealthTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.url+e.cfg.HealthPath, nil)
	if err != nil {
		return
	}
	req.Header.Set("User-Agent", "globomantics-edge-health")
	resp, err := e.health.Do(req)
	if err != nil && parent.Err() != nil {
		return // the edge is stopping: no verdict
	}
	status := 0
	if err == nil {
		status = resp.StatusCode
		_ = resp.Body.Close()
	}
	b.lastCheck.Store(e.clock.Now().UnixNano())
	ok := err == nil && status >= 200 && status < 300
	b.lastCheckOK.Store(ok)
	if ok {
		b.healthFails.Store(0)
		if b.healthy.CompareAndSwap(false, true) {
			e.log.Warn("backend up", "pool", p.name, "backend", b.url)
		}
		return
	}
	n := b.healthFails.Add(1)
	if (status == http.StatusServiceUnavailable || n >= 2) && b.healthy.CompareAndSwap(true, false) {
		reason := "health check failed"
		if status != 0 {
			reason = http.StatusText(status)
		} else if err != nil {
			reason = err.Error()
		}
		e.log.Warn("backend down", "pool", p.name, "backend", b.url, "reason", reason)
	}
}

// reapLoop removes registered instances whose heartbeat lapsed, and every
// 10 s closes the backend connections idle for longer than the transport's
// idle timeout.
func (e *Edge) reapLoop(ctx context.Context) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	var lastSweep time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := e.clock.Now()
		if now.Sub(lastSweep) >= 10*time.Second {
			lastSweep = now
			e.transport.closeIdleOlder(time.Now().Add(-e.transport.idleTimeout))
		}
		e.mu.RLock()
		pools := make([]*pool, 0, len(e.pools))
		for _, p := range e.pools {
			pools = append(pools, p)
		}
		e.mu.RUnlock()
		for _, p := range pools {
			p.mu.Lock()
			for u, b := range p.members {
				if b.sources&SourceRegistered != 0 && now.After(b.expires) {
					if p.removeLocked(u, SourceRegistered) {
						e.log.Warn("instance heartbeat lapsed; removed", "pool", p.name, "backend", u)
					}
				}
			}
			p.mu.Unlock()
		}
	}
}

// srvLoop keeps a pool's SRV-sourced backends equal to the DNS answer.
func (e *Edge) srvLoop(ctx context.Context, s srvSource) {
	t := time.NewTicker(e.cfg.SRVRefresh)
	defer t.Stop()
	for {
		lctx, cancel := context.WithTimeout(ctx, e.cfg.SRVRefresh)
		err := s.srv.Refresh(lctx)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				e.log.Warn("SRV lookup failed; keeping the last answer", "pool", s.pool.name, "err", err)
			}
		} else {
			added, removed := s.pool.syncSource(s.srv.Endpoints(), SourceSRV)
			if len(added)+len(removed) > 0 {
				e.log.Warn("pool changed from DNS", "pool", s.pool.name, "added", added, "removed", removed)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
