package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/globomantics/globomantics/internal/platform/bus"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/outbox"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const wait = 20 * time.Second

var t0 = time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)

type thing struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// sink subscribes to every test event and records what arrives.
type sink struct {
	mu     sync.Mutex
	events []bus.Event
}

func newSink(t *testing.T, b *bus.Bus, name string) *sink {
	t.Helper()
	s := &sink{}
	err := b.Subscribe(context.Background(), name, []string{"globo.thing.>"}, func(ctx context.Context, ev bus.Event) error {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.events = append(s.events, ev)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *sink) ids() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, ev := range s.events {
		out = append(out, ev.ID)
	}
	return out
}

// waitFor waits until the sink has seen exactly the given ids, in order.
func (s *sink) waitFor(t *testing.T, want ...string) {
	t.Helper()
	testenv.CheckFor(t, wait, func() error {
		if got := s.ids(); fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("events %q, want %q", got, want)
		}
		return nil
	})
}

func openDB(t *testing.T, b testenv.Backend) *sqldb.DB {
	t.Helper()
	db := b.Open(t)
	if err := db.Migrate(context.Background(), "things", storeMigrations()); err != nil {
		t.Fatal(err)
	}
	return db
}

// storeMigrations are a store's migrations with outbox.Migration and
// outbox.MigrationV2 among its files.
func storeMigrations() fstest.MapFS {
	return fstest.MapFS{
		"00001_things.sql":    {Data: []byte("-- +goose Up\nCREATE TABLE things (id TEXT PRIMARY KEY, name TEXT NOT NULL);\n")},
		"00002_outbox.sql":    {Data: []byte(outbox.Migration)},
		"00003_outbox_v2.sql": {Data: []byte(outbox.MigrationV2)},
	}
}

func pending(t *testing.T, db *sqldb.DB) int {
	t.Helper()
	var n int
	if err := db.QueryRowContext(context.Background(), `SELECT COUNT(*) FROM outbox`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// create writes a thing and its event in one transaction, as a store does.
func create(ctx context.Context, db *sqldb.DB, id string, at time.Time, fail error) error {
	return db.InTx(ctx, func(tx *sqldb.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO things (id, name) VALUES (?, ?)`, id, "name of "+id); err != nil {
			return err
		}
		if err := outbox.Add(ctx, tx, "globo.thing.created", id, thing{ID: id, Name: "name of " + id}, at); err != nil {
			return err
		}
		return fail
	})
}

// flakyPublisher forwards batches to next, failing the messages whose id
// is in failIDs (with failErr, a plain error unless set) and every message
// of the batches whose 1-based number is in downOn (as unavailable).
type flakyPublisher struct {
	next    outbox.Publisher
	mu      sync.Mutex
	calls   int
	downOn  map[int]bool
	failIDs map[string]bool
	failErr error
	sent    map[string]int // publish attempts per id
}

func (p *flakyPublisher) PublishBatch(ctx context.Context, msgs []bus.Message) []error {
	p.mu.Lock()
	p.calls++
	down := p.downOn[p.calls]
	if p.sent == nil {
		p.sent = map[string]int{}
	}
	out := make([]error, len(msgs))
	var pass []bus.Message
	var idx []int
	for i, m := range msgs {
		p.sent[m.ID]++
		switch {
		case down:
			out[i] = errs.E("test", errs.Unavailable, errors.New("broker unreachable"))
		case p.failIDs[m.ID]:
			out[i] = p.failErr
			if out[i] == nil {
				out[i] = errors.New("refused: " + m.ID)
			}
		default:
			pass = append(pass, m)
			idx = append(idx, i)
		}
	}
	p.mu.Unlock()
	if len(pass) > 0 {
		for j, err := range p.next.PublishBatch(ctx, pass) {
			out[idx[j]] = err
		}
	}
	return out
}

func (p *flakyPublisher) attempts(id string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sent[id]
}

func TestOutbox(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Run("FlushPublishesAndDeletes", func(t *testing.T) { testFlushPublishesAndDeletes(t, b) })
			t.Run("RollbackPublishesNothing", func(t *testing.T) { testRollbackPublishesNothing(t, b) })
			t.Run("FailingPublisherKeepsRows", func(t *testing.T) { testFailingPublisherKeepsRows(t, b) })
			t.Run("RepublishIsDeduplicated", func(t *testing.T) { testRepublishIsDeduplicated(t, b) })
			t.Run("FlushDrainsBacklog", func(t *testing.T) { testFlushDrainsBacklog(t, b) })
			t.Run("RunAndKick", func(t *testing.T) { testRunAndKick(t, b) })
			t.Run("BrokerDownCountsNothing", func(t *testing.T) { testBrokerDownCountsNothing(t, b) })
			t.Run("PoisonIsParked", func(t *testing.T) { testPoisonIsParked(t, b) })
			t.Run("UnpublishableParkedAtOnce", func(t *testing.T) { testUnpublishableParkedAtOnce(t, b) })
			t.Run("OccurredAtAndTraceTravel", func(t *testing.T) { testOccurredAtAndTraceTravel(t, b) })
			t.Run("KilledMidBatch", func(t *testing.T) { testKilledMidBatch(t, b) })
			t.Run("MigrationKeepsRows", func(t *testing.T) { testMigrationKeepsRows(t, b) })
		})
	}
}

func testFlushPublishesAndDeletes(t *testing.T, b testenv.Backend) {
	ctx := context.Background()
	db := openDB(t, b)
	bb := testenv.Bus(t)
	s := newSink(t, bb, "sink")
	// Ids deliberately out of time order: the relay publishes oldest first.
	for i, id := range []string{"thg_c", "thg_a", "thg_b"} {
		if err := create(ctx, db, id, t0.Add(time.Duration(i)*time.Second), nil); err != nil {
			t.Fatal(err)
		}
	}
	if pending(t, db) != 3 {
		t.Fatalf("%d outbox rows, want 3", pending(t, db))
	}
	relay := outbox.NewRelay(db, bb, testenv.Logger(t))
	n, err := relay.Flush(ctx)
	if err != nil || n != 3 {
		t.Fatalf("Flush = %d, %v; want 3", n, err)
	}
	if pending(t, db) != 0 {
		t.Errorf("%d rows left after Flush", pending(t, db))
	}
	s.waitFor(t, "thg_c", "thg_a", "thg_b")
	s.mu.Lock()
	for _, ev := range s.events {
		var got thing
		if err := ev.Decode(&got); err != nil {
			t.Fatal(err)
		}
		if ev.Type != "globo.thing.created" || got != (thing{ID: ev.ID, Name: "name of " + ev.ID}) {
			t.Errorf("event %+v carries %+v", ev, got)
		}
	}
	s.mu.Unlock()
	if n, err := relay.Flush(ctx); err != nil || n != 0 {
		t.Errorf("second Flush = %d, %v; want 0", n, err)
	}
}

func testRollbackPublishesNothing(t *testing.T, b testenv.Backend) {
	ctx := context.Background()
	db := openDB(t, b)
	bb := testenv.Bus(t)
	s := newSink(t, bb, "sink")
	boom := errors.New("business rule failed")
	if err := create(ctx, db, "thg_rolled_back", t0, boom); !errors.Is(err, boom) {
		t.Fatalf("create = %v", err)
	}
	if pending(t, db) != 0 {
		t.Fatal("a rolled-back transaction left an outbox row")
	}
	var n int
	_ = db.QueryRowContext(ctx, `SELECT COUNT(*) FROM things`).Scan(&n)
	if n != 0 {
		t.Fatal("a rolled-back transaction left its change")
	}
	relay := outbox.NewRelay(db, bb, testenv.Logger(t))
	if n, err := relay.Flush(ctx); err != nil || n != 0 {
		t.Fatalf("Flush = %d, %v; want 0", n, err)
	}
	// Nothing but a later committed event arrives.
	if err := create(ctx, db, "thg_ok", t0, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := relay.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	s.waitFor(t, "thg_ok")

	// Add fails on data that cannot be marshalled, and the caller's
	// transaction then writes nothing.
	err := db.InTx(ctx, func(tx *sqldb.Tx) error {
		return outbox.Add(ctx, tx, "globo.thing.bad", "thg_bad", func() {}, t0)
	})
	if err == nil || pending(t, db) != 0 {
		t.Fatalf("Add of unmarshalable data: %v, %d rows", err, pending(t, db))
	}
}

// testFailingPublisherKeepsRows: a row the broker refuses stays for the next
// pass with its failure counted, and does not hold back the rows behind it.
func testFailingPublisherKeepsRows(t *testing.T, b testenv.Backend) {
	ctx := context.Background()
	db := openDB(t, b)
	bb := testenv.Bus(t)
	s := newSink(t, bb, "sink")
	for i := 1; i <= 3; i++ {
		if err := create(ctx, db, fmt.Sprintf("thg_%d", i), t0.Add(time.Duration(i)*time.Second), nil); err != nil {
			t.Fatal(err)
		}
	}
	flaky := &flakyPublisher{next: bb, failIDs: map[string]bool{"thg_2": true}}
	relay := outbox.NewRelay(db, flaky, testenv.Logger(t))
	n, err := relay.Flush(ctx)
	if err == nil || n != 2 {
		t.Fatalf("Flush with thg_2 refused = %d, %v; want 2 and an error", n, err)
	}
	s.waitFor(t, "thg_1", "thg_3")
	if pending(t, db) != 1 || attemptsOf(t, db, "thg_2") != 1 {
		t.Fatalf("%d rows left, thg_2 attempts %d; want 1 and 1", pending(t, db), attemptsOf(t, db, "thg_2"))
	}
	// The broker takes it now.
	flaky.mu.Lock()
	flaky.failIDs = nil
	flaky.mu.Unlock()
	n, err = relay.Flush(ctx)
	if err != nil || n != 1 {
		t.Fatalf("Flush after recovery = %d, %v; want 1", n, err)
	}
	s.waitFor(t, "thg_1", "thg_3", "thg_2")
	if pending(t, db) != 0 {
		t.Errorf("%d rows left", pending(t, db))
	}
}

// testRepublishIsDeduplicated covers a relay that published a row and died
// before deleting it: the row is published again, and the broker drops it.
func testRepublishIsDeduplicated(t *testing.T, b testenv.Backend) {
	ctx := context.Background()
	db := openDB(t, b)
	bb := testenv.Bus(t)
	s := newSink(t, bb, "sink")
	relay := outbox.NewRelay(db, bb, testenv.Logger(t))
	if err := create(ctx, db, "thg_once", t0, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := relay.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// The same row, back in the outbox as if its delete had been lost.
	if err := db.InTx(ctx, func(tx *sqldb.Tx) error {
		return outbox.Add(ctx, tx, "globo.thing.created", "thg_once", thing{ID: "thg_once"}, t0)
	}); err != nil {
		t.Fatal(err)
	}
	if err := create(ctx, db, "thg_after", t0.Add(time.Second), nil); err != nil {
		t.Fatal(err)
	}
	if n, err := relay.Flush(ctx); err != nil || n != 2 {
		t.Fatalf("Flush = %d, %v", n, err)
	}
	s.waitFor(t, "thg_once", "thg_after")
}

func testFlushDrainsBacklog(t *testing.T, b testenv.Backend) {
	ctx := context.Background()
	db := openDB(t, b)
	bb := testenv.Bus(t)
	const total = 250 // more than one batch
	var want []string
	if err := db.InTx(ctx, func(tx *sqldb.Tx) error {
		for i := 0; i < total; i++ {
			id := fmt.Sprintf("thg_%03d", i)
			want = append(want, id)
			if err := outbox.Add(ctx, tx, "globo.thing.created", id, thing{ID: id}, t0.Add(time.Duration(i)*time.Millisecond)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	s := newSink(t, bb, "sink")
	relay := outbox.NewRelay(db, bb, testenv.Logger(t))
	n, err := relay.Flush(ctx)
	if err != nil || n != total {
		t.Fatalf("Flush = %d, %v; want every one of the %d pending rows", n, err, total)
	}
	if pending(t, db) != 0 {
		t.Errorf("%d rows left", pending(t, db))
	}
	s.waitFor(t, want...)
}

func testRunAndKick(t *testing.T, b testenv.Backend) {
	db := openDB(t, b)
	bb := testenv.Bus(t)
	s := newSink(t, bb, "sink")
	relay := outbox.NewRelay(db, bb, testenv.Logger(t))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { relay.Run(ctx); close(done) }()
	for i := 1; i <= 3; i++ {
		id := fmt.Sprintf("thg_run_%d", i)
		if err := create(context.Background(), db, id, t0.Add(time.Duration(i)*time.Second), nil); err != nil {
			t.Fatal(err)
		}
		relay.Kick()
		relay.Kick() // kicks never block, however many
	}
	s.waitFor(t, "thg_run_1", "thg_run_2", "thg_run_3")
	testenv.CheckFor(t, wait, func() error {
		if n := pending(t, db); n != 0 {
			return fmt.Errorf("%d rows pending", n)
		}
		return nil
	})
	cancel()
	select {
	case <-done:
	case <-time.After(wait):
		t.Fatal("Run did not return after its context ended")
	}
}
