package app_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/analytics"
	"github.com/globomantics/globomantics/internal/platform/testenv"

	"github.com/globomantics/globomantics/pkg/shopclient"
)

// TestAnalyticsInTheShop runs the whole shop in one process: product pages
// and searches served by the storefront reach the analytics service through
// the broker, fire-and-forget; its internal API and operator report answer
// on the internal listener only; the home page shows "Popular now"; and a
// checkout's payment shows in the revenue.
func TestAnalyticsInTheShop(t *testing.T) {
	tp := allInOne(t)
	tp.start(t)
	p := tp.procs[0]
	get := func(base, path string, auth bool) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", base+path, nil)
		if auth {
			req.Header.Set("Authorization", operatorAuth())
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := get(p.url(), "/api/v1/products?page_size=3", false)
	if code != 200 {
		t.Fatalf("products: %d %s", code, body)
	}
	var list shopclient.ListProduct
	if err := json.Unmarshal([]byte(body), &list); err != nil || len(list.Items) < 2 {
		t.Fatalf("products %s: %v", body, err)
	}
	hot, warm := list.Items[0], list.Items[1]
	for range 3 {
		if code, _ := get(p.url(), "/products/"+hot.ID, false); code != 200 {
			t.Fatalf("product page: %d", code)
		}
	}
	if code, _ := get(p.url(), "/products/"+warm.ID, false); code != 200 {
		t.Fatalf("product page: %d", code)
	}
	if code, _ := get(p.url(), "/search?q=Zzyzx+Nothing", false); code != 200 {
		t.Fatalf("search page: %d", code)
	}
	testenv.CheckFor(t, 15*time.Second, func() error {
		code, body := get(p.internalURL(), "/svc/analytics/v1/popular?window=1h&limit=8", true)
		var pr analytics.PopularResponse
		if code != 200 || json.Unmarshal([]byte(body), &pr) != nil {
			return fmt.Errorf("popular: %d %s", code, body)
		}
		want := []analytics.ProductViews{{ProductID: hot.ID, Views: 3}, {ProductID: warm.ID, Views: 1}}
		if fmt.Sprint(pr.Products) != fmt.Sprint(want) {
			return fmt.Errorf("popular %v, want %v", pr.Products, want)
		}
		code, body = get(p.internalURL(), "/svc/analytics/v1/searches?window=1h", true)
		if code != 200 || !strings.Contains(body, `"no_result":[{"query":"zzyzx nothing","searches":1}]`) {
			return fmt.Errorf("searches: %d %s", code, body)
		}
		return nil
	})
	// The operator's page is internal: on the internal listener with a
	// credential, nowhere on the public one.
	if code, body := get(p.internalURL(), "/svc/analytics/v1/report", true); code != 200 || !strings.Contains(body, "zzyzx nothing") {
		t.Errorf("report: %d\n%s", code, body)
	}
	if code, _ := get(p.internalURL(), "/svc/analytics/v1/report", false); code != http.StatusUnauthorized && code != http.StatusForbidden {
		t.Errorf("report without a credential: %d", code)
	}
	if code, _ := get(p.url(), "/svc/analytics/v1/report", false); code != http.StatusNotFound {
		t.Errorf("report on the public listener: %d, want 404", code)
	}
	code, body = get(p.url(), "/", false)
	if code != 200 || !strings.Contains(body, "Popular now") {
		t.Fatalf("home page without the strip: %d", code)
	}
	strip := body[strings.Index(body, "Popular now"):strings.Index(body, "Featured products")]
	if i, j := strings.Index(strip, "/products/"+hot.ID), strings.Index(strip, "/products/"+warm.ID); i < 0 || j < 0 || i > j {
		t.Errorf("strip does not list %s then %s:\n%s", hot.ID, warm.ID, strip)
	}

	// Revenue: a checkout's capture reaches analytics through the payment
	// service's outbox and the broker (PaymentCaptured), counted once.
	c := newClient(t, tp)
	email := fmt.Sprintf("revenue-%d@example.com", time.Now().UnixNano())
	c.must(201, "POST", "/api/v1/accounts", map[string]string{"email": email, "password": "correct horse", "name": "Ada"})
	c.must(200, "POST", "/api/v1/sessions", map[string]string{"email": email, "password": "correct horse"})
	c.must(200, "POST", "/api/v1/cart/items", map[string]any{"product_id": warm.ID, "quantity": 1})
	var o order
	c.must(201, "POST", "/api/v1/checkout", checkoutBody("4242424242424242"), "Idempotency-Key", "k-revenue").decode(t, &o)
	testenv.CheckFor(t, 15*time.Second, func() error {
		code, body := get(p.internalURL(), "/svc/analytics/v1/revenue?window=1h", true)
		var rr analytics.RevenueReport
		if code != 200 || json.Unmarshal([]byte(body), &rr) != nil {
			return fmt.Errorf("revenue: %d %s", code, body)
		}
		if len(rr.Hours) != 1 || rr.Hours[0].Payments != 1 || rr.Hours[0].Captured.Amount != o.Total.Amount {
			return fmt.Errorf("revenue %s, want one payment of %d", body, o.Total.Amount)
		}
		return nil
	})
	if code, body := get(p.internalURL(), "/svc/analytics/v1/report", true); code != 200 || !strings.Contains(body, "Revenue per hour") {
		t.Errorf("report without revenue: %d\n%s", code, body)
	}
}
