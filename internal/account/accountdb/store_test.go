package accountdb_test

import (
	"context"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/account"
	"github.com/globomantics/globomantics/internal/account/accountdb"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func TestStore(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			db := b.Open(t)
			s, err := accountdb.Open(ctx, db)
			if err != nil {
				t.Fatal(err)
			}
			// Opening again (a second instance, or a restart) re-runs no migration.
			if _, err := accountdb.Open(ctx, db); err != nil {
				t.Fatalf("second Open: %v", err)
			}
			t.Run("accounts", func(t *testing.T) { testAccounts(t, s) })
			t.Run("sessions", func(t *testing.T) { testSessions(t, s) })
		})
	}
}

func stored(id, email, name string) account.StoredAccount {
	return account.StoredAccount{
		Account:      account.Account{ID: id, Email: email, Name: name},
		PasswordHash: "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$" + id,
		CreatedAt:    t0,
	}
}

func testAccounts(t *testing.T, s *accountdb.Store) {
	ctx := context.Background()
	a := stored("acc_1", "ada@example.com", "Ada")
	if err := s.CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetAccountByEmail(ctx, "ada@example.com")
	if err != nil {
		t.Fatal(err)
	}
	if got != a {
		t.Errorf("GetAccountByEmail = %+v, want %+v", got, a)
	}
	acc, err := s.GetAccount(ctx, "acc_1")
	if err != nil || acc != a.Account {
		t.Errorf("GetAccount = %+v, %v; want %+v", acc, err, a.Account)
	}

	// A second account with the same email is a conflict and writes nothing.
	err = s.CreateAccount(ctx, stored("acc_2", "ada@example.com", "Impostor"))
	if !errs.Is(errs.Conflict, err) {
		t.Fatalf("duplicate email: got %v, want Conflict", err)
	}
	if _, err := s.GetAccount(ctx, "acc_2"); !errs.Is(errs.NotFound, err) {
		t.Errorf("account of rejected insert: got %v, want NotFound", err)
	}
	if got, _ := s.GetAccountByEmail(ctx, "ada@example.com"); got.Name != "Ada" {
		t.Errorf("name after rejected duplicate = %q, want Ada", got.Name)
	}

	if _, err := s.GetAccount(ctx, "acc_nope"); !errs.Is(errs.NotFound, err) {
		t.Errorf("GetAccount(unknown): got %v, want NotFound", err)
	}
	if _, err := s.GetAccountByEmail(ctx, "nobody@example.com"); !errs.Is(errs.NotFound, err) {
		t.Errorf("GetAccountByEmail(unknown): got %v, want NotFound", err)
	}

	up, err := s.UpdateName(ctx, "acc_1", "Ada Lovelace")
	if err != nil {
		t.Fatal(err)
	}
	if want := (account.Account{ID: "acc_1", Email: "ada@example.com", Name: "Ada Lovelace"}); up != want {
		t.Errorf("UpdateName = %+v, want %+v", up, want)
	}
	if acc, _ := s.GetAccount(ctx, "acc_1"); acc.Name != "Ada Lovelace" {
		t.Errorf("name after update = %q", acc.Name)
	}
	if _, err := s.UpdateName(ctx, "acc_nope", "X"); !errs.Is(errs.NotFound, err) {
		t.Errorf("UpdateName(unknown): got %v, want NotFound", err)
	}
}

func testSessions(t *testing.T, s *accountdb.Store) {
	ctx := context.Background()
	a := stored("acc_s", "sam@example.com", "Sam")
	if err := s.CreateAccount(ctx, a); err != nil {
		t.Fatal(err)
	}
	sess := account.StoredSession{TokenHash: "h1", AccountID: "acc_s", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}
	if err := s.CreateSession(ctx, sess); err != nil {
		t.Fatal(err)
	}
	got, acc, err := s.GetSession(ctx, "h1")
	if err != nil {
		t.Fatal(err)
	}
	if got != sess || acc != a.Account {
		t.Errorf("GetSession = %+v, %+v; want %+v, %+v", got, acc, sess, a.Account)
	}
	if _, _, err := s.GetSession(ctx, "nope"); !errs.Is(errs.NotFound, err) {
		t.Errorf("GetSession(unknown): got %v, want NotFound", err)
	}

	// A session for a missing account is refused and not stored.
	err = s.CreateSession(ctx, account.StoredSession{TokenHash: "orphan", AccountID: "acc_gone", CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)})
	if !errs.Is(errs.NotFound, err) {
		t.Errorf("CreateSession(unknown account): got %v, want NotFound", err)
	}
	if _, _, err := s.GetSession(ctx, "orphan"); !errs.Is(errs.NotFound, err) {
		t.Errorf("orphan session was stored: %v", err)
	}
	// A duplicate token hash is an error and leaves the first session alone.
	if err := s.CreateSession(ctx, account.StoredSession{TokenHash: "h1", AccountID: "acc_s", CreatedAt: t0, ExpiresAt: t0.Add(9 * time.Hour)}); err == nil {
		t.Error("duplicate token hash accepted")
	}
	if got, _, _ := s.GetSession(ctx, "h1"); !got.ExpiresAt.Equal(t0.Add(time.Hour)) {
		t.Errorf("expiry after rejected duplicate = %v", got.ExpiresAt)
	}

	// Extending only ever moves the expiry later.
	if err := s.ExtendSession(ctx, "h1", t0.Add(3*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := s.ExtendSession(ctx, "h1", t0.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := s.GetSession(ctx, "h1"); !got.ExpiresAt.Equal(t0.Add(3 * time.Hour)) {
		t.Errorf("expiry after extend = %v, want %v", got.ExpiresAt, t0.Add(3*time.Hour))
	}
	if err := s.ExtendSession(ctx, "nope", t0); err != nil {
		t.Errorf("ExtendSession(unknown) = %v", err)
	}

	// Expired sessions are purged; live ones stay.
	for i, exp := range []time.Duration{time.Minute, 2 * time.Minute, 10 * time.Hour} {
		h := []string{"e1", "e2", "live"}[i]
		if err := s.CreateSession(ctx, account.StoredSession{TokenHash: h, AccountID: "acc_s", CreatedAt: t0, ExpiresAt: t0.Add(exp)}); err != nil {
			t.Fatal(err)
		}
	}
	n, err := s.DeleteExpiredSessions(ctx, t0.Add(2*time.Minute))
	if err != nil || n != 2 {
		t.Fatalf("DeleteExpiredSessions = %d, %v; want 2", n, err)
	}
	for h, want := range map[string]bool{"e1": false, "e2": false, "live": true, "h1": true} {
		_, _, err := s.GetSession(ctx, h)
		if exists := err == nil; exists != want {
			t.Errorf("session %s exists = %v (err %v), want %v", h, exists, err, want)
		}
	}

	if err := s.DeleteSession(ctx, "h1"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.GetSession(ctx, "h1"); !errs.Is(errs.NotFound, err) {
		t.Errorf("after delete: got %v, want NotFound", err)
	}
	if err := s.DeleteSession(ctx, "h1"); err != nil {
		t.Errorf("deleting twice = %v", err)
	}
}
