// Package sessiontest is the conformance suite of account.SessionStore: every
// implementation (the SQL store, the Redis store, on one server or behind
// Sentinel) runs the same tests.
package sessiontest

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/account"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/ids"
	"github.com/globomantics/globomantics/internal/platform/shard"
)

// AccountCreator is met by a session store that keeps accounts too and
// refuses sessions of unknown accounts (the SQL store): the suite creates
// the accounts its sessions belong to through it.
type AccountCreator interface {
	CreateAccount(ctx context.Context, a account.StoredAccount) error
}

// Run runs the suite against stores made by mk, which returns a new, empty
// store for each test. The stores tell expiry by the real clock (sessions
// expire in the suite's real time: Redis counts expiries down by its own).
func Run(t *testing.T, mk func(t *testing.T) account.SessionStore) {
	t.Run("CreateLookup", func(t *testing.T) { testCreateLookup(t, mk(t)) })
	t.Run("Duplicate", func(t *testing.T) { testDuplicate(t, mk(t)) })
	t.Run("Extend", func(t *testing.T) { testExtend(t, mk(t)) })
	t.Run("Delete", func(t *testing.T) { testDelete(t, mk(t)) })
	t.Run("DeleteAccountSessions", func(t *testing.T) { testDeleteAccount(t, mk(t)) })
	t.Run("DeleteOtherSessions", func(t *testing.T) { testDeleteOthers(t, mk(t)) })
	t.Run("Expiry", func(t *testing.T) { testExpiry(t, mk(t)) })
	t.Run("Concurrent", func(t *testing.T) { testConcurrent(t, mk(t)) })
}

// fixture creates accounts (when the store needs them) and sessions.
type fixture struct {
	t     *testing.T
	s     account.SessionStore
	ctx   context.Context
	now   time.Time
	known map[string]bool
}

func newFixture(t *testing.T, s account.SessionStore) *fixture {
	return &fixture{t: t, s: s, ctx: context.Background(), now: time.Now().UTC().Truncate(time.Millisecond), known: map[string]bool{}}
}

// account makes sure the account exists where the store needs it.
func (f *fixture) account(id string) {
	f.t.Helper()
	c, ok := f.s.(AccountCreator)
	if !ok || f.known[id] {
		return
	}
	f.known[id] = true
	err := c.CreateAccount(f.ctx, account.StoredAccount{
		Account:      account.Account{ID: id, Email: strings.ToLower(id) + "@example.com", Name: id},
		PasswordHash: "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$" + id,
		CreatedAt:    f.now,
	})
	if err != nil {
		f.t.Fatalf("CreateAccount(%s): %v", id, err)
	}
}

// session is a new session of the account expiring after ttl, with the key
// the service would name it by (the hash and the account's shard).
func (f *fixture) session(accountID string, ttl time.Duration) (account.StoredSession, string) {
	f.t.Helper()
	f.account(accountID)
	key := account.SessionKey(ids.TokenInShard(uint16(shard.ForUser(accountID))))
	hash, _, _ := strings.Cut(key, ".")
	return account.StoredSession{TokenHash: hash, AccountID: accountID, CreatedAt: f.now, ExpiresAt: f.now.Add(ttl)}, key
}

func (f *fixture) create(s account.StoredSession) {
	f.t.Helper()
	if err := f.s.CreateSession(f.ctx, s); err != nil {
		f.t.Fatalf("CreateSession(%+v): %v", s, err)
	}
}

func same(a, b account.StoredSession) bool {
	return a.TokenHash == b.TokenHash && a.AccountID == b.AccountID &&
		a.CreatedAt.Equal(b.CreatedAt) && a.ExpiresAt.Equal(b.ExpiresAt)
}

func (f *fixture) wantSession(what, key string, want account.StoredSession) {
	f.t.Helper()
	got, err := f.s.LookupSession(f.ctx, key)
	if err != nil || !same(got, want) {
		f.t.Errorf("%s: LookupSession = %+v, %v; want %+v", what, got, err, want)
	}
}

func (f *fixture) wantGone(what, key string) {
	f.t.Helper()
	if got, err := f.s.LookupSession(f.ctx, key); !errs.Is(errs.NotFound, err) {
		f.t.Errorf("%s: LookupSession = %+v, %v; want NotFound", what, got, err)
	}
}

func testCreateLookup(t *testing.T, s account.SessionStore) {
	f := newFixture(t, s)
	sess, key := f.session("acc_ada", time.Hour)
	f.create(sess)
	f.wantSession("by key", key, sess)
	f.wantSession("by bare hash", sess.TokenHash, sess)
	f.wantGone("unknown key", account.SessionKey("no such token"))
	f.wantGone("unknown hash", strings.Repeat("0", 64))

	// Times are kept to the millisecond.
	other, okey := f.session("acc_ada", time.Hour)
	other.CreatedAt = other.CreatedAt.Add(123456 * time.Nanosecond)
	f.create(other)
	other.CreatedAt = other.CreatedAt.Truncate(time.Millisecond)
	f.wantSession("sub-millisecond creation time", okey, other)
}

func testDuplicate(t *testing.T, s account.SessionStore) {
	f := newFixture(t, s)
	sess, key := f.session("acc_dup", time.Hour)
	f.create(sess)
	dup := sess
	dup.CreatedAt = sess.CreatedAt.Add(time.Second)
	dup.ExpiresAt = sess.ExpiresAt.Add(9 * time.Hour)
	err := s.CreateSession(f.ctx, dup)
	if !errs.Is(errs.Conflict, err) {
		t.Errorf("duplicate token hash: CreateSession = %v, want Conflict", err)
	}
	f.wantSession("after a rejected duplicate", key, sess)
}

func testExtend(t *testing.T, s account.SessionStore) {
	f := newFixture(t, s)
	sess, key := f.session("acc_ext", time.Hour)
	f.create(sess)
	for _, d := range []time.Duration{3 * time.Hour, 2 * time.Hour} { // later, then earlier
		if err := s.ExtendSession(f.ctx, key, f.now.Add(d)); err != nil {
			t.Fatalf("ExtendSession(+%v) = %v", d, err)
		}
	}
	sess.ExpiresAt = f.now.Add(3 * time.Hour)
	f.wantSession("extended to +3h, then asked for +2h", key, sess)
	// By bare hash too.
	if err := s.ExtendSession(f.ctx, sess.TokenHash, f.now.Add(4*time.Hour)); err != nil {
		t.Fatal(err)
	}
	sess.ExpiresAt = f.now.Add(4 * time.Hour)
	f.wantSession("extended by bare hash", key, sess)

	// An unknown session is not an error and is not created.
	_, unknown := f.session("acc_ext", time.Hour)
	if err := s.ExtendSession(f.ctx, unknown, f.now.Add(time.Hour)); err != nil {
		t.Errorf("ExtendSession(unknown) = %v", err)
	}
	f.wantGone("extended unknown session", unknown)
}

func testDelete(t *testing.T, s account.SessionStore) {
	f := newFixture(t, s)
	a, akey := f.session("acc_del", time.Hour)
	b, bkey := f.session("acc_del", time.Hour)
	f.create(a)
	f.create(b)
	if err := s.DeleteSession(f.ctx, akey); err != nil {
		t.Fatal(err)
	}
	f.wantGone("deleted", akey)
	f.wantSession("the account's other session", bkey, b)
	if err := s.DeleteSession(f.ctx, akey); err != nil {
		t.Errorf("deleting twice = %v", err)
	}
	if err := s.DeleteSession(f.ctx, b.TokenHash); err != nil {
		t.Fatal(err)
	}
	f.wantGone("deleted by bare hash", bkey)
	// A deleted session's hash may not be used again by accident: creating
	// it anew works (the store keeps no tombstone).
	f.create(a)
	f.wantSession("created again after delete", akey, a)
}

func testDeleteAccount(t *testing.T, s account.SessionStore) {
	f := newFixture(t, s)
	var keys []string
	for range 3 {
		sess, key := f.session("acc_many", time.Hour)
		f.create(sess)
		keys = append(keys, key)
	}
	other, okey := f.session("acc_other", time.Hour)
	f.create(other)
	// One of the three logged out on its own already.
	if err := s.DeleteSession(f.ctx, keys[0]); err != nil {
		t.Fatal(err)
	}
	n, err := s.DeleteAccountSessions(f.ctx, "acc_many")
	if err != nil || n != 2 {
		t.Errorf("DeleteAccountSessions = %d, %v; want 2", n, err)
	}
	for _, k := range keys {
		f.wantGone("session of an account logged out everywhere", k)
	}
	f.wantSession("another account's session", okey, other)
	if n, err := s.DeleteAccountSessions(f.ctx, "acc_many"); err != nil || n != 0 {
		t.Errorf("DeleteAccountSessions again = %d, %v; want 0", n, err)
	}
	if n, err := s.DeleteAccountSessions(f.ctx, "acc_nobody"); err != nil || n != 0 {
		t.Errorf("DeleteAccountSessions(unknown) = %d, %v; want 0", n, err)
	}
	// The account logs in again afterwards.
	again, akey := f.session("acc_many", time.Hour)
	f.create(again)
	f.wantSession("new session after logging out everywhere", akey, again)
}

// testDeleteOthers: a password change ends every session of the account
// but the one it was made in, which stays as it was (and can still be
// extended, and deleted later); "" keeps none.
func testDeleteOthers(t *testing.T, s account.SessionStore) {
	f := newFixture(t, s)
	var (
		sessions []account.StoredSession
		keys     []string
	)
	for range 4 {
		sess, key := f.session("acc_pw", time.Hour)
		f.create(sess)
		sessions, keys = append(sessions, sess), append(keys, key)
	}
	other, okey := f.session("acc_bystander", time.Hour)
	f.create(other)

	n, err := s.DeleteOtherSessions(f.ctx, "acc_pw", keys[1])
	if err != nil || n != 3 {
		t.Errorf("DeleteOtherSessions = %d, %v; want 3", n, err)
	}
	for i, k := range keys {
		if i == 1 {
			f.wantSession("the kept session", k, sessions[1])
			continue
		}
		f.wantGone("another session of the account", k)
	}
	f.wantSession("another account's session", okey, other)
	if n, err := s.DeleteOtherSessions(f.ctx, "acc_pw", keys[1]); err != nil || n != 0 {
		t.Errorf("DeleteOtherSessions again = %d, %v; want 0", n, err)
	}
	// The kept session lives on as any other: extended, then logged out.
	later := sessions[1].ExpiresAt.Add(time.Hour)
	if err := s.ExtendSession(f.ctx, keys[1], later); err != nil {
		t.Fatal(err)
	}
	kept := sessions[1]
	kept.ExpiresAt = later
	f.wantSession("the kept session, extended", keys[1], kept)
	// A new session after the change, then every session but that one:
	// the one kept before goes too.
	fresh, fkey := f.session("acc_pw", time.Hour)
	f.create(fresh)
	if n, err := s.DeleteOtherSessions(f.ctx, "acc_pw", fkey); err != nil || n != 1 {
		t.Errorf("DeleteOtherSessions(keep the new one) = %d, %v; want 1", n, err)
	}
	f.wantGone("the session kept the first time", keys[1])
	f.wantSession("the new session", fkey, fresh)
	// A key naming no session of the account keeps nothing; "" neither.
	if n, err := s.DeleteOtherSessions(f.ctx, "acc_pw", okey); err != nil || n != 1 {
		t.Errorf("DeleteOtherSessions(another account's key) = %d, %v; want 1", n, err)
	}
	f.wantGone("the new session", fkey)
	f.wantSession("the bystander's session whose key was given", okey, other)
	again, akey := f.session("acc_pw", time.Hour)
	f.create(again)
	if n, err := s.DeleteOtherSessions(f.ctx, "acc_pw", ""); err != nil || n != 1 {
		t.Errorf("DeleteOtherSessions(keep none) = %d, %v; want 1", n, err)
	}
	f.wantGone("with nothing kept", akey)
	if n, err := s.DeleteOtherSessions(f.ctx, "acc_nobody", keys[0]); err != nil || n != 0 {
		t.Errorf("DeleteOtherSessions(unknown account) = %d, %v; want 0", n, err)
	}
}

func testExpiry(t *testing.T, s account.SessionStore) {
	f := newFixture(t, s)
	short, skey := f.session("acc_exp", 300*time.Millisecond)
	live, lkey := f.session("acc_exp", time.Hour)
	f.create(short)
	f.create(live)
	f.wantSession("before expiry", skey, short)

	// Once expired, the session is gone (by itself or by
	// DeleteExpiredSessions), or still there with its past expiry, which
	// the service refuses.
	deadline := time.Now().Add(5 * time.Second)
	for {
		now := time.Now()
		if !now.After(short.ExpiresAt) {
			time.Sleep(short.ExpiresAt.Sub(now) + time.Millisecond)
			continue
		}
		if _, err := s.DeleteExpiredSessions(f.ctx, now); err != nil {
			t.Fatalf("DeleteExpiredSessions = %v", err)
		}
		got, err := s.LookupSession(f.ctx, skey)
		if errs.Is(errs.NotFound, err) || (err == nil && !got.ExpiresAt.After(now)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("expired session still served: %+v, %v", got, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	f.wantSession("live session after the purge", lkey, live)
	// The expired session is removed (not just hidden): by
	// DeleteExpiredSessions, or by the store itself within a moment (Redis
	// counts an expiry from when the command reached it).
	for {
		if _, err := s.DeleteExpiredSessions(f.ctx, time.Now()); err != nil {
			t.Fatal(err)
		}
		_, err := s.LookupSession(f.ctx, skey)
		if errs.Is(errs.NotFound, err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("expired session not removed: LookupSession = %v, want NotFound", err)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// A session created already expired is never served as live.
	past, pkey := f.session("acc_exp", -time.Minute)
	if err := s.CreateSession(f.ctx, past); err != nil {
		t.Fatalf("CreateSession(expired) = %v", err)
	}
	if got, err := s.LookupSession(f.ctx, pkey); err == nil && got.ExpiresAt.After(time.Now()) {
		t.Errorf("session created expired is live: %+v", got)
	}
	// Extending an expired session into the future does not bring it
	// back in a store that forgets expired sessions; in one that keeps
	// them it may, like any extend (the service never extends an expired
	// session: it deletes it).
}

func testConcurrent(t *testing.T, s account.SessionStore) {
	f := newFixture(t, s)
	const n = 20
	sessions := make([]account.StoredSession, n)
	keys := make([]string, n)
	for i := range n {
		sessions[i], keys[i] = f.session("acc_busy", time.Hour)
	}
	var wg sync.WaitGroup
	errc := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.CreateSession(f.ctx, sessions[i]); err != nil {
				errc <- fmt.Errorf("session %d: %w", i, err)
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	for i := range n {
		f.wantSession(fmt.Sprintf("session %d", i), keys[i], sessions[i])
	}
	if got, err := s.DeleteAccountSessions(f.ctx, "acc_busy"); err != nil || got != n {
		t.Errorf("DeleteAccountSessions = %d, %v; want %d", got, err, n)
	}
}
