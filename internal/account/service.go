package account

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"net/mail"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/globomantics/globomantics/internal/platform/clock"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/ids"
	"github.com/globomantics/globomantics/internal/platform/shard"
)

// Limits on registration input.
const (
	MinPasswordLen = 8   // characters
	MaxPasswordLen = 128 // characters
	MaxNameLen     = 100 // characters, after trimming
	MaxEmailLen    = 254 // bytes, the longest address SMTP can carry
)

// sessionRefresh is how stale a session's expiry may get before Authenticate
// pushes it forward again; it bounds the writes a busy session causes to one
// per interval.
const sessionRefresh = time.Hour

// StoredAccount is an account as the store keeps it, with its password hash
// (a PHC-format argon2id string). It never leaves the service.
type StoredAccount struct {
	Account
	PasswordHash string
	CreatedAt    time.Time
}

// StoredSession is a session as the store keeps it: the SHA-256 of the token
// (hex), never the token itself.
type StoredSession struct {
	TokenHash string
	AccountID string
	CreatedAt time.Time
	ExpiresAt time.Time
}

// Store keeps accounts. Emails arrive already normalised (lower case); the
// store compares them exactly. Sessions are kept by a SessionStore: the
// account store itself when it implements one (as the SQL store does), or
// the one given by WithSessionStore.
type Store interface {
	// CreateAccount inserts a. errs.Conflict if the email is taken.
	CreateAccount(ctx context.Context, a StoredAccount) error
	// GetAccountByEmail returns the account with the email. errs.NotFound.
	GetAccountByEmail(ctx context.Context, email string) (StoredAccount, error)
	// GetAccount returns the account with the id. errs.NotFound.
	GetAccount(ctx context.Context, id string) (Account, error)
	// UpdateName sets the account's name and returns the account. errs.NotFound.
	UpdateName(ctx context.Context, id, name string) (Account, error)
}

// Service is the account service over a Store and a SessionStore. Safe for
// concurrent use.
type Service struct {
	store    Store
	sessions SessionStore
	creds    Credentials // nil when the store cannot change passwords
	resetKey []byte      // signs password reset tokens (reset.go)
	kick     func()      // wakes the outbox relay; may be nil
	clock    clock.Clock
	params   ArgonParams
	// hashSlots bounds concurrent argon2id computations: each one holds
	// params.Memory KiB, so a burst of logins must not exhaust memory.
	hashSlots chan struct{}

	dummyOnce sync.Once
	dummyHash string // hash of a random password, verified for unknown emails
}

var _ API = (*Service)(nil)

// Option configures a Service.
type Option func(*Service)

// WithArgonParams makes the service hash new passwords with p instead of
// DefaultArgonParams. Existing hashes keep verifying with the parameters
// recorded in them. Tests use it with cheap parameters.
func WithArgonParams(p ArgonParams) Option {
	return func(s *Service) { s.params = p }
}

// WithMaxConcurrentHashes bounds how many password hashes run at once (default
// GOMAXPROCS); callers beyond it wait, or give up when their context ends.
func WithMaxConcurrentHashes(n int) Option {
	return func(s *Service) {
		if n > 0 {
			s.hashSlots = make(chan struct{}, n)
		}
	}
}

// NewService returns the account service over store, telling time by clk.
// Sessions are kept by the WithSessionStore option's store or, without it,
// by store itself when it implements SessionStore; with neither, every
// session call fails (a wiring mistake, reported as an internal error).
func NewService(store Store, clk clock.Clock, opts ...Option) *Service {
	s := &Service{store: store, clock: clk, params: DefaultArgonParams}
	if ss, ok := store.(SessionStore); ok {
		s.sessions = ss
	}
	if cs, ok := store.(Credentials); ok {
		s.creds = cs
	}
	for _, o := range opts {
		o(s)
	}
	if s.sessions == nil {
		s.sessions = noSessions{}
	}
	if s.hashSlots == nil {
		s.hashSlots = make(chan struct{}, runtime.GOMAXPROCS(0))
	}
	if len(s.resetKey) == 0 {
		s.resetKey = make([]byte, 32)
		if _, err := rand.Read(s.resetKey); err != nil {
			panic(err) // crypto/rand never fails on supported platforms
		}
	}
	return s
}

// Register creates an account. errs.Invalid for a malformed email, a password
// of other than 8..128 characters or a name of other than 1..100 characters;
// errs.Conflict when the email is taken.
func (s *Service) Register(ctx context.Context, r Registration) (Account, error) {
	const op = "account.Register"
	email, err := normalizeEmail(r.Email)
	if err != nil {
		return Account{}, errs.E(op, err)
	}
	if err := validatePassword(r.Password); err != nil {
		return Account{}, errs.E(op, err)
	}
	name, err := normalizeName(r.Name)
	if err != nil {
		return Account{}, errs.E(op, err)
	}
	hash, err := s.hashPassword(ctx, r.Password)
	if err != nil {
		return Account{}, errs.E(op, err)
	}
	now := s.clock.Now()
	a := StoredAccount{
		Account:      Account{ID: ids.New("acc", now), Email: email, Name: name},
		PasswordHash: hash,
		CreatedAt:    now,
	}
	if err := s.store.CreateAccount(ctx, a); err != nil {
		if errs.Is(errs.Conflict, err) {
			return Account{}, errs.E(op, errs.Conflict, errs.Msg("an account with this email already exists"), err)
		}
		return Account{}, errs.E(op, err)
	}
	return a.Account, nil
}

// errBadCredentials is the one answer to every failed login, so that a caller
// cannot tell an unknown email from a wrong password.
func errBadCredentials(op string, cause error) error {
	return errs.E(op, errs.Unauthorized, errs.Msg("email or password is incorrect"), cause)
}

// Login checks the credentials and starts a session. errs.Unauthorized, with
// the same detail, for an unknown email or a wrong password. An unknown email
// costs the same password hashing as a known one.
func (s *Service) Login(ctx context.Context, email, password string) (Session, error) {
	const op = "account.Login"
	if len(password) > 4*MaxPasswordLen { // cannot be a valid password: refuse before hashing
		return Session{}, errBadCredentials(op, nil)
	}
	var stored StoredAccount
	norm, err := normalizeEmail(email)
	if err == nil {
		stored, err = s.store.GetAccountByEmail(ctx, norm)
		if err != nil && !errs.Is(errs.NotFound, err) {
			return Session{}, errs.E(op, err)
		}
	}
	if err != nil { // no such account: spend the hashing time anyway
		if _, verr := s.verifyPassword(ctx, s.dummy(), password); verr != nil {
			return Session{}, errs.E(op, verr)
		}
		return Session{}, errBadCredentials(op, err)
	}
	ok, err := s.verifyPassword(ctx, stored.PasswordHash, password)
	if err != nil {
		return Session{}, errs.E(op, err)
	}
	if !ok {
		return Session{}, errBadCredentials(op, nil)
	}
	now := s.clock.Now()
	// The token carries the account's shard, so a sharded store finds the
	// session's node from the token alone.
	token := ids.TokenInShard(uint16(shard.ForUser(stored.ID)))
	sess := StoredSession{
		TokenHash: hashToken(token),
		AccountID: stored.ID,
		CreatedAt: now,
		ExpiresAt: now.Add(SessionTTL).Truncate(time.Millisecond),
	}
	if err := s.sessions.CreateSession(ctx, sess); err != nil {
		return Session{}, errs.E(op, err)
	}
	return Session{Token: token, Account: stored.Account, ExpiresAt: sess.ExpiresAt}, nil
}

// Logout ends the session of token; an unknown token is not an error.
func (s *Service) Logout(ctx context.Context, token string) error {
	const op = "account.Logout"
	if !plausibleToken(token) {
		return nil
	}
	if err := s.sessions.DeleteSession(ctx, SessionKey(token)); err != nil {
		return errs.E(op, err)
	}
	return nil
}

// LogoutEverywhere ends every session of the account (after a password
// change, or at the customer's request) and reports how many it ended.
func (s *Service) LogoutEverywhere(ctx context.Context, accountID string) (int64, error) {
	const op = "account.LogoutEverywhere"
	if !plausibleID(accountID) {
		return 0, nil
	}
	n, err := s.sessions.DeleteAccountSessions(ctx, accountID)
	if err != nil {
		return n, errs.E(op, err)
	}
	return n, nil
}

// Authenticate returns the account of a live session and slides the session's
// expiry to SessionTTL from now (at most once an hour per session).
// errs.Unauthorized for an unknown or expired token; an expired session is
// deleted.
func (s *Service) Authenticate(ctx context.Context, token string) (Account, error) {
	const op = "account.Authenticate"
	unauthorized := func(cause error) error {
		return errs.E(op, errs.Unauthorized, errs.Msg("session is unknown or has expired"), cause)
	}
	if !plausibleToken(token) {
		return Account{}, unauthorized(nil)
	}
	th := SessionKey(token)
	sess, acc, err := s.session(ctx, th)
	if err != nil {
		if errs.Is(errs.NotFound, err) {
			return Account{}, unauthorized(err)
		}
		return Account{}, errs.E(op, err)
	}
	now := s.clock.Now()
	if !now.Before(sess.ExpiresAt) {
		if err := s.sessions.DeleteSession(ctx, th); err != nil {
			slog.WarnContext(ctx, "deleting expired session", "err", err)
		}
		return Account{}, unauthorized(nil)
	}
	if next := now.Add(SessionTTL).Truncate(time.Millisecond); next.Sub(sess.ExpiresAt) >= sessionRefresh {
		if err := s.sessions.ExtendSession(ctx, th, next); err != nil {
			// The session is valid as it stands; failing to extend it must
			// not log the customer out.
			slog.WarnContext(ctx, "extending session", "err", err)
		}
	}
	return acc, nil
}

// session returns the session with the key and its account: in one read
// when the session store can join them, else the session from the session
// store and its account from the account store. errs.NotFound when either
// is missing (a session whose account is gone is deleted).
func (s *Service) session(ctx context.Context, key string) (StoredSession, Account, error) {
	if j, ok := s.sessions.(sessionJoiner); ok {
		return j.GetSession(ctx, key)
	}
	sess, err := s.sessions.LookupSession(ctx, key)
	if err != nil {
		return StoredSession{}, Account{}, err
	}
	acc, err := s.store.GetAccount(ctx, sess.AccountID)
	if err != nil {
		if errs.Is(errs.NotFound, err) {
			if derr := s.sessions.DeleteSession(ctx, key); derr != nil {
				slog.WarnContext(ctx, "deleting the session of a missing account", "err", derr)
			}
		}
		return StoredSession{}, Account{}, err
	}
	return sess, acc, nil
}

// GetAccount returns the account with the id. errs.NotFound.
func (s *Service) GetAccount(ctx context.Context, id string) (Account, error) {
	const op = "account.GetAccount"
	if !plausibleID(id) {
		return Account{}, errs.E(op, errs.NotFound, errs.Msg("account not found"))
	}
	a, err := s.store.GetAccount(ctx, id)
	if err != nil {
		return Account{}, errs.E(op, err)
	}
	return a, nil
}

// UpdateProfile sets the account's display name. errs.Invalid for a name of
// other than 1..100 characters after trimming; errs.NotFound.
func (s *Service) UpdateProfile(ctx context.Context, id, name string) (Account, error) {
	const op = "account.UpdateProfile"
	name, err := normalizeName(name)
	if err != nil {
		return Account{}, errs.E(op, err)
	}
	if !plausibleID(id) {
		return Account{}, errs.E(op, errs.NotFound, errs.Msg("account not found"))
	}
	a, err := s.store.UpdateName(ctx, id, name)
	if err != nil {
		return Account{}, errs.E(op, err)
	}
	return a, nil
}

// PurgeExpiredSessions deletes every session that has expired and reports how
// many it deleted.
func (s *Service) PurgeExpiredSessions(ctx context.Context) (int64, error) {
	n, err := s.sessions.DeleteExpiredSessions(ctx, s.clock.Now())
	if err != nil {
		return 0, errs.E("account.PurgeExpiredSessions", err)
	}
	return n, nil
}

// RunSessionSweeper calls PurgeExpiredSessions every interval until ctx ends,
// logging failures to log. It returns when ctx is done.
func (s *Service) RunSessionSweeper(ctx context.Context, every time.Duration, log *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n, err := s.PurgeExpiredSessions(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			log.Warn("purging expired sessions", "err", err)
		case n > 0:
			log.Debug("purged expired sessions", "count", n)
		}
	}
}

// dummy returns a decoy hash with the service's parameters (see
// decoyHash), made on first use without hashing, so that verifying a
// password for an unknown email costs one verification, like a known one,
// from the first login on.
func (s *Service) dummy() string {
	s.dummyOnce.Do(func() {
		h, err := decoyHash(s.params)
		if err != nil {
			panic(err) // crypto/rand never fails on supported platforms
		}
		s.dummyHash = h
	})
	return s.dummyHash
}

// hashPassword hashes password with the service's parameters, waiting for a
// hashing slot.
func (s *Service) hashPassword(ctx context.Context, password string) (string, error) {
	if err := s.acquire(ctx); err != nil {
		return "", err
	}
	defer s.release()
	return encodeHash(s.params, password)
}

// verifyPassword reports whether password matches the encoded hash, waiting
// for a hashing slot.
func (s *Service) verifyPassword(ctx context.Context, encoded, password string) (bool, error) {
	if err := s.acquire(ctx); err != nil {
		return false, err
	}
	defer s.release()
	return verifyHash(encoded, password)
}

func (s *Service) acquire(ctx context.Context) error {
	select {
	case s.hashSlots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return errs.E(errs.Unavailable, errs.Msg("request cancelled"), ctx.Err())
	}
}

func (s *Service) release() { <-s.hashSlots }

// normalizeEmail trims and lower-cases email and checks it is a bare address
// (no display name, no angle brackets).
func normalizeEmail(email string) (string, error) {
	e := strings.ToLower(strings.TrimSpace(email))
	if e == "" {
		return "", errs.E(errs.Invalid, errs.Msg("email is required"))
	}
	if len(e) > MaxEmailLen {
		return "", errs.E(errs.Invalid, errs.Msg("email must be at most %d characters", MaxEmailLen))
	}
	addr, err := mail.ParseAddress(e)
	if err != nil || addr.Name != "" || addr.Address != e {
		return "", errs.E(errs.Invalid, errs.Msg("email is not a valid address"), err)
	}
	return e, nil
}

// validatePassword checks the password's length in characters. Passwords are
// taken as typed: no trimming.
func validatePassword(p string) error {
	if !utf8.ValidString(p) {
		return errs.E(errs.Invalid, errs.Msg("password must be valid UTF-8 text"))
	}
	if n := utf8.RuneCountInString(p); n < MinPasswordLen || n > MaxPasswordLen {
		return errs.E(errs.Invalid, errs.Msg("password must be %d to %d characters long", MinPasswordLen, MaxPasswordLen))
	}
	return nil
}

// normalizeName trims name and checks its length and characters.
func normalizeName(name string) (string, error) {
	n := strings.TrimSpace(name)
	if n == "" {
		return "", errs.E(errs.Invalid, errs.Msg("name is required"))
	}
	if !utf8.ValidString(n) {
		return "", errs.E(errs.Invalid, errs.Msg("name must be valid UTF-8 text"))
	}
	if utf8.RuneCountInString(n) > MaxNameLen {
		return "", errs.E(errs.Invalid, errs.Msg("name must be at most %d characters", MaxNameLen))
	}
	if strings.IndexFunc(n, unicode.IsControl) >= 0 {
		return "", errs.E(errs.Invalid, errs.Msg("name must not contain control characters"))
	}
	return n, nil
}

// hashToken is what the store keeps of a session token.
func hashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// SessionKey is how the service names a token's session to the store: the
// hex SHA-256 of the token, followed, when the token carries a shard
// (ids.TokenInShard: those made since sessions are sharded), by "." and the
// shard in decimal. The shard is not secret; the token's 32 random bytes
// are, and only their hash is stored.
func SessionKey(token string) string {
	h := hashToken(token)
	if sh, ok := shard.OfToken(token); ok {
		return h + "." + strconv.Itoa(int(sh))
	}
	return h
}

// ParseSessionKey splits a session key (SessionKey) into the token hash and
// the shard; ok is false for a key that names no shard (a bare hash, or
// anything else), which a sharded store looks for on every node.
func ParseSessionKey(key string) (hash string, sh shard.ID, ok bool) {
	h, num, found := strings.Cut(key, ".")
	if !found {
		return key, 0, false
	}
	n, err := strconv.Atoi(num)
	if err != nil || n < 0 || !shard.ID(n).Valid() || strconv.Itoa(n) != num {
		return key, 0, false
	}
	return h, shard.ID(n), true
}

// plausibleToken filters out strings that cannot be session tokens before
// they reach the store.
func plausibleToken(t string) bool { return t != "" && len(t) <= 256 }

// plausibleID filters out strings that cannot be account ids (and that a
// database would reject, such as invalid UTF-8) before they reach the store.
func plausibleID(id string) bool {
	return id != "" && len(id) <= 200 && utf8.ValidString(id) && !strings.ContainsRune(id, 0)
}
