package app_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/platform/testenv"
	"github.com/globomantics/globomantics/pkg/shopclient"
)

// TestCheckoutIsOneTrace runs the shop in one process and places an order:
// its trace (the X-Trace-Id of the checkout's answer) holds the request's
// span, the checkout saga and its steps, the outbox relay's span of the
// order's e-mail job and the mail worker's consumer span; /metrics shows
// the saga, the outbox, the bus, the stores and the cache.
func TestCheckoutIsOneTrace(t *testing.T) {
	tp := allInOne(t)
	tp.start(t)
	p := tp.procs[0]
	c := newClient(t, tp)

	var pg shopclient.ListProduct
	c.must(200, "GET", "/api/v1/products?page_size=1", nil).decode(t, &pg)
	if len(pg.Items) == 0 {
		t.Fatal("no products")
	}
	email := fmt.Sprintf("trace-%d@example.com", time.Now().UnixNano())
	c.must(201, "POST", "/api/v1/accounts", map[string]string{"email": email, "password": "correct horse", "name": "Ada"})
	c.must(200, "POST", "/api/v1/sessions", map[string]string{"email": email, "password": "correct horse"})
	c.must(200, "POST", "/api/v1/cart/items", map[string]any{"product_id": pg.Items[0].ID, "quantity": 1})
	res := c.must(201, "POST", "/api/v1/checkout", checkoutBody("4242424242424242"), "Idempotency-Key", "k-trace")
	traceID := res.header.Get("X-Trace-Id")
	if len(traceID) != 32 {
		t.Fatalf("checkout's X-Trace-Id %q", traceID)
	}

	testenv.CheckFor(t, 20*time.Second, func() error {
		code, body := getAuth(t, p.internalURL()+"/svc/obs/v1/traces?trace_id="+traceID, operatorAuth())
		if code != http.StatusOK {
			return fmt.Errorf("trace %s: %d", traceID, code)
		}
		for _, name := range []string{`"name":"POST /api/v1/checkout"`, `"name":"checkout saga"`, `"name":"checkout step capture_payment"`,
			`"name":"outbox relay"`, `"name":"publish globo_jobs.email"`, `"name":"process globo_jobs.email"`, `"name":"process globo.order.placed"`} {
			if !strings.Contains(body, name) {
				return fmt.Errorf("trace %s lacks a span %s", traceID, name)
			}
		}
		return nil
	})
	testenv.CheckFor(t, 10*time.Second, func() error {
		code, body := getAuth(t, p.internalURL()+"/metrics", "")
		if code != http.StatusOK {
			return fmt.Errorf("/metrics: %d", code)
		}
		for _, want := range []string{
			`saga_completed_total{outcome="completed"} 1`,
			`saga_duration_seconds_count{outcome="completed"} 1`,
			`messaging_process_duration_seconds_count{consumer="mail-jobs",outcome="ack"}`,
			`messaging_client_published_messages_total{subject_prefix="globo_jobs.email"}`,
			`outbox_published_total{store="order"}`,
			`outbox_backlog_rows{store="order"}`,
			`outbox_relay_duration_seconds_count{store="order"}`,
			`bus_consumer_pending_messages{consumer="mail-jobs",stream="GLOBO_JOBS"}`,
			`bus_dead_letter_messages{stream="GLOBO"}`,
			`db_client_operation_duration_seconds_count{db_name="order",db_operation="TX",node_role="primary",outcome="ok"}`,
			`sqldb_reads_total{db_name="catalog",node_role="primary"}`,
			`cache_requests_total{cache="shop",result="hit"}`,
		} {
			if !strings.Contains(body, want) {
				return fmt.Errorf("/metrics lacks %s", want)
			}
		}
		return nil
	})
}
