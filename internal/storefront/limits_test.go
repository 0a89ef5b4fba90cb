package storefront

import (
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/platform/ratelimit"
)

// behindProxy trusts the test's loopback peer as a reverse proxy, so that
// each test client can be a different address through X-Forwarded-For.
func behindProxy(d *Deps) {
	d.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("::1/128")}
}

// from is the X-Forwarded-For header pair of a client at addr.
func from(addr string) []string { return []string{"X-Forwarded-For", addr} }

func creds(email, password string) map[string]string {
	return map[string]string{"email": email, "password": password}
}

// wantTooMany checks a 429 problem with a positive Retry-After, and
// returns the Retry-After.
func wantTooMany(t *testing.T, r response) time.Duration {
	t.Helper()
	wantProblem(t, r, http.StatusTooManyRequests)
	return wantRetryAfter(t, r)
}

func wantRetryAfter(t *testing.T, r response) time.Duration {
	t.Helper()
	secs, err := strconv.Atoi(r.Header.Get("Retry-After"))
	if err != nil || secs <= 0 {
		t.Fatalf("Retry-After %q, want a positive number of seconds", r.Header.Get("Retry-After"))
	}
	return time.Duration(secs) * time.Second
}

// The defect: ~80 guesses a second against one account, unlimited, and
// the right password still worked afterwards.
func TestLoginGuessingOneAccountOneClient(t *testing.T) {
	e := newEnv(t, behindProxy)
	b := e.browser()
	if r := b.do("POST", "/api/v1/accounts", map[string]string{"email": "ada@example.com", "password": "right-password", "name": "Ada"}, from("198.51.100.7")...); r.StatusCode != http.StatusCreated {
		t.Fatalf("register: %d %s", r.StatusCode, r.body)
	}
	attacker := e.browser()
	var unauthorized, limited int
	for i := range 200 { // 200 guesses in a minute
		r := attacker.do("POST", "/api/v1/sessions", creds("ada@example.com", fmt.Sprint("guess-", i)), from("203.0.113.66")...)
		switch r.StatusCode {
		case http.StatusUnauthorized:
			if limited > 0 {
				t.Fatalf("guess %d got 401 after being limited", i)
			}
			unauthorized++
		case http.StatusTooManyRequests:
			wantTooMany(t, r)
			limited++
		default:
			t.Fatalf("guess %d: %d %s", i, r.StatusCode, r.body)
		}
		e.clock.Advance(300 * time.Millisecond)
	}
	if unauthorized != DefaultLimits.LoginPerAccount.Burst {
		t.Fatalf("%d guesses were checked, want %d (the account's burst)", unauthorized, DefaultLimits.LoginPerAccount.Burst)
	}
	// Even the right password is refused while the account is limited:
	// the limiter cannot tell the owner from a lucky guess.
	wantTooMany(t, attacker.do("POST", "/api/v1/sessions", creds("ada@example.com", "right-password"), from("203.0.113.66")...))

	// After the window the owner logs in from another client.
	e.clock.Advance(15 * time.Minute)
	owner := e.browser()
	wantStatus(t, owner.do("POST", "/api/v1/sessions", creds("ada@example.com", "right-password"), from("198.51.100.7")...), http.StatusOK)
	wantStatus(t, owner.do("GET", "/api/v1/me", nil), http.StatusOK)
}

// An attacker spreading guesses over many addresses still meets the
// account's limit; its answers are the same for an address with no
// account; the owner's success gives the account its budget back.
func TestLoginLimitPerAccountAcrossClients(t *testing.T) {
	e := newEnv(t, behindProxy)
	b := e.browser()
	if r := b.do("POST", "/api/v1/accounts", map[string]string{"email": "ada@example.com", "password": "right-password", "name": "Ada"}, from("198.51.100.7")...); r.StatusCode != http.StatusCreated {
		t.Fatalf("register: %d %s", r.StatusCode, r.body)
	}
	guess := func(email string, i int) response {
		return e.browser().do("POST", "/api/v1/sessions", creds(email, "wrong"), from(fmt.Sprintf("203.0.113.%d", i))...)
	}
	var details [2]string
	for n, email := range []string{"ada@example.com", "nobody@example.com"} {
		burst := DefaultLimits.LoginPerAccount.Burst
		for i := range burst {
			wantProblem(t, guess(email, n*100+i), http.StatusUnauthorized)
		}
		r := guess(email, n*100+burst)
		retry := wantTooMany(t, r)
		if want := DefaultLimits.LoginPerAccount.Period / time.Duration(DefaultLimits.LoginPerAccount.Events); retry != want {
			t.Errorf("Retry-After %v, want %v", retry, want)
		}
		var p struct{ Detail string }
		r.json(t, &p)
		details[n] = p.Detail
	}
	if details[0] != details[1] {
		t.Errorf("a limited login to an account says %q, to no account %q: they must not differ", details[0], details[1])
	}
	// The email is the same account however it is typed.
	wantTooMany(t, guess("  ADA@Example.com ", 50))

	// Successes do not use the budget up: the owner logs in again and
	// again, and each success gives back what failures had spent.
	e.clock.Advance(15 * time.Minute)
	for i := range 3 * DefaultLimits.LoginPerAccount.Burst {
		wantProblem(t, guess("ada@example.com", 150+i), http.StatusUnauthorized)
		r := e.browser().do("POST", "/api/v1/sessions", creds("ada@example.com", "right-password"), from(fmt.Sprintf("198.51.100.%d", 10+i))...)
		wantStatus(t, r, http.StatusOK)
	}
}

// One client trying many accounts meets the per-client limit; other
// clients are not affected.
func TestLoginLimitPerClient(t *testing.T) {
	e := newEnv(t, behindProxy)
	e.browser().signUp("ada@example.com", "Ada")
	sprayer := e.browser()
	burst := DefaultLimits.LoginPerClient.Burst
	for i := range burst {
		wantProblem(t, sprayer.do("POST", "/api/v1/sessions", creds(fmt.Sprintf("user%d@example.com", i), "password123"), from("203.0.113.9")...), http.StatusUnauthorized)
	}
	retry := wantTooMany(t, sprayer.do("POST", "/api/v1/sessions", creds("user-next@example.com", "password123"), from("203.0.113.9")...))
	if want := time.Minute / time.Duration(DefaultLimits.LoginPerClient.Events); retry != want {
		t.Errorf("Retry-After %v, want %v", retry, want)
	}
	// The right password from the limited client is refused too.
	wantTooMany(t, sprayer.do("POST", "/api/v1/sessions", creds("ada@example.com", "password123"), from("203.0.113.9")...))
	// Another client is fine, and so is the same account from it.
	wantStatus(t, e.browser().do("POST", "/api/v1/sessions", creds("ada@example.com", "password123"), from("198.51.100.1")...), http.StatusOK)
	// The client earns attempts back over time.
	e.clock.Advance(retry)
	wantProblem(t, sprayer.do("POST", "/api/v1/sessions", creds("user-late@example.com", "password123"), from("203.0.113.9")...), http.StatusUnauthorized)
}

func TestLoginFormLimited(t *testing.T) {
	e := newEnv(t, behindProxy)
	b := e.browser()
	form := url.Values{"email": {"ada@example.com"}, "password": {"wrong"}, "next": {"/cart"}}
	for range DefaultLimits.LoginPerAccount.Burst {
		wantStatus(t, b.do("POST", "/login", form, from("203.0.113.5")...), http.StatusUnauthorized)
	}
	r := b.do("POST", "/login", form, from("203.0.113.5")...)
	wantStatus(t, r, http.StatusTooManyRequests)
	wantRetryAfter(t, r)
	wantContains(t, r.body, "Too many login attempts. Please wait 2 minutes and try again.", `action="/login"`, `value="ada@example.com"`)
	if ct := r.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
}

// The defect: registration answers 409 for a taken email, and anyone could
// test a list of addresses in bulk.
func TestRegistrationLimitPerClient(t *testing.T) {
	e := newEnv(t, behindProxy)
	e.browser().signUp("ada@example.com", "Ada")
	prober := e.browser()
	burst := DefaultLimits.RegisterPerClient.Burst
	var created, conflicts int
	for i := range burst {
		email := fmt.Sprintf("probe%d@example.com", i)
		if i == 3 {
			email = "ada@example.com"
		}
		r := prober.do("POST", "/api/v1/accounts", map[string]string{"email": email, "password": "password123", "name": "P"}, from("203.0.113.70")...)
		switch r.StatusCode {
		case http.StatusCreated:
			created++
		case http.StatusConflict: // the v1 contract is kept
			conflicts++
		default:
			t.Fatalf("registration %d: %d %s", i, r.StatusCode, r.body)
		}
	}
	if conflicts != 1 || created != burst-1 {
		t.Fatalf("created %d, conflicts %d", created, conflicts)
	}
	for i := range 20 {
		wantTooMany(t, prober.do("POST", "/api/v1/accounts", map[string]string{"email": fmt.Sprintf("more%d@example.com", i), "password": "password123", "name": "P"}, from("203.0.113.70")...))
	}
	if e.accounts.user("more0@example.com").ID != "" {
		t.Fatal("a limited registration reached the account service")
	}
	// The form is limited the same way, per client.
	form := url.Values{"email": {"form@example.com"}, "password": {"password123"}, "name": {"F"}}
	r := prober.do("POST", "/register", form, from("203.0.113.70")...)
	wantStatus(t, r, http.StatusTooManyRequests)
	wantRetryAfter(t, r)
	wantContains(t, r.body, "Too many registration attempts.", `action="/register"`, `value="form@example.com"`)
	// Another client registers.
	wantStatus(t, e.browser().do("POST", "/register", form, from("198.51.100.3")...), http.StatusSeeOther)
}

// Without trusted proxies, X-Forwarded-For is the client's own claim and
// is ignored: rotating it does not escape the per-client limit.
func TestForwardedForIgnoredFromUntrustedPeer(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	burst := DefaultLimits.RegisterPerClient.Burst
	for i := range burst {
		wantStatus(t, b.do("POST", "/api/v1/accounts", map[string]string{"email": fmt.Sprintf("u%d@example.com", i), "password": "password123", "name": "U"}, from(fmt.Sprintf("192.0.2.%d", i))...), http.StatusCreated)
	}
	wantTooMany(t, b.do("POST", "/api/v1/accounts", map[string]string{"email": "x@example.com", "password": "password123", "name": "U"}, from("192.0.2.200")...))
}

func TestClientAddr(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}
	tests := []struct {
		name    string
		trusted []netip.Prefix
		remote  string
		xff     []string
		want    string
	}{
		{"no proxies trusted", nil, "10.1.2.3:5555", []string{"198.51.100.1"}, "10.1.2.3"},
		{"untrusted peer", trusted, "192.0.2.9:5555", []string{"198.51.100.1"}, "192.0.2.9"},
		{"trusted peer", trusted, "10.1.2.3:5555", []string{"198.51.100.1"}, "198.51.100.1"},
		{"trusted peer, no header", trusted, "10.1.2.3:5555", nil, "10.1.2.3"},
		{"spoofed entries left of the real client", trusted, "10.1.2.3:5555", []string{"1.1.1.1, 2.2.2.2, 198.51.100.1"}, "198.51.100.1"},
		{"a chain of trusted proxies", trusted, "10.1.2.3:5555", []string{"6.6.6.6, 198.51.100.1, 10.9.9.9", "10.8.8.8"}, "198.51.100.1"},
		{"every hop trusted", trusted, "10.1.2.3:5555", []string{"10.7.7.7, 10.8.8.8"}, "10.7.7.7"},
		{"garbage hop", trusted, "10.1.2.3:5555", []string{"198.51.100.1, not-an-ip, 10.8.8.8"}, "10.8.8.8"},
		{"hop with port", trusted, "10.1.2.3:5555", []string{"198.51.100.1:4711"}, "198.51.100.1"},
		{"IPv6 client by /64", trusted, "[fd00::1]:443", []string{"[2001:db8:1:2:aaaa::1]:4711"}, "2001:db8:1:2::/64"},
		{"IPv6 peer by /64", nil, "[2001:db8:1:2:3:4:5:6]:443", nil, "2001:db8:1:2::/64"},
		{"IPv4-mapped peer", nil, "[::ffff:192.0.2.1]:443", nil, "192.0.2.1"},
		{"unreadable peer", nil, "@", nil, "unknown"},
	}
	for _, tt := range tests {
		s := &Server{d: Deps{TrustedProxies: tt.trusted}}
		r := httptestRequest("GET", "/", "")
		r.RemoteAddr = tt.remote
		for _, v := range tt.xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		if got := s.clientKey(r); got != tt.want {
			t.Errorf("%s: clientKey = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestCheckoutLimitPerAccount(t *testing.T) {
	e := newEnv(t, behindProxy)
	b := e.browser()
	b.signUp("ada@example.com", "Ada")
	b.do("POST", "/cart/add", url.Values{"product_id": {"prd_01"}})
	body := `{"shipping_address":{},"payment":{}}`
	// Attempts count whatever their outcome (here: no Idempotency-Key).
	for range DefaultLimits.CheckoutPerAccount.Burst {
		wantProblem(t, b.do("POST", "/api/v1/checkout", body, from("198.51.100.7")...), http.StatusBadRequest)
	}
	wantTooMany(t, b.do("POST", "/api/v1/checkout", body, from("203.0.113.1")...))
	// The form is limited by the same account budget.
	r := b.do("POST", "/checkout", checkoutForm("nonce-1", "4242 4242 4242 4242"))
	wantStatus(t, r, http.StatusTooManyRequests)
	wantRetryAfter(t, r)
	wantContains(t, r.body, "Too many checkout attempts.", `value="nonce-1"`)
	// Another account is not limited.
	other := e.browser()
	other.signUp("bob@example.com", "Bob")
	wantProblem(t, other.do("POST", "/api/v1/checkout", body), http.StatusBadRequest)
}

// Limits may be changed or switched off.
func TestLimitsConfigurable(t *testing.T) {
	e := newEnv(t, func(d *Deps) {
		d.Limits.RegisterPerClient = DefaultLimits.RegisterPerClient
		d.Limits.RegisterPerClient.Burst = 2
		d.Limits.LoginPerAccount = ratelimit.Off
		d.Limits.LoginPerClient = ratelimit.Off
	})
	b := e.browser()
	for i := range 2 {
		wantStatus(t, b.do("POST", "/api/v1/accounts", map[string]string{"email": fmt.Sprintf("u%d@example.com", i), "password": "password123", "name": "U"}), http.StatusCreated)
	}
	wantTooMany(t, b.do("POST", "/api/v1/accounts", map[string]string{"email": "u9@example.com", "password": "password123", "name": "U"}))
	for range 50 {
		wantProblem(t, b.do("POST", "/api/v1/sessions", creds("u0@example.com", "wrong")), http.StatusUnauthorized)
	}
}

func TestNoLimits(t *testing.T) {
	e := newEnv(t, func(d *Deps) { d.Limits = NoLimits })
	b := e.browser()
	for i := range 30 {
		wantStatus(t, b.do("POST", "/api/v1/accounts", map[string]string{"email": fmt.Sprintf("u%d@example.com", i), "password": "password123", "name": "U"}), http.StatusCreated)
		wantProblem(t, b.do("POST", "/api/v1/sessions", creds("u0@example.com", "wrong")), http.StatusUnauthorized)
	}
}
