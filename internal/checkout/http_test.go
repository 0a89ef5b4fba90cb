package checkout_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/checkout"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/httpx"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

func serve(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(httpx.Middleware(testenv.Logger(t), h))
	t.Cleanup(srv.Close)
	return srv
}

// post sends POST orders as a raw HTTP request and returns the status and
// the decoded Result.
func post(t *testing.T, base, key string, c checkout.Customer, r checkout.Request) (int, checkout.Result) {
	t.Helper()
	b, err := json.Marshal(map[string]any{"customer": c, "request": r})
	must(t, err)
	req, err := http.NewRequest(http.MethodPost, base+checkout.Prefix+"orders", bytes.NewReader(b))
	must(t, err)
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := http.DefaultClient.Do(req)
	must(t, err)
	defer resp.Body.Close()
	var res checkout.Result
	if resp.StatusCode < 300 {
		must(t, json.NewDecoder(resp.Body).Decode(&res))
		if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
			t.Errorf("Cache-Control %q", cc)
		}
	}
	return resp.StatusCode, res
}

func get(t *testing.T, u string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(u)
	must(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	must(t, err)
	return resp.StatusCode, b
}

// TestHTTP: the REST API through checkout.Client and raw requests.
func TestHTTP(t *testing.T) {
	t.Parallel()
	w := newWorld(t, config{})
	ctx := context.Background()
	srv := serve(t, checkout.NewHandler(w.svc))
	cl := checkout.NewClient(httpx.NewClient("checkout", []string{srv.URL}, nil))

	lines := map[string]int{widget: 1, gadget: 1}
	c := w.customer("web", lines)
	res, err := cl.PlaceOrder(ctx, c, "k", request(goodCard))
	if err != nil {
		t.Fatal(err)
	}
	w.checkConfirmed(c, "k", res, lines)
	got, err := cl.Checkout(ctx, c.UserID, "k")
	if err != nil || got.Order.ID != res.Order.ID || got.State != checkout.StateConfirmed || !got.Done {
		t.Errorf("Client.Checkout = %+v, %v", got, err)
	}
	if _, err := cl.Checkout(ctx, c.UserID, "nope"); !errs.Is(errs.NotFound, err) {
		t.Errorf("Client.Checkout of an unknown key = %v, want NotFound", err)
	}
	if _, err := cl.PlaceOrder(ctx, c, "", request(goodCard)); !errs.Is(errs.BadRequest, err) {
		t.Errorf("Client.PlaceOrder without a key = %v, want BadRequest", err)
	}
	// Raw: a repeat of a confirmed checkout is 201 with the same order.
	status, raw := post(t, srv.URL, "k", c, request(goodCard))
	if status != http.StatusCreated || raw.Order.ID != res.Order.ID || !raw.Done {
		t.Errorf("POST repeat = %d %+v", status, raw)
	}
	if status, _ := post(t, srv.URL, "", c, request(goodCard)); status != http.StatusBadRequest {
		t.Errorf("POST without Idempotency-Key = %d, want 400", status)
	}
	other := request(goodCard)
	other.ShippingAddress.Line1 = "13 Analytical St"
	if status, _ := post(t, srv.URL, "k", c, other); status != errs.Invalid.Status() {
		t.Errorf("POST with the key and another body = %d, want %d", status, errs.Invalid.Status())
	}
	bad := request(goodCard)
	bad.CallbackURL = "ftp://example.com/x"
	if _, err := cl.PlaceOrder(ctx, c, "k-bad", bad); !errs.Is(errs.Invalid, err) {
		t.Errorf("bad callback URL over HTTP = %v, want Invalid", err)
	}
	// Errors keep their kind across HTTP.
	d := w.customer("web-declined", map[string]int{widget: 1})
	if _, err := cl.PlaceOrder(ctx, d, "k", request(declinedCard)); !errs.Is(errs.Declined, err) {
		t.Errorf("declined over HTTP = %v, want Declined", err)
	}
	if status, _ := post(t, srv.URL, "k", d, request(declinedCard)); status != errs.Declined.Status() {
		t.Errorf("POST of a declined checkout = %d", status)
	}

	// 202 while pending, then GET checkouts tells the end.
	f := newCrasher(t, "service:payment=1000ms")
	slow := w.instance("slow", f.Injector, checkout.WithBudget(100*time.Millisecond))
	slowSrv := serve(t, checkout.NewHandler(slow))
	p := w.customer("web-slow", lines)
	status, pend := post(t, slowSrv.URL, "k", p, request(goodCard))
	if status != http.StatusAccepted || pend.Done || pend.State != checkout.StatePending || pend.Order.ID == "" {
		t.Errorf("slow POST = %d %+v; want 202 pending", status, pend)
	}
	q := url.Values{"user_id": {p.UserID}, "key": {"k"}}
	testenv.CheckFor(t, 10*time.Second, func() error {
		status, b := get(t, slowSrv.URL+checkout.Prefix+"checkouts?"+q.Encode())
		var r checkout.Result
		if status != http.StatusOK || json.Unmarshal(b, &r) != nil {
			return fmt.Errorf("GET checkouts = %d %s", status, b)
		}
		if r.State != checkout.StateConfirmed || r.Order.ID != pend.Order.ID {
			return fmt.Errorf("checkout %s", r.State)
		}
		return nil
	})
	if status, _ := get(t, srv.URL+checkout.Prefix+"checkouts?user_id=nobody&key=k"); status != http.StatusNotFound {
		t.Errorf("GET of an unknown checkout = %d", status)
	}
	w.checkInvariants()
}

// TestAdmin: the operator's endpoints.
func TestAdmin(t *testing.T) {
	t.Parallel()
	w := newWorld(t, config{})
	ctx := context.Background()
	off := w.instance("no-faults", nil)
	offSrv := serve(t, checkout.NewAdminHandler(off))
	onSrv := serve(t, checkout.NewAdminHandler(w.svc))
	put := func(base, body string) int {
		t.Helper()
		req, err := http.NewRequest(http.MethodPut, base+checkout.Prefix+"admin/faults", strings.NewReader(body))
		must(t, err)
		resp, err := http.DefaultClient.Do(req)
		must(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	if status := put(offSrv.URL, "after:create_order=fail*1"); status != http.StatusConflict {
		t.Errorf("PUT faults with fault injection off = %d, want 409", status)
	}
	if status, b := get(t, offSrv.URL+checkout.Prefix+"admin/faults"); status != http.StatusOK || strings.TrimSpace(string(b)) != "" {
		t.Errorf("GET faults (off) = %d %q", status, b)
	}
	if status := put(onSrv.URL, "after:create_order=fail*1"); status != http.StatusNoContent {
		t.Errorf("PUT faults = %d, want 204", status)
	}
	if status, b := get(t, onSrv.URL+checkout.Prefix+"admin/faults"); status != http.StatusOK || strings.TrimSpace(string(b)) != "after:create_order=fail*1" {
		t.Errorf("GET faults = %d %q", status, b)
	}
	if status := put(onSrv.URL, "middle:x=explode"); status != errs.Invalid.Status() {
		t.Errorf("PUT of bad rules = %d", status)
	}
	if status := put(onSrv.URL, strings.Repeat("x", 5000)); status != http.StatusRequestEntityTooLarge {
		t.Errorf("PUT of 5000 bytes = %d", status)
	}
	// The rule set through the endpoint is in force: the order step's
	// answer is lost once, and the checkout still ends confirmed.
	lines := map[string]int{widget: 1}
	c := w.customer("admin", lines)
	res, err := w.svc.PlaceOrder(ctx, c, "k", request(goodCard))
	if err != nil {
		t.Fatal(err)
	}
	w.checkConfirmed(c, "k", res, lines)
	status, b := get(t, offSrv.URL+checkout.Prefix+"admin/sagas/"+res.Order.ID)
	var v checkout.SagaView
	if status != http.StatusOK || json.Unmarshal(b, &v) != nil {
		t.Fatalf("GET saga = %d %s", status, b)
	}
	if v.ID != res.Order.ID || v.State != checkout.SagaConfirmed || v.UserID != c.UserID || v.Key != "k" || v.Epoch != 1 || len(v.History) < 10 {
		t.Errorf("saga view %+v", v)
	}
	retried := false
	for _, r := range v.History {
		retried = retried || r.Step == "create_order" && r.Outcome == "retry"
	}
	if !retried {
		t.Errorf("the rule set by PUT did not fire: %+v", v.History)
	}
	if status, _ := get(t, offSrv.URL+checkout.Prefix+"admin/sagas/ord_nope"); status != http.StatusNotFound {
		t.Errorf("GET of an unknown saga = %d", status)
	}
	w.checkInvariants()
}
