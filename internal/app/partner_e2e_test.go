package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/app"
	"github.com/globomantics/globomantics/internal/partner"
	"github.com/globomantics/globomantics/internal/platform/bus"
	pmoney "github.com/globomantics/globomantics/internal/platform/money"
	"github.com/globomantics/globomantics/internal/platform/testenv"
	"github.com/globomantics/globomantics/pkg/shopclient"
)

// webhookReceiver is a partner's endpoint: it verifies each webhook's
// signature with the partner's secret and keeps the ones that verify, by
// delivery id (a redelivery is de-duplicated, as receivers must).
type webhookReceiver struct {
	mu     sync.Mutex
	secret string
	byID   map[string]partner.WebhookBody
	bad    []string
	srv    *httptest.Server
}

func newWebhookReceiver(t *testing.T) *webhookReceiver {
	r := &webhookReceiver{byID: map[string]partner.WebhookBody{}}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		defer r.mu.Unlock()
		if err := partner.Verify(r.secret, req.Header, body, time.Now(), 5*time.Minute); err != nil {
			r.bad = append(r.bad, err.Error())
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var b partner.WebhookBody
		if err := json.Unmarshal(body, &b); err != nil || b.ID != req.Header.Get(partner.HeaderID) {
			r.bad = append(r.bad, fmt.Sprintf("body %s: %v", body, err))
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		r.byID[b.ID] = b
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *webhookReceiver) setSecret(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.secret = s
}

// of returns the received webhooks of type typ, and the refused ones.
func (r *webhookReceiver) of(typ string) ([]partner.WebhookBody, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []partner.WebhookBody
	for _, b := range r.byID {
		if b.Type == typ {
			out = append(out, b)
		}
	}
	return out, append([]string(nil), r.bad...)
}

func testPNG(t *testing.T) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 64, 48))
	for x := range 64 {
		for y := range 48 {
			img.Set(x, y, color.RGBA{uint8(4 * x), uint8(5 * y), 90, 255})
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestPartnerInTheShop runs the whole shop in one process: a partner made
// with "globomantics partners create" lists an item with its key, uploads
// its image, receives the signed item.ready webhook once the thumbnails are
// made, sees it bought through the public checkout, receives item.sold,
// and finds the sale, the stock and both deliveries through the API.
func TestPartnerInTheShop(t *testing.T) {
	tp := allInOne(t)
	tp.start(t)
	p := tp.procs[0]
	dataDir := p.args[1]
	rcv := newWebhookReceiver(t)

	// The partner, by the command line, on the running shop's database.
	var out, errOut bytes.Buffer
	args := []string{"globomantics", "partners", "create", "--name", "Acme Lamps", "--data-dir", dataDir}
	if err := app.Run(context.Background(), args, func(string) string { return "" }, &out, &errOut); err != nil {
		t.Fatalf("partners create: %v\n%s", err, errOut.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	key := lines[len(lines)-1]
	if !strings.HasPrefix(key, partner.KeyPrefix) || strings.Contains(key, " ") {
		t.Fatalf("the last line is not the key alone:\n%s", out.String())
	}
	out.Reset()
	if err := app.Run(context.Background(), []string{"globomantics", "partners", "list", "--data-dir", dataDir}, func(string) string { return "" }, &out, &errOut); err != nil || !strings.Contains(out.String(), "Acme Lamps") {
		t.Fatalf("partners list: %v\n%s%s", err, out.String(), errOut.String())
	}

	c := newClient(t, tp)
	auth := []string{"Authorization", "Bearer " + key}
	c.must(401, "GET", "/api/v1/partner/products", nil)
	c.must(401, "GET", "/api/v1/partner/products", nil, "Authorization", "Bearer "+key+"x")

	var wh partner.Webhook
	c.must(200, "PUT", "/api/v1/partner/webhook", map[string]string{"url": rcv.srv.URL + "/hooks"}, auth...).decode(t, &wh)
	rcv.setSecret(wh.Secret)

	var cats shopclient.CategoryList
	c.must(200, "GET", "/api/v1/categories", nil).decode(t, &cats)
	var item shopclient.PartnerProduct
	c.must(201, "POST", "/api/v1/partner/products", map[string]any{"name": "Partner brass lamp", "description": "From Acme.",
		"category": cats.Items[0].ID, "price": map[string]any{"amount": 4500, "currency": "USD"}, "stock": 3}, auth...).decode(t, &item)

	// The image, raw.
	req, _ := http.NewRequest("PUT", p.url()+"/api/v1/partner/products/"+item.ID+"/image", bytes.NewReader(testPNG(t)))
	req.Header.Set("Content-Type", "image/png")
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := c.hc.Do(req) // checked against the API contract
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || json.Unmarshal(body, &item) != nil || item.ProductID == "" || item.Status != partner.ProductListed {
		t.Fatalf("image upload: %d %s", resp.StatusCode, body)
	}

	// item.ready, signed, once the thumbnail worker made the thumbnails.
	testenv.CheckFor(t, 30*time.Second, func() error {
		got, bad := rcv.of(partner.EventItemReady)
		if len(bad) > 0 {
			t.Fatalf("webhooks refused by the receiver: %v", bad)
		}
		if len(got) != 1 {
			return fmt.Errorf("%d item.ready webhooks", len(got))
		}
		d, _ := json.Marshal(got[0].Data)
		if !strings.Contains(string(d), item.ProductID) || !strings.Contains(string(d), "/media/") {
			t.Fatalf("item.ready data %s", d)
		}
		return nil
	})
	// The shop sells it: the public product shows its thumbnails.
	if pr := c.product(item.ProductID); pr.Name != "Partner brass lamp" || pr.Stock != 3 || pr.Thumbnails["small"] == "" {
		t.Fatalf("catalog product %+v", pr)
	}

	// A customer buys two.
	email := fmt.Sprintf("buyer-%d@example.com", time.Now().UnixNano())
	c.must(201, "POST", "/api/v1/accounts", map[string]string{"email": email, "password": "correct horse", "name": "Buyer"})
	c.must(200, "POST", "/api/v1/sessions", map[string]string{"email": email, "password": "correct horse"})
	c.must(200, "POST", "/api/v1/cart/items", map[string]any{"product_id": item.ProductID, "quantity": 2})
	var o order
	c.must(201, "POST", "/api/v1/checkout", checkoutBody("4242424242424242"), "Idempotency-Key", "partner-buy").decode(t, &o)
	if o.Status != "confirmed" {
		t.Fatalf("order %+v", o)
	}

	testenv.CheckFor(t, 30*time.Second, func() error {
		got, _ := rcv.of(partner.EventItemSold)
		if len(got) != 1 {
			return fmt.Errorf("%d item.sold webhooks", len(got))
		}
		d, _ := json.Marshal(got[0].Data)
		if !strings.Contains(string(d), o.ID) || !strings.Contains(string(d), `"quantity":2`) {
			t.Fatalf("item.sold data %s", d)
		}
		return nil
	})

	var rep partner.SalesReport
	c.must(200, "GET", "/api/v1/partner/sales", nil, auth...).decode(t, &rep)
	if rep.Units != 2 || rep.Revenue.Amount != 9000 || len(rep.Sales) != 1 || rep.Sales[0].OrderID != o.ID {
		t.Fatalf("sales %+v", rep)
	}
	var prods shopclient.ListPartnerProduct
	c.must(200, "GET", "/api/v1/partner/products", nil, auth...).decode(t, &prods)
	if len(prods.Items) != 1 || prods.Items[0].Stock != 1 || prods.Items[0].Status != partner.ProductReady {
		t.Fatalf("partner products %+v", prods.Items)
	}
	testenv.CheckFor(t, 10*time.Second, func() error {
		var log shopclient.ListPartnerDelivery
		c.must(200, "GET", "/api/v1/partner/webhooks/deliveries", nil, auth...).decode(t, &log)
		if len(log.Items) != 2 {
			return fmt.Errorf("delivery log %+v", log.Items)
		}
		for _, d := range log.Items {
			if d.Status != partner.StatusDelivered || d.Attempts != 1 || d.LastStatusCode != http.StatusNoContent {
				return fmt.Errorf("delivery %+v", d)
			}
		}
		return nil
	})
	// Another partner's product is not found for it.
	out.Reset()
	if err := app.Run(context.Background(), []string{"globomantics", "partners", "create", "--name", "Rival", "--data-dir", dataDir}, func(string) string { return "" }, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	lines = strings.Split(strings.TrimSpace(out.String()), "\n")
	rival := lines[len(lines)-1]
	req, _ = http.NewRequest("PUT", p.url()+"/api/v1/partner/products/"+item.ID+"/image", bytes.NewReader(testPNG(t)))
	req.Header.Set("Content-Type", "image/png")
	req.Header.Set("Authorization", "Bearer "+rival)
	resp, err = c.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("rival's upload to another partner's product: %d, want 404", resp.StatusCode)
	}
}

// placedOrder is a complete OrderPlaced payload (contract order.placed v1)
// of qty units of product.
func placedOrder(id, product string, qty int) map[string]any {
	m := func(a int64) map[string]any { return map[string]any{"amount": a, "currency": "USD"} }
	now := time.Now().UTC()
	return map[string]any{"order": map[string]any{
		"id": id, "user_id": "usr_1", "email": "ada@example.com", "status": "confirmed",
		"items":    []map[string]any{{"product_id": product, "name": "Lamp", "quantity": qty, "unit_price": m(1000), "line_total": m(int64(1000 * qty))}},
		"subtotal": m(int64(1000 * qty)), "shipping_cost": m(0), "total": m(int64(1000 * qty)),
		"shipping_address": map[string]any{"name": "Ada", "line1": "1 Main St", "city": "Springfield", "postal_code": "12345", "country": "US"},
		"payment":          map[string]any{"status": "captured"}, "shipment": map[string]any{"status": "created"},
		"created_at": now, "updated_at": now,
	}}
}

// Three webhook workers, each its own process ("serve --services
// webhooks"), share the webhooks of 40 sales; one is killed with SIGKILL
// half-way. Every webhook is delivered, each once but for at most the one
// the killed worker had in flight (delivery is at least once; receivers
// de-duplicate by Globo-Webhook-Id).
func TestWebhookWorkersShareAndSurviveAKill(t *testing.T) {
	if testing.Short() {
		t.Skip("real processes")
	}
	bin := binary(t)
	root := t.TempDir()
	nats := testenv.FreeAddr(t)
	env := []string{"GLOBO_SERVICE_TOKEN=" + serviceToken, "GLOBO_LOG_LEVEL=debug",
		// The job of a killed worker goes to another after 5 s, not the default 60 s.
		"GLOBO_ACK_WAIT=5s"}
	shopDir := filepath.Join(root, "shop")
	shop := &osProc{name: "shop", bin: bin, addr: testenv.FreeAddr(t), env: env,
		args: []string{"--data-dir", shopDir, "--services", "catalog,partner", "--blob-dir", filepath.Join(root, "blobs"),
			"--nats-listen", nats}}
	shop.start(t)
	shop.waitReady(t)

	// Each webhook takes 200 ms to answer, so that jobs are in flight.
	var mu sync.Mutex
	got := map[string]int{}
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(200 * time.Millisecond)
		mu.Lock()
		got[r.Header.Get(partner.HeaderID)]++
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(rcv.Close)

	var out, errOut bytes.Buffer
	if err := app.Run(context.Background(), []string{"globomantics", "partners", "create", "--name", "Acme", "--webhook-url", rcv.URL,
		"--data-dir", shopDir}, func(string) string { return "" }, &out, &errOut); err != nil {
		t.Fatalf("partners create: %v\n%s", err, errOut.String())
	}
	call := func(method, path string, body, res any) {
		t.Helper()
		b, _ := json.Marshal(body)
		req, _ := http.NewRequest(method, shop.url()+path, bytes.NewReader(b))
		req.Header.Set("Authorization", operatorAuth())
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		if resp.StatusCode >= 300 || (res != nil && json.Unmarshal(raw, res) != nil) {
			t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, raw)
		}
	}
	var ps struct {
		Items []partner.Partner `json:"items"`
	}
	call("GET", "/svc/partner/v1/partners", nil, &ps)
	pid := ps.Items[0].ID
	var cats struct {
		Items []struct{ ID string } `json:"categories"`
	}
	call("GET", "/svc/catalog/v1/categories", nil, &cats)
	if len(cats.Items) == 0 {
		t.Fatal("the catalog has no category")
	}
	category := cats.Items[0].ID
	var item partner.Product
	call("POST", "/svc/partner/v1/partners/"+pid+"/products", partner.NewProduct{Name: "Lamp", Category: category, Price: partnerMoney(1000), Stock: 1000}, &item)
	call("PUT", "/svc/partner/v1/partners/"+pid+"/products/"+item.ID+"/image", map[string]any{"image": testPNG(t)}, &item)

	var workers []*osProc
	for i := range 3 {
		w := &osProc{name: fmt.Sprintf("webhooks%d", i+1), bin: bin, addr: testenv.FreeAddr(t), env: env,
			args: []string{"--data-dir", filepath.Join(root, fmt.Sprintf("w%d", i+1)), "--services", "webhooks",
				"--nats-url", "nats://" + nats, "--peer", "partner=" + shop.url()}}
		w.start(t)
		workers = append(workers, w)
	}
	for _, w := range workers {
		w.waitReady(t)
	}

	b, err := bus.Open(context.Background(), bus.Options{URL: "nats://" + nats, Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	const sales = 40
	for i := range sales {
		id := fmt.Sprintf("ord_w%02d", i)
		if err := b.Publish(context.Background(), "globo.order.placed", id, placedOrder(id, item.ProductID, 1)); err != nil {
			t.Fatal(err)
		}
	}
	delivered := func() (n int, log []partner.Delivery) {
		var ds struct {
			Items []partner.Delivery `json:"items"`
		}
		call("GET", "/svc/partner/v1/partners/"+pid+"/deliveries?limit=500", nil, &ds)
		for _, d := range ds.Items {
			if d.Status == partner.StatusDelivered {
				n++
			}
		}
		return n, ds.Items
	}
	deadline := time.Now().Add(60 * time.Second)
	for n, _ := delivered(); n < sales/3 && time.Now().Before(deadline); n, _ = delivered() {
		time.Sleep(50 * time.Millisecond)
	}
	workers[0].kill()
	n, _ := delivered()
	t.Logf("%s killed with %d of %d webhooks delivered", workers[0].name, n, sales)

	// A job the killed worker held comes back after the broker's ack wait.
	var log []partner.Delivery
	testenv.CheckFor(t, 120*time.Second, func() error {
		var n int
		n, log = delivered()
		if n < sales || len(log) != sales {
			return fmt.Errorf("%d of %d webhooks delivered (%d in the log)", n, sales, len(log))
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	twice := 0
	for _, d := range log {
		switch c := got[d.ID]; {
		case c == 0:
			t.Errorf("delivery %s recorded delivered but never received", d.ID)
		case c > 1:
			twice++
		}
	}
	if twice > app.WebhookConcurrency {
		t.Errorf("%d webhooks received twice; at most the %d in flight at the kill may be", twice, app.WebhookConcurrency)
	}
	for _, w := range workers[1:] {
		if c := strings.Count(w.logs.String(), "webhook delivered"); c == 0 {
			t.Errorf("%s delivered nothing: the work was not shared", w.name)
		} else {
			t.Logf("%s delivered %d webhooks", w.name, c)
		}
	}
}

func partnerMoney(cents int64) pmoney.Money { return pmoney.USD(cents) }

// TestPartnersCommand: "globomantics partners" on a data directory of its
// own (the database is made and migrated), and its refusals.
func TestPartnersCommand(t *testing.T) {
	dir := t.TempDir()
	run := func(args ...string) (string, error) {
		var out, errOut bytes.Buffer
		err := app.Run(context.Background(), append([]string{"globomantics", "partners"}, args...), func(string) string { return "" }, &out, &errOut)
		return out.String(), err
	}
	for _, bad := range [][]string{{}, {"delete"}, {"create", "--data-dir", dir}, {"create", "--name", "A", "--data-dir", dir, "--dsn", dir + "/x.db"},
		{"create", "--name", "A", "--webhook-url", "ftp://x", "--data-dir", dir}, {"list", "extra", "--data-dir", dir}} {
		if _, err := run(bad...); err == nil {
			t.Errorf("partners %v succeeded", bad)
		}
	}
	out, err := run("create", "--name", "Acme", "--webhook-url", "https://acme.example/hooks", "--data-dir", dir)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if key := lines[len(lines)-1]; !strings.HasPrefix(key, partner.KeyPrefix) || len(strings.Fields(key)) != 1 {
		t.Fatalf("last line is not the key alone:\n%s", out)
	}
	if !strings.Contains(out, partner.SecretPrefix) {
		t.Errorf("the webhook secret is not shown:\n%s", out)
	}
	out, err = run("list", "--data-dir", dir)
	if err != nil || !strings.Contains(out, "Acme") || !strings.Contains(out, "https://acme.example/hooks") || strings.Contains(out, partner.KeyPrefix) {
		t.Fatalf("list: %v\n%s", err, out)
	}
}
