package storefront

import (
	"encoding/base64"
	"net/http"
	"time"
	"unicode/utf8"
)

// FlashCookie carries a one-time message ("Added to your cart.") from the
// action that set it, across its redirect, to the next page rendered, which
// shows it once and clears it (the post/redirect/get pattern with feedback).
// It is a cookie, not server memory: any instance may render the next page.
const FlashCookie = "globo_flash"

const (
	// flashMaxAge bounds how long an unshown message waits: it belongs to
	// the very next page.
	flashMaxAge = time.Minute
	// maxFlash bounds a message in bytes (before encoding).
	maxFlash = 300
)

// Flash kinds: how a message is styled and announced.
const (
	FlashInfo    = "info"    // something happened as asked
	FlashWarning = "warning" // it happened, but not quite as asked (a quantity capped to the stock)
)

// flash is the message shown at the top of a page.
type flash struct {
	Kind string
	Text string
}

// setFlash leaves msg for the next page this visitor sees. The value is
// base64url (cookie values cannot hold spaces or commas); an over-long
// message is cut at a rune boundary.
func (s *Server) setFlash(w http.ResponseWriter, kind, msg string) {
	if len(msg) > maxFlash {
		msg = msg[:maxFlash]
		for !utf8.ValidString(msg) {
			msg = msg[:len(msg)-1]
		}
	}
	if kind != FlashWarning {
		kind = FlashInfo
	}
	s.setCookie(w, FlashCookie, kind[:1]+base64.RawURLEncoding.EncodeToString([]byte(msg)), flashMaxAge)
}

// hasFlash reports whether a message waits for r's visitor: such a page is
// personal and must not be shared or cached.
func (s *Server) hasFlash(r *http.Request) bool {
	_, err := r.Cookie(s.cookieName(FlashCookie))
	return err == nil
}

// takeFlash returns the message waiting for r's visitor, if any, and clears
// it so that it is shown once. A malformed cookie is cleared and ignored.
func (s *Server) takeFlash(w http.ResponseWriter, r *http.Request) *flash {
	c, err := r.Cookie(s.cookieName(FlashCookie))
	if err != nil {
		return nil
	}
	s.clearCookie(w, FlashCookie)
	v := c.Value
	if len(v) < 2 || len(v) > 2*maxFlash {
		return nil
	}
	kind := FlashInfo
	switch v[0] {
	case 'i':
	case 'w':
		kind = FlashWarning
	default:
		return nil
	}
	b, err := base64.RawURLEncoding.DecodeString(v[1:])
	if err != nil || !utf8.Valid(b) || len(b) == 0 {
		return nil
	}
	return &flash{Kind: kind, Text: string(b)}
}
