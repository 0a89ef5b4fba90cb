package compress_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/platform/compress"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// page is an HTML-like body of about n bytes: product rows with varied
// names and prices, as the storefront renders them.
func page(n int) []byte {
	r := rand.New(rand.NewPCG(1, 2))
	words := []string{"lamp", "desk", "chair", "oak", "steel", "blue", "green", "vintage", "modern", "sofa", "rug", "mirror"}
	var b bytes.Buffer
	b.WriteString("<!doctype html><html><head><title>Globomantics</title></head><body><ul class=\"products\">\n")
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "<li class=\"product\"><a href=\"/products/p%06d\"><img src=\"/media/products/p%06d/thumb-small.jpg\" alt=\"\">%s %s %s</a> <span class=\"price\">$%d.%02d</span></li>\n",
			r.IntN(1e6), r.IntN(1e6), words[r.IntN(len(words))], words[r.IntN(len(words))], words[r.IntN(len(words))], r.IntN(500), r.IntN(100))
	}
	b.WriteString("</ul></body></html>\n")
	return b.Bytes()
}

// serve starts a real HTTP server with h behind compress.Handler.
func serve(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(compress.Handler(h))
	t.Cleanup(srv.Close)
	return srv
}

// client does not ask for or decode compression by itself.
func client(t *testing.T) *http.Client {
	t.Helper()
	tr := &http.Transport{DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func get(t *testing.T, c *http.Client, method, url string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, b
}

func decode(t *testing.T, coding string, b []byte) []byte {
	t.Helper()
	var r io.Reader
	switch coding {
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		r = zr
	case "zstd":
		zr, err := zstd.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		defer zr.Close()
		r = zr
	case "":
		return b
	default:
		t.Fatalf("unexpected coding %q", coding)
	}
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("decoding %s: %v", coding, err)
	}
	return out
}

func staticHandler(ctype string, body []byte, setLength bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ctype != "" {
			w.Header().Set("Content-Type", ctype)
		}
		w.Header().Set("ETag", `"v1"`)
		if setLength {
			w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		}
		// Two writes, so that the first MinSize bytes span them.
		half := len(body) / 2
		_, _ = w.Write(body[:half])
		_, _ = w.Write(body[half:])
	})
}

func TestRoundTrip(t *testing.T) {
	body := page(20 << 10)
	for _, setLength := range []bool{false, true} {
		srv := serve(t, staticHandler("text/html; charset=utf-8", body, setLength))
		c := client(t)
		for _, tc := range []struct{ accept, want string }{
			{"gzip", "gzip"},
			{"zstd", "zstd"},
			{"gzip, deflate, br, zstd", "zstd"},
			{"", ""},
		} {
			t.Run(fmt.Sprintf("length=%v/%q", setLength, tc.accept), func(t *testing.T) {
				res, b := get(t, c, "GET", srv.URL, "Accept-Encoding", tc.accept)
				if got := res.Header.Get("Content-Encoding"); got != tc.want {
					t.Fatalf("Content-Encoding %q, want %q", got, tc.want)
				}
				if got := res.Header.Get("Vary"); got != "Accept-Encoding" {
					t.Errorf("Vary %q, want Accept-Encoding", got)
				}
				if got := decode(t, tc.want, b); !bytes.Equal(got, body) {
					t.Fatalf("body differs after decoding (%d bytes, want %d)", len(got), len(body))
				}
				etag := res.Header.Get("ETag")
				if tc.want != "" {
					if etag != `W/"v1"` {
						t.Errorf("ETag %q, want weakened W/\"v1\"", etag)
					}
					if res.ContentLength != -1 || res.Header.Get("Content-Length") != "" {
						t.Errorf("Content-Length kept on a compressed body: %d", res.ContentLength)
					}
					if len(b) > len(body)/3 {
						t.Errorf("compressed %d bytes to %d: too little", len(body), len(b))
					}
				} else if etag != `"v1"` {
					t.Errorf("ETag %q changed on an identity body", etag)
				}
			})
		}
	}
}

func TestNotCompressed(t *testing.T) {
	big := page(8 << 10)
	png := append([]byte("\x89PNG\r\n\x1a\n"), bytes.Repeat([]byte{0}, 8<<10)...)
	tests := []struct {
		name     string
		h        http.Handler
		method   string
		hdr      []string
		wantVary bool
	}{
		{"small body", staticHandler("text/html", []byte("<p>hello</p>"), false), "GET", nil, false},
		{"small body with length", staticHandler("application/json", []byte(`{"ok":true}`), true), "GET", nil, false},
		{"image", staticHandler("image/jpeg", big, true), "GET", nil, false},
		{"sniffed image", staticHandler("", png, false), "GET", nil, false},
		{"head", staticHandler("text/html", big, true), "HEAD", nil, false},
		{"range request", staticHandler("text/html", big, true), "GET", []string{"Range", "bytes=0-99"}, false},
		{"already encoded", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.Header().Set("Content-Encoding", "br")
			_, _ = w.Write(big)
		}), "GET", nil, false},
		{"no-transform", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html")
			w.Header().Set("Cache-Control", "public, no-transform")
			_, _ = w.Write(big)
		}), "GET", nil, false},
		{"identity only", staticHandler("text/html", big, false), "GET", []string{"Accept-Encoding", "identity"}, true},
		{"gzip refused", staticHandler("text/html", big, false), "GET", []string{"Accept-Encoding", "gzip;q=0, zstd;q=0"}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := serve(t, tc.h)
			hdr := tc.hdr
			if len(hdr) == 0 || hdr[0] != "Accept-Encoding" {
				hdr = append([]string{"Accept-Encoding", "gzip, zstd"}, hdr...)
			}
			res, b := get(t, client(t), tc.method, srv.URL, hdr...)
			if ce := res.Header.Get("Content-Encoding"); ce != "" && ce != "br" {
				t.Fatalf("compressed with %q", ce)
			}
			if got := res.Header.Get("Vary") != ""; got != tc.wantVary {
				t.Errorf("Vary %q, want set=%v", res.Header.Get("Vary"), tc.wantVary)
			}
			if tc.method == "GET" && res.StatusCode == 200 && res.Header.Get("Content-Encoding") == "" {
				if res.ContentLength != -1 && res.ContentLength != int64(len(b)) {
					t.Errorf("Content-Length %d for %d bytes", res.ContentLength, len(b))
				}
			}
		})
	}
}

func TestVaryAppended(t *testing.T) {
	body := page(4 << 10)
	srv := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Vary", "Origin")
		_, _ = w.Write(body)
	}))
	res, _ := get(t, client(t), "GET", srv.URL, "Accept-Encoding", "gzip")
	if got := res.Header.Values("Vary"); len(got) != 2 || got[0] != "Origin" || got[1] != "Accept-Encoding" {
		t.Fatalf("Vary %q, want [Origin Accept-Encoding]", got)
	}
}

func TestSniffedContentType(t *testing.T) {
	body := page(4 << 10)
	srv := serve(t, staticHandler("", body, false))
	res, b := get(t, client(t), "GET", srv.URL, "Accept-Encoding", "gzip")
	if res.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("Content-Encoding %q, want gzip", res.Header.Get("Content-Encoding"))
	}
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("Content-Type %q, want the sniffed text/html", ct)
	}
	if !bytes.Equal(decode(t, "gzip", b), body) {
		t.Fatal("body differs")
	}
}

func TestNegotiate(t *testing.T) {
	for _, tc := range []struct{ header, want string }{
		{"", "identity"},
		{"gzip", "gzip"},
		{"zstd", "zstd"},
		{"gzip, zstd", "zstd"},
		{"zstd, gzip", "zstd"},
		{"GZIP", "gzip"},
		{"x-gzip", "gzip"},
		{"br", "identity"},
		{"gzip;q=1.0, zstd;q=0.5", "gzip"},
		{"gzip;q=0.5, zstd;q=0.5", "zstd"},
		{"gzip;q=0.8, identity;q=0.9", "identity"},
		{"gzip;q=0.9, identity;q=0.9", "gzip"},
		{"zstd;q=0, gzip", "gzip"},
		{"*", "zstd"},
		{"*;q=0.5, gzip", "gzip"},
		{"*;q=0, identity;q=0", "identity"},
		{"identity;q=0", "identity"},
		{"gzip;q=bogus, zstd;q=0.1", "zstd"},
		{"gzip ; q=0.3 , deflate", "gzip"},
		{"gzip;q=0", "identity"},
	} {
		if got := compress.Negotiate(tc.header); got != tc.want {
			t.Errorf("Negotiate(%q) = %q, want %q", tc.header, got, tc.want)
		}
	}
}

func TestCompressible(t *testing.T) {
	for ct, want := range map[string]bool{
		"text/html; charset=utf-8":  true,
		"text/css":                  true,
		"text/event-stream":         false,
		"application/json":          true,
		"application/problem+json":  true,
		"application/javascript":    true,
		"application/atom+xml":      true,
		"image/svg+xml":             true,
		"image/png":                 false,
		"image/jpeg":                false,
		"application/octet-stream":  false,
		"application/zip":           false,
		"video/mp4":                 false,
		"font/woff2":                false,
		"not a type":                false,
		"APPLICATION/JSON; q=1":     true,
		"application/vnd.api+json":  true,
		"application/x-protobuffer": false,
	} {
		if got := compress.Compressible(ct); got != want {
			t.Errorf("Compressible(%q) = %v, want %v", ct, got, want)
		}
	}
}

// TestFlushStreams checks that a flushed part of a compressed body reaches
// the client while the handler is still running.
func TestFlushStreams(t *testing.T) {
	for _, coding := range []string{"gzip", "zstd"} {
		t.Run(coding, func(t *testing.T) {
			release := make(chan struct{})
			srv := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/plain")
				_, _ = io.WriteString(w, "first line\n")
				http.NewResponseController(w).Flush()
				select {
				case <-release:
				case <-r.Context().Done():
					return
				}
				_, _ = io.WriteString(w, "second line\n")
			}))
			defer close(release)
			req, _ := http.NewRequest("GET", srv.URL, nil)
			req.Header.Set("Accept-Encoding", coding)
			res, err := client(t).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			if res.Header.Get("Content-Encoding") != coding {
				t.Fatalf("Content-Encoding %q, want %s", res.Header.Get("Content-Encoding"), coding)
			}
			var zr io.Reader
			if coding == "gzip" {
				g, err := gzip.NewReader(res.Body)
				if err != nil {
					t.Fatal(err)
				}
				zr = g
			} else {
				z, err := zstd.NewReader(res.Body, zstd.WithDecoderConcurrency(1))
				if err != nil {
					t.Fatal(err)
				}
				defer z.Close()
				zr = z
			}
			done := make(chan string, 1)
			go func() {
				line, _ := bufio.NewReader(zr).ReadString('\n')
				done <- line
			}()
			select {
			case line := <-done:
				if line != "first line\n" {
					t.Fatalf("read %q before the handler finished", line)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the flushed line did not arrive while the handler was running")
			}
		})
	}
}

// TestEventStream checks that Server-Sent Events are neither compressed nor
// held back.
func TestEventStream(t *testing.T) {
	release := make(chan struct{})
	srv := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "data: one\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer close(release)
	req, _ := http.NewRequest("GET", srv.URL, nil)
	req.Header.Set("Accept-Encoding", "gzip, zstd")
	res, err := client(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if ce := res.Header.Get("Content-Encoding"); ce != "" {
		t.Fatalf("event stream compressed with %q", ce)
	}
	line, err := bufio.NewReader(res.Body).ReadString('\n')
	if err != nil || line != "data: one\n" {
		t.Fatalf("read %q, %v", line, err)
	}
}

// TestConditionalThroughServeContent checks that a client revalidating a
// compressed response with its weakened ETag gets 304 from
// http.ServeContent behind the middleware.
func TestConditionalThroughServeContent(t *testing.T) {
	body := page(4 << 10)
	srv := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"abc"`)
		w.Header().Set("Content-Type", "text/css")
		http.ServeContent(w, r, "style.css", time.Time{}, bytes.NewReader(body))
	}))
	c := client(t)
	res, _ := get(t, c, "GET", srv.URL, "Accept-Encoding", "gzip")
	etag := res.Header.Get("ETag")
	if etag != `W/"abc"` {
		t.Fatalf("ETag %q", etag)
	}
	res, b := get(t, c, "GET", srv.URL, "Accept-Encoding", "gzip", "If-None-Match", etag)
	if res.StatusCode != http.StatusNotModified || len(b) != 0 || res.Header.Get("Content-Encoding") != "" {
		t.Fatalf("status %d, %d bytes, Content-Encoding %q; want an empty 304", res.StatusCode, len(b), res.Header.Get("Content-Encoding"))
	}
	res, b = get(t, c, "GET", srv.URL, "Accept-Encoding", "gzip", "Range", "bytes=0-9")
	if res.StatusCode != http.StatusPartialContent || !bytes.Equal(b, body[:10]) {
		t.Fatalf("range: status %d, body %q", res.StatusCode, b)
	}
}

// TestWriteHeaderThenNothing checks empty answers stay empty and valid.
func TestEmptyBodies(t *testing.T) {
	srv := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/204":
			w.WriteHeader(http.StatusNoContent)
		case "/empty":
			w.Header().Set("Content-Type", "text/html")
		case "/redirect":
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
		}
	}))
	c := client(t)
	for _, p := range []string{"/204", "/empty", "/redirect"} {
		res, b := get(t, c, "GET", srv.URL+p, "Accept-Encoding", "gzip")
		if ce := res.Header.Get("Content-Encoding"); ce != "" {
			t.Errorf("%s: compressed with %q", p, ce)
		}
		if p == "/empty" && (len(b) != 0 || res.StatusCode != 200) {
			t.Errorf("%s: status %d, %d bytes", p, res.StatusCode, len(b))
		}
	}
}

func BenchmarkHandler(b *testing.B) {
	body := page(16 << 10)
	for _, coding := range []string{"identity", "gzip", "zstd"} {
		b.Run(coding, func(b *testing.B) {
			h := compress.Handler(staticHandler("text/html", body, false))
			req := httptest.NewRequest("GET", "/", nil)
			req.Header.Set("Accept-Encoding", coding)
			var out int
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				out = rec.Body.Len()
			}
			b.ReportMetric(float64(out)/float64(len(body)), "ratio")
		})
	}
}

// BenchmarkGzipLevel measures the trade-off that chose GzipLevel.
func BenchmarkGzipLevel(b *testing.B) {
	body := page(16 << 10)
	for _, level := range []int{1, 3, 5, 6, 9} {
		b.Run(fmt.Sprint("level=", level), func(b *testing.B) {
			w, _ := gzip.NewWriterLevel(io.Discard, level)
			var buf bytes.Buffer
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				buf.Reset()
				w.Reset(&buf)
				_, _ = w.Write(body)
				_ = w.Close()
			}
			b.ReportMetric(float64(buf.Len())/float64(len(body)), "ratio")
		})
	}
}
