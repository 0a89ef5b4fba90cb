package partner_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/globomantics/globomantics/internal/partner"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/httpx"
	"github.com/globomantics/globomantics/internal/platform/money"
)

// TestAPI is the conformance suite of partner.API, run against the service
// in process and against the HTTP client of its internal API: the same
// answers, and the same error kinds.
func TestAPI(t *testing.T) {
	for _, mode := range []string{"in process", "over HTTP"} {
		t.Run(mode, func(t *testing.T) {
			e := newEnv(t)
			var api partner.API = e.svc
			if mode == "over HTTP" {
				srv := httptest.NewServer(partner.NewHandler(e.svc))
				t.Cleanup(srv.Close)
				api = partner.NewClient(httpx.NewClient("partner", []string{srv.URL}, srv.Client()))
			}
			apiSuite(t, e, api)
		})
	}
}

func apiSuite(t *testing.T, e *env, api partner.API) {
	ctx := context.Background()
	c, err := api.Create(ctx, "Acme", "https://acme.example/hooks")
	if err != nil || c.Key == "" || c.WebhookSecret == "" || c.Partner.WebhookURL != "https://acme.example/hooks" {
		t.Fatalf("Create = %+v, %v", c, err)
	}
	if _, err := api.Create(ctx, "", ""); !errs.Is(errs.Invalid, err) {
		t.Errorf("Create without a name = %v, want Invalid", err)
	}
	if ps, err := api.List(ctx); err != nil || len(ps) != 1 || ps[0].ID != c.Partner.ID {
		t.Errorf("List = %+v, %v", ps, err)
	}
	if p, err := api.Authenticate(ctx, c.Key); err != nil || p.ID != c.Partner.ID {
		t.Fatalf("Authenticate = %+v, %v", p, err)
	}
	if _, err := api.Authenticate(ctx, "gpk_wrong"); !errs.Is(errs.Unauthorized, err) {
		t.Errorf("Authenticate(wrong) = %v, want Unauthorized", err)
	}
	pid := c.Partner.ID
	p, err := api.CreateProduct(ctx, pid, partner.NewProduct{Name: "Lamp", Category: "home", Price: money.USD(700), Stock: 2})
	if err != nil || p.Status != partner.ProductAwaitingImage {
		t.Fatalf("CreateProduct = %+v, %v", p, err)
	}
	if _, err := api.CreateProduct(ctx, pid, partner.NewProduct{Name: "Lamp", Category: "nope", Price: money.USD(700)}); !errs.Is(errs.Invalid, err) {
		t.Errorf("CreateProduct(unknown category) = %v, want Invalid", err)
	}
	if _, err := api.SetImage(ctx, "ptn_other", p.ID, png); !errs.Is(errs.NotFound, err) {
		t.Errorf("SetImage by another partner = %v, want NotFound", err)
	}
	p, err = api.SetImage(ctx, pid, p.ID, png)
	if err != nil || p.Status != partner.ProductListed || p.ProductID == "" {
		t.Fatalf("SetImage = %+v, %v", p, err)
	}
	if string(e.cat.items[p.ProductID].Image) != string(png) {
		t.Errorf("the catalog got another image")
	}
	if _, err := api.SetImage(ctx, pid, p.ID, png); !errs.Is(errs.Conflict, err) {
		t.Errorf("SetImage again = %v, want Conflict", err)
	}
	if ps, err := api.Products(ctx, pid); err != nil || len(ps) != 1 || ps[0].Stock != 2 {
		t.Errorf("Products = %+v, %v", ps, err)
	}
	if _, err := e.svc.Apply(ctx, placed(t, "ord_1", map[string]int{p.ProductID: 1})); err != nil {
		t.Fatal(err)
	}
	rep, err := api.Sales(ctx, pid, 10)
	if err != nil || rep.Units != 1 || len(rep.Sales) != 1 {
		t.Errorf("Sales = %+v, %v", rep, err)
	}
	if _, err := api.Sales(ctx, pid, -1); !errs.Is(errs.BadRequest, err) {
		t.Errorf("Sales(limit -1) = %v, want BadRequest", err)
	}
	ds, err := api.Deliveries(ctx, pid, 0)
	if err != nil || len(ds) != 1 || ds[0].EventType != partner.EventItemSold {
		t.Fatalf("Deliveries = %+v, %v", ds, err)
	}
	d, err := api.Dispatch(ctx, ds[0].ID)
	if err != nil || d.URL != "https://acme.example/hooks" || d.Secret != c.WebhookSecret || string(d.Delivery.Payload) != string(ds[0].Payload) {
		t.Fatalf("Dispatch = %+v, %v", d, err)
	}
	got, err := api.RecordAttempt(ctx, ds[0].ID, partner.Attempt{StatusCode: http.StatusOK})
	if err != nil || got.Status != partner.StatusDelivered {
		t.Fatalf("RecordAttempt = %+v, %v", got, err)
	}
	if _, err := api.RecordAttempt(ctx, "whd_nope", partner.Attempt{StatusCode: 200}); !errs.Is(errs.NotFound, err) {
		t.Errorf("RecordAttempt(unknown) = %v, want NotFound", err)
	}
	wh, err := api.SetWebhook(ctx, pid, "https://acme.example/v2")
	if err != nil || !strings.HasPrefix(wh.Secret, partner.SecretPrefix) || wh.Secret == c.WebhookSecret {
		t.Fatalf("SetWebhook = %+v, %v", wh, err)
	}
	if w, err := api.Webhook(ctx, pid); err != nil || w.URL != "https://acme.example/v2" || w.Secret != "" {
		t.Errorf("Webhook = %+v, %v", w, err)
	}
	if _, err := api.Webhook(ctx, "ptn_nope"); !errs.Is(errs.NotFound, err) {
		t.Errorf("Webhook(unknown) = %v, want NotFound", err)
	}
}
