package outbox_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/platform/outbox"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

// TestRelays: one relay per node publishes every node's outbox; a node that
// is closed holds back only its own events.
func TestRelays(t *testing.T) {
	ctx := context.Background()
	b := testenv.Bus(t)
	s := newSink(t, b, "relays")
	dbA, dbB := openDB(t, testenv.Backends()[0]), openDB(t, testenv.Backends()[0])
	add := func(db *sqldb.DB, id string) {
		t.Helper()
		err := db.InTx(ctx, func(tx *sqldb.Tx) error {
			return outbox.Add(ctx, tx, "globo.thing.made", id, thing{ID: id}, t0)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	add(dbA, "a1")
	add(dbB, "b1")
	r := outbox.NewRelays(func() map[string]*sqldb.DB { return map[string]*sqldb.DB{"a": dbA, "b": dbB} }, b, testenv.Logger(t))
	if n, err := r.Flush(ctx); err != nil || n != 2 {
		t.Fatalf("Flush = %d, %v; want 2", n, err)
	}
	s.waitFor(t, "a1", "b1")
	add(dbA, "a2")
	dbB.Close()
	if n, err := r.Flush(ctx); err == nil || n != 1 {
		t.Errorf("Flush with a node closed = %d, %v; want 1 and an error", n, err)
	}
	s.waitFor(t, "a1", "b1", "a2")
}

// TestRelaysFollowNodes: while Run runs, a node that joins (shards moved to
// it) gets a relay, and a node that left still has its outbox published.
func TestRelaysFollowNodes(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	b := testenv.Bus(t)
	s := newSink(t, b, "relaysfollow")
	dbA, dbC := openDB(t, testenv.Backends()[0]), openDB(t, testenv.Backends()[0])
	add := func(db *sqldb.DB, id string) {
		t.Helper()
		err := db.InTx(ctx, func(tx *sqldb.Tx) error {
			return outbox.Add(ctx, tx, "globo.thing.made", id, thing{ID: id}, t0)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	nodes := map[string]*sqldb.DB{"a": dbA}
	r := outbox.NewRelays(func() map[string]*sqldb.DB {
		mu.Lock()
		defer mu.Unlock()
		out := map[string]*sqldb.DB{}
		for k, v := range nodes {
			out[k] = v
		}
		return out
	}, b, testenv.Logger(t))
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	add(dbA, "a1")
	r.Kick()
	s.waitFor(t, "a1")
	// C joins, A leaves with an event still in its outbox.
	add(dbC, "c1")
	mu.Lock()
	nodes = map[string]*sqldb.DB{"c": dbC}
	mu.Unlock()
	add(dbA, "a2")
	// The two nodes' relays run apart: any order of c1 and a2.
	testenv.CheckFor(t, 20*time.Second, func() error {
		got := s.ids()
		slices.Sort(got)
		if fmt.Sprint(got) != fmt.Sprint([]string{"a1", "a2", "c1"}) {
			return fmt.Errorf("events %q", got)
		}
		return nil
	})
}
