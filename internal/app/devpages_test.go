package app_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/globomantics/globomantics/internal/app"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

func devMailStatus(t *testing.T, addr string) int {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/dev/mail")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestDevPages: the development mailbox, which shows every customer's order
// e-mail, is served by default only when the shop listens on loopback; on
// any other address it is off by default, and asking for it is refused.
func TestDevPages(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end suite skipped in -short mode")
	}
	t.Run("loopback default on", func(t *testing.T) {
		p := &proc{name: "loopback", addr: testenv.FreeAddr(t), args: []string{"--data-dir", t.TempDir(), "--seed=false"}}
		p.start(t)
		waitReady(t, p)
		if got := devMailStatus(t, p.addr); got != 200 {
			t.Errorf("/dev/mail on %s: %d, want 200", p.addr, got)
		}
	})
	t.Run("all interfaces default off", func(t *testing.T) {
		_, port, _ := net.SplitHostPort(testenv.FreeAddr(t))
		p := &proc{name: "public", addr: net.JoinHostPort("0.0.0.0", port), args: []string{"--data-dir", t.TempDir(), "--seed=false"}}
		p.start(t)
		waitReady(t, p)
		// Reached here through loopback, as a visitor would through any
		// other interface.
		if got := devMailStatus(t, net.JoinHostPort("127.0.0.1", port)); got != 404 {
			t.Errorf("/dev/mail on %s: %d, want 404", p.addr, got)
		}
	})
	t.Run("asked for on all interfaces refused", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			env  map[string]string
		}{
			{[]string{"--http-addr", ":0", "--dev-pages"}, nil},
			{nil, map[string]string{"GLOBO_HTTP_ADDR": "0.0.0.0:0", "GLOBO_DEV_PAGES": "1"}},
		} {
			var stderr bytes.Buffer
			args := append([]string{"globomantics", "serve", "--data-dir", t.TempDir()}, tc.args...)
			err := app.Run(context.Background(), args, func(k string) string { return tc.env[k] }, io.Discard, &stderr)
			if err == nil || !strings.Contains(err.Error(), "--dev-pages needs --http-addr on loopback") {
				t.Errorf("%v %v: Run = %v, want a refusal naming loopback", tc.args, tc.env, err)
			}
		}
	})
}
