package cluster_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/cluster"
	"github.com/globomantics/globomantics/internal/cluster/clustertest"
)

// buildBinary builds the globomantics binary into a temporary directory.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "globomantics")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/globomantics/globomantics/cmd/globomantics").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// needServers skips the test when a server binary of the fleet is missing,
// unless GLOBO_REQUIRE_SERVICES=1 (then it fails).
func needServers(t *testing.T) {
	t.Helper()
	var missing []string
	for _, b := range []string{"pg_autoctl", "redis-server", "redis-sentinel"} {
		if _, err := exec.LookPath(b); err != nil {
			missing = append(missing, b)
		}
	}
	if m, _ := filepath.Glob("/usr/lib/postgresql/*/lib/pgautofailover.so"); len(m) == 0 {
		missing = append(missing, "pgautofailover extension")
	}
	if len(missing) == 0 {
		return
	}
	if os.Getenv("GLOBO_REQUIRE_SERVICES") == "1" {
		t.Fatalf("missing %v (GLOBO_REQUIRE_SERVICES=1)", missing)
	}
	t.Skipf("missing %v", missing)
}

// fleetProcs lists the processes whose working directory or command line
// is under dir, with their resident and proportional set sizes in KiB.
func fleetProcs(dir string) (pids []int, rss, pss int) {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cwd, _ := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
		cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if !strings.HasPrefix(cwd, dir) && !bytes.Contains(cmd, []byte(dir)) {
			continue
		}
		stat, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if i := bytes.LastIndexByte(stat, ')'); i > 0 && i+2 < len(stat) && stat[i+2] == 'Z' {
			continue
		}
		pids = append(pids, pid)
		rss += kib(fmt.Sprintf("/proc/%d/status", pid), "VmRSS:")
		pss += kib(fmt.Sprintf("/proc/%d/smaps_rollup", pid), "Pss:")
	}
	return pids, rss, pss
}

func kib(path, key string) int {
	b, _ := os.ReadFile(path)
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, key); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				n, _ := strconv.Atoi(f[0])
				return n
			}
		}
	}
	return 0
}

// TestClusterUpDown brings the whole fleet up as real processes, checks
// the shop answers through the edge, and brings it down leaving no process
// and no port behind.
func TestClusterUpDown(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole fleet")
	}
	needServers(t)
	f := clustertest.New(t, buildBinary(t), "cluster-test-")
	dir := f.Dir
	run := func(timeout time.Duration, args ...string) (string, string, error) {
		return f.Run(timeout, append([]string{"cluster"}, args...)...)
	}

	t0 := time.Now()
	out, errOut, err := run(6*time.Minute, "up", "--dir", dir, "--rate-limits=false")
	upTook := time.Since(t0)
	if err != nil {
		t.Fatalf("cluster up: %v\n%s", err, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "http://") || !strings.HasPrefix(lines[1], "http://") {
		t.Fatalf("cluster up printed %q, want two URLs a line each", out)
	}
	shop, control := lines[0], lines[1]
	t.Logf("up took %v: shop %s, control room %s", upTook.Round(100*time.Millisecond), shop, control)

	// Up again refuses: a fleet runs there.
	if _, e, err := run(time.Minute, "up", "--dir", dir); err == nil || !strings.Contains(e, "already running") {
		t.Errorf("a second up: %v, %s; want a refusal", err, e)
	}

	hc := &http.Client{Timeout: 10 * time.Second}
	for _, path := range []string{"/readyz", "/"} {
		resp, err := hc.Get(shop + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s%s: %s", shop, path, resp.Status)
		}
	}
	resp, err := hc.Get(control + "/api/procs")
	if err != nil {
		t.Fatal(err)
	}
	var procs []cluster.Proc
	err = json.NewDecoder(resp.Body).Decode(&procs)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	// The autoscaler runs (the default): a worker group may already have
	// grown past its first instance (the demo catalog's thumbnail jobs
	// make a backlog), and such an instance may still be starting. Every
	// process up planned is ready.
	groups := map[string]int{}
	for _, p := range procs {
		groups[p.Group]++
		added := p.Scalable && p.Group != "storefront" && !strings.HasSuffix(p.Name, "-1")
		if p.State != "ready" && !added {
			t.Errorf("%s is %s", p.Name, p.State)
		}
	}
	for g, want := range map[string]int{"storefront": 3, "catalog": 2, "checkout": 2, "nats": 3, "redis": 3, "sentinel": 3, "edge": 1, "dns": 1, "mail": 1, "postgres-main": 3} {
		if got := groups[g]; got != want && !(g == "mail" && got > want) {
			t.Errorf("group %s has %d processes, want %d", g, got, want)
		}
	}
	checkoutThrough(t, shop, dir)
	if o, e, err := run(time.Minute, "status", "--dir", dir); err != nil {
		t.Errorf("cluster status: %v\n%s%s", err, o, e)
	}
	pids, rss, pss := fleetProcs(dir)
	t.Logf("fleet: %d processes, RSS sum %d MiB, PSS sum %d MiB", len(pids), rss/1024, pss/1024)

	st, err := cluster.ReadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	var ports []int
	for _, sp := range st.Specs {
		ports = append(ports, sp.Ports...)
	}
	ports = append(ports, st.ControlPort)

	t1 := time.Now()
	if _, e, err := f.Cluster(5*time.Minute, "down"); err != nil {
		t.Fatalf("cluster down: %v\n%s", err, e)
	}
	t.Logf("down took %v", time.Since(t1).Round(100*time.Millisecond))
	if left, _, _ := fleetProcs(dir); len(left) > 0 {
		t.Errorf("processes left after down: %v", left)
	}
	for _, p := range ports {
		if c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)), time.Second); err == nil {
			c.Close()
			t.Errorf("port %d still listens after down", p)
		}
	}
	if _, e, err := run(time.Minute, "down", "--dir", dir); err != nil {
		t.Errorf("a second down: %v\n%s", err, e)
	}
	if o, _, err := run(time.Minute, "status", "--dir", dir); err == nil || !strings.Contains(o, "supervisor not running") {
		t.Errorf("status after down: %v\n%s", err, o)
	}
}

// checkoutThrough registers a shopper at the shop's URL, buys the first
// product and waits for the order's e-mail in dir/mail: a request across
// the edge, a storefront, the services and the saga, and an event through
// NATS to the mail worker.
func checkoutThrough(t *testing.T, shop, dir string) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, Timeout: 30 * time.Second}
	do := func(want int, method, path string, body any, v any, hdr ...string) {
		t.Helper()
		var rd io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		}
		req, _ := http.NewRequest(method, shop+path, rd)
		req.Header.Set("Content-Type", "application/json")
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != want {
			t.Fatalf("%s %s: %d, want %d: %s", method, path, resp.StatusCode, want, b)
		}
		if v != nil {
			if err := json.Unmarshal(b, v); err != nil {
				t.Fatalf("%s %s: %v: %s", method, path, err, b)
			}
		}
	}
	var products struct {
		Items []struct {
			ID string `json:"id"`
		} `json:"items"`
	}
	do(200, "GET", "/api/v1/products?page_size=5", nil, &products)
	if len(products.Items) == 0 {
		t.Fatal("no products: the catalog was not seeded")
	}
	email := fmt.Sprintf("ada-%d@example.com", time.Now().UnixNano())
	do(201, "POST", "/api/v1/accounts", map[string]string{"email": email, "password": "correct horse", "name": "Ada"}, nil)
	do(200, "POST", "/api/v1/sessions", map[string]string{"email": email, "password": "correct horse"}, nil)
	do(200, "POST", "/api/v1/cart/items", map[string]any{"product_id": products.Items[0].ID, "quantity": 1}, nil)
	var order struct {
		ID string `json:"id"`
	}
	body := map[string]any{
		"shipping_address": map[string]string{"name": "Ada Lovelace", "line1": "12 Analytical Row", "city": "London", "postal_code": "N1 9GU", "country": "GB"},
		"payment":          map[string]any{"card_number": "4242424242424242", "exp_month": 12, "exp_year": time.Now().Year() + 2, "cvc": "123"},
	}
	t0 := time.Now()
	do(201, "POST", "/api/v1/checkout", body, &order, "Idempotency-Key", "cluster-test-"+email)
	mail := filepath.Join(dir, "mail", order.ID+".eml")
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(mail); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no e-mail %s 30 s after the checkout", mail)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("checkout of order %s: e-mail written %v after the request", order.ID, time.Since(t0).Round(time.Millisecond))
}
