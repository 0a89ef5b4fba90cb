package partner

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/globomantics/globomantics/internal/platform/errs"
)

// Headers of every webhook request (docs/EVENTS.md, "Partner webhooks").
const (
	// HeaderID is the delivery id: the same on every attempt of one
	// delivery, so a receiver de-duplicates by it (delivery is at least
	// once).
	HeaderID = "Globo-Webhook-Id"
	// HeaderTimestamp is when the attempt was signed, in Unix seconds.
	HeaderTimestamp = "Globo-Webhook-Timestamp"
	// HeaderSignature is "v1=" and the hex HMAC-SHA256, keyed with the
	// partner's secret, of the timestamp, ".", and the body.
	HeaderSignature = "Globo-Signature"
)

// Sign returns the HeaderSignature value of body sent at timestamp ts
// (Unix seconds) under secret: "v1=<hex HMAC-SHA256(secret, ts + "." + body)>".
// The timestamp is signed with the body so that a captured request cannot
// be replayed later with a fresh timestamp.
func Sign(secret string, ts int64, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(strconv.FormatInt(ts, 10)))
	m.Write([]byte{'.'})
	m.Write(body)
	return "v1=" + hex.EncodeToString(m.Sum(nil))
}

// Verify checks a webhook request's signature as a receiver would: h holds
// its headers, body its body. The timestamp must be within tolerance of
// now (a replay of an old request is refused), and one of the
// comma-separated signatures of HeaderSignature must be Sign's, compared
// in constant time. errs.Unauthorized saying why otherwise.
func Verify(secret string, h http.Header, body []byte, now time.Time, tolerance time.Duration) error {
	const op = "partner.Verify"
	ts, err := strconv.ParseInt(h.Get(HeaderTimestamp), 10, 64)
	if err != nil {
		return errs.E(op, errs.Unauthorized, errs.Msg("missing or malformed %s", HeaderTimestamp))
	}
	if d := now.Sub(time.Unix(ts, 0)); d > tolerance || d < -tolerance {
		return errs.E(op, errs.Unauthorized, errs.Msg("timestamp is %v away from now", d.Round(time.Second)))
	}
	want := []byte(Sign(secret, ts, body))
	for _, sig := range strings.Split(h.Get(HeaderSignature), ",") {
		if hmac.Equal([]byte(strings.TrimSpace(sig)), want) {
			return nil
		}
	}
	return errs.E(op, errs.Unauthorized, errs.Msg("no valid %s", HeaderSignature))
}
