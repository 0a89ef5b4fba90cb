package storefront

import (
	"net/http"
	"net/url"

	"github.com/globomantics/globomantics/internal/platform/errs"
)

// checkOrigin refuses unsafe cross-origin browser requests (CSRF). Browsers
// tell where a request comes from with Sec-Fetch-Site or Origin, which
// http.CrossOriginProtection checks against the Host; for older browsers
// that send neither, a Referer from another host is refused too. Requests
// with none of these headers come from non-browser clients (curl, other
// programs) and are allowed, which keeps the JSON API usable. The session
// and cart cookies are also SameSite=Lax, so browsers do not send them on
// cross-site POSTs in the first place.
func (s *Server) checkOrigin(r *http.Request) error {
	const op = "storefront.checkOrigin"
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return nil
	}
	refused := func(cause error) error {
		return errs.E(op, errs.Forbidden, errs.Msg("cross-origin request refused"), cause)
	}
	if err := s.csrf.Check(r); err != nil {
		return refused(err)
	}
	if r.Header.Get("Sec-Fetch-Site") == "" && r.Header.Get("Origin") == "" {
		if ref := r.Header.Get("Referer"); ref != "" {
			u, err := url.Parse(ref)
			if err != nil || u.Host != r.Host {
				return refused(err)
			}
		}
	}
	return nil
}
