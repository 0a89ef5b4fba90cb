package httpx_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/httpx"
	"github.com/globomantics/globomantics/internal/platform/retry"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

// fast is a policy whose waits do not slow the tests down.
var fast = retry.Policy{Tries: 4, Base: time.Millisecond, Max: 2 * time.Millisecond}

// A spent retry budget stops retries: the calls fail with their last error
// instead, and the failing instances see little more than one request per
// call.
func TestClientRetryBudget(t *testing.T) {
	a, b := newInstance(t, "a", unavailable), newInstance(t, "b", unavailable)
	const calls = 20
	const ratio = 0.2
	cl := httpx.NewClient("svc", []string{a.srv.URL, b.srv.URL}, nil, httpx.WithPolicy(fast), httpx.WithRetryBudget(ratio, 0))
	for i := 0; i < calls; i++ {
		if err := cl.Call(context.Background(), "GET", "/x", nil, nil); !errs.Is(errs.Unavailable, err) || errs.Detail(err) != "draining" {
			t.Fatalf("call %d: %v, want the 503", i, err)
		}
	}
	// A full budget (one retry) plus ratio of a retry per call; without a
	// budget it would be calls*fast.Tries = 80.
	got := a.hits.Load() + b.hits.Load()
	if maxHits := int64(calls + 1 + calls*ratio + 1); got <= calls || got > maxHits {
		t.Errorf("%d requests for %d calls, want more than %d (some retries) and at most %d", got, calls, calls, maxHits)
	}

	// With the default budget a lone call is retried fully.
	a.hits.Store(0)
	b.hits.Store(0)
	cl = httpx.NewClient("svc", []string{a.srv.URL, b.srv.URL}, nil, httpx.WithPolicy(fast))
	_ = cl.Call(context.Background(), "GET", "/x", nil, nil)
	if got := a.hits.Load() + b.hits.Load(); got != int64(fast.Tries) {
		t.Errorf("%d requests, want %d", got, fast.Tries)
	}
}

// A hung instance costs a call one try timeout: the call then moves to the
// next instance, and the hung request's context ends.
func TestClientTryTimeout(t *testing.T) {
	released := make(chan struct{}, 4)
	hung := newInstance(t, "hung", func(w http.ResponseWriter, r *http.Request) error {
		select {
		case <-r.Context().Done():
			released <- struct{}{}
		case <-time.After(10 * time.Second):
		}
		return nil
	})
	b := newInstance(t, "b", nil)
	cl := httpx.NewClient("svc", []string{b.srv.URL, hung.srv.URL}, nil, httpx.WithTryTimeout(200*time.Millisecond)) // first call: index 1
	start := time.Now()
	var out struct{ Instance string }
	if err := cl.Call(context.Background(), "GET", "/x", nil, &out); err != nil || out.Instance != "b" {
		t.Fatalf("GET: %v, answered by %q", err, out.Instance)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("GET took %v", d)
	}
	select {
	case <-released:
	case <-time.After(5 * time.Second):
		t.Error("the hung instance's request was not cancelled")
	}

	// A call that is not retryable fails after its try: it may have been
	// applied. (A new client: this one skips the hung instance for now.)
	cl = httpx.NewClient("svc", []string{b.srv.URL, hung.srv.URL}, nil, httpx.WithTryTimeout(200*time.Millisecond)) // first call: index 1
	bHits := b.hits.Load()
	err := cl.Call(context.Background(), "POST", "/x", nil, nil)
	if !errs.Is(errs.Unavailable, err) || b.hits.Load() != bHits {
		t.Errorf("POST to a hung instance: %v, retried on b: %v", err, b.hits.Load() != bHits)
	}
}

// A peer's Retry-After stretches the wait before the retry, up to the
// policy's Max.
func TestClientHonoursRetryAfter(t *testing.T) {
	for _, tt := range []struct {
		name     string
		max      time.Duration
		min, lim time.Duration // bounds of the gap between the tries
	}{
		{"within Max", 2 * time.Second, 950 * time.Millisecond, 1900 * time.Millisecond},
		{"capped at Max", 100 * time.Millisecond, 90 * time.Millisecond, 900 * time.Millisecond},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex
			var arrivals []time.Time
			a := newInstance(t, "a", func(w http.ResponseWriter, r *http.Request) error {
				mu.Lock()
				defer mu.Unlock()
				arrivals = append(arrivals, time.Now())
				if len(arrivals) == 1 {
					return errs.E(errs.Unavailable, errs.Msg("no primary"), errs.RetryAfter(time.Second))
				}
				httpx.WriteJSON(w, 200, "ok")
				return nil
			})
			cl := httpx.NewClient("svc", []string{a.srv.URL}, nil, httpx.WithPolicy(retry.Policy{Tries: 2, Base: time.Millisecond, Max: tt.max}))
			if err := cl.Call(context.Background(), "GET", "/x", nil, nil); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(arrivals) != 2 {
				t.Fatalf("%d tries", len(arrivals))
			}
			if gap := arrivals[1].Sub(arrivals[0]); gap < tt.min || gap > tt.lim {
				t.Errorf("retried after %v, want between %v and %v", gap, tt.min, tt.lim)
			}
		})
	}

	// A wait that would outlast the caller's deadline is not waited: the
	// call fails at once with the hint for its own caller.
	a := newInstance(t, "a", func(w http.ResponseWriter, r *http.Request) error {
		return errs.E(errs.Unavailable, errs.RetryAfter(time.Second))
	})
	cl := httpx.NewClient("svc", []string{a.srv.URL}, nil, httpx.WithPolicy(retry.Policy{Tries: 4, Base: time.Millisecond, Max: 5 * time.Second}))
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := cl.Call(ctx, "GET", "/x", nil, nil)
	if errs.RetryAfterOf(err) != time.Second || a.hits.Load() != 1 || time.Since(start) > 250*time.Millisecond {
		t.Errorf("err = %v (hint %v) after %v and %d tries", err, errs.RetryAfterOf(err), time.Since(start), a.hits.Load())
	}
}

// The caller's deadline travels in the DeadlineHeader, and Middleware
// gives the callee's request context that deadline, capped.
func TestDeadlinePropagates(t *testing.T) {
	type seen struct {
		header string
		left   time.Duration // time left to the request's context, -1 for none
	}
	got := make(chan seen, 1)
	srv := httptest.NewServer(httpx.Middleware(slog.New(slog.DiscardHandler), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := seen{header: r.Header.Get(httpx.DeadlineHeader), left: -1}
		if dl, ok := r.Context().Deadline(); ok {
			s.left = time.Until(dl)
		}
		got <- s
		w.WriteHeader(204)
	})))
	defer srv.Close()

	// Through the client: the caller's deadline, else the try timeout.
	cl := httpx.NewClient("svc", []string{srv.URL}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := cl.Call(ctx, "GET", "/x", nil, nil); err != nil {
		t.Fatal(err)
	}
	s := <-got
	if ms, _ := strconv.Atoi(s.header); ms <= 1000 || ms > 2000 || s.left <= time.Second || s.left > 2*time.Second {
		t.Errorf("caller's 2s deadline arrived as header %q, context deadline in %v", s.header, s.left)
	}
	if err := cl.Call(context.Background(), "GET", "/x", nil, nil); err != nil {
		t.Fatal(err)
	}
	s = <-got
	if ms, _ := strconv.Atoi(s.header); ms <= 4000 || ms > int(httpx.DefaultTryTimeout.Milliseconds()) || s.left > httpx.DefaultTryTimeout {
		t.Errorf("no caller deadline arrived as header %q, context deadline in %v: want the try timeout", s.header, s.left)
	}

	// Sent by hand: capped, ignored when malformed or absent.
	for _, tt := range []struct {
		header   string
		min, max time.Duration
	}{
		{"3600000", 59 * time.Second, httpx.MaxDeadline},
		{"150", time.Nanosecond, 150 * time.Millisecond},
		{"soon", -1, -1},
		{"-5", -1, -1},
		{"", -1, -1},
	} {
		req, _ := http.NewRequest("GET", srv.URL, nil)
		if tt.header != "" {
			req.Header.Set(httpx.DeadlineHeader, tt.header)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if s := <-got; s.left < tt.min || s.left > tt.max {
			t.Errorf("header %q: context deadline in %v, want between %v and %v", tt.header, s.left, tt.min, tt.max)
		}
	}
}

// A callee whose caller gives up stops working: its context ends with the
// caller's deadline.
func TestDeadlineEndsCalleeWork(t *testing.T) {
	ended := make(chan time.Duration, 1)
	srv := httptest.NewServer(httpx.Middleware(slog.New(slog.DiscardHandler), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
		ended <- time.Since(start)
	})))
	defer srv.Close()
	cl := httpx.NewClient("svc", []string{srv.URL}, nil, httpx.WithTryTimeout(300*time.Millisecond))
	// The callee's context may end a moment before the caller stops
	// waiting, so the call may fail or get the callee's empty answer.
	_ = cl.Call(context.Background(), "POST", "/x", nil, nil)
	if d := <-ended; d > 2*time.Second {
		t.Errorf("callee worked for %v, its caller waited 300ms", d)
	}
}

// An instance that did not answer within the try timeout is skipped by the
// calls that follow (while another is left), so they do not each wait for
// it; after the ejection period it is tried again, and an answer brings it
// back.
func TestClientEjectsHungInstance(t *testing.T) {
	var hang sync.Mutex
	hanging := true
	hung := newInstance(t, "hung", func(w http.ResponseWriter, r *http.Request) error {
		hang.Lock()
		h := hanging
		hang.Unlock()
		if h {
			<-r.Context().Done()
		}
		return nil
	})
	b := newInstance(t, "b", nil)
	cl := httpx.NewClient("svc", []string{b.srv.URL, hung.srv.URL}, nil, httpx.WithPolicy(fast), httpx.WithTryTimeout(100*time.Millisecond)) // first call: index 1
	start := time.Now()
	for i := 0; i < 20; i++ {
		var out struct{ Instance string }
		if err := cl.Call(context.Background(), "GET", "/x", nil, &out); err != nil || out.Instance != "b" {
			t.Fatalf("call %d: %v, answered by %q", i, err, out.Instance)
		}
	}
	if got := hung.hits.Load(); got != 1 {
		t.Errorf("the hung instance got %d of 20 calls, want only the first (then skipped)", got)
	}
	if d := time.Since(start); d > 900*time.Millisecond {
		t.Logf("20 calls took %v (the machine is slow?)", d)
	}
	hang.Lock()
	hanging = false
	hang.Unlock()
	// Once the ejection ends it is tried again and, answering, back in the
	// rotation.
	testenv.CheckFor(t, 5*time.Second, func() error {
		if err := cl.Call(context.Background(), "GET", "/x", nil, nil); err != nil {
			return err
		}
		if hung.hits.Load() < 3 {
			return fmt.Errorf("the recovered instance got %d calls", hung.hits.Load())
		}
		return nil
	})
}
