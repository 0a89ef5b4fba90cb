package storefront

import (
	"encoding/base64"
	"net/http"
	"time"

	"github.com/globomantics/globomantics/internal/platform/consistency"
	"github.com/globomantics/globomantics/internal/platform/httpx"
)

// ReadAfterCookie carries, from one request of a visitor to the next, the
// database positions of the writes the visitor's requests made (a
// consistency.Token), so that a read served by a replica sees them: the
// customer who just placed an order finds it in the order history, whichever
// storefront and service instance answer. It holds no personal data.
const ReadAfterCookie = "globo_ra"

// readAfterMaxAge is how long the positions are kept. A replica that lags by
// more than its cluster's bound (1 s by default) leaves rotation, so after a
// few minutes every replica in rotation has replayed them.
const readAfterMaxAge = 5 * time.Minute

// withReadAfter loads the visitor's positions into the request's token and
// sends the token back in the cookie when the request's writes moved it.
func (s *Server) withReadAfter(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		tok := consistency.TokenFrom(ctx)
		if tok == nil {
			tok = consistency.NewToken()
			ctx = consistency.WithToken(ctx, tok)
		}
		if c, err := r.Cookie(s.cookieName(ReadAfterCookie)); err == nil {
			// A cookie that does not decode is dropped: it costs at most
			// a read from the primary.
			if b, err := base64.RawURLEncoding.DecodeString(c.Value); err == nil {
				if t, err := consistency.Parse(string(b)); err == nil {
					tok.Merge(t)
				}
			}
		}
		before := tok.String()
		w = httpx.OnHeader(w, func(http.Header) {
			if now := tok.String(); now != before && now != "" {
				s.setCookie(w, ReadAfterCookie, base64.RawURLEncoding.EncodeToString([]byte(now)), readAfterMaxAge)
			}
		})
		h.ServeHTTP(w, r.WithContext(ctx))
	})
}
