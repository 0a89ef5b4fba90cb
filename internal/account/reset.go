package account

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"log/slog"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/globomantics/globomantics/internal/platform/errs"
)

// ResetTTL is how long a password reset link stays valid after it is made.
const ResetTTL = 30 * time.Minute

// SubjectPasswordResetRequested is the job the account service enqueues
// (through its outbox, in the transaction that records the link) for the
// mail worker to send a password reset link: work-queue stream GLOBO_JOBS.
const SubjectPasswordResetRequested = "globo_jobs.password_reset"

// PasswordResetRequested is the payload of SubjectPasswordResetRequested:
// everything the mail worker needs to write the message, nothing it must
// look up. Token is the secret of the link; the mail worker puts it in the
// link and never logs it.
type PasswordResetRequested struct {
	ResetID     string    `json:"reset_id"` // names the message (idempotent re-sends)
	To          string    `json:"to"`       // the account's e-mail address
	Name        string    `json:"name"`     // the greeting's name
	Token       string    `json:"token"`    // the signed, single-use token of the link
	ExpiresAt   time.Time `json:"expires_at"`
	RequestedAt time.Time `json:"requested_at"`
}

// PasswordReset is a reset link as the store keeps it: its id (the random
// part of the token) and account, never the token.
type PasswordReset struct {
	ID        string
	AccountID string
	CreatedAt time.Time
	ExpiresAt time.Time
}

// Credentials is met by an account store that can change passwords and keep
// password reset links (the SQL store). Every method keeps the change on
// the account's own node, in one transaction.
type Credentials interface {
	// GetPasswordHash returns the account's PHC-format hash. errs.NotFound.
	GetPasswordHash(ctx context.Context, accountID string) (string, error)
	// SetPassword stores the account's new hash and voids every reset link
	// of the account not used yet (as used at now). errs.NotFound.
	SetPassword(ctx context.Context, accountID, hash string, now time.Time) error
	// CreatePasswordReset records r and, in the same transaction, writes
	// job to the outbox under the subject SubjectPasswordResetRequested
	// with the event id r.ID. errs.NotFound for an unknown account.
	CreatePasswordReset(ctx context.Context, r PasswordReset, job PasswordResetRequested) error
	// CheckPasswordReset reports whether the link exists, belongs to the
	// account, is unused and has not expired at now: errs.NotFound if not.
	CheckPasswordReset(ctx context.Context, id, accountID string, now time.Time) error
	// UsePasswordReset marks the link used at now, stores the account's
	// new hash and voids the account's other unused links, in one
	// transaction: errs.NotFound (and nothing changes) when the link does
	// not exist, belongs to another account, was used or has expired.
	UsePasswordReset(ctx context.Context, id, accountID, hash string, now time.Time) error
}

// WithResetSecret sets the key that signs password reset tokens
// (HMAC-SHA256). Every instance of the service must be given the same one;
// changing it invalidates the links sent before. Without it the service
// makes a random one: links then work only on this instance, until it
// stops.
func WithResetSecret(key []byte) Option {
	return func(s *Service) { s.resetKey = bytes.Clone(key) }
}

// WithKick sets a function the service calls after writing to its outbox
// (a password reset job), to wake the outbox relay; nil means none.
func WithKick(kick func()) Option {
	return func(s *Service) { s.kick = kick }
}

// errResetInvalid is the one answer to a reset token that is unknown,
// tampered with, expired or used: the caller cannot tell which.
func errResetInvalid(op string, cause error) error {
	return errs.E(op, errs.Forbidden, errs.Msg("this password reset link is no longer valid"), cause)
}

// errNoCredentials is the error of a password call on a service whose
// store cannot change passwords: a wiring mistake.
var errNoCredentials = errs.E(errors.New("account: the Store does not implement account.Credentials"))

// Token layout (before base64url): version (1 byte), expiry in Unix seconds
// (8 bytes), the reset id's random bytes (16), the account id (the rest);
// then "." and the base64url HMAC-SHA256 of those bytes. The account id
// lets a sharded store find the link's node from the token alone.
const (
	tokenVersion = 1
	resetIDBytes = 16
	tokenHeader  = 1 + 8 + resetIDBytes
	maxResetTok  = 512
)

type resetClaims struct {
	id        string // hex of the random bytes
	accountID string
	expires   time.Time
}

func (s *Service) signReset(c resetClaims, random []byte) string {
	b := make([]byte, 0, tokenHeader+len(c.accountID))
	b = append(b, tokenVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(c.expires.Unix()))
	b = append(b, random...)
	b = append(b, c.accountID...)
	m := hmac.New(sha256.New, s.resetKey)
	m.Write(b)
	return base64.RawURLEncoding.EncodeToString(b) + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// parseReset checks token's signature and expiry and returns its claims;
// errResetInvalid otherwise.
func (s *Service) parseReset(op, token string) (resetClaims, error) {
	if len(token) > maxResetTok {
		return resetClaims{}, errResetInvalid(op, nil)
	}
	body, sig, ok := strings.Cut(token, ".")
	if !ok {
		return resetClaims{}, errResetInvalid(op, nil)
	}
	b, err1 := base64.RawURLEncoding.DecodeString(body)
	mac, err2 := base64.RawURLEncoding.DecodeString(sig)
	if err1 != nil || err2 != nil || len(b) <= tokenHeader || b[0] != tokenVersion {
		return resetClaims{}, errResetInvalid(op, nil)
	}
	m := hmac.New(sha256.New, s.resetKey)
	m.Write(b)
	if !hmac.Equal(mac, m.Sum(nil)) {
		return resetClaims{}, errResetInvalid(op, errors.New("bad signature"))
	}
	c := resetClaims{
		expires:   time.Unix(int64(binary.BigEndian.Uint64(b[1:9])), 0).UTC(),
		id:        hex.EncodeToString(b[9:tokenHeader]),
		accountID: string(b[tokenHeader:]),
	}
	if !plausibleID(c.accountID) {
		return resetClaims{}, errResetInvalid(op, nil)
	}
	if !s.clock.Now().Before(c.expires) {
		return resetClaims{}, errResetInvalid(op, errors.New("expired"))
	}
	return c, nil
}

func (s *Service) credentials() (Credentials, error) {
	if s.creds == nil {
		return nil, errNoCredentials
	}
	return s.creds, nil
}

// RequestPasswordReset sends the account with the e-mail a password reset
// link valid for ResetTTL, through the mail worker: it records the link and
// enqueues the e-mail job in one transaction. An e-mail that belongs to no
// account is not an error (nothing is sent), so that the answer never tells
// whether an account exists. errs.Invalid for a malformed e-mail.
func (s *Service) RequestPasswordReset(ctx context.Context, email string) error {
	const op = "account.RequestPasswordReset"
	norm, err := normalizeEmail(email)
	if err != nil {
		return errs.E(op, err)
	}
	creds, err := s.credentials()
	if err != nil {
		return errs.E(op, err)
	}
	stored, err := s.store.GetAccountByEmail(ctx, norm)
	if errs.Is(errs.NotFound, err) {
		return nil
	}
	if err != nil {
		return errs.E(op, err)
	}
	now := s.clock.Now().UTC().Truncate(time.Millisecond)
	random := make([]byte, resetIDBytes)
	if _, err := rand.Read(random); err != nil {
		return errs.E(op, err)
	}
	// The expiry is signed to the second; the row keeps the same instant.
	exp := now.Add(ResetTTL).Truncate(time.Second)
	c := resetClaims{id: hex.EncodeToString(random), accountID: stored.ID, expires: exp}
	token := s.signReset(c, random)
	r := PasswordReset{ID: c.id, AccountID: stored.ID, CreatedAt: now, ExpiresAt: exp}
	job := PasswordResetRequested{ResetID: r.ID, To: stored.Email, Name: stored.Name, Token: token, ExpiresAt: exp, RequestedAt: now}
	if err := creds.CreatePasswordReset(ctx, r, job); err != nil {
		if errs.Is(errs.NotFound, err) { // deleted meanwhile: as if unknown
			return nil
		}
		return errs.E(op, err)
	}
	if s.kick != nil {
		s.kick()
	}
	return nil
}

// CheckPasswordReset reports whether token is a reset link that can still
// be used: nil if so, errs.Forbidden (one detail for every reason) if it is
// unknown, tampered with, expired or used. It changes nothing.
func (s *Service) CheckPasswordReset(ctx context.Context, token string) error {
	const op = "account.CheckPasswordReset"
	c, err := s.parseReset(op, token)
	if err != nil {
		return err
	}
	creds, err := s.credentials()
	if err != nil {
		return errs.E(op, err)
	}
	if err := creds.CheckPasswordReset(ctx, c.id, c.accountID, s.clock.Now()); err != nil {
		if errs.Is(errs.NotFound, err) {
			return errResetInvalid(op, err)
		}
		return errs.E(op, err)
	}
	return nil
}

// ResetPassword sets a new password with a reset link: it marks the link
// used, stores the new password, voids the account's other links and ends
// every session of the account, and returns the account (the caller may
// then log the customer in). errs.Forbidden (one detail for every reason)
// for a token that is unknown, tampered with, expired or used;
// errs.Invalid for a password of other than 8..128 characters (the link
// stays usable).
func (s *Service) ResetPassword(ctx context.Context, token, newPassword string) (Account, error) {
	const op = "account.ResetPassword"
	c, err := s.parseReset(op, token)
	if err != nil {
		return Account{}, err
	}
	if err := validatePassword(newPassword); err != nil {
		return Account{}, errs.E(op, err)
	}
	creds, err := s.credentials()
	if err != nil {
		return Account{}, errs.E(op, err)
	}
	hash, err := s.hashPassword(ctx, newPassword)
	if err != nil {
		return Account{}, errs.E(op, err)
	}
	if err := creds.UsePasswordReset(ctx, c.id, c.accountID, hash, s.clock.Now()); err != nil {
		if errs.Is(errs.NotFound, err) {
			return Account{}, errResetInvalid(op, err)
		}
		return Account{}, errs.E(op, err)
	}
	if _, err := s.sessions.DeleteAccountSessions(ctx, c.accountID); err != nil {
		// The password is changed; the old sessions must still end. The
		// caller sees the failure and the customer may try again (with
		// a new link: this one is used).
		return Account{}, errs.E(op, errs.Msg("the password was changed but older sessions could not be ended"), err)
	}
	a, err := s.store.GetAccount(ctx, c.accountID)
	if err != nil {
		return Account{}, errs.E(op, err)
	}
	return a, nil
}

// ChangePassword replaces the password of the account after checking the
// current one, voids its unused reset links and ends every session of the
// account except keepToken's (the caller's own, which stays logged in; ""
// keeps none). errs.Forbidden when current is not the account's password;
// errs.Invalid for a new password of other than 8..128 characters or equal
// to the current one; errs.NotFound for an unknown account.
func (s *Service) ChangePassword(ctx context.Context, accountID, keepToken, current, newPassword string) error {
	const op = "account.ChangePassword"
	if !plausibleID(accountID) {
		return errs.E(op, errs.NotFound, errs.Msg("account not found"))
	}
	if err := validatePassword(newPassword); err != nil {
		return errs.E(op, err)
	}
	creds, err := s.credentials()
	if err != nil {
		return errs.E(op, err)
	}
	old, err := creds.GetPasswordHash(ctx, accountID)
	if err != nil {
		return errs.E(op, err)
	}
	if len(current) > 4*MaxPasswordLen || !utf8.ValidString(current) {
		return errs.E(op, errs.Forbidden, errs.Msg("the current password is incorrect"))
	}
	ok, err := s.verifyPassword(ctx, old, current)
	if err != nil {
		return errs.E(op, err)
	}
	if !ok {
		return errs.E(op, errs.Forbidden, errs.Msg("the current password is incorrect"))
	}
	if current == newPassword {
		return errs.E(op, errs.Invalid, errs.Msg("the new password must differ from the current one"))
	}
	hash, err := s.hashPassword(ctx, newPassword)
	if err != nil {
		return errs.E(op, err)
	}
	if err := creds.SetPassword(ctx, accountID, hash, s.clock.Now()); err != nil {
		return errs.E(op, err)
	}
	keep := ""
	if plausibleToken(keepToken) {
		keep = SessionKey(keepToken)
	}
	n, err := s.sessions.DeleteOtherSessions(ctx, accountID, keep)
	if err != nil {
		return errs.E(op, errs.Msg("the password was changed but older sessions could not be ended"), err)
	}
	slog.DebugContext(ctx, "password changed; other sessions ended", "sessions", n)
	return nil
}
