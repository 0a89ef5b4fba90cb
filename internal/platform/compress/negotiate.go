package compress

import (
	"strconv"
	"strings"
)

// The content codings this package produces, as named in Content-Encoding.
const (
	Zstd     = "zstd"
	Gzip     = "gzip"
	Identity = "identity"
)

// Negotiate returns the coding to answer a request whose Accept-Encoding
// header is header with: Zstd, Gzip or Identity. The highest q-value wins;
// on equal values zstd is preferred, then gzip, then identity. Codings not
// listed take the value of "*" if it is listed; identity is acceptable
// unless excluded ("identity;q=0", or "*;q=0" without identity), but when
// not listed it loses to any listed coding with a non-zero q-value. When
// nothing listed is acceptable it returns Identity, which the server may
// then send anyway (RFC 9110, 12.5.3). An empty header means Identity.
//
// Shared caches use it to normalize Accept-Encoding into one of three
// variants, so it is also the key of a cached variant.
func Negotiate(header string) string {
	switch header {
	case "":
		return Identity
	case "gzip, deflate, br, zstd", "gzip, deflate, br, zstd, dcb, dcz", "zstd", "gzip, zstd", "zstd, gzip":
		return Zstd // Chromium's, and ours
	case "gzip, deflate, br", "gzip, deflate", "gzip", "br, gzip", "deflate, gzip":
		return Gzip // Firefox's and Safari's, Go's
	}
	const unset = -1.0
	qz, qg, qi, qs := unset, unset, unset, unset
	for part := range strings.SplitSeq(header, ",") {
		name, params, _ := strings.Cut(part, ";")
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		q := parseQ(params)
		switch {
		case strings.EqualFold(name, Zstd):
			qz = max(qz, q)
		case strings.EqualFold(name, Gzip), strings.EqualFold(name, "x-gzip"):
			qg = max(qg, q)
		case strings.EqualFold(name, Identity):
			qi = max(qi, q)
		case name == "*":
			qs = max(qs, q)
		}
	}
	star := func(q, dflt float64) float64 {
		if q != unset {
			return q
		}
		if qs != unset {
			return qs
		}
		return dflt
	}
	// Identity not listed is acceptable, but any listed coding is
	// preferred to it.
	qz, qg, qi = star(qz, 0), star(qg, 0), star(qi, 0.0001)
	best, bq := Identity, 0.0
	// In reverse order of preference, with >=: a preferred coding wins a tie.
	if qi > bq {
		best, bq = Identity, qi
	}
	if qg > 0 && qg >= bq {
		best, bq = Gzip, qg
	}
	if qz > 0 && qz >= bq {
		best = Zstd
	}
	return best
}

// parseQ returns the q parameter's value from params (";q=0.5"), 1 when
// absent, 0 when malformed (a coding with a broken weight is not trusted).
func parseQ(params string) float64 {
	for p := range strings.SplitSeq(params, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
		if !ok || !strings.EqualFold(strings.TrimSpace(k), "q") {
			continue
		}
		q, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || q < 0 || q > 1 {
			return 0
		}
		return q
	}
	return 1
}
