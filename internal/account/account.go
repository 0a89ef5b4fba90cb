// Package account is the account service: registration, login sessions and
// profiles. It owns the accounts and sessions tables; passwords are hashed
// with argon2id and session tokens are stored only as SHA-256 hashes.
package account

import (
	"context"
	"time"
)

// Account is a customer account. It never carries the password hash.
type Account struct {
	ID    string `json:"id"`
	Email string `json:"email"`
	Name  string `json:"name"`
}

// Registration is the input to Register.
type Registration struct {
	Email    string `json:"email"`
	Password string `json:"password"`
	Name     string `json:"name"`
}

// Session is a logged-in session: the secret token (sent to the browser in an
// HttpOnly cookie) and the account it belongs to.
type Session struct {
	Token     string    `json:"token"`
	Account   Account   `json:"account"`
	ExpiresAt time.Time `json:"expires_at"`
}

// SessionTTL is how long a session lives without use.
const SessionTTL = 30 * 24 * time.Hour

// API is the account service's contract, met by *Service in process and by
// *Client over HTTP.
//
//   - Register: errs.Invalid for a malformed email, a password shorter than 8
//     characters or an empty name; errs.Conflict when the email is taken
//     (emails compare case-insensitively).
//   - Login: errs.Unauthorized for an unknown email or a wrong password (same
//     detail for both).
//   - Logout: deleting an unknown token is not an error.
//   - Authenticate: errs.Unauthorized for an unknown or expired token.
//   - GetAccount: errs.NotFound.
//   - UpdateProfile: errs.Invalid for an empty name; errs.NotFound.
//   - ChangePassword: errs.Forbidden for a wrong current password;
//     errs.Invalid for a bad new one; errs.NotFound. Ends every session of
//     the account but keepToken's.
//   - RequestPasswordReset: errs.Invalid for a malformed email; an unknown
//     email is not an error (nothing is sent).
//   - CheckPasswordReset, ResetPassword: errs.Forbidden for a link that is
//     unknown, tampered with, expired or used; ResetPassword: errs.Invalid
//     for a bad new password. ResetPassword ends every session.
type API interface {
	Register(ctx context.Context, r Registration) (Account, error)
	Login(ctx context.Context, email, password string) (Session, error)
	Logout(ctx context.Context, token string) error
	Authenticate(ctx context.Context, token string) (Account, error)
	GetAccount(ctx context.Context, id string) (Account, error)
	UpdateProfile(ctx context.Context, id, name string) (Account, error)
	ChangePassword(ctx context.Context, accountID, keepToken, current, newPassword string) error
	RequestPasswordReset(ctx context.Context, email string) error
	CheckPasswordReset(ctx context.Context, token string) error
	ResetPassword(ctx context.Context, token, newPassword string) (Account, error)
}
