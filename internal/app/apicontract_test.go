package app_test

import (
	"net/http"
	"testing"

	"github.com/globomantics/globomantics/internal/storefront/openapitest"
	"github.com/globomantics/globomantics/pkg/shopclient"
)

// contractTransport is the transport of the end-to-end suites' clients
// (newClient): every answer under /api/ is checked against the OpenAPI
// document the storefront serves at /api/v1/openapi.json, fetched once per
// client from the first storefront it asks. A call of an undocumented
// operation, an undocumented status, or a body that does not match the
// operation's schema fails the test, in every topology. The transport
// under it is Go's default, which asks for gzip and decompresses, so the
// bodies checked are the JSON the client reads.
func contractTransport(t *testing.T) http.RoundTripper {
	return &openapitest.Transport{TB: t}
}

// typedClientJourney drives the shop through the generated client's own
// methods (pkg/shopclient), as a partner's Go program would, with c's
// cookies (a logged-in customer) and contract-checking transport: the
// catalogue, a product and a missing one (problem+json), the customer's
// account and orders, and one of them.
func typedClientJourney(t *testing.T, c *client, productID, orderID string) {
	t.Helper()
	sc, err := shopclient.NewClientWithResponses(c.base(), shopclient.WithHTTPClient(c.hc))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	cats, err := sc.ListCategoriesWithResponse(ctx)
	if err != nil || cats.JSON200 == nil || len(cats.JSON200.Items) == 0 {
		t.Fatalf("typed client: categories: %v %+v", err, cats)
	}
	p, err := sc.GetProductWithResponse(ctx, productID)
	if err != nil || p.JSON200 == nil || p.JSON200.ID != productID || p.JSON200.Price.Amount <= 0 {
		t.Fatalf("typed client: product %s: %v %+v", productID, err, p)
	}
	nf, err := sc.GetProductWithResponse(ctx, "nope")
	if err != nil || nf.ApplicationProblemJSON404 == nil || nf.ApplicationProblemJSON404.Status != http.StatusNotFound {
		t.Fatalf("typed client: missing product: %v %d %s", err, nf.StatusCode(), nf.Body)
	}
	me, err := sc.GetMeWithResponse(ctx)
	if err != nil || me.JSON200 == nil || me.JSON200.ID == "" {
		t.Fatalf("typed client: me: %v %d %s", err, me.StatusCode(), me.Body)
	}
	orders, err := sc.ListOrdersWithResponse(ctx, &shopclient.ListOrdersParams{})
	if err != nil || orders.JSON200 == nil || len(orders.JSON200.Items) == 0 {
		t.Fatalf("typed client: orders: %v %+v", err, orders)
	}
	o, err := sc.GetOrderWithResponse(ctx, orderID)
	if err != nil || o.JSON200 == nil || o.JSON200.ID != orderID || len(o.JSON200.Items) == 0 {
		t.Fatalf("typed client: order %s: %v %d %s", orderID, err, o.StatusCode(), o.Body)
	}
}
