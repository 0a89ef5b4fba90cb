package httpx_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/httpx"
	"github.com/globomantics/globomantics/internal/platform/retry"
)

// instance is one httptest server of a fake service that counts its requests.
type instance struct {
	name string
	srv  *httptest.Server
	hits atomic.Int64

	mu      sync.Mutex
	bodies  []string
	headers []http.Header
}

// newInstance starts a server answering with h, or with its own name as JSON.
func newInstance(t *testing.T, name string, h httpx.Handler) *instance {
	t.Helper()
	in := &instance{name: name}
	in.srv = httptest.NewServer(httpx.Handler(func(w http.ResponseWriter, r *http.Request) error {
		in.hits.Add(1)
		b, _ := io.ReadAll(r.Body)
		in.mu.Lock()
		in.bodies = append(in.bodies, string(b))
		in.headers = append(in.headers, r.Header.Clone())
		in.mu.Unlock()
		if h != nil {
			return h(w, r)
		}
		httpx.WriteJSON(w, 200, map[string]string{"instance": name})
		return nil
	}))
	t.Cleanup(in.srv.Close)
	return in
}

// closedURL is the URL of a server that has been shut down: connections to it are refused.
func closedURL(t *testing.T) string {
	t.Helper()
	s := httptest.NewServer(http.NotFoundHandler())
	u := s.URL
	s.Close()
	return u
}

func unavailable(w http.ResponseWriter, r *http.Request) error {
	return errs.E("test", errs.Unavailable, errs.Msg("draining"))
}

func TestClientRoundRobin(t *testing.T) {
	a, b, c := newInstance(t, "a", nil), newInstance(t, "b", nil), newInstance(t, "c", nil)
	cl := httpx.NewClient("svc", []string{a.srv.URL, b.srv.URL + "/", c.srv.URL}, nil)
	got := map[string]int{}
	for i := 0; i < 9; i++ {
		var out struct{ Instance string }
		if err := cl.Call(context.Background(), "GET", "/ping", nil, &out); err != nil {
			t.Fatal(err)
		}
		got[out.Instance]++
	}
	for _, in := range []*instance{a, b, c} {
		if got[in.name] != 3 || in.hits.Load() != 3 {
			t.Errorf("instance %s answered %d calls (%d hits), want 3 of 9", in.name, got[in.name], in.hits.Load())
		}
	}
}

func TestClientRetriesGETOnRefusedConnection(t *testing.T) {
	b := newInstance(t, "b", nil)
	cl := httpx.NewClient("svc", []string{closedURL(t), b.srv.URL}, nil)
	for i := 0; i < 4; i++ {
		var out struct{ Instance string }
		if err := cl.Call(context.Background(), "GET", "/ping", nil, &out); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		if out.Instance != "b" {
			t.Fatalf("answered by %q", out.Instance)
		}
	}
	if b.hits.Load() != 4 {
		t.Errorf("b hits = %d, want 4", b.hits.Load())
	}
}

func TestClientRetriesIdempotentOn503(t *testing.T) {
	for _, method := range []string{"GET", "PUT", "DELETE"} {
		t.Run(method, func(t *testing.T) {
			a := newInstance(t, "a", unavailable)
			b := newInstance(t, "b", nil)
			cl := httpx.NewClient("svc", []string{a.srv.URL, b.srv.URL}, nil)
			for i := 0; i < 4; i++ {
				var out struct{ Instance string }
				if err := cl.Call(context.Background(), method, "/thing", map[string]int{"n": i}, &out); err != nil || out.Instance != "b" {
					t.Fatalf("call %d: %v, answered by %q", i, err, out.Instance)
				}
			}
			// Half the calls start on a, which answers 503; each is retried once on b.
			if a.hits.Load() != 2 || b.hits.Load() != 4 {
				t.Errorf("hits a=%d b=%d, want 2 and 4", a.hits.Load(), b.hits.Load())
			}
		})
	}
}

func TestClientDoesNotRetryPOSTWithoutIdempotencyKey(t *testing.T) {
	a := newInstance(t, "a", unavailable)
	b := newInstance(t, "b", nil)
	cl := httpx.NewClient("svc", []string{a.srv.URL, b.srv.URL}, nil)
	var failures int
	for i := 0; i < 2; i++ {
		err := cl.Call(context.Background(), "POST", "/orders", map[string]int{"n": i}, nil)
		if err != nil {
			failures++
			if !errs.Is(errs.Unavailable, err) || errs.Detail(err) != "draining" {
				t.Errorf("POST error = %v / %q, want Unavailable 'draining'", err, errs.Detail(err))
			}
		}
	}
	if failures != 1 || a.hits.Load() != 1 || b.hits.Load() != 1 {
		t.Errorf("failures=%d hits a=%d b=%d: a POST without Idempotency-Key must go to one instance only", failures, a.hits.Load(), b.hits.Load())
	}
}

func TestClientSendsPOSTToNextInstanceWhenConnectionRefused(t *testing.T) {
	dead := newInstance(t, "dead", nil)
	deadURL := dead.srv.URL
	dead.srv.Close()
	b := newInstance(t, "b", nil)
	cl := httpx.NewClient("svc", []string{deadURL, b.srv.URL}, nil)
	for i := 0; i < 4; i++ {
		if err := cl.Call(context.Background(), "POST", "/orders", map[string]int{"n": i}, nil); err != nil {
			t.Fatalf("POST %d: %v", i, err)
		}
	}
	if b.hits.Load() != 4 {
		t.Errorf("b hits = %d, want 4", b.hits.Load())
	}
}

func TestClientRetriesMarkedPOST(t *testing.T) {
	for name, opt := range map[string]httpx.CallOption{
		"IdempotencyKey": httpx.IdempotencyKey("key-123"),
		"Retryable":      httpx.Retryable(),
	} {
		t.Run(name, func(t *testing.T) {
			a := newInstance(t, "a", unavailable)
			b := newInstance(t, "b", nil)
			cl := httpx.NewClient("svc", []string{a.srv.URL, b.srv.URL}, nil)
			for i := 0; i < 2; i++ {
				if err := cl.Call(context.Background(), "POST", "/orders", map[string]string{"sku": "mug"}, nil, opt, httpx.WithHeader("X-Test", "yes")); err != nil {
					t.Fatalf("call %d: %v", i, err)
				}
			}
			// The call that started on a is retried on b, after the 503.
			if a.hits.Load() != 1 || b.hits.Load() != 2 {
				t.Fatalf("hits a=%d b=%d, want 1 and 2", a.hits.Load(), b.hits.Load())
			}
			// The retry carries the same body and headers.
			for _, in := range []*instance{a, b} {
				in.mu.Lock()
				for i, body := range in.bodies {
					if body != `{"sku":"mug"}` {
						t.Errorf("%s got body %q", in.name, body)
					}
					h := in.headers[i]
					if h.Get("X-Test") != "yes" || h.Get("Content-Type") != "application/json" || h.Get("Accept") != "application/json" {
						t.Errorf("%s got headers %v", in.name, h)
					}
					if want := map[string]string{"IdempotencyKey": "key-123", "Retryable": ""}[name]; h.Get("Idempotency-Key") != want {
						t.Errorf("%s got Idempotency-Key %q, want %q", in.name, h.Get("Idempotency-Key"), want)
					}
				}
				in.mu.Unlock()
			}
		})
	}
}

// An Idempotency-Key header set by hand no longer makes a POST retryable:
// retrying is a property of the call, not of a header.
func TestClientHeaderDoesNotMakePOSTRetryable(t *testing.T) {
	a := newInstance(t, "a", unavailable)
	b := newInstance(t, "b", nil)
	cl := httpx.NewClient("svc", []string{b.srv.URL, a.srv.URL}, nil) // first call goes to index 1: a
	err := cl.Call(context.Background(), "POST", "/orders", nil, nil, httpx.WithHeader("Idempotency-Key", "k"))
	if !errs.Is(errs.Unavailable, err) || a.hits.Load() != 1 || b.hits.Load() != 0 {
		t.Fatalf("err = %v, hits a=%d b=%d: want one try on a", err, a.hits.Load(), b.hits.Load())
	}
}

func TestClientAllInstancesDown(t *testing.T) {
	cl := httpx.NewClient("catalog", []string{closedURL(t), closedURL(t)}, nil)
	err := cl.Call(context.Background(), "GET", "/x", nil, nil)
	if !errs.Is(errs.Unavailable, err) || errs.Detail(err) != "catalog service is unavailable" {
		t.Fatalf("err = %v / %q", err, errs.Detail(err))
	}
	if p := errs.ProblemFor(err); strings.Contains(p.Detail, "127.0.0.1") {
		t.Errorf("problem leaks the address: %+v", p)
	}

	// A retryable call is tried retry.Default.Tries times, spread over the
	// instances.
	a, b := newInstance(t, "a", unavailable), newInstance(t, "b", unavailable)
	cl = httpx.NewClient("catalog", []string{a.srv.URL, b.srv.URL}, nil)
	err = cl.Call(context.Background(), "GET", "/x", nil, nil)
	if !errs.Is(errs.Unavailable, err) || errs.Detail(err) != "draining" || a.hits.Load() != 2 || b.hits.Load() != 2 {
		t.Fatalf("err = %v, hits a=%d b=%d: want two tries per instance", err, a.hits.Load(), b.hits.Load())
	}
	if retry.Default.Tries != 4 {
		t.Errorf("retry.Default.Tries = %d: update this test", retry.Default.Tries)
	}

	// A call that is not retryable is sent to each refusing instance once.
	cl = httpx.NewClient("catalog", []string{closedURL(t), closedURL(t)}, nil)
	if err := cl.Call(context.Background(), "POST", "/x", nil, nil); !errs.Is(errs.Unavailable, err) {
		t.Fatalf("POST to refusing instances: %v", err)
	}
}

func TestClientMapsProblemsBack(t *testing.T) {
	kinds := []errs.Kind{errs.BadRequest, errs.Unauthorized, errs.Declined, errs.Forbidden, errs.NotFound, errs.Conflict, errs.TooLarge, errs.Invalid}
	for _, k := range kinds {
		t.Run(k.String(), func(t *testing.T) {
			a := newInstance(t, "a", func(w http.ResponseWriter, r *http.Request) error {
				return errs.E("svc.Op", k, errs.Msg("because %s", r.URL.Path), errors.New("internal cause"))
			})
			b := newInstance(t, "b", nil)
			cl := httpx.NewClient("svc", []string{a.srv.URL, b.srv.URL}, nil)
			// Start on a: the first call goes to index 1, so make one to b first.
			if err := cl.Call(context.Background(), "GET", "/warm", nil, nil); err != nil {
				t.Fatal(err)
			}
			err := cl.Call(context.Background(), "GET", "/things/7", nil, nil)
			if errs.KindOf(err) != k || errs.Detail(err) != "because /things/7" {
				t.Fatalf("err = %v: kind %v detail %q", err, errs.KindOf(err), errs.Detail(err))
			}
			if strings.Contains(errs.Detail(err), "internal cause") {
				t.Error("internal cause crossed HTTP")
			}
			// A client error is final: it is not retried on b.
			if b.hits.Load() != 1 {
				t.Errorf("b hits = %d, want 1 (no retry of a %v)", b.hits.Load(), k)
			}
		})
	}
	// An internal error crosses as Other, without detail.
	a := newInstance(t, "a", func(w http.ResponseWriter, r *http.Request) error { return errors.New("nil pointer in 10.0.0.1") })
	err := httpx.NewClient("svc", []string{a.srv.URL}, nil).Call(context.Background(), "GET", "/x", nil, nil)
	if errs.KindOf(err) != errs.Other || strings.Contains(err.Error(), "10.0.0.1") {
		t.Fatalf("internal error: %v (kind %v)", err, errs.KindOf(err))
	}
}

func TestClientResponseDecoding(t *testing.T) {
	a := newInstance(t, "a", func(w http.ResponseWriter, r *http.Request) error {
		switch r.URL.Path {
		case "/bad":
			w.WriteHeader(200)
			_, _ = io.WriteString(w, "not json")
		case "/empty":
			w.WriteHeader(http.StatusNoContent)
		}
		return nil
	})
	cl := httpx.NewClient("svc", []string{a.srv.URL}, nil)
	var out map[string]any
	if err := cl.Call(context.Background(), "GET", "/bad", nil, &out); err == nil || errs.KindOf(err) != errs.Other {
		t.Errorf("undecodable answer: %v", err)
	}
	if err := cl.Call(context.Background(), "DELETE", "/empty", nil, &out); err != nil {
		t.Errorf("204 answer: %v", err)
	}
	if err := cl.Call(context.Background(), "POST", "/x", func() {}, nil); err == nil || a.hits.Load() != 2 {
		t.Errorf("unmarshalable input: %v, hits %d", err, a.hits.Load())
	}
}

func TestClientContextCancelled(t *testing.T) {
	arrived := make(chan struct{}, 2)
	a := newInstance(t, "a", func(w http.ResponseWriter, r *http.Request) error {
		arrived <- struct{}{}
		<-r.Context().Done()
		return nil
	})
	b := newInstance(t, "b", nil)
	cl := httpx.NewClient("svc", []string{b.srv.URL, a.srv.URL}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cl.Call(ctx, "GET", "/slow", nil, nil) }() // first call goes to index 1: a
	<-arrived
	cancel()
	err := <-done
	if !errs.Is(errs.Unavailable, err) || !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled call = %v", err)
	}
	if b.hits.Load() != 0 {
		t.Errorf("a cancelled call was retried on b")
	}
}

func TestNewClientPanicsWithoutBases(t *testing.T) {
	defer func() {
		if v := recover(); v == nil || !strings.Contains(v.(string), "cart") {
			t.Fatalf("recover() = %v", v)
		}
	}()
	httpx.NewClient("cart", nil, nil)
}

func TestPath(t *testing.T) {
	tests := []struct {
		prefix string
		segs   []string
		want   string
	}{
		{"/svc/catalog/v1/products", []string{"prd_1"}, "/svc/catalog/v1/products/prd_1"},
		{"/v1", []string{"a/b", "c d"}, "/v1/a%2Fb/c%20d"},
		{"/v1", []string{"../admin"}, "/v1/..%2Fadmin"},
		{"/v1", []string{"q?x=1#f"}, "/v1/q%3Fx=1%23f"},
		{"/v1", nil, "/v1"},
	}
	for _, tt := range tests {
		if got := httpx.Path(tt.prefix, tt.segs...); got != tt.want {
			t.Errorf("Path(%q, %q) = %q, want %q", tt.prefix, tt.segs, got, tt.want)
		}
	}

	// An escaped segment reaches a ServeMux wildcard intact.
	mux := http.NewServeMux()
	mux.Handle("GET /svc/x/v1/items/{id}", httpx.Handler(func(w http.ResponseWriter, r *http.Request) error {
		httpx.WriteJSON(w, 200, r.PathValue("id"))
		return nil
	}))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	cl := httpx.NewClient("x", []string{srv.URL}, nil)
	for _, id := range []string{"plain", "a/b", "../../etc/passwd", "sp ace?q=1#frag", "ünï%20"} {
		var got string
		if err := cl.Call(context.Background(), "GET", httpx.Path("/svc/x/v1/items", id), nil, &got); err != nil {
			t.Fatalf("id %q: %v", id, err)
		}
		if got != id {
			t.Errorf("id %q arrived as %q", id, got)
		}
	}
}
