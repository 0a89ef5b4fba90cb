package edge

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// h1Transport is the edge's transport to plain-HTTP backends: HTTP/1.1 over
// kept-alive connections, with the request written and the response read
// on the goroutine that asks (the one serving the client's request).
//
// net/http's Transport gives every connection a read loop and a write loop
// goroutine, and hands each request between the caller, the write loop and
// the read loop through channels: three to four goroutine switches per
// proxied request, about a tenth of the edge's CPU in its profile
// (docs/BENCHMARKS.md). Here a request costs no switch: the caller takes an
// idle connection, writes, reads the response header and returns; the
// body is read by the same goroutine (ReverseProxy's copy), and the
// connection goes back to the idle list when the body ends.
//
// What the read loop also gave, this does itself. A connection the backend
// closed while idle (a storefront shutting down closes its idle
// connections) must not cost a request. A replayable request (no body, or
// one it can get again) that meets a closed connection, failing before
// any byte of an answer, is sent again on a new connection, as net/http
// does. A request whose body cannot be sent twice first checks that the
// connection is still open with a non-blocking peek (recv
// MSG_PEEK|MSG_DONTWAIT: one system call, no goroutine); the replayable
// ones, nearly all, skip that system call.
//
// Everything else goes to fallback (net/http's Transport): HTTPS backends,
// protocol upgrades (WebSocket), and requests with trailers.
type h1Transport struct {
	dial           func(ctx context.Context, network, addr string) (net.Conn, error)
	headerTimeout  time.Duration // for the response header
	idleTimeout    time.Duration // idle connections older than this are closed
	maxIdlePerHost int
	fallback       *http.Transport

	mu     sync.Mutex
	idle   map[string][]*h1Conn // by host:port, most recently used last
	closed bool
}

func newH1Transport(backendTimeout time.Duration) *h1Transport {
	dialTimeout := min(backendTimeout, 10*time.Second)
	d := &net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}
	return &h1Transport{
		dial:           d.DialContext,
		headerTimeout:  backendTimeout,
		idleTimeout:    90 * time.Second,
		maxIdlePerHost: 256,
		fallback:       newTransport(backendTimeout),
		idle:           make(map[string][]*h1Conn),
	}
}

// h1Conn is one connection to a backend.
type h1Conn struct {
	t      *h1Transport
	key    string
	conn   net.Conn
	raw    syscall.RawConn // nil when the connection has none (tests' pipes)
	br     *bufio.Reader
	bw     *bufio.Writer
	idleAt time.Time
	reused bool
}

func (c *h1Conn) close() { _ = c.conn.Close() }

// errBadHeader is a request header that cannot be written safely.
var errBadHeader = errors.New("edge: request header holds a line break")

// RoundTrip implements http.RoundTripper.
func (t *h1Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "http" || req.Header["Upgrade"] != nil || req.Trailer != nil {
		return t.fallback.RoundTrip(req)
	}
	key := req.URL.Host
	if req.URL.Port() == "" {
		key = net.JoinHostPort(req.URL.Hostname(), "80")
	}
	replayable := req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
	for fresh := false; ; fresh = true {
		c, err := t.conn(req.Context(), key, fresh, !replayable)
		if err != nil {
			return nil, err
		}
		resp, err := c.roundTrip(req)
		if err == nil {
			return resp, nil
		}
		// A connection used before that fails before any byte of the
		// answer came was most likely closed by the backend while idle:
		// the request never reached a handler, so it may be sent again.
		var st staleError
		if !errors.As(err, &st) || !replayable || fresh {
			return nil, unwrapStale(err)
		}
		if req.GetBody != nil {
			body, gerr := req.GetBody()
			if gerr != nil {
				return nil, unwrapStale(err)
			}
			req.Body = body
		}
	}
}

// staleError wraps a failure on a reused connection before any byte of the
// response arrived.
type staleError struct{ err error }

func (s staleError) Error() string { return s.err.Error() }
func (s staleError) Unwrap() error { return s.err }

func unwrapStale(err error) error {
	var st staleError
	if errors.As(err, &st) {
		return st.err
	}
	return err
}

// conn returns an idle connection to key, or a new one (always a new one
// when fresh). With probe, an idle connection is checked to be still open.
func (t *h1Transport) conn(ctx context.Context, key string, fresh, probe bool) (*h1Conn, error) {
	if !fresh {
		now := time.Now()
		for {
			t.mu.Lock()
			list := t.idle[key]
			if len(list) == 0 {
				t.mu.Unlock()
				break
			}
			c := list[len(list)-1]
			list[len(list)-1] = nil
			t.idle[key] = list[:len(list)-1]
			t.mu.Unlock()
			if now.Sub(c.idleAt) > t.idleTimeout || c.br.Buffered() > 0 || (probe && !c.open()) {
				c.close()
				continue
			}
			c.reused = true
			return c, nil
		}
	}
	nc, err := t.dial(ctx, "tcp", key)
	if err != nil {
		return nil, err
	}
	c := &h1Conn{t: t, key: key, conn: nc, br: bufio.NewReaderSize(nc, 16<<10), bw: bufio.NewWriterSize(nc, 16<<10)}
	if sc, ok := nc.(syscall.Conn); ok {
		c.raw, _ = sc.SyscallConn()
	}
	return c, nil
}

// open reports whether the idle connection is still usable: the backend
// has neither closed it nor sent anything on it. It peeks without
// blocking: one recv system call.
func (c *h1Conn) open() bool {
	if c.br.Buffered() > 0 {
		return false // bytes nobody asked for
	}
	if c.raw == nil {
		return true
	}
	var one [1]byte
	alive := false
	err := c.raw.Read(func(fd uintptr) bool {
		n, _, rerr := syscall.Recvfrom(int(fd), one[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		_ = n
		alive = rerr == syscall.EAGAIN || rerr == syscall.EWOULDBLOCK
		return true // never wait: this is a probe
	})
	return err == nil && alive
}

// put returns a connection whose exchange ended cleanly to the idle list.
func (t *h1Transport) put(c *h1Conn) {
	c.idleAt = time.Now()
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		c.close()
		return
	}
	list := append(t.idle[c.key], c)
	var drop *h1Conn
	if len(list) > t.maxIdlePerHost {
		drop = list[0]
		copy(list, list[1:])
		list[len(list)-1] = nil
		list = list[:len(list)-1]
	}
	t.idle[c.key] = list
	t.mu.Unlock()
	if drop != nil {
		drop.close()
	}
}

// CloseIdleConnections closes every idle connection, and the fallback's.
func (t *h1Transport) CloseIdleConnections() {
	t.mu.Lock()
	idle := t.idle
	t.idle = make(map[string][]*h1Conn)
	t.mu.Unlock()
	for _, list := range idle {
		for _, c := range list {
			c.close()
		}
	}
	t.fallback.CloseIdleConnections()
}

// closeIdleOlder closes the idle connections unused since before cutoff
// (to backends gone from the pools, or simply not needed any more).
func (t *h1Transport) closeIdleOlder(cutoff time.Time) {
	var old []*h1Conn
	t.mu.Lock()
	for key, list := range t.idle {
		i := 0
		for i < len(list) && list[i].idleAt.Before(cutoff) {
			i++
		}
		if i == 0 {
			continue
		}
		old = append(old, list[:i]...)
		if i == len(list) {
			delete(t.idle, key)
			continue
		}
		t.idle[key] = append(list[:0:0], list[i:]...)
	}
	t.mu.Unlock()
	for _, c := range old {
		c.close()
	}
}

// aLongTimeAgo is a deadline that makes pending I/O fail at once.
var aLongTimeAgo = time.Unix(1, 0)

// roundTrip writes req and reads the response header on c. The connection
// is the response body's until it ends; on error it is closed.
func (c *h1Conn) roundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	// A client that leaves aborts the exchange: its deadline in the past
	// wakes any read or write on the connection.
	stop := context.AfterFunc(ctx, func() { _ = c.conn.SetDeadline(aLongTimeAgo) })
	fail := func(err error) (*http.Response, error) {
		stop()
		c.close()
		if cerr := ctx.Err(); cerr != nil {
			return nil, cerr
		}
		return nil, err
	}
	err := c.writeRequest(req)
	if req.Body != nil {
		_ = req.Body.Close() // a RoundTripper closes the request body
	}
	if err != nil {
		if c.reused {
			return fail(staleError{err})
		}
		return fail(err)
	}
	if c.t.headerTimeout > 0 {
		_ = c.conn.SetReadDeadline(time.Now().Add(c.t.headerTimeout))
	}
	if _, err := c.br.Peek(1); err != nil {
		if c.reused && !isTimeout(err) {
			return fail(staleError{err})
		}
		return fail(err)
	}
	var resp *http.Response
	for {
		r, err := http.ReadResponse(c.br, req)
		if err != nil {
			return fail(err)
		}
		// 1xx answers (100 Continue, 103 Early Hints) come before the
		// real one; 101 is an upgrade, which this transport never asks.
		if r.StatusCode >= 200 || r.StatusCode == http.StatusSwitchingProtocols {
			resp = r
			break
		}
	}
	if c.t.headerTimeout > 0 {
		_ = c.conn.SetReadDeadline(time.Time{})
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return fail(errors.New("edge: backend switched protocols unasked"))
	}
	keep := !resp.Close && !req.Close
	if resp.Body == http.NoBody || resp.Body == nil {
		c.release(stop, keep)
		return resp, nil
	}
	resp.Body = &h1Body{rc: resp.Body, c: c, stop: stop, keep: keep}
	return resp, nil
}

// release ends an exchange: the connection goes back to the idle list when
// it can carry another request, and is closed otherwise.
func (c *h1Conn) release(stop func() bool, keep bool) {
	if !stop() {
		keep = false // the client left: the deadline was moved
	}
	if keep && c.br.Buffered() == 0 {
		c.t.put(c)
		return
	}
	c.close()
}

// h1Body is a response body; its end gives the connection back.
type h1Body struct {
	rc   io.ReadCloser
	c    *h1Conn
	stop func() bool
	keep bool
	done bool
}

func (b *h1Body) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.done = true
		b.c.release(b.stop, b.keep)
	} else if err != nil {
		b.done = true
		b.stop()
		b.c.close()
	}
	return n, err
}

// Close before the end closes the connection: what is left of the body
// would have to be read before another request could use it.
func (b *h1Body) Close() error {
	if !b.done {
		b.done = true
		b.stop()
		b.c.close()
	}
	return nil
}

// excludedHeaders are written by writeRequest itself, or never.
var excludedHeaders = map[string]bool{
	"Host": true, "Content-Length": true, "Transfer-Encoding": true,
	"Trailer": true, "Connection": true, "Expect": true,
}

// writeRequest writes req as HTTP/1.1: request line, Host, the headers,
// the body framed by Content-Length or chunked. The body is sent at once
// ("Expect: 100-continue" is not passed on).
func (c *h1Conn) writeRequest(req *http.Request) error {
	w := c.bw
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	if strings.ContainsAny(host, "\r\n") {
		return errBadHeader
	}
	w.WriteString(req.Method)
	w.WriteByte(' ')
	w.WriteString(req.URL.RequestURI())
	w.WriteString(" HTTP/1.1\r\nHost: ")
	w.WriteString(host)
	w.WriteString("\r\n")
	for k, vs := range req.Header {
		if excludedHeaders[k] {
			continue
		}
		for _, v := range vs {
			if v == "" && k == "User-Agent" {
				continue // ReverseProxy's way of sending none
			}
			if strings.ContainsAny(v, "\r\n") || strings.ContainsAny(k, "\r\n: ") {
				return errBadHeader
			}
			w.WriteString(k)
			w.WriteString(": ")
			w.WriteString(v)
			w.WriteString("\r\n")
		}
	}
	if req.Close {
		w.WriteString("Connection: close\r\n")
	}
	body := req.Body
	if body == http.NoBody {
		body = nil
	}
	switch {
	case body == nil && (req.Method == http.MethodPost || req.Method == http.MethodPut || req.Method == http.MethodPatch):
		w.WriteString("Content-Length: 0\r\n\r\n")
	case body == nil:
		w.WriteString("\r\n")
	case req.ContentLength > 0:
		w.WriteString("Content-Length: ")
		w.WriteString(strconv.FormatInt(req.ContentLength, 10))
		w.WriteString("\r\n\r\n")
		n, err := io.Copy(w, io.LimitReader(body, req.ContentLength))
		if err != nil {
			return err
		}
		if n != req.ContentLength {
			return errors.New("edge: request body shorter than its Content-Length")
		}
	default:
		w.WriteString("Transfer-Encoding: chunked\r\n\r\n")
		cw := httputil.NewChunkedWriter(w)
		if _, err := io.Copy(cw, body); err != nil {
			return err
		}
		if err := cw.Close(); err != nil {
			return err
		}
		w.WriteString("\r\n")
	}
	return w.Flush()
}
