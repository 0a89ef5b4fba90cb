package checkout_test

import (
	"context"
	"strings"
	"testing"

	"github.com/globomantics/globomantics/internal/cart"
	"github.com/globomantics/globomantics/internal/checkout"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/httpx"
	"github.com/globomantics/globomantics/internal/platform/money"
	"github.com/globomantics/globomantics/internal/shipping"
)

// TestQuoteIsWhatIsCharged: the quote the checkout page shows, by the
// service or over HTTP, is what the checkout then charges for the cart and
// the address, and the order keeps the address as the form spells it.
func TestQuoteIsWhatIsCharged(t *testing.T) {
	t.Parallel()
	w := newWorld(t, config{})
	ctx := context.Background()
	srv := serve(t, checkout.NewHandler(w.svc))
	client := checkout.NewClient(httpx.NewClient("checkout", []string{srv.URL}, nil))
	c := w.customer("quoted", map[string]int{widget: 2, gadget: 1})
	crt, err := w.carts.GetCart(ctx, checkout.CartOwner(c.UserID))
	must(t, err)

	us := shipping.Address{Name: "Ada Lovelace", Line1: "1 Main St", City: "Springfield", Region: "illinois", PostalCode: "62701", Country: "us"}
	want := checkout.Quote{
		Subtotal: money.USD(2*1250 + 999), Shipping: money.USD(shipping.DomesticBase + 2*shipping.DomesticPerUnit),
		Total: money.USD(2*1250 + 999 + shipping.DomesticBase + 2*shipping.DomesticPerUnit),
	}
	for name, api := range map[string]checkout.API{"service": w.svc, "http": client} {
		for _, a := range []shipping.Address{us, {Country: "US"}} { // the country alone is enough
			q, err := api.QuoteOrder(ctx, checkout.QuoteRequest{Items: crt.Items, Address: a})
			if err != nil {
				t.Fatalf("%s: QuoteOrder(%+v): %v", name, a, err)
			}
			if q.Subtotal != want.Subtotal || q.Shipping != want.Shipping || q.Total != want.Total || len(q.Items) != 2 {
				t.Errorf("%s: QuoteOrder(%+v) = %+v, want %+v", name, a, q, want)
			}
		}
		gb, err := api.QuoteOrder(ctx, checkout.QuoteRequest{Items: crt.Items, Address: shipping.Address{Country: "GB"}})
		if err != nil || gb.Shipping != money.USD(shipping.InternationalBase+2*shipping.InternationalPerUnit) {
			t.Errorf("%s: quote to GB = %+v, %v", name, gb, err)
		}
		bad := map[string]checkout.QuoteRequest{
			"no items":        {Address: shipping.Address{Country: "US"}},
			"zero quantity":   {Items: []cart.Item{{ProductID: widget, Quantity: 0}}, Address: shipping.Address{Country: "US"}},
			"no country":      {Items: crt.Items},
			"unknown country": {Items: crt.Items, Address: shipping.Address{Country: "ZZ"}},
			"control char":    {Items: crt.Items, Address: shipping.Address{Name: "A\x00da", Country: "US"}},
		}
		for what, r := range bad {
			if _, err := api.QuoteOrder(ctx, r); !errs.Is(errs.Invalid, err) {
				t.Errorf("%s: %s: %v, want Invalid", name, what, err)
			}
		}
		_, err = api.QuoteOrder(ctx, checkout.QuoteRequest{Items: []cart.Item{{ProductID: "prd_gone", Name: "Gone", Quantity: 1}}, Address: us})
		if !errs.Is(errs.Conflict, err) || !strings.Contains(errs.Detail(err), "Gone") {
			t.Errorf("%s: a product no longer sold: %v, want Conflict naming it", name, err)
		}
	}

	r := request(goodCard)
	r.ShippingAddress = us
	res, err := w.svc.PlaceOrder(ctx, c, "key-quoted", r)
	if err != nil || res.State != checkout.StateConfirmed {
		t.Fatalf("PlaceOrder = %+v, %v", res, err)
	}
	o := res.Order
	if o.ShippingCost != want.Shipping || o.Total != want.Total || o.Subtotal != want.Subtotal {
		t.Errorf("charged %v + %v = %v, quoted %v + %v = %v", o.Subtotal, o.ShippingCost, o.Total, want.Subtotal, want.Shipping, want.Total)
	}
	if a := o.ShippingAddress; a.Region != "IL" || a.Country != "US" {
		t.Errorf("order address %+v, want region IL in US", a)
	}
	if o.Number == "" {
		t.Errorf("order %s has no number", o.ID)
	}
}

// TestAddressValidation: a checkout to an address the shop cannot ship to
// is refused before anything is touched, naming the field.
func TestAddressValidation(t *testing.T) {
	t.Parallel()
	w := newWorld(t, config{})
	ctx := context.Background()
	c := w.customer("addr", map[string]int{widget: 1})
	for field, a := range map[string]shipping.Address{
		"region":      {Name: "Ada", Line1: "1 Main St", City: "Springfield", PostalCode: "62701", Country: "US"},
		"postal_code": {Name: "Ada", Line1: "24 Sussex Dr", City: "Ottawa", Region: "ON", PostalCode: "12345", Country: "CA"},
		"country":     {Name: "Ada", Line1: "1 Main St", City: "Springfield", PostalCode: "62701", Country: "United States"},
	} {
		r := request(goodCard)
		r.ShippingAddress = a
		_, err := w.svc.PlaceOrder(ctx, c, "key-"+field, r)
		if !errs.Is(errs.Invalid, err) || !strings.Contains(errs.Detail(err), "shipping_address."+field) {
			t.Errorf("%s: %v, want Invalid naming shipping_address.%s", field, err, field)
		}
		if _, err := w.raw.Get(ctx, c.UserID, "key-"+field); !errs.Is(errs.NotFound, err) {
			t.Errorf("%s: a refused request left a saga (%v)", field, err)
		}
	}
	w.checkInvariants()
}
