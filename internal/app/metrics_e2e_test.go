package app_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/platform/testenv"
)

// TestMetricsAndTracesOnInternalListener runs the shop in one process,
// asks for the home page, and finds the request in the internal
// listener's /metrics (labelled by route pattern), its trace in
// /svc/obs/v1/traces (operator only) and its request id in the access log.
func TestMetricsAndTracesOnInternalListener(t *testing.T) {
	tp := allInOne(t)
	tp.start(t)
	p := tp.procs[0]

	resp, err := http.Get(p.url() + "/")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("home page: %d", resp.StatusCode)
	}
	rid, traceID := resp.Header.Get("X-Request-Id"), resp.Header.Get("X-Trace-Id")
	if rid == "" || len(traceID) != 32 {
		t.Fatalf("home page ids: request %q trace %q", rid, traceID)
	}

	want := `http_server_request_duration_seconds_count{http_request_method="GET",http_response_status_code="200",http_route="GET /{$}"}`
	testenv.CheckFor(t, 5*time.Second, func() error {
		code, body := getAuth(t, p.internalURL()+"/metrics", "")
		if code != http.StatusOK {
			return fmt.Errorf("/metrics: %d", code)
		}
		if !strings.Contains(body, want) || !strings.Contains(body, "go_goroutines") {
			return fmt.Errorf("/metrics lacks %s", want)
		}
		return nil
	})
	if code, _ := getAuth(t, p.url()+"/metrics", ""); code == http.StatusOK {
		t.Error("/metrics served on the public listener")
	}

	if code, _ := getAuth(t, p.internalURL()+"/svc/obs/v1/traces", ""); code != http.StatusUnauthorized {
		t.Errorf("traces without a credential: %d, want 401", code)
	}
	if code, _ := getAuth(t, p.internalURL()+"/svc/obs/v1/traces", "Bearer "+tp.credential("catalog")); code != http.StatusForbidden {
		t.Errorf("traces with a service's credential: %d, want 403", code)
	}
	testenv.CheckFor(t, 5*time.Second, func() error {
		code, body := getAuth(t, p.internalURL()+"/svc/obs/v1/traces?trace_id="+traceID, operatorAuth())
		if code != http.StatusOK || !strings.Contains(body, `"name":"GET /{$}"`) {
			return fmt.Errorf("trace %s: %d %s", traceID, code, body)
		}
		return nil
	})
	testenv.CheckFor(t, 5*time.Second, func() error {
		if logs := p.logs.String(); !strings.Contains(logs, "msg=http request_id="+rid) {
			return fmt.Errorf("no access line with request id %s in the logs", rid)
		}
		return nil
	})
}

// getAuth GETs url with the Authorization header auth (none when empty)
// and returns the status and the body.
func getAuth(t *testing.T, url, auth string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
