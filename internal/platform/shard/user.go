package shard

// ForUser returns the logical shard of a user: ForKey of the user (account)
// id. Every store keyed by user (orders, payments of those orders, checkout
// attempts, the user's cart, the account and its sessions) places a user's
// rows on this shard, so that one user's rows share a node and a
// transaction over them never spans nodes.
func ForUser(userID string) ID { return ForKey(userID) }

// OfIDOrKey returns the shard id carries (OfID), or, for an id that carries
// none (made before sharding), ForKey(id). Rows keyed by another row's id,
// such as the payment of an order, use it to sit on that row's shard when
// the id tells it, and on a fixed shard otherwise.
func OfIDOrKey(id string) ID {
	if s, ok := OfID(id); ok {
		return s
	}
	return ForKey(id)
}
