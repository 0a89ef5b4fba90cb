package storefront

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/globomantics/globomantics/internal/cart"
)

// TestCartPageStock: the cart never takes more than is in stock and says
// so, naming the product; a sold-out product is refused with a message; a
// line the stock stopped covering after it was added is flagged on the cart
// page, and checkout is not offered until the customer changes it.
func TestCartPageStock(t *testing.T) {
	e := newEnv(t)
	b := e.browser()

	// The product page's quantity field goes up to the stock.
	wantContains(t, b.do("GET", "/products/prd_03", nil).body, `min="1" max="3"`)

	// More than is in stock: capped, with a warning naming the product.
	r := b.do("POST", "/cart/add", url.Values{"product_id": {"prd_03"}, "quantity": {"5"}})
	wantStatus(t, r, http.StatusSeeOther)
	r = b.do("GET", "/cart", nil)
	wantContains(t, r.body,
		`class="flash flash-warning" role="alert">Only 3 of Claw Hammer are in stock; your cart has 3.</p>`,
		`value="3" min="0" max="3"`,
		`<img src="/media/thumbs/prd_03_small.jpg" alt="" width="64" height="48" loading="lazy"><span>Claw Hammer</span>`,
		`href="/checkout"`)
	if strings.Contains(r.body, "stock-warning") || strings.Contains(r.body, "stock-alert") {
		t.Error("a cart within the stock shows a stock warning")
	}

	// A sold-out product is refused on its page, and the cart is unchanged.
	r = b.do("POST", "/cart/add", url.Values{"product_id": {"prd_02"}, "quantity": {"1"}})
	wantStatus(t, r, http.StatusConflict)
	wantContains(t, r.body, "<h1>Floor Lamp</h1>", `class="error" role="alert">Floor Lamp is sold out.</p>`)
	owner := "anon:" + b.cookieValue(CartCookie)
	if items := e.carts.get(owner); len(items) != 1 || items[0].Quantity != 3 {
		t.Fatalf("cart after a sold-out add: %+v", items)
	}

	// The stock falls after the line went in the cart: the line is flagged
	// and checkout held back.
	e.catalog.setStock("prd_03", 1)
	r = b.do("GET", "/cart", nil)
	wantContains(t, r.body,
		`<tr class="short">`,
		`<p class="stock-warning" id="stock-0">Only 1 of Claw Hammer left in stock and your cart has 3; lower the quantity to check out.</p>`,
		`aria-describedby="stock-0"`,
		`class="stock-alert" role="alert">`,
		`<span class="button disabled" aria-disabled="true">Checkout</span>`)
	if strings.Contains(r.body, `href="/checkout"`) {
		t.Error("checkout offered for a cart the stock does not cover")
	}
	if strings.Contains(r.body, "prd_03 ") || strings.Contains(r.body, ">prd_03<") {
		t.Error("the cart page shows a product id")
	}

	// Updating caps at the new stock, says so, and checkout is back.
	r = b.do("POST", "/cart/items/prd_03", url.Values{"quantity": {"3"}})
	wantStatus(t, r, http.StatusSeeOther)
	r = b.do("GET", "/cart", nil)
	wantContains(t, r.body, "Only 1 of Claw Hammer is in stock; your cart has 1.", `value="1" min="0" max="1"`, `href="/checkout"`)
	if strings.Contains(r.body, "stock-warning") {
		t.Error("the capped line is still flagged")
	}

	// Sold out since: flagged; asking for more is refused on the cart page;
	// removing works.
	e.catalog.setStock("prd_03", 0)
	wantContains(t, b.do("GET", "/cart", nil).body, "Claw Hammer is sold out; remove it from your cart to check out.")
	r = b.do("POST", "/cart/items/prd_03", url.Values{"quantity": {"2"}})
	wantStatus(t, r, http.StatusConflict)
	wantContains(t, r.body, `class="error" role="alert">Claw Hammer is sold out.</p>`, "Your cart")
	if items := e.carts.get(owner); len(items) != 1 || items[0].Quantity != 1 {
		t.Fatalf("cart after a refused update: %+v", items)
	}
	wantStatus(t, b.do("POST", "/cart/items/prd_03", url.Values{"quantity": {"0"}}), http.StatusSeeOther)
	wantContains(t, b.do("GET", "/cart", nil).body, "Your cart is empty")
}

// TestCartPageCatalogDown: when the catalog does not answer, the cart page
// still shows the lines (without pictures or stock checks: the checkout
// still checks the stock) rather than failing.
func TestCartPageCatalogDown(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	wantStatus(t, b.do("POST", "/cart/add", url.Values{"product_id": {"prd_01"}, "quantity": {"2"}}), http.StatusSeeOther)
	e.catalog.mu.Lock()
	e.catalog.down = true
	e.catalog.mu.Unlock()
	r := b.do("GET", "/cart", nil)
	wantStatus(t, r, http.StatusOK)
	wantContains(t, r.body, "<span>Desk Lamp</span>", `<span class="noimg"></span>`, `value="2" min="0" max="99"`, `href="/checkout"`)
}

// TestAPICartStock: the API says when it capped a quantity (a notice in the
// cart), refuses a sold-out product with a 409 problem naming it, and lists
// the lines the stock stopped covering when the cart is read.
func TestAPICartStock(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	var c cart.Cart
	r := b.do("POST", "/api/v1/cart/items", map[string]any{"product_id": "prd_03", "quantity": 5})
	wantStatus(t, r, http.StatusOK)
	r.json(t, &c)
	want := cart.Notice{Code: cart.NoticeCapped, ProductID: "prd_03", Name: "Claw Hammer", Requested: 5, Available: 3,
		Message: "Only 3 of Claw Hammer are in stock; your cart has 3."}
	if len(c.Items) != 1 || c.Items[0].Quantity != 3 || len(c.Notices) != 1 || c.Notices[0] != want {
		t.Fatalf("capped add = %+v, want 3 hammers and notice %+v", c, want)
	}
	wantContains(t, r.body, `"notices":[{"code":"quantity_capped","product_id":"prd_03","name":"Claw Hammer","requested":5,"available":3,`)

	// Within the stock: no notices at all in the answer.
	r = b.do("PUT", "/api/v1/cart/items/prd_03", map[string]any{"quantity": 2})
	wantStatus(t, r, http.StatusOK)
	if strings.Contains(r.body, "notices") {
		t.Errorf("an answer within the stock has notices: %s", r.body)
	}

	p := wantProblem(t, b.do("POST", "/api/v1/cart/items", map[string]any{"product_id": "prd_02", "quantity": 1}), http.StatusConflict)
	if p.Detail != "Floor Lamp is sold out." {
		t.Errorf("sold-out problem detail %q", p.Detail)
	}
	wantProblem(t, b.do("PUT", "/api/v1/cart/items/prd_02", map[string]any{"quantity": 1}), http.StatusConflict)

	// The stock falls: reading the cart tells.
	e.catalog.setStock("prd_03", 1)
	r = b.do("GET", "/api/v1/cart", nil)
	wantStatus(t, r, http.StatusOK)
	c = cart.Cart{}
	r.json(t, &c)
	if len(c.Notices) != 1 || c.Notices[0].Code != cart.NoticeShort || c.Notices[0].Requested != 2 || c.Notices[0].Available != 1 ||
		c.Items[0].Quantity != 2 {
		t.Fatalf("cart after the stock fell = %+v", c)
	}
}
