package storefront_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/app"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

// lockedBuffer collects the shop's log for failure messages.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestSharedHomePageEndToEnd runs the whole shop (SQLite, no demo catalog)
// and checks the shared home page from outside: anonymous visitors get one
// cached page without cookies, a logged-in customer their own, and the
// customer's page never reaches anonymous visitors.
func TestSharedHomePageEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test skipped in -short mode")
	}
	addr := testenv.FreeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	logs := &lockedBuffer{}
	args := []string{"globomantics", "serve", "--http-addr", addr, "--data-dir", t.TempDir(), "--rate-limits=false", "--seed=false"}
	env := map[string]string{"GLOBO_LOG_LEVEL": "warn"}
	go func() { done <- app.Run(ctx, args, func(k string) string { return env[k] }, io.Discard, logs) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v\n%s", err, logs)
			}
		case <-time.After(15 * time.Second):
			t.Error("the shop did not stop within 15 s")
		}
	})
	base := "http://" + addr
	testenv.CheckFor(t, 30*time.Second, func() error {
		select {
		case err := <-done:
			t.Fatalf("the shop exited: %v\n%s", err, logs)
		default:
		}
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz %d", resp.StatusCode)
		}
		return nil
	})

	get := func(hc *http.Client, path string) (*http.Response, string) {
		t.Helper()
		resp, err := hc.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %s\n%s", path, resp.StatusCode, b, logs)
		}
		return resp, string(b)
	}
	anon := &http.Client{}
	r1, home := get(anon, "/")
	r2, again := get(anon, "/")
	if again != home || r1.Header.Get("ETag") == "" || r2.Header.Get("ETag") != r1.Header.Get("ETag") {
		t.Fatalf("two anonymous home pages differ (ETags %q, %q)", r1.Header.Get("ETag"), r2.Header.Get("ETag"))
	}
	for _, r := range []*http.Response{r1, r2} {
		if c := r.Header.Values("Set-Cookie"); len(c) > 0 {
			t.Fatalf("an anonymous visitor got cookies %q", c)
		}
		if cc := r.Header.Get("Cache-Control"); cc != "public, max-age=30, s-maxage=1" {
			t.Fatalf("anonymous Cache-Control %q", cc)
		}
	}
	if !strings.Contains(home, "Featured products") || !strings.Contains(home, `href="/login"`) {
		t.Fatalf("not the anonymous home page:\n%s", home)
	}

	// A customer: register and log in through the API, then browse.
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	ada := &http.Client{Jar: jar}
	for _, step := range []struct{ path, body string }{
		{"/api/v1/accounts", `{"email":"ada@example.com","password":"correct horse battery","name":"Ada Lovelace"}`},
		{"/api/v1/sessions", `{"email":"ada@example.com","password":"correct horse battery"}`},
	} {
		resp, err := ada.Post(base+step.path, "application/json", strings.NewReader(step.body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode >= 300 {
			t.Fatalf("POST %s: %d %s", step.path, resp.StatusCode, b)
		}
	}
	r, mine := get(ada, "/")
	if !strings.Contains(mine, "Ada Lovelace") || r.Header.Get("Cache-Control") != "private, no-store" {
		t.Fatalf("the customer's home page (Cache-Control %q) does not show their name:\n%s", r.Header.Get("Cache-Control"), mine)
	}
	if _, after := get(anon, "/"); strings.Contains(after, "Ada Lovelace") {
		t.Fatal("an anonymous visitor was shown the customer's page")
	}
}
