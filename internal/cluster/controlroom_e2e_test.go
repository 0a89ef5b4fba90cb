package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/globomantics/globomantics/internal/platform/freeport"
	"github.com/globomantics/globomantics/internal/platform/svcauth"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

// TestControlRoomAgainstARealShop points the control room at a real
// one-process shop (the binary, SQLite and its embedded broker): its
// metrics, traces, data status and the checkout's fault endpoint are the
// real ones, not fakes of them.
func TestControlRoomAgainstARealShop(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "globomantics")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/globomantics/globomantics/cmd/globomantics").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	var ports [2]int
	for i := range ports {
		p, err := freeport.Get()
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = p
	}
	public, internal := fmt.Sprintf("http://127.0.0.1:%d", ports[0]), fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	const token = "controlroom-test-shared-token"
	logf, err := os.Create(filepath.Join(dir, "shop.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", "--http-addr", strings.TrimPrefix(public, "http://"), "--internal-addr", strings.TrimPrefix(internal, "http://"),
		"--data-dir", filepath.Join(dir, "data"), "--fault-injection")
	cmd.Env = append(os.Environ(), "GLOBO_SERVICE_TOKEN="+token)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		_ = logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("shop log (tail):\n%s", crTail([]byte(b), 4000))
		}
	})
	testenv.CheckFor(t, 90*time.Second, func() error { return crGetOK(public + "/readyz") })

	operator, _ := svcauth.FromSharedToken(token).Credential(svcauth.Operator)
	fl := &fakeFleet{procs: []Proc{{Name: "shop-1", Group: "shop", Kind: "shop", PID: cmd.Process.Pid, State: "ready", Started: time.Now(),
		PublicURL: public, InternalURL: internal, Services: []string{"storefront", "checkout", "catalog"}}}}
	cr := NewControlRoom(ControlRoomConfig{Fleet: fl, OperatorToken: operator})
	ctx := context.Background()

	// Requests to the shop show as a rate, and their traces are listed.
	var o Overview
	testenv.CheckFor(t, 30*time.Second, func() error {
		for range 3 {
			if err := crGetOK(public + "/"); err != nil {
				return err
			}
		}
		cr.Scrape(ctx)
		o = Overview{}
		if err := json.Unmarshal(crGet(t, cr, "/api/overview").Body.Bytes(), &o); err != nil {
			return err
		}
		p := o.Processes[0]
		if !p.Up || p.RequestRate == nil || *p.RequestRate <= 0 || p.P95 == nil {
			return fmt.Errorf("shop-1 not measured yet: %+v (scrape error %q)", p, p.ScrapeError)
		}
		if len(o.Traces) == 0 || len(o.Databases) == 0 {
			return fmt.Errorf("no traces (%d) or databases (%d) yet", len(o.Traces), len(o.Databases))
		}
		return nil
	})
	var id string
	for _, tr := range o.Traces {
		if tr.Root == "GET /{$}" { // the page requests; the scrapes' own are not listed
			id = tr.ID
		}
	}
	if id == "" {
		t.Fatalf("no trace of a page request among %+v", o.Traces)
	}
	if w := crGet(t, cr, "/traces/"+id); w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "GET /{$}") {
		t.Errorf("GET /traces/%s: %d\n%s", id, w.Code, w.Body)
	}

	// The fleet's metrics carry the real families, labelled.
	w := crGet(t, cr, "/metrics")
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(w.Body.Bytes()))
	if err != nil {
		t.Fatalf("the fleet's metrics do not parse: %v", err)
	}
	if mf := fams["http_server_request_duration_seconds"]; mf == nil || crLabel(mf.GetMetric()[0], "instance") != "shop-1" {
		t.Errorf("http_server_request_duration_seconds = %v", mf)
	}

	// The latency knob reaches the real checkout, and clearing it too.
	rules := func() string {
		req, _ := http.NewRequest(http.MethodGet, internal+"/svc/checkout/v1/admin/faults", nil)
		req.Header.Set("Authorization", "Bearer "+operator)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return strings.TrimSpace(string(b))
	}
	if w := crPost(t, cr, "/actions/latency", url.Values{"csrf": {cr.csrf}, "service": {"payment"}, "delay": {"250ms"}}); w.Code != http.StatusSeeOther {
		t.Fatalf("latency: %d %s", w.Code, w.Body)
	}
	if got := rules(); got != "service:payment=250ms" {
		t.Errorf("the checkout's rules = %q", got)
	}
	if w := crPost(t, cr, "/actions/clear", url.Values{"csrf": {cr.csrf}}); w.Code != http.StatusSeeOther {
		t.Fatalf("clear: %d %s", w.Code, w.Body)
	}
	if got := rules(); got != "" {
		t.Errorf("the checkout's rules after clear = %q", got)
	}
}

func crGetOK(u string) error {
	resp, err := http.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return errors.New(u + ": " + resp.Status)
	}
	return nil
}
