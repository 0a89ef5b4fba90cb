package edge_test

import (
	"context"
	"errors"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/edge"
)

// testBackend is a real HTTP server on loopback standing in for a
// storefront: /readyz answers readyStatus, everything else h, counting
// the requests that arrived.
type testBackend struct {
	URL    string
	Addr   string
	hits   atomic.Int64
	ready  atomic.Int32
	srv    *http.Server
	ln     net.Listener
	killed atomic.Bool
}

func startBackend(t testing.TB, h http.HandlerFunc) *testBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &testBackend{ln: ln, Addr: ln.Addr().String(), URL: "http://" + ln.Addr().String()}
	b.ready.Store(http.StatusOK)
	b.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/readyz" {
			w.WriteHeader(int(b.ready.Load()))
			return
		}
		b.hits.Add(1)
		h(w, r)
	}), ErrorLog: quietLog()}
	go func() { _ = b.srv.Serve(ln) }()
	t.Cleanup(b.kill)
	return b
}

// kill stops the backend at once: the listener closes (new connections are
// refused) and open connections are closed.
func (b *testBackend) kill() {
	if b.killed.CompareAndSwap(false, true) {
		_ = b.srv.Close()
	}
}

func okHandler(body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, body)
	}
}

func quietLog() *log.Logger { return log.New(io.Discard, "", 0) }

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("EDGE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// startEdge runs an edge on loopback ports until the end of the test.
func startEdge(t testing.TB, cfg edge.Config) *edge.Edge {
	t.Helper()
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.HealthInterval == 0 {
		cfg.HealthInterval = 100 * time.Millisecond
	}
	if cfg.Log == nil {
		cfg.Log = testLogger(t)
	}
	e, err := edge.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("edge.Serve: %v", err)
		}
	})
	return e
}

// checkFor polls fn until it returns nil or timeout passes.
func checkFor(t testing.TB, timeout time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func newClient() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}}
}

// get fetches url and returns the status and body.
func get(t testing.TB, c *http.Client, method, url string, body io.Reader, hdr http.Header) (int, string, http.Header, error) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		return 0, "", nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header, err
}

func backendStatus(e *edge.Edge, pool, url string) (edge.BackendStatus, error) {
	for _, p := range e.Snapshot().Pools {
		if p.Name != pool {
			continue
		}
		for _, b := range p.Backends {
			if b.URL == url {
				return b, nil
			}
		}
	}
	return edge.BackendStatus{}, errors.New("no backend " + url + " in pool " + pool)
}

func isProblem(h http.Header) bool {
	return strings.HasPrefix(h.Get("Content-Type"), "application/problem+json")
}
