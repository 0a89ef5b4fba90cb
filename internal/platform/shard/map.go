package shard

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/globomantics/globomantics/internal/platform/errs"
)

// Range is a run of logical shards, Lo to Hi inclusive, held by one node.
type Range struct {
	Lo   ID     `json:"lo"`
	Hi   ID     `json:"hi"`
	Node string `json:"node"`
}

// String returns the range in the text form of a Map: "lo-hi=node", or
// "n=node" for a single shard.
func (r Range) String() string {
	if r.Lo == r.Hi {
		return r.Lo.String() + "=" + r.Node
	}
	return r.Lo.String() + "-" + r.Hi.String() + "=" + r.Node
}

// Contains reports whether shard s is in the range.
func (r Range) Contains(s ID) bool { return r.Lo <= s && s <= r.Hi }

// Map is an immutable assignment of every logical shard to a node, with a
// version that Move raises. A node is any non-empty string without ';' and
// without leading or trailing white space: a node name or a DSN.
//
// The zero Map is empty: it assigns no shard. Single never returns it, and
// ParseMap, Move and JSON decoding only with an error. Copies of a Map share
// its (never modified) contents, so a Map is cheap to pass and safe to use
// from many goroutines.
//
// A Map of DSNs holding passwords leaks them through String and JSON; give
// nodes names and resolve names to DSNs elsewhere where that matters.
type Map struct {
	version uint64
	ranges  []Range // sorted, adjacent ranges of one node merged, covering 0..Count-1
}

// Single returns the Map, version 0, that assigns every shard to node. It
// panics if node is not a valid node name (empty, or holding ';' or
// leading or trailing space): use ParseMap for input.
func Single(node string) Map {
	if err := checkNode(node); err != nil {
		panic("shard.Single: " + err.Error())
	}
	return Map{ranges: []Range{{0, Count - 1, node}}}
}

// ParseMap reads a Map from its text form: elements separated by ';', each
// "lo-hi=node" or "n=node" (split at the first '=', so a node such as a DSN
// may hold '=' and ','), optionally preceded by a version element "v<N>".
// Space around elements, ranges and nodes is ignored, and so are empty
// elements. Every logical shard 0..Count-1 must be assigned exactly once.
//
// Its errors are of kind errs.BadRequest and name the bad element by number
// and range (never by node, which may be a DSN with a password): a
// malformed range, a range out of bounds, an empty node, two elements
// assigning the same shards, shards left unassigned.
func ParseMap(s string) (Map, error) {
	const op = "shard.ParseMap"
	var (
		version    uint64
		sawVersion bool
		ranges     []Range
		labels     []string
	)
	for i, el := range strings.Split(s, ";") {
		el = strings.TrimSpace(el)
		if el == "" {
			continue
		}
		n := i + 1
		rs, node, found := strings.Cut(el, "=")
		rs, node = strings.TrimSpace(rs), strings.TrimSpace(node)
		if !found {
			if v, ok := strings.CutPrefix(el, "v"); ok && len(ranges) == 0 && !sawVersion {
				var err error
				if version, err = strconv.ParseUint(v, 10, 64); err == nil {
					sawVersion = true
					continue
				}
			}
			// The element is not echoed: it may be a DSN with a password.
			return Map{}, errs.E(op, errs.BadRequest, errs.Msg("shard map element %d has no '=': want lo-hi=node, or v<N> first", n))
		}
		label := fmt.Sprintf("element %d", n)
		if len(rs) <= 12 && strings.Trim(rs, "0123456789- ") == "" {
			label += " (" + rs + ")" // echoed only when it cannot be a secret
		}
		lo, hi, err := parseRange(rs)
		if err != nil {
			return Map{}, errs.E(op, errs.BadRequest, errs.Msg("shard map %s: %v", label, err))
		}
		if node == "" {
			return Map{}, errs.E(op, errs.BadRequest, errs.Msg("shard map %s: empty node", label))
		}
		ranges = append(ranges, Range{lo, hi, node})
		labels = append(labels, label)
	}
	return build(op, version, ranges, labels)
}

// parseRange reads "lo-hi" or "n".
func parseRange(s string) (lo, hi ID, err error) {
	a, b, isRange := strings.Cut(s, "-")
	if !isRange {
		b = a
	}
	l, errA := strconv.ParseUint(strings.TrimSpace(a), 10, 32)
	h, errB := strconv.ParseUint(strings.TrimSpace(b), 10, 32)
	switch {
	case errA != nil || errB != nil:
		return 0, 0, fmt.Errorf("bad range, want lo-hi or n with 0 <= lo <= hi < %d", Count)
	case l >= Count || h >= Count:
		return 0, 0, fmt.Errorf("range out of bounds 0-%d", Count-1)
	case l > h:
		return 0, 0, fmt.Errorf("bad range: lo greater than hi")
	}
	return ID(l), ID(h), nil
}

// checkNode reports why node cannot be a node of a Map, or nil.
func checkNode(node string) error {
	switch {
	case node == "":
		return fmt.Errorf("empty node")
	case strings.ContainsRune(node, ';'):
		return fmt.Errorf("node holds ';'")
	case strings.TrimSpace(node) != node:
		return fmt.Errorf("node has leading or trailing space")
	}
	return nil
}

// build checks that ranges assign every shard exactly once to a valid node
// and returns them as a Map; labels[i] names ranges[i] in errors.
func build(op string, version uint64, ranges []Range, labels []string) (Map, error) {
	var owner [Count]int // index+1 into ranges; 0 for none
	for i, r := range ranges {
		if !r.Lo.Valid() || !r.Hi.Valid() || r.Lo > r.Hi {
			return Map{}, errs.E(op, errs.BadRequest, errs.Msg("shard map %s: range out of bounds 0-%d", labels[i], Count-1))
		}
		if err := checkNode(r.Node); err != nil {
			return Map{}, errs.E(op, errs.BadRequest, errs.Msg("shard map %s: %v", labels[i], err))
		}
		for s := int(r.Lo); s <= int(r.Hi); s++ {
			if o := owner[s]; o != 0 {
				return Map{}, errs.E(op, errs.BadRequest, errs.Msg("shard map %s overlaps %s at shard %d", labels[i], labels[o-1], s))
			}
			owner[s] = i + 1
		}
	}
	for s := 0; s < Count; s++ {
		if owner[s] != 0 {
			continue
		}
		e := s
		for e+1 < Count && owner[e+1] == 0 {
			e++
		}
		return Map{}, errs.E(op, errs.BadRequest, errs.Msg("shard map has a gap: shards %d-%d are assigned to no node", s, e))
	}
	var nodes [Count]string
	for s := range nodes {
		nodes[s] = ranges[owner[s]-1].Node
	}
	return fromNodes(version, &nodes), nil
}

// fromNodes returns the Map assigning shard s to nodes[s].
func fromNodes(version uint64, nodes *[Count]string) Map {
	var out []Range
	for s, node := range nodes {
		if n := len(out); n > 0 && out[n-1].Node == node {
			out[n-1].Hi = ID(s)
			continue
		}
		out = append(out, Range{ID(s), ID(s), node})
	}
	return Map{version: version, ranges: out}
}

// expand returns the node of every shard.
func (m Map) expand() *[Count]string {
	var nodes [Count]string
	for _, r := range m.ranges {
		for s := int(r.Lo); s <= int(r.Hi); s++ {
			nodes[s] = r.Node
		}
	}
	return &nodes
}

// Version returns the map's version: 0 unless given in the text or JSON
// form, raised by one by every Move.
func (m Map) Version() uint64 { return m.version }

// IsZero reports whether m is the zero, empty Map.
func (m Map) IsZero() bool { return len(m.ranges) == 0 }

// String returns the text form ParseMap reads back into an equal Map:
// "v<N>;" when the version is not 0, then the merged ranges in shard order.
// It is "" for the zero Map.
func (m Map) String() string {
	var b strings.Builder
	if m.version != 0 && !m.IsZero() {
		b.WriteString("v" + strconv.FormatUint(m.version, 10))
	}
	for _, r := range m.ranges {
		if b.Len() > 0 {
			b.WriteByte(';')
		}
		b.WriteString(r.String())
	}
	return b.String()
}

// NodeFor returns the node holding shard s; "" for a shard out of range or
// the zero Map.
func (m Map) NodeFor(s ID) string {
	i, found := slices.BinarySearchFunc(m.ranges, s, func(r Range, s ID) int {
		switch {
		case r.Hi < s:
			return -1
		case r.Lo > s:
			return 1
		}
		return 0
	})
	if !found {
		return ""
	}
	return m.ranges[i].Node
}

// Nodes returns the distinct nodes of the map, in the order of the first
// shard each holds.
func (m Map) Nodes() []string {
	var nodes []string
	for _, r := range m.ranges {
		if !slices.Contains(nodes, r.Node) {
			nodes = append(nodes, r.Node)
		}
	}
	return nodes
}

// Ranges returns the map's ranges in shard order, adjacent ranges of the
// same node merged. The slice is the caller's to modify.
func (m Map) Ranges() []Range { return slices.Clone(m.ranges) }

// RangesOf returns the ranges held by any of the given nodes, in shard
// order; none for nodes the map does not hold.
func (m Map) RangesOf(nodes ...string) []Range {
	var out []Range
	for _, r := range m.ranges {
		if slices.Contains(nodes, r.Node) {
			out = append(out, r)
		}
	}
	return out
}

// ShardsOf returns the shards held by node, in order; none for a node the
// map does not hold.
func (m Map) ShardsOf(node string) []ID {
	var out []ID
	for _, r := range m.RangesOf(node) {
		for s := int(r.Lo); s <= int(r.Hi); s++ {
			out = append(out, ID(s))
		}
	}
	return out
}

// Move returns a new Map, of version m.Version()+1, in which shards lo to hi
// (inclusive) are held by node to and every other shard by the same node as
// in m; m is unchanged. It fails with errs.BadRequest for the zero Map, a
// range out of bounds or a node that is not valid (see Map).
func (m Map) Move(lo, hi ID, to string) (Map, error) {
	const op = "shard.Map.Move"
	switch {
	case m.IsZero():
		return Map{}, errs.E(op, errs.BadRequest, errs.Msg("move on an empty shard map"))
	case lo > hi || !hi.Valid():
		return Map{}, errs.E(op, errs.BadRequest, errs.Msg("bad range %d-%d, want 0 <= lo <= hi < %d", lo, hi, Count))
	}
	if err := checkNode(to); err != nil {
		return Map{}, errs.E(op, errs.BadRequest, errs.Msg("move %d-%d: %v", lo, hi, err))
	}
	nodes := m.expand()
	for s := int(lo); s <= int(hi); s++ {
		nodes[s] = to
	}
	return fromNodes(m.version+1, nodes), nil
}

// Equal reports whether m and o have the same version and assign every
// shard to the same node.
func (m Map) Equal(o Map) bool {
	return m.version == o.version && slices.Equal(m.ranges, o.ranges)
}

// SameAssignment reports whether m and o assign every shard to the same
// node, whatever their versions.
func (m Map) SameAssignment(o Map) bool { return slices.Equal(m.ranges, o.ranges) }

// mapJSON is the JSON form of a Map.
type mapJSON struct {
	Version uint64  `json:"version"`
	Ranges  []Range `json:"ranges"`
}

// MarshalJSON encodes the map as {"version":N,"ranges":[{"lo":0,"hi":511,
// "node":"a"},...]}, ranges merged and in shard order.
func (m Map) MarshalJSON() ([]byte, error) {
	rs := m.ranges
	if rs == nil {
		rs = []Range{}
	}
	return json.Marshal(mapJSON{m.version, rs})
}

// UnmarshalJSON decodes the form MarshalJSON writes; ranges may come in any
// order and need not be merged, but must assign every shard exactly once,
// or it fails with errs.BadRequest naming the bad range.
func (m *Map) UnmarshalJSON(b []byte) error {
	const op = "shard.Map.UnmarshalJSON"
	var j mapJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return errs.E(op, errs.BadRequest, errs.Msg("bad shard map JSON"), err)
	}
	labels := make([]string, len(j.Ranges))
	for i, r := range j.Ranges {
		labels[i] = fmt.Sprintf("range %d (%d-%d)", i+1, r.Lo, r.Hi)
	}
	nm, err := build(op, j.Version, j.Ranges, labels)
	if err != nil {
		return err
	}
	*m = nm
	return nil
}
