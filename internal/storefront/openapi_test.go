package storefront

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/danielgtaylor/huma/v2"

	"github.com/globomantics/globomantics/internal/platform/money"
	"github.com/globomantics/globomantics/internal/storefront/openapitest"
)

func TestOpenAPIDocument(t *testing.T) {
	doc := OpenAPI()
	if doc.OpenAPI != "3.1.0" {
		t.Fatalf("openapi = %q", doc.OpenAPI)
	}
	ops := (&Server{}).apiOps()
	ids := map[string]bool{}
	for _, o := range ops {
		if ids[o.id] {
			t.Errorf("operationId %s is used twice", o.id)
		}
		ids[o.id] = true
		item := doc.Paths[o.path]
		if item == nil {
			t.Errorf("%s: not in the document", o.pattern())
			continue
		}
		if hop := map[string]*huma.Operation{"GET": item.Get, "POST": item.Post, "PUT": item.Put, "PATCH": item.Patch, "DELETE": item.Delete}[o.method]; hop == nil {
			t.Errorf("%s: method not in the document", o.pattern())
		}
	}
	problemRef := "#/components/schemas/" + problemSchemaName
	for path, item := range doc.Paths {
		for _, o := range []*huma.Operation{item.Get, item.Post, item.Put, item.Patch, item.Delete} {
			if o == nil {
				continue
			}
			ok := false
			for st, r := range o.Responses {
				code, _ := strconv.Atoi(st)
				switch {
				case code >= 200 && code < 300:
					ok = true
				case code >= 400:
					mt := r.Content["application/problem+json"]
					if mt == nil || mt.Schema == nil || mt.Schema.Ref != problemRef || len(r.Content) != 1 {
						t.Errorf("%s %s: error %s is not problem+json %s", o.Method, path, st, problemRef)
					}
				}
			}
			if !ok {
				t.Errorf("%s %s: no success response", o.Method, path)
			}
			if o.Summary == "" || o.OperationID == "" || len(o.Tags) != 1 {
				t.Errorf("%s %s: summary %q, operationId %q, tags %v", o.Method, path, o.Summary, o.OperationID, o.Tags)
			}
		}
	}
	// The problem schema is RFC 9457's, as errs.Problem encodes it.
	ps := doc.Components.Schemas.Map()[problemSchemaName]
	if ps == nil {
		t.Fatal("no ProblemDetails schema")
	}
	for _, f := range []string{"type", "title", "status", "detail", "instance"} {
		if ps.Properties[f] == nil {
			t.Errorf("ProblemDetails has no %s", f)
		}
	}
	// Types of the handlers are reflected, with their JSON names.
	order := doc.Components.Schemas.Map()["Order"]
	if order == nil || order.Properties["shipping_address"] == nil || order.Properties["user_id"] != nil {
		t.Errorf("Order schema = %+v", order)
	}
	// A nil pointer to a struct is null on the wire, and so in the document.
	cv := doc.Components.Schemas.Map()["CheckoutView"]
	if e := cv.Properties["error"]; e == nil || len(e.AnyOf) != 2 || e.AnyOf[1].Type != "null" {
		t.Errorf("CheckoutView.error = %+v, want a reference or null", e)
	}
	// The document compiles as a contract: every schema is valid JSON Schema.
	j, err := OpenAPIJSON(doc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := openapitest.New(j); err != nil {
		t.Fatal(err)
	}
	j30, err := OpenAPI30JSON(doc)
	if err != nil {
		t.Fatal(err)
	}
	var d30 map[string]any
	if err := json.Unmarshal(j30, &d30); err != nil || d30["openapi"] != "3.0.3" {
		t.Fatalf("3.0 document: openapi %v, %v", d30["openapi"], err)
	}
	if strings.Contains(string(j30), `"null"`) {
		t.Errorf("the 3.0 document names the null type, which 3.0 does not have")
	}
}

func TestSchemaNames(t *testing.T) {
	for _, tc := range []struct{ pkg, name, want string }{
		{"github.com/globomantics/globomantics/internal/storefront", "Order", "Order"},
		{"github.com/globomantics/globomantics/internal/order", "Item", "OrderItem"},
		{"github.com/globomantics/globomantics/internal/cart", "Cart", "Cart"},
		{"github.com/globomantics/globomantics/internal/catalog", "Product", "Product"},
		{"github.com/globomantics/globomantics/internal/partner", "Product", "PartnerProduct"},
		{"github.com/globomantics/globomantics/internal/storefront", "List[github.com/globomantics/globomantics/internal/partner.Delivery]", "ListPartnerDelivery"},
		{"github.com/globomantics/globomantics/internal/storefront", "List[github.com/globomantics/globomantics/internal/catalog.Product]", "ListProduct"},
		{"github.com/globomantics/globomantics/internal/storefront", "credentials", "Credentials"},
	} {
		if got := qualifiedName(tc.pkg, tc.name); got != tc.want {
			t.Errorf("qualifiedName(%s, %s) = %s, want %s", tc.pkg, tc.name, got, tc.want)
		}
	}
}

func TestOpenAPIServed(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	r := b.do("GET", "/api/v1/openapi.json", nil)
	wantStatus(t, r, http.StatusOK)
	want, err := OpenAPIJSON(OpenAPI())
	if err != nil {
		t.Fatal(err)
	}
	if r.body != string(want) {
		t.Errorf("served document differs from OpenAPI()")
	}
	etag := r.Header.Get("ETag")
	if ct := r.Header.Get("Content-Type"); ct != "application/json" || etag == "" || !strings.HasPrefix(r.Header.Get("Cache-Control"), "public") {
		t.Errorf("headers: Content-Type %q, ETag %q, Cache-Control %q", ct, etag, r.Header.Get("Cache-Control"))
	}
	wantStatus(t, b.do("GET", "/api/v1/openapi.json", nil, "If-None-Match", etag), http.StatusNotModified)

	r = b.do("GET", "/api/v1/openapi-3.0.json", nil)
	wantStatus(t, r, http.StatusOK)
	wantContains(t, r.body, `"openapi": "3.0.3"`)

	r = b.do("GET", "/api/v1/docs", nil)
	wantStatus(t, r, http.StatusOK)
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("reference Content-Type %q", ct)
	}
	if strings.Contains(r.body, "<script") {
		t.Errorf("the reference page has a script")
	}
	wantContains(t, r.body, "<h1>Globomantics storefront API", `id="schema-ProblemDetails"`, `<code>application/problem&#43;json</code> <a href="#schema-ProblemDetails">`,
		`<a href="#schema-Order">Order</a>`, "Idempotency-Key", "partner key (Authorization: Bearer &lt;key&gt;)")
	for _, o := range (&Server{}).apiOps() {
		wantContains(t, r.body, "<code>"+o.method+" "+o.path+"</code>", "operationId <code>"+o.id+"</code>")
	}
	wantStatus(t, b.do("GET", "/api/v1/docs", nil, "If-None-Match", r.Header.Get("ETag")), http.StatusNotModified)
}

// TestAPIContract drives every operation of the API, answers good and bad,
// through a client that checks each answer against the served document:
// status documented, body valid against its schema. It fails, too, when an
// operation of the document is not exercised, so that a new route comes
// with its contract test.
func TestAPIContract(t *testing.T) {
	e, _, ps := partnerEnv(t)
	c, err := openapitest.Fetch(t.Context(), nil, e.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	check := func(b *browser) *browser {
		b.hc.Transport = &openapitest.Transport{TB: t, Contract: c, Observe: func(pattern string, _ int) { seen[pattern] = true }}
		return b
	}
	b := check(e.browser())

	// Catalogue.
	wantStatus(t, b.do("GET", "/api/v1/categories", nil), http.StatusOK)
	wantStatus(t, b.do("GET", "/api/v1/products?page_size=2", nil), http.StatusOK)
	wantStatus(t, b.do("GET", "/api/v1/products?category=cat_tools", nil), http.StatusOK)
	wantProblem(t, b.do("GET", "/api/v1/products?page_size=0", nil), http.StatusBadRequest)
	r := b.do("GET", "/api/v1/products/prd_01", nil)
	wantStatus(t, r, http.StatusOK)
	wantStatus(t, b.do("GET", "/api/v1/products/prd_01", nil, "If-None-Match", r.Header.Get("ETag")), http.StatusNotModified)
	wantProblem(t, b.do("GET", "/api/v1/products/nope", nil), http.StatusNotFound)
	wantStatus(t, b.do("GET", "/api/v1/search?q=lamp", nil), http.StatusOK)
	wantProblem(t, b.do("GET", "/api/v1/search?q=", nil), http.StatusBadRequest)

	// Account.
	wantProblem(t, b.do("GET", "/api/v1/me", nil), http.StatusUnauthorized)
	wantStatus(t, b.do("POST", "/api/v1/cart/items", map[string]any{"product_id": "prd_01", "quantity": 1}), http.StatusOK)
	wantStatus(t, b.do("GET", "/api/v1/cart", nil), http.StatusOK)
	reg := map[string]string{"email": "ada@example.com", "password": "correct horse", "name": "Ada"}
	wantStatus(t, b.do("POST", "/api/v1/accounts", reg), http.StatusCreated)
	wantProblem(t, b.do("POST", "/api/v1/accounts", reg), http.StatusConflict)
	wantProblem(t, b.do("POST", "/api/v1/accounts", map[string]string{"email": "ada@example.com", "admin": "yes"}), http.StatusBadRequest)
	wantProblem(t, b.do("POST", "/api/v1/sessions", map[string]string{"email": "ada@example.com", "password": "wrong"}), http.StatusUnauthorized)
	wantStatus(t, b.do("POST", "/api/v1/sessions", map[string]string{"email": "ada@example.com", "password": "correct horse"}), http.StatusOK)
	wantStatus(t, b.do("GET", "/api/v1/me", nil), http.StatusOK)
	wantStatus(t, b.do("PATCH", "/api/v1/me", map[string]string{"name": "Ada L."}), http.StatusOK)
	wantProblem(t, b.do("PATCH", "/api/v1/me", map[string]string{"name": ""}), http.StatusUnprocessableEntity)

	// Cart.
	wantStatus(t, b.do("PUT", "/api/v1/cart/items/prd_04", map[string]any{"quantity": 2}), http.StatusOK)
	wantProblem(t, b.do("PUT", "/api/v1/cart/items/prd_04", map[string]any{}), http.StatusUnprocessableEntity)
	wantProblem(t, b.do("POST", "/api/v1/cart/items", map[string]any{"product_id": "nope", "quantity": 1}), http.StatusNotFound)
	wantStatus(t, b.do("DELETE", "/api/v1/cart/items/prd_04", nil), http.StatusOK)

	// Checkout and orders.
	body := map[string]any{
		"shipping_address": map[string]string{"name": "Ada Lovelace", "line1": "1 Analytical Way", "city": "London", "postal_code": "N1 9GU", "country": "GB"},
		"payment":          map[string]any{"card_number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"},
	}
	wantStatus(t, b.do("POST", "/api/v1/checkout/quote", map[string]any{"address": body["shipping_address"]}), http.StatusOK)
	wantProblem(t, b.do("POST", "/api/v1/checkout", body), http.StatusBadRequest)
	r = b.do("POST", "/api/v1/checkout", body, "Idempotency-Key", "k1")
	wantStatus(t, r, http.StatusCreated)
	var o Order
	r.json(t, &o)
	wantStatus(t, b.do("GET", "/api/v1/orders", nil), http.StatusOK)
	wantStatus(t, b.do("GET", "/api/v1/orders/"+o.ID, nil), http.StatusOK)
	wantProblem(t, b.do("GET", "/api/v1/orders/nope", nil), http.StatusNotFound)
	b.do("POST", "/api/v1/cart/items", map[string]any{"product_id": "prd_03", "quantity": 1})
	declined := map[string]any{"shipping_address": body["shipping_address"], "payment": map[string]any{"card_number": "4000000000000002", "exp_month": 12, "exp_year": 2030, "cvc": "123"}}
	wantProblem(t, b.do("POST", "/api/v1/checkout", declined, "Idempotency-Key", "k2"), http.StatusPaymentRequired)
	e.checkout.pending = true
	r = b.do("POST", "/api/v1/checkout", body, "Idempotency-Key", "k3")
	wantStatus(t, r, http.StatusAccepted)
	wantStatus(t, b.do("GET", r.Header.Get("Location"), nil), http.StatusOK)
	wantProblem(t, b.do("GET", "/api/v1/checkouts/nope", nil), http.StatusNotFound)
	// Passwords.
	wantProblem(t, b.do("PUT", "/api/v1/me/password", map[string]string{"current_password": "wrong", "new_password": "battery staple horse"}), http.StatusForbidden)
	wantStatus(t, b.do("PUT", "/api/v1/me/password", map[string]string{"current_password": "correct horse", "new_password": "battery staple horse"}), http.StatusNoContent)
	wantStatus(t, b.do("POST", "/api/v1/password-resets", map[string]string{"email": "ada@example.com"}), http.StatusAccepted)
	if r := b.do("POST", "/api/v1/password-resets/confirm", map[string]string{"token": "not-a-token", "new_password": "battery staple horse"}); r.StatusCode < 400 {
		t.Errorf("reset with a made-up token: %d", r.StatusCode)
	}
	wantStatus(t, b.do("DELETE", "/api/v1/sessions", nil), http.StatusNoContent)
	wantProblem(t, b.do("GET", "/api/v1/orders", nil), http.StatusUnauthorized)

	// Partner API.
	auth := []string{"Authorization", "Bearer " + ps[0].Key}
	wantProblem(t, b.do("GET", "/api/v1/partner/products", nil), http.StatusUnauthorized)
	r = b.do("POST", "/api/v1/partner/products", map[string]any{"name": "Brass lamp", "description": "Warm light.", "category": "home", "price": money.USD(4500), "stock": 5}, auth...)
	wantStatus(t, r, http.StatusCreated)
	var p struct{ ID string }
	r.json(t, &p)
	wantProblem(t, b.do("POST", "/api/v1/partner/products", map[string]any{"name": "", "description": "", "category": "home", "price": money.USD(1), "stock": 1}, auth...), http.StatusUnprocessableEntity)
	wantStatus(t, b.raw("PUT", "/api/v1/partner/products/"+p.ID+"/image", "image/png", pngBytes(t), auth...), http.StatusOK)
	wantProblem(t, b.raw("PUT", "/api/v1/partner/products/"+p.ID+"/image", "image/png", pngBytes(t), auth...), http.StatusConflict)
	wantStatus(t, b.do("GET", "/api/v1/partner/products", nil, auth...), http.StatusOK)
	wantStatus(t, b.do("GET", "/api/v1/partner/sales?limit=10", nil, auth...), http.StatusOK)
	wantProblem(t, b.do("GET", "/api/v1/partner/sales?limit=x", nil, auth...), http.StatusBadRequest)
	wantStatus(t, b.do("PUT", "/api/v1/partner/webhook", map[string]string{"url": "https://acme.example/hooks"}, auth...), http.StatusOK)
	wantStatus(t, b.do("GET", "/api/v1/partner/webhook", nil, auth...), http.StatusOK)
	wantStatus(t, b.do("GET", "/api/v1/partner/webhooks/deliveries", nil, auth...), http.StatusOK)

	// The document and its reference.
	for _, path := range []string{"/api/v1/openapi.json", "/api/v1/openapi-3.0.json", "/api/v1/docs"} {
		wantStatus(t, b.do("GET", path, nil), http.StatusOK)
	}

	for _, pattern := range c.Operations() {
		if !seen[pattern] {
			t.Errorf("%s is not exercised by the contract test", pattern)
		}
	}
	// An undocumented path is a breach of the contract.
	ft := &fakeTB{TB: t}
	nb := e.browser()
	nb.hc.Transport = &openapitest.Transport{TB: ft, Contract: c}
	nb.do("GET", "/api/v1/nowhere", nil)
	if !slices.ContainsFunc(ft.errs, func(s string) bool { return strings.Contains(s, "no such operation") }) {
		t.Errorf("an undocumented path was not reported: %q", ft.errs)
	}
}

// fakeTB records errors instead of failing.
type fakeTB struct {
	testing.TB
	errs []string
}

func (f *fakeTB) Errorf(format string, args ...any) {
	f.errs = append(f.errs, fmt.Sprintf(format, args...))
}
