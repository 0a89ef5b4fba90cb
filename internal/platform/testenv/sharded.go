package testenv

import (
	"strconv"
	"testing"

	"github.com/globomantics/globomantics/internal/platform/shard"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
)

// TwoNodeMap is the shard map of the two-node topologies of
// ShardedBackends: shards 0-511 on node "a", 512-1023 on node "b".
const TwoNodeMap = "0-511=a;512-1023=b"

// ShardedBackend is a named constructor of a sharded database for store
// conformance suites: Open returns the Sharded and each node's database by
// node name, so that a test can query a node directly or close it.
type ShardedBackend struct {
	Name string
	Open func(tb testing.TB) (*sqldb.Sharded, map[string]*sqldb.DB)
}

// FirstAndLast returns the first and the last node of sh's map: two
// different nodes in a two-node topology, the same one in a single-node one.
func FirstAndLast(sh *sqldb.Sharded) (first, last string) {
	nodes := sh.Nodes()
	return nodes[0], nodes[len(nodes)-1]
}

// ShardedBackends lists, for SQLite and PostgreSQL, one node holding every
// shard (sqldb.Single, as an unsharded service runs) and two nodes split by
// TwoNodeMap (two SQLite files; two databases on the private PostgreSQL
// server).
func ShardedBackends() []ShardedBackend {
	var out []ShardedBackend
	for _, b := range Backends() {
		open := b.Open
		out = append(out,
			ShardedBackend{b.Name + "/single", func(tb testing.TB) (*sqldb.Sharded, map[string]*sqldb.DB) {
				tb.Helper()
				db := open(tb)
				return sqldb.Single(db), map[string]*sqldb.DB{sqldb.SingleNode: db}
			}},
			ShardedBackend{b.Name + "/two-nodes", func(tb testing.TB) (*sqldb.Sharded, map[string]*sqldb.DB) {
				tb.Helper()
				return Sharded(tb, TwoNodeMap, open)
			}})
	}
	return out
}

// Sharded returns a Sharded over spec (a shard map whose nodes are names),
// each node a fresh database made by open, and the nodes' databases by name.
func Sharded(tb testing.TB, spec string, open func(tb testing.TB) *sqldb.DB) (*sqldb.Sharded, map[string]*sqldb.DB) {
	tb.Helper()
	m, err := shard.ParseMap(spec)
	if err != nil {
		tb.Fatal(err)
	}
	nodes := map[string]*sqldb.DB{}
	for _, n := range m.Nodes() {
		nodes[n] = open(tb)
	}
	s, err := sqldb.NewSharded(m, func(node string) (*sqldb.DB, error) { return nodes[node], nil })
	if err != nil {
		tb.Fatal(err)
	}
	// The nodes close through their own clean-ups; closing twice is harmless.
	tb.Cleanup(func() { _ = s.Close() })
	return s, nodes
}

// KeyOnNode returns a key (prefix followed by a number) whose shard.ForKey
// lies on node of m, so that a test can place a user on a node.
func KeyOnNode(tb testing.TB, m shard.Map, node, prefix string) string {
	tb.Helper()
	for i := 0; i < 100000; i++ {
		k := prefix + strconv.Itoa(i)
		if m.NodeFor(shard.ForKey(k)) == node {
			return k
		}
	}
	tb.Fatalf("no key with prefix %q on node %q", prefix, node)
	return ""
}
