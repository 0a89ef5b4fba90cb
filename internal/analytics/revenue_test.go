package analytics_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/analytics"
	"github.com/globomantics/globomantics/internal/platform/bus"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/httpx"
	"github.com/globomantics/globomantics/internal/platform/money"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

// captured is a PaymentCaptured payload as the payment service writes it
// (payment.PaymentCaptured's fields: analytics does not import payment).
func captured(order string, cents int64, at time.Time) map[string]any {
	return map[string]any{"payment_id": "pay_" + order, "order_id": order,
		"amount": money.USD(cents), "captured_at": at.UTC().Format(time.RFC3339Nano)}
}

// TestRevenueCountsOnce delivers PaymentCaptured events, one of them
// twice as a redelivery would, on SQLite and PostgreSQL: each capture adds
// its amount and one payment to its hour once, through the inbox.
func TestRevenueCountsOnce(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			svc, _ := newService(t, b)
			hour := now0.Truncate(time.Hour)
			first := event(t, analytics.SubjectPaymentCaptured, "ord_1/captured", captured("ord_1", 2599, now0))
			for i, want := range []bool{true, false} {
				if fresh, err := svc.Apply(ctx, first); err != nil || fresh != want {
					t.Fatalf("delivery %d of ord_1's capture: fresh %v, %v; want %v", i+1, fresh, err, want)
				}
			}
			for _, ev := range []bus.Event{
				event(t, analytics.SubjectPaymentCaptured, "ord_2/captured", captured("ord_2", 1000, now0.Add(10*time.Minute))),
				event(t, analytics.SubjectPaymentCaptured, "ord_3/captured", captured("ord_3", 500, now0.Add(-time.Hour))),
			} {
				if err := svc.Handle(ctx, ev); err != nil {
					t.Fatal(err)
				}
			}
			rep, err := svc.Revenue(ctx, 2*time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			want := []analytics.HourlyRevenue{
				{Hour: hour, Captured: money.USD(2599 + 1000), Payments: 2},
				{Hour: hour.Add(-time.Hour), Captured: money.USD(500), Payments: 1},
			}
			if !reflect.DeepEqual(rep.Hours, want) {
				t.Errorf("Revenue = %+v, want %+v (ord_1 delivered twice, counted once)", rep.Hours, want)
			}

			// Malformed captures are dead letters at once, and count nothing.
			for i, data := range []any{
				map[string]any{"order_id": "ord_9", "amount": money.USD(0), "captured_at": now0},
				map[string]any{"order_id": "ord_9", "amount": money.Money{Amount: 100, Currency: "usd"}, "captured_at": now0},
				map[string]any{"order_id": "ord_9", "amount": money.USD(100)},
				"not an object",
			} {
				err := svc.Handle(ctx, event(t, analytics.SubjectPaymentCaptured, "bad"+string(rune('0'+i)), data))
				if !bus.IsPermanent(err) || !errs.Is(errs.Invalid, err) {
					t.Errorf("malformed capture %d: err = %v, want a permanent errs.Invalid", i, err)
				}
			}
			if again, _ := svc.Revenue(ctx, 2*time.Hour); !reflect.DeepEqual(again.Hours, want) {
				t.Errorf("malformed captures counted: %+v", again.Hours)
			}
			if _, err := svc.Revenue(ctx, 0); !errs.Is(errs.BadRequest, err) {
				t.Errorf("Revenue(0) err = %v, want errs.BadRequest", err)
			}

		})
	}
}

// TestRevenueAPI reads the revenue in process, through the HTTP client,
// and on the operator's report.
func TestRevenueAPI(t *testing.T) {
	ctx := context.Background()
	svc, _ := newService(t, testenv.Backends()[0])
	if err := svc.Handle(ctx, event(t, analytics.SubjectPaymentCaptured, "ord_1/captured", captured("ord_1", 1250, now0))); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(analytics.NewHandler(svc))
	t.Cleanup(srv.Close)
	c := analytics.NewClient(httpx.NewClient("analytics", []string{srv.URL}, nil))
	want := analytics.RevenueReport{Window: "24h0m0s", Hours: []analytics.HourlyRevenue{
		{Hour: now0.Truncate(time.Hour), Captured: money.USD(1250), Payments: 1}}}
	for name, api := range map[string]analytics.API{"in-process": svc, "http": c} {
		rep, err := api.Revenue(ctx, 24*time.Hour)
		if err != nil || !reflect.DeepEqual(rep, want) {
			t.Errorf("%s: Revenue = %+v, %v; want %+v", name, rep, err, want)
		}
	}
	if _, err := c.Revenue(ctx, 31*24*time.Hour); !errs.Is(errs.BadRequest, err) {
		t.Errorf("Revenue over HTTP with a window too long: %v, want errs.BadRequest", err)
	}
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := get("/svc/analytics/v1/revenue?window=1h")
	var rep analytics.RevenueReport
	if code != 200 || json.Unmarshal([]byte(body), &rep) != nil || len(rep.Hours) != 1 || rep.Hours[0].Payments != 1 {
		t.Errorf("revenue = %d %s", code, body)
	}
	if code, _ := get("/svc/analytics/v1/revenue?window=forever"); code != http.StatusBadRequest {
		t.Errorf("revenue?window=forever: %d, want 400", code)
	}
	code, body = get("/svc/analytics/v1/report")
	if code != 200 || !strings.Contains(body, "Revenue per hour") || !strings.Contains(body, "$12.50 USD") {
		t.Errorf("report = %d\n%s", code, body)
	}
}
