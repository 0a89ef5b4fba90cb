// Package ids makes opaque identifiers and secret tokens.
//
// Identifiers and tokens come in two forms: plain ones (New, Token) and ones
// that carry the logical shard of the row they name (NewInShard,
// TokenInShard), so that a sharded store can route a look-up by id or by
// token without a directory. Shard and TokenShard recover the shard and tell
// the two forms apart without fail: a plain id or token is never read as
// carrying a shard.
package ids

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"strings"
	"time"
)

// alphabet is the base32 alphabet of ids: digits and lower-case letters
// without i, l, o and u.
const alphabet = "0123456789abcdefghjkmnpqrstvwxyz"

var enc = base32.NewEncoding(alphabet).WithPadding(base32.NoPadding)

// ShardBits is the number of bits of a shard number carried by NewInShard
// ids and TokenInShard tokens; shards are 0 to 1<<ShardBits - 1.
const ShardBits = 10

// maxShard is the largest shard number an id or token can carry.
const maxShard = 1<<ShardBits - 1

// idLen is the number of characters after the prefix and underscore.
const idLen = 26

// Version markers. An id's 26 characters hold 130 bits, of which New uses
// the first 128 and leaves the last 2 zero; NewInShard sets those 2 bits to
// idMarkerV1. A token's version is the top 6 bits of its first 2 bytes.
const (
	idMarkerV1    = 1
	tokenV1       = 1
	tokenRandom   = 32
	shardTokenLen = 46 // base64 characters of 2 + 32 bytes
)

// New returns a new identifier with the given prefix: the prefix, an
// underscore, then 26 characters that sort by creation time (millisecond
// precision) and carry 80 random bits.
func New(prefix string, now time.Time) string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(now.UnixMilli())<<16)
	if _, err := rand.Read(b[6:]); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return prefix + "_" + strings.ToLower(enc.EncodeToString(b[:]))
}

// NewInShard returns a new identifier like New's (the prefix, an underscore,
// then 26 characters that sort by creation time at millisecond precision,
// among themselves and among New's ids) that also carries the given logical
// shard, which Shard recovers. It carries 70 random bits. It panics if shard
// does not fit in ShardBits bits: shard numbers come from code, not input.
//
// The 130 bits of the 26 base32 characters are laid out, most significant
// first, as: 48 bits of Unix milliseconds, 10 bits of shard, 70 random bits,
// and a 2-bit version marker, 01. New leaves those last 2 bits 00 (they are
// the padding of its 128 bits), which is how Shard knows its ids carry no
// shard. This layout is frozen: stored ids depend on it.
func NewInShard(prefix string, now time.Time, shard uint16) string {
	if shard > maxShard {
		panic(fmt.Sprintf("ids.NewInShard: shard %d does not fit in %d bits", shard, ShardBits))
	}
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(now.UnixMilli())<<16)
	if _, err := rand.Read(b[7:]); err != nil {
		panic(err)
	}
	b[6] = byte(shard >> 2)
	b[7] = byte(shard&3)<<6 | b[7]&0x3f
	s := []byte(enc.EncodeToString(b[:]))
	last := strings.IndexByte(alphabet, s[idLen-1]) // its low 2 bits are padding, 0
	s[idLen-1] = alphabet[last|idMarkerV1]
	return prefix + "_" + string(s)
}

// Shard returns the logical shard carried by an id made by NewInShard, and
// true. For an id made by New, and for any string that is not a well-formed
// id, it returns false.
func Shard(id string) (uint16, bool) {
	i := strings.LastIndexByte(id, '_')
	if i < 0 || len(id)-i-1 != idLen {
		return 0, false
	}
	s := []byte(id[i+1:])
	last := strings.IndexByte(alphabet, s[idLen-1])
	if last < 0 || last&3 != idMarkerV1 {
		return 0, false
	}
	s[idLen-1] = alphabet[last&^3]
	b, err := enc.DecodeString(string(s))
	if err != nil || len(b) != 16 {
		return 0, false
	}
	return uint16(b[6])<<2 | uint16(b[7]>>6), true
}

// Token returns a URL-safe secret of 32 random bytes.
func Token() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// TokenInShard returns a URL-safe secret of 32 random bytes, as Token does,
// that also carries the given logical shard, which TokenShard recovers. It is
// 46 characters long (Token's are 43). It panics if shard does not fit in
// ShardBits bits.
//
// Layout, frozen: unpadded base64url of 34 bytes, the first two a big-endian
// uint16 holding a 6-bit version (1) above the 10-bit shard, then the 32
// random bytes.
func TokenInShard(shard uint16) string {
	if shard > maxShard {
		panic(fmt.Sprintf("ids.TokenInShard: shard %d does not fit in %d bits", shard, ShardBits))
	}
	var b [2 + tokenRandom]byte
	binary.BigEndian.PutUint16(b[:2], tokenV1<<ShardBits|shard)
	if _, err := rand.Read(b[2:]); err != nil {
		panic(err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// TokenShard returns the logical shard carried by a token made by
// TokenInShard, and true. For a token made by Token, and for any string that
// is not such a token, it returns false.
func TokenShard(tok string) (uint16, bool) {
	if len(tok) != shardTokenLen {
		return 0, false
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(tok)
	if err != nil || len(b) != 2+tokenRandom {
		return 0, false
	}
	v := binary.BigEndian.Uint16(b[:2])
	if v>>ShardBits != tokenV1 {
		return 0, false
	}
	return v & maxShard, true
}
