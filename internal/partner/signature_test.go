package partner_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/partner"
	"github.com/globomantics/globomantics/internal/platform/errs"
)

// TestSignature checks the signature scheme against an independent
// computation, and that Verify refuses a tampered body, another secret, a
// stale timestamp and a missing header.
func TestSignature(t *testing.T) {
	const secret = "whsec_test"
	body := []byte(`{"id":"whd_1","type":"item.sold","data":{}}`)
	ts := t0.Unix()
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(strconv.FormatInt(ts, 10) + "." + string(body)))
	want := "v1=" + hex.EncodeToString(m.Sum(nil))
	if got := partner.Sign(secret, ts, body); got != want {
		t.Fatalf("Sign = %s, want %s", got, want)
	}
	h := http.Header{}
	h.Set(partner.HeaderTimestamp, strconv.FormatInt(ts, 10))
	h.Set(partner.HeaderSignature, "v0=old, "+want)
	if err := partner.Verify(secret, h, body, t0.Add(time.Minute), 5*time.Minute); err != nil {
		t.Fatalf("Verify of a good request: %v", err)
	}
	for name, tc := range map[string]struct {
		secret string
		body   string
		now    time.Time
		hdr    func(http.Header)
	}{
		"tampered body":   {secret, `{"id":"whd_2"}`, t0, nil},
		"another secret":  {"whsec_other", string(body), t0, nil},
		"stale timestamp": {secret, string(body), t0.Add(6 * time.Minute), nil},
		"no signature":    {secret, string(body), t0, func(h http.Header) { h.Del(partner.HeaderSignature) }},
		"no timestamp":    {secret, string(body), t0, func(h http.Header) { h.Del(partner.HeaderTimestamp) }},
	} {
		hh := h.Clone()
		if tc.hdr != nil {
			tc.hdr(hh)
		}
		if err := partner.Verify(tc.secret, hh, []byte(tc.body), tc.now, 5*time.Minute); !errs.Is(errs.Unauthorized, err) {
			t.Errorf("%s: Verify = %v, want Unauthorized", name, err)
		}
	}
}
