package httpx_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/httpx"
)

func TestRequireToken(t *testing.T) {
	const token = "s3cret-service-token-0123456789"
	srv := httptest.NewServer(httpx.RequireToken(token, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		httpx.WriteJSON(w, http.StatusOK, map[string]string{"ok": "yes"})
	})))
	defer srv.Close()
	ctx := context.Background()

	var out map[string]string
	if err := httpx.NewClient("svc", []string{srv.URL}, nil, httpx.WithToken(token)).Call(ctx, "GET", "/x", nil, &out); err != nil || out["ok"] != "yes" {
		t.Fatalf("with the token: %v %v", out, err)
	}
	for name, cl := range map[string]*httpx.Client{
		"no token":    httpx.NewClient("svc", []string{srv.URL}, nil),
		"wrong token": httpx.NewClient("svc", []string{srv.URL}, nil, httpx.WithToken("s3cret-service-token-0123456780")),
	} {
		if err := cl.Call(ctx, "GET", "/x", nil, nil); !errs.Is(errs.Unauthorized, err) {
			t.Errorf("%s: err = %v, want Unauthorized", name, err)
		}
	}
	// Another scheme, or the token without "Bearer ", is refused too.
	for _, h := range []string{"Basic " + token, token, "Bearer"} {
		req, _ := http.NewRequest("GET", srv.URL+"/x", nil)
		req.Header.Set("Authorization", h)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("Authorization %q: %d %s", h, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
	}
	// An empty token configured on the server lets nobody in.
	open := httptest.NewServer(httpx.RequireToken("", http.NotFoundHandler()))
	defer open.Close()
	if err := httpx.NewClient("svc", []string{open.URL}, nil, httpx.WithToken("")).Call(ctx, "GET", "/x", nil, nil); !errs.Is(errs.Unauthorized, err) {
		t.Errorf("empty server token: %v", err)
	}
}
