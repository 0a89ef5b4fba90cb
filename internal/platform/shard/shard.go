// Package shard holds the pure building blocks of sharding by user: a fixed
// number of logical shards chosen by hashing a key (the user id), a Map that
// assigns every logical shard to a physical node, scatter-gather across
// nodes with per-node deadlines, and a Router that gives a store the handle
// of the node that holds a key, an id or a shard.
//
// Adding a node moves whole logical shards from one node to another by
// changing the Map (see Map.Move); the hash of a key never changes, so no
// row is ever rehashed. Ids of sharded rows carry their logical shard (see
// ids.NewInShard and OfID), so a look-up by id needs no directory.
//
// Online resharding moves a range of logical shards: copy, catch up, fence
// writes on the moving shards only (Router.Fence, Router.Drain), switch the
// map everywhere (Router.Swap), lift the fence (Router.Unfence), verify.
package shard

import (
	"crypto/sha256"
	"encoding/binary"
	"strconv"

	"github.com/globomantics/globomantics/internal/platform/ids"
)

// Count is the number of logical shards. It is frozen: changing it would
// move every row.
const Count = 1 << ids.ShardBits // 1024

// ID is a logical shard number, 0 to Count-1.
type ID uint16

// Valid reports whether s is a logical shard number, below Count.
func (s ID) Valid() bool { return s < Count }

// String returns the shard number in decimal.
func (s ID) String() string { return strconv.Itoa(int(s)) }

// ForKey returns the logical shard of a key such as a user id: the first 8
// bytes of the SHA-256 of the key, read big-endian, modulo Count.
//
// This function is frozen forever: every stored row sits on the shard it
// returned when the row was written, so changing it would move every row.
// The same value is computable in SQL, e.g. in PostgreSQL:
//
//	('x' || left(encode(sha256(convert_to(key, 'UTF8')), 'hex'), 16))::bit(64)::bigint & 1023
func ForKey(key string) ID {
	sum := sha256.Sum256([]byte(key))
	return ID(binary.BigEndian.Uint64(sum[:8]) % Count)
}

// OfID returns the logical shard carried by an id made by ids.NewInShard,
// and true; false for an id that carries no shard (made by ids.New, or not
// an id at all).
func OfID(id string) (ID, bool) {
	s, ok := ids.Shard(id)
	return ID(s), ok
}

// OfToken returns the logical shard carried by a token made by
// ids.TokenInShard, and true; false for any other string.
func OfToken(tok string) (ID, bool) {
	s, ok := ids.TokenShard(tok)
	return ID(s), ok
}
