// Package consistency says, for one request, how fresh the data it reads
// must be, and carries the positions of the writes it has already seen so
// that its later reads can be sent to a replica only once that replica has
// replayed past them (read-your-writes).
//
// A Level is asked for per store call; a Token travels with the caller: in
// the context inside a process, as the Header between services, and in a
// cookie between a browser and the storefront. A position is a PostgreSQL
// WAL position (LSN) as an integer, kept per data source: the name of one
// database cluster (a service's database, or one shard node's).
package consistency

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Level is the freshness a read needs.
type Level int

// The levels, strongest first.
const (
	// Primary reads see every committed write: money, and anything read
	// to be modified.
	Primary Level = iota
	// ReadYourWrites reads see at least the writes this caller has made
	// (the positions in its Token); a replica serves them once it has
	// replayed past those positions, the primary otherwise.
	ReadYourWrites
	// Bounded reads may be served by any replica within the cluster's lag
	// bound: browsing, where availability matters more than freshness.
	Bounded
)

func (l Level) String() string {
	switch l {
	case Primary:
		return "primary"
	case ReadYourWrites:
		return "read-your-writes"
	case Bounded:
		return "bounded"
	}
	return "level(" + strconv.Itoa(int(l)) + ")"
}

// Header is the HTTP header that carries a Token between services, in both
// directions: the caller's positions on the request, the positions of the
// writes the call made on the response.
const Header = "Globo-Read-After"

// Token is the set of write positions a caller has seen, one per data
// source. It is safe for concurrent use.
type Token struct {
	mu sync.Mutex
	m  map[string]uint64
}

// NewToken returns an empty token.
func NewToken() *Token { return &Token{m: map[string]uint64{}} }

// Observe records that the caller has seen position pos of source; a lower
// position than the one known changes nothing.
func (t *Token) Observe(source string, pos uint64) {
	if t == nil || source == "" || pos == 0 {
		return
	}
	t.mu.Lock()
	if pos > t.m[source] {
		t.m[source] = pos
	}
	t.mu.Unlock()
}

// Position is the highest position of source the caller has seen; 0 when none.
func (t *Token) Position(source string) uint64 {
	if t == nil {
		return 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.m[source]
}

// Merge observes every position of o.
func (t *Token) Merge(o *Token) {
	if t == nil || o == nil || t == o {
		return
	}
	o.mu.Lock()
	cp := make(map[string]uint64, len(o.m))
	for k, v := range o.m {
		cp[k] = v
	}
	o.mu.Unlock()
	for k, v := range cp {
		t.Observe(k, v)
	}
}

// Empty reports whether the token holds no position.
func (t *Token) Empty() bool {
	if t == nil {
		return true
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m) == 0
}

// String encodes the token as "source=pos;source=pos", sources sorted, each
// position as PostgreSQL prints an LSN (hex "X/Y"). Parse reads it back.
func (t *Token) String() string {
	if t == nil {
		return ""
	}
	t.mu.Lock()
	keys := make([]string, 0, len(t.m))
	for k := range t.m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(';')
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(FormatLSN(t.m[k]))
	}
	t.mu.Unlock()
	return b.String()
}

// MaxSources bounds how many sources a parsed token may name, so that a
// client cannot make a server keep an unbounded map.
const MaxSources = 64

// Parse decodes a token written by String. An empty string is an empty
// token; anything malformed is an error.
func Parse(s string) (*Token, error) {
	t := NewToken()
	s = strings.TrimSpace(s)
	if s == "" {
		return t, nil
	}
	parts := strings.Split(s, ";")
	if len(parts) > MaxSources {
		return nil, fmt.Errorf("consistency token names more than %d sources", MaxSources)
	}
	for _, p := range parts {
		src, pos, ok := strings.Cut(strings.TrimSpace(p), "=")
		if !ok || !validSource(src) {
			return nil, fmt.Errorf("consistency token: bad entry %q", p)
		}
		lsn, err := ParseLSN(pos)
		if err != nil {
			return nil, fmt.Errorf("consistency token: %w", err)
		}
		t.Observe(src, lsn)
	}
	return t, nil
}

func validSource(s string) bool {
	if s == "" || len(s) > 100 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == '/' || c == ':') {
			return false
		}
	}
	return true
}

// FormatLSN prints a WAL position as PostgreSQL does: "16/B374D848".
func FormatLSN(lsn uint64) string {
	return fmt.Sprintf("%X/%X", lsn>>32, uint32(lsn))
}

// ParseLSN reads a WAL position printed as "16/B374D848".
func ParseLSN(s string) (uint64, error) {
	hi, lo, ok := strings.Cut(s, "/")
	if !ok {
		return 0, fmt.Errorf("bad LSN %q", s)
	}
	h, err := strconv.ParseUint(hi, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("bad LSN %q", s)
	}
	l, err := strconv.ParseUint(lo, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("bad LSN %q", s)
	}
	return h<<32 | l, nil
}

type ctxKey int

const (
	levelKey ctxKey = iota
	tokenKey
	boundKey
)

// WithLevel returns ctx asking for reads at level l.
func WithLevel(ctx context.Context, l Level) context.Context {
	return context.WithValue(ctx, levelKey, l)
}

// LevelFrom is the level ctx asks for, and whether it asks at all.
func LevelFrom(ctx context.Context) (Level, bool) {
	l, ok := ctx.Value(levelKey).(Level)
	return l, ok
}

// WithToken returns ctx carrying t: the positions reads must see, and where
// the positions of writes made under ctx are recorded.
func WithToken(ctx context.Context, t *Token) context.Context {
	return context.WithValue(ctx, tokenKey, t)
}

// TokenFrom is the token ctx carries, or nil.
func TokenFrom(ctx context.Context) *Token {
	t, _ := ctx.Value(tokenKey).(*Token)
	return t
}

// WithStaleness returns ctx allowing Bounded reads at most d behind the
// primary (the cluster's own bound applies when it is tighter).
func WithStaleness(ctx context.Context, d time.Duration) context.Context {
	return context.WithValue(ctx, boundKey, d)
}

// StalenessFrom is the staleness ctx allows, and whether it says.
func StalenessFrom(ctx context.Context) (time.Duration, bool) {
	d, ok := ctx.Value(boundKey).(time.Duration)
	return d, ok
}
