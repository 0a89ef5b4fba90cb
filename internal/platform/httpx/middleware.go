package httpx

import (
	"context"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/globomantics/globomantics/internal/platform/consistency"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/obs"
)

// emptyToken is what a client sends in the consistency.Header when it has
// seen no write yet: the header's presence asks for the token back.
const emptyToken = "-"

type ctxKey int

// MaxDeadline caps the time a caller's DeadlineHeader may give a request.
const MaxDeadline = 60 * time.Second

// callerDeadline is the time left to the caller of a request by its
// DeadlineHeader, capped at MaxDeadline; false when there is no valid one.
func callerDeadline(h http.Header) (time.Duration, bool) {
	v := h.Get(DeadlineHeader)
	if v == "" {
		return 0, false
	}
	ms, err := strconv.ParseInt(v, 10, 64)
	if err != nil || ms <= 0 {
		return 0, false
	}
	return min(time.Duration(min(ms, MaxDeadline.Milliseconds()))*time.Millisecond, MaxDeadline), true
}

const loggerKey ctxKey = iota

// Logger returns the request-scoped logger, or slog.Default.
func Logger(ctx context.Context) *slog.Logger {
	if l, ok := ctx.Value(loggerKey).(*slog.Logger); ok {
		return l
	}
	return slog.Default()
}

// LogError logs a handler error: internal ones at error level, client errors at debug.
func LogError(r *http.Request, err error) {
	l := Logger(r.Context())
	if k := errs.KindOf(err); k == errs.Other || k == errs.Unavailable {
		l.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	} else {
		l.Debug("request rejected", "method", r.Method, "path", r.URL.Path, "status", k.Status(), "err", err)
	}
}

type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int
	// beforeHeader, when set, runs once just before the status line and
	// headers are sent.
	beforeHeader func(http.Header)
}

func (w *statusWriter) WriteHeader(s int) {
	if w.status == 0 {
		w.status = s
		if w.beforeHeader != nil {
			w.beforeHeader(w.Header())
		}
	}
	w.ResponseWriter.WriteHeader(s)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += n
	return n, err
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Middleware wraps h with panic recovery and one access log line per request
// at info level (5xx at warn) with its request id, route, status, bytes and
// duration. It is MiddlewareWith with no observability: no spans, no metrics.
//
// Every request gets an id (see RequestID): the caller's X-Request-Id when it
// is 1 to 64 characters of [A-Za-z0-9._-], else a new one; the response
// carries it, and Client forwards it on the calls made under the request.
//
// It also gives every request a consistency.Token in its context: the
// positions a calling service sent in the consistency.Header, to which the
// positions of the writes made while serving the request are added. When
// the request carried the header, the response carries the token back, so
// that the caller's later reads see those writes (read-your-writes across
// services).
//
// When the request carries the DeadlineHeader (sent by Client), its
// context ends when the caller stops waiting, at most MaxDeadline from
// now, so that a callee never works for an answer nobody waits for.
func Middleware(log *slog.Logger, h http.Handler) http.Handler { return MiddlewareWith(log, nil, h) }

// MiddlewareWith is Middleware observed by o (nil: none): every request is
// a server span, child of the caller's W3C traceparent, named "METHOD
// route" after the mux pattern that served it (see NoteRoute), whose trace
// id the response carries in TraceIDHeader; and it is counted in o's
// http_server_request_duration_seconds and http_server_active_requests.
func MiddlewareWith(log *slog.Logger, o *obs.Obs, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		ctx, ob := startServer(context.WithValue(r.Context(), loggerKey, log), o, w, r) // observe.go
		if d, ok := callerDeadline(r.Header); ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, d)
			defer cancel()
		}
		tok := consistency.NewToken()
		if vals, ok := r.Header[consistency.Header]; ok {
			if len(vals) > 0 && vals[0] != emptyToken {
				t, err := consistency.Parse(vals[0])
				if err != nil {
					// Only peers send it; a bad one costs freshness
					// guarantees, not the request.
					log.Warn("ignoring malformed consistency token", "err", err)
				} else {
					tok = t
				}
			}
			sw.beforeHeader = func(h http.Header) {
				if !tok.Empty() {
					h.Set(consistency.Header, tok.String())
				}
			}
		}
		ctx = consistency.WithToken(ctx, tok)
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					ob.finish(sw.status, sw.bytes) // the span ends, the gauge comes down
					panic(v)
				}
				log.Error("panic", "method", r.Method, "path", r.URL.Path, "panic", v, "stack", string(debug.Stack()))
				if sw.status == 0 {
					errs.WriteProblem(sw, r, errs.E("panic", errs.Other))
				}
			}
			ob.finish(sw.status, sw.bytes)
			lvl := accessLevel(sw.status, ob.routeOf()) // observe.go
			log.Log(ctx, lvl, "http", "request_id", ob.id, "method", r.Method, "route", ob.routeOf(), "path", r.URL.Path, "status", sw.status, "bytes", sw.bytes, "dur", time.Since(start))
		}()
		ob.req = r.WithContext(ctx)
		h.ServeHTTP(sw, ob.req)
	})
}
