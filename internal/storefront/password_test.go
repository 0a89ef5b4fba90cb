package storefront

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/account"
	"github.com/globomantics/globomantics/internal/platform/cache"
	"github.com/globomantics/globomantics/internal/platform/ratelimit"
)

// TestChangePasswordPage: the form, the refusals next to their fields
// (passwords never written back), and a change that keeps this browser
// logged in and logs every other one out at once on this instance, even
// though their lookups are cached.
func TestChangePasswordPage(t *testing.T) {
	e := newEnv(t)
	here, phone := e.browser(), e.browser()
	here.signUp("ada@example.com", "Ada")
	wantStatus(t, phone.do("POST", "/api/v1/sessions", map[string]string{"email": "ada@example.com", "password": "password123"}), http.StatusOK)
	// Both lookups cached on this instance (the fake clock stands still).
	wantStatus(t, here.do("GET", "/api/v1/me", nil), http.StatusOK)
	wantStatus(t, phone.do("GET", "/api/v1/me", nil), http.StatusOK)

	// Anonymous visitors are sent to log in.
	r := e.browser().do("GET", "/account/password", nil)
	wantStatus(t, r, http.StatusSeeOther)
	if loc := r.Header.Get("Location"); loc != "/login?next=%2Faccount%2Fpassword" {
		t.Errorf("Location %q", loc)
	}
	wantContains(t, here.do("GET", "/account", nil).body, `<a href="/account/password">Change your password</a>`)
	r = here.do("GET", "/account/password", nil)
	wantStatus(t, r, http.StatusOK)
	wantContains(t, r.body, "<h1>Change your password</h1>", `action="/account/password" method="post"`,
		`name="current_password"`, `name="new_password"`, `name="confirm_password"`, `autocomplete="new-password"`)

	for _, tc := range []struct {
		what             string
		current, nw, cfm string
		status           int
		field, msg       string
	}{
		{"no current password", "", "new password 1", "new password 1", http.StatusUnprocessableEntity, "current-password", "Enter your current password."},
		{"no new password", "password123", "", "", http.StatusUnprocessableEntity, "new-password", "Choose a new password."},
		{"confirmation differs", "password123", "new password 1", "new password 2", http.StatusUnprocessableEntity, "confirm-password", "The two new passwords don&#39;t match."},
		{"wrong current password", "not my password", "new password 1", "new password 1", http.StatusForbidden, "current-password", "That isn&#39;t your current password."},
		{"too short", "password123", "short", "short", http.StatusUnprocessableEntity, "new-password", "Password must be 8 to 128 characters long."},
	} {
		r := here.do("POST", "/account/password", url.Values{"current_password": {tc.current}, "new_password": {tc.nw}, "confirm_password": {tc.cfm}})
		wantStatus(t, r, tc.status)
		described := tc.field + "-error"
		if tc.field == "new-password" { // its hint too
			described = "new-password-hint new-password-error"
		}
		wantContains(t, r.body, `aria-invalid="true"`, `aria-describedby="`+described+`"`, `id="`+tc.field+`-error">`+tc.msg)
		for _, typed := range []string{tc.current, tc.nw, tc.cfm} {
			if typed != "" && strings.Contains(r.body, typed) {
				t.Errorf("%s: the page shows a password typed (%q)", tc.what, typed)
			}
		}
	}
	// Nothing changed: the other browser is still logged in.
	wantStatus(t, phone.do("GET", "/api/v1/me", nil), http.StatusOK)

	r = here.do("POST", "/account/password", url.Values{"current_password": {"password123"}, "new_password": {"a new password"}, "confirm_password": {"a new password"}})
	wantStatus(t, r, http.StatusSeeOther)
	if loc := r.Header.Get("Location"); loc != "/account" {
		t.Fatalf("Location %q", loc)
	}
	r = here.do("GET", "/account", nil)
	wantStatus(t, r, http.StatusOK)
	wantContains(t, r.body, "Your password was changed. Any other device logged in to your account was logged out.")
	// The other browser's lookup is still in the cache (the clock has not
	// moved), yet it is refused at once.
	wantProblem(t, phone.do("GET", "/api/v1/me", nil), http.StatusUnauthorized)
	wantStatus(t, here.do("GET", "/api/v1/me", nil), http.StatusOK)
	if _, err := e.accounts.Login(t.Context(), "ada@example.com", "password123"); err == nil {
		t.Error("the old password still logs in")
	}
	if _, err := e.accounts.Login(t.Context(), "ada@example.com", "a new password"); err != nil {
		t.Errorf("the new password does not log in: %v", err)
	}
}

// TestChangePasswordAPI: PUT /api/v1/me/password and its problems; wrong
// current passwords spend the login budget of the account.
func TestChangePasswordAPI(t *testing.T) {
	e := newEnv(t, func(d *Deps) {
		d.Limits.LoginPerAccount = ratelimit.Limit{Events: 3, Period: time.Hour, Burst: 3}
	})
	b, other := e.browser(), e.browser()
	wantProblem(t, b.do("PUT", "/api/v1/me/password", PasswordChange{CurrentPassword: "password123", NewPassword: "a new password"}), http.StatusUnauthorized)
	b.signUp("ada@example.com", "Ada")
	wantStatus(t, other.do("POST", "/api/v1/sessions", map[string]string{"email": "ada@example.com", "password": "password123"}), http.StatusOK)
	wantStatus(t, other.do("GET", "/api/v1/me", nil), http.StatusOK)

	for _, tc := range []struct {
		body   any
		status int
		detail string
	}{
		{PasswordChange{CurrentPassword: "password123", NewPassword: "short"}, http.StatusUnprocessableEntity, "8 to 128"},
		{`{"current_password":"password123","new_password":"long enough","admin":true}`, http.StatusBadRequest, "admin"},
		{`{"current_password":`, http.StatusBadRequest, ""},
		{PasswordChange{CurrentPassword: "wrong one", NewPassword: "a new password"}, http.StatusForbidden, "current password is incorrect"},
	} {
		p := wantProblem(t, b.do("PUT", "/api/v1/me/password", tc.body), tc.status)
		if !strings.Contains(p.Detail, tc.detail) {
			t.Errorf("PUT %v: detail %q, want %q", tc.body, p.Detail, tc.detail)
		}
	}
	wantStatus(t, other.do("GET", "/api/v1/me", nil), http.StatusOK)
	r := b.do("PUT", "/api/v1/me/password", PasswordChange{CurrentPassword: "password123", NewPassword: "a new password"})
	wantStatus(t, r, http.StatusNoContent)
	wantStatus(t, b.do("GET", "/api/v1/me", nil), http.StatusOK)
	wantProblem(t, other.do("GET", "/api/v1/me", nil), http.StatusUnauthorized)

	// Guessing the current password runs out of the account's budget.
	for range 3 {
		b.do("PUT", "/api/v1/me/password", PasswordChange{CurrentPassword: "guess", NewPassword: "another password"})
	}
	r = b.do("PUT", "/api/v1/me/password", PasswordChange{CurrentPassword: "a new password", NewPassword: "another password"})
	wantProblem(t, r, http.StatusTooManyRequests)
	if r.Header.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
}

// TestPasswordResetPages walks the whole reset: the link on the login
// page, the request (one answer for every address), the link's page, the
// refusals next to the fields, the new password (every session ended, the
// customer logged in) and the link refused afterwards.
func TestPasswordResetPages(t *testing.T) {
	var logs logBuffer
	e := newEnv(t, captureLog(&logs))
	old := e.browser()
	old.signUp("ada@example.com", "Ada")
	wantStatus(t, old.do("GET", "/api/v1/me", nil), http.StatusOK) // cached

	b := e.browser()
	wantContains(t, b.do("GET", "/login", nil).body, `<a href="/forgot-password">Forgot your password?</a>`)
	r := b.do("GET", "/forgot-password", nil)
	wantStatus(t, r, http.StatusOK)
	wantContains(t, r.body, "<h1>Reset your password</h1>", `action="/forgot-password" method="post"`, `name="email"`)

	// Bad input: next to the field, what was typed kept.
	r = b.do("POST", "/forgot-password", url.Values{"email": {""}})
	wantStatus(t, r, http.StatusUnprocessableEntity)
	wantContains(t, r.body, `id="reset-email-error">Enter the e-mail address of your account.`, `aria-invalid="true"`)
	r = b.do("POST", "/forgot-password", url.Values{"email": {"not-an-address<b>"}})
	wantStatus(t, r, http.StatusUnprocessableEntity)
	wantContains(t, r.body, `id="reset-email-error">Email is not a valid address.`, `value="not-an-address&lt;b&gt;"`)

	// The same answer for an address with an account and one without.
	var answers []string
	for _, email := range []string{"nobody@example.com", "ada@example.com"} {
		r = b.do("POST", "/forgot-password", url.Values{"email": {email}})
		wantStatus(t, r, http.StatusSeeOther)
		if loc := r.Header.Get("Location"); loc != "/login" {
			t.Errorf("Location %q", loc)
		}
		page := b.do("GET", "/login", nil)
		wantContains(t, page.body, "If an account exists for that address, we&#39;ve sent it a link")
		answers = append(answers, r.Header.Get("Location")+page.body)
	}
	if answers[0] != answers[1] {
		t.Error("the answers for an unknown and a known address differ")
	}
	tok, ok := e.accounts.lastReset("ada@example.com")
	if !ok {
		t.Fatal("no link sent")
	}
	if _, ok := e.accounts.lastReset("nobody@example.com"); ok {
		t.Error("a link sent to an address without an account")
	}

	link := "/reset-password?" + url.Values{"token": {tok}}.Encode()
	r = b.do("GET", link, nil)
	wantStatus(t, r, http.StatusOK)
	wantContains(t, r.body, "<h1>Choose a new password</h1>", `action="/reset-password" method="post"`,
		`<input type="hidden" name="token" value="`+tok+`">`, `<meta name="referrer" content="no-referrer">`)
	if got := r.Header.Get("Referrer-Policy"); got != "no-referrer" {
		t.Errorf("Referrer-Policy %q", got)
	}
	if got := r.Header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control %q", got)
	}

	form := func(nw, cfm string) url.Values {
		return url.Values{"token": {tok}, "new_password": {nw}, "confirm_password": {cfm}}
	}
	r = b.do("POST", "/reset-password", form("a new password", "another one"))
	wantStatus(t, r, http.StatusUnprocessableEntity)
	wantContains(t, r.body, `id="confirm-password-error">The two passwords don&#39;t match.`, `name="token" value="`+tok+`"`)
	r = b.do("POST", "/reset-password", form("short", "short"))
	wantStatus(t, r, http.StatusUnprocessableEntity)
	wantContains(t, r.body, `id="new-password-error">Password must be 8 to 128 characters long.`)
	if strings.Contains(r.body, `value="short"`) {
		t.Error("the page writes the password back")
	}

	r = b.do("POST", "/reset-password", form("a new password", "a new password"))
	wantStatus(t, r, http.StatusSeeOther)
	if loc := r.Header.Get("Location"); loc != "/account" {
		t.Fatalf("Location %q", loc)
	}
	r = b.do("GET", "/account", nil)
	wantStatus(t, r, http.StatusOK)
	wantContains(t, r.body, "Your password was changed and you&#39;re logged in.")
	// The session from before (cached on this instance) is refused at once.
	wantProblem(t, old.do("GET", "/api/v1/me", nil), http.StatusUnauthorized)

	// The link works once; a made-up one is refused the same way.
	for _, l := range []string{link, "/reset-password?token=made-up", "/reset-password", "/reset-password?token=%zz"} {
		r = e.browser().do("GET", l, nil)
		wantStatus(t, r, http.StatusGone)
		wantContains(t, r.body, "<h1>This link is no longer valid</h1>", `<a class="button" href="/forgot-password">Send me a new link</a>`)
	}
	r = e.browser().do("POST", "/reset-password", form("third password", "third password"))
	wantStatus(t, r, http.StatusGone)

	// Expired links are refused too.
	wantStatus(t, b.do("POST", "/forgot-password", url.Values{"email": {"ada@example.com"}}), http.StatusSeeOther)
	tok2, _ := e.accounts.lastReset("ada@example.com")
	e.clock.Advance(account.ResetTTL)
	wantStatus(t, e.browser().do("GET", "/reset-password?token="+url.QueryEscape(tok2), nil), http.StatusGone)

	// The access log has the link's path, never its token or a password.
	if !strings.Contains(logs.String(), "path=/reset-password") {
		t.Errorf("the access log has no line for the link:\n%s", logs.String())
	}
	for _, secret := range []string{tok, url.QueryEscape(tok), "a new password"} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("the log holds %q:\n%s", secret, logs.String())
		}
	}
}

// TestPasswordResetAPI: the JSON endpoints and their problems.
func TestPasswordResetAPI(t *testing.T) {
	e := newEnv(t, func(d *Deps) {
		d.Limits.ResetPerAddress = ratelimit.Limit{Events: 2, Period: time.Hour, Burst: 2}
	})
	b := e.browser()
	b.signUp("ada@example.com", "Ada")

	var first, second PasswordResetAccepted
	r := b.do("POST", "/api/v1/password-resets", PasswordResetRequest{Email: "ada@example.com"})
	wantStatus(t, r, http.StatusAccepted)
	r.json(t, &first)
	r = b.do("POST", "/api/v1/password-resets", PasswordResetRequest{Email: "nobody@example.com"})
	wantStatus(t, r, http.StatusAccepted)
	r.json(t, &second)
	if first != second || first.Message == "" {
		t.Errorf("answers %+v and %+v, want the same", first, second)
	}
	wantProblem(t, b.do("POST", "/api/v1/password-resets", PasswordResetRequest{Email: ""}), http.StatusUnprocessableEntity)
	wantProblem(t, b.do("POST", "/api/v1/password-resets", PasswordResetRequest{Email: "nope"}), http.StatusUnprocessableEntity)
	wantProblem(t, b.do("POST", "/api/v1/password-resets", `{"email":"a@example.com","x":1}`), http.StatusBadRequest)
	// The address's budget: 2, then 429 (for any address alike).
	wantStatus(t, b.do("POST", "/api/v1/password-resets", PasswordResetRequest{Email: "ada@example.com"}), http.StatusAccepted)
	wantProblem(t, b.do("POST", "/api/v1/password-resets", PasswordResetRequest{Email: "ADA@example.com"}), http.StatusTooManyRequests)

	tok, _ := e.accounts.lastReset("ada@example.com")
	p := wantProblem(t, b.do("POST", "/api/v1/password-resets/confirm", PasswordResetConfirm{Token: tok, NewPassword: "short"}), http.StatusUnprocessableEntity)
	if !strings.Contains(p.Detail, "8 to 128") {
		t.Errorf("detail %q", p.Detail)
	}
	p = wantProblem(t, b.do("POST", "/api/v1/password-resets/confirm", PasswordResetConfirm{Token: "made-up", NewPassword: "a new password"}), http.StatusForbidden)
	if p.Detail != "this password reset link is no longer valid" {
		t.Errorf("detail %q", p.Detail)
	}
	wantStatus(t, b.do("POST", "/api/v1/password-resets/confirm", PasswordResetConfirm{Token: tok, NewPassword: "a new password"}), http.StatusNoContent)
	// Every session ended, this one too: log in with the new password.
	wantProblem(t, b.do("GET", "/api/v1/me", nil), http.StatusUnauthorized)
	wantProblem(t, b.do("POST", "/api/v1/password-resets/confirm", PasswordResetConfirm{Token: tok, NewPassword: "third password"}), http.StatusForbidden)
	wantStatus(t, b.do("POST", "/api/v1/sessions", map[string]string{"email": "ada@example.com", "password": "a new password"}), http.StatusOK)
}

// TestLoginRegisterFieldErrors: the login and registration forms say next
// to the field what is wrong and keep what was typed, never the password.
func TestLoginRegisterFieldErrors(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	b.signUp("ada@example.com", "Ada")
	b.do("POST", "/logout", url.Values{})

	r := b.do("POST", "/login", url.Values{"email": {"ada@example.com"}, "password": {"wrong password"}})
	wantStatus(t, r, http.StatusUnauthorized)
	wantContains(t, r.body, `value="ada@example.com"`, `aria-describedby="login-password-error"`, `aria-invalid="true"`,
		`id="login-password-error">That email and password don&#39;t match an account.`)
	if strings.Contains(r.body, "wrong password") {
		t.Error("the login page writes the password back")
	}

	for _, tc := range []struct {
		name, email, password string
		status                int
		field, msg            string
	}{
		{"Grace", "grace-at-example", "password123", http.StatusUnprocessableEntity, "register-email", "Email is not valid."},
		{"Grace", "grace@example.com", "short", http.StatusUnprocessableEntity, "register-password", "Password must be at least 8 characters."},
		{" ", "grace@example.com", "password123", http.StatusUnprocessableEntity, "register-name", "Name is required."},
		{"Grace", "ada@example.com", "password123", http.StatusConflict, "register-email", "An account with this email already exists."},
	} {
		r := b.do("POST", "/register", url.Values{"name": {tc.name}, "email": {tc.email}, "password": {tc.password}})
		wantStatus(t, r, tc.status)
		wantContains(t, r.body, `id="`+tc.field+`-error">`+tc.msg, `value="`+tc.email+`"`, `aria-invalid="true"`)
		if strings.Contains(r.body, `value="`+tc.password+`"`) {
			t.Errorf("the registration page writes the password back")
		}
	}
}

// TestPasswordChangeOnOtherInstances: after a change on one instance, an
// instance that shares its cache (Redis) refuses the ended sessions at
// once; one with a cache of its own honours a lookup it cached for up to
// sessionCacheTTL, then refuses it.
func TestPasswordChangeOnOtherInstances(t *testing.T) {
	e := newEnv(t)
	shared := httptest.NewServer(New(e.deps).Handler())
	t.Cleanup(shared.Close)
	own := e.deps
	own.Cache = cache.NewMemory(e.clock, 100)
	apart := httptest.NewServer(New(own).Handler())
	t.Cleanup(apart.Close)

	here, phone := e.browser(), e.browser()
	here.signUp("ada@example.com", "Ada")
	wantStatus(t, phone.do("POST", "/api/v1/sessions", map[string]string{"email": "ada@example.com", "password": "password123"}), http.StatusOK)
	// me asks the instance at base with phone's cookies (a cookie is the
	// host's, whatever the port).
	me := func(base string) int {
		t.Helper()
		resp, err := phone.hc.Get(base + "/api/v1/me")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, base := range []string{e.srv.URL, shared.URL, apart.URL} {
		if got := me(base); got != http.StatusOK {
			t.Fatalf("%s before the change: %d", base, got)
		}
	}
	wantStatus(t, here.do("PUT", "/api/v1/me/password", PasswordChange{CurrentPassword: "password123", NewPassword: "a new password"}), http.StatusNoContent)
	if got := me(e.srv.URL); got != http.StatusUnauthorized {
		t.Errorf("this instance: %d, want 401", got)
	}
	if got := me(shared.URL); got != http.StatusUnauthorized {
		t.Errorf("an instance sharing the cache: %d, want 401 at once", got)
	}
	if got := me(apart.URL); got != http.StatusOK {
		t.Errorf("an instance with its own cache, within sessionCacheTTL: %d, want its cached 200", got)
	}
	e.clock.Advance(sessionCacheTTL)
	if got := me(apart.URL); got != http.StatusUnauthorized {
		t.Errorf("an instance with its own cache, after sessionCacheTTL: %d, want 401", got)
	}
}
