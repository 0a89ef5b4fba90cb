package storefront

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/globomantics/globomantics/internal/order"
	"github.com/globomantics/globomantics/internal/platform/money"
	"github.com/globomantics/globomantics/internal/shipping"
)

// TestCheckoutShowsTotalBeforePaying: the checkout page quotes shipping and
// the total for the address of the customer's last order (or the default
// country), shows the summary before the Place-order button, with a
// picture per line, and "Update shipping" quotes the address typed, keeping
// everything but the card.
func TestCheckoutShowsTotalBeforePaying(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	b.signUp("ada@example.com", "Ada Lovelace")
	b.do("POST", "/cart/add", url.Values{"product_id": {"prd_01"}, "quantity": {"2"}})

	r := b.do("GET", "/checkout", nil)
	wantStatus(t, r, http.StatusOK)
	wantContains(t, r.body, "Shipping to United States", "$49.00", "$5.00", "$54.00", "Total to pay: <strong>$54.00</strong>",
		`<option value="US" selected>United States</option>`, `<option value="US-IL">Illinois</option>`,
		`<optgroup label="Canada">`, `src="/media/thumbs/prd_01_small.jpg"`, `name="action" value="quote"`)
	if strings.Contains(r.body, "Shipping is added when the order is placed") {
		t.Error("the checkout page still hides shipping")
	}
	summary, place := strings.Index(r.body, "Order summary"), strings.Index(r.body, ">Place order<")
	if summary < 0 || place < 0 || summary > place {
		t.Errorf("the order summary (at %d) must come before Place order (at %d)", summary, place)
	}

	// Update shipping: the page again for the address typed, nothing placed,
	// the card not echoed, the nonce kept.
	nonce := nonceRE.FindStringSubmatch(r.body)[1]
	f := url.Values{"idempotency_key": {nonce}, "action": {"quote"}, "name": {"Ada Lovelace"}, "line1": {"24 Sussex Dr"},
		"city": {"Ottawa"}, "region": {"CA-ON"}, "postal_code": {"k1m 1m4"}, "country": {"CA"}, "card_number": {"4242424242424242"}}
	r = b.do("POST", "/checkout", f)
	wantStatus(t, r, http.StatusOK)
	wantContains(t, r.body, "Shipping to Canada", `<option value="CA" selected>Canada</option>`, `<option value="CA-ON" selected>Ontario</option>`,
		`value="24 Sussex Dr"`, `value="k1m 1m4"`, `name="idempotency_key" value="`+nonce+`"`)
	if strings.Contains(r.body, "4242424242424242") || e.orders.count() != 0 {
		t.Errorf("Update shipping echoed the card or placed an order (%d)", e.orders.count())
	}
	if strings.Contains(r.body, `aria-invalid="true"`) {
		t.Errorf("a good address shows errors:\n%s", r.body)
	}

	// Place order with the country changed but shipping not updated: the
	// order is placed, and its page shows what was charged.
	f.Set("action", "")
	f.Set("exp_month", "12")
	f.Set("exp_year", "2030")
	f.Set("cvc", "123")
	r = b.do("POST", "/checkout", f)
	wantStatus(t, r, http.StatusSeeOther)
	wantContains(t, b.do("GET", r.Header.Get("Location"), nil).body, "Ottawa, Ontario K1M 1M4", "Canada", "$54.00")
	b.do("POST", "/cart/add", url.Values{"product_id": {"prd_01"}, "quantity": {"1"}})
	f.Set("action", "quote")

	// A country the shop does not ship to: said next to the field, no quote.
	f.Set("country", "ZZ")
	r = b.do("POST", "/checkout", f)
	wantStatus(t, r, http.StatusOK)
	wantContains(t, r.body, `id="ship-country-error">We do not ship to this country`, "to see the shipping cost")
}

// TestCheckoutAddressErrorsNextToFields: a US address without a state or
// with a bad ZIP code is refused before anything is placed, each error next
// to its field, the form keeping what was typed but the card.
func TestCheckoutAddressErrorsNextToFields(t *testing.T) {
	e := newEnv(t)
	b, nonce := checkoutReady(t, e)
	f := checkoutForm(nonce, "4242424242424242")
	f.Set("country", "US")
	f.Set("postal_code", "1234")
	f.Set("city", "Springfield")
	r := b.do("POST", "/checkout", f)
	wantStatus(t, r, http.StatusUnprocessableEntity)
	wantContains(t, r.body, `id="ship-region-error">Choose a state`, `id="ship-postal-error">Enter a postal code of United States`,
		`value="Springfield"`, `value="1234"`, `<option value="US" selected>`, "Shipping to United States")
	if strings.Contains(r.body, `value="4242`) {
		t.Error("card number echoed back")
	}
	if n := len(e.checkout.keysCalled()); n != 0 || e.orders.count() != 0 {
		t.Fatalf("a bad address reached the checkout (%d calls, %d orders)", n, e.orders.count())
	}
	// Corrected, the order is placed with the region and the ZIP code as
	// the shop spells them, and shown with words the customer knows.
	f.Set("region", "US-IL")
	f.Set("postal_code", "62701 1234")
	r = b.do("POST", "/checkout", f)
	wantStatus(t, r, http.StatusSeeOther)
	o, err := e.orders.GetOrder(t.Context(), "GM-0000-0001")
	if err != nil || o.ShippingAddress.Region != "IL" || o.ShippingAddress.PostalCode != "62701-1234" {
		t.Fatalf("order %+v, %v", o.ShippingAddress, err)
	}
	r = b.do("GET", r.Header.Get("Location"), nil)
	wantContains(t, r.body, "Springfield, Illinois 62701-1234", "United States")

	// The next checkout starts from this address, quoted.
	b.do("POST", "/cart/add", url.Values{"product_id": {"prd_01"}, "quantity": {"1"}})
	r = b.do("GET", "/checkout", nil)
	wantContains(t, r.body, `value="Springfield"`, `<option value="US-IL" selected>Illinois</option>`, "Shipping to United States")
}

func TestAPICheckoutQuote(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	body := CheckoutQuoteRequest{Address: shipping.Address{Country: "GB"}}
	wantProblem(t, b.do("POST", "/api/v1/checkout/quote", body), http.StatusUnauthorized)
	b.signUp("ada@example.com", "Ada")
	wantProblem(t, b.do("POST", "/api/v1/checkout/quote", body), http.StatusUnprocessableEntity) // empty cart
	b.do("POST", "/api/v1/cart/items", map[string]any{"product_id": "prd_01", "quantity": 2})
	r := b.do("POST", "/api/v1/checkout/quote", body)
	wantStatus(t, r, http.StatusOK)
	var q CheckoutQuote
	r.json(t, &q)
	if q.Subtotal != money.USD(4900) || q.Shipping != money.USD(500) || q.Total != money.USD(5400) || len(q.Items) != 1 {
		t.Fatalf("quote %+v", q)
	}
	wantProblem(t, b.do("POST", "/api/v1/checkout/quote", CheckoutQuoteRequest{Address: shipping.Address{Country: "ZZ"}}), http.StatusUnprocessableEntity)
	wantProblem(t, b.do("POST", "/api/v1/checkout/quote", `{"address":{"country":"GB"},"coupon":"FREE"}`), http.StatusBadRequest)
}

// TestOrderByNumber: the API finds the customer's order by its number too,
// and shows the number; another customer's number is a 404.
func TestOrderByNumber(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	b.signUp("ada@example.com", "Ada")
	e.orders.put(order.Order{ID: "ord_077", Number: "GM-4K7Q-2XPN", UserID: "acct_01", Status: order.StatusConfirmed, CreatedAt: seedTime,
		Payment: order.PaymentInfo{Status: "captured"}, Shipment: order.ShipmentInfo{Status: "created"}})
	for _, ref := range []string{"GM-4K7Q-2XPN", "gm-4k7q-2xpn", "ord_077"} {
		r := b.do("GET", "/api/v1/orders/"+ref, nil)
		wantStatus(t, r, http.StatusOK)
		wantContains(t, r.body, `"number":"GM-4K7Q-2XPN"`)
	}
	other := e.browser()
	other.signUp("bob@example.com", "Bob")
	wantProblem(t, other.do("GET", "/api/v1/orders/GM-4K7Q-2XPN", nil), http.StatusNotFound)
	wantContains(t, b.do("GET", "/orders", nil).body, `href="/orders/GM-4K7Q-2XPN"`, "Confirmed — preparing to ship")
}
