package shard_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/ids"
	"github.com/globomantics/globomantics/internal/platform/shard"
)

// handle is a fake node handle.
type handle struct{ node string }

// nodes is a fake set of nodes with a fault switch: opening a node in fail
// fails. It records opens and retirements.
type nodes struct {
	mu      sync.Mutex
	fail    map[string]bool
	opened  []string
	retired []string
}

func (n *nodes) open(node string) (*handle, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.fail[node] {
		return nil, errors.New("cannot reach " + node)
	}
	n.opened = append(n.opened, node)
	return &handle{node}, nil
}

func (n *nodes) retire(node string, h *handle) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if h == nil || h.node != node {
		panic(fmt.Sprintf("retire(%s, %v)", node, h))
	}
	n.retired = append(n.retired, node)
}

func (n *nodes) log() (opened, retired []string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.opened), slices.Clone(n.retired)
}

func mustParse(t *testing.T, s string) shard.Map {
	t.Helper()
	m, err := shard.ParseMap(s)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func newRouter(t *testing.T, m string) (*shard.Router[*handle], *nodes) {
	t.Helper()
	n := &nodes{}
	r, err := shard.NewRouter(mustParse(t, m), n.open, n.retire)
	if err != nil {
		t.Fatal(err)
	}
	return r, n
}

func TestRouterRoutes(t *testing.T) {
	r, n := newRouter(t, "0-511=a;512-1023=b")
	if opened, _ := n.log(); !slices.Equal(opened, []string{"a", "b"}) {
		t.Errorf("opened %q, want a, b", opened)
	}
	m := r.Map()
	for i := 0; i < 200; i++ {
		key := fmt.Sprintf("usr_%d", i)
		h, s, err := r.For(key)
		if err != nil || s != shard.ForKey(key) || h.node != m.NodeFor(s) {
			t.Fatalf("For(%s) = %v, %d, %v; want node %s of shard %d", key, h, s, err, m.NodeFor(shard.ForKey(key)), shard.ForKey(key))
		}
	}
	now := time.Now()
	tests := []struct {
		id       string
		node     string
		shard    shard.ID
		wantKind errs.Kind
	}{
		{ids.NewInShard("ord", now, 0), "a", 0, 0},
		{ids.NewInShard("ord", now, 511), "a", 511, 0},
		{ids.NewInShard("ord", now, 512), "b", 512, 0},
		{ids.NewInShard("ord", now, 1023), "b", 1023, 0},
		{ids.New("ord", now), "", 0, errs.NotFound},
		{"nonsense", "", 0, errs.NotFound},
	}
	for _, tt := range tests {
		h, s, err := r.ForID(tt.id)
		if tt.wantKind != 0 {
			if !errs.Is(tt.wantKind, err) || h != nil {
				t.Errorf("ForID(%s) = %v, %v; want %v", tt.id, h, err, tt.wantKind)
			}
			continue
		}
		if err != nil || s != tt.shard || h.node != tt.node {
			t.Errorf("ForID(%s) = %v, %d, %v; want node %s, shard %d", tt.id, h, s, err, tt.node, tt.shard)
		}
	}
	if h, err := r.ForShard(1023); err != nil || h.node != "b" {
		t.Errorf("ForShard(1023) = %v, %v", h, err)
	}
	if _, err := r.ForShard(1024); !errs.Is(errs.BadRequest, err) {
		t.Errorf("ForShard(1024) = %v, want BadRequest", err)
	}
	all := r.All()
	if len(all) != 2 || all["a"].node != "a" || all["b"].node != "b" {
		t.Errorf("All() = %v", all)
	}
	delete(all, "a")
	if len(r.All()) != 2 {
		t.Error("modifying All() changed the router")
	}
}

func TestNewRouterErrors(t *testing.T) {
	n := &nodes{fail: map[string]bool{"c": true}}
	if _, err := shard.NewRouter(shard.Map{}, n.open, n.retire); !errs.Is(errs.BadRequest, err) {
		t.Errorf("NewRouter(zero Map) = %v, want BadRequest", err)
	}
	_, err := shard.NewRouter(mustParse(t, "0-9=a;10-19=b;20-1023=c"), n.open, n.retire)
	if !errs.Is(errs.Unavailable, err) {
		t.Errorf("NewRouter with a node that cannot open = %v, want Unavailable", err)
	}
	if opened, retired := n.log(); !slices.Equal(opened, []string{"a", "b"}) || !slices.Equal(retired, []string{"a", "b"}) {
		t.Errorf("opened %q, retired %q; want the handles opened before the failure retired", opened, retired)
	}
	// A nil retire is allowed.
	if _, err := shard.NewRouter(shard.Single("a"), n.open, nil); err != nil {
		t.Errorf("NewRouter with nil retire: %v", err)
	}
}

func TestZeroRouter(t *testing.T) {
	var r shard.Router[*handle]
	if _, _, err := r.For("k"); !errs.Is(errs.Unavailable, err) {
		t.Errorf("zero Router For = %v, want Unavailable", err)
	}
	if err := r.Swap(shard.Single("a")); !errs.Is(errs.Unavailable, err) {
		t.Errorf("zero Router Swap = %v, want Unavailable", err)
	}
	if !r.Map().IsZero() || len(r.All()) != 0 {
		t.Error("zero Router has a map")
	}
	// Fences work without a map.
	if err := r.Fence(0, 1); err != nil {
		t.Fatal(err)
	}
	if err := r.Unfence(0, 1); err != nil {
		t.Fatal(err)
	}
	if err := r.WaitWritable(context.Background(), 0); err != nil {
		t.Error(err)
	}
}

func TestRouterSwap(t *testing.T) {
	tests := []struct {
		name        string
		start, next string
		fail        string
		wantKind    errs.Kind
		wantOpened  []string // during Swap
		wantRetired []string
		wantMap     string
	}{
		{
			name:  "add a node",
			start: "0-1023=a", next: "v1;0-511=a;512-1023=b",
			wantOpened: []string{"b"}, wantMap: "v1;0-511=a;512-1023=b",
		},
		{
			name:  "replace a node",
			start: "0-511=a;512-1023=b", next: "v1;0-511=a;512-1023=c",
			wantOpened: []string{"c"}, wantRetired: []string{"b"}, wantMap: "v1;0-511=a;512-1023=c",
		},
		{
			name:  "move a range, same nodes",
			start: "0-511=a;512-1023=b", next: "v4;0-255=a;256-1023=b",
			wantMap: "v4;0-255=a;256-1023=b",
		},
		{
			name:  "same map",
			start: "v2;0-511=a;512-1023=b", next: "v2;512-1023=b;0-511=a",
			wantMap: "v2;0-511=a;512-1023=b",
		},
		{
			name:  "older version",
			start: "v2;0-511=a;512-1023=b", next: "v1;0-1023=c",
			wantKind: errs.Conflict, wantMap: "v2;0-511=a;512-1023=b",
		},
		{
			name:  "same version, other assignment",
			start: "v2;0-511=a;512-1023=b", next: "v2;0-1023=a",
			wantKind: errs.Conflict, wantMap: "v2;0-511=a;512-1023=b",
		},
		{
			name:  "a new node cannot be opened",
			start: "0-511=a;512-1023=b", next: "v1;0-9=c;10-19=d;20-1023=e", fail: "d",
			wantKind: errs.Unavailable, wantOpened: []string{"c"}, wantRetired: []string{"c"}, wantMap: "0-511=a;512-1023=b",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, n := newRouter(t, tt.start)
			n.fail = map[string]bool{tt.fail: true}
			before, _ := n.log()
			err := r.Swap(mustParse(t, tt.next))
			if tt.wantKind != 0 {
				if !errs.Is(tt.wantKind, err) {
					t.Errorf("Swap = %v, want %v", err, tt.wantKind)
				}
			} else if err != nil {
				t.Errorf("Swap: %v", err)
			}
			opened, retired := n.log()
			if got := opened[len(before):]; !slices.Equal(got, tt.wantOpened) {
				t.Errorf("Swap opened %q, want %q", got, tt.wantOpened)
			}
			if !slices.Equal(retired, tt.wantRetired) {
				t.Errorf("Swap retired %q, want %q", retired, tt.wantRetired)
			}
			m, handles := r.Snapshot()
			if m.String() != tt.wantMap {
				t.Errorf("map after Swap = %q, want %q", m, tt.wantMap)
			}
			if len(handles) != len(m.Nodes()) {
				t.Errorf("handles %v for nodes %q", handles, m.Nodes())
			}
			for _, node := range m.Nodes() {
				if handles[node] == nil || handles[node].node != node {
					t.Errorf("handle of %s = %v", node, handles[node])
				}
			}
		})
	}
	t.Run("zero map", func(t *testing.T) {
		r, _ := newRouter(t, "0-1023=a")
		if err := r.Swap(shard.Map{}); !errs.Is(errs.BadRequest, err) {
			t.Errorf("Swap(zero) = %v, want BadRequest", err)
		}
	})
}

// TestRouterConcurrentSwap routes from many goroutines while maps are
// swapped in: every answer is consistent with one of the maps.
func TestRouterConcurrentSwap(t *testing.T) {
	r, n := newRouter(t, "0-1023=n0")
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				key := fmt.Sprintf("usr_%d_%d", g, i)
				h, s, err := r.For(key)
				if err != nil || h == nil || s != shard.ForKey(key) {
					t.Errorf("For(%s) = %v, %d, %v", key, h, s, err)
					return
				}
				h, _, err = r.ForID(ids.NewInShard("o", time.Now(), uint16(s)))
				if err != nil || h == nil {
					t.Errorf("ForID = %v, %v", h, err)
					return
				}
				m, handles := r.Snapshot()
				if hs := handles[m.NodeFor(s)]; hs == nil || hs.node != m.NodeFor(s) {
					t.Errorf("Snapshot handle %v for node %s", hs, m.NodeFor(s))
					return
				}
			}
		}()
	}
	m := r.Map()
	for v := 1; v <= 200; v++ {
		lo := shard.ID((v * 37) % shard.Count)
		hi := min(lo+100, shard.Count-1)
		next, err := m.Move(lo, hi, fmt.Sprintf("n%d", v%5))
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Swap(next); err != nil {
			t.Fatal(err)
		}
		m = next
	}
	cancel()
	wg.Wait()
	if got := r.Map(); !got.Equal(m) || got.Version() != 200 {
		t.Errorf("final map %q, want %q", got, m)
	}
	// Every handle opened was either retired or is in use, once.
	opened, retired := n.log()
	inUse := len(r.All())
	if len(opened) != len(retired)+inUse {
		t.Errorf("opened %d handles, retired %d, %d in use", len(opened), len(retired), inUse)
	}
}

func TestFenceBlocksOnlyFencedShards(t *testing.T) {
	r, _ := newRouter(t, "0-1023=a")
	if err := r.Fence(100, 199); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		s      shard.ID
		fenced bool
	}{
		{0, false}, {99, false}, {100, true}, {150, true}, {199, true}, {200, false}, {1023, false},
	}
	for _, tt := range tests {
		if got := r.Fenced(tt.s); got != tt.fenced {
			t.Errorf("Fenced(%d) = %v, want %v", tt.s, got, tt.fenced)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		err := r.WaitWritable(ctx, tt.s)
		cancel()
		if tt.fenced && !errs.Is(errs.Unavailable, err) {
			t.Errorf("WaitWritable(%d) on a fenced shard = %v, want Unavailable when ctx ends", tt.s, err)
		}
		if !tt.fenced && err != nil {
			t.Errorf("WaitWritable(%d) on a writable shard = %v", tt.s, err)
		}
	}

	// Writers waiting on a fenced shard go on when it is unfenced.
	done := make(chan error, 2)
	go func() { done <- r.WaitWritable(context.Background(), 150) }()
	go func() {
		end, err := r.BeginWrite(context.Background(), 199)
		if err == nil {
			end()
		}
		done <- err
	}()
	if err := r.Unfence(100, 199); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("writer after Unfence: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("writer still blocked after Unfence")
		}
	}
}

func TestFenceBadRanges(t *testing.T) {
	r, _ := newRouter(t, "0-1023=a")
	ctx := context.Background()
	tests := []struct {
		name string
		call func() error
	}{
		{"Fence hi out of range", func() error { return r.Fence(0, 1024) }},
		{"Fence lo > hi", func() error { return r.Fence(5, 4) }},
		{"Unfence out of range", func() error { return r.Unfence(1024, 1024) }},
		{"Drain out of range", func() error { return r.Drain(ctx, 0, 65535) }},
		{"WaitWritable out of range", func() error { return r.WaitWritable(ctx, 1024) }},
		{"BeginWrite out of range", func() error { _, err := r.BeginWrite(ctx, 1024); return err }},
	}
	for _, tt := range tests {
		if err := tt.call(); !errs.Is(errs.BadRequest, err) {
			t.Errorf("%s = %v, want BadRequest", tt.name, err)
		}
	}
}

func TestDrain(t *testing.T) {
	r, _ := newRouter(t, "0-1023=a")
	ctx := context.Background()
	end5, err := r.BeginWrite(ctx, 5)
	if err != nil {
		t.Fatal(err)
	}
	end500, err := r.BeginWrite(ctx, 500)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Fence(0, 9); err != nil {
		t.Fatal(err)
	}
	// A write in flight on a fenced shard holds Drain back; one elsewhere
	// does not.
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	err = r.Drain(short, 0, 9)
	cancel()
	if !errs.Is(errs.Unavailable, err) {
		t.Errorf("Drain with a write in flight = %v, want Unavailable when ctx ends", err)
	}
	short, cancel = context.WithTimeout(ctx, 20*time.Millisecond)
	err = r.Drain(short, 10, 1023)
	cancel()
	if !errs.Is(errs.Unavailable, err) {
		t.Errorf("Drain(10, 1023) with a write in flight on shard 500 = %v, want Unavailable", err)
	}
	if err := r.Drain(ctx, 10, 499); err != nil {
		t.Errorf("Drain(10, 499) with no write in flight there: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- r.Drain(ctx, 0, 9) }()
	end5()
	end5() // a second end is harmless
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Drain after the write ended: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Drain still waiting after the write ended")
	}
	end500()
	if err := r.Drain(ctx, 0, 1023); err != nil {
		t.Errorf("Drain with nothing in flight: %v", err)
	}
}

// TestFenceDrainUnderLoad checks the promise resharding relies on: once
// Fence and Drain have returned, no write is in flight on the fenced shards
// until Unfence, while writes elsewhere go on.
func TestFenceDrainUnderLoad(t *testing.T) {
	r, _ := newRouter(t, "0-1023=a")
	var active [shard.Count]atomic.Int32
	var other atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				s := shard.ID(g%2*16 + i%16) // even writers on 0-15, odd ones on 16-31
				end, err := r.BeginWrite(ctx, s)
				if err != nil {
					return // ctx ended while fenced
				}
				active[s].Add(1)
				if s >= 16 {
					other.Add(1)
				}
				active[s].Add(-1)
				end()
			}
		}()
	}
	for round := 0; round < 20; round++ {
		if err := r.Fence(0, 15); err != nil {
			t.Fatal(err)
		}
		if err := r.Drain(ctx, 0, 15); err != nil {
			t.Fatal(err)
		}
		before := other.Load()
		for s := 0; s < 16; s++ {
			if n := active[s].Load(); n != 0 {
				t.Fatalf("round %d: %d writes in flight on fenced shard %d after Drain", round, n, s)
			}
		}
		// Writes on the other shards go on during the fence.
		checkFor(t, 10*time.Second, func() error {
			if other.Load() == before {
				return errors.New("no write on an unfenced shard while shards 0-15 were fenced")
			}
			return nil
		})
		for s := 0; s < 16; s++ {
			if n := active[s].Load(); n != 0 {
				t.Fatalf("round %d: %d writes in flight on fenced shard %d", round, n, s)
			}
		}
		if err := r.Unfence(0, 15); err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	wg.Wait()
}

// checkFor polls fn until it returns nil, failing the test with its last
// error after timeout.
func checkFor(t *testing.T, timeout time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
}
