package httpx_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/httpx"
)

// A peer's 503 with Retry-After keeps its hint, so that the storefront can
// tell the customer's client when to try again.
func TestClientKeepsRetryAfter(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		errs.WriteProblem(w, r, errs.E(errs.Unavailable, errs.Msg("no primary"), errs.RetryAfter(2*time.Second)))
	}))
	defer srv.Close()
	c := httpx.NewClient("order", []string{srv.URL}, nil)
	err := c.Call(context.Background(), http.MethodPost, "/x", map[string]int{"a": 1}, nil)
	if !errs.Is(errs.Unavailable, err) {
		t.Fatalf("err = %v, want Unavailable", err)
	}
	if d := errs.RetryAfterOf(err); d != 2*time.Second {
		t.Errorf("RetryAfterOf = %v, want 2s", d)
	}
	if got := errs.Detail(err); got != "no primary" {
		t.Errorf("detail = %q", got)
	}
	rec := httptest.NewRecorder()
	errs.WriteProblem(rec, httptest.NewRequest(http.MethodGet, "/", nil), err)
	if rec.Code != 503 || rec.Header().Get("Retry-After") != "2" {
		t.Errorf("re-served as %d with Retry-After %q", rec.Code, rec.Header().Get("Retry-After"))
	}
}
