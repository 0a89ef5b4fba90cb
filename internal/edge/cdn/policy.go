package cdn

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/globomantics/globomantics/internal/platform/compress"
)

// maxNotFoundFreshness bounds how long a cacheable 404 is kept, whatever the
// origin says: a missing thing may appear at any moment.
const maxNotFoundFreshness = 30 * time.Second

// cacheControl is what a response's Cache-Control says to a shared cache.
type cacheControl struct {
	noStore, private, noCache, public, immutable, mustRevalidate bool
	maxAge, sMaxAge, swr                                         time.Duration // -1 when absent
}

// parseCacheControl reads the Cache-Control field values. A directive whose
// value does not parse is ignored, which can only make a response less
// cacheable (its freshness is then absent).
func parseCacheControl(values []string) cacheControl {
	cc := cacheControl{maxAge: -1, sMaxAge: -1, swr: -1}
	for _, v := range values {
		for d := range strings.SplitSeq(v, ",") {
			name, arg, _ := strings.Cut(strings.TrimSpace(d), "=")
			name = strings.ToLower(strings.TrimSpace(name))
			switch name {
			case "no-store":
				cc.noStore = true
			case "private":
				cc.private = true
			case "no-cache":
				cc.noCache = true
			case "public":
				cc.public = true
			case "immutable":
				cc.immutable = true
			case "must-revalidate", "proxy-revalidate":
				cc.mustRevalidate = true
			case "max-age":
				cc.maxAge = parseSeconds(arg)
			case "s-maxage":
				cc.sMaxAge = parseSeconds(arg)
			case "stale-while-revalidate":
				cc.swr = parseSeconds(arg)
			}
		}
	}
	return cc
}

// parseSeconds parses a delta-seconds value (RFC 9111, 1.2.2), -1 if
// malformed; values beyond what a Duration holds are clamped.
func parseSeconds(s string) time.Duration {
	s = strings.Trim(strings.TrimSpace(s), `"`)
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange && s != "" && s[0] != '-' {
			return 100 * 365 * 24 * time.Hour
		}
		return -1
	}
	if n < 0 {
		return -1
	}
	if n > int64(100*365*24*time.Hour/time.Second) {
		return 100 * 365 * 24 * time.Hour
	}
	return time.Duration(n) * time.Second
}

// policy is how a stored response is kept.
type policy struct {
	fresh   time.Duration // freshness lifetime
	swr     time.Duration // stale-while-revalidate window after it
	varies  bool          // Vary: Accept-Encoding
	cookie  bool          // Vary: Cookie, stored from a request without cookies
	hasLen  bool          // Content-Length present
	length  int64         // its value
	validor bool          // an ETag or Last-Modified to revalidate with
}

// storable decides whether a response with this status and header, fetched
// for the Accept-Encoding variant by a request with or without cookies, may
// be stored, and how. A response that varies by Cookie is stored only from a
// request without cookies, for requests without cookies: the anonymous
// visitor's page.
func storable(code int, h http.Header, variant string, withCookies bool, maxObject int64) (policy, bool) {
	var p policy
	if code != http.StatusOK && code != http.StatusNotFound {
		return p, false
	}
	cc := parseCacheControl(h.Values("Cache-Control"))
	if cc.noStore || cc.private || cc.noCache {
		return p, false
	}
	switch {
	case cc.sMaxAge >= 0:
		p.fresh = cc.sMaxAge
	case cc.maxAge >= 0 && (cc.public || cc.immutable):
		p.fresh = cc.maxAge
	default:
		return p, false // no explicit freshness for a shared cache
	}
	if code == http.StatusNotFound {
		p.fresh = min(p.fresh, maxNotFoundFreshness)
	}
	p.validor = h.Get("ETag") != "" || h.Get("Last-Modified") != ""
	if p.fresh == 0 && !p.validor {
		return p, false // every use would be a full fetch
	}
	if cc.swr > 0 && !cc.mustRevalidate {
		p.swr = cc.swr
	}
	if _, ok := h["Set-Cookie"]; ok {
		return p, false
	}
	if h.Get("Content-Range") != "" || h.Get("Trailer") != "" {
		return p, false
	}
	for _, v := range h.Values("Vary") {
		for t := range strings.SplitSeq(v, ",") {
			switch t = strings.TrimSpace(t); {
			case t == "":
			case strings.EqualFold(t, "Accept-Encoding"):
				p.varies = true
			case strings.EqualFold(t, "Cookie") && !withCookies:
				p.cookie = true
			default:
				return p, false // "*", Origin, ...: not kept apart here
			}
		}
	}
	ce := strings.ToLower(strings.TrimSpace(h.Get("Content-Encoding")))
	if ce == compress.Identity {
		ce = ""
	}
	if ce != "" && (!p.varies || ce != variant) {
		// An encoded body that is not marked as one variant, or not the
		// variant asked for, must not be handed to other clients.
		return p, false
	}
	if cl := h.Get("Content-Length"); cl != "" {
		n, err := strconv.ParseInt(cl, 10, 64)
		if err != nil || n < 0 || n > maxObject {
			return p, false
		}
		p.hasLen, p.length = true, n
	}
	return p, true
}

// cacheableRequest reports whether a request may be answered from, or fill,
// the cache: GET or HEAD, without credentials, not a range or a conditional
// other than If-None-Match / If-Modified-Since, not an upgrade.
func cacheableRequest(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	h := r.Header
	for _, k := range [...]string{"Authorization", "Range", "If-Range", "If-Match", "If-Unmodified-Since", "Upgrade"} {
		if _, ok := h[k]; ok {
			return false
		}
	}
	return true
}

// etagMatch applies If-None-Match's weak comparison (RFC 9110, 13.1.2):
// any listed tag equal to etag, ignoring W/, or "*".
func etagMatch(header, etag string) bool {
	etag = strings.TrimPrefix(etag, "W/")
	for t := range strings.SplitSeq(header, ",") {
		t = strings.TrimSpace(t)
		if t == "*" || strings.TrimPrefix(t, "W/") == etag {
			return true
		}
	}
	return false
}

// unstored reports whether a header field (canonical name) is left out of
// stored responses: it describes one connection or one request, or is set
// afresh on every answer.
func unstored(name string) bool {
	switch name {
	case "Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "Upgrade",
		"Trailer", "Te", "Proxy-Authenticate", "Age", "X-Cache", "X-Request-Id":
		return true
	}
	return false
}

// notRefreshed reports whether a header field of a 304 is kept out of the
// stored response it refreshes: those describe the stored body, which the
// 304 does not carry (a compressing hop may also have changed them).
func notRefreshed(name string) bool {
	switch name {
	case "Content-Length", "Content-Encoding", "Content-Type", "Content-Range", "Etag", "Vary":
		return true
	}
	return unstored(name)
}
