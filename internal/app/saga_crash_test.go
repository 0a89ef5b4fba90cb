package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/cart"
	"github.com/globomantics/globomantics/internal/catalog"
	"github.com/globomantics/globomantics/internal/checkout"
	ordersvc "github.com/globomantics/globomantics/internal/order"
	"github.com/globomantics/globomantics/internal/payment"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/httpx"
	"github.com/globomantics/globomantics/internal/platform/ids"
	"github.com/globomantics/globomantics/internal/platform/svcauth"
	"github.com/globomantics/globomantics/internal/platform/testenv"
	"github.com/globomantics/globomantics/internal/shipping"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// binary builds the globomantics binary once per test run.
func binary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "globo-bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "globomantics")
		out, err := exec.Command("go", "build", "-o", binPath, "github.com/globomantics/globomantics/cmd/globomantics").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// osProc is a real process of the binary, killed with SIGKILL when the
// test says so.
type osProc struct {
	name string
	bin  string
	addr string
	args []string
	// command, when set, is the whole command line after the binary
	// (another subcommand than serve); else serve --http-addr addr args.
	command []string
	env     []string
	cmd     *exec.Cmd
	logs    *syncBuffer
	done    chan struct{}
}

func (p *osProc) url() string { return "http://" + p.addr }

func (p *osProc) start(t *testing.T) {
	t.Helper()
	p.logs = &syncBuffer{}
	argv := p.command
	if argv == nil {
		argv = append([]string{"serve", "--http-addr", p.addr}, p.args...)
	}
	p.cmd = exec.Command(p.bin, argv...)
	p.cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, p.env...)
	p.cmd.Stdout, p.cmd.Stderr = io.Discard, p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.done = make(chan struct{})
	cmd, done := p.cmd, p.done
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() { p.kill() })
}

func (p *osProc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *osProc) kill() {
	if p.cmd == nil || !p.alive() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

func (p *osProc) waitReady(t *testing.T) {
	t.Helper()
	testenv.CheckFor(t, 30*time.Second, func() error {
		if !p.alive() {
			t.Fatalf("%s exited early:\n%s", p.name, p.logs)
		}
		resp, err := http.Get(p.url() + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("%s readyz %d", p.name, resp.StatusCode)
		}
		return nil
	})
}

// sagaShop is the shop split into real processes for the crash tests: the
// services a checkout calls, and two checkout instances sharing one saga log.
type sagaShop struct {
	hub, cat, pay, ck1, ck2 *osProc
	token                   string
	carts                   *cart.Client
	catalog                 *catalog.Client
	payments                *payment.Client
	orders                  *ordersvc.Client
	checkout2               *checkout.Client
}

func newSagaShop(t *testing.T, backend string) *sagaShop {
	t.Helper()
	bin := binary(t)
	root := t.TempDir()
	tok := credential(svcauth.Operator)
	nats := testenv.FreeAddr(t)
	hubA, catA, payA, ck1A, ck2A := testenv.FreeAddr(t), testenv.FreeAddr(t), testenv.FreeAddr(t), testenv.FreeAddr(t), testenv.FreeAddr(t)
	dbs := map[string]string{}
	for _, svc := range []string{"cart", "order", "catalog", "payment", "shipping", "checkout"} {
		if backend == "postgres" {
			dbs[svc] = testenv.PostgresDSN(t)
		} else {
			dbs[svc] = filepath.Join(root, svc+".db")
		}
	}
	env := []string{"GLOBO_SERVICE_TOKEN=" + serviceToken, "GLOBO_LOG_LEVEL=info"}
	for svc, dsn := range dbs {
		env = append(env, "GLOBO_DB_"+strings.ToUpper(svc)+"="+dsn)
	}
	peer := func(svc, addr string) []string { return []string{"--peer", svc + "=http://" + addr} }
	mk := func(name, addr, services string, extra ...string) *osProc {
		args := append([]string{"--data-dir", filepath.Join(root, name), "--services", services,
			"--blob-dir", filepath.Join(root, "blobs"), "--mail-dir", filepath.Join(root, "mail")}, extra...)
		return &osProc{name: name, bin: bin, addr: addr, args: args, env: env}
	}
	natsURL := "nats://" + nats
	ckArgs := []string{"--nats-url", natsURL, "--fault-injection", "--checkout-lease", "1s", "--checkout-budget", "300ms"}
	for _, p := range [][2]string{{"cart", hubA}, {"order", hubA}, {"catalog", catA}, {"payment", payA}, {"shipping", payA}} {
		ckArgs = append(ckArgs, peer(p[0], p[1])...)
	}
	s := &sagaShop{
		hub:   mk("hub", hubA, "cart,order", append([]string{"--nats-listen", nats}, peer("catalog", catA)...)...),
		cat:   mk("catalog", catA, "catalog", "--nats-url", natsURL),
		pay:   mk("pay", payA, "payment,shipping", "--nats-url", natsURL),
		ck1:   mk("checkout1", ck1A, "checkout", ckArgs...),
		ck2:   mk("checkout2", ck2A, "checkout", ckArgs...),
		token: tok,
	}
	all := []*osProc{s.hub, s.cat, s.pay, s.ck1, s.ck2}
	for _, p := range all {
		p.start(t) // all at once: readiness waits for the peers
	}
	for _, p := range all {
		p.waitReady(t)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range []*osProc{s.hub, s.cat, s.pay, s.ck1, s.ck2} {
				t.Logf("--- %s logs ---\n%s", p.name, lastLines(p.logs.String(), 60))
			}
		}
	})
	client := func(svc, addr string) *httpx.Client {
		return httpx.NewClient(svc, []string{"http://" + addr}, nil, httpx.WithToken(tok))
	}
	s.carts = cart.NewClient(client("cart", hubA))
	s.catalog = catalog.NewClient(client("catalog", catA))
	s.payments = payment.NewClient(client("payment", payA))
	s.orders = ordersvc.NewClient(client("order", hubA))
	s.checkout2 = checkout.NewClient(client("checkout", ck2A))
	return s
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// setFaults replaces the fault rules of a checkout process.
func (s *sagaShop) setFaults(t *testing.T, p *osProc, rules string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, p.url()+checkout.Prefix+"admin/faults", strings.NewReader(rules))
	req.Header.Set("Authorization", "Bearer "+s.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("PUT faults %q: %d %s", rules, resp.StatusCode, b)
	}
}

// place posts a checkout straight to the checkout process p.
func (s *sagaShop) place(p *osProc, user, key, card string) (int, []byte, error) {
	body, _ := json.Marshal(map[string]any{
		"customer": checkout.Customer{UserID: user, Email: user + "@example.com"},
		"request": checkout.Request{
			ShippingAddress: shipping.Address{Name: "Ada", Line1: "1 Main St", City: "Springfield", Region: "IL", PostalCode: "12345", Country: "US"},
			Payment:         payment.Card{Number: card, ExpMonth: 12, ExpYear: time.Now().Year() + 2, CVC: "123"},
		},
	})
	req, _ := http.NewRequest(http.MethodPost, p.url()+checkout.Prefix+"orders", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+s.token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	c := &http.Client{Timeout: 20 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b, nil
}

// sagaView reads a saga's history from a checkout process.
func (s *sagaShop) sagaView(t *testing.T, p *osProc, id string) checkout.SagaView {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, p.url()+checkout.Prefix+"admin/sagas/"+id, nil)
	req.Header.Set("Authorization", "Bearer "+s.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v checkout.SagaView
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("saga %s: %d %s", id, resp.StatusCode, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// crashPoint is where the first checkout instance is made to die.
type crashPoint struct {
	rules string // fault rules set on the first instance
	point string // the point that crashes it
}

func crashPoints() []crashPoint {
	var out []crashPoint
	names := checkout.StepNames()
	undo := map[string]bool{}
	for _, n := range []string{"unlock_cart", "release_stock", "void_payment", "cancel_order", "cancel_shipment"} {
		undo[n] = true
	}
	for _, n := range names {
		for _, when := range []string{"before:", "after:"} {
			p := when + n + "=crash"
			if undo[n] {
				// Make the saga roll back after the shipment is created,
				// so that every compensation runs.
				out = append(out, crashPoint{rules: "after:create_shipment=refuse," + p, point: when + n})
			} else {
				out = append(out, crashPoint{rules: p, point: when + n})
			}
		}
	}
	// A capture refused after the stock was committed: the voiding that
	// settles it, and the release of sold stock, crash too.
	for _, p := range []string{"before:settle_capture", "before:release_stock", "after:release_stock"} {
		out = append(out, crashPoint{rules: "before:capture_payment=refuse," + p + "=crash", point: p})
	}
	return out
}

// TestCheckoutSurvivesCrashes kills a checkout process with SIGKILL before
// and after every step and every compensation of the saga, on SQLite and on
// PostgreSQL, with the other services and a second checkout instance as
// real processes. Half the time the killed instance restarts at once, half
// the time it stays dead until the other instance has finished its saga.
// Every checkout must end confirmed or cancelled, and the money, the stock
// and the orders must agree.
func TestCheckoutSurvivesCrashes(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real processes")
	}
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) { crashSuite(t, backend) })
	}
}

func crashSuite(t *testing.T, backend string) {
	s := newSagaShop(t, backend)
	ctx := context.Background()
	levels, err := s.catalog.StockLevels(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The product with the most stock, enough for every crash point.
	var prod catalog.StockLevel
	for _, l := range levels {
		if l.Stock > prod.Stock {
			prod = l
		}
	}
	points := crashPoints()
	if prod.Stock < len(points) {
		t.Fatalf("no product with %d units in stock: %+v", len(points), levels)
	}
	initial := prod.Stock + prod.Reserved + prod.Sold

	type outcome struct {
		user, key string
		res       checkout.Result
	}
	var outcomes []outcome
	for i, cp := range points {
		user := fmt.Sprintf("crash%02d%s", i, strings.ToLower(ids.Token()[:6]))
		key := "key-" + user
		if _, err := s.carts.AddItem(ctx, checkout.CartOwner(user), prod.ProductID, 1); err != nil {
			t.Fatal(err)
		}
		s.setFaults(t, s.ck1, cp.rules)
		status, body, perr := s.place(s.ck1, user, key, "4242424242424242")
		// The process dies at the point (the answer is lost) or, for a
		// point after the answer was given, soon after.
		testenv.CheckFor(t, 15*time.Second, func() error {
			if s.ck1.alive() {
				return fmt.Errorf("%s still running (answer %d %s, err %v)", cp.point, status, body, perr)
			}
			return nil
		})
		if !strings.Contains(s.ck1.logs.String(), "fault: crashing at "+cp.point) {
			t.Fatalf("%s: checkout1 died, but not at the point:\n%s", cp.point, lastLines(s.ck1.logs.String(), 30))
		}
		restartNow := i%2 == 0
		if restartNow {
			s.ck1.start(t)
		}
		var res checkout.Result
		testenv.CheckFor(t, 30*time.Second, func() error {
			r, err := s.checkout2.Checkout(ctx, user, key)
			if err != nil {
				return err
			}
			if !r.Done {
				return fmt.Errorf("%s: checkout still %s", cp.point, r.State)
			}
			res = r
			return nil
		})
		if !restartNow {
			s.ck1.start(t)
		}
		s.ck1.waitReady(t)
		outcomes = append(outcomes, outcome{user, key, res})
		t.Logf("%-34s -> %s", cp.point, res.State)
		s.checkSaga(t, user, res)
	}

	// The whole shop agrees: stock, money and orders.
	levels, err = s.catalog.StockLevels(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range levels {
		if l.ProductID != prod.ProductID {
			continue
		}
		if l.Stock+l.Reserved+l.Sold != initial || l.Reserved != 0 || l.Stock < 0 {
			t.Errorf("stock of %s: %+v, want stock+sold = %d and nothing reserved", l.ProductID, l, initial)
		}
		confirmed := 0
		for _, o := range outcomes {
			if o.res.State == checkout.StateConfirmed {
				confirmed++
			}
		}
		if l.Sold != confirmed {
			t.Errorf("sold %d units, but %d checkouts were confirmed", l.Sold, confirmed)
		}
	}
	audit, err := s.payments.Audit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var confirmedTotal int64
	for _, o := range outcomes {
		if o.res.State == checkout.StateConfirmed {
			confirmedTotal += o.res.Order.Total.Amount
		}
	}
	if len(audit.Violations) > 0 || audit.Held != 0 || audit.NetCaptured != confirmedTotal {
		t.Errorf("payment audit %+v: want no violations, nothing held, net captured %d (the confirmed orders)", audit, confirmedTotal)
	}
}

// checkSaga checks one finished checkout against every service.
func (s *sagaShop) checkSaga(t *testing.T, user string, res checkout.Result) {
	t.Helper()
	ctx := context.Background()
	id := res.Order.ID
	o, oerr := s.orders.GetOrder(ctx, id)
	p, perr := s.payments.PaymentForOrder(ctx, id)
	crt, err := s.carts.GetCart(ctx, checkout.CartOwner(user))
	if err != nil {
		t.Fatal(err)
	}
	switch res.State {
	case checkout.StateConfirmed:
		if oerr != nil || o.Status != ordersvc.StatusConfirmed || o.Shipment.ID == "" || o.Payment.Status != payment.StatusCaptured {
			t.Errorf("%s confirmed, but order %+v (%v)", id, o, oerr)
		}
		if perr != nil || p.Status != payment.StatusCaptured || p.Amount != o.Total {
			t.Errorf("%s confirmed, but payment %+v (%v)", id, p, perr)
		}
		if len(crt.Items) != 0 {
			t.Errorf("%s confirmed, but the checked-out line is still in the cart: %+v", id, crt.Items)
		}
	case checkout.StateCancelled:
		if oerr == nil && o.Status != ordersvc.StatusCancelled {
			t.Errorf("%s cancelled, but its order is %s", id, o.Status)
		} else if oerr != nil && !errs.Is(errs.NotFound, oerr) {
			t.Errorf("%s: order: %v", id, oerr)
		}
		if perr == nil && p.Status != payment.StatusVoided && p.Status != payment.StatusDeclined {
			t.Errorf("%s cancelled, but its payment is %s", id, p.Status)
		}
		if len(crt.Items) != 1 {
			t.Errorf("%s cancelled, but the cart changed: %+v", id, crt.Items)
		}
		// The cart is no longer locked by the cancelled checkout.
		lock := "probe-" + ids.Token()[:8]
		if _, err := s.carts.Lock(ctx, checkout.CartOwner(user), lock); err != nil {
			t.Errorf("%s cancelled, but its cart is still locked: %v", id, err)
		} else if err := s.carts.Unlock(ctx, checkout.CartOwner(user), lock); err != nil {
			t.Error(err)
		}
	default:
		t.Fatalf("%s: state %q", id, res.State)
	}
	// No step done twice, no compensation applied twice.
	v := s.sagaView(t, s.ck2, id)
	seen := map[string]int{}
	for _, h := range v.History {
		if h.Outcome == "done" || h.Outcome == "undone" {
			seen[h.Step+"/"+h.Outcome]++
		}
	}
	for k, n := range seen {
		if n > 1 {
			t.Errorf("%s: %s recorded %d times: %+v", id, k, n, v.History)
		}
	}
}
