package outbox_test

import (
	"context"
	"testing"

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
	r := outbox.NewRelays(map[string]*sqldb.DB{"a": dbA, "b": dbB}, b, testenv.Logger(t))
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
