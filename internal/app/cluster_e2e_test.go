package app_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/cluster"
	"github.com/globomantics/globomantics/internal/cluster/clustertest"
	"github.com/globomantics/globomantics/internal/platform/testenv"

	"github.com/globomantics/globomantics/pkg/shopclient"
)

// TestClusterFleet brings the scaled-out shop up with "cluster up" on a
// fresh directory (real processes: PostgreSQL formations under
// pg_auto_failover, Redis with Sentinel, a three-node NATS cluster, the
// edge, DNS, three storefronts, two instances of every service, the
// workers), runs the end-to-end shop suite through the edge, follows one
// checkout's trace across the processes, and takes the fleet down: no
// process and no port left behind.
func TestClusterFleet(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole fleet")
	}
	for _, b := range []string{"pg_autoctl", "redis-server", "redis-sentinel"} {
		if _, err := exec.LookPath(b); err != nil {
			if testenv.Required() {
				t.Fatalf("%s missing (GLOBO_REQUIRE_SERVICES=1)", b)
			}
			t.Skipf("%s missing", b)
		}
	}
	f := clustertest.New(t, binary(t), "globo-fleet-")
	dir := f.Dir
	run := func(timeout time.Duration, args ...string) (string, string, error) {
		return f.Run(timeout, append([]string{"cluster"}, args...)...)
	}

	start := time.Now()
	// The suite registers many customers from one address, and autoscaling
	// has its own test: a fleet of fixed size, without rate limits.
	out, errOut, err := run(6*time.Minute, "up", "--dir", dir, "--rate-limits=false", "--autoscale=false")
	if err != nil {
		t.Fatalf("cluster up: %v\n%s", err, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("cluster up printed %q, want the shop's URL and the control room's, a line each", out)
	}
	shopURL, controlURL := lines[0], lines[1]
	t.Logf("cluster up: ready in %v; shop %s, control room %s", time.Since(start).Round(100*time.Millisecond), shopURL, controlURL)

	st, err := cluster.ReadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	tp := fleetTopology(t, st, shopURL, dir)
	tp.restart = func(t *testing.T) { killEveryShopProcess(t, controlURL, shopURL) }
	t.Run("suite", func(t *testing.T) { shopSuite(t, tp) })
	t.Run("trace", func(t *testing.T) { checkoutTraceAcrossFleet(t, tp, st, dir) })
	t.Run("control room", func(t *testing.T) { checkControlRoom(t, controlURL, st) })

	if o, e, err := run(time.Minute, "status", "--dir", dir); err != nil {
		t.Errorf("cluster status: %v\n%s%s", err, o, e)
	}
	var ports []int
	for _, sp := range st.Specs {
		ports = append(ports, sp.Ports...)
	}
	start = time.Now()
	if _, e, err := f.Cluster(5*time.Minute, "down"); err != nil {
		t.Fatalf("cluster down: %v\n%s", err, e)
	}
	t.Logf("cluster down took %v", time.Since(start).Round(100*time.Millisecond))
	for _, p := range ports {
		if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", p), 200*time.Millisecond); err == nil {
			c.Close()
			t.Errorf("port %d still listening after down", p)
		}
	}
	after, err := cluster.ReadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, sp := range after.Specs {
		if sp.PID != 0 {
			t.Errorf("%s: pid %d still recorded after down", sp.Name, sp.PID)
		}
	}
	if out, _ := exec.Command("pgrep", "-f", dir).Output(); len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("processes of the fleet left after down: %s", out)
	}
}

// fleetTopology is the suite's view of a fleet: customers come through the
// edge; the shop processes are the fleet's; credentials come from the
// fleet's credentials directory.
func fleetTopology(t *testing.T, st *cluster.State, shopURL, dir string) *topology {
	t.Helper()
	hostOf := func(raw string) string {
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" {
			t.Fatalf("bad URL %q in the fleet's state", raw)
		}
		return u.Host
	}
	tp := &topology{
		storefronts: []*proc{{name: "edge", addr: hostOf(shopURL)}},
		mailDir:     filepath.Join(dir, "mail"),
		blobDir:     filepath.Join(dir, "blobs"),
		cred: func(name string) string {
			b, err := os.ReadFile(filepath.Join(dir, "creds", name+".secret"))
			if err != nil {
				t.Fatal(err)
			}
			return name + "." + strings.TrimSpace(string(b))
		},
	}
	for _, sp := range st.Specs {
		if sp.Kind != "shop" || sp.PublicURL == "" {
			continue
		}
		p := &proc{name: sp.Name, addr: hostOf(sp.PublicURL)}
		if sp.InternalURL != "" {
			p.iaddr = hostOf(sp.InternalURL)
		}
		tp.procs = append(tp.procs, p)
	}
	if len(tp.procs) == 0 {
		t.Fatal("the fleet's state lists no shop process")
	}
	return tp
}

// killEveryShopProcess kills every shop process of the fleet with SIGKILL
// through the supervisor's API, and waits until the supervisor has
// restarted each of them on its data and the shop answers through the
// edge again.
func killEveryShopProcess(t *testing.T, controlURL, shopURL string) {
	t.Helper()
	procs := func() []cluster.Proc {
		resp, err := http.Get(controlURL + "/api/procs")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var ps []cluster.Proc
		if err := json.NewDecoder(resp.Body).Decode(&ps); err != nil {
			t.Fatal(err)
		}
		return ps
	}
	restarts := map[string]int{}
	for _, p := range procs() {
		if p.Kind != "shop" {
			continue
		}
		restarts[p.Name] = p.Restarts
		resp, err := http.Post(controlURL+"/api/procs/"+p.Name+"/kill", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			t.Fatalf("kill %s: %s", p.Name, resp.Status)
		}
	}
	testenv.CheckFor(t, 2*time.Minute, func() error {
		for _, p := range procs() {
			if n, ok := restarts[p.Name]; ok && (p.Restarts <= n || p.State != "ready") {
				return fmt.Errorf("%s: %s after %d restarts", p.Name, p.State, p.Restarts)
			}
		}
		resp, err := http.Get(shopURL + "/api/v1/products?page_size=1")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("the shop answers %s", resp.Status)
		}
		return nil
	})
}

// traceSpan is a span as the processes' trace endpoints give it.
type traceSpan struct {
	SpanID   string `json:"span_id"`
	ParentID string `json:"parent_id"`
	Name     string `json:"name"`
	Kind     string `json:"kind"`
	Service  string `json:"service"`
}

// checkoutTraceAcrossFleet places an order through the edge and checks
// that its trace, gathered from every process of the fleet, holds spans
// of the edge, a storefront, the checkout saga, each service the saga
// calls, the outbox relay and the mail worker, all linked into one tree.
func checkoutTraceAcrossFleet(t *testing.T, tp *topology, st *cluster.State, dir string) {
	c := newClient(t, tp)
	var pg shopclient.ListProduct
	c.must(200, "GET", "/api/v1/products?page_size=5", nil).decode(t, &pg)
	if len(pg.Items) == 0 {
		t.Fatal("no products")
	}
	email := fmt.Sprintf("trace-%d@example.com", time.Now().UnixNano())
	c.must(201, "POST", "/api/v1/accounts", map[string]string{"email": email, "password": "correct horse", "name": "Ada"})
	c.must(200, "POST", "/api/v1/sessions", map[string]string{"email": email, "password": "correct horse"})
	var id string
	for _, p := range pg.Items {
		if p.Stock > 0 {
			id = p.ID
			break
		}
	}
	if id == "" {
		t.Fatal("no product in stock")
	}
	c.must(200, "POST", "/api/v1/cart/items", map[string]any{"product_id": id, "quantity": 1})
	res := c.must(201, "POST", "/api/v1/checkout", checkoutBody("4242424242424242"), "Idempotency-Key", fmt.Sprintf("trace-%d", time.Now().UnixNano()))
	traceID := res.header.Get("X-Trace-Id")
	if len(traceID) != 32 {
		t.Fatalf("checkout answered X-Trace-Id %q, want a trace id", traceID)
	}

	edgeToken, err := os.ReadFile(filepath.Join(dir, "edge.token"))
	if err != nil {
		t.Fatal(err)
	}
	type source struct{ name, url, auth string }
	var sources []source
	for _, sp := range st.Specs {
		switch {
		case sp.Kind == "shop" && sp.InternalURL != "":
			sources = append(sources, source{sp.Name, sp.InternalURL + "/svc/obs/v1/traces?trace_id=" + traceID, "Bearer " + tp.credential("operator")})
		case sp.Kind == "edge" && sp.InternalURL != "":
			sources = append(sources, source{sp.Name, sp.InternalURL + "/_edge/obs/v1/traces?trace_id=" + traceID, "Bearer " + strings.TrimSpace(string(edgeToken))})
		}
	}
	gather := func() (map[string]traceSpan, map[string][]string) {
		spans := map[string]traceSpan{}
		byService := map[string][]string{}
		for _, s := range sources {
			req, _ := http.NewRequest(http.MethodGet, s.url, nil)
			req.Header.Set("Authorization", s.auth)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatalf("%s traces: %v", s.name, err)
			}
			var body struct {
				Spans []traceSpan `json:"spans"`
			}
			switch resp.StatusCode {
			case http.StatusOK:
				if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
					t.Fatalf("%s traces: %v", s.name, err)
				}
			case http.StatusNotFound: // none of the trace's spans here
			default:
				t.Fatalf("%s traces: %s", s.name, resp.Status)
			}
			resp.Body.Close()
			for _, sp := range body.Spans {
				spans[sp.SpanID] = sp
				byService[sp.Service] = append(byService[sp.Service], sp.Name)
			}
		}
		return spans, byService
	}
	has := func(byService map[string][]string, service, name string) bool {
		for svc, names := range byService {
			if slices.Contains(strings.Split(svc, ","), service) && (name == "" || slices.ContainsFunc(names, func(n string) bool { return strings.Contains(n, name) })) {
				return true
			}
		}
		return false
	}
	want := []struct{ service, span string }{
		{"edge", ""}, {"storefront", ""}, {"checkout", "checkout saga"}, {"cart", ""}, {"catalog", ""},
		{"payment", ""}, {"shipping", ""}, {"order", ""}, {"order", "outbox relay"}, {"mail", ""},
	}
	var spans map[string]traceSpan
	var byService map[string][]string
	testenv.CheckFor(t, 30*time.Second, func() error {
		spans, byService = gather()
		for _, w := range want {
			if !has(byService, w.service, w.span) {
				return fmt.Errorf("trace %s has no span %q of %s yet (services: %v)", traceID, w.span, w.service, keys(byService))
			}
		}
		return nil
	})
	roots := 0
	for _, sp := range spans {
		if sp.ParentID == "" {
			roots++
			continue
		}
		if _, ok := spans[sp.ParentID]; !ok {
			t.Errorf("span %q of %s has a parent %s found in no process", sp.Name, sp.Service, sp.ParentID)
		}
	}
	if roots != 1 {
		t.Errorf("trace %s has %d root spans, want 1 (the edge's)", traceID, roots)
	}
	t.Logf("trace %s: %d spans over %v", traceID, len(spans), keys(byService))
}

func keys(m map[string][]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// checkControlRoom checks the control room sees the whole fleet: the
// overview lists every process, and the fleet's /metrics carries every
// process's request histograms under its instance label.
func checkControlRoom(t *testing.T, controlURL string, st *cluster.State) {
	get := func(path string) []byte {
		resp, err := http.Get(controlURL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %s: %.300s", path, resp.Status, b.String())
		}
		return b.Bytes()
	}
	page := string(get("/"))
	for _, sp := range st.Specs {
		if !strings.Contains(page, sp.Name) {
			t.Errorf("the control room's page does not show %s", sp.Name)
		}
	}
	testenv.CheckFor(t, 20*time.Second, func() error {
		metrics := string(get("/metrics"))
		for _, sp := range st.Specs {
			if sp.Kind != "shop" {
				continue
			}
			if !strings.Contains(metrics, `instance="`+sp.Name+`"`) {
				return fmt.Errorf("fleet /metrics has nothing of %s", sp.Name)
			}
		}
		if !strings.Contains(metrics, "http_server_request_duration_seconds_bucket") {
			return fmt.Errorf("fleet /metrics has no request histogram")
		}
		return nil
	})
}
