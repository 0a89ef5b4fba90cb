package order

import (
	"crypto/rand"
	"encoding/binary"
	"strings"

	"github.com/globomantics/globomantics/internal/platform/shard"
)

// Order numbers are what a customer knows an order by: "GM-4K7Q-2XPN",
// shown on every page, in every e-mail and in the API's number field, and
// accepted by GetOrder in place of the id.
//
// The 8 characters after "GM-" are 40 bits in Crockford's base32 (digits
// and upper-case letters without I, L, O and U), most significant first:
// the 10 bits of the logical shard of the order's user, then 30 random bits.
// The shard makes a number unique across shards without coordination (each
// shard lives on one node, whose unique index on the number refuses a
// repeat; the store then draws another) and lets a look-up by number go
// straight to the order's node. The random bits make numbers impossible to
// guess from one another: they do not count orders. This layout is frozen:
// stored numbers depend on it.
const (
	NumberPrefix = "GM-"
	// NumberLen is the length of an order number, dashes included.
	NumberLen   = len(NumberPrefix) + 9
	numberBits  = 40
	randomBits  = numberBits - 10
	numberChars = numberBits / 5
)

// numberAlphabet is Crockford's base32 alphabet.
const numberAlphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// NewNumber returns a new random order number carrying shard s. It panics
// if s is not a valid shard: shard numbers come from code, not input.
func NewNumber(s shard.ID) string {
	if !s.Valid() {
		panic("order.NewNumber: invalid shard " + s.String())
	}
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	r := uint64(binary.BigEndian.Uint32(b[:])) & (1<<randomBits - 1)
	return formatNumber(uint64(s)<<randomBits | r)
}

// formatNumber spells the 40-bit value v as an order number.
func formatNumber(v uint64) string {
	var c [numberChars]byte
	for i := numberChars - 1; i >= 0; i-- {
		c[i] = numberAlphabet[v&31]
		v >>= 5
	}
	return NumberPrefix + string(c[:4]) + "-" + string(c[4:])
}

// ParseNumber reads an order number as a customer may type it: in any
// case, with or without its dashes, and with Crockford's readings of the
// letters O (0), I and L (1). It returns the number as NewNumber spells it,
// the shard it carries, and true; false for anything that is not an order
// number (an order id, for one).
func ParseNumber(s string) (number string, sh shard.ID, ok bool) {
	s = strings.ToUpper(strings.TrimSpace(s))
	if !strings.HasPrefix(s, "GM") {
		return "", 0, false
	}
	s = strings.ReplaceAll(strings.TrimPrefix(s, "GM"), "-", "")
	if len(s) != numberChars {
		return "", 0, false
	}
	var v uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case 'O':
			c = '0'
		case 'I', 'L':
			c = '1'
		}
		d := strings.IndexByte(numberAlphabet, c)
		if d < 0 {
			return "", 0, false
		}
		v = v<<5 | uint64(d)
	}
	return formatNumber(v), shard.ID(v >> randomBits), true
}
