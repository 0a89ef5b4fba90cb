package app_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/platform/testenv"
)

func readyz(t *testing.T, p *proc) (int, map[string]any) {
	t.Helper()
	resp, err := http.Get(p.url() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var body map[string]any
	_ = json.Unmarshal(b, &body)
	return resp.StatusCode, body
}

// TestReadinessFollowsPeers: a cart process whose catalog is not up is alive
// but not ready, says which check fails, and becomes ready when a catalog
// instance appears; it goes back to not ready when that instance stops.
func TestReadinessFollowsPeers(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end suite skipped in -short mode")
	}
	catAddr := testenv.FreeAddr(t)
	cartProc := &proc{name: "cart", addr: testenv.FreeAddr(t), env: tokenEnv(),
		args: []string{"--data-dir", t.TempDir(), "--services", "cart", "--peer", "catalog=http://" + catAddr}}
	cartProc.start(t)
	testenv.CheckFor(t, 20*time.Second, func() error {
		resp, err := http.Get(cartProc.url() + "/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("healthz %d", resp.StatusCode)
		}
		return nil
	})
	status, body := readyz(t, cartProc)
	checks, _ := body["checks"].(map[string]any)
	if status != http.StatusServiceUnavailable || checks["peer:catalog"] == "ok" || checks["db:cart"] != "ok" {
		t.Fatalf("readyz without catalog = %d %v, want 503 naming peer:catalog", status, body)
	}

	catProc := &proc{name: "catalog", addr: catAddr, env: tokenEnv(),
		args: []string{"--data-dir", t.TempDir(), "--services", "catalog"}}
	catProc.start(t)
	waitReady(t, catProc, cartProc)

	catProc.shutdown(t)
	testenv.CheckFor(t, 10*time.Second, func() error {
		if status, _ := readyz(t, cartProc); status != http.StatusServiceUnavailable {
			return fmt.Errorf("readyz = %d after the catalog stopped, want 503", status)
		}
		return nil
	})
}
