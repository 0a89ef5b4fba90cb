// Package compress is an HTTP middleware that compresses text responses with
// zstd or gzip, as the client's Accept-Encoding prefers.
//
// A response is compressed only when it is worth it and safe: a compressible
// media type (text, JSON, JavaScript, XML, SVG, ...), at least MinSize bytes,
// no Content-Encoding or Content-Range of its own, not `no-transform`, not a
// Server-Sent Events stream, and not an answer to HEAD or to a Range
// request. Every response that would be compressed for some client carries
// `Vary: Accept-Encoding`, so shared caches keep the variants apart.
package compress

import (
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// MinSize is the smallest body compressed: below it the coding's framing and
// the CPU cost outweigh the bytes saved. The first MinSize bytes of a body
// without a Content-Length are held back to decide.
const MinSize = 1024

// GzipLevel is the gzip level used: level 5 compresses text within a few
// percent of the default level 6 at clearly higher speed (measured by
// BenchmarkGzipLevel).
const GzipLevel = 5

// zstdWindow bounds zstd's window and so the memory of each pooled encoder
// and of the client's decoder; responses are small, a bigger window gains
// little.
const zstdWindow = 1 << 17

type handler struct {
	next http.Handler
	gz   sync.Pool // *gzip.Writer
	zs   sync.Pool // *zstd.Encoder
}

// Handler returns next with its responses compressed as the package doc
// says. Encoders are pooled per returned handler. The response writer it
// hands to next supports http.Flusher (flushing the compressor, then the
// connection) and passes Hijack and deadlines through Unwrap.
func Handler(next http.Handler) http.Handler {
	h := &handler{next: next}
	h.gz.New = func() any {
		w, err := gzip.NewWriterLevel(nil, GzipLevel)
		if err != nil {
			panic("compress: gzip level: " + err.Error()) // constant level: cannot happen
		}
		return w
	}
	h.zs.New = func() any {
		e, err := zstd.NewWriter(nil,
			zstd.WithEncoderLevel(zstd.SpeedDefault),
			zstd.WithEncoderConcurrency(1),
			zstd.WithWindowSize(zstdWindow),
		)
		if err != nil {
			panic("compress: zstd options: " + err.Error()) // constant options: cannot happen
		}
		return e
	}
	return h
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodHead || r.Header.Get("Range") != "" {
		h.next.ServeHTTP(w, r)
		return
	}
	cw := &writer{h: h, w: w, coding: Negotiate(r.Header.Get("Accept-Encoding"))}
	h.next.ServeHTTP(cw, r)
	cw.close()
}

// The states of a writer.
const (
	stateInit      = iota // nothing written yet
	stateBuffering        // holding back up to MinSize bytes to decide
	statePass             // sending the body as it is
	stateCompress         // sending the body through an encoder
	stateClosed
)

// writer is the http.ResponseWriter handed to the wrapped handler.
type writer struct {
	h      *handler
	w      http.ResponseWriter
	coding string // the negotiated coding
	state  int
	code   int
	sniff  bool   // no Content-Type yet: decide from the body
	buf    []byte // held back while buffering
	enc    encoder
	err    error // the first write error
}

// encoder is what gzip.Writer and zstd.Encoder have in common.
type encoder interface {
	io.WriteCloser
	Flush() error
	Reset(io.Writer)
}

func (cw *writer) Header() http.Header { return cw.w.Header() }

// Unwrap lets http.ResponseController reach the connection (Hijack,
// deadlines).
func (cw *writer) Unwrap() http.ResponseWriter { return cw.w }

func (cw *writer) WriteHeader(code int) {
	if cw.state != stateInit {
		return
	}
	if code >= 100 && code < 200 {
		cw.w.WriteHeader(code)
		if code == http.StatusSwitchingProtocols {
			cw.state = statePass
		}
		return
	}
	cw.code = code
	h := cw.w.Header()
	if !eligible(h, code) {
		cw.pass()
		return
	}
	cw.sniff = h.Get("Content-Type") == ""
	if !cw.sniff && h.Get("Content-Length") != "" {
		// eligible checked that it is at least MinSize: decided now.
		addVary(h)
		if cw.coding == Identity {
			cw.pass()
		} else {
			cw.startCompress()
		}
		return
	}
	// Hold back the start of the body to learn its size (and type).
	cw.state = stateBuffering
}

// eligible reports whether a response with these headers and status may be
// compressed, before its body is seen.
func eligible(h http.Header, code int) bool {
	switch {
	case code < 200, code == http.StatusNoContent, code == http.StatusNotModified,
		code == http.StatusPartialContent:
		return false
	case h.Get("Content-Range") != "":
		return false
	}
	if ce := h.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, Identity) {
		return false
	}
	if hasToken(h.Values("Cache-Control"), "no-transform") {
		return false
	}
	if cl := h.Get("Content-Length"); cl != "" {
		n, err := strconv.ParseInt(cl, 10, 64)
		if err != nil || n < MinSize {
			return false
		}
	}
	if ct := h.Get("Content-Type"); ct != "" && !Compressible(ct) {
		return false
	}
	return true
}

func (cw *writer) Write(p []byte) (int, error) {
	if cw.state == stateInit {
		cw.WriteHeader(http.StatusOK)
	}
	if cw.err != nil {
		return 0, cw.err
	}
	switch cw.state {
	case statePass:
		return cw.w.Write(p)
	case stateCompress:
		n, err := cw.enc.Write(p)
		if err != nil {
			cw.err = err
		}
		return n, err
	case stateBuffering:
		cw.buf = append(cw.buf, p...)
		if len(cw.buf) >= MinSize {
			cw.commit(true)
		}
		return len(p), cw.err
	}
	return 0, http.ErrBodyNotAllowed
}

// commit ends buffering: the body is compressed when it may be and either
// long enough or streamed (a flush came first); otherwise it is sent as it
// is.
func (cw *writer) commit(streaming bool) {
	h := cw.w.Header()
	if cw.sniff {
		cw.sniff = false
		if len(cw.buf) == 0 && !streaming {
			cw.pass()
			return
		}
		ct := http.DetectContentType(cw.buf)
		h.Set("Content-Type", ct)
		if !Compressible(ct) {
			cw.passBuffered()
			return
		}
	}
	if !streaming {
		// The whole body is shorter than MinSize: never compressed, so
		// it does not vary.
		if h.Get("Content-Length") == "" {
			h.Set("Content-Length", strconv.Itoa(len(cw.buf)))
		}
		cw.passBuffered()
		return
	}
	addVary(h)
	if cw.coding == Identity {
		cw.passBuffered()
		return
	}
	buf := cw.buf
	cw.buf = nil
	cw.startCompress()
	if len(buf) > 0 {
		if _, err := cw.enc.Write(buf); err != nil {
			cw.err = err
		}
	}
}

// pass sends the header and lets the body through untouched.
func (cw *writer) pass() {
	cw.state = statePass
	cw.w.WriteHeader(cw.code)
}

// passBuffered passes, sending what was held back.
func (cw *writer) passBuffered() {
	cw.pass()
	if len(cw.buf) > 0 {
		if _, err := cw.w.Write(cw.buf); err != nil {
			cw.err = err
		}
	}
	cw.buf = nil
}

func (cw *writer) startCompress() {
	h := cw.w.Header()
	h.Del("Content-Length")
	h.Set("Content-Encoding", cw.coding)
	if et := h.Get("ETag"); et != "" && !strings.HasPrefix(et, "W/") {
		// The compressed bytes differ from the identity bytes the strong
		// validator names.
		h.Set("ETag", "W/"+et)
	}
	cw.state = stateCompress
	cw.w.WriteHeader(cw.code)
	switch cw.coding {
	case Gzip:
		cw.enc = cw.h.gz.Get().(*gzip.Writer)
	default:
		cw.enc = cw.h.zs.Get().(*zstd.Encoder)
	}
	cw.enc.Reset(cw.w)
}

// close finishes the response after the wrapped handler returned.
func (cw *writer) close() {
	switch cw.state {
	case stateBuffering:
		cw.commit(false)
	case stateCompress:
		if err := cw.enc.Close(); err != nil && cw.err == nil {
			cw.err = err
		}
		cw.enc.Reset(io.Discard)
		switch e := cw.enc.(type) {
		case *gzip.Writer:
			cw.h.gz.Put(e)
		case *zstd.Encoder:
			cw.h.zs.Put(e)
		}
		cw.enc = nil
	}
	cw.state = stateClosed
}

// FlushError sends what the handler wrote so far to the client: it ends
// buffering (choosing to compress a response that may be compressed), then
// flushes the encoder and the connection.
func (cw *writer) FlushError() error {
	if cw.state == stateInit {
		cw.WriteHeader(http.StatusOK)
	}
	if cw.state == stateBuffering {
		cw.commit(true)
	}
	if cw.err != nil {
		return cw.err
	}
	if cw.state == stateCompress {
		if err := cw.enc.Flush(); err != nil {
			cw.err = err
			return err
		}
	}
	return http.NewResponseController(cw.w).Flush()
}

// Flush is FlushError for http.Flusher.
func (cw *writer) Flush() { _ = cw.FlushError() }

// Compressible reports whether a body of media type contentType (a
// Content-Type value) is worth compressing: text other than event streams,
// JSON, JavaScript, XML and their +json/+xml kin, SVG, WebAssembly and the
// uncompressed font and icon formats.
func Compressible(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	typ, sub, _ := strings.Cut(mt, "/")
	switch typ {
	case "text":
		return sub != "event-stream"
	case "application":
		switch sub {
		case "json", "javascript", "ecmascript", "x-javascript", "xml", "xhtml+xml",
			"wasm", "manifest+json", "x-ndjson", "ndjson", "graphql", "x-yaml", "yaml",
			"vnd.ms-fontobject", "x-font-ttf", "x-font-opentype", "rtf", "x-sh":
			return true
		}
		return strings.HasSuffix(sub, "+json") || strings.HasSuffix(sub, "+xml")
	case "image":
		return sub == "svg+xml" || sub == "x-icon" || sub == "vnd.microsoft.icon" || sub == "bmp"
	case "font":
		return sub == "ttf" || sub == "otf" || sub == "collection" || sub == "sfnt"
	}
	return false
}

// addVary adds Accept-Encoding to h's Vary unless it is already there (or
// Vary is "*").
func addVary(h http.Header) {
	vs := h.Values("Vary")
	if hasToken(vs, "Accept-Encoding") || hasToken(vs, "*") {
		return
	}
	h.Add("Vary", "Accept-Encoding")
}

// hasToken reports whether the comma-separated header values hold token
// (case-insensitively, ignoring parameters).
func hasToken(values []string, token string) bool {
	for _, v := range values {
		for t := range strings.SplitSeq(v, ",") {
			t, _, _ = strings.Cut(t, "=")
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}
