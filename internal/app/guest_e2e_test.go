package app_test

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/platform/testenv"
)

// TestHTMLGuestCheckout: a visitor with a cart checks out as a guest from
// the login page (no password), the order is placed and confirmed under
// the account the shop made for them, and the receipt is mailed; the
// account is theirs to claim by resetting its password, not by logging in
// with one nobody knows.
func TestHTMLGuestCheckout(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end suite skipped in -short mode")
	}
	tp := allInOne(t)
	tp.start(t)
	b := newBrowser(t, tp)
	productID := cardRe.FindStringSubmatch(b.navigate("/").body)[1]
	expectRedirectedTo(t, b.submit(b.navigate("/products/"+productID), "/cart/add", nil), "/cart")

	login := b.navigate("/checkout")
	expectStatus(t, login, 200)
	if !strings.HasPrefix(login.url.Path, "/login") || !login.has("Or check out as a guest") {
		t.Fatalf("checkout as a visitor went to %s without the guest form\n%s", login, excerpt(login.body))
	}
	email := fmt.Sprintf("guest-%d@example.com", time.Now().UnixNano())
	co := b.follow(b.submit(login, "/checkout/guest", map[string]string{"name": "Grace Guest", "email": email}))
	expectStatus(t, co, 200)
	if co.url.Path != "/checkout" || !co.has("checking out as a guest") {
		t.Fatalf("after the guest form: %s\n%s", co, excerpt(co.body))
	}
	placed := b.submit(co, "/checkout", map[string]string{
		"name": "Grace Guest", "line1": "1 Guest Lane", "city": "London", "postal_code": "N1 9GU", "country": "GB",
		"card_number": "4242424242424242", "exp_month": "12", "exp_year": strconv.Itoa(time.Now().Year() + 2), "cvc": "123",
	})
	expectStatus(t, placed, 200)
	if !strings.HasPrefix(placed.url.Path, "/orders/GM-") || !placed.has("Thank you! Your order is confirmed.") {
		t.Fatalf("guest order: %s\n%s", placed, excerpt(placed.body))
	}
	number := strings.TrimPrefix(placed.url.Path, "/orders/")
	if !b.navigate("/orders").has(number) {
		t.Fatal("the guest's order is not in their order list")
	}
	// The receipt goes to the address the guest gave.
	testenv.CheckFor(t, 30*time.Second, func() error {
		files, _ := filepath.Glob(filepath.Join(tp.mailDir, "*.eml"))
		for _, f := range files {
			if raw, err := os.ReadFile(f); err == nil && strings.Contains(string(raw), email) && strings.Contains(string(raw), number) {
				return nil
			}
		}
		return fmt.Errorf("no e-mail to %s naming %s among %d", email, number, len(files))
	})

	// The same address again is refused as a guest: it has an account now.
	other := newBrowser(t, tp)
	expectRedirectedTo(t, other.submit(other.navigate("/products/"+productID), "/cart/add", nil), "/cart")
	again := other.submit(other.navigate("/checkout"), "/checkout/guest", map[string]string{"name": "Mallory", "email": email})
	expectStatus(t, again, http.StatusConflict)
	if !again.has("This email already has an account") || other.navigate("/orders").has("GM-") {
		t.Fatalf("a second guest checkout with %s: %s\n%s", email, again, excerpt(again.body))
	}
}
