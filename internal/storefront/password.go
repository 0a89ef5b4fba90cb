package storefront

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"

	"github.com/globomantics/globomantics/internal/account"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/httpx"
)

// Passwords: change (logged in, /account/password and PUT
// /api/v1/me/password) and reset by e-mail (/forgot-password, the link's
// /reset-password, and /api/v1/password-resets).
//
// A reset link carries its token in the query string (?token=...): the
// access log and the spans record the path only, the page that opens it is
// no-store and sends no Referer, and the form it shows posts the token in
// its body. The account service checks the token (signed, single-use,
// expiring); the storefront never interprets it.

// cachedSession is a token→account lookup as the cache keeps it: the
// account and when it was cached (Unix ns), so that a revocation of the
// account's sessions (revokeSessions) voids the lookups cached before it.
// Its JSON is the account's with one more field, so entries written before
// it existed still read (as cached at 0: older than any revocation).
type cachedSession struct {
	account.Account
	CachedAt int64 `json:"cached_at,omitempty"`
}

// revokedKey names the cache entry that records when the account's
// sessions were last revoked (password changed or reset).
func revokedKey(accountID string) string { return "storefront:sessions-revoked:" + accountID }

// revokeSessions makes the cached token→account lookups of the account's
// sessions, made before now, count as misses: every such session is checked
// with the account service again at its next request, which refuses those
// it ended. The record lives as long as a lookup is cached. In this cache:
// this instance at once, and every instance when the cache is shared
// (Redis); an instance with a cache of its own honours a lookup it cached
// for up to sessionCacheTTL. So may this one, briefly, when a request whose
// look-up the account service answered before the change caches it after
// (as for profile changes, see updateProfile). Checking the record costs
// one more cache read per cached look-up.
func (s *Server) revokeSessions(ctx context.Context, accountID string) {
	now := strconv.FormatInt(s.d.Clock.Now().UnixNano(), 10)
	if err := s.d.Cache.Set(ctx, revokedKey(accountID), []byte(now), sessionCacheTTL+sessionCacheTTL/2); err != nil {
		s.log.Warn("recording a session revocation in the cache failed", "err", err)
	}
}

// sessionsRevokedSince reports whether the account's sessions were revoked
// at or after cachedAt (Unix ns). A cache that fails counts as revoked: the
// account service is asked instead.
func (s *Server) sessionsRevokedSince(ctx context.Context, accountID string, cachedAt int64) bool {
	b, ok, err := s.d.Cache.Get(ctx, revokedKey(accountID))
	if err != nil {
		s.log.Warn("session revocation look-up failed", "err", err)
		return true
	}
	if !ok {
		return false
	}
	at, err := strconv.ParseInt(string(b), 10, 64)
	return err != nil || cachedAt <= at
}

// formErrors maps a form field's name to what is wrong with it, shown next
// to the field.
type formErrors map[string]string

// sentence makes a service's detail ("password must be 8 to 128 characters
// long") a sentence to show a customer.
func sentence(detail string) string {
	detail = capitalize(strings.TrimSpace(detail)) // render.go
	if detail != "" && !strings.HasSuffix(detail, ".") {
		detail += "."
	}
	return detail
}

// registrationField is the registration form's field a refusal of the
// account service is about, by the word its detail begins with ("email is
// not a valid address", "password must be ...", "name is required").
func registrationField(detail string) string {
	for _, f := range []string{"email", "password", "name"} {
		if strings.HasPrefix(strings.ToLower(detail), f) {
			return f
		}
	}
	return "email"
}

// passwordData is the data of the change-password page. Passwords are
// never written back into the form.
type passwordData struct {
	Errors formErrors
	Error  string // not about one field (too many attempts)
}

// passwordChangedFlash is the message after a change.
const passwordChangedFlash = "Your password was changed. Any other device logged in to your account was logged out."

func (s *Server) passwordPage(w http.ResponseWriter, r *http.Request) error {
	if _, err := s.requireAccount(r); err != nil {
		return err
	}
	return s.render(w, r, http.StatusOK, "password", "Change your password", passwordData{})
}

// passwordSubmit changes the password and goes back to the account page
// with a message; a refusal shows the form again with the reason next to
// the field.
func (s *Server) passwordSubmit(w http.ResponseWriter, r *http.Request) error {
	a, err := s.requireAccount(r)
	if err != nil {
		return err
	}
	if err := parseForm(r); err != nil {
		return err
	}
	f := r.PostForm
	current, next, confirm := f.Get("current_password"), f.Get("new_password"), f.Get("confirm_password")
	d := passwordData{Errors: formErrors{}}
	if current == "" {
		d.Errors["current_password"] = "Enter your current password."
	}
	switch {
	case next == "":
		d.Errors["new_password"] = "Choose a new password."
	case confirm != next:
		d.Errors["confirm_password"] = "The two new passwords don't match."
	}
	if len(d.Errors) > 0 {
		return s.render(w, r, http.StatusUnprocessableEntity, "password", "Change your password", d)
	}
	err = s.changePassword(r, a, current, next)
	switch {
	case err == nil:
		s.setFlash(w, FlashInfo, passwordChangedFlash)
		http.Redirect(w, r, "/account", http.StatusSeeOther)
		return nil
	case asTooMany(err) != nil:
		tm := asTooMany(err)
		tm.setHeaders(w)
		d.Error = tm.message()
		return s.render(w, r, http.StatusTooManyRequests, "password", "Change your password", d)
	case errs.Is(errs.Forbidden, err):
		d.Errors["current_password"] = "That isn't your current password."
		return s.render(w, r, http.StatusForbidden, "password", "Change your password", d)
	case errs.Is(errs.Invalid, err):
		d.Errors["new_password"] = sentence(errs.Detail(err))
		return s.render(w, r, http.StatusUnprocessableEntity, "password", "Change your password", d)
	}
	return err
}

// changePassword changes a's password, keeping r's session and ending the
// others (revokeSessions). Wrong current passwords spend the account's
// login budget (they are guesses like failed logins); a change gives it
// back. An account that no longer exists is errs.Unauthorized.
func (s *Server) changePassword(r *http.Request, a account.Account, current, next string) error {
	const op = "storefront.changePassword"
	ctx := r.Context()
	key := loginAccountKey(a.Email)
	if err := s.limit(ctx, s.limits.LoginPerAccount, key, "password attempts"); err != nil {
		return err
	}
	err := s.d.Accounts.ChangePassword(ctx, a.ID, s.sessionToken(r), current, next)
	if errs.Is(errs.NotFound, err) {
		s.forgetSession(r)
		return errs.E(op, errs.Unauthorized, errs.Msg("log in first"), err)
	}
	if err != nil {
		return errs.E(op, err)
	}
	s.revokeSessions(ctx, a.ID)
	if s.limits.LoginPerAccount.Enabled() {
		s.resetLimit(ctx, key)
	}
	return nil
}

// forgotData is the data of the forgot-password page.
type forgotData struct {
	Email  string
	Errors formErrors
	Error  string
}

// resetSentFlash is the one answer to a reset request, whether or not the
// address has an account.
const resetSentFlash = "If an account exists for that address, we've sent it a link to reset the password. The link works once, for 30 minutes."

func (s *Server) forgotPage(w http.ResponseWriter, r *http.Request) error {
	return s.render(w, r, http.StatusOK, "forgot-password", "Reset your password", forgotData{})
}

// forgotSubmit asks the account service to mail a reset link and sends the
// visitor to the login page with the same message whatever the address.
func (s *Server) forgotSubmit(w http.ResponseWriter, r *http.Request) error {
	if err := parseForm(r); err != nil {
		return err
	}
	d := forgotData{Email: strings.TrimSpace(r.PostForm.Get("email")), Errors: formErrors{}}
	if d.Email == "" {
		d.Errors["email"] = "Enter the e-mail address of your account."
		return s.render(w, r, http.StatusUnprocessableEntity, "forgot-password", "Reset your password", d)
	}
	err := s.requestReset(r, d.Email)
	switch {
	case err == nil:
		s.setFlash(w, FlashInfo, resetSentFlash)
		http.Redirect(w, r, "/login", http.StatusSeeOther)
		return nil
	case asTooMany(err) != nil:
		tm := asTooMany(err)
		tm.setHeaders(w)
		d.Error = tm.message()
		return s.render(w, r, http.StatusTooManyRequests, "forgot-password", "Reset your password", d)
	case errs.Is(errs.Invalid, err):
		d.Errors["email"] = sentence(errs.Detail(err))
		return s.render(w, r, http.StatusUnprocessableEntity, "forgot-password", "Reset your password", d)
	}
	return err
}

// requestReset spends one reset request of the client's budget and of the
// address's, then asks for the link.
func (s *Server) requestReset(r *http.Request, email string) error {
	ctx := r.Context()
	const what = "password reset requests"
	if err := s.limit(ctx, s.limits.ResetPerClient, resetClientKey(s.clientKey(r)), what); err != nil {
		return err
	}
	if err := s.limit(ctx, s.limits.ResetPerAddress, resetAddressKey(email), what); err != nil {
		return err
	}
	if err := s.d.Accounts.RequestPasswordReset(ctx, email); err != nil {
		return errs.E("storefront.requestReset", err)
	}
	return nil
}

func resetClientKey(client string) string { return "reset:client:" + client }

func resetAddressKey(email string) string {
	sum := sha256.Sum256([]byte(normalizeEmail(email)))
	return "reset:address:" + hex.EncodeToString(sum[:16])
}

// resetData is the data of the page of a reset link: the token goes back
// in a hidden field; passwords are never written back.
type resetData struct {
	Token  string
	Errors formErrors
	Error  string
}

// noReferrer keeps a reset link's token from leaving in a Referer header
// and from any cache.
func noReferrer(w http.ResponseWriter) {
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.Header().Set("Cache-Control", "no-store")
}

// resetInvalid shows that a reset link cannot be used, with a link to ask
// for a new one: 410, the same page for every reason.
func (s *Server) resetInvalid(w http.ResponseWriter, r *http.Request) error {
	return s.render(w, r, http.StatusGone, "reset-invalid", "Link no longer valid", nil)
}

// resetPage opens a reset link: the new-password form if the link can be
// used, else the page saying it cannot.
func (s *Server) resetPage(w http.ResponseWriter, r *http.Request) error {
	noReferrer(w)
	q, err := httpx.Query(r)
	if err != nil {
		return s.resetInvalid(w, r)
	}
	tok := q.Get("token")
	if tok == "" {
		return s.resetInvalid(w, r)
	}
	if err := s.d.Accounts.CheckPasswordReset(r.Context(), tok); err != nil {
		if errs.Is(errs.Forbidden, err) {
			return s.resetInvalid(w, r)
		}
		return err
	}
	return s.render(w, r, http.StatusOK, "reset-password", "Choose a new password", resetData{Token: tok})
}

// resetSubmit sets the new password with the link's token, ends every
// session of the account and logs the customer in with the new password.
func (s *Server) resetSubmit(w http.ResponseWriter, r *http.Request) error {
	noReferrer(w)
	if err := parseForm(r); err != nil {
		return err
	}
	f := r.PostForm
	d := resetData{Token: f.Get("token"), Errors: formErrors{}}
	if d.Token == "" {
		return s.resetInvalid(w, r)
	}
	next, confirm := f.Get("new_password"), f.Get("confirm_password")
	switch {
	case next == "":
		d.Errors["new_password"] = "Choose a new password."
	case confirm != next:
		d.Errors["confirm_password"] = "The two passwords don't match."
	}
	if len(d.Errors) > 0 {
		return s.render(w, r, http.StatusUnprocessableEntity, "reset-password", "Choose a new password", d)
	}
	a, err := s.resetPassword(r, d.Token, next)
	switch {
	case err == nil:
	case asTooMany(err) != nil:
		tm := asTooMany(err)
		tm.setHeaders(w)
		d.Error = tm.message()
		return s.render(w, r, http.StatusTooManyRequests, "reset-password", "Choose a new password", d)
	case errs.Is(errs.Forbidden, err):
		return s.resetInvalid(w, r)
	case errs.Is(errs.Invalid, err):
		d.Errors["new_password"] = sentence(errs.Detail(err))
		return s.render(w, r, http.StatusUnprocessableEntity, "reset-password", "Choose a new password", d)
	default:
		return err
	}
	// Whoever was logged in on this browser (the account's session is
	// ended already; another account's is ended here) makes way for the
	// customer, logged in afresh.
	if err := s.logout(w, r); err != nil {
		s.log.Warn("ending the browser's previous session after a password reset failed", "err", err)
		s.forgetSession(r)
		s.clearCookie(w, SessionCookie)
	}
	if _, err := s.login(w, r, a.Email, next); err != nil {
		s.log.Warn("login right after a password reset failed", "err", err)
		s.setFlash(w, FlashInfo, "Your password was changed. Log in with your new password.")
		http.Redirect(w, r, "/login?next=%2Faccount", http.StatusSeeOther)
		return nil
	}
	s.setFlash(w, FlashInfo, "Your password was changed and you're logged in. Any other device logged in to your account was logged out.")
	http.Redirect(w, r, "/account", http.StatusSeeOther)
	return nil
}

// resetPassword spends one of the client's reset budget (each use costs a
// password hash) and sets the password; the account's sessions, ended by
// the account service, are revoked in the cache too.
func (s *Server) resetPassword(r *http.Request, token, next string) (account.Account, error) {
	ctx := r.Context()
	if err := s.limit(ctx, s.limits.ResetPerClient, resetClientKey(s.clientKey(r)), "password reset attempts"); err != nil {
		return account.Account{}, err
	}
	a, err := s.d.Accounts.ResetPassword(ctx, token, next)
	if err != nil {
		return account.Account{}, errs.E("storefront.resetPassword", err)
	}
	s.revokeSessions(ctx, a.ID)
	return a, nil
}

// PasswordChange is the body of PUT /api/v1/me/password.
type PasswordChange struct {
	CurrentPassword string `json:"current_password"`
	NewPassword     string `json:"new_password"`
}

// PasswordResetRequest is the body of POST /api/v1/password-resets.
type PasswordResetRequest struct {
	Email string `json:"email"`
}

// PasswordResetAccepted is the answer to POST /api/v1/password-resets: the
// same whether or not the address has an account.
type PasswordResetAccepted struct {
	Message string `json:"message"`
}

// PasswordResetConfirm is the body of POST /api/v1/password-resets/confirm:
// the token of the link the e-mail carried and the new password.
type PasswordResetConfirm struct {
	Token       string `json:"token"`
	NewPassword string `json:"new_password"`
}

// apiChangePassword: 204, this session kept and every other ended; 401 when
// not logged in; 403 for a wrong current password; 422 for a bad new one;
// 429 after too many wrong ones.
func (s *Server) apiChangePassword(w http.ResponseWriter, r *http.Request) error {
	a, err := s.requireAccount(r)
	if err != nil {
		return err
	}
	var in PasswordChange
	if err := httpx.Decode(r, &in); err != nil {
		return err
	}
	if err := s.changePassword(r, a, in.CurrentPassword, in.NewPassword); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// apiRequestReset: 202 whether or not the address has an account; 422 for
// a malformed address; 429 over the limits.
func (s *Server) apiRequestReset(w http.ResponseWriter, r *http.Request) error {
	var in PasswordResetRequest
	if err := httpx.Decode(r, &in); err != nil {
		return err
	}
	if strings.TrimSpace(in.Email) == "" {
		return errs.E("storefront.requestReset", errs.Invalid, errs.Msg("email is required"))
	}
	if err := s.requestReset(r, in.Email); err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusAccepted, PasswordResetAccepted{Message: resetSentFlash})
	return nil
}

// apiConfirmReset: 204, the password set and every session of the account
// ended (the client logs in again); 403 for a token that is unknown,
// tampered with, expired or used; 422 for a bad new password.
func (s *Server) apiConfirmReset(w http.ResponseWriter, r *http.Request) error {
	var in PasswordResetConfirm
	if err := httpx.Decode(r, &in); err != nil {
		return err
	}
	if _, err := s.resetPassword(r, in.Token, in.NewPassword); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
