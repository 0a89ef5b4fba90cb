package account_test

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/account"
	"github.com/globomantics/globomantics/internal/account/accountdb"
	"github.com/globomantics/globomantics/internal/platform/clock"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/httpx"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

// pwFixture is an account service (in process or over HTTP) on a real
// store, with the store's database to read the outbox from.
type pwFixture struct {
	api   account.API
	db    *sqldb.DB
	clock *clock.Fake
	kicks *int
}

func newPWFixtures(t *testing.T) map[string]func(t *testing.T) pwFixture {
	mk := func(t *testing.T, b testenv.Backend, remote bool) pwFixture {
		db := b.Open(t)
		store, err := accountdb.Open(context.Background(), db)
		if err != nil {
			t.Fatal(err)
		}
		clk := clock.NewFake(time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC))
		kicks := new(int)
		svc := account.NewService(store, clk, account.WithArgonParams(cheap),
			account.WithResetSecret([]byte("test secret")), account.WithKick(func() { *kicks++ }))
		f := pwFixture{api: svc, db: db, clock: clk, kicks: kicks}
		if remote {
			srv := httptest.NewServer(account.NewHandler(svc))
			t.Cleanup(srv.Close)
			f.api = account.NewClient(httpx.NewClient("account", []string{srv.URL}, nil))
		}
		return f
	}
	out := map[string]func(t *testing.T) pwFixture{}
	for _, b := range testenv.Backends() {
		out[b.Name+"/service"] = func(t *testing.T) pwFixture { return mk(t, b, false) }
		out[b.Name+"/client"] = func(t *testing.T) pwFixture { return mk(t, b, true) }
	}
	return out
}

func TestPasswords(t *testing.T) {
	for name, mk := range newPWFixtures(t) {
		t.Run(name, func(t *testing.T) {
			t.Run("ChangePassword", func(t *testing.T) { testChangePassword(t, mk(t)) })
			t.Run("Reset", func(t *testing.T) { testReset(t, mk(t)) })
			t.Run("ResetRefusals", func(t *testing.T) { testResetRefusals(t, mk(t)) })
		})
	}
}

func (f pwFixture) register(t *testing.T, email, password string) account.Account {
	t.Helper()
	a, err := f.api.Register(context.Background(), account.Registration{Email: email, Password: password, Name: "Ada Lovelace"})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func (f pwFixture) login(t *testing.T, email, password string) account.Session {
	t.Helper()
	s, err := f.api.Login(context.Background(), email, password)
	if err != nil {
		t.Fatalf("Login(%s): %v", email, err)
	}
	return s
}

func (f pwFixture) wantLoggedIn(t *testing.T, what, token string, want bool) {
	t.Helper()
	_, err := f.api.Authenticate(context.Background(), token)
	switch {
	case want && err != nil:
		t.Errorf("%s: Authenticate = %v, want the session alive", what, err)
	case !want && !errs.Is(errs.Unauthorized, err):
		t.Errorf("%s: Authenticate = %v, want Unauthorized", what, err)
	}
}

// resetJobs returns the password reset jobs in the outbox, oldest first.
func (f pwFixture) resetJobs(t *testing.T) []account.PasswordResetRequested {
	t.Helper()
	rows, err := f.db.QueryContext(context.Background(), `SELECT seq_id, payload FROM outbox WHERE subject = ? ORDER BY created_at, seq_id`,
		account.SubjectPasswordResetRequested)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []account.PasswordResetRequested
	for rows.Next() {
		var id, payload string
		if err := rows.Scan(&id, &payload); err != nil {
			t.Fatal(err)
		}
		var job account.PasswordResetRequested
		if err := json.Unmarshal([]byte(payload), &job); err != nil {
			t.Fatal(err)
		}
		if job.ResetID != id {
			t.Errorf("job id %q, reset id %q: want equal", id, job.ResetID)
		}
		out = append(out, job)
	}
	return out
}

func testChangePassword(t *testing.T, f pwFixture) {
	ctx := context.Background()
	a := f.register(t, "ada@example.com", "first password")
	here := f.login(t, "ada@example.com", "first password")
	phone := f.login(t, "ada@example.com", "first password")
	laptop := f.login(t, "ada@example.com", "first password")
	f.register(t, "bob@example.com", "bobs password")
	bob := f.login(t, "bob@example.com", "bobs password")

	for _, c := range []struct {
		what, current, next string
		kind                errs.Kind
	}{
		{"wrong current password", "not my password", "second password", errs.Forbidden},
		{"new password too short", "first password", "short", errs.Invalid},
		{"new password too long", "first password", strings.Repeat("x", 129), errs.Invalid},
		{"new password the same", "first password", "first password", errs.Invalid},
		{"empty current password", "", "second password", errs.Forbidden},
	} {
		err := f.api.ChangePassword(ctx, a.ID, here.Token, c.current, c.next)
		if !errs.Is(c.kind, err) {
			t.Errorf("%s: ChangePassword = %v, want %v", c.what, err, c.kind)
		}
	}
	// Nothing changed by the refusals.
	f.wantLoggedIn(t, "another session after refused changes", phone.Token, true)
	f.login(t, "ada@example.com", "first password")
	if err := f.api.ChangePassword(ctx, "acc_nobody", "", "first password", "second password"); !errs.Is(errs.NotFound, err) {
		t.Errorf("ChangePassword(unknown account) = %v, want NotFound", err)
	}

	if err := f.api.ChangePassword(ctx, a.ID, here.Token, "first password", "second password"); err != nil {
		t.Fatalf("ChangePassword: %v", err)
	}
	f.wantLoggedIn(t, "the session the change was made in", here.Token, true)
	f.wantLoggedIn(t, "another session of the account", phone.Token, false)
	f.wantLoggedIn(t, "a third session of the account", laptop.Token, false)
	f.wantLoggedIn(t, "another account's session", bob.Token, true)
	if _, err := f.api.Login(ctx, "ada@example.com", "first password"); !errs.Is(errs.Unauthorized, err) {
		t.Errorf("Login with the old password = %v, want Unauthorized", err)
	}
	f.login(t, "ada@example.com", "second password")
}

// tamper flips one character of the token's signed part.
func tamper(tok string) string {
	b := []byte(tok)
	if b[3] == 'A' {
		b[3] = 'B'
	} else {
		b[3] = 'A'
	}
	return string(b)
}

func testReset(t *testing.T, f pwFixture) {
	ctx := context.Background()
	a := f.register(t, "ada@example.com", "first password")
	s1 := f.login(t, "ada@example.com", "first password")
	s2 := f.login(t, "ada@example.com", "first password")

	// An unknown address: the same answer, and nothing sent.
	if err := f.api.RequestPasswordReset(ctx, "nobody@example.com"); err != nil {
		t.Errorf("RequestPasswordReset(unknown) = %v, want nil", err)
	}
	if jobs := f.resetJobs(t); len(jobs) != 0 {
		t.Fatalf("a reset for an unknown address enqueued %d jobs", len(jobs))
	}
	if err := f.api.RequestPasswordReset(ctx, "not an address"); !errs.Is(errs.Invalid, err) {
		t.Errorf("RequestPasswordReset(malformed) = %v, want Invalid", err)
	}
	// Addresses compare case-insensitively, as at login.
	if err := f.api.RequestPasswordReset(ctx, "  ADA@example.com "); err != nil {
		t.Fatal(err)
	}
	jobs := f.resetJobs(t)
	if len(jobs) != 1 {
		t.Fatalf("%d reset jobs, want 1", len(jobs))
	}
	job := jobs[0]
	now := f.clock.Now()
	if job.To != "ada@example.com" || job.Name != "Ada Lovelace" || job.Token == "" ||
		!job.RequestedAt.Equal(now) || !job.ExpiresAt.Equal(now.Add(account.ResetTTL)) {
		t.Errorf("job = %+v", job)
	}
	if strings.Contains(job.Token, a.ID) {
		t.Errorf("the token shows the account id in clear: %s", job.Token)
	}

	if err := f.api.CheckPasswordReset(ctx, job.Token); err != nil {
		t.Errorf("CheckPasswordReset = %v", err)
	}
	// A bad new password leaves the link usable.
	if _, err := f.api.ResetPassword(ctx, job.Token, "short"); !errs.Is(errs.Invalid, err) {
		t.Errorf("ResetPassword(short) = %v, want Invalid", err)
	}
	f.clock.Advance(account.ResetTTL - time.Second)
	got, err := f.api.ResetPassword(ctx, job.Token, "brand new password")
	if err != nil {
		t.Fatalf("ResetPassword: %v", err)
	}
	if got.ID != a.ID || got.Email != "ada@example.com" {
		t.Errorf("ResetPassword = %+v, want %+v", got, a)
	}
	f.wantLoggedIn(t, "a session from before the reset", s1.Token, false)
	f.wantLoggedIn(t, "another session from before the reset", s2.Token, false)
	if _, err := f.api.Login(ctx, "ada@example.com", "first password"); !errs.Is(errs.Unauthorized, err) {
		t.Errorf("Login with the old password = %v, want Unauthorized", err)
	}
	f.login(t, "ada@example.com", "brand new password")

	// Single use.
	if err := f.api.CheckPasswordReset(ctx, job.Token); !errs.Is(errs.Forbidden, err) {
		t.Errorf("CheckPasswordReset(used) = %v, want Forbidden", err)
	}
	if _, err := f.api.ResetPassword(ctx, job.Token, "third password"); !errs.Is(errs.Forbidden, err) {
		t.Errorf("ResetPassword(used) = %v, want Forbidden", err)
	}
	f.login(t, "ada@example.com", "brand new password")
}

func testResetRefusals(t *testing.T, f pwFixture) {
	ctx := context.Background()
	f.register(t, "ada@example.com", "first password")
	request := func() string {
		t.Helper()
		f.clock.Advance(time.Second) // jobs sort by the time asked
		if err := f.api.RequestPasswordReset(ctx, "ada@example.com"); err != nil {
			t.Fatal(err)
		}
		jobs := f.resetJobs(t)
		return jobs[len(jobs)-1].Token
	}
	wantInvalid := func(what, tok string) {
		t.Helper()
		err := f.api.CheckPasswordReset(ctx, tok)
		if !errs.Is(errs.Forbidden, err) || errs.Detail(err) != "this password reset link is no longer valid" {
			t.Errorf("%s: CheckPasswordReset = %v, want Forbidden with the one detail", what, err)
		}
		if _, err := f.api.ResetPassword(ctx, tok, "another password"); !errs.Is(errs.Forbidden, err) {
			t.Errorf("%s: ResetPassword = %v, want Forbidden", what, err)
		}
	}

	tok := request()
	if *f.kicks == 0 {
		t.Errorf("the outbox relay was not kicked")
	}
	wantInvalid("tampered", tamper(tok))
	body, _, _ := strings.Cut(tok, ".")
	wantInvalid("signature cut off", body)
	wantInvalid("signature of another token", body+"."+strings.Repeat("A", 43))
	wantInvalid("empty", "")
	wantInvalid("garbage", "a.b.c")
	wantInvalid("very long", strings.Repeat("x", 5000))
	// Signed with another secret (another shop): refused.
	otherDB := testenv.SQLite(t)
	otherStore, err := accountdb.Open(ctx, otherDB)
	if err != nil {
		t.Fatal(err)
	}
	other := account.NewService(otherStore, f.clock, account.WithArgonParams(cheap), account.WithResetSecret([]byte("another secret")))
	if _, err := other.Register(ctx, account.Registration{Email: "ada@example.com", Password: "first password", Name: "Ada"}); err != nil {
		t.Fatal(err)
	}
	if err := other.RequestPasswordReset(ctx, "ada@example.com"); err != nil {
		t.Fatal(err)
	}
	foreign := pwFixture{db: otherDB}.resetJobs(t)
	if len(foreign) != 1 {
		t.Fatalf("the other shop enqueued %d jobs", len(foreign))
	}
	wantInvalid("signed by another shop", foreign[0].Token)
	if err := f.api.CheckPasswordReset(ctx, tok); err != nil {
		t.Errorf("the link before the refusals: %v", err)
	}

	// Expired: not usable after ResetTTL.
	f.clock.Advance(account.ResetTTL)
	wantInvalid("expired", tok)

	// A password change voids the links sent before it.
	tok = request()
	s := f.login(t, "ada@example.com", "first password")
	if err := f.api.ChangePassword(ctx, s.Account.ID, s.Token, "first password", "changed password"); err != nil {
		t.Fatal(err)
	}
	wantInvalid("sent before a password change", tok)

	// A reset voids the account's other links.
	first, second := request(), request()
	if _, err := f.api.ResetPassword(ctx, second, "reset password"); err != nil {
		t.Fatal(err)
	}
	wantInvalid("sent before another link was used", first)
	f.login(t, "ada@example.com", "reset password")
}
