package shard_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/globomantics/globomantics/internal/platform/shard"
)

func ExampleMap_Move() {
	m, err := shard.ParseMap("0-1023=db-a")
	if err != nil {
		panic(err)
	}
	// A new node takes the upper half; no key is rehashed.
	m, err = m.Move(512, 1023, "db-b")
	if err != nil {
		panic(err)
	}
	fmt.Println(m)
	fmt.Println(m.NodeFor(shard.ForKey("alice@example.com")))
	// Output:
	// v1;0-511=db-a;512-1023=db-b
	// db-b
}

func ExampleGather() {
	m, _ := shard.ParseMap("0-511=db-a;512-1023=db-b")
	r := shard.Gather(context.Background(), m.Nodes(), time.Second, func(ctx context.Context, node string) ([]string, error) {
		if node == "db-b" {
			return nil, errors.New("connection refused")
		}
		return []string{"ord_1", "ord_2"}, nil
	})
	fmt.Println(r.Items)
	for _, rg := range r.MissingRanges(m) {
		fmt.Printf("shards %d-%d did not answer\n", rg.Lo, rg.Hi)
	}
	// Output:
	// [ord_1 ord_2]
	// shards 512-1023 did not answer
}

// The write path and a move of shards 512-1023 from db-b to db-c, as seen
// by one process; a mover does the same on every process that writes.
func ExampleRouter_Fence() {
	type pool struct{ node string }
	ctx := context.Background()
	m, _ := shard.ParseMap("v1;0-511=db-a;512-1023=db-b")
	r, err := shard.NewRouter(m, func(node string) (*pool, error) { return &pool{node}, nil }, nil)
	if err != nil {
		panic(err)
	}

	// A write: first be admitted, then resolve the node.
	write := func(userID string) {
		s := shard.ForKey(userID)
		end, err := r.BeginWrite(ctx, s)
		if err != nil {
			return // errs.Unavailable: the shard stayed fenced past ctx
		}
		defer end()
		p, _ := r.ForShard(s)
		fmt.Println("write to", p.node)
	}

	// The move, after copying and catching up.
	next, _ := r.Map().Move(512, 1023, "db-c")
	_ = r.Fence(512, 1023)      // new writes to the moving shards wait
	_ = r.Drain(ctx, 512, 1023) // writes begun before the fence end
	// ... final catch-up from db-b to db-c ...
	_ = r.Swap(next)         // every caller now routes 512-1023 to db-c
	_ = r.Unfence(512, 1023) // held writes go on, to db-c

	write("alice@example.com") // shard 703
	// Output:
	// write to db-c
}
