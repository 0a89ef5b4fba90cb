package shard_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/shard"
)

func TestParseMap(t *testing.T) {
	const dsn = "postgres://u:p@h:5432/db?sslmode=disable&a=b,c"
	tests := []struct {
		in      string
		version uint64
		ranges  []shard.Range
		str     string // String(); "" means in
	}{
		{
			in:     "0-511=a;512-1023=b",
			ranges: []shard.Range{{0, 511, "a"}, {512, 1023, "b"}},
		},
		{
			in:     "0-1023=" + dsn,
			ranges: []shard.Range{{0, 1023, dsn}},
		},
		{
			in:     "512-1023=host=h2 user=u password=p;0-511=host=h1 user=u password=p",
			ranges: []shard.Range{{0, 511, "host=h1 user=u password=p"}, {512, 1023, "host=h2 user=u password=p"}},
			str:    "0-511=host=h1 user=u password=p;512-1023=host=h2 user=u password=p",
		},
		{
			in:      " v7 ; 0 - 99 = a ;100-199=b;200-1022=a;1023=c; ",
			version: 7,
			ranges:  []shard.Range{{0, 99, "a"}, {100, 199, "b"}, {200, 1022, "a"}, {1023, 1023, "c"}},
			str:     "v7;0-99=a;100-199=b;200-1022=a;1023=c",
		},
		{
			in:     "0-9=a;10-19=a;20-1023=a",
			ranges: []shard.Range{{0, 1023, "a"}},
			str:    "0-1023=a",
		},
		{
			in:     "v0;0-1023=a",
			ranges: []shard.Range{{0, 1023, "a"}},
			str:    "0-1023=a",
		},
	}
	for _, tt := range tests {
		m, err := shard.ParseMap(tt.in)
		if err != nil {
			t.Errorf("ParseMap(%q): %v", tt.in, err)
			continue
		}
		if m.Version() != tt.version || !slices.Equal(m.Ranges(), tt.ranges) {
			t.Errorf("ParseMap(%q) = v%d %v, want v%d %v", tt.in, m.Version(), m.Ranges(), tt.version, tt.ranges)
		}
		want := tt.str
		if want == "" {
			want = tt.in
		}
		if got := m.String(); got != want {
			t.Errorf("ParseMap(%q).String() = %q, want %q", tt.in, got, want)
		}
		back, err := shard.ParseMap(m.String())
		if err != nil || !back.Equal(m) {
			t.Errorf("ParseMap(String()) of %q = %v, %v; does not round-trip", tt.in, back, err)
		}
	}
}

func TestParseMapErrors(t *testing.T) {
	tests := []struct {
		in   string
		want []string // in the message, which never holds a node
	}{
		{"", []string{"gap", "shards 0-1023"}},
		{"0-511=a", []string{"gap", "shards 512-1023"}},
		{"0-100=a;200-1023=b", []string{"gap", "shards 101-199"}},
		{"0-511=a;500-1023=b", []string{"element 2 (500-1023) overlaps element 1 (0-511) at shard 500"}},
		{"0-1023=a;7=b", []string{"element 2 (7) overlaps element 1", "shard 7"}},
		{"0-511=a;512-1024=b", []string{"element 2 (512-1024)", "out of bounds 0-1023"}},
		{"0-511=a;512-99999999999=b", []string{"element 2", "bad range"}},
		{"0-511=a;511-0=b", []string{"element 2 (511-0)", "lo greater than hi"}},
		{"0-511=a;x-1023=b", []string{"element 2", "bad range"}},
		{"0-511=a;-1-1023=b", []string{"element 2", "bad range"}},
		{"0-511=a;+512-1023=b", []string{"element 2", "bad range"}},
		{"0-511=a;=b", []string{"element 2", "bad range"}},
		{"0-511=a;512-1023=", []string{"element 2 (512-1023)", "empty node"}},
		{"0-511=a;512-1023=  ", []string{"element 2 (512-1023)", "empty node"}},
		{"0-511=a;postgres://u:secret@h/db", []string{"element 2", "no '='"}},
		{"0-511=a;postgres://u:secret@h/db?x=1", []string{"element 2", "bad range"}},
		{"0-1023=a;v3", []string{"element 2", "no '='"}},
		{"v3;v4;0-1023=a", []string{"element 2", "no '='"}},
		{"vx;0-1023=a", []string{"element 1", "no '='"}},
	}
	for _, tt := range tests {
		_, err := shard.ParseMap(tt.in)
		if err == nil {
			t.Errorf("ParseMap(%q) succeeded, want an error", tt.in)
			continue
		}
		if !errs.Is(errs.BadRequest, err) {
			t.Errorf("ParseMap(%q) error %v is not BadRequest", tt.in, err)
		}
		msg := errs.Detail(err)
		for _, w := range tt.want {
			if !strings.Contains(msg, w) {
				t.Errorf("ParseMap(%q) message %q does not contain %q", tt.in, msg, w)
			}
		}
		if strings.Contains(err.Error(), "secret") {
			t.Errorf("ParseMap(%q) error %q echoes a node", tt.in, err)
		}
	}
}

func TestMapQueries(t *testing.T) {
	m, err := shard.ParseMap("0-255=a;256-511=b;512-767=a;768-1022=c;1023=b")
	if err != nil {
		t.Fatal(err)
	}
	nodeTests := []struct {
		s    shard.ID
		want string
	}{
		{0, "a"}, {255, "a"}, {256, "b"}, {511, "b"}, {512, "a"}, {767, "a"},
		{768, "c"}, {1022, "c"}, {1023, "b"}, {1024, ""}, {65535, ""},
	}
	for _, tt := range nodeTests {
		if got := m.NodeFor(tt.s); got != tt.want {
			t.Errorf("NodeFor(%d) = %q, want %q", tt.s, got, tt.want)
		}
	}
	if got, want := m.Nodes(), []string{"a", "b", "c"}; !slices.Equal(got, want) {
		t.Errorf("Nodes() = %q, want %q", got, want)
	}
	shardTests := []struct {
		node string
		n    int
		lo   shard.ID
		hi   shard.ID
	}{
		{"a", 512, 0, 767},
		{"b", 257, 256, 1023},
		{"c", 255, 768, 1022},
	}
	for _, tt := range shardTests {
		got := m.ShardsOf(tt.node)
		if len(got) != tt.n || got[0] != tt.lo || got[len(got)-1] != tt.hi || !slices.IsSorted(got) {
			t.Errorf("ShardsOf(%s) = %d shards %d..%d, want %d shards %d..%d", tt.node, len(got), got[0], got[len(got)-1], tt.n, tt.lo, tt.hi)
		}
	}
	if got := m.ShardsOf("zzz"); len(got) != 0 {
		t.Errorf("ShardsOf(unknown) = %v", got)
	}
	if got, want := m.RangesOf("b", "c"), []shard.Range{{256, 511, "b"}, {768, 1022, "c"}, {1023, 1023, "b"}}; !slices.Equal(got, want) {
		t.Errorf("RangesOf(b, c) = %v, want %v", got, want)
	}
	// Ranges is a copy.
	rs := m.Ranges()
	rs[0].Node = "mutated"
	if m.NodeFor(0) != "a" {
		t.Error("modifying Ranges() changed the map")
	}
	// Every shard agrees with ShardsOf.
	for _, node := range m.Nodes() {
		for _, s := range m.ShardsOf(node) {
			if m.NodeFor(s) != node {
				t.Fatalf("NodeFor(%d) = %s, ShardsOf(%s) holds it", s, m.NodeFor(s), node)
			}
		}
	}
}

func TestSingleAndZero(t *testing.T) {
	m := shard.Single("db")
	if m.Version() != 0 || m.String() != "0-1023=db" || m.NodeFor(1023) != "db" || m.IsZero() {
		t.Errorf("Single(db) = v%d %q", m.Version(), m)
	}
	var z shard.Map
	if !z.IsZero() || z.String() != "" || z.NodeFor(0) != "" || len(z.Nodes()) != 0 {
		t.Errorf("zero Map = %q, nodes %v", z, z.Nodes())
	}
	if _, err := z.Move(0, 1, "a"); !errs.Is(errs.BadRequest, err) {
		t.Errorf("zero Map Move = %v, want BadRequest", err)
	}
	for _, bad := range []string{"", "a;b", " a"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Single(%q) did not panic", bad)
				}
			}()
			shard.Single(bad)
		}()
	}
}

func TestMove(t *testing.T) {
	m0 := shard.Single("a")
	tests := []struct {
		lo, hi shard.ID
		to     string
		want   string
	}{
		{512, 1023, "b", "v1;0-511=a;512-1023=b"},
		{256, 511, "c", "v2;0-255=a;256-511=c;512-1023=b"},
		{0, 0, "c", "v3;0=c;1-255=a;256-511=c;512-1023=b"},
		{0, 255, "c", "v4;0-511=c;512-1023=b"},
		{0, 1023, "d", "v5;0-1023=d"},
		{7, 7, "d", "v6;0-1023=d"}, // no change but the version
	}
	m := m0
	for _, tt := range tests {
		next, err := m.Move(tt.lo, tt.hi, tt.to)
		if err != nil {
			t.Fatalf("Move(%d, %d, %s): %v", tt.lo, tt.hi, tt.to, err)
		}
		if next.String() != tt.want {
			t.Errorf("Move(%d, %d, %s) = %q, want %q", tt.lo, tt.hi, tt.to, next, tt.want)
		}
		if next.Equal(m) {
			t.Errorf("Move result equals its source")
		}
		m = next
	}
	if m0.String() != "0-1023=a" {
		t.Errorf("Move changed its source: %q", m0)
	}
	errTests := []struct {
		lo, hi shard.ID
		to     string
	}{
		{1, 0, "a"}, {0, 1024, "a"}, {0, 1, ""}, {0, 1, "x;y"}, {0, 1, "x "},
	}
	for _, tt := range errTests {
		if _, err := m.Move(tt.lo, tt.hi, tt.to); !errs.Is(errs.BadRequest, err) {
			t.Errorf("Move(%d, %d, %q) = %v, want BadRequest", tt.lo, tt.hi, tt.to, err)
		}
	}
}

func TestEqual(t *testing.T) {
	a, _ := shard.ParseMap("0-511=a;512-1023=b")
	b, _ := shard.ParseMap("512-1023=b;0-100=a;101-511=a")
	c, _ := shard.ParseMap("v1;0-511=a;512-1023=b")
	d, _ := shard.ParseMap("0-511=a;512-1023=c")
	tests := []struct {
		name        string
		x, y        shard.Map
		equal, same bool
	}{
		{"same text", a, a, true, true},
		{"same assignment written differently", a, b, true, true},
		{"other version", a, c, false, true},
		{"other node", a, d, false, false},
		{"zero", a, shard.Map{}, false, false},
		{"both zero", shard.Map{}, shard.Map{}, true, true},
	}
	for _, tt := range tests {
		if got := tt.x.Equal(tt.y); got != tt.equal {
			t.Errorf("%s: Equal = %v, want %v", tt.name, got, tt.equal)
		}
		if got := tt.x.SameAssignment(tt.y); got != tt.same {
			t.Errorf("%s: SameAssignment = %v, want %v", tt.name, got, tt.same)
		}
	}
}

func TestMapJSON(t *testing.T) {
	m, _ := shard.ParseMap("v3;0-511=a;512-1022=b=c,d;1023=a")
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"version":3,"ranges":[{"lo":0,"hi":511,"node":"a"},{"lo":512,"hi":1022,"node":"b=c,d"},{"lo":1023,"hi":1023,"node":"a"}]}`
	if string(b) != want {
		t.Errorf("Marshal = %s, want %s", b, want)
	}
	var back shard.Map
	if err := json.Unmarshal(b, &back); err != nil || !back.Equal(m) {
		t.Errorf("Unmarshal(Marshal) = %q, %v; want %q", back, err, m)
	}
	// Inside a status document, by value and by pointer.
	status := struct {
		Map  shard.Map  `json:"map"`
		Next *shard.Map `json:"next"`
	}{m, &m}
	if b, err := json.Marshal(status); err != nil || !strings.Contains(string(b), `"next":{"version":3`) {
		t.Errorf("Marshal(status) = %s, %v", b, err)
	}
	if b, _ := json.Marshal(shard.Map{}); string(b) != `{"version":0,"ranges":[]}` {
		t.Errorf("Marshal(zero) = %s", b)
	}

	errTests := []struct {
		in   string
		want string
	}{
		{`{"version":1,"ranges":[{"lo":0,"hi":511,"node":"a"}]}`, "shards 512-1023"},
		{`{"ranges":[{"lo":0,"hi":1023,"node":"a"},{"lo":5,"hi":5,"node":"b"}]}`, "range 2 (5-5) overlaps range 1 (0-1023)"},
		{`{"ranges":[{"lo":0,"hi":1024,"node":"a"}]}`, "range 1 (0-1024): range out of bounds"},
		{`{"ranges":[{"lo":9,"hi":1,"node":"a"}]}`, "range 1 (9-1)"},
		{`{"ranges":[{"lo":0,"hi":1023,"node":""}]}`, "empty node"},
		{`{"ranges":[{"lo":-1,"hi":1023,"node":"a"}]}`, "bad shard map JSON"},
		{`[]`, "bad shard map JSON"},
		{`{}`, "gap"},
	}
	for _, tt := range errTests {
		var m shard.Map
		err := json.Unmarshal([]byte(tt.in), &m)
		if !errs.Is(errs.BadRequest, err) || !strings.Contains(errs.Detail(err), tt.want) {
			t.Errorf("Unmarshal(%s) = %v, want BadRequest with %q", tt.in, err, tt.want)
		}
	}
}
