package httpx

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"

	"github.com/globomantics/globomantics/internal/platform/errs"
)

// RequireToken lets through only requests that present token as a bearer
// credential (as a Client made WithToken does); others get a 401 problem.
// It guards the services' internal REST APIs, which trust their callers.
func RequireToken(token string, h http.Handler) http.Handler {
	want := sha256.Sum256([]byte(token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		sum := sha256.Sum256([]byte(got))
		if !ok || token == "" || subtle.ConstantTimeCompare(sum[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="globomantics services"`)
			errs.WriteProblem(w, r, errs.E(errs.Unauthorized, errs.Msg("this is an internal service API: a valid service token is required")))
			return
		}
		h.ServeHTTP(w, r)
	})
}
