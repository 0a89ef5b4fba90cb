package account

import (
	"context"
	"net/http"
	"strings"

	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/httpx"
)

// Client is the account service's API over HTTP. Errors keep their errs kind
// and client-safe detail.
type Client struct {
	c *httpx.Client
}

var _ API = (*Client)(nil)

// NewClient returns a client of the account service reached through c.
func NewClient(c *httpx.Client) *Client { return &Client{c: c} }

// Register creates an account; see API.
func (c *Client) Register(ctx context.Context, r Registration) (Account, error) {
	var a Account
	err := c.c.Call(ctx, http.MethodPost, apiPrefix+"/accounts", r, &a)
	return a, err
}

// Login starts a session; see API.
func (c *Client) Login(ctx context.Context, email, password string) (Session, error) {
	var s Session
	err := c.c.Call(ctx, http.MethodPost, apiPrefix+"/sessions", loginRequest{Email: email, Password: password}, &s)
	return s, err
}

// Logout ends a session; see API. It is retried on another instance if one
// is down.
func (c *Client) Logout(ctx context.Context, token string) error {
	return c.c.Call(ctx, http.MethodPost, apiPrefix+"/sessions/logout", tokenRequest{Token: token}, nil, httpx.Retryable())
}

// Authenticate returns a session's account; see API. It is retried on another
// instance if one is down.
func (c *Client) Authenticate(ctx context.Context, token string) (Account, error) {
	var a Account
	err := c.c.Call(ctx, http.MethodPost, apiPrefix+"/sessions/authenticate", tokenRequest{Token: token}, &a, httpx.Retryable())
	return a, err
}

// GetAccount returns an account; see API.
func (c *Client) GetAccount(ctx context.Context, id string) (Account, error) {
	if id == "" { // an empty path segment cannot reach the handler
		return Account{}, errs.E("account.GetAccount", errs.NotFound, errs.Msg("account not found"))
	}
	var a Account
	err := c.c.Call(ctx, http.MethodGet, path("/accounts", id), nil, &a)
	return a, err
}

// UpdateProfile sets an account's name; see API.
func (c *Client) UpdateProfile(ctx context.Context, id, name string) (Account, error) {
	const op = "account.UpdateProfile"
	if id == "" { // an empty path segment cannot reach the handler
		if _, err := normalizeName(name); err != nil {
			return Account{}, errs.E(op, err)
		}
		return Account{}, errs.E(op, errs.NotFound, errs.Msg("account not found"))
	}
	var a Account
	err := c.c.Call(ctx, http.MethodPut, path("/accounts", id, "profile"), profileRequest{Name: name}, &a)
	return a, err
}

// ChangePassword replaces an account's password; see API.
func (c *Client) ChangePassword(ctx context.Context, accountID, keepToken, current, newPassword string) error {
	const op = "account.ChangePassword"
	if accountID == "" { // an empty path segment cannot reach the handler
		return errs.E(op, errs.NotFound, errs.Msg("account not found"))
	}
	return c.c.Call(ctx, http.MethodPut, path("/accounts", accountID, "password"),
		passwordChangeRequest{KeepToken: keepToken, CurrentPassword: current, NewPassword: newPassword}, nil)
}

// RequestPasswordReset sends a reset link, if the e-mail has an account;
// see API.
func (c *Client) RequestPasswordReset(ctx context.Context, email string) error {
	return c.c.Call(ctx, http.MethodPost, apiPrefix+"/password-resets", resetRequest{Email: email}, nil)
}

// CheckPasswordReset reports whether a reset link can be used; see API. It
// is retried on another instance if one is down.
func (c *Client) CheckPasswordReset(ctx context.Context, token string) error {
	return c.c.Call(ctx, http.MethodPost, apiPrefix+"/password-resets/check", tokenRequest{Token: token}, nil, httpx.Retryable())
}

// ResetPassword sets a new password with a reset link; see API.
func (c *Client) ResetPassword(ctx context.Context, token, newPassword string) (Account, error) {
	var a Account
	err := c.c.Call(ctx, http.MethodPost, apiPrefix+"/password-resets/confirm", resetConfirmRequest{Token: token, NewPassword: newPassword}, &a)
	return a, err
}

// path is httpx.Path under the API prefix, except that the segments "." and
// ".." are percent-encoded so that no URL cleaning can remove them.
func path(prefix string, segs ...string) string {
	var b strings.Builder
	b.WriteString(httpx.Path(apiPrefix + prefix))
	for _, s := range segs {
		b.WriteByte('/')
		if s == "." || s == ".." {
			b.WriteString(strings.Repeat("%2E", len(s)))
		} else {
			b.WriteString(httpx.Path("", s)[1:])
		}
	}
	return b.String()
}
