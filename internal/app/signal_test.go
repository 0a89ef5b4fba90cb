package app_test

import (
	"bytes"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/platform/testenv"
)

// TestSignalShutdown builds the real binary, starts it with no configuration
// but an address and a data directory, and checks that SIGTERM stops it
// gracefully: exit status 0, well within the 10 s budget.
func TestSignalShutdown(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir := t.TempDir()
	bin := binary(t) // built once for every test of the package
	addr := testenv.FreeAddr(t)
	var logs bytes.Buffer
	cmd := exec.Command(bin) // no subcommand: serve is the default
	cmd.Env = append(os.Environ(), "GLOBO_HTTP_ADDR="+addr, "GLOBO_DATA_DIR="+filepath.Join(dir, "data"))
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	testenv.CheckFor(t, 20*time.Second, func() error {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return errors.New(resp.Status)
		}
		return nil
	})
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, logs.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("still running 10 s after SIGTERM\n%s", logs.String())
	}
	if !bytes.Contains(logs.Bytes(), []byte("shutting down")) {
		t.Errorf("no shutdown logged:\n%s", logs.String())
	}
}
