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

var shardIDPattern = regexp.MustCompile(`^([a-z]+)_([0-9a-hjkmnp-tv-z]{26})$`)

func TestNewInShardRoundTrip(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	for shard := uint16(0); shard < 1<<ids.ShardBits; shard++ {
		id := ids.NewInShard("ord", now, shard)
		if m := shardIDPattern.FindStringSubmatch(id); m == nil || m[1] != "ord" {
			t.Fatalf("NewInShard(ord, %d) = %q, want ord_ and 26 lower-case base32 characters", shard, id)
		}
		got, ok := ids.Shard(id)
		if !ok || got != shard {
			t.Fatalf("Shard(%q) = %d, %v; want %d, true", id, got, ok, shard)
		}
		// The time part is New's.
		if plain := ids.New("ord", now); id[:4+9] != plain[:4+9] {
			t.Fatalf("NewInShard and New differ in the time part: %s %s", id, plain)
		}
	}
}

func TestShardGolden(t *testing.T) {
	// Pinned: these ids were made once; the layout may never change.
	tests := []struct {
		id    string
		shard uint16
		ok    bool
	}{
		{"ord_06bjpq7e0001x1rfkppnwze2gs", 0, true},
		{"ord_06bjpq7e00049abwjhz3fzdwbn", 1, true},
		{"ord_06bjpq7e0207cz1n5m6k6t6w99", 513, true},
		{"ord_06bjpq7e03zzx17tnh18jhyq4d", 1023, true},
		{"u_06bjpq7e03zzx17tnh18jhyq4d", 1023, true},
		{"a_b_06bjpq7e03zzx17tnh18jhyq4d", 1023, true},
		{"_06bjpq7e03zzx17tnh18jhyq4d", 1023, true},
		// Made by New: no shard.
		{"ord_06bjpq7e02y6vtr6gqgqcnrx1c", 0, false},
		{"ord_06bjpq7e028451yf5ve01gw9nm", 0, false},
		// Not ids.
		{"", 0, false},
		{"ord", 0, false},
		{"ord_", 0, false},
		{"06bjpq7e03zzx17tnh18jhyq4d", 0, false},          // no underscore
		{"ord_06bjpq7e03zzx17tnh18jhyq4", 0, false},       // 25 characters
		{"ord_06bjpq7e03zzx17tnh18jhyq4dd", 0, false},     // 27 characters
		{"ord_06BJPQ7E03ZZX17TNH18JHYQ4D", 0, false},      // upper case
		{"ord_06bjpq7e03zzx17tnh18jhyq4u", 0, false},      // u is not in the alphabet
		{"ord_06bjpq7e03zzx17tnh18jhyqid", 0, false},      // nor is i
		{"ord_06bjpq7e03zzx17tnh18jhyq4_", 0, false},      // trailing underscore
		{"ord_06bjpq7e03zzx17tnh18jhyq4\u00e9", 0, false}, // non-ASCII
	}
	for _, tt := range tests {
		got, ok := ids.Shard(tt.id)
		if got != tt.shard || ok != tt.ok {
			t.Errorf("Shard(%q) = %d, %v; want %d, %v", tt.id, got, ok, tt.shard, tt.ok)
		}
	}
}

func TestShardRejectsEveryNewID(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	for i := 0; i < 20000; i++ {
		id := ids.New("ord", now.Add(time.Duration(i)*time.Millisecond))
		if s, ok := ids.Shard(id); ok {
			t.Fatalf("Shard(%q) = %d, true for an id made by New", id, s)
		}
	}
}

func TestNewInShardSortsWithNew(t *testing.T) {
	base := time.Date(2024, 12, 31, 23, 59, 59, 998_000_000, time.UTC)
	times := []time.Time{time.UnixMilli(0).UTC(), time.UnixMilli(1).UTC()}
	for _, d := range []time.Duration{0, time.Millisecond, 2 * time.Millisecond, time.Second, time.Hour, 24 * 365 * time.Hour, 40 * 24 * 365 * time.Hour} {
		times = append(times, base.Add(d))
	}
	for round := 0; round < 50; round++ {
		var list []string
		for i, tm := range times {
			// Alternate the two kinds, and the highest and lowest shards.
			switch i % 3 {
			case 0:
				list = append(list, ids.New("o", tm))
			case 1:
				list = append(list, ids.NewInShard("o", tm, 1023))
			default:
				list = append(list, ids.NewInShard("o", tm, 0))
			}
		}
		if !sort.StringsAreSorted(list) {
			t.Fatalf("ids of increasing times are not sorted: %q", list)
		}
	}
}

func TestNewInShardUnique(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	seen := make(map[string]bool, 100000)
	for i := 0; i < 100000; i++ {
		id := ids.NewInShard("x", now, 7) // same millisecond, same shard
		if seen[id] {
			t.Fatalf("duplicate id %s after %d", id, i)
		}
		seen[id] = true
	}
}

func TestInShardPanicsOnBigShard(t *testing.T) {
	tests := []struct {
		name string
		fn   func()
	}{
		{"NewInShard", func() { ids.NewInShard("x", time.Now(), 1024) }},
		{"TokenInShard", func() { ids.TokenInShard(1 << 15) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Errorf("%s with shard beyond 10 bits did not panic", tt.name)
				}
			}()
			tt.fn()
		})
	}
}

func TestTokenInShard(t *testing.T) {
	seen := map[string]bool{}
	for shard := uint16(0); shard < 1<<ids.ShardBits; shard++ {
		tok := ids.TokenInShard(shard)
		if len(tok) != 46 || strings.ContainsAny(tok, "+/=") {
			t.Fatalf("TokenInShard(%d) = %q, want 46 URL-safe characters", shard, tok)
		}
		raw, err := base64.RawURLEncoding.DecodeString(tok)
		if err != nil || len(raw) != 34 {
			t.Fatalf("TokenInShard(%d) = %q decodes to %d bytes, %v", shard, tok, len(raw), err)
		}
		got, ok := ids.TokenShard(tok)
		if !ok || got != shard {
			t.Fatalf("TokenShard(%q) = %d, %v; want %d, true", tok, got, ok, shard)
		}
		if seen[tok] {
			t.Fatal("duplicate token")
		}
		seen[tok] = true
	}
}

func TestTokenShardGolden(t *testing.T) {
	long := strings.Repeat("A", 46)
	tests := []struct {
		tok   string
		shard uint16
		ok    bool
	}{
		{"Brzyqjj6or16BvyMlSBNfLMSNB4_X4P72c-R_62x4bEoQg", 700, true}, // pinned
		{"BAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", 0, true},
		{"B_8AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", 1023, true},
		{long, 0, false}, // version 0
		{"C_8AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", 0, false}, // version 2
		{"Brzyqjj6or16BvyMlSBNfLMSNB4_X4P72c-R_62x4bEoQh", 0, false}, // non-zero padding bits
		{"Brzyqjj6or16BvyMlSBNfLMSNB4_X4P72c-R_62x4bEoQ=", 0, false},
		{"Brzyqjj6or16BvyMlSBNfLMSNB4/X4P72c+R_62x4bEoQg", 0, false}, // not URL-safe
		{"Brzyqjj6or16BvyMlSBNfLMSNB4_X4P72c-R_62x4bEo", 0, false},
		{"", 0, false},
	}
	for _, tt := range tests {
		got, ok := ids.TokenShard(tt.tok)
		if got != tt.shard || ok != tt.ok {
			t.Errorf("TokenShard(%q) = %d, %v; want %d, %v", tt.tok, got, ok, tt.shard, tt.ok)
		}
	}
	for i := 0; i < 10000; i++ {
		if tok := ids.Token(); func() bool { _, ok := ids.TokenShard(tok); return ok }() {
			t.Fatalf("TokenShard(%q) = true for a token made by Token", tok)
		}
	}
}
