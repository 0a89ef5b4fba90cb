package storefront

import (
	"html"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/globomantics/globomantics/internal/account"
)

func TestAPIUpdateProfile(t *testing.T) {
	e := newEnv(t)
	b := e.browser()

	// Not logged in: 401, whatever the body.
	wantProblem(t, b.do("PATCH", "/api/v1/me", map[string]string{"name": "Ada"}), http.StatusUnauthorized)
	wantProblem(t, b.do("PATCH", "/api/v1/me", `{"nom":`), http.StatusUnauthorized)

	b.signUp("ada@example.com", "Ada")
	// Looking the session up caches token→account on this instance.
	var me account.Account
	b.do("GET", "/api/v1/me", nil).json(t, &me)
	if me.Name != "Ada" {
		t.Fatalf("me = %+v", me)
	}

	r := b.do("PATCH", "/api/v1/me", map[string]string{"name": "  Ada Lovelace "})
	wantStatus(t, r, http.StatusOK)
	if cc := r.Header.Get("Cache-Control"); cc != "private, no-store" {
		t.Errorf("Cache-Control = %q", cc)
	}
	if r.body != `{"id":"acct_01","email":"ada@example.com","name":"Ada Lovelace"}`+"\n" {
		t.Fatalf("PATCH answer %s", r.body)
	}
	// The fake clock has not moved, so the old lookup would still be cached:
	// only dropping it makes this instance show the new name at once.
	calls := e.accounts.calls()
	r = b.do("GET", "/api/v1/me", nil)
	wantStatus(t, r, http.StatusOK)
	r.json(t, &me)
	if me.Name != "Ada Lovelace" || e.accounts.calls() != calls+1 {
		t.Fatalf("me after the change = %+v (%d lookups, want %d)", me, e.accounts.calls(), calls+1)
	}

	// Refused changes leave the name as it was.
	for _, tc := range []struct {
		body   any
		status int
		detail string
	}{
		{map[string]string{"name": ""}, http.StatusUnprocessableEntity, "name is required"},
		{`{}`, http.StatusUnprocessableEntity, "name is required"},
		{map[string]string{"name": " \t "}, http.StatusUnprocessableEntity, "name is required"},
		{map[string]string{"name": strings.Repeat("é", account.MaxNameLen+1)}, http.StatusUnprocessableEntity, "at most 100 characters"},
		{`{"name":"Grace","admin":true}`, http.StatusBadRequest, "admin"},
		{`{"name":`, http.StatusBadRequest, ""},
		{`{"name":42}`, http.StatusBadRequest, ""},
	} {
		p := wantProblem(t, b.do("PATCH", "/api/v1/me", tc.body), tc.status)
		if !strings.Contains(p.Detail, tc.detail) {
			t.Errorf("PATCH %v: detail %q, want it to mention %q", tc.body, p.Detail, tc.detail)
		}
	}
	// A browser on another site may not change it either.
	wantProblem(t, b.do("PATCH", "/api/v1/me", map[string]string{"name": "Mallory"}, "Origin", "https://evil.example"), http.StatusForbidden)
	wantProblem(t, b.do("PATCH", "/api/v1/me", map[string]string{"name": "Mallory"}, "Sec-Fetch-Site", "cross-site"), http.StatusForbidden)
	if got := e.accounts.user("ada@example.com").Name; got != "Ada Lovelace" {
		t.Fatalf("refused requests changed the name to %q", got)
	}
	b.do("GET", "/api/v1/me", nil).json(t, &me)
	if me.Name != "Ada Lovelace" {
		t.Fatalf("me after refused changes = %+v", me)
	}

	// GET and PATCH share the path; other methods are 405.
	r = b.do("DELETE", "/api/v1/me", nil)
	wantProblem(t, r, http.StatusMethodNotAllowed)
	if allow := r.Header.Get("Allow"); allow != "GET, PATCH, HEAD" {
		t.Errorf("Allow = %q", allow)
	}

	// An account that has gone away behind a live session: log in again.
	e.accounts.forget("ada@example.com")
	wantProblem(t, b.do("PATCH", "/api/v1/me", map[string]string{"name": "Ada"}), http.StatusUnauthorized)

	// After logout the session is gone.
	wantStatus(t, b.do("DELETE", "/api/v1/sessions", nil), http.StatusNoContent)
	wantProblem(t, b.do("PATCH", "/api/v1/me", map[string]string{"name": "Ada"}), http.StatusUnauthorized)
}

func TestAccountPage(t *testing.T) {
	e := newEnv(t)
	b := e.browser()

	// Anonymous visitors have no account link and are sent to log in.
	r := b.do("GET", "/", nil)
	if strings.Contains(r.body, `href="/account"`) {
		t.Error("anonymous header links to /account")
	}
	r = b.do("GET", "/account", nil)
	wantStatus(t, r, http.StatusSeeOther)
	if loc := r.Header.Get("Location"); loc != "/login?next=%2Faccount" {
		t.Fatalf("Location %q", loc)
	}

	b.signUp("ada@example.com", "Ada")
	r = b.do("GET", "/account", nil)
	wantStatus(t, r, http.StatusOK)
	wantContains(t, r.body, "<h1>Your account</h1>", "<strong>Ada</strong>", "<strong>ada@example.com</strong>",
		`action="/account" method="post"`, `name="name" value="Ada"`,
		`<a href="/account" title="Your account">Ada</a>`)
	if strings.Contains(r.body, "has been updated") || strings.Contains(r.body, `role="alert"`) {
		t.Error("a fresh account page shows a notice")
	}
	if cc := r.Header.Get("Cache-Control"); cc != "private, no-store" {
		t.Errorf("Cache-Control %q", cc)
	}
	// Other pages link to it from the header too.
	wantContains(t, b.do("GET", "/products/prd_01", nil).body, `<a href="/account" title="Your account">Ada</a>`)

	// Success: post/redirect/get, and the new name is shown at once (the
	// fake clock has not moved, so the cached lookup must have been dropped).
	r = b.do("POST", "/account", url.Values{"name": {"  Ada <Lovelace> "}})
	wantStatus(t, r, http.StatusSeeOther)
	loc := r.Header.Get("Location")
	if loc != "/account?saved=1" {
		t.Fatalf("Location %q", loc)
	}
	if got := e.accounts.user("ada@example.com").Name; got != "Ada <Lovelace>" {
		t.Fatalf("stored name %q", got)
	}
	r = b.do("GET", loc, nil)
	wantStatus(t, r, http.StatusOK)
	wantContains(t, r.body, `role="status"`, "Your name has been updated.", "<strong>Ada &lt;Lovelace&gt;</strong>",
		`name="name" value="Ada &lt;Lovelace&gt;"`, `title="Your account">Ada &lt;Lovelace&gt;</a>`)

	// Invalid names: 422, the reason next to the field, what was typed kept,
	// and nothing changed.
	for _, tc := range []struct{ typed, detail string }{
		{"", "name is required"},
		{"   ", "name is required"},
		{strings.Repeat("x", account.MaxNameLen) + "<script>", "name must be at most 100 characters"},
	} {
		r = b.do("POST", "/account", url.Values{"name": {tc.typed}})
		wantStatus(t, r, http.StatusUnprocessableEntity)
		wantContains(t, r.body, `aria-invalid="true"`, `id="name-error" role="alert">`+tc.detail,
			`name="name" value="`+html.EscapeString(tc.typed)+`"`,
			"<strong>Ada &lt;Lovelace&gt;</strong>", `title="Your account">Ada &lt;Lovelace&gt;</a>`)
		if strings.Contains(r.body, "<script>") || strings.Contains(r.body, "has been updated") {
			t.Errorf("typed %q: unescaped input or a success notice:\n%s", tc.typed, r.body)
		}
	}
	if got := e.accounts.user("ada@example.com").Name; got != "Ada <Lovelace>" {
		t.Fatalf("invalid forms changed the name to %q", got)
	}

	// The account service failing is an error page, not a silent success.
	e.accounts.down = true
	wantStatus(t, b.do("POST", "/account", url.Values{"name": {"Grace"}}), http.StatusServiceUnavailable)
	e.accounts.down = false
}

func TestAccountFormCrossOriginRefused(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	b.signUp("ada@example.com", "Ada")
	form := url.Values{"name": {"Mallory"}}
	for _, hdr := range [][]string{
		{"Origin", "https://evil.example"},
		{"Sec-Fetch-Site", "cross-site"},
		{"Referer", "https://evil.example/account"},
	} {
		r := b.do("POST", "/account", form, hdr...)
		wantStatus(t, r, http.StatusForbidden)
		wantContains(t, r.body, "<h1>Not allowed</h1>")
	}
	if got := e.accounts.user("ada@example.com").Name; got != "Ada" {
		t.Fatalf("a refused form changed the name to %q", got)
	}
	wantStatus(t, b.do("POST", "/account", form, "Origin", e.srv.URL), http.StatusSeeOther)
	if got := e.accounts.user("ada@example.com").Name; got != "Mallory" {
		t.Fatalf("same-origin form: name %q", got)
	}
}
