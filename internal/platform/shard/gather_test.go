package shard_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/platform/shard"
)

// fakeNode is how a fake node answers a Gather.
type fakeNode func(ctx context.Context, node string) ([]string, error)

func answers(items ...string) fakeNode {
	return func(context.Context, string) ([]string, error) { return items, nil }
}

func fails(msg string) fakeNode {
	return func(context.Context, string) ([]string, error) { return []string{"dropped"}, errors.New(msg) }
}

// slow waits for its context, as a well-behaved node past its deadline.
func slow(ctx context.Context, _ string) ([]string, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// stubborn ignores its context and answers only when release is closed.
func stubborn(release <-chan struct{}) fakeNode {
	return func(context.Context, string) ([]string, error) {
		<-release
		return []string{"late"}, nil
	}
}

func gatherFakes(ctx context.Context, perNode time.Duration, nodes map[string]fakeNode, order []string) shard.Result[string] {
	return shard.Gather(ctx, order, perNode, func(ctx context.Context, node string) ([]string, error) {
		return nodes[node](ctx, node)
	})
}

func TestGather(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) }) // lets the stubborn goroutines end
	const perNode = 100 * time.Millisecond
	tests := []struct {
		name        string
		nodes       map[string]fakeNode
		order       []string
		wantItems   []string
		wantMissing map[string]string // node: text in its error, alternatives split by |
	}{
		{
			name:      "all answer",
			nodes:     map[string]fakeNode{"a": answers("a1", "a2"), "b": answers(), "c": answers("c1")},
			order:     []string{"a", "b", "c"},
			wantItems: []string{"a1", "a2", "c1"},
		},
		{
			name:        "one slow, one failing",
			nodes:       map[string]fakeNode{"a": answers("a1"), "slow": slow, "bad": fails("disk on fire"), "d": answers("d1", "d2")},
			order:       []string{"slow", "a", "bad", "d"},
			wantItems:   []string{"a1", "d1", "d2"},
			wantMissing: map[string]string{"slow": "deadline exceeded|no answer within", "bad": "disk on fire"},
		},
		{
			name:        "one ignores its context",
			nodes:       map[string]fakeNode{"a": answers("a1"), "stuck": stubborn(release), "c": answers("c1")},
			order:       []string{"a", "stuck", "c"},
			wantItems:   []string{"a1", "c1"},
			wantMissing: map[string]string{"stuck": "no answer within 100ms"},
		},
		{
			name:        "none answers",
			nodes:       map[string]fakeNode{"slow": slow, "bad": fails("refused")},
			order:       []string{"slow", "bad"},
			wantMissing: map[string]string{"slow": "deadline exceeded|no answer within", "bad": "refused"},
		},
		{
			name: "no nodes",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			r := gatherFakes(context.Background(), perNode, tt.nodes, tt.order)
			if d := time.Since(start); d > perNode+2*time.Second {
				t.Errorf("Gather took %v with perNode %v", d, perNode)
			}
			if !slices.Equal(r.Items, tt.wantItems) {
				t.Errorf("Items = %q, want %q", r.Items, tt.wantItems)
			}
			if len(r.Missing) != len(tt.wantMissing) || r.Complete() != (len(tt.wantMissing) == 0) {
				t.Errorf("Missing = %+v, want %v", r.Missing, tt.wantMissing)
			}
			for _, m := range r.Missing {
				want, ok := tt.wantMissing[m.Node]
				if !ok || !slices.ContainsFunc(strings.Split(want, "|"), func(w string) bool { return strings.Contains(m.Err, w) }) {
					t.Errorf("Missing %s: %q, want %q", m.Node, m.Err, want)
				}
			}
			// Missing keeps the order of the nodes.
			var wantOrder []string
			for _, n := range tt.order {
				if _, ok := tt.wantMissing[n]; ok {
					wantOrder = append(wantOrder, n)
				}
			}
			if got := r.MissingNodes(); !slices.Equal(got, wantOrder) {
				t.Errorf("MissingNodes() = %q, want %q", got, wantOrder)
			}
		})
	}
}

func TestGatherPerNodeDeadline(t *testing.T) {
	// Each node gets its own deadline, within the parent's.
	parent, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	r := shard.Gather(parent, []string{"a", "b"}, time.Minute, func(ctx context.Context, node string) ([]time.Duration, error) {
		dl, ok := ctx.Deadline()
		if !ok {
			return nil, errors.New("no deadline")
		}
		return []time.Duration{time.Until(dl)}, nil
	})
	if len(r.Items) != 2 {
		t.Fatalf("Result = %+v", r)
	}
	for _, d := range r.Items {
		if d > time.Minute || d < 50*time.Second {
			t.Errorf("node deadline in %v, want about a minute", d)
		}
	}
	// perNode 0: only the parent's deadline.
	r = shard.Gather(parent, []string{"a"}, 0, func(ctx context.Context, node string) ([]time.Duration, error) {
		dl, _ := ctx.Deadline()
		return []time.Duration{time.Until(dl)}, nil
	})
	if len(r.Items) != 1 || r.Items[0] < 50*time.Minute {
		t.Errorf("perNode 0: Result = %+v, want the parent's deadline of an hour", r)
	}
}

func TestGatherParentCancel(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	ctx, cancel := context.WithCancel(context.Background())
	nodes := map[string]fakeNode{"a": answers("a1"), "slow1": slow, "slow2": slow, "stuck": stubborn(release)}
	started := make(chan string, len(nodes))
	done := make(chan shard.Result[string])
	go func() {
		done <- shard.Gather(ctx, []string{"a", "slow1", "slow2", "stuck"}, time.Hour, func(ctx context.Context, node string) ([]string, error) {
			started <- node
			return nodes[node](ctx, node)
		})
	}()
	for range nodes {
		<-started
	}
	cancel()
	var r shard.Result[string]
	select {
	case r = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Gather did not return after its parent context was cancelled")
	}
	// a may or may not have been collected before the cancel.
	for _, m := range r.Missing {
		if m.Node != "a" && m.Err != "context canceled" {
			t.Errorf("Missing %s: %q, want context canceled", m.Node, m.Err)
		}
	}
	if got := r.MissingNodes(); len(got) < 3 || !slices.Contains(got, "stuck") || !slices.Contains(got, "slow1") {
		t.Errorf("MissingNodes() = %q", got)
	}
}

func TestGatherMissingRanges(t *testing.T) {
	m, _ := shard.ParseMap("0-255=a;256-511=b;512-767=c;768-1023=b")
	r := shard.Gather(context.Background(), m.Nodes(), time.Second, func(ctx context.Context, node string) ([]int, error) {
		if node == "b" {
			return nil, errors.New("down")
		}
		return []int{1}, nil
	})
	want := []shard.Range{{256, 511, "b"}, {768, 1023, "b"}}
	if got := r.MissingRanges(m); !slices.Equal(got, want) {
		t.Errorf("MissingRanges = %v, want %v", got, want)
	}
	if got := (shard.Result[int]{}).MissingRanges(m); len(got) != 0 {
		t.Errorf("MissingRanges of a complete result = %v", got)
	}
}
