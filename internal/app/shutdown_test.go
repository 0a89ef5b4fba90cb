package app_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/platform/testenv"
)

// slowRequest is a registration whose body the client sends in two parts,
// so that the request is in flight, its handler reading, for as long as
// the test likes.
type slowRequest struct {
	conn net.Conn
	r    *bufio.Reader
	rest string
}

// startSlowRequest sends the headers and the first part of the body, and
// returns once the handler has begun reading it (the server answered
// "100 Continue").
func startSlowRequest(t *testing.T, addr string) *slowRequest {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	body := fmt.Sprintf(`{"email": "slow-%d@example.com", "password": "correct horse", "name": "Slow"}`, time.Now().UnixNano())
	half := len(body) / 2
	fmt.Fprintf(conn, "POST /api/v1/accounts HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n", addr, len(body))
	s := &slowRequest{conn: conn, r: bufio.NewReader(conn), rest: body[half:]}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := s.r.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "HTTP/1.1 100") {
		t.Fatalf("waiting for 100 Continue: %q, %v", line, err)
	}
	if _, err := s.r.ReadString('\n'); err != nil { // the blank line ending it
		t.Fatal(err)
	}
	if _, err := io.WriteString(conn, body[:half]); err != nil {
		t.Fatal(err)
	}
	return s
}

// finish sends the rest of the body and reads the response.
func (s *slowRequest) finish(t *testing.T) *http.Response {
	t.Helper()
	if _, err := io.WriteString(s.conn, s.rest); err != nil {
		t.Fatalf("sending the rest of the slow request: %v", err)
	}
	_ = s.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(s.r, nil)
	if err != nil {
		t.Fatalf("the slow request got no response: %v", err)
	}
	_, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp
}

// fresh GETs path on a new connection.
func fresh(url string) (*http.Response, error) {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		return nil, err
	}
	_, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, nil
}

// TestShutdownDrainDelay: at shutdown /readyz answers 503 at once, but the
// listener stays open and new requests are served for the drain delay, so
// a load balancer stops sending before connections are refused; then the
// listener closes, a request in flight still finishes, and the process
// stops within its shutdown budget.
func TestShutdownDrainDelay(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end suite skipped in -short mode")
	}
	const delay = 2 * time.Second
	const budget = 9 * time.Second // the default
	p := &proc{name: "all", addr: testenv.FreeAddr(t),
		args: []string{"--data-dir", t.TempDir(), "--seed=false", "--drain-delay", delay.String()}}
	p.start(t)
	waitReady(t, p)
	slow := startSlowRequest(t, p.addr)

	stopped := time.Now()
	stop := p.stop
	p.stop = nil // this test waits for Run itself
	stop()

	// Not ready at once...
	testenv.CheckFor(t, 500*time.Millisecond, func() error {
		resp, err := fresh(p.url() + "/readyz")
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusServiceUnavailable {
			return fmt.Errorf("readyz %d, want 503", resp.StatusCode)
		}
		return nil
	})
	// ...while new connections are still accepted and served, asked to
	// close after their response, for the whole delay.
	served := 0
	for time.Since(stopped) < delay-300*time.Millisecond {
		resp, err := fresh(p.url() + "/healthz")
		if err != nil {
			t.Fatalf("%v into the %v drain delay, a new request failed: %v", time.Since(stopped).Round(time.Millisecond), delay, err)
		}
		if resp.StatusCode != 200 || !resp.Close {
			t.Fatalf("during the drain delay: healthz %d, Connection: close %v; want 200 and close", resp.StatusCode, resp.Close)
		}
		served++
		time.Sleep(100 * time.Millisecond)
	}
	if served == 0 {
		t.Fatal("no request was served during the drain delay")
	}

	// After the delay the listener closes: new connections are refused.
	testenv.CheckFor(t, delay, func() error {
		conn, err := net.DialTimeout("tcp", p.addr, time.Second)
		if err != nil {
			return nil
		}
		conn.Close()
		return fmt.Errorf("connection accepted %v after the shutdown began", time.Since(stopped).Round(time.Millisecond))
	})
	if d := time.Since(stopped); d < delay-100*time.Millisecond {
		t.Errorf("listener closed after %v, before the %v drain delay", d, delay)
	}

	// The request in flight since before the shutdown still finishes.
	if resp := slow.finish(t); resp.StatusCode != http.StatusCreated {
		t.Errorf("slow registration: %s, want 201 Created", resp.Status)
	}

	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("Run: %v\n%s", err, p.logs)
		}
	case <-time.After(budget + 2*time.Second):
		t.Fatalf("still running %v after the shutdown began\n%s", budget+2*time.Second, p.logs)
	}
	if d := time.Since(stopped); d > budget {
		t.Errorf("shutdown took %v, over its %v budget", d, budget)
	}
	for _, phase := range []string{"shutting down", "drain delay over", "http server stopped", "subscriptions drained", "broker and databases closed", "stopped"} {
		if !strings.Contains(p.logs.String(), phase) {
			t.Errorf("no %q logged:\n%s", phase, p.logs)
		}
	}
}

// TestShutdownBudget: a request that never finishes does not hold the
// process past its shutdown budget, and the HTTP drain leaves time for the
// broker and the databases.
func TestShutdownBudget(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end suite skipped in -short mode")
	}
	const budget = 4 * time.Second
	p := &proc{name: "all", addr: testenv.FreeAddr(t),
		args: []string{"--data-dir", t.TempDir(), "--seed=false", "--shutdown-timeout", budget.String(), "--drain-delay", "1s"}}
	p.start(t)
	waitReady(t, p)
	startSlowRequest(t, p.addr) // never finished

	stopped := time.Now()
	stop := p.stop
	p.stop = nil
	stop()
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("Run: %v\n%s", err, p.logs)
		}
	case <-time.After(budget + 3*time.Second):
		t.Fatalf("still running %v after the shutdown began\n%s", budget+3*time.Second, p.logs)
	}
	// 1 s delay, the HTTP drain until 1.5 s before the deadline, then the
	// rest; closing the broker and databases is not bounded by a context.
	if d := time.Since(stopped); d > budget+time.Second {
		t.Errorf("shutdown took %v, budget %v", d, budget)
	}
	logs := p.logs.String()
	if !strings.Contains(logs, "requests still running were cut off") {
		t.Errorf("the stuck request was not reported:\n%s", logs)
	}
}
