package storefront

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestGuestCheckout: on the way to checkout the login page offers to check
// out as a guest; the guest gets an account with a password nobody knows,
// is logged in for the visit, keeps their cart and lands on checkout with a
// word on how to claim the account. An address with an account is refused
// with a message next to the field; nothing is created.
func TestGuestCheckout(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	wantStatus(t, b.do("POST", "/cart/add", url.Values{"product_id": {"prd_01"}, "quantity": {"2"}}), http.StatusSeeOther)

	// Only the way to checkout offers it.
	if strings.Contains(b.do("GET", "/login", nil).body, "/checkout/guest") {
		t.Fatal("the plain login page offers guest checkout")
	}
	r := b.do("GET", "/checkout", nil)
	wantStatus(t, r, http.StatusSeeOther)
	page := b.do("GET", r.Header.Get("Location"), nil)
	wantContains(t, page.body, `action="/checkout/guest"`, "Or check out as a guest", `<label for="guest-email">`)

	// Missing name: said next to the field, e-mail kept.
	r = b.do("POST", "/checkout/guest", url.Values{"name": {" "}, "email": {"guest@example.com"}})
	wantStatus(t, r, http.StatusUnprocessableEntity)
	wantContains(t, r.body, `id="guest-name-error"`, `value="guest@example.com"`)

	r = b.do("POST", "/checkout/guest", url.Values{"name": {"Grace Guest"}, "email": {"guest@example.com"}})
	wantStatus(t, r, http.StatusSeeOther)
	if loc := r.Header.Get("Location"); loc != "/checkout" {
		t.Fatalf("guest checkout went to %q", loc)
	}
	r = b.do("GET", "/checkout", nil)
	wantStatus(t, r, http.StatusOK)
	wantContains(t, r.body, "You&#39;re checking out as a guest. Your receipt goes to guest@example.com.", "Desk Lamp")
	if a := e.accounts.user("guest@example.com"); a.Name != "Grace Guest" {
		t.Fatalf("guest account %+v", a)
	}

	// An address that has an account is never logged into.
	other := e.browser()
	other.signUp("ada@example.com", "Ada")
	other.do("POST", "/logout", url.Values{})
	r = other.do("POST", "/checkout/guest", url.Values{"name": {"Mallory"}, "email": {"ada@example.com"}})
	wantStatus(t, r, http.StatusConflict)
	wantContains(t, r.body, `id="guest-email-error"`, "This email already has an account")
	if strings.Contains(other.do("GET", "/account", nil).body, "Ada") {
		t.Fatal("a guest checkout logged into an existing account")
	}
	if a := e.accounts.user("ada@example.com"); a.Name != "Ada" {
		t.Fatalf("existing account changed: %+v", a)
	}
}
