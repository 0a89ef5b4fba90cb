package storefront

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/ratelimit"
)

// Limits are the storefront's abuse limits (see ratelimit.Limit: Burst
// events at once, then Events per Period). A zero field means its default
// in DefaultLimits; ratelimit.Off switches one off.
type Limits struct {
	// LoginPerAccount bounds failed logins to one account (by normalised
	// email, whether or not an account has it), from every client
	// together. A successful login gives the account its budget back.
	LoginPerAccount ratelimit.Limit
	// LoginPerClient bounds login attempts, failed or not, from one client
	// (an IPv4 address or an IPv6 /64), whichever accounts they name.
	LoginPerClient ratelimit.Limit
	// RegisterPerClient bounds registrations, whatever their outcome, from
	// one client: registration answers 409 for a taken email, so it is an
	// oracle for which addresses have accounts.
	RegisterPerClient ratelimit.Limit
	// CheckoutPerAccount bounds order placements (API and form) by one
	// account: it stops the shop being used to test stolen cards.
	CheckoutPerAccount ratelimit.Limit
	// ResetPerClient bounds password reset requests and uses from one
	// client; ResetPerAddress bounds reset requests naming one e-mail
	// (whether or not an account has it), so that nobody's mailbox is
	// flooded with links (password.go).
	ResetPerClient  ratelimit.Limit
	ResetPerAddress ratelimit.Limit
}

// DefaultLimits are the limits a zero Limits field gets:
//
//   - login per account: 5 failures at once, then one per 90 s (10 per
//     15 min);
//   - login per client: 10 at once, then one per 2 s (30 per minute);
//   - registration per client: 10 at once, then one per 6 min (10 per
//     hour);
//   - checkout per account: 20 at once, then one per minute (60 per hour);
//   - password resets per client: 10 at once, then one per 3 min (20 per
//     hour); per e-mail address: 3 at once, then one per 12 min (5 per
//     hour).
//
// Each storefront instance limits on its own unless Deps.RateLimiter is
// shared, so N instances allow up to N times these.
var DefaultLimits = Limits{
	LoginPerAccount:    ratelimit.Limit{Events: 10, Period: 15 * time.Minute, Burst: 5},
	LoginPerClient:     ratelimit.Limit{Events: 30, Period: time.Minute, Burst: 10},
	RegisterPerClient:  ratelimit.Limit{Events: 10, Period: time.Hour, Burst: 10},
	CheckoutPerAccount: ratelimit.Limit{Events: 60, Period: time.Hour, Burst: 20},
	ResetPerClient:     ratelimit.Limit{Events: 20, Period: time.Hour, Burst: 10},
	ResetPerAddress:    ratelimit.Limit{Events: 5, Period: time.Hour, Burst: 3},
}

// NoLimits switches every limit off: for load tests and benchmarks, whose
// simulated shoppers all come from one address.
var NoLimits = Limits{
	LoginPerAccount:    ratelimit.Off,
	LoginPerClient:     ratelimit.Off,
	RegisterPerClient:  ratelimit.Off,
	CheckoutPerAccount: ratelimit.Off,
	ResetPerClient:     ratelimit.Off,
	ResetPerAddress:    ratelimit.Off,
}

// withDefaults fills l's zero fields from DefaultLimits.
func (l Limits) withDefaults() Limits {
	def := func(v *ratelimit.Limit, d ratelimit.Limit) {
		if *v == (ratelimit.Limit{}) {
			*v = d
		}
	}
	def(&l.LoginPerAccount, DefaultLimits.LoginPerAccount)
	def(&l.LoginPerClient, DefaultLimits.LoginPerClient)
	def(&l.RegisterPerClient, DefaultLimits.RegisterPerClient)
	def(&l.CheckoutPerAccount, DefaultLimits.CheckoutPerAccount)
	def(&l.ResetPerClient, DefaultLimits.ResetPerClient)
	def(&l.ResetPerAddress, DefaultLimits.ResetPerAddress)
	return l
}

// tooManyError is a request refused by a limit: 429 with Retry-After. It is
// not an errs kind (errs has no 429), so the API and page adapters
// recognise it themselves.
type tooManyError struct {
	what  string        // what was limited, for the message: "login attempts"
	retry time.Duration // until one more is allowed
}

func (e *tooManyError) Error() string {
	return fmt.Sprintf("too many %s; retry in %v", e.what, e.retry)
}

// retrySeconds is the Retry-After value: whole seconds, rounded up, at
// least 1.
func (e *tooManyError) retrySeconds() int64 {
	return max(int64((e.retry+time.Second-1)/time.Second), 1)
}

// detail is the API's problem detail.
func (e *tooManyError) detail() string {
	return fmt.Sprintf("too many %s; try again in %d seconds", e.what, e.retrySeconds())
}

// message is the HTML pages' wording.
func (e *tooManyError) message() string {
	mins := (e.retrySeconds() + 59) / 60
	wait := "a minute"
	if mins > 1 {
		wait = strconv.FormatInt(mins, 10) + " minutes"
	}
	return "Too many " + e.what + ". Please wait " + wait + " and try again."
}

// asTooMany returns err's tooManyError, or nil.
func asTooMany(err error) *tooManyError {
	var tm *tooManyError
	if errors.As(err, &tm) {
		return tm
	}
	return nil
}

// setHeaders sets the Retry-After and no-store headers of a 429.
func (e *tooManyError) setHeaders(w http.ResponseWriter) {
	w.Header().Set("Retry-After", strconv.FormatInt(e.retrySeconds(), 10))
	w.Header().Set("Cache-Control", "no-store")
}

// writeTooMany answers a refused API request: 429 problem+json with
// Retry-After.
func writeTooMany(w http.ResponseWriter, r *http.Request, e *tooManyError) {
	e.setHeaders(w)
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(http.StatusTooManyRequests)
	_ = json.NewEncoder(w).Encode(errs.Problem{
		Type:     "about:blank",
		Title:    http.StatusText(http.StatusTooManyRequests),
		Status:   http.StatusTooManyRequests,
		Detail:   e.detail(),
		Instance: r.URL.Path,
	})
}

// limit spends one event of key's budget under l; a *tooManyError when it
// is spent. A limiter that fails lets the request through (fail open,
// logged): the limits guard against abuse, and an outage of a shared
// limiter must not stop every login. The account service's bounded hashing
// still caps the guessing rate meanwhile.
func (s *Server) limit(ctx context.Context, l ratelimit.Limit, key, what string) error {
	if !l.Enabled() {
		return nil
	}
	ok, retry, err := s.limiter.Allow(ctx, key, l)
	if err != nil {
		s.log.Warn("rate limiter failed; allowing the request", "limit", what, "err", err)
		return nil
	}
	if !ok {
		return &tooManyError{what: what, retry: retry}
	}
	return nil
}

// resetLimit gives key its full budget back (after a successful login).
func (s *Server) resetLimit(ctx context.Context, key string) {
	if err := s.limiter.Reset(ctx, key); err != nil {
		s.log.Warn("rate limiter reset failed", "err", err)
	}
}

// Keys of the limits. Emails are hashed so that the limiter holds no
// addresses and keys have a bounded length.
func loginClientKey(client string) string    { return "login:client:" + client }
func registerClientKey(client string) string { return "register:client:" + client }
func checkoutAccountKey(id string) string    { return "checkout:account:" + id }

func loginAccountKey(email string) string {
	sum := sha256.Sum256([]byte(normalizeEmail(email)))
	return "login:account:" + hex.EncodeToString(sum[:16])
}

// normalizeEmail is the account service's normalisation of an email as far
// as the limits need it: the same address however it is typed.
func normalizeEmail(email string) string { return strings.ToLower(strings.TrimSpace(email)) }
