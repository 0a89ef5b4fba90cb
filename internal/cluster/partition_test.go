package cluster_test

import (
	"bytes"
	"context"
	"database/sql"
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
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/globomantics/globomantics/internal/cluster"
	"github.com/globomantics/globomantics/internal/cluster/clustertest"
	"github.com/globomantics/globomantics/internal/platform/netns"
	"github.com/globomantics/globomantics/internal/platform/pgauto"
)

// shopper is one customer with a cookie jar, speaking the storefront's
// JSON API to whichever storefront URL a call names.
type shopper struct {
	t     *testing.T
	email string
	hc    *http.Client
}

func newShopper(t *testing.T, name string) *shopper {
	jar, _ := cookiejar.New(nil)
	return &shopper{t: t, email: fmt.Sprintf("%s-%d@example.com", name, time.Now().UnixNano()),
		hc: &http.Client{Jar: jar, Timeout: 60 * time.Second}}
}

// call does one request and returns its status, content type and body
// (status 0 on a transport error).
func (s *shopper) call(method, url string, body any, hdr ...string) (int, string, []byte) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, url, rd)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		return 0, "", []byte(err.Error())
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Content-Type"), b
}

// must retries a call until it answers want (a fleet settling after a
// start or a heal answers 503 for a moment), within timeout.
func (s *shopper) must(timeout time.Duration, want int, method, url string, body any, hdr ...string) []byte {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		code, _, b := s.call(method, url, body, hdr...)
		if code == want {
			return b
		}
		if time.Now().After(deadline) || code != 0 && code < 500 {
			s.t.Fatalf("%s %s: %d, want %d: %s", method, url, code, want, b)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// join registers the shopper (at base) and logs in at every storefront
// given: cookies are per host, so each storefront needs its own login.
func (s *shopper) join(base string, storefronts ...string) {
	s.t.Helper()
	s.must(time.Minute, 201, "POST", base+"/api/v1/accounts", map[string]string{"email": s.email, "password": "correct horse", "name": "Ada"})
	for _, u := range append([]string{base}, storefronts...) {
		s.must(time.Minute, 200, "POST", u+"/api/v1/sessions", map[string]string{"email": s.email, "password": "correct horse"})
	}
}

var checkoutBody = map[string]any{
	"shipping_address": map[string]string{"name": "Ada Lovelace", "line1": "12 Analytical Row", "city": "London", "postal_code": "N1 9GU", "country": "GB"},
	"payment":          map[string]any{"card_number": "4242424242424242", "exp_month": 12, "exp_year": time.Now().Year() + 2, "cvc": "123"},
}

type checkoutView struct {
	State string `json:"state"`
	Order struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	} `json:"order"`
}

// buy puts product in the cart at storefront u and checks out there with
// key, retrying 5xx answers with the same key, and waits for the saga to
// be confirmed; it returns the order id.
func (s *shopper) buy(u, product, key string, timeout time.Duration) string {
	s.t.Helper()
	s.must(timeout, 200, "POST", u+"/api/v1/cart/items", map[string]any{"product_id": product, "quantity": 1})
	deadline := time.Now().Add(timeout)
	for {
		code, _, b := s.call("POST", u+"/api/v1/checkout", checkoutBody, "Idempotency-Key", key)
		switch {
		case code == 201:
			var o struct {
				ID string `json:"id"`
			}
			if err := json.Unmarshal(b, &o); err != nil || o.ID == "" {
				s.t.Fatalf("checkout at %s: %v: %s", u, err, b)
			}
			return o.ID
		case code == 202:
			for time.Now().Before(deadline) {
				var v checkoutView
				if c, _, b := s.call("GET", u+"/api/v1/checkouts/"+key, nil); c == 200 && json.Unmarshal(b, &v) == nil && v.State != "pending" {
					if v.State != "confirmed" {
						s.t.Fatalf("checkout at %s ended %s: %s", u, v.State, b)
					}
					return v.Order.ID
				}
				time.Sleep(250 * time.Millisecond)
			}
		case code != 0 && code < 500:
			s.t.Fatalf("checkout at %s: %d: %s", u, code, b)
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("checkout at %s: still %d after %v: %s", u, code, timeout, b)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// TestClusterPartition runs the fleet on three network-namespace hosts
// (cluster up --hosts), cuts shop2 off from shop1 and infra, and checks
// the CAP choices at shop2's own storefront: a checkout (CP) is refused
// with a 503 problem and charges nothing, browsing (AP) keeps answering;
// shop1 keeps taking checkouts. After healing, shop2 takes a checkout
// again, the payment ledger audits clean, every confirmed order has one
// capture and an e-mail, and no order is lost. Down leaves no namespace,
// process or port.
//
// PostgreSQL runs on the hosts too (monitor on infra, node 2 of every
// formation on shop2): the monitor must report node 2 unhealthy during
// the partition, writes on the primaries (shop1) must go on (a shard
// formation's stall until then is logged), and after the heal node 2 must
// be a secondary again holding the writes made during the partition.
func TestClusterPartition(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole fleet on three network namespaces")
	}
	needServers(t)
	if err := netns.Available(); err != nil {
		if os.Getenv("GLOBO_REQUIRE_SERVICES") == "1" {
			t.Fatalf("%v (GLOBO_REQUIRE_SERVICES=1)", err)
		}
		t.Skip(err)
	}
	f := clustertest.New(t, buildBinary(t), "cluster-hosts-test-")
	dir, run := f.Dir, f.Run

	t0 := time.Now()
	out, errOut, err := run(6*time.Minute, "cluster", "up", "--dir", dir, "--hosts", "--rate-limits=false", "--autoscale=false")
	if err != nil {
		t.Fatalf("cluster up --hosts: %v\n%s", err, errOut)
	}
	t.Logf("up --hosts took %v", time.Since(t0).Round(100*time.Millisecond))
	st, err := cluster.ReadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.NetPrefix == "" || len(st.HostAddrs) != 3 {
		t.Fatalf("cluster.json: prefix %q, hosts %v; want a prefix and three hosts", st.NetPrefix, st.HostAddrs)
	}
	if shop := strings.SplitN(out, "\n", 2)[0]; shop != st.ShopURL || !strings.Contains(shop, st.HostAddrs[cluster.HostShop1]) {
		t.Errorf("up printed the shop at %q; cluster.json says %q, on shop1 %s", shop, st.ShopURL, st.HostAddrs[cluster.HostShop1])
	}
	url := map[string]string{}
	for _, sp := range st.Specs {
		if sp.Host == "" {
			t.Errorf("%s has no host", sp.Name)
		}
		if sp.PublicURL != "" && !strings.Contains(sp.PublicURL, "//"+st.HostAddrs[sp.Host]+":") {
			t.Errorf("%s on %s: public URL %s", sp.Name, sp.Host, sp.PublicURL)
		}
		url[sp.Name] = sp.PublicURL
	}
	s1, s2 := url["storefront-1"], url["storefront-2"]
	pg := attachPostgres(t, dir, st)
	for _, kv := range st.DBEnv {
		if strings.Contains(kv, "127.0.0.1") {
			t.Errorf("db_env names loopback, not the hosts: %s", kv)
		}
	}
	probes := pg.probeTables(t)

	var products struct {
		Items []struct {
			ID string `json:"id"`
		} `json:"items"`
	}
	browser := newShopper(t, "browser")
	if err := json.Unmarshal(browser.must(time.Minute, 200, "GET", s2+"/api/v1/products?page_size=5", nil), &products); err != nil || len(products.Items) == 0 {
		t.Fatalf("products at shop2: %v %+v", err, products)
	}
	product := products.Items[0].ID

	// Before the partition: Ada buys at shop1; Bob (who will try at shop2)
	// and Cy (who will buy at shop1 during it) join.
	ada, bob, cy := newShopper(t, "ada"), newShopper(t, "bob"), newShopper(t, "cy")
	ada.join(s1)
	bob.join(s1, s2)
	cy.join(s1)
	confirmed := map[string]*shopper{}
	confirmed[ada.buy(s1, product, "before-"+ada.email, time.Minute)] = ada
	bob.must(time.Minute, 200, "POST", s2+"/api/v1/cart/items", map[string]any{"product_id": product, "quantity": 1})

	if _, e, err := run(time.Minute, "cluster", "partition", "--dir", dir, "--hosts", "shop2"); err != nil {
		t.Fatalf("cluster partition: %v\n%s", err, e)
	}
	partitioned := time.Now()
	stalls := pg.writeDuringPartition(t, probes)
	watch := pg.watch(t, partitioned)
	healed := false
	heal := func() {
		if healed {
			return
		}
		healed = true
		if _, e, err := run(time.Minute, "cluster", "heal", "--dir", dir); err != nil {
			t.Errorf("cluster heal: %v\n%s", err, e)
		}
	}
	t.Cleanup(heal) // before down, so that the fleet stops cleanly

	// shop2, the minority side: checkout (CP) is refused with a problem.
	tc := time.Now()
	code, ctype, body := bob.call("POST", s2+"/api/v1/checkout", checkoutBody, "Idempotency-Key", "during-"+bob.email)
	refusedIn := time.Since(tc)
	t.Logf("checkout at shop2 during the partition: %d in %v: %s", code, refusedIn.Round(10*time.Millisecond), bytes.TrimSpace(body))
	if code != http.StatusServiceUnavailable || !strings.HasPrefix(ctype, "application/problem+json") {
		t.Errorf("checkout at shop2 during the partition: %d %s, want 503 problem+json: %s", code, ctype, body)
	}
	if refusedIn > 30*time.Second {
		t.Errorf("checkout at shop2 took %v to be refused, want within 30 s", refusedIn)
	}
	// Browsing (AP) at shop2 keeps answering, from the catalog instance and
	// the PostgreSQL replica on shop2.
	for _, path := range []string{"/api/v1/products?page_size=5", "/api/v1/products/" + product, "/products/" + product} {
		tb := time.Now()
		code, _, b := browser.call("GET", s2+path, nil)
		t.Logf("GET %s at shop2 during the partition: %d in %v", path, code, time.Since(tb).Round(10*time.Millisecond))
		if code != 200 {
			t.Errorf("GET %s at shop2 during the partition: %d, want 200: %.300s", path, code, b)
		}
	}
	// shop1, the majority side, keeps taking checkouts.
	tb := time.Now()
	confirmed[cy.buy(s1, product, "during-"+cy.email, 2*time.Minute)] = cy
	t.Logf("checkout at shop1 during the partition took %v", time.Since(tb).Round(10*time.Millisecond))
	watch.waitNode2Unhealthy(t, 2*time.Minute)
	for name, d := range stalls.wait(t) {
		t.Logf("a write on %s's primary (shop1) right after the cut took %v", name, d.Round(10*time.Millisecond))
	}
	t.Logf("partition lasted %v", time.Since(partitioned).Round(100*time.Millisecond))

	heal()
	th := time.Now()
	confirmed[bob.buy(s2, product, "after-"+bob.email, 2*time.Minute)] = bob
	t.Logf("first checkout at shop2 after healing confirmed %v after the heal", time.Since(th).Round(10*time.Millisecond))
	pg.waitCaughtUp(t, th, probes)
	watch.stop()

	// Nothing lost: every order confirmed exists for its customer, has an
	// e-mail, and exactly one capture; nothing else was captured (Bob's
	// refused attempt charged nothing).
	for id, who := range confirmed {
		var o struct {
			Status string `json:"status"`
		}
		if err := json.Unmarshal(who.must(time.Minute, 200, "GET", s1+"/api/v1/orders/"+id, nil), &o); err != nil || o.Status != "confirmed" {
			t.Errorf("order %s of %s: %v, status %q", id, who.email, err, o.Status)
		}
		mail := filepath.Join(dir, "mail", id+".eml")
		deadline := time.Now().Add(30 * time.Second)
		for {
			if _, err := os.Stat(mail); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("no e-mail for order %s", id)
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if st, err = cluster.ReadState(dir); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, kv := range st.DBEnv {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	shards := env["GLOBO_SHARDS_PAYMENT"]
	if shards == "" {
		t.Fatalf("no GLOBO_SHARDS_PAYMENT in the db_env of %s/cluster.json: %q", dir, st.DBEnv)
	}
	if o, e, err := run(time.Minute, "payments", "audit", "--shards", shards); err != nil {
		t.Errorf("payments audit: %v\n%s%s", err, o, e)
	}
	captures := map[string]int{}
	for _, part := range strings.Split(shards, ";") {
		_, dsn, _ := strings.Cut(part, "=")
		db, err := sql.Open("pgx", dsn)
		if err != nil {
			t.Fatal(err)
		}
		rows, err := db.Query(`SELECT order_id, count(*) FROM payment_ledger WHERE kind = 'capture' GROUP BY order_id`)
		if err != nil {
			db.Close()
			t.Fatalf("ledger of %s: %v", part, err)
		}
		for rows.Next() {
			var id string
			var n int
			if err := rows.Scan(&id, &n); err != nil {
				t.Fatal(err)
			}
			captures[id] += n
		}
		rows.Close()
		db.Close()
	}
	for id := range confirmed {
		if captures[id] != 1 {
			t.Errorf("order %s has %d captures, want 1", id, captures[id])
		}
	}
	for id, n := range captures {
		if confirmed[id] == nil {
			t.Errorf("%d capture(s) for order %s, which no checkout confirmed", n, id)
		}
	}

	// Down leaves no namespace, process or port.
	var ports []int
	for _, sp := range st.Specs {
		ports = append(ports, sp.Ports...)
	}
	t1 := time.Now()
	if _, e, err := f.Cluster(5*time.Minute, "down"); err != nil {
		t.Fatalf("cluster down: %v\n%s", err, e)
	}
	t.Logf("down took %v", time.Since(t1).Round(100*time.Millisecond))
	if b, err := exec.Command("ip", "netns", "list").Output(); err != nil || bytes.Contains(b, []byte(st.NetPrefix+"-")) {
		t.Errorf("namespaces left after down (%v):\n%s", err, b)
	}
	if _, err := net.InterfaceByName(st.NetPrefix + "-r"); err == nil {
		t.Errorf("the root veth %s-r is left after down", st.NetPrefix)
	}
	if left, _, _ := fleetProcs(dir); len(left) > 0 {
		t.Errorf("processes left after down: %v", left)
	}
	for _, p := range ports {
		if c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)), time.Second); err == nil {
			c.Close()
			t.Errorf("port %d still listens after down", p)
		}
	}
}

// fleetPG is the fleet's PostgreSQL (cluster up --hosts), seen from the
// root namespace, which reaches every host.
type fleetPG struct {
	formations []*pgauto.Formation
}

// attachPostgres attaches to the fleet's pg_auto_failover monitor and
// checks the placement: the monitor on infra, node 1 (and 3) of every
// formation on shop1, node 2 on shop2.
func attachPostgres(t *testing.T, dir string, st *cluster.State) *fleetPG {
	t.Helper()
	m, err := pgauto.Attach(context.Background(), filepath.Join(dir, "pg", "pg"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := m.Node().Host, st.HostAddrs[cluster.HostInfra]; got != want {
		t.Errorf("monitor on %q, want infra's %s", got, want)
	}
	fs := m.Formations()
	if len(fs) < 2 {
		t.Fatalf("%d formations, want main and shards", len(fs))
	}
	for _, f := range fs {
		for i, n := range f.Nodes() {
			want := st.HostAddrs[cluster.HostShop1]
			if i == 1 {
				want = st.HostAddrs[cluster.HostShop2]
			}
			if n.Host != want {
				t.Errorf("%s on %q, want %s", n.Name, n.Host, want)
			}
		}
	}
	return &fleetPG{formations: fs}
}

func (p *fleetPG) db(t *testing.T, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// probeTables creates a table in every formation's postgres database for
// writes during the partition, and returns its name.
func (p *fleetPG) probeTables(t *testing.T) string {
	t.Helper()
	const table = "partition_probe"
	for _, f := range p.formations {
		if _, err := p.db(t, f.URI("postgres")).Exec("CREATE TABLE IF NOT EXISTS " + table + " (at timestamptz, note text)"); err != nil {
			t.Fatalf("%s: %v", f.Name(), err)
		}
	}
	return table
}

// stallResults are the durations of the writes writeDuringPartition made.
type stallResults struct {
	done chan struct{}
	mu   sync.Mutex
	took map[string]time.Duration
	errs []error
}

// writeDuringPartition inserts a row into every formation's probe table on
// node 1 (its primary, on shop1) at once, in the background: on a shard
// formation the commit waits for node 2 (on shop2) until the monitor
// gives up on it.
func (p *fleetPG) writeDuringPartition(t *testing.T, table string) *stallResults {
	r := &stallResults{done: make(chan struct{}), took: map[string]time.Duration{}}
	var wg sync.WaitGroup
	for _, f := range p.formations {
		db := p.db(t, f.NodeURI(0, "postgres"))
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			t0 := time.Now()
			_, err := db.ExecContext(ctx, "INSERT INTO "+table+" VALUES (now(), 'during')")
			r.mu.Lock()
			defer r.mu.Unlock()
			if err != nil {
				r.errs = append(r.errs, fmt.Errorf("write on %s's node 1 during the partition: %w", f.Name(), err))
				return
			}
			r.took[f.Name()] = time.Since(t0)
		})
	}
	go func() { wg.Wait(); close(r.done) }()
	return r
}

// wait waits for the writes and fails the test for any that failed.
func (r *stallResults) wait(t *testing.T) map[string]time.Duration {
	t.Helper()
	<-r.done
	for _, err := range r.errs {
		t.Error(err)
	}
	return r.took
}

// pgWatch polls the monitor for every formation's states from the cut
// on, logs each change with the time since the cut, and notes when node 2
// (on shop2) was first reported unhealthy.
type pgWatch struct {
	quit, done chan struct{}
	mu         sync.Mutex
	unhealthy  map[string]time.Duration
	n          int
}

func (p *fleetPG) watch(t *testing.T, since time.Time) *pgWatch {
	w := &pgWatch{quit: make(chan struct{}), done: make(chan struct{}), unhealthy: map[string]time.Duration{}, n: len(p.formations)}
	t.Cleanup(w.stop)
	go func() {
		defer close(w.done)
		last := map[string]string{}
		for {
			for _, f := range p.formations {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				states, err := f.State(ctx)
				cancel()
				if err != nil {
					continue
				}
				at := time.Since(since)
				if l := stateLine(states); l != last[f.Name()] {
					last[f.Name()] = l
					t.Logf("monitor +%v: %s", at.Round(100*time.Millisecond), l)
				}
				for _, s := range states {
					w.mu.Lock()
					if _, seen := w.unhealthy[f.Name()]; s.Index == 1 && s.Health == 0 && !seen {
						w.unhealthy[f.Name()] = at
					}
					w.mu.Unlock()
				}
			}
			select {
			case <-w.quit:
				return
			case <-time.After(250 * time.Millisecond):
			}
		}
	}()
	return w
}

// waitNode2Unhealthy waits until the monitor has reported node 2 of every
// formation unhealthy, and logs when it first did.
func (w *pgWatch) waitNode2Unhealthy(t *testing.T, timeout time.Duration) {
	t.Helper()
	checkForPartition(t, timeout, func() error {
		w.mu.Lock()
		defer w.mu.Unlock()
		if len(w.unhealthy) < w.n {
			return fmt.Errorf("node 2 reported unhealthy only in %v", w.unhealthy)
		}
		return nil
	})
	w.mu.Lock()
	t.Logf("monitor: node 2 unhealthy after the cut: %v", w.unhealthy)
	w.mu.Unlock()
}

// stop ends the polling (idempotent).
func (w *pgWatch) stop() {
	select {
	case <-w.quit:
	default:
		close(w.quit)
	}
	<-w.done
}

// waitCaughtUp waits until every formation is healthy again (node 2 a
// secondary) and node 2 holds the rows written during the partition.
func (p *fleetPG) waitCaughtUp(t *testing.T, healed time.Time, table string) {
	t.Helper()
	for _, f := range p.formations {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		err := f.WaitHealthy(ctx)
		cancel()
		if err != nil {
			t.Fatalf("%s after heal: %v", f.Name(), err)
		}
		states, _ := f.State(context.Background())
		for _, s := range states {
			if s.Index == 1 && s.Current != "secondary" {
				t.Errorf("node 2 of %s after heal: %s", f.Name(), s.Current)
			}
		}
		db := p.db(t, f.NodeURI(1, "postgres"))
		checkForPartition(t, time.Minute, func() error {
			var n int
			if err := db.QueryRow("SELECT count(*) FROM " + table + " WHERE note = 'during'").Scan(&n); err != nil {
				return err
			}
			if n == 0 {
				return fmt.Errorf("node 2 of %s lacks the partition's writes", f.Name())
			}
			return nil
		})
		t.Logf("%s healthy, node 2 secondary and caught up %v after the heal (%s)", f.Name(), time.Since(healed).Round(100*time.Millisecond), stateLine(states))
	}
}

func stateLine(states []pgauto.NodeState) string {
	var parts []string
	for _, s := range states {
		parts = append(parts, fmt.Sprintf("%s=%s/%s health %d", s.Name, s.Current, s.Assigned, s.Health))
	}
	return strings.Join(parts, ", ")
}

// checkForPartition polls fn until it returns nil, failing after timeout.
func checkForPartition(t *testing.T, timeout time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
