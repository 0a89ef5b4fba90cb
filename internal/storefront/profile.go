package storefront

import (
	"net/http"

	"github.com/globomantics/globomantics/internal/account"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/httpx"
)

// updateProfile sets the logged-in customer's name; the account service
// validates it (errs.Invalid with a client-safe detail). An account that no
// longer exists is errs.Unauthorized: its session means nothing any more.
//
// After a successful change it drops this instance's cached token→account
// lookup, so that the next request here sees the new name at once. Other
// storefront instances keep their own cached copy (unless they share the
// cache) and may show the old name for up to sessionCacheTTL; so may this
// one, briefly, if a concurrent request re-caches a lookup it began before
// the change. The name is display data only, so that bound is acceptable.
func (s *Server) updateProfile(r *http.Request, a account.Account, name string) (account.Account, error) {
	const op = "storefront.updateProfile"
	ctx := r.Context()
	updated, err := s.d.Accounts.UpdateProfile(ctx, a.ID, name)
	if errs.Is(errs.NotFound, err) {
		s.forgetSession(r)
		return account.Account{}, errs.E(op, errs.Unauthorized, errs.Msg("log in first"), err)
	}
	if err != nil {
		return account.Account{}, errs.E(op, err)
	}
	s.forgetSession(r)
	return updated, nil
}

// forgetSession deletes this instance's cached lookup of r's session token.
func (s *Server) forgetSession(r *http.Request) {
	tok := s.sessionToken(r)
	if tok == "" {
		return
	}
	if err := s.d.Cache.Delete(r.Context(), sessionCacheKey(tok)); err != nil {
		s.log.Warn("session cache delete failed", "err", err)
	}
}

// profileUpdate is the body of PATCH /api/v1/me.
type profileUpdate struct {
	Name string `json:"name"`
}

// apiUpdateMe changes the customer's profile: 200 with the updated account,
// 401 when not logged in, 422 for an invalid name, 400 for a malformed body
// (unknown fields included).
func (s *Server) apiUpdateMe(w http.ResponseWriter, r *http.Request) error {
	a, err := s.requireAccount(r)
	if err != nil {
		return err
	}
	var in profileUpdate
	if err := httpx.Decode(r, &in); err != nil {
		return err
	}
	updated, err := s.updateProfile(r, a, in.Name)
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, updated)
	return nil
}

// accountData is the data of the account page.
type accountData struct {
	Account account.Account // as stored
	Name    string          // the name field's value
	Saved   bool            // the name was just changed
	Error   string          // why the submitted name was refused
}

// savedParam marks the redirect after a successful change, so that the
// page shows a notice without any server-side flash state.
const savedParam = "saved"

func (s *Server) accountPage(w http.ResponseWriter, r *http.Request) error {
	a, err := s.requireAccount(r)
	if err != nil {
		return err
	}
	q, err := httpx.Query(r)
	if err != nil {
		return err
	}
	return s.render(w, r, http.StatusOK, "account", "Your account", accountData{
		Account: a, Name: a.Name, Saved: q.Has(savedParam),
	})
}

// accountSubmit changes the customer's name and redirects back to the
// account page (post/redirect/get); an invalid name shows the form again
// with the reason and what was typed.
func (s *Server) accountSubmit(w http.ResponseWriter, r *http.Request) error {
	a, err := s.requireAccount(r)
	if err != nil {
		return err
	}
	if err := parseForm(r); err != nil {
		return err
	}
	name := r.PostForm.Get("name")
	_, err = s.updateProfile(r, a, name)
	switch {
	case err == nil:
		http.Redirect(w, r, "/account?"+savedParam+"=1", http.StatusSeeOther)
		return nil
	case errs.Is(errs.Invalid, err):
		return s.render(w, r, http.StatusUnprocessableEntity, "account", "Your account", accountData{
			Account: a, Name: name, Error: errs.Detail(err),
		})
	}
	return err
}
