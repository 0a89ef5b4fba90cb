package storefront

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/globomantics/globomantics/internal/account"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/ids"
)

// Cookie names. Every cookie is HttpOnly, SameSite=Lax and Path=/; when
// Deps.SecureCookies is set (the shop is served over HTTPS) it is also
// Secure and its name carries the "__Host-" prefix, which browsers accept
// only from a secure origin, without a Domain, for Path=/: a sibling domain
// or a plain-HTTP page cannot plant or overwrite it.
const (
	// SessionCookie holds the account session token from account.API.Login.
	SessionCookie = "globo_session"
	// CartCookie holds an anonymous visitor's cart token; the cart's owner is
	// "anon:"+token. It is set when the visitor first adds to the cart and
	// cleared when the cart is merged into the account's cart at login.
	CartCookie = "globo_cart"
)

const (
	// sessionCacheTTL bounds how long a token→account lookup is cached, and
	// so how long a session revoked on another instance (whose cache this
	// instance does not share) may still be honoured here.
	sessionCacheTTL = 5 * time.Second
	// cartCookieMaxAge is how long an anonymous cart is remembered.
	cartCookieMaxAge = 30 * 24 * time.Hour
	// maxSessionToken bounds the session cookie we are willing to look up.
	maxSessionToken = 256
)

// visitor is the request's lazily resolved identity: the session cookie is
// only looked up when a handler asks, and at most once per request.
type visitor struct {
	once sync.Once
	w    http.ResponseWriter // where a refreshed session cookie is set
	acct *account.Account
	err  error
	// degraded says the visitor has a session cookie that could not be
	// checked (the session store or the account service is down): they
	// are served as anonymous, but nothing is written in their name.
	degraded bool
}

type visitorKey struct{}

// withVisitor gives each request a place to memoize its identity.
func withVisitor(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := context.WithValue(r.Context(), visitorKey{}, &visitor{w: w})
		h.ServeHTTP(w, r.WithContext(ctx))
	})
}

// account returns r's logged-in account, or nil for an anonymous visitor
// (no cookie, or an unknown or expired session). The error is for an
// account service that could not answer. When the account service has just
// confirmed the session (and so slid its expiry), the session cookie is set
// again for another account.SessionTTL, so that the browser keeps it as long
// as the session lives; handlers call this before writing their answer.
func (s *Server) account(r *http.Request) (*account.Account, error) {
	v, _ := r.Context().Value(visitorKey{}).(*visitor)
	if v == nil {
		v = &visitor{}
	}
	v.once.Do(func() {
		var fresh bool
		v.acct, fresh, v.err = s.authenticate(r)
		if errs.Is(errs.Unavailable, v.err) {
			// Logged out at worst, never a 503 storm: the page is served
			// as to a visitor, and the cookie kept for when the store is
			// back.
			s.log.Warn("session look-up unavailable; serving as anonymous", "err", v.err)
			v.acct, v.err, v.degraded = nil, nil, true
		}
		if fresh && v.w != nil {
			s.setCookie(v.w, SessionCookie, s.sessionToken(r), account.SessionTTL)
		}
	})
	return v.acct, v.err
}

// requireAccount is account for handlers that need a logged-in customer:
// anonymous visitors get errs.Unauthorized.
func (s *Server) requireAccount(r *http.Request) (account.Account, error) {
	a, err := s.account(r)
	if err != nil {
		return account.Account{}, err
	}
	if a == nil {
		if v, _ := r.Context().Value(visitorKey{}).(*visitor); v != nil && v.degraded {
			// Sending a customer to log in would not help: the session
			// store is what is down.
			return account.Account{}, errs.E("storefront", errs.Unavailable, errs.Msg("we can't check your session right now; please try again in a moment"))
		}
		return account.Account{}, errs.E("storefront", errs.Unauthorized, errs.Msg("log in first"))
	}
	return *a, nil
}

// authenticate resolves r's session cookie; fresh reports that the account
// service (not the cache) has just confirmed the session.
func (s *Server) authenticate(r *http.Request) (acct *account.Account, fresh bool, err error) {
	const op = "storefront.authenticate"
	tok := s.sessionToken(r)
	if tok == "" {
		return nil, false, nil
	}
	ctx := r.Context()
	key := sessionCacheKey(tok)
	if b, ok, err := s.d.Cache.Get(ctx, key); err != nil {
		s.log.Warn("session cache get failed", "err", err)
	} else if ok {
		var c cachedSession
		if json.Unmarshal(b, &c) == nil && c.ID != "" && !s.sessionsRevokedSince(ctx, c.ID, c.CachedAt) {
			return &c.Account, false, nil
		}
	}
	a, err := s.d.Accounts.Authenticate(ctx, tok)
	if errs.Is(errs.Unauthorized, err) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, errs.E(op, err)
	}
	s.cacheSession(ctx, tok, a)
	return &a, true, nil
}

func (s *Server) cacheSession(ctx context.Context, tok string, a account.Account) {
	b, err := json.Marshal(cachedSession{Account: a, CachedAt: s.d.Clock.Now().UnixNano()})
	if err != nil {
		return
	}
	if err := s.d.Cache.Set(ctx, sessionCacheKey(tok), b, sessionCacheTTL); err != nil {
		s.log.Warn("session cache set failed", "err", err)
	}
}

// sessionCacheKey keys the token→account cache by a hash of the token, so
// that the cache never holds a usable credential.
func sessionCacheKey(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return "storefront:session:" + hex.EncodeToString(sum[:])
}

func (s *Server) sessionToken(r *http.Request) string {
	c, err := r.Cookie(s.cookieName(SessionCookie))
	if err != nil || c.Value == "" || len(c.Value) > maxSessionToken {
		return ""
	}
	return c.Value
}

// cartToken returns r's anonymous cart token if it has a well-formed one.
func (s *Server) cartToken(r *http.Request) string {
	c, err := r.Cookie(s.cookieName(CartCookie))
	if err != nil || !validCartToken(c.Value) {
		return ""
	}
	return c.Value
}

// validCartToken accepts what ids.Token makes: 43 base64url characters.
func validCartToken(t string) bool {
	if len(t) != 43 {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// cookieName is the name cookie base goes by: "__Host-"+base over HTTPS.
func (s *Server) cookieName(base string) string {
	if s.d.SecureCookies {
		return "__Host-" + base
	}
	return base
}

func (s *Server) setCookie(w http.ResponseWriter, name, value string, maxAge time.Duration) {
	http.SetCookie(w, &http.Cookie{
		Name:     s.cookieName(name),
		Value:    value,
		Path:     "/",
		MaxAge:   int(maxAge / time.Second),
		Expires:  s.d.Clock.Now().Add(maxAge),
		HttpOnly: true,
		Secure:   s.d.SecureCookies,
		SameSite: http.SameSiteLaxMode,
	})
}

func (s *Server) clearCookie(w http.ResponseWriter, name string) {
	http.SetCookie(w, &http.Cookie{
		Name:     s.cookieName(name),
		Value:    "",
		Path:     "/",
		MaxAge:   -1,
		Expires:  time.Unix(0, 0),
		HttpOnly: true,
		Secure:   s.d.SecureCookies,
		SameSite: http.SameSiteLaxMode,
	})
}

// login checks the credentials and starts a session: it sets the session
// cookie and moves the visitor's anonymous cart, if any, into the account's
// cart. A failed merge does not fail the login: the cart cookie is kept so
// that the next login tries again.
//
// Every attempt first spends one event of the client's login budget and
// one of the named account's (the same for every email, whether or not an
// account has it, so that a refusal tells nothing); over either budget it
// is a *tooManyError and the password is not checked. A successful login
// gives the account its budget back, so failures are what count against an
// account and its owner is not locked out by their own logins.
func (s *Server) login(w http.ResponseWriter, r *http.Request, email, password string) (account.Account, error) {
	ctx := r.Context()
	const what = "login attempts"
	if err := s.limit(ctx, s.limits.LoginPerClient, loginClientKey(s.clientKey(r)), what); err != nil {
		return account.Account{}, err
	}
	acctKey := loginAccountKey(email)
	if err := s.limit(ctx, s.limits.LoginPerAccount, acctKey, what); err != nil {
		return account.Account{}, err
	}
	sess, err := s.d.Accounts.Login(ctx, email, password)
	if err != nil {
		return account.Account{}, errs.E("storefront.login", err)
	}
	if s.limits.LoginPerAccount.Enabled() {
		s.resetLimit(ctx, acctKey)
	}
	ttl := sess.ExpiresAt.Sub(s.d.Clock.Now())
	if ttl <= 0 || ttl > account.SessionTTL {
		ttl = account.SessionTTL
	}
	s.setCookie(w, SessionCookie, sess.Token, ttl)
	s.cacheSession(ctx, sess.Token, sess.Account)
	if tok := s.cartToken(r); tok != "" {
		if _, err := s.d.Carts.Merge(ctx, "anon:"+tok, userOwner(sess.Account.ID)); err != nil {
			s.log.Warn("merging anonymous cart at login failed", "account", sess.Account.ID, "err", err)
		} else {
			s.clearCookie(w, CartCookie)
		}
	}
	return sess.Account, nil
}

// limitRegister spends one registration of r's client's budget.
func (s *Server) limitRegister(r *http.Request) error {
	return s.limit(r.Context(), s.limits.RegisterPerClient, registerClientKey(s.clientKey(r)), "registration attempts")
}

// logout ends r's session, if any. The account service revokes the token
// first; only then do the cached lookup and the cookie go, so that a failed
// logout leaves the visitor logged in and able to try again rather than
// believing a still-valid token is gone.
func (s *Server) logout(w http.ResponseWriter, r *http.Request) error {
	tok := s.sessionToken(r)
	if tok != "" {
		ctx := r.Context()
		if err := s.d.Accounts.Logout(ctx, tok); err != nil {
			return errs.E("storefront.logout", err)
		}
		if err := s.d.Cache.Delete(ctx, sessionCacheKey(tok)); err != nil {
			s.log.Warn("session cache delete failed", "err", err)
		}
	}
	s.clearCookie(w, SessionCookie)
	return nil
}

func userOwner(id string) string { return "user:" + id }

// cartOwner returns the owner of r's cart: the account's cart when logged
// in, the anonymous cart of the cart cookie otherwise, or "" when the
// visitor has no cart yet. A customer whose session cannot be checked now
// gets errs.Unavailable: their cart is not known, and showing them an
// empty one (or a visitor's) would say it was.
func (s *Server) cartOwner(r *http.Request) (string, error) {
	a, err := s.account(r)
	if err != nil {
		return "", err
	}
	if a != nil {
		return userOwner(a.ID), nil
	}
	if v, _ := r.Context().Value(visitorKey{}).(*visitor); v != nil && v.degraded {
		return "", errs.E("storefront.cart", errs.Unavailable, errs.Msg("we can't check your session right now; please try again in a moment"))
	}
	if tok := s.cartToken(r); tok != "" {
		return "anon:" + tok, nil
	}
	return "", nil
}

// cartOwnerForWrite is cartOwner for a change to the cart: a visitor with no
// cart gets a new anonymous token, returned as newToken so that the caller
// sets the cookie once the change has succeeded.
func (s *Server) cartOwnerForWrite(r *http.Request) (owner, newToken string, err error) {
	// A customer whose session cannot be checked keeps their cart: cartOwner
	// refuses, so nothing goes into a new visitor's cart in their place.
	owner, err = s.cartOwner(r)
	if err != nil || owner != "" {
		return owner, "", err
	}
	newToken = ids.Token()
	return "anon:" + newToken, newToken, nil
}

// keepCart sets the cart cookie for a new anonymous cart that now holds
// something.
func (s *Server) keepCart(w http.ResponseWriter, newToken string, items int) {
	if newToken != "" && items > 0 {
		s.setCookie(w, CartCookie, newToken, cartCookieMaxAge)
	}
}
