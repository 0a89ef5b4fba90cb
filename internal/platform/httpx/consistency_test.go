package httpx_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/globomantics/globomantics/internal/platform/consistency"
	"github.com/globomantics/globomantics/internal/platform/httpx"
)

// A caller's write positions reach the service it calls, and the positions
// of the writes that service made come back to the caller.
func TestConsistencyTokenTravelsBothWays(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var seen uint64
	srv := httptest.NewServer(httpx.Middleware(log, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok := consistency.TokenFrom(r.Context())
		seen = tok.Position("account")
		tok.Observe("order", 0x2_0000_0010) // a write made while serving
		httpx.WriteJSON(w, http.StatusOK, map[string]string{"ok": "yes"})
	})))
	defer srv.Close()
	c := httpx.NewClient("order", []string{srv.URL}, nil)

	tok := consistency.NewToken()
	tok.Observe("account", 77)
	ctx := consistency.WithToken(context.Background(), tok)
	if err := c.Call(ctx, http.MethodPost, "/x", map[string]int{"a": 1}, nil); err != nil {
		t.Fatal(err)
	}
	if seen != 77 {
		t.Errorf("service saw account position %d, want 77", seen)
	}
	if got := tok.Position("order"); got != 0x2_0000_0010 {
		t.Errorf("caller's order position = %x, want 200000010", got)
	}
	if got := tok.Position("account"); got != 77 {
		t.Errorf("caller's account position = %d, want 77", got)
	}

	// A caller with no token still works, and a caller that sends nothing
	// gets no header back (the public never sees positions).
	if err := c.Call(context.Background(), http.MethodGet, "/x", nil, nil); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(srv.URL + "/x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if v := resp.Header.Get(consistency.Header); v != "" {
		t.Errorf("a request without the header got %s: %q", consistency.Header, v)
	}
}

// A malformed token from a peer costs the request nothing.
func TestConsistencyTokenMalformedIgnored(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := httptest.NewServer(httpx.Middleware(log, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if consistency.TokenFrom(r.Context()) == nil {
			t.Error("no token in the request context")
		}
		w.WriteHeader(http.StatusNoContent)
	})))
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	req.Header.Set(consistency.Header, "order=zz;;")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Errorf("status %d", resp.StatusCode)
	}
}
