package account

import (
	"context"
	"errors"
	"time"

	"github.com/globomantics/globomantics/internal/platform/errs"
)

// SessionStore keeps login sessions, apart from the accounts they belong
// to: the SQL store keeps them next to the accounts (accountdb), Redis keeps
// them when the shop runs with one (accountredis). Sessions are named by
// their token's hash when created (StoredSession.TokenHash) and by a session
// key (SessionKey) afterwards; a store takes a bare hash as a key too.
//
// A store may forget a session once it has expired (Redis does, by its own
// clock); the service checks the expiry of what it gets either way.
// Network or server failures are errs.Unavailable. The conformance suite is
// sessiontest.Run.
type SessionStore interface {
	// CreateSession stores s. It is an error (errs.Conflict in the stores
	// of this repository) when a session with the same token hash exists,
	// which is then left alone. A store that keeps accounts may refuse a
	// session of an unknown account with errs.NotFound.
	CreateSession(ctx context.Context, s StoredSession) error
	// LookupSession returns the session with the session key, expired or
	// not if the store still has it. errs.NotFound.
	LookupSession(ctx context.Context, key string) (StoredSession, error)
	// ExtendSession moves the session's expiry to expiresAt if that is
	// later; an unknown session is not an error (and is not created).
	ExtendSession(ctx context.Context, key string, expiresAt time.Time) error
	// DeleteSession deletes the session; an unknown session is not an
	// error.
	DeleteSession(ctx context.Context, key string) error
	// DeleteAccountSessions deletes every session of the account and
	// reports how many it deleted (live or expired; a store that forgets
	// expired sessions by itself counts only those it still had).
	DeleteAccountSessions(ctx context.Context, accountID string) (int64, error)
	// DeleteOtherSessions deletes every session of the account except the
	// one named by the session key keep ("" keeps none: it is then
	// DeleteAccountSessions) and reports how many it deleted. The kept
	// session is left as it was; a key naming no session of the account
	// keeps nothing.
	DeleteOtherSessions(ctx context.Context, accountID, keep string) (int64, error)
	// DeleteExpiredSessions deletes sessions that expired at or before now
	// and reports how many it deleted; a store whose sessions expire by
	// themselves deletes nothing and reports 0.
	DeleteExpiredSessions(ctx context.Context, now time.Time) (int64, error)
}

// sessionJoiner is met by a session store that keeps the accounts too and
// can read a session and its account in one go (the SQL store's join);
// the service then saves the second read.
type sessionJoiner interface {
	GetSession(ctx context.Context, key string) (StoredSession, Account, error)
}

// WithSessionStore makes the service keep its sessions in ss instead of in
// the account store (which then need not keep sessions at all).
func WithSessionStore(ss SessionStore) Option {
	return func(s *Service) { s.sessions = ss }
}

// noSessions is the session store of a service given none: every call fails
// with an internal error naming the mistake.
type noSessions struct{}

var errNoSessions = errs.E(errors.New("account: no session store configured (the Store keeps no sessions and no WithSessionStore was given)"))

func (noSessions) CreateSession(context.Context, StoredSession) error { return errNoSessions }
func (noSessions) LookupSession(context.Context, string) (StoredSession, error) {
	return StoredSession{}, errNoSessions
}
func (noSessions) ExtendSession(context.Context, string, time.Time) error { return errNoSessions }
func (noSessions) DeleteSession(context.Context, string) error            { return errNoSessions }
func (noSessions) DeleteAccountSessions(context.Context, string) (int64, error) {
	return 0, errNoSessions
}
func (noSessions) DeleteOtherSessions(context.Context, string, string) (int64, error) {
	return 0, errNoSessions
}
func (noSessions) DeleteExpiredSessions(context.Context, time.Time) (int64, error) {
	return 0, errNoSessions
}

// MigratingSessions is a SessionStore that keeps new sessions in primary
// while still honouring those an older store (legacy) holds, so that moving
// sessions from one store to another (SQL to Redis, or back) logs nobody
// out: a session not in primary is looked for in legacy, and is extended or
// deleted where it is; deleting an account's sessions or the expired ones
// deletes them from both. Drop it for primary alone once SessionTTL has
// passed since the move.
type MigratingSessions struct {
	Primary SessionStore
	Legacy  SessionStore
}

var _ SessionStore = MigratingSessions{}

// CreateSession creates s in the primary store.
func (m MigratingSessions) CreateSession(ctx context.Context, s StoredSession) error {
	return m.Primary.CreateSession(ctx, s)
}

// LookupSession looks in the primary store, then, for a session it does not
// have, in the legacy one. errs.NotFound when neither has it.
func (m MigratingSessions) LookupSession(ctx context.Context, key string) (StoredSession, error) {
	s, err := m.Primary.LookupSession(ctx, key)
	if !errs.Is(errs.NotFound, err) {
		return s, err
	}
	return m.Legacy.LookupSession(ctx, key)
}

// ExtendSession extends the session in the store that has it.
func (m MigratingSessions) ExtendSession(ctx context.Context, key string, expiresAt time.Time) error {
	if _, err := m.Primary.LookupSession(ctx, key); !errs.Is(errs.NotFound, err) {
		if err != nil {
			return err
		}
		return m.Primary.ExtendSession(ctx, key, expiresAt)
	}
	return m.Legacy.ExtendSession(ctx, key, expiresAt)
}

// DeleteSession deletes the session from both stores.
func (m MigratingSessions) DeleteSession(ctx context.Context, key string) error {
	return errors.Join(m.Primary.DeleteSession(ctx, key), m.Legacy.DeleteSession(ctx, key))
}

// DeleteAccountSessions deletes the account's sessions from both stores.
func (m MigratingSessions) DeleteAccountSessions(ctx context.Context, accountID string) (int64, error) {
	n, err := m.Primary.DeleteAccountSessions(ctx, accountID)
	ln, lerr := m.Legacy.DeleteAccountSessions(ctx, accountID)
	return n + ln, errors.Join(err, lerr)
}

// DeleteOtherSessions deletes the account's sessions but keep from both
// stores.
func (m MigratingSessions) DeleteOtherSessions(ctx context.Context, accountID, keep string) (int64, error) {
	n, err := m.Primary.DeleteOtherSessions(ctx, accountID, keep)
	ln, lerr := m.Legacy.DeleteOtherSessions(ctx, accountID, keep)
	return n + ln, errors.Join(err, lerr)
}

// DeleteExpiredSessions deletes expired sessions from both stores.
func (m MigratingSessions) DeleteExpiredSessions(ctx context.Context, now time.Time) (int64, error) {
	n, err := m.Primary.DeleteExpiredSessions(ctx, now)
	ln, lerr := m.Legacy.DeleteExpiredSessions(ctx, now)
	return n + ln, errors.Join(err, lerr)
}
