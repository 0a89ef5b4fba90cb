package order_test

import (
	"strings"
	"testing"

	"github.com/globomantics/globomantics/internal/order"
	"github.com/globomantics/globomantics/internal/platform/shard"
)

func TestNumberCarriesShard(t *testing.T) {
	for _, sh := range []shard.ID{0, 1, 511, shard.Count - 1} {
		seen := map[string]bool{}
		for range 50 {
			n := order.NewNumber(sh)
			if len(n) != order.NumberLen || !strings.HasPrefix(n, order.NumberPrefix) || n[7] != '-' {
				t.Fatalf("NewNumber(%d) = %q: not shaped GM-XXXX-XXXX", sh, n)
			}
			got, gotShard, ok := order.ParseNumber(n)
			if !ok || got != n || gotShard != sh {
				t.Fatalf("ParseNumber(%q) = %q, %d, %v; want itself, shard %d", n, got, gotShard, ok, sh)
			}
			seen[n] = true
		}
		if len(seen) < 45 { // 30 random bits: a few repeats in 50 would be no chance
			t.Errorf("shard %d: only %d distinct numbers in 50", sh, len(seen))
		}
	}
}

func TestParseNumber(t *testing.T) {
	n := order.NewNumber(42)
	body := strings.TrimPrefix(n, order.NumberPrefix)
	for _, in := range []string{n, strings.ToLower(n), " " + n + " ", "GM" + strings.ReplaceAll(body, "-", "")} {
		if got, sh, ok := order.ParseNumber(in); !ok || got != n || sh != 42 {
			t.Errorf("ParseNumber(%q) = %q, %d, %v; want %q, 42", in, got, sh, ok, n)
		}
	}
	// Crockford's readings: O is 0, I and L are 1.
	if got, _, ok := order.ParseNumber("gm-oiLo-0000"); !ok || got != "GM-0110-0000" {
		t.Errorf("ParseNumber(gm-oiLo-0000) = %q, %v; want GM-0110-0000", got, ok)
	}
	for _, bad := range []string{"", "GM-", "GM-1234-567", "GM-1234-56789", "GM-1234-567U", "ord_06an34yy02gh0zfpge5rdzwc91", "XX-1234-5678"} {
		if _, _, ok := order.ParseNumber(bad); ok {
			t.Errorf("ParseNumber(%q) ok, want not a number", bad)
		}
	}
}
