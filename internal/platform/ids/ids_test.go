package ids_test

import (
	"encoding/base64"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/platform/ids"
)

var idPattern = regexp.MustCompile(`^([a-z]+)_([0-9a-hjkmnp-tv-z]{26})$`)

func TestNewShape(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	for _, prefix := range []string{"prd", "ord", "u"} {
		id := ids.New(prefix, now)
		m := idPattern.FindStringSubmatch(id)
		if m == nil || m[1] != prefix {
			t.Errorf("New(%q) = %q, want %s_ and 26 lower-case base32 characters", prefix, id, prefix)
		}
	}
}

func TestNewUnique(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	seen := make(map[string]bool, 100000)
	for i := 0; i < 100000; i++ {
		id := ids.New("x", now) // all in the same millisecond
		if seen[id] {
			t.Fatalf("duplicate id %s after %d", id, i)
		}
		seen[id] = true
	}
}

func TestNewSortsByTime(t *testing.T) {
	base := time.Date(2024, 12, 31, 23, 59, 59, 998_000_000, time.UTC)
	var times []time.Time
	for _, d := range []time.Duration{0, time.Millisecond, 2 * time.Millisecond, time.Second, time.Hour, 24 * 365 * time.Hour, 40 * 24 * 365 * time.Hour} {
		times = append(times, base.Add(d))
	}
	times = append([]time.Time{time.UnixMilli(0).UTC(), time.UnixMilli(1).UTC()}, times...)
	for round := 0; round < 50; round++ {
		var list []string
		for _, tm := range times {
			list = append(list, ids.New("o", tm))
		}
		if !sort.StringsAreSorted(list) {
			t.Fatalf("ids of increasing times are not sorted: %q", list)
		}
	}
	// Ids made in the same millisecond share the time part.
	a, b := ids.New("o", base), ids.New("o", base.Add(999*time.Microsecond))
	if a[:2+9] != b[:2+9] { // 48 time bits fill the first 9 characters
		t.Errorf("same-millisecond ids differ in the time part: %s %s", a, b)
	}
	if a == b {
		t.Error("same-millisecond ids are equal")
	}
}

func TestToken(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		tok := ids.Token()
		if len(tok) != 43 {
			t.Fatalf("Token() = %q: %d characters, want 43", tok, len(tok))
		}
		if strings.ContainsAny(tok, "+/=") {
			t.Fatalf("Token() = %q is not URL-safe", tok)
		}
		raw, err := base64.RawURLEncoding.DecodeString(tok)
		if err != nil || len(raw) != 32 {
			t.Fatalf("Token() = %q decodes to %d bytes, %v", tok, len(raw), err)
		}
		if seen[tok] {
			t.Fatal("duplicate token")
		}
		seen[tok] = true
	}
}
