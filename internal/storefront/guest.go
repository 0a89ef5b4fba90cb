package storefront

import (
	"net/http"
	"strings"

	"github.com/globomantics/globomantics/internal/account"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/ids"
)

// Guest checkout: a visitor sent to log in from checkout may instead give a
// name and an e-mail address and check out at once. The shop makes them an
// account whose password nobody knows (a random one, never stored or
// shown) and logs them in for this visit; orders, receipts and sharding
// then work as for anyone else. The customer claims the account later by
// setting a password through "Forgot your password?", which proves they
// own the mailbox. An address that already has an account is refused
// (checking out as a guest must never log anyone into somebody else's
// account): its owner logs in, or resets the password.

// guestData is the guest form on the login page.
type guestData struct {
	Name   string
	Email  string
	Errors formErrors
}

// guestOffered reports whether the login page for next offers to check out
// as a guest: only on the way to checkout.
func guestOffered(next string) bool {
	return next == "/checkout" || strings.HasPrefix(next, "/checkout?")
}

// guestWelcome is the message on the checkout page after the guest form.
func guestWelcome(email string) string {
	return "You're checking out as a guest. Your receipt goes to " + email +
		". To see your orders later, set a password with “Forgot your password?” on the login page."
}

func (s *Server) guestCheckoutSubmit(w http.ResponseWriter, r *http.Request) error {
	if err := parseForm(r); err != nil {
		return err
	}
	f := r.PostForm
	g := &guestData{Name: strings.TrimSpace(f.Get("name")), Email: strings.TrimSpace(f.Get("email"))}
	d := authData{Next: "/checkout", Guest: g}
	if a, err := s.account(r); err == nil && a != nil {
		http.Redirect(w, r, "/checkout", http.StatusSeeOther)
		return nil
	}
	if tm := asTooMany(s.limitRegister(r)); tm != nil {
		tm.setHeaders(w)
		d.Error = tm.message()
		return s.render(w, r, http.StatusTooManyRequests, "login", "Log in", d)
	}
	if g.Name == "" {
		g.Errors = formErrors{"name": "Enter the name to put on the order."}
		return s.render(w, r, http.StatusUnprocessableEntity, "login", "Log in", d)
	}
	password := ids.Token() // 256 random bits, forgotten at once
	_, err := s.d.Accounts.Register(r.Context(), account.Registration{Email: g.Email, Password: password, Name: g.Name})
	switch {
	case errs.Is(errs.Conflict, err):
		g.Errors = formErrors{"email": "This email already has an account: log in above, or use “Forgot your password?” to set a new password."}
		d.Email = g.Email
		return s.render(w, r, http.StatusConflict, "login", "Log in", d)
	case errs.Is(errs.Invalid, err):
		field := registrationField(errs.Detail(err))
		if field == "password" { // cannot happen with a generated password
			return err
		}
		g.Errors = formErrors{field: sentence(errs.Detail(err))}
		return s.render(w, r, http.StatusUnprocessableEntity, "login", "Log in", d)
	case err != nil:
		return err
	}
	if _, err := s.login(w, r, g.Email, password); err != nil {
		return err
	}
	s.setFlash(w, FlashInfo, guestWelcome(g.Email))
	http.Redirect(w, r, "/checkout", http.StatusSeeOther)
	return nil
}
