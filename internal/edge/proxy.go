package edge

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// bodyRetryMax is the largest request body buffered so that the request
// can be retried on another backend.
const bodyRetryMax = 64 << 10

// maxRetries is the number of retries of one request, on other backends.
const maxRetries = 2

// bufferPool lends ReverseProxy its 32 KiB copy buffers.
type bufferPool struct{ p sync.Pool }

func newBufferPool() *bufferPool {
	return &bufferPool{p: sync.Pool{New: func() any { return new([32 << 10]byte) }}}
}

func (bp *bufferPool) Get() []byte { return bp.p.Get().(*[32 << 10]byte)[:] }

func (bp *bufferPool) Put(b []byte) {
	if cap(b) >= 32<<10 {
		bp.p.Put((*[32 << 10]byte)(b[:32<<10]))
	}
}

// newTransport is the transport to backends: many idle connections per
// backend, HTTP/1.1 only, no proxy, no transparent compression.
func newTransport(backendTimeout time.Duration) *http.Transport {
	dialTimeout := min(backendTimeout, 10*time.Second)
	d := &net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           d.DialContext,
		MaxIdleConns:          0,
		MaxIdleConnsPerHost:   256,
		MaxConnsPerHost:       0,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		ResponseHeaderTimeout: backendTimeout,
		DisableCompression:    true,
		ForceAttemptHTTP2:     false,
		WriteBufferSize:       32 << 10,
		ReadBufferSize:        32 << 10,
	}
}

// errNoBackend is returned by a pool with no available backend.
var errNoBackend = errors.New("edge: no available backend")

// poolProxy proxies to one pool: a ReverseProxy whose transport picks the
// backend of every attempt and retries on another when it is safe.
type poolProxy struct {
	e     *Edge
	pool  *pool
	strip bool // strip "/svc/{pool}" from the path
	rp    *httputil.ReverseProxy
}

func (e *Edge) newPoolProxy(p *pool, strip bool) *poolProxy {
	pp := &poolProxy{e: e, pool: p, strip: strip}
	pp.rp = &httputil.ReverseProxy{
		Rewrite:      pp.rewrite,
		Transport:    pp,
		BufferPool:   e.buffers,
		ErrorHandler: e.proxyError,
		ErrorLog:     nil,
	}
	return pp
}

func (pp *poolProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) { pp.rp.ServeHTTP(w, r) }

var (
	protoHTTP  = []string{"http"}
	protoHTTPS = []string{"https"}
)

// rewrite sets the forwarding headers; the backend is chosen in RoundTrip.
func (pp *poolProxy) rewrite(pr *httputil.ProxyRequest) {
	in, out := pr.In, pr.Out
	out.URL.Scheme = "http"
	out.URL.Host = pp.pool.name
	if pp.strip {
		rest := strings.TrimPrefix(in.URL.Path, "/svc/"+pp.pool.name)
		if rest == "" {
			rest = "/"
		}
		out.URL.Path = rest
		out.URL.RawPath = ""
	}
	ip := clientIP(in.RemoteAddr)
	proto := protoHTTP
	if in.TLS != nil {
		proto = protoHTTPS
	}
	// One backing array for the three header values set here.
	vals := new([3]string)
	h := out.Header
	if ip != "" {
		vals[0] = ip
		if prior := in.Header["X-Forwarded-For"]; len(prior) > 0 {
			vals[0] = strings.Join(prior, ", ") + ", " + ip
		}
		h["X-Forwarded-For"] = vals[0:1:1]
	}
	h["X-Forwarded-Proto"] = proto
	if in.Host != "" {
		vals[1] = in.Host
		h["X-Forwarded-Host"] = vals[1:2:2]
	}
	fwdFor := ip
	if strings.IndexByte(ip, ':') >= 0 {
		fwdFor = `"[` + ip + `]"`
	}
	vals[2] = "for=" + fwdFor + ";host=\"" + in.Host + "\";proto=" + proto[0]
	if prior := in.Header["Forwarded"]; len(prior) > 0 {
		vals[2] = strings.Join(prior, ", ") + ", " + vals[2]
	}
	h["Forwarded"] = vals[2:3:3]
	injectTrace(in, out) // observe.go
}

// clientIP is the host part of a RemoteAddr, without brackets.
func clientIP(remote string) string {
	i := strings.LastIndexByte(remote, ':')
	if i < 0 {
		return remote
	}
	return strings.TrimSuffix(strings.TrimPrefix(remote[:i], "["), "]")
}

// idempotent reports whether a request may be sent twice.
func idempotent(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodPut, http.MethodDelete:
		return true
	}
	return len(r.Header["Idempotency-Key"]) > 0
}

// trackedReader records whether the transport has read from a body it
// could not buffer; Close is left to ReverseProxy.
type trackedReader struct {
	r    io.Reader
	read atomic.Bool
}

func (t *trackedReader) Read(p []byte) (int, error) {
	t.read.Store(true)
	return t.r.Read(p)
}

func (t *trackedReader) Close() error { return nil }

// RoundTrip sends req to a backend of the pool, retrying on another
// backend when the attempt failed in a way that is safe to retry and the
// retry budget allows it.
func (pp *poolProxy) RoundTrip(req *http.Request) (*http.Response, error) {
	e := pp.e
	e.budget.request()
	idem := idempotent(req)

	// A body is replayable when it was small enough to buffer; a large
	// one can be resent only if the transport never read from it.
	var buf []byte
	var tracked *trackedReader
	if req.Body != nil && req.Body != http.NoBody {
		if idem && req.ContentLength <= bodyRetryMax {
			b, err := io.ReadAll(io.LimitReader(req.Body, bodyRetryMax+1))
			if err != nil {
				return nil, err
			}
			if len(b) <= bodyRetryMax {
				buf = b
				req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf)), nil }
			} else {
				tracked = &trackedReader{r: io.MultiReader(bytes.NewReader(b), req.Body)}
			}
		} else {
			tracked = &trackedReader{r: req.Body}
		}
	}

	var triedArr [maxRetries + 1]*Backend
	tried := triedArr[:0]
	now := nowNanos(e.clock)
	b := pp.pool.pick(now, tried)
	if b == nil {
		if b = pp.pool.pickEjected(); b == nil {
			return nil, errNoBackend
		}
	}
	for attempt := 0; ; attempt++ {
		tried = append(tried, b)
		req.URL.Scheme = b.scheme
		req.URL.Host = b.host
		switch {
		case buf != nil && len(buf) == 0:
			req.Body, req.GetBody, req.ContentLength = http.NoBody, nil, 0
		case buf != nil:
			req.Body = io.NopCloser(bytes.NewReader(buf))
			req.ContentLength = int64(len(buf))
		case tracked != nil:
			req.Body = tracked
		}
		b.inflight.Add(1)
		b.requests.Add(1)
		resp, err := e.transport.RoundTrip(req)
		if err != nil {
			b.codes.transport.Add(1)
			b.inflight.Add(-1)
			if req.Context().Err() != nil {
				return nil, err // the client went away: not the backend's fault
			}
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return nil, err
			}
			e.passiveFailure(pp.pool, b)
			if isTimeout(err) {
				return nil, err
			}
			safe := (isDialError(err) && (tracked == nil || !tracked.read.Load())) ||
				(idem && tracked == nil)
			if !safe || attempt >= maxRetries {
				return nil, err
			}
			next := pp.pool.pick(nowNanos(e.clock), tried)
			if next == nil {
				return nil, err
			}
			if !e.budget.allow() {
				e.stats.budgetRefused.Add(1)
				return nil, err
			}
			e.stats.retries.Add(1)
			b = next
			continue
		}
		b.codes.answer(resp.StatusCode)
		if resp.StatusCode >= 502 && resp.StatusCode <= 504 {
			e.passiveFailure(pp.pool, b)
		} else {
			e.passiveSuccess(b)
		}
		if (resp.StatusCode == 502 || resp.StatusCode == 503) && idem && tracked == nil && attempt < maxRetries {
			if next := pp.pool.pick(nowNanos(e.clock), tried); next != nil {
				if e.budget.allow() {
					e.stats.retries.Add(1)
					_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
					resp.Body.Close()
					b.inflight.Add(-1)
					b = next
					continue
				}
				e.stats.budgetRefused.Add(1)
			}
		}
		if rwc, ok := resp.Body.(io.ReadWriteCloser); ok {
			// A switched protocol (WebSocket): ReverseProxy needs the
			// writable body.
			resp.Body = &countedConn{ReadWriteCloser: rwc, b: b}
		} else {
			resp.Body = &countedBody{ReadCloser: resp.Body, b: b}
		}
		return resp, nil
	}
}

// countedBody ends a backend's outstanding request when the response body
// is closed.
type countedBody struct {
	io.ReadCloser
	b    *Backend
	done atomic.Bool
}

func (c *countedBody) Close() error {
	if c.done.CompareAndSwap(false, true) {
		c.b.inflight.Add(-1)
	}
	return c.ReadCloser.Close()
}

// countedConn is countedBody for the body of a 101 response, which is the
// connection itself.
type countedConn struct {
	io.ReadWriteCloser
	b    *Backend
	done atomic.Bool
}

func (c *countedConn) Close() error {
	if c.done.CompareAndSwap(false, true) {
		c.b.inflight.Add(-1)
	}
	return c.ReadWriteCloser.Close()
}

func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// isDialError reports whether err happened while connecting, so that
// nothing of the request was sent.
func isDialError(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "dial"
}

// proxyError answers a request the proxy could not complete: 413 when the
// body was too large, 504 when the backend did not answer in time, 503
// when the pool had no backend, 502 otherwise.
func (e *Edge) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		e.stats.tooLarge.Add(1)
		writeProblem(w, r, http.StatusRequestEntityTooLarge, "Request Entity Too Large", "the request body is larger than the edge accepts")
	case r.Context().Err() != nil:
		// The client is gone; nobody reads the answer.
		w.WriteHeader(http.StatusBadGateway)
	case errors.Is(err, errNoBackend):
		e.stats.unavailable.Add(1)
		writeProblem(w, r, http.StatusServiceUnavailable, "Service Unavailable", "no backend is available for this request")
	case isTimeout(err):
		e.stats.gatewayTimeout.Add(1)
		e.log.Debug("backend timed out", "path", r.URL.Path, "err", err)
		writeProblem(w, r, http.StatusGatewayTimeout, "Gateway Timeout", "the backend did not answer in time")
	default:
		e.stats.badGateway.Add(1)
		e.log.Debug("backend failed", "path", r.URL.Path, "err", err)
		writeProblem(w, r, http.StatusBadGateway, "Bad Gateway", "the backend could not be reached or failed")
	}
}

// problem is an RFC 9457 problem document (the fields errs.Problem has).
type problem struct {
	Type     string `json:"type"`
	Title    string `json:"title"`
	Status   int    `json:"status"`
	Detail   string `json:"detail"`
	Instance string `json:"instance,omitempty"`
}

// writeProblem writes a problem+json answer with a status that errs kinds
// do not cover (502, 504) or that the edge decides itself.
func writeProblem(w http.ResponseWriter, r *http.Request, status int, title, detail string) {
	p := problem{Type: "about:blank", Title: title, Status: status, Detail: detail}
	if r != nil {
		p.Instance = r.URL.Path
	}
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(p)
}
