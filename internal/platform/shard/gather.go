package shard

import (
	"context"
	"fmt"
	"time"
)

// GatherGrace is how long past perNode Gather waits for a node whose
// function ignores its context before it gives up on that node.
const GatherGrace = 20 * time.Millisecond

// Missing names a node that did not answer a Gather, and why. Err is the
// error text for logs and operators; it may hold internal detail and is not
// meant for clients.
type Missing struct {
	Node string `json:"node"`
	Err  string `json:"error"`
}

// Result is what a Gather collected: the items of every node that answered
// and the nodes that did not.
type Result[T any] struct {
	// Items holds the items of the nodes that answered without error,
	// node after node in the order the nodes were given.
	Items []T
	// Missing holds the nodes that failed, timed out or were cut off by
	// the parent context, in the order the nodes were given.
	Missing []Missing
}

// Complete reports whether every node answered.
func (r Result[T]) Complete() bool { return len(r.Missing) == 0 }

// MissingNodes returns the names of the nodes that did not answer.
func (r Result[T]) MissingNodes() []string {
	var out []string
	for _, m := range r.Missing {
		out = append(out, m.Node)
	}
	return out
}

// MissingRanges returns the logical shard ranges that m assigns to the
// nodes that did not answer, in shard order: what a response lists as the
// shards it lacks. It is empty when every node answered.
func (r Result[T]) MissingRanges(m Map) []Range {
	if r.Complete() {
		return nil
	}
	return m.RangesOf(r.MissingNodes()...)
}

// Gather runs fn for every node concurrently, each under its own deadline of
// perNode within ctx, and returns the items of the nodes that answered and,
// in Missing, the nodes that returned an error, ran out of time or were cut
// off by the end of ctx. A node whose fn returns items and an error counts
// as missing and its items are dropped.
//
// Gather returns at most perNode + GatherGrace after it is called, even if
// an fn ignores its context (that fn's goroutine is left to finish on its
// own, and its result is dropped), and at once when ctx ends. A perNode of
// zero or less sets no per-node deadline: only ctx bounds the wait.
func Gather[T any](ctx context.Context, nodes []string, perNode time.Duration, fn func(ctx context.Context, node string) ([]T, error)) Result[T] {
	type answer struct {
		i     int
		items []T
		err   error
	}
	// Buffered for every node, so that a goroutine finishing after Gather
	// has returned never blocks.
	answers := make(chan answer, len(nodes))
	for i, node := range nodes {
		go func() {
			nctx, cancel := ctx, context.CancelFunc(func() {})
			if perNode > 0 {
				nctx, cancel = context.WithTimeout(ctx, perNode)
			}
			defer cancel()
			items, err := fn(nctx, node)
			answers <- answer{i, items, err}
		}()
	}

	var expired <-chan time.Time
	if perNode > 0 {
		t := time.NewTimer(perNode + GatherGrace)
		defer t.Stop()
		expired = t.C
	}
	got := make([]*answer, len(nodes))
	unanswered := ""
wait:
	for range nodes {
		select {
		case a := <-answers:
			got[a.i] = &a
		case <-expired:
			unanswered = fmt.Sprintf("no answer within %v", perNode)
			break wait
		case <-ctx.Done():
			unanswered = context.Cause(ctx).Error()
			break wait
		}
	}

	var r Result[T]
	for i, a := range got {
		switch {
		case a == nil:
			r.Missing = append(r.Missing, Missing{Node: nodes[i], Err: unanswered})
		case a.err != nil:
			r.Missing = append(r.Missing, Missing{Node: nodes[i], Err: a.err.Error()})
		default:
			r.Items = append(r.Items, a.items...)
		}
	}
	return r
}
