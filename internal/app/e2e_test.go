package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/app"
	"github.com/globomantics/globomantics/internal/config"
	"github.com/globomantics/globomantics/internal/platform/svcauth"
	"github.com/globomantics/globomantics/internal/platform/testenv"
	"github.com/globomantics/globomantics/pkg/shopclient"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// serviceToken is the shared secret of the split test shops' processes.
const serviceToken = "e2e-service-token-0123456789"

func tokenEnv() map[string]string { return map[string]string{"GLOBO_SERVICE_TOKEN": serviceToken} }

// credential returns service name's credential in the split test shops.
func credential(name string) string {
	c, _ := svcauth.FromSharedToken(serviceToken).Credential(name)
	return c
}

// operatorAuth is the Authorization header of the operator's credential,
// which every internal API accepts.
func operatorAuth() string { return "Bearer " + credential(svcauth.Operator) }

// runsStorefront reports whether serve's arguments run the storefront
// (every service when --services is not given).
func runsStorefront(args []string) bool {
	for i, a := range args {
		v, ok := strings.CutPrefix(a, "--services=")
		if a == "--services" && i+1 < len(args) {
			v, ok = args[i+1], true
		}
		if ok {
			return v == "all" || slices.Contains(strings.Split(v, ","), "storefront")
		}
	}
	return true
}

// proc is one globomantics process started through app.Run.
type proc struct {
	name string
	args []string
	env  map[string]string // GLOBO_* variables; nothing else is set
	addr string
	// iaddr is the internal listener's address (/svc/) of a process
	// running the storefront; others serve /svc/ on addr.
	iaddr string
	stop  context.CancelFunc
	done  chan error
	logs  *syncBuffer
	// bin, when set, runs the process as a real process of that binary
	// (stopped by SIGTERM) instead of app.Run in a goroutine of the test.
	bin string
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (p *proc) url() string { return "http://" + p.addr }

// internalURL is where p serves the services' internal APIs.
func (p *proc) internalURL() string {
	if p.iaddr != "" {
		return "http://" + p.iaddr
	}
	return p.url()
}

// start runs the process and waits for /readyz.
func (p *proc) start(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p.stop, p.done, p.logs = cancel, make(chan error, 1), &syncBuffer{}
	args := append([]string{"globomantics", "serve", "--http-addr", p.addr}, p.args...)
	if runsStorefront(p.args) {
		if p.iaddr == "" {
			p.iaddr = testenv.FreeAddr(t)
		}
		args = append(args, "--internal-addr", p.iaddr)
	}
	if p.bin != "" {
		p.startProcess(t, ctx, args[1:])
		return
	}
	getenv := func(k string) string { return p.env[k] }
	go func() { p.done <- app.Run(ctx, args, getenv, io.Discard, p.logs) }()
	t.Cleanup(func() { p.shutdown(t) })
}

// startProcess runs p as a real process of p.bin with only p.env (and PATH
// and HOME) in its environment. Cancelling ctx sends it SIGTERM, and
// p.done gets its exit: nil for a clean one.
func (p *proc) startProcess(t *testing.T, ctx context.Context, argv []string) {
	t.Helper()
	cmd := exec.Command(p.bin, argv...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range p.env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdout, cmd.Stderr = io.Discard, p.logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", p.name, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	go func() {
		select {
		case err := <-exited:
			p.done <- err
		case <-ctx.Done():
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case err := <-exited:
				p.done <- err
			case <-time.After(20 * time.Second):
				_ = cmd.Process.Kill()
				p.done <- fmt.Errorf("no exit 20 s after SIGTERM (killed): %v", <-exited)
			}
		}
	}()
	t.Cleanup(func() { p.shutdown(t) })
}

func (p *proc) shutdown(t *testing.T) {
	t.Helper()
	if p.stop == nil {
		return
	}
	p.stop()
	p.stop = nil
	select {
	case err := <-p.done:
		if err != nil {
			t.Errorf("%s: Run returned %v\n%s", p.name, err, p.logs)
		}
	case <-time.After(15 * time.Second):
		t.Errorf("%s did not stop within 15s", p.name)
	}
}

func waitReady(t *testing.T, procs ...*proc) {
	t.Helper()
	for _, p := range procs {
		testenv.CheckFor(t, 30*time.Second, func() error {
			select {
			case err := <-p.done:
				p.stop()
				p.stop = nil // nothing left to wait for at clean-up
				t.Fatalf("%s exited early: %v\n%s", p.name, err, p.logs)
			default:
			}
			resp, err := http.Get(p.url() + "/readyz")
			if err != nil {
				return err
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				return fmt.Errorf("%s readyz %d: %s", p.name, resp.StatusCode, b)
			}
			return nil
		})
	}
}

// topology is a set of processes forming one shop, with the storefront
// instances customers reach.
type topology struct {
	procs       []*proc
	storefronts []*proc
	mailDir     string
	blobDir     string
	// restart, when set, restarts every process of the shop on its data
	// (for shops whose processes the test did not start itself).
	restart func(t *testing.T)
	// cred returns a service's credential in this shop (nil: derived from
	// serviceToken).
	cred func(name string) string
}

// credential returns service name's credential in this shop.
func (tp *topology) credential(name string) string {
	if tp.cred != nil {
		return tp.cred(name)
	}
	return credential(name)
}

func (tp *topology) start(t *testing.T) {
	t.Helper()
	for _, p := range tp.procs {
		p.start(t)
	}
	waitReady(t, tp.procs...)
}

func (tp *topology) stop(t *testing.T) {
	t.Helper()
	for i := len(tp.procs) - 1; i >= 0; i-- {
		tp.procs[i].shutdown(t)
	}
}

func allInOne(t *testing.T) *topology {
	dir := t.TempDir()
	p := &proc{name: "all", addr: testenv.FreeAddr(t), env: tokenEnv(), args: []string{"--data-dir", dir}}
	return &topology{procs: []*proc{p}, storefronts: []*proc{p}, mailDir: filepath.Join(dir, "mail"), blobDir: filepath.Join(dir, "blobs")}
}

// split runs the services as five processes talking HTTP, sharing one
// broker (embedded in the first), one blob directory and one mail directory,
// with two interchangeable storefront instances. Each process has its own
// credentials directory: the verifiers and the secrets of its own
// services only, as "globomantics credentials init" and an operator
// would hand them out.
func split(t *testing.T) *topology {
	root := t.TempDir()
	all := filepath.Join(root, "credentials")
	if err := svcauth.InitDir(all, append(slices.Clone(config.AllServices), svcauth.Operator)); err != nil {
		t.Fatal(err)
	}
	credsFor := func(name, services string) string {
		dir := filepath.Join(root, "credentials-"+name)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		for _, f := range append(strings.Split(services, ","), "") {
			src := svcauth.VerifiersFile
			if f != "" {
				src = f + ".secret"
			}
			b, err := os.ReadFile(filepath.Join(all, src))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, src), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	shared := func(name string) string { return filepath.Join(root, name) }
	nats := testenv.FreeAddr(t)
	a, b, c, f1, f2 := testenv.FreeAddr(t), testenv.FreeAddr(t), testenv.FreeAddr(t), testenv.FreeAddr(t), testenv.FreeAddr(t)
	common := []string{"--blob-dir", shared("blobs"), "--mail-dir", shared("mail")}
	where := map[string]string{"account": a, "cart": a, "order": a, "catalog": b, "search": b, "payment": c, "shipping": c, "checkout": c}
	peers := func(svc ...string) []string {
		var out []string
		for _, s := range svc {
			out = append(out, "--peer", s+"=http://"+where[s])
		}
		return out
	}
	// The second storefront also lists an instance of every service that is
	// down: its calls must go round it to the live one.
	dead := testenv.FreeAddr(t)
	peersWithDead := func(svc ...string) []string {
		var out []string
		for _, s := range svc {
			out = append(out, "--peer", s+"=http://"+dead+",http://"+where[s])
		}
		return out
	}
	mk := func(name, addr, services string, extra ...string) *proc {
		args := append([]string{"--data-dir", shared(name), "--services", services, "--credentials", credsFor(name, services)}, common...)
		return &proc{name: name, addr: addr, args: append(args, extra...)}
	}
	natsURL := "nats://" + nats
	hub := mk("hub", a, "account,cart,order", append([]string{"--nats-listen", nats}, peers("catalog")...)...)
	cat := mk("catalog", b, "catalog,search,thumbnails", "--nats-url", natsURL)
	money := mk("money", c, "payment,shipping,checkout,mail", append([]string{"--nats-url", natsURL}, peers("cart", "catalog", "order")...)...)
	front := []string{"account", "catalog", "search", "cart", "checkout", "order"}
	sf1 := mk("storefront1", f1, "storefront", peers(front...)...)
	sf2 := mk("storefront2", f2, "storefront", peersWithDead(front...)...)
	return &topology{
		procs:       []*proc{hub, cat, money, sf1, sf2},
		storefronts: []*proc{sf1, sf2},
		mailDir:     shared("mail"),
		blobDir:     shared("blobs"),
		cred: func(name string) string {
			b, err := os.ReadFile(filepath.Join(all, name+".secret"))
			if err != nil {
				t.Fatal(err)
			}
			return name + "." + strings.TrimSpace(string(b))
		},
	}
}

// eachTopology runs suite against every topology: the shop in one process;
// split into servers talking HTTP; scaled out to two instances of every
// service on shared PostgreSQL databases, each a real process of the
// binary; and the same on replicated databases under automatic failover.
// The same tests, every mode.
func eachTopology(t *testing.T, suite func(*testing.T, *topology)) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end suite skipped in -short mode")
	}
	for _, mode := range []struct {
		name string
		make func(*testing.T) *topology
	}{{"one-process", allInOne}, {"split", split}, {"scaled-out", scaledOut}, {"replicated", replicated}} {
		t.Run(mode.name, func(t *testing.T) {
			tp := mode.make(t)
			tp.start(t)
			suite(t, tp)
			if mode.name == "replicated" {
				checkReplicaReads(t, tp)
			}
		})
	}
}

// checkReplicaReads checks, through the data status endpoint of every
// process, that replicas served some of the suite's reads (the suite itself
// checks that they never served a customer stale data) and that every
// database has a primary.
func checkReplicaReads(t *testing.T, tp *topology) {
	t.Helper()
	replicaReads := 0
	for _, p := range tp.procs {
		req, _ := http.NewRequest(http.MethodGet, p.internalURL()+"/svc/data/status", nil)
		req.Header.Set("Authorization", "Bearer "+tp.credential(svcauth.Operator))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var st struct {
			Databases []struct {
				Service string `json:"service"`
				Primary string `json:"primary"`
				Nodes   []struct {
					Role  string `json:"role"`
					State string `json:"state"`
					Reads int    `json:"reads"`
				} `json:"nodes"`
			} `json:"databases"`
		}
		err = json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s data status: %d %v", p.name, resp.StatusCode, err)
		}
		for _, db := range st.Databases {
			if db.Primary == "" {
				t.Errorf("%s: database %s has no primary", p.name, db.Service)
			}
			if len(db.Nodes) != 3 {
				t.Errorf("%s: database %s has %d nodes, want the formation's 3", p.name, db.Service, len(db.Nodes))
			}
			for _, n := range db.Nodes {
				if n.Role == "replica" {
					replicaReads += n.Reads
				}
			}
		}
	}
	if replicaReads == 0 {
		t.Error("no read was served by a replica in the replicated topology")
	}
	t.Logf("%d reads served by replicas", replicaReads)
}

// scaledOut runs two instances of every service, as real processes of the
// binary, as a production shop would: the stateful services keep their data in PostgreSQL databases
// (one per service) that their instances share, every caller spreads its
// calls over both instances, the workers share their queues, and each search
// instance keeps its own index.
func scaledOut(t *testing.T) *topology { return scaledOutOn(t, testenv.PostgresDSN) }

// replicated is scaledOut on databases with replicas under automatic
// failover, and sharded: every database lives on a pg_auto_failover
// formation of a primary and two streaming replicas (synchronous), named by
// a multi-host DSN, and the services keyed by user split their data over two
// shard nodes (two databases of the formation). Reads that may go to a
// replica do, so the suites check read-your-writes across storefronts and
// services, and every user's data on the node of their shard.
func replicated(t *testing.T) *topology {
	return scaledOutOn(t, testenv.FailoverDSN, func(t testing.TB) string {
		return "0-511=" + testenv.FailoverDSN(t) + ";512-1023=" + testenv.FailoverDSN(t)
	})
}

// scaledOutOn builds the scaled-out topology with each service's database
// from newDSN, or, for the services keyed by user when newShards is not
// nil, the shard map it returns.
func scaledOutOn(t *testing.T, newDSN func(testing.TB) string, newShards ...func(testing.TB) string) *topology {
	root := t.TempDir()
	shared := func(name string) string { return filepath.Join(root, name) }
	env := tokenEnv()
	for _, s := range []string{"account", "cart", "order", "catalog", "payment", "shipping", "checkout"} {
		if len(newShards) > 0 && s != "catalog" && s != "shipping" {
			env["GLOBO_SHARDS_"+strings.ToUpper(s)] = newShards[0](t)
			continue
		}
		env["GLOBO_DB_"+strings.ToUpper(s)] = newDSN(t)
	}
	nats := testenv.FreeAddr(t)
	addrs := map[string][2]string{}
	for _, g := range []string{"hub", "catalog", "money", "storefront"} {
		addrs[g] = [2]string{testenv.FreeAddr(t), testenv.FreeAddr(t)}
	}
	group := map[string]string{"account": "hub", "cart": "hub", "order": "hub", "catalog": "catalog", "search": "catalog",
		"payment": "money", "shipping": "money", "checkout": "money"}
	peers := func(svc ...string) []string {
		var out []string
		for _, s := range svc {
			a := addrs[group[s]]
			out = append(out, "--peer", s+"=http://"+a[0]+",http://"+a[1])
		}
		return out
	}
	var procs []*proc
	bin := binary(t) // real processes, as a production shop runs
	mk := func(g, services string, extra ...string) {
		for i, addr := range addrs[g] {
			name := fmt.Sprintf("%s%d", g, i+1)
			args := []string{"--data-dir", shared(name), "--services", services, "--blob-dir", shared("blobs"), "--mail-dir", shared("mail")}
			if g == "hub" && i == 0 {
				args = append(args, "--nats-listen", nats)
			} else {
				args = append(args, "--nats-url", "nats://"+nats)
			}
			procs = append(procs, &proc{name: name, addr: addr, env: env, bin: bin, args: append(args, extra...)})
		}
	}
	mk("hub", "account,cart,order", peers("catalog")...)
	mk("catalog", "catalog,search,thumbnails")
	mk("money", "payment,shipping,checkout,mail", peers("cart", "catalog", "order")...)
	mk("storefront", "storefront", peers("account", "catalog", "search", "cart", "checkout", "order")...)
	return &topology{procs: procs, storefronts: procs[len(procs)-2:], mailDir: shared("mail"), blobDir: shared("blobs")}
}

func TestEndToEnd(t *testing.T) {
	eachTopology(t, shopSuite)
}

// client is a customer's browser: a cookie jar and a storefront (or several).
type client struct {
	t     *testing.T
	hc    *http.Client
	bases []string
	n     int
}

func newClient(t *testing.T, tp *topology) *client {
	jar, _ := cookiejar.New(nil)
	var bases []string
	for _, p := range tp.storefronts {
		bases = append(bases, p.url())
	}
	return &client{t: t, hc: &http.Client{Transport: contractTransport(t), Jar: jar, Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}, bases: bases}
}

// base alternates between storefront instances, so every step of a session
// may land on a different front-end server.
func (c *client) base() string {
	c.n++
	return c.bases[c.n%len(c.bases)]
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

func (c *client) do(method, path string, body any, hdr ...string) response {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			c.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base()+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{resp.StatusCode, resp.Header, b}
}

func (c *client) must(status int, method, path string, body any, hdr ...string) response {
	c.t.Helper()
	r := c.do(method, path, body, hdr...)
	if r.status != status {
		c.t.Fatalf("%s %s: status %d, want %d: %s", method, path, r.status, status, r.body)
	}
	return r
}

// The API's shapes are the generated client's (pkg/shopclient), made from
// the OpenAPI document the storefront serves; the suite does not write
// them again.
type (
	product = shopclient.Product
	order   = shopclient.Order
	problem = shopclient.ProblemDetails
)

// setStock sets a product's stock through the catalog's internal API, as
// an operator would (or as a sale elsewhere would lower it).
func setStock(t *testing.T, tp *topology, id string, n int) {
	t.Helper()
	body := fmt.Sprintf(`{"stock":%d}`, n)
	for _, p := range tp.procs {
		req, _ := http.NewRequest(http.MethodPatch, p.internalURL()+"/svc/catalog/v1/products/"+url.PathEscape(id), strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tp.credential(svcauth.Operator))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusOK:
			return
		case http.StatusNotFound: // a process without the catalog
		default:
			t.Fatalf("%s: PATCH stock of %s: %d %s", p.name, id, resp.StatusCode, b)
		}
	}
	t.Fatalf("no process serves the catalog to set the stock of %s", id)
}

func (c *client) product(id string) product {
	c.t.Helper()
	var p product
	c.must(200, "GET", "/api/v1/products/"+id, nil).decode(c.t, &p)
	return p
}

// stockBecomes waits until product reads show want. Product reads are the
// browsing path, served through each catalog instance's cache: with several
// instances a read may lag a change made through another one by up to the
// cache's expiry (5 s). With one catalog instance the first read is exact.
func (c *client) stockBecomes(id string, want int) {
	c.t.Helper()
	testenv.CheckFor(c.t, 15*time.Second, func() error {
		if got := c.product(id).Stock; got != want {
			return fmt.Errorf("stock of %s = %d, want %d", id, got, want)
		}
		return nil
	})
}

var address = map[string]string{"name": "Ada Lovelace", "line1": "12 Analytical Row", "city": "London", "postal_code": "N1 9GU", "country": "GB"}

func checkoutBody(card string) map[string]any {
	return map[string]any{
		"shipping_address": address,
		"payment":          map[string]any{"card_number": card, "exp_month": 12, "exp_year": time.Now().Year() + 2, "cvc": "123"},
	}
}

func shopSuite(t *testing.T, tp *topology) {
	c := newClient(t, tp)

	// Browse.
	var cats shopclient.CategoryList
	c.must(200, "GET", "/api/v1/categories", nil).decode(t, &cats)
	if len(cats.Items) < 4 {
		t.Fatalf("categories = %v, want at least 4", cats.Items)
	}
	var all []product
	token := ""
	for pages := 0; ; pages++ {
		var pg shopclient.ListProduct
		c.must(200, "GET", "/api/v1/products?page_size=10&page_token="+token, nil).decode(t, &pg)
		all = append(all, pg.Items...)
		if pg.NextPageToken == "" {
			break
		}
		token = pg.NextPageToken
		if pages > 20 {
			t.Fatal("pagination does not end")
		}
	}
	if len(all) < 24 {
		t.Fatalf("%d products, want at least 24", len(all))
	}
	var inCat shopclient.ListProduct
	c.must(200, "GET", "/api/v1/products?page_size=100&category="+cats.Items[0].ID, nil).decode(t, &inCat)
	if len(inCat.Items) == 0 {
		t.Fatalf("category %s is empty", cats.Items[0].ID)
	}
	for _, p := range inCat.Items {
		if p.Category != cats.Items[0].ID {
			t.Fatalf("product %s of category %s listed under %s", p.ID, p.Category, cats.Items[0].ID)
		}
	}
	c.must(400, "GET", "/api/v1/products?page_size=0", nil)
	c.must(400, "GET", "/api/v1/products?page_token=garbage!", nil)
	c.must(404, "GET", "/api/v1/products/nope", nil)
	// The services' internal APIs are never served on a storefront's
	// public port, and are closed to callers without a credential, or
	// with one of a service that does not call them.
	for _, p := range tp.procs {
		for _, tc := range []struct {
			url, auth string
			want      []int
		}{
			{p.url() + "/svc/catalog/v1/categories", "Bearer " + tp.credential(svcauth.Operator), []int{http.StatusNotFound}},
			{p.internalURL() + "/svc/catalog/v1/categories", "", []int{http.StatusUnauthorized, http.StatusNotFound}},
			{p.internalURL() + "/svc/catalog/v1/categories", "Bearer " + tp.credential("payment"), []int{http.StatusForbidden, http.StatusNotFound}},
			{p.internalURL() + "/svc/catalog/v1/categories", "Bearer " + tp.credential("cart"), []int{http.StatusOK, http.StatusNotFound}},
		} {
			if p.iaddr == "" && tc.url == p.url()+"/svc/catalog/v1/categories" {
				continue // a process with no public pages: its port is internal
			}
			req, _ := http.NewRequest(http.MethodGet, tc.url, nil)
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if !slices.Contains(tc.want, resp.StatusCode) {
				t.Errorf("%s: GET %s with %.20q answered %d, want one of %v", p.name, tc.url, tc.auth, resp.StatusCode, tc.want)
			}
		}
	}
	home := c.must(200, "GET", "/", nil)
	if !strings.Contains(string(home.body), "Globomantics") {
		t.Errorf("home page does not name the shop")
	}

	// Thumbnails are made by the worker from the listing event, and served.
	target := all[0]
	testenv.CheckFor(t, 30*time.Second, func() error {
		p := c.product(target.ID)
		if p.Thumbnails["small"] == "" || p.Thumbnails["medium"] == "" {
			return fmt.Errorf("no thumbnails yet for %s: %v", p.ID, p.Thumbnails)
		}
		target = p
		return nil
	})
	for _, u := range []string{target.ImageURL, target.Thumbnails["small"], target.Thumbnails["medium"]} {
		r := c.must(200, "GET", u, nil)
		if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "image/") {
			t.Errorf("%s: content type %q", u, ct)
		}
		if r.header.Get("Cache-Control") == "" {
			t.Errorf("%s: no Cache-Control", u)
		}
	}

	// Search, fed by catalog events.
	word := strings.Fields(target.Name)[0]
	testenv.CheckFor(t, 30*time.Second, func() error {
		var res shopclient.SearchResults
		c.must(200, "GET", "/api/v1/search?q="+word, nil).decode(t, &res)
		for _, p := range res.Items {
			if p.ID == target.ID {
				return nil
			}
		}
		return fmt.Errorf("search %q: %s not among %d results", word, target.ID, len(res.Items))
	})
	c.must(400, "GET", "/api/v1/search?q=", nil)
	searchSuite(t, c)

	// Register and log in; a second registration with the same email conflicts.
	email := fmt.Sprintf("ada-%d@example.com", time.Now().UnixNano())
	var acct shopclient.Account
	c.must(201, "POST", "/api/v1/accounts", map[string]string{"email": email, "password": "correct horse", "name": "Ada"}).decode(t, &acct)
	c.must(409, "POST", "/api/v1/accounts", map[string]string{"email": email, "password": "correct horse", "name": "Ada"})
	c.must(422, "POST", "/api/v1/accounts", map[string]string{"email": "not-an-email", "password": "correct horse", "name": "Ada"})
	c.must(400, "POST", "/api/v1/accounts", map[string]string{"email": email, "password": "x", "name": "A", "admin": "yes"})
	c.must(401, "GET", "/api/v1/me", nil)
	c.must(401, "POST", "/api/v1/sessions", map[string]string{"email": email, "password": "wrong password"})
	// An anonymous cart is merged into the account's cart on login.
	c.must(200, "POST", "/api/v1/cart/items", map[string]any{"product_id": target.ID, "quantity": 1})
	c.must(200, "POST", "/api/v1/sessions", map[string]string{"email": email, "password": "correct horse"})
	// Every step now alternates storefront instances: the session is not in any server's memory.
	for i := 0; i < 4; i++ {
		var me shopclient.Account
		c.must(200, "GET", "/api/v1/me", nil).decode(t, &me)
		if me.ID != acct.ID {
			t.Fatalf("me = %+v, want %s", me, acct.ID)
		}
	}

	// Cart.
	var cart shopclient.Cart
	c.must(200, "POST", "/api/v1/cart/items", map[string]any{"product_id": target.ID, "quantity": 1}).decode(t, &cart)
	if len(cart.Items) != 1 || cart.Items[0].Quantity != 2 || cart.Total.Amount != 2*target.Price.Amount {
		t.Fatalf("cart after merge and add = %+v", cart)
	}
	c.must(404, "POST", "/api/v1/cart/items", map[string]any{"product_id": "nope", "quantity": 1})
	c.must(422, "POST", "/api/v1/cart/items", map[string]any{"product_id": target.ID, "quantity": 0})

	// Checkout: bad requests change nothing.
	c.must(400, "POST", "/api/v1/checkout", checkoutBody("4242424242424242"))
	c.must(422, "POST", "/api/v1/checkout", map[string]any{"shipping_address": address, "payment": map[string]any{"card_number": "1234"}}, "Idempotency-Key", "bad-body")

	// Success.
	before := c.product(target.ID)
	var o order
	c.must(201, "POST", "/api/v1/checkout", checkoutBody("4242424242424242"), "Idempotency-Key", "k-success").decode(t, &o)
	if o.Status != "confirmed" || o.Payment.Status != "captured" || o.Shipment.TrackingNumber == "" {
		t.Fatalf("order = %+v", o)
	}
	c.stockBecomes(target.ID, before.Stock-2)
	// The same key and body returns the same order, never a second one;
	// the same key with another body is refused.
	var again order
	c.must(201, "POST", "/api/v1/checkout", checkoutBody("4242424242424242"), "Idempotency-Key", "k-success").decode(t, &again)
	if again.ID != o.ID {
		t.Fatalf("retry made order %s, first was %s", again.ID, o.ID)
	}
	c.must(422, "POST", "/api/v1/checkout", checkoutBody("5555555555554444"), "Idempotency-Key", "k-success")
	c.must(200, "GET", "/api/v1/cart", nil).decode(t, &cart)
	if len(cart.Items) != 0 {
		t.Errorf("cart not emptied after the order: %+v", cart)
	}

	// Declined: no order, nothing charged, stock as before.
	c.must(200, "POST", "/api/v1/cart/items", map[string]any{"product_id": target.ID, "quantity": 1})
	stock := before.Stock - 2
	var p problem
	c.must(402, "POST", "/api/v1/checkout", checkoutBody("4000000000000002"), "Idempotency-Key", "k-decline").decode(t, &p)
	if p.Status != 402 || p.Title == "" || p.Detail == "" {
		t.Errorf("decline problem = %+v", p)
	}
	c.stockBecomes(target.ID, stock)
	// More than is in stock: the cart takes what there is and says so,
	// naming the product.
	var scarce product
	for _, cand := range all {
		if cand.Stock >= 2 && cand.Stock < 99 && cand.ID != target.ID {
			scarce = c.product(cand.ID)
			break
		}
	}
	if scarce.ID == "" {
		t.Fatal("no product with 2 to 98 in stock")
	}
	c.must(200, "DELETE", "/api/v1/cart/items/"+target.ID, nil)
	var capped shopclient.Cart
	c.must(200, "POST", "/api/v1/cart/items", map[string]any{"product_id": scarce.ID, "quantity": scarce.Stock + 1}).decode(t, &capped)
	if len(capped.Items) != 1 || capped.Items[0].Quantity != scarce.Stock || len(capped.Notices) != 1 ||
		capped.Notices[0].Code != "quantity_capped" || capped.Notices[0].Available != scarce.Stock ||
		!strings.Contains(capped.Notices[0].Message, scarce.Name) || strings.Contains(capped.Notices[0].Message, scarce.ID) {
		t.Fatalf("adding %d of %s (%d in stock) = %+v", scarce.Stock+1, scarce.Name, scarce.Stock, capped)
	}
	// Out of stock at checkout (the stock fell after the cart took it all):
	// the cart tells before checkout, checkout refuses with 409 naming the
	// product (never its id), nothing charged, stock as it was.
	left := scarce.Stock - 1
	setStock(t, tp, scarce.ID, left)
	testenv.CheckFor(t, 15*time.Second, func() error {
		var got shopclient.Cart
		c.must(200, "GET", "/api/v1/cart", nil).decode(t, &got)
		if len(got.Notices) != 1 || got.Notices[0].Code != "exceeds_stock" || got.Notices[0].Available != left {
			return fmt.Errorf("cart after the stock fell to %d = %+v", left, got)
		}
		return nil
	})
	var oos problem
	c.must(409, "POST", "/api/v1/checkout", checkoutBody("4242424242424242"), "Idempotency-Key", "k-oos").decode(t, &oos)
	if !strings.Contains(oos.Detail, scarce.Name) || strings.Contains(oos.Detail, scarce.ID) {
		t.Errorf("out-of-stock problem detail %q should name %q, not %s", oos.Detail, scarce.Name, scarce.ID)
	}
	c.stockBecomes(scarce.ID, left)

	// Order history: the confirmed order only; a payment that never went
	// through is not an order the customer placed.
	var orders shopclient.ListOrder
	c.must(200, "GET", "/api/v1/orders", nil).decode(t, &orders)
	statuses := map[string]int{}
	for _, x := range orders.Items {
		statuses[x.Status]++
	}
	if statuses["confirmed"] != 1 || len(orders.Items) != 1 {
		t.Errorf("order statuses = %v", statuses)
	}
	for _, x := range orders.Items {
		if x.Status == "cancelled" && x.Payment.Status == "captured" {
			t.Errorf("cancelled order %s has a captured payment", x.ID)
		}
	}
	c.must(200, "GET", "/api/v1/orders/"+o.ID, nil)
	typedClientJourney(t, c, target.ID, o.ID) // apicontract_test.go
	// The customer's short order number finds it too.
	var byNumber order
	c.must(200, "GET", "/api/v1/orders/"+o.Number, nil).decode(t, &byNumber)
	if !strings.HasPrefix(o.Number, "GM-") || byNumber.ID != o.ID {
		t.Errorf("order %s: number %q finds %q", o.ID, o.Number, byNumber.ID)
	}

	// Another customer cannot see the order.
	other := newClient(t, tp)
	other.must(401, "GET", "/api/v1/orders/"+o.ID, nil)
	email2 := "grace-" + email
	other.must(201, "POST", "/api/v1/accounts", map[string]string{"email": email2, "password": "another secret", "name": "Grace"})
	other.must(200, "POST", "/api/v1/sessions", map[string]string{"email": email2, "password": "another secret"})
	other.must(404, "GET", "/api/v1/orders/"+o.ID, nil)
	other.must(404, "GET", "/api/v1/orders/"+o.Number, nil)

	// The order e-mail is written by the mail worker.
	mailFile := filepath.Join(tp.mailDir, o.ID+".eml")
	testenv.CheckFor(t, 30*time.Second, func() error {
		_, err := os.Stat(mailFile)
		return err
	})
	msg, _ := os.ReadFile(mailFile)
	if !strings.Contains(string(msg), email) || !strings.Contains(string(msg), o.ID) {
		t.Errorf("mail does not name the customer and order:\n%s", msg)
	}

	// Restart everything on the same data: all of it is still there.
	if tp.restart != nil {
		tp.restart(t)
	} else {
		tp.stop(t)
		tp.start(t)
	}
	var me shopclient.Account
	c.must(200, "GET", "/api/v1/me", nil).decode(t, &me)
	if me.ID != acct.ID {
		t.Errorf("after restart me = %s, want %s", me.ID, acct.ID)
	}
	var o2 order
	c.must(200, "GET", "/api/v1/orders/"+o.ID, nil).decode(t, &o2)
	if o2.Status != "confirmed" || o2.Shipment.TrackingNumber != o.Shipment.TrackingNumber {
		t.Errorf("after restart order = %+v", o2)
	}
	if p := c.product(target.ID); len(p.Thumbnails) < 2 {
		t.Errorf("after restart thumbnails = %v", p.Thumbnails)
	}
	var res shopclient.SearchResults
	c.must(200, "GET", "/api/v1/search?q="+word, nil).decode(t, &res)
	if len(res.Items) == 0 {
		t.Errorf("after restart search %q finds nothing", word)
	}
	c.must(200, "GET", "/api/v1/categories", nil).decode(t, &cats)
	var count shopclient.ListProduct
	c.must(200, "GET", "/api/v1/products?page_size=100", nil).decode(t, &count)
	if len(count.Items) != len(all) {
		t.Errorf("after restart %d products, want %d (seeding must not repeat)", len(count.Items), len(all))
	}
}
