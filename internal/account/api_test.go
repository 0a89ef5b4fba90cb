package account_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/account"
	"github.com/globomantics/globomantics/internal/account/accountdb"
	"github.com/globomantics/globomantics/internal/platform/clock"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/httpx"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

// cheap are argon2id parameters that keep the suite fast.
var cheap = account.ArgonParams{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}

type fixture struct {
	api   account.API
	store *accountdb.Store
	clock *clock.Fake
}

func newService(t *testing.T) (*account.Service, *accountdb.Store, *clock.Fake) {
	t.Helper()
	store, err := accountdb.Open(context.Background(), testenv.SQLite(t))
	if err != nil {
		t.Fatal(err)
	}
	clk := clock.NewFake(time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC))
	return account.NewService(store, clk, account.WithArgonParams(cheap)), store, clk
}

// TestAPI runs the contract suite against the service in process and over HTTP.
func TestAPI(t *testing.T) {
	impls := map[string]func(t *testing.T) fixture{
		"service": func(t *testing.T) fixture {
			svc, store, clk := newService(t)
			return fixture{svc, store, clk}
		},
		"client": func(t *testing.T) fixture {
			svc, store, clk := newService(t)
			srv := httptest.NewServer(account.NewHandler(svc))
			t.Cleanup(srv.Close)
			return fixture{account.NewClient(httpx.NewClient("account", []string{srv.URL}, nil)), store, clk}
		},
	}
	for name, mk := range impls {
		t.Run(name, func(t *testing.T) {
			t.Run("Register", func(t *testing.T) { testRegister(t, mk(t)) })
			t.Run("RegisterInvalid", func(t *testing.T) { testRegisterInvalid(t, mk(t)) })
			t.Run("Login", func(t *testing.T) { testLogin(t, mk(t)) })
			t.Run("Sessions", func(t *testing.T) { testSessions(t, mk(t)) })
			t.Run("Expiry", func(t *testing.T) { testExpiry(t, mk(t)) })
			t.Run("Profile", func(t *testing.T) { testProfile(t, mk(t)) })
		})
	}
}

func wantKind(t *testing.T, what string, err error, k errs.Kind) {
	t.Helper()
	if !errs.Is(k, err) {
		t.Errorf("%s: got error %v (kind %v), want kind %v", what, err, errs.KindOf(err), k)
	}
}

func register(t *testing.T, api account.API, email, password, name string) account.Account {
	t.Helper()
	a, err := api.Register(context.Background(), account.Registration{Email: email, Password: password, Name: name})
	if err != nil {
		t.Fatalf("Register(%q): %v", email, err)
	}
	return a
}

func tokenHash(token string) string {
	s := sha256.Sum256([]byte(token))
	return hex.EncodeToString(s[:])
}

func testRegister(t *testing.T, f fixture) {
	ctx := context.Background()
	a := register(t, f.api, "  Ada.Lovelace@Example.COM ", "correct horse", "  Ada Lovelace ")
	if !strings.HasPrefix(a.ID, "acc_") || a.Email != "ada.lovelace@example.com" || a.Name != "Ada Lovelace" {
		t.Errorf("Register = %+v; want acc_ id, normalised email, trimmed name", a)
	}
	got, err := f.api.GetAccount(ctx, a.ID)
	if err != nil || got != a {
		t.Errorf("GetAccount = %+v, %v; want %+v", got, err, a)
	}
	// The password is stored as an argon2id hash, never as itself.
	st, err := f.store.GetAccountByEmail(ctx, "ada.lovelace@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(st.PasswordHash, "$argon2id$v=19$m=64,t=1,p=1$") || strings.Contains(st.PasswordHash, "correct horse") {
		t.Errorf("stored password hash = %q", st.PasswordHash)
	}

	// Emails compare case-insensitively: the same address differently typed is taken.
	_, err = f.api.Register(ctx, account.Registration{Email: "ADA.LOVELACE@example.com", Password: "another password", Name: "Mallory"})
	wantKind(t, "duplicate email", err, errs.Conflict)
	if d := errs.Detail(err); !strings.Contains(d, "already exists") {
		t.Errorf("duplicate email detail = %q", d)
	}
	// ... and the original account and password are untouched.
	if _, err := f.api.Login(ctx, "ada.lovelace@example.com", "correct horse"); err != nil {
		t.Errorf("login with original password after rejected duplicate: %v", err)
	}
	if _, err := f.api.Login(ctx, "ada.lovelace@example.com", "another password"); err == nil {
		t.Error("duplicate registration replaced the password")
	}

	// Boundaries that are valid: 8 and 128 characters (counted as
	// characters, not bytes), a 100-character name.
	register(t, f.api, "eight@example.com", "12345678", "E")
	register(t, f.api, "runes@example.com", strings.Repeat("é", 128), strings.Repeat("ñ", 100))
}

func testRegisterInvalid(t *testing.T, f fixture) {
	ctx := context.Background()
	const goodPW, goodName = "correct horse", "Ada"
	cases := []struct {
		what                  string
		email, password, name string
		detail                string
	}{
		{"empty email", "", goodPW, goodName, "email is required"},
		{"blank email", "   ", goodPW, goodName, "email is required"},
		{"no at sign", "ada.example.com", goodPW, goodName, "not a valid address"},
		{"display name", "Ada <ada@example.com>", goodPW, goodName, "not a valid address"},
		{"angle brackets", "<ada@example.com>", goodPW, goodName, "not a valid address"},
		{"two addresses", "ada@example.com, bob@example.com", goodPW, goodName, "not a valid address"},
		{"too long email", strings.Repeat("a", 250) + "@example.com", goodPW, goodName, "at most 254"},
		{"short password", "ada@example.com", "1234567", goodName, "8 to 128 characters"},
		{"short multibyte password", "ada@example.com", "ééééééé", goodName, "8 to 128 characters"},
		{"long password", "ada@example.com", strings.Repeat("x", 129), goodName, "8 to 128 characters"},
		{"empty name", "ada@example.com", goodPW, "", "name is required"},
		{"blank name", "ada@example.com", goodPW, " \t ", "name is required"},
		{"long name", "ada@example.com", goodPW, strings.Repeat("n", 101), "at most 100"},
		{"control character in name", "ada@example.com", goodPW, "Ada\nLovelace", "control characters"},
	}
	for _, c := range cases {
		_, err := f.api.Register(ctx, account.Registration{Email: c.email, Password: c.password, Name: c.name})
		wantKind(t, c.what, err, errs.Invalid)
		if d := errs.Detail(err); !strings.Contains(d, c.detail) {
			t.Errorf("%s: detail %q does not mention %q", c.what, d, c.detail)
		}
	}
	// None of the rejected registrations created an account: the email is still free.
	register(t, f.api, "ada@example.com", goodPW, goodName)
}

func testLogin(t *testing.T, f fixture) {
	ctx := context.Background()
	a := register(t, f.api, "bob@example.com", "hunter2hunter2", "Bob")
	now := f.clock.Now()
	s, err := f.api.Login(ctx, " BOB@example.com", "hunter2hunter2")
	if err != nil {
		t.Fatal(err)
	}
	if s.Account != a || len(s.Token) < 40 || !s.ExpiresAt.Equal(now.Add(account.SessionTTL)) {
		t.Errorf("Login = %+v; want account %+v, a long token, expiry %v", s, a, now.Add(account.SessionTTL))
	}
	// Only the token's SHA-256 is stored.
	if _, _, err := f.store.GetSession(ctx, tokenHash(s.Token)); err != nil {
		t.Errorf("session not stored under the token's hash: %v", err)
	}
	if _, _, err := f.store.GetSession(ctx, s.Token); !errs.Is(errs.NotFound, err) {
		t.Errorf("session stored under the raw token: %v", err)
	}
	// Each login is its own session.
	s2, err := f.api.Login(ctx, "bob@example.com", "hunter2hunter2")
	if err != nil || s2.Token == s.Token {
		t.Errorf("second login: %v, token reused: %v", err, s2.Token == s.Token)
	}

	_, errWrong := f.api.Login(ctx, "bob@example.com", "hunter3hunter3")
	wantKind(t, "wrong password", errWrong, errs.Unauthorized)
	_, errUnknown := f.api.Login(ctx, "nobody@example.com", "hunter2hunter2")
	wantKind(t, "unknown email", errUnknown, errs.Unauthorized)
	if errs.Detail(errWrong) != errs.Detail(errUnknown) {
		t.Errorf("details differ: wrong password %q, unknown email %q", errs.Detail(errWrong), errs.Detail(errUnknown))
	}
	for _, c := range []struct{ email, password string }{
		{"", ""},
		{"not an email", "hunter2hunter2"},
		{"bob@example.com", ""},
		{"bob@example.com", strings.Repeat("x", 10000)},
	} {
		_, err := f.api.Login(ctx, c.email, c.password)
		wantKind(t, "login "+c.email, err, errs.Unauthorized)
		if errs.Detail(err) != errs.Detail(errWrong) {
			t.Errorf("login %q: detail %q, want %q", c.email, errs.Detail(err), errs.Detail(errWrong))
		}
	}
}

func testSessions(t *testing.T, f fixture) {
	ctx := context.Background()
	a := register(t, f.api, "cy@example.com", "password1", "Cy")
	s, err := f.api.Login(ctx, "cy@example.com", "password1")
	if err != nil {
		t.Fatal(err)
	}
	other, err := f.api.Login(ctx, "cy@example.com", "password1")
	if err != nil {
		t.Fatal(err)
	}
	got, err := f.api.Authenticate(ctx, s.Token)
	if err != nil || got != a {
		t.Errorf("Authenticate = %+v, %v; want %+v", got, err, a)
	}
	for _, tok := range []string{"", "nope", tokenHash(s.Token), strings.Repeat("t", 5000)} {
		_, err := f.api.Authenticate(ctx, tok)
		wantKind(t, "Authenticate(bad token)", err, errs.Unauthorized)
	}

	if err := f.api.Logout(ctx, s.Token); err != nil {
		t.Fatal(err)
	}
	_, err = f.api.Authenticate(ctx, s.Token)
	wantKind(t, "Authenticate after logout", err, errs.Unauthorized)
	// Logging out ends only that session.
	if _, err := f.api.Authenticate(ctx, other.Token); err != nil {
		t.Errorf("other session after logout: %v", err)
	}
	// Unknown tokens are not an error, so a repeated logout is harmless.
	for _, tok := range []string{s.Token, "", "unknown"} {
		if err := f.api.Logout(ctx, tok); err != nil {
			t.Errorf("Logout(%q) = %v", tok, err)
		}
	}
}

func testExpiry(t *testing.T, f fixture) {
	ctx := context.Background()
	register(t, f.api, "di@example.com", "password1", "Di")
	idle, err := f.api.Login(ctx, "di@example.com", "password1")
	if err != nil {
		t.Fatal(err)
	}
	busy, err := f.api.Login(ctx, "di@example.com", "password1")
	if err != nil {
		t.Fatal(err)
	}

	// Using a session slides its expiry: 20 days, use, 20 more days is
	// still inside SessionTTL of the last use.
	f.clock.Advance(20 * 24 * time.Hour)
	if _, err := f.api.Authenticate(ctx, busy.Token); err != nil {
		t.Fatalf("Authenticate after 20 days: %v", err)
	}
	if st, _, err := f.store.GetSession(ctx, tokenHash(busy.Token)); err != nil || !st.ExpiresAt.Equal(f.clock.Now().Add(account.SessionTTL)) {
		t.Errorf("expiry after use = %v, %v; want %v", st.ExpiresAt, err, f.clock.Now().Add(account.SessionTTL))
	}
	f.clock.Advance(20 * 24 * time.Hour)
	if _, err := f.api.Authenticate(ctx, busy.Token); err != nil {
		t.Errorf("used session expired: %v", err)
	}

	// The idle session expired 10 days ago: refused and deleted.
	_, err = f.api.Authenticate(ctx, idle.Token)
	wantKind(t, "expired session", err, errs.Unauthorized)
	if _, _, err := f.store.GetSession(ctx, tokenHash(idle.Token)); !errs.Is(errs.NotFound, err) {
		t.Errorf("expired session still stored: %v", err)
	}

	// A session expires exactly SessionTTL after its last use.
	f.clock.Advance(account.SessionTTL - time.Millisecond)
	if _, err := f.api.Authenticate(ctx, busy.Token); err != nil {
		t.Fatalf("just before expiry: %v", err)
	}
	f.clock.Advance(account.SessionTTL)
	_, err = f.api.Authenticate(ctx, busy.Token)
	wantKind(t, "after expiry", err, errs.Unauthorized)
}

func testProfile(t *testing.T, f fixture) {
	ctx := context.Background()
	a := register(t, f.api, "eve@example.com", "password1", "Eve")
	up, err := f.api.UpdateProfile(ctx, a.ID, "  Eve Online ")
	if err != nil {
		t.Fatal(err)
	}
	if want := (account.Account{ID: a.ID, Email: a.Email, Name: "Eve Online"}); up != want {
		t.Errorf("UpdateProfile = %+v, want %+v", up, want)
	}
	s, err := f.api.Login(ctx, "eve@example.com", "password1")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := f.api.Authenticate(ctx, s.Token); err != nil || got.Name != "Eve Online" {
		t.Errorf("Authenticate after rename = %+v, %v", got, err)
	}

	for _, bad := range []string{"", "   ", strings.Repeat("x", 101), "a\x00b"} {
		_, err := f.api.UpdateProfile(ctx, a.ID, bad)
		wantKind(t, "UpdateProfile(bad name)", err, errs.Invalid)
	}
	if got, _ := f.api.GetAccount(ctx, a.ID); got.Name != "Eve Online" {
		t.Errorf("name after rejected updates = %q", got.Name)
	}
	_, err = f.api.UpdateProfile(ctx, "acc_nope", "Name")
	wantKind(t, "UpdateProfile(unknown)", err, errs.NotFound)
	_, err = f.api.UpdateProfile(ctx, "", "")
	wantKind(t, "UpdateProfile(no id, no name)", err, errs.Invalid)

	for _, id := range []string{"acc_nope", "", ".", "..", "a/b", "\xff"} {
		_, err := f.api.GetAccount(ctx, id)
		wantKind(t, "GetAccount("+id+")", err, errs.NotFound)
	}
}

// TestHandlerRejectsBadBodies checks the HTTP layer's own validation.
func TestHandlerRejectsBadBodies(t *testing.T) {
	svc, _, _ := newService(t)
	srv := httptest.NewServer(account.NewHandler(svc))
	t.Cleanup(srv.Close)
	for _, c := range []struct {
		path, body string
		status     int
	}{
		{"/svc/account/v1/accounts", `{"email":"a@example.com","password":"password1","name":"A","admin":true}`, http.StatusBadRequest},
		{"/svc/account/v1/accounts", `{"email":`, http.StatusBadRequest},
		{"/svc/account/v1/sessions/authenticate", ``, http.StatusBadRequest},
		{"/svc/account/v1/sessions", `{"email":"a@example.com","password":"password1"}`, http.StatusUnauthorized},
	} {
		resp, err := http.Post(srv.URL+c.path, "application/json", strings.NewReader(c.body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.status || resp.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("POST %s %s: %d %s, want %d problem+json", c.path, c.body, resp.StatusCode, resp.Header.Get("Content-Type"), c.status)
		}
	}
	// The rejected body with an unknown field created nothing.
	if _, err := svc.Login(context.Background(), "a@example.com", "password1"); !errs.Is(errs.Unauthorized, err) {
		t.Errorf("account created from rejected body: %v", err)
	}
}
