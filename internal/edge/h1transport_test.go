package edge

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countingTransport is an h1Transport whose dials are counted.
func countingTransport(t *testing.T, headerTimeout time.Duration) (*h1Transport, *atomic.Int64) {
	t.Helper()
	tr := newH1Transport(headerTimeout)
	var dials atomic.Int64
	d := tr.dial
	tr.dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		return d(ctx, network, addr)
	}
	t.Cleanup(tr.CloseIdleConnections)
	return tr, &dials
}

func get(t *testing.T, tr http.RoundTripper, method, url string, body io.Reader) (int, string, error) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func TestH1TransportReusesConnections(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Method", r.Method)
		_, _ = w.Write([]byte(r.Method + " " + r.URL.RequestURI() + " " + string(b)))
	}))
	defer srv.Close()
	tr, dials := countingTransport(t, 5*time.Second)
	for i := range 20 {
		method, body := "GET", io.Reader(nil)
		if i%2 == 1 {
			method, body = "POST", strings.NewReader("hello")
		}
		status, got, err := get(t, tr, method, srv.URL+"/p?q=1", body)
		if err != nil || status != 200 {
			t.Fatalf("request %d: %d %v", i, status, err)
		}
		want := method + " /p?q=1 "
		if method == "POST" {
			want += "hello"
		}
		if got != want {
			t.Fatalf("request %d: body %q, want %q", i, got, want)
		}
	}
	if n := dials.Load(); n != 1 {
		t.Fatalf("%d dials for 20 sequential requests, want 1", n)
	}
}

func TestH1TransportBodies(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		switch r.URL.Path {
		case "/echo":
			_, _ = w.Write([]byte(strings.Join(r.TransferEncoding, ",") + "|" + string(b)))
		case "/empty":
			w.WriteHeader(http.StatusNoContent)
		case "/stream": // no Content-Length: chunked
			for i := range 3 {
				_, _ = w.Write([]byte{byte('a' + i)})
				w.(http.Flusher).Flush()
			}
		}
	}))
	defer srv.Close()
	tr, dials := countingTransport(t, 5*time.Second)
	// A body of unknown length is sent chunked.
	pr, pw := io.Pipe()
	go func() { _, _ = pw.Write([]byte("chunked body")); pw.Close() }()
	if _, got, err := get(t, tr, "PUT", srv.URL+"/echo", pr); err != nil || got != "chunked|chunked body" {
		t.Fatalf("chunked upload: %q %v", got, err)
	}
	if status, got, err := get(t, tr, "GET", srv.URL+"/empty", nil); err != nil || status != 204 || got != "" {
		t.Fatalf("204: %d %q %v", status, got, err)
	}
	if _, got, err := get(t, tr, "GET", srv.URL+"/stream", nil); err != nil || got != "abc" {
		t.Fatalf("chunked answer: %q %v", got, err)
	}
	if status, _, err := get(t, tr, "HEAD", srv.URL+"/stream", nil); err != nil || status != 200 {
		t.Fatalf("HEAD: %d %v", status, err)
	}
	if n := dials.Load(); n != 1 {
		t.Fatalf("%d dials, want 1 (every exchange ended cleanly)", n)
	}
}

// rawBackend serves connections with fn, one goroutine each.
func rawBackend(t *testing.T, fn func(c net.Conn, br *bufio.Reader)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { defer c.Close(); fn(c, bufio.NewReader(c)) })
		}
	})
	return "http://" + ln.Addr().String()
}

// TestH1TransportNoticesClosedIdleConnections: a backend that closes a
// kept-alive connection after one answer (as a server shutting down does)
// costs no request, GET or POST: the closed connection is noticed before
// it is used.
func TestH1TransportNoticesClosedIdleConnections(t *testing.T) {
	url := rawBackend(t, func(c net.Conn, br *bufio.Reader) {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, req.Body)
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		// then close, without having said Connection: close
	})
	tr, dials := countingTransport(t, 5*time.Second)
	for i := range 10 {
		method, body := "GET", io.Reader(nil)
		if i%2 == 1 {
			// A body without GetBody: a closed connection noticed only
			// after the request was written could not be retried.
			method, body = "POST", io.MultiReader(strings.NewReader("x"))
		}
		time.Sleep(20 * time.Millisecond) // let the backend's FIN arrive
		status, _, err := get(t, tr, method, url, body)
		if err != nil || status != 200 {
			t.Fatalf("request %d (%s): %d %v", i, method, status, err)
		}
	}
	if n := dials.Load(); n != 10 {
		t.Fatalf("%d dials, want 10 (one per request)", n)
	}
}

// TestH1TransportResendsOnlyReplayable: a connection closed after the
// request was written and before an answer (the race the peek cannot see)
// is retried on a new connection for a GET, and fails for a POST whose
// body cannot be sent again.
func TestH1TransportResendsOnlyReplayable(t *testing.T) {
	var served atomic.Int64
	url := rawBackend(t, func(c net.Conn, br *bufio.Reader) {
		for first := true; ; first = false {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, req.Body)
			if !first {
				return // the second request on a connection is dropped unanswered
			}
			served.Add(1)
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	tr, _ := countingTransport(t, 5*time.Second)
	if _, _, err := get(t, tr, "GET", url, nil); err != nil {
		t.Fatal(err)
	}
	if status, _, err := get(t, tr, "GET", url, nil); err != nil || status != 200 {
		t.Fatalf("GET on a connection dropped mid-request: %d %v, want a retry on a new one", status, err)
	}
	pr, pw := io.Pipe() // a body that cannot be replayed
	go func() { _, _ = pw.Write([]byte("once")); pw.Close() }()
	if _, _, err := get(t, tr, "POST", url, pr); err == nil {
		t.Fatal("POST on a connection dropped mid-request succeeded; it must not be sent twice")
	}
	if n := served.Load(); n != 2 {
		t.Fatalf("backend answered %d requests, want 2", n)
	}
}

func TestH1TransportSkips1xxAndTimesOut(t *testing.T) {
	url := rawBackend(t, func(c net.Conn, br *bufio.Reader) {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		if req.URL.Path == "/slow" {
			time.Sleep(time.Second)
			return
		}
		_, _ = io.WriteString(c, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	})
	tr, _ := countingTransport(t, 200*time.Millisecond)
	if status, body, err := get(t, tr, "GET", url+"/hints", nil); err != nil || status != 200 || body != "ok" {
		t.Fatalf("after a 103: %d %q %v", status, body, err)
	}
	_, _, err := get(t, tr, "GET", url+"/slow", nil)
	if err == nil || !isTimeout(err) {
		t.Fatalf("slow backend: %v, want a timeout", err)
	}
}

func TestH1TransportClientLeaving(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
	}))
	defer srv.Close()
	defer close(release)
	tr, _ := countingTransport(t, 10*time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL, nil)
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	_, err := tr.RoundTrip(req)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("took %v to notice the client left", d)
	}
}

func TestH1TransportRefusesLineBreaksInHeaders(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	tr, _ := countingTransport(t, time.Second)
	req, _ := http.NewRequest("GET", srv.URL, nil)
	req.Header["X-Evil"] = []string{"a\r\nX-Injected: 1"}
	if _, err := tr.RoundTrip(req); !errors.Is(err, errBadHeader) {
		t.Fatalf("err %v, want errBadHeader", err)
	}
}

// TestH1TransportBodyClosedEarly: a body closed before its end closes the
// connection instead of returning it with unread bytes.
func TestH1TransportBodyClosedEarly(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(strings.Repeat("x", 100<<10)))
	}))
	defer srv.Close()
	tr, dials := countingTransport(t, time.Second)
	for range 2 {
		req, _ := http.NewRequest("GET", srv.URL, nil)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = resp.Body.Read(make([]byte, 10))
		resp.Body.Close()
	}
	if n := dials.Load(); n != 2 {
		t.Fatalf("%d dials, want 2 (a half-read connection is not reused)", n)
	}
	tr.closeIdleOlder(time.Now().Add(time.Hour))
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if len(tr.idle) != 0 {
		t.Fatalf("idle connections left after closeIdleOlder: %v", tr.idle)
	}
}
