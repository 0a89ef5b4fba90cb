package shard_test

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/platform/ids"
	"github.com/globomantics/globomantics/internal/platform/shard"
)

func TestCountMatchesIDs(t *testing.T) {
	count, bits := shard.Count, ids.ShardBits
	if count != 1024 || bits != 10 {
		t.Fatalf("Count = %d, ids.ShardBits = %d: both are frozen at 1024 and 10", count, bits)
	}
}

// TestForKeyGolden pins the hash. If this test fails, ForKey has changed and
// every stored row would be on the wrong shard: change it back.
func TestForKeyGolden(t *testing.T) {
	// Values computed independently: int.from_bytes(sha256(key)[:8], 'big') % 1024.
	tests := []struct {
		key  string
		want shard.ID
	}{
		{"", 20},
		{"u_1", 285},
		{"usr_06bjpq7e02y6vtr6gqgqcnrx1c", 827},
		{"alice@example.com", 703},
		{"globomantics", 761},
		{"été", 458},
	}
	for _, tt := range tests {
		if got := shard.ForKey(tt.key); got != tt.want {
			t.Errorf("ForKey(%q) = %d, want %d (the hash is frozen forever)", tt.key, got, tt.want)
		}
	}
}

func TestForKeyDistribution(t *testing.T) {
	const n = 100_000
	rng := rand.New(rand.NewPCG(1, 2)) // fixed seed: the test is deterministic
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		key  func(i int) string
	}{
		{"random ids", func(i int) string { return ids.New("usr", now.Add(time.Duration(i)*time.Millisecond)) }},
		{"random bytes", func(int) string {
			b := make([]byte, 1+rng.IntN(24))
			for j := range b {
				b[j] = byte(rng.Uint32())
			}
			return string(b)
		}},
		{"sequential", func(i int) string { return fmt.Sprintf("usr_%d", i) }},
		{"e-mails", func(i int) string { return fmt.Sprintf("user%d@example.com", i) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var perShard [shard.Count]int
			for i := 0; i < n; i++ {
				s := shard.ForKey(tt.key(i))
				if !s.Valid() {
					t.Fatalf("ForKey returned %d, not below Count", s)
				}
				perShard[s]++
			}
			// Each eighth of the shards gets 1/8 of the keys, within 4%.
			const eighth = shard.Count / 8
			for k := 0; k < 8; k++ {
				got := 0
				for _, c := range perShard[k*eighth : (k+1)*eighth] {
					got += c
				}
				if want := n / 8; got < want*96/100 || got > want*104/100 {
					t.Errorf("shards %d-%d got %d keys, want %d within 4%%", k*eighth, (k+1)*eighth-1, got, want)
				}
			}
			// No shard is empty or holds more than twice its share (~98).
			for s, c := range perShard {
				if c == 0 || c > 2*n/shard.Count {
					t.Errorf("shard %d got %d keys, want about %d", s, c, n/shard.Count)
				}
			}
		})
	}
}

func TestOfIDAndToken(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name   string
		of     func(string) (shard.ID, bool)
		in     string
		want   shard.ID
		wantOK bool
	}{
		{"sharded id", shard.OfID, ids.NewInShard("ord", now, 777), 777, true},
		{"plain id", shard.OfID, ids.New("ord", now), 0, false},
		{"not an id", shard.OfID, "hello", 0, false},
		{"sharded token", shard.OfToken, ids.TokenInShard(1023), 1023, true},
		{"plain token", shard.OfToken, ids.Token(), 0, false},
		{"id as token", shard.OfToken, ids.NewInShard("ord", now, 5), 0, false},
	}
	for _, tt := range tests {
		got, ok := tt.of(tt.in)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("%s: %q gives %d, %v; want %d, %v", tt.name, tt.in, got, ok, tt.want, tt.wantOK)
		}
	}
}

func BenchmarkForKey(b *testing.B) {
	for b.Loop() {
		shard.ForKey("usr_06bjpq7e02y6vtr6gqgqcnrx1c")
	}
}
