package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/globomantics/globomantics/internal/platform/bus"
	"github.com/globomantics/globomantics/internal/platform/clock"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/outbox"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

// attemptsOf is the failure count of a pending row.
func attemptsOf(t *testing.T, db *sqldb.DB, id string) int {
	t.Helper()
	var n int
	if err := db.QueryRowContext(context.Background(), `SELECT attempts FROM outbox WHERE seq_id = ?`, id).Scan(&n); err != nil {
		t.Fatalf("attempts of %s: %v", id, err)
	}
	return n
}

// addMany writes n events thg_00000... in one transaction each, a second apart.
func addMany(t *testing.T, db *sqldb.DB, prefix string, n int) []string {
	t.Helper()
	ctx := context.Background()
	var ids []string
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("%s_%05d", prefix, i)
		ids = append(ids, id)
		if err := db.InTx(ctx, func(tx *sqldb.Tx) error {
			return outbox.Add(ctx, tx, "globo.thing.created", id, thing{ID: id}, t0.Add(time.Duration(i)*time.Second))
		}); err != nil {
			t.Fatal(err)
		}
	}
	return ids
}

// testBrokerDownCountsNothing: when the broker refuses a whole batch as
// unreachable, the pass stops and no row is charged with a failure (an
// outage must not park every event).
func testBrokerDownCountsNothing(t *testing.T, b testenv.Backend) {
	ctx := context.Background()
	db := openDB(t, b)
	bb := testenv.Bus(t)
	s := newSink(t, bb, "sink")
	addMany(t, db, "thg", 3)
	flaky := &flakyPublisher{next: bb, downOn: map[int]bool{1: true}}
	relay := outbox.NewRelay(db, flaky, testenv.Logger(t), outbox.WithMaxAttempts(1))
	if n, err := relay.Flush(ctx); err == nil || n != 0 || !errs.Is(errs.Unavailable, err) {
		t.Fatalf("Flush with the broker down = %d, %v; want 0 and Unavailable", n, err)
	}
	for _, id := range []string{"thg_00000", "thg_00001", "thg_00002"} {
		if a := attemptsOf(t, db, id); a != 0 {
			t.Errorf("%s charged with %d attempts during an outage", id, a)
		}
	}
	if n, err := relay.Flush(ctx); err != nil || n != 3 {
		t.Fatalf("Flush after the outage = %d, %v; want 3", n, err)
	}
	s.waitFor(t, "thg_00000", "thg_00001", "thg_00002")
}

// testPoisonIsParked: a row that keeps failing is set aside after
// MaxAttempts, listed by Parked, and published after Unpark; the rows behind
// it are published on the first pass.
func testPoisonIsParked(t *testing.T, b testenv.Backend) {
	ctx := context.Background()
	db := openDB(t, b)
	bb := testenv.Bus(t)
	s := newSink(t, bb, "sink")
	ids := addMany(t, db, "thg", 5)
	poison := ids[1]
	flaky := &flakyPublisher{next: bb, failIDs: map[string]bool{poison: true}}
	parkedAt := t0.Add(time.Hour)
	relay := outbox.NewRelay(db, flaky, testenv.Logger(t), outbox.WithMaxAttempts(3), outbox.WithClock(clock.NewFake(parkedAt)))
	want := []string{ids[0], ids[2], ids[3], ids[4]}
	for pass := 1; pass <= 3; pass++ {
		n, err := relay.Flush(ctx)
		switch {
		case pass == 1 && (n != 4 || err == nil):
			t.Fatalf("first pass = %d, %v; want the 4 good rows published and an error", n, err)
		case pass == 2 && (n != 0 || err == nil):
			t.Fatalf("second pass = %d, %v; want 0 and an error", n, err)
		case pass == 3 && (n != 0 || err != nil):
			t.Fatalf("third pass = %d, %v; want 0 and the poison parked without error", n, err)
		}
	}
	s.waitFor(t, want...)
	if pending(t, db) != 0 {
		t.Fatalf("%d rows still pending; the poison should be parked", pending(t, db))
	}
	parked, err := outbox.Parked(ctx, db, 0)
	if err != nil || len(parked) != 1 {
		t.Fatalf("Parked = %+v, %v; want the poison", parked, err)
	}
	p := parked[0]
	if p.ID != poison || p.Subject != "globo.thing.created" || p.Attempts != 3 || !strings.Contains(p.LastError, "refused: "+poison) ||
		!p.ParkedAt.Equal(parkedAt) || !p.OccurredAt.Equal(t0.Add(time.Second)) || string(p.Payload) != `{"id":"`+poison+`","name":""}` {
		t.Fatalf("parked = %+v", p)
	}
	// A fourth pass does not touch it.
	if n, err := relay.Flush(ctx); n != 0 || err != nil || flaky.attempts(poison) != 3 {
		t.Fatalf("pass after parking = %d, %v, %d attempts", n, err, flaky.attempts(poison))
	}
	// Fixed: the operator puts it back, and it goes out.
	flaky.mu.Lock()
	flaky.failIDs = nil
	flaky.mu.Unlock()
	if err := outbox.Unpark(ctx, db, poison); err != nil {
		t.Fatal(err)
	}
	if err := outbox.Unpark(ctx, db, poison); !errs.Is(errs.NotFound, err) {
		t.Fatalf("second Unpark = %v, want NotFound", err)
	}
	if n, err := relay.Flush(ctx); n != 1 || err != nil {
		t.Fatalf("Flush after Unpark = %d, %v", n, err)
	}
	s.waitFor(t, append(want, poison)...)
	if parked, _ := outbox.Parked(ctx, db, 0); len(parked) != 0 {
		t.Fatalf("still parked: %+v", parked)
	}
}

// testUnpublishableParkedAtOnce: a payload the broker can never take (not
// JSON, here written by hand) is parked on its first failure, on the real
// broker, and the rows around it are published.
func testUnpublishableParkedAtOnce(t *testing.T, b testenv.Backend) {
	ctx := context.Background()
	db := openDB(t, b)
	bb := testenv.Bus(t)
	s := newSink(t, bb, "sink")
	addMany(t, db, "thg_a", 1)
	if _, err := db.ExecContext(ctx, `INSERT INTO outbox (seq_id, subject, payload, created_at) VALUES (?, ?, ?, ?)`,
		"thg_bad", "globo.thing.created", "{not json", sqldb.Millis(t0)); err != nil {
		t.Fatal(err)
	}
	addMany(t, db, "thg_b", 1)
	relay := outbox.NewRelay(db, bb, testenv.Logger(t))
	if n, err := relay.Flush(ctx); n != 2 || err != nil {
		t.Fatalf("Flush = %d, %v; want 2 and the bad row parked", n, err)
	}
	s.waitFor(t, "thg_a_00000", "thg_b_00000")
	parked, err := outbox.Parked(ctx, db, 10)
	if err != nil || len(parked) != 1 || parked[0].ID != "thg_bad" || parked[0].Attempts != 1 || parked[0].LastError == "" {
		t.Fatalf("Parked = %+v, %v", parked, err)
	}
}

// testOccurredAtAndTraceTravel: the time given to Add and the traceparent in
// its context reach the consumer, however late the relay publishes.
func testOccurredAtAndTraceTravel(t *testing.T, b testenv.Backend) {
	db := openDB(t, b)
	bb := testenv.Bus(t)
	s := newSink(t, bb, "sink")
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	at := time.Date(2024, 12, 24, 18, 30, 15, 123e6, time.UTC)
	ctx := bus.WithTraceparent(context.Background(), tp)
	if err := create(ctx, db, "thg_traced", at, nil); err != nil {
		t.Fatal(err)
	}
	if err := create(context.Background(), db, "thg_plain", at.Add(time.Second), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := outbox.NewRelay(db, bb, testenv.Logger(t)).Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	s.waitFor(t, "thg_traced", "thg_plain")
	s.mu.Lock()
	defer s.mu.Unlock()
	if ev := s.events[0]; !ev.Time.Equal(at) || ev.Traceparent != tp {
		t.Errorf("traced event: time %v, traceparent %q; want %v, %q", ev.Time, ev.Traceparent, at, tp)
	}
	if ev := s.events[1]; !ev.Time.Equal(at.Add(time.Second)) || ev.Traceparent != "" {
		t.Errorf("plain event: time %v, traceparent %q", ev.Time, ev.Traceparent)
	}
}

// cancelAfterPublish publishes through next and then ends the relay's
// context, as if the relay were killed after the broker acknowledged the
// batch and before the rows were deleted.
type cancelAfterPublish struct {
	next   outbox.Publisher
	cancel context.CancelFunc
}

func (p *cancelAfterPublish) PublishBatch(ctx context.Context, msgs []bus.Message) []error {
	out := p.next.PublishBatch(ctx, msgs)
	p.cancel()
	return out
}

// testKilledMidBatch: a relay stopped between publish and delete leaves its
// rows; the next relay publishes them again under the same Nats-Msg-Id, and
// the broker keeps one copy of each.
func testKilledMidBatch(t *testing.T, b testenv.Backend) {
	db := openDB(t, b)
	bb := testenv.Bus(t)
	s := newSink(t, bb, "sink")
	ids := addMany(t, db, "thg", 5)
	counted := &flakyPublisher{next: bb}
	ctx, cancel := context.WithCancel(context.Background())
	killed := outbox.NewRelay(db, &cancelAfterPublish{next: counted, cancel: cancel}, testenv.Logger(t))
	if _, err := killed.Flush(ctx); err == nil {
		t.Fatal("Flush whose context ended before the delete reported no error")
	}
	if pending(t, db) != 5 {
		t.Fatalf("%d rows left after the killed batch, want all 5", pending(t, db))
	}
	next := outbox.NewRelay(db, counted, testenv.Logger(t))
	if n, err := next.Flush(context.Background()); n != 5 || err != nil {
		t.Fatalf("next relay's Flush = %d, %v; want 5", n, err)
	}
	for _, id := range ids {
		if a := counted.attempts(id); a != 2 {
			t.Errorf("%s published %d times, want 2 (same id both times)", id, a)
		}
	}
	// A marker behind them: once it arrives, any duplicate would have too.
	if err := create(context.Background(), db, "thg_marker", t0.Add(time.Hour), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := next.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	s.waitFor(t, append(ids, "thg_marker")...)
}

// testMigrationKeepsRows: rows written before MigrationV2 survive it and are
// published oldest first, before rows written after it.
func testMigrationKeepsRows(t *testing.T, b testenv.Backend) {
	ctx := context.Background()
	db := b.Open(t)
	v1 := fstest.MapFS{"00001_outbox.sql": {Data: []byte(outbox.Migration)}}
	if err := db.Migrate(ctx, "things", v1); err != nil {
		t.Fatal(err)
	}
	// Written by the old Add, out of time order.
	for i, id := range []string{"old_c", "old_a", "old_b"} {
		at := t0.Add(time.Duration(2-i) * time.Second)
		if _, err := db.ExecContext(ctx, `INSERT INTO outbox (seq_id, subject, payload, created_at) VALUES (?, ?, ?, ?)`,
			id, "globo.thing.created", `{"id":"`+id+`"}`, sqldb.Millis(at)); err != nil {
			t.Fatal(err)
		}
	}
	v2 := fstest.MapFS{"00001_outbox.sql": v1["00001_outbox.sql"], "00002_outbox_v2.sql": {Data: []byte(outbox.MigrationV2)}}
	if err := db.Migrate(ctx, "things", v2); err != nil {
		t.Fatal(err)
	}
	if pending(t, db) != 3 {
		t.Fatalf("%d rows after the migration, want 3", pending(t, db))
	}
	if err := db.InTx(ctx, func(tx *sqldb.Tx) error {
		return outbox.Add(ctx, tx, "globo.thing.created", "new_1", thing{ID: "new_1"}, t0.Add(-time.Hour))
	}); err != nil {
		t.Fatal(err)
	}
	bb := testenv.Bus(t)
	s := newSink(t, bb, "sink")
	if n, err := outbox.NewRelay(db, bb, testenv.Logger(t)).Flush(ctx); n != 4 || err != nil {
		t.Fatalf("Flush = %d, %v", n, err)
	}
	if b.Name == "postgres" {
		// Numbered by created_at at the migration, then the sequence.
		s.waitFor(t, "old_b", "old_a", "old_c", "new_1")
	} else {
		// SQLite keeps the order the rows were written in (its rowid).
		s.waitFor(t, "old_c", "old_a", "old_b", "new_1")
	}
}

// recordingPublisher records every batch per relay and forwards it.
type recordingPublisher struct {
	next    outbox.Publisher
	name    string
	mu      *sync.Mutex
	batches *[]recorded
	// barrier, when set, holds the first batch until both relays have one
	// in flight: proof that the second relay was not blocked by the first's
	// claimed rows.
	barrier *sync.WaitGroup
	once    sync.Once
	stuck   bool // the other relay never had a batch in flight beside this one
}

type recorded struct {
	relay string
	ids   []string
}

func (p *recordingPublisher) PublishBatch(ctx context.Context, msgs []bus.Message) []error {
	p.mu.Lock()
	r := recorded{relay: p.name}
	for _, m := range msgs {
		r.ids = append(r.ids, m.ID)
	}
	*p.batches = append(*p.batches, r)
	p.mu.Unlock()
	if p.barrier != nil {
		p.once.Do(func() {
			p.barrier.Done()
			done := make(chan struct{})
			go func() { p.barrier.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				p.stuck = true
			}
		})
	}
	return p.next.PublishBatch(ctx, msgs)
}

// TestTwoRelaysOnePostgres: two relays (two instances of a service) on one
// PostgreSQL database claim different batches at the same time, and every
// row is published exactly once, each batch in sequence order.
func TestTwoRelaysOnePostgres(t *testing.T) {
	db := openDB(t, testenv.Backends()[1])
	db2, err := sqldb.Open(context.Background(), dsnOf(t, db))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db2.Close() })
	bb := testenv.Bus(t)
	s := newSink(t, bb, "sink")
	const total = 600
	var ids []string
	if err := db.InTx(context.Background(), func(tx *sqldb.Tx) error {
		for i := 0; i < total; i++ {
			id := fmt.Sprintf("thg_%05d", i)
			ids = append(ids, id)
			// Clocks of different hosts: times that go backwards do not
			// change the order, the sequence does.
			if err := outbox.Add(context.Background(), tx, "globo.thing.created", id, thing{ID: id}, t0.Add(-time.Duration(i)*time.Second)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var (
		mu      sync.Mutex
		batches []recorded
		barrier sync.WaitGroup
	)
	barrier.Add(2)
	pa := &recordingPublisher{next: bb, name: "a", mu: &mu, batches: &batches, barrier: &barrier}
	pb := &recordingPublisher{next: bb, name: "b", mu: &mu, batches: &batches, barrier: &barrier}
	ra := outbox.NewRelay(db, pa, testenv.Logger(t), outbox.WithBatchSize(50))
	rb := outbox.NewRelay(db2, pb, testenv.Logger(t), outbox.WithBatchSize(50))
	var wg sync.WaitGroup
	counts := make([]int, 2)
	for i, r := range []*outbox.Relay{ra, rb} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := r.Flush(context.Background())
			if err != nil {
				t.Errorf("relay %d: %v", i, err)
			}
			counts[i] = n
		}()
	}
	wg.Wait()
	if pa.stuck || pb.stuck {
		t.Fatal("the two relays never had batches in flight at the same time: one waited for the other's rows")
	}
	if counts[0] == 0 || counts[1] == 0 || counts[0]+counts[1] != total {
		t.Fatalf("relays published %v rows, want both some and %d in all", counts, total)
	}
	seen := map[string]int{}
	for _, bt := range batches {
		if !slices.IsSorted(bt.ids) {
			t.Errorf("relay %s published a batch out of sequence order: %v", bt.relay, bt.ids)
		}
		for _, id := range bt.ids {
			seen[id]++
		}
	}
	for _, id := range ids {
		if seen[id] != 1 {
			t.Errorf("%s published %d times", id, seen[id])
		}
	}
	if pending(t, db) != 0 {
		t.Errorf("%d rows left", pending(t, db))
	}
	testenv.CheckFor(t, wait, func() error {
		got := s.ids()
		sort.Strings(got)
		if !slices.Equal(got, ids) {
			return fmt.Errorf("%d events arrived, want %d", len(got), len(ids))
		}
		return nil
	})
	t.Logf("relay a published %d rows, relay b %d, in %d batches", counts[0], counts[1], len(batches))
}

// dsnOf is the DSN of a test PostgreSQL database, to open a second handle
// (a second instance) on it.
func dsnOf(t *testing.T, db *sqldb.DB) string {
	t.Helper()
	var name string
	var port int
	if err := db.QueryRowContext(context.Background(), `SELECT current_database(), current_setting('port')::int`).Scan(&name, &port); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", port, name)
}

// TestFlushPassEnds: a row that keeps failing is tried once per pass, so a
// pass ends even when every row fails on its own.
func TestFlushPassEnds(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			db := openDB(t, b)
			bb := testenv.Bus(t)
			ids := addMany(t, db, "thg", 7)
			fail := map[string]bool{}
			for _, id := range ids[1:] {
				fail[id] = true
			}
			flaky := &flakyPublisher{next: bb, failIDs: fail, failErr: errors.New("nope")}
			r := outbox.NewRelay(db, flaky, testenv.Logger(t), outbox.WithBatchSize(2))
			n, err := r.Flush(context.Background())
			if n != 1 || err == nil || !strings.Contains(err.Error(), "6 events not published") {
				t.Fatalf("Flush = %d, %v", n, err)
			}
			for _, id := range ids[1:] {
				if flaky.attempts(id) != 1 {
					t.Errorf("%s tried %d times in one pass", id, flaky.attempts(id))
				}
			}
		})
	}
}
