package outbox

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/globomantics/globomantics/internal/platform/bus"
	"github.com/globomantics/globomantics/internal/platform/clock"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
)

// Publisher publishes a batch of events and reports each one's outcome
// (nil: the broker holds it); errs.Invalid marks a message that can never
// be published. *bus.Bus is one.
type Publisher interface {
	PublishBatch(ctx context.Context, msgs []bus.Message) []error
}

var _ Publisher = (*bus.Bus)(nil)

// Defaults of a Relay.
const (
	// DefaultBatchSize is how many rows a relay claims and publishes at once.
	DefaultBatchSize = 100
	// DefaultMaxAttempts is how many failed publishes park a row.
	DefaultMaxAttempts = 10
	// DefaultPollInterval is how often a relay looks for rows when not kicked.
	DefaultPollInterval = time.Second
)

// Relay publishes the outbox rows of one database and deletes them once the
// broker has acknowledged them. Any number of relays may run on one
// PostgreSQL database (one per instance of the service); on SQLite, one per
// database file.
type Relay struct {
	db    *sqldb.DB
	pub   Publisher
	log   *slog.Logger
	clock clock.Clock

	batchSize   int
	maxAttempts int
	poll        time.Duration
	faults      Faults // nil: none

	store   string       // names the store in metrics and spans (observe.go)
	metrics *Metrics     // nil: none
	tracer  trace.Tracer // nil: no spans

	kick chan struct{}
	mu   sync.Mutex // one pass at a time per relay
}

// Option adjusts a Relay.
type Option func(*Relay)

// WithBatchSize sets how many rows are claimed and published at once (n > 0).
func WithBatchSize(n int) Option {
	return func(r *Relay) {
		if n > 0 {
			r.batchSize = n
		}
	}
}

// WithMaxAttempts sets how many failed publishes park a row (n > 0).
func WithMaxAttempts(n int) Option {
	return func(r *Relay) {
		if n > 0 {
			r.maxAttempts = n
		}
	}
}

// WithPollInterval sets how often Run looks for rows when not kicked (d > 0).
func WithPollInterval(d time.Duration) Option {
	return func(r *Relay) {
		if d > 0 {
			r.poll = d
		}
	}
}

// WithClock sets the clock that stamps parked rows.
func WithClock(c clock.Clock) Option { return func(r *Relay) { r.clock = c } }

// Faults injects failures at named points, for crash tests; *fault.Injector
// is one. At returns nil to carry on; an error ends the pass as a failed
// publish would (nothing recorded), and a crash never returns.
type Faults interface {
	At(ctx context.Context, point string) error
}

// Fault points of a relay, in the order a batch meets them.
const (
	// FaultBeforePublish: rows claimed (committed by their writers),
	// nothing published.
	FaultBeforePublish = "before:outbox_publish"
	// FaultMidBatch: the first half of a batch published and acknowledged,
	// the second half not sent. With faults set, a batch of two or more
	// rows is published in two halves so that this point exists.
	FaultMidBatch = "mid:outbox_batch"
	// FaultAfterPublish: the whole batch acknowledged by the broker, its
	// rows not yet deleted.
	FaultAfterPublish = "after:outbox_publish"
)

// WithFaults makes the relay consult f at its fault points (nil: none).
func WithFaults(f Faults) Option { return func(r *Relay) { r.faults = f } }

// fault applies the rule of point, if faults are set.
func (r *Relay) fault(ctx context.Context, point string) error {
	if r.faults == nil {
		return nil
	}
	return r.faults.At(ctx, point)
}

// NewRelay returns a relay for db that publishes through pub.
func NewRelay(db *sqldb.DB, pub Publisher, log *slog.Logger, opts ...Option) *Relay {
	r := &Relay{db: db, pub: pub, log: log, clock: clock.Real{},
		batchSize: DefaultBatchSize, maxAttempts: DefaultMaxAttempts, poll: DefaultPollInterval,
		kick: make(chan struct{}, 1), store: db.DBName()}
	for _, o := range opts {
		o(r)
	}
	if r.log == nil {
		r.log = slog.Default()
	}
	return r
}

// Kick wakes the relay to publish now rather than at its next poll.
func (r *Relay) Kick() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// Run publishes pending rows until ctx ends, polling every poll interval
// and whenever kicked.
func (r *Relay) Run(ctx context.Context) {
	defer r.running()()
	t := time.NewTicker(r.poll)
	defer t.Stop()
	for {
		if _, err := r.Flush(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("outbox relay", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-r.kick:
		}
	}
}

// Flush makes one pass over the outbox, oldest row first, and reports how
// many rows it published. Rows another relay holds are skipped. A row whose
// publish fails stays for the next pass (or is parked) while the rows
// behind it are published; Flush then returns an error saying how many
// failed. When the broker refuses a whole batch as unreachable, the pass
// stops there with that error and no failure is counted against the rows.
func (r *Relay) Flush(ctx context.Context) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	total, failed := 0, 0
	var firstErr error
	after := int64(-1) << 62 // below any key
	for {
		res, err := r.batch(ctx, after)
		total += res.published
		failed += res.failed
		if firstErr == nil {
			firstErr = res.firstErr
		}
		if err != nil {
			return total, err
		}
		if res.read < r.batchSize {
			break
		}
		after = res.last
	}
	if failed > 0 {
		return total, errs.E("outbox.Flush", errs.Unavailable,
			fmt.Errorf("%d events not published, kept for the next pass: %w", failed, firstErr))
	}
	return total, nil
}

// row is one outbox row as the relay reads it.
type row struct {
	key         int64 // seq (PostgreSQL) or rowid (SQLite)
	id          string
	subject     string
	payload     string
	createdAt   int64
	traceparent string
	attempts    int
}

// batchResult is what one batch did.
type batchResult struct {
	read      int   // rows claimed
	last      int64 // the key of the last row claimed
	published int
	failed    int // rows kept for a later pass
	firstErr  error
}

// batch claims up to batchSize rows with keys above after, publishes them
// and records the outcome. On PostgreSQL it all happens in one transaction
// that holds the claimed rows' locks, so that other relays skip them; on
// SQLite (one writer, one relay per file) the rows are read, published, and
// the outcome written in a short transaction, since a long one would hold
// the only write lock while publishing. On error nothing is recorded: rows
// published but not deleted are published again by the next pass, under
// the same message id.
func (r *Relay) batch(ctx context.Context, after int64) (batchResult, error) {
	var (
		res batchResult
		out *outcome
	)
	start := time.Now()
	recorded := false // the outcome is committed: its published rows count
	defer func() {
		if res.read > 0 {
			published := 0
			if recorded {
				published = res.published
			}
			r.observeBatch(start, published)
		}
	}()
	if r.db.Dialect == sqldb.Postgres {
		err := r.db.InTx(ctx, func(tx *sqldb.Tx) error {
			rows, err := r.claim(ctx, tx, after, `seq`, ` FOR UPDATE SKIP LOCKED`)
			if err != nil {
				return err
			}
			if res, out, err = r.publish(ctx, rows); err != nil || out == nil {
				return err
			}
			return r.record(ctx, tx, out)
		})
		if err != nil {
			return batchResult{}, err
		}
	} else {
		rows, err := r.claim(ctx, r.db, after, `rowid`, ``)
		if err != nil {
			return batchResult{}, err
		}
		if res, out, err = r.publish(ctx, rows); err != nil {
			return batchResult{}, err
		}
		if out != nil {
			if err := r.db.InTx(ctx, func(tx *sqldb.Tx) error { return r.record(ctx, tx, out) }); err != nil {
				return batchResult{}, err
			}
		}
	}
	recorded = true
	if out != nil {
		r.logOutcome(out)
	}
	return res, nil
}

// outcome is what a published batch's rows need done to them.
type outcome struct {
	published []int64 // keys to delete
	retry     []row   // failed, attempts counted, kept
	retryErr  []error
	park      []row // set aside
	parkErr   []error
}

// logOutcome logs the failures of a batch once its outcome is committed.
func (r *Relay) logOutcome(out *outcome) {
	for i, x := range out.retry {
		r.log.Warn("outbox event not published, will retry", "id", x.id, "subject", x.subject,
			"attempt", x.attempts+1, "err", out.retryErr[i])
	}
	for i, x := range out.park {
		r.log.Error("outbox event parked: it will not be published until unparked", "id", x.id, "subject", x.subject,
			"attempts", x.attempts+1, "err", out.parkErr[i])
	}
}

// claim reads the next rows in key order (locking them on PostgreSQL).
func (r *Relay) claim(ctx context.Context, q sqldb.Querier, after int64, key, lock string) ([]row, error) {
	rs, err := q.QueryContext(ctx, `SELECT `+key+`, seq_id, subject, payload, created_at, traceparent, attempts
		FROM outbox WHERE `+key+` > ? ORDER BY `+key+` LIMIT ?`+lock, after, r.batchSize)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	var out []row
	for rs.Next() {
		var x row
		if err := rs.Scan(&x.key, &x.id, &x.subject, &x.payload, &x.createdAt, &x.traceparent, &x.attempts); err != nil {
			return nil, err
		}
		out = append(out, x)
	}
	return out, rs.Err()
}

// publish sends rows as one batch and sorts them by outcome. A batch that
// failed whole as unavailable (the broker is down) is an error: nothing is
// counted against its rows.
func (r *Relay) publish(ctx context.Context, rows []row) (batchResult, *outcome, error) {
	res := batchResult{read: len(rows)}
	if len(rows) == 0 {
		return res, nil, nil
	}
	res.last = rows[len(rows)-1].key
	msgs := make([]bus.Message, len(rows))
	for i, x := range rows {
		msgs[i] = bus.Message{Subject: x.subject, ID: x.id, Data: []byte(x.payload),
			OccurredAt: sqldb.FromMillis(x.createdAt), Traceparent: x.traceparent}
	}
	var errList []error
	endSpans := r.startRelaySpans(ctx, msgs)
	defer func() { endSpans(errList) }()
	if err := r.fault(ctx, FaultBeforePublish); err != nil {
		return res, nil, err
	}
	if h := len(msgs) / 2; r.faults != nil && h > 0 {
		// Two halves, so that a crash test can stop the relay between them.
		errList = r.pub.PublishBatch(ctx, msgs[:h])
		if err := r.fault(ctx, FaultMidBatch); err != nil {
			return res, nil, err
		}
		errList = append(errList, r.pub.PublishBatch(ctx, msgs[h:])...)
	} else {
		errList = r.pub.PublishBatch(ctx, msgs)
	}
	if len(errList) != len(msgs) {
		return res, nil, errs.E("outbox.publish", fmt.Errorf("publisher answered %d results for %d messages", len(errList), len(msgs)))
	}
	out := &outcome{}
	down := true
	var firstErr error
	for _, err := range errList {
		if err == nil || !errs.Is(errs.Unavailable, err) {
			down = false
		}
		if err != nil && firstErr == nil {
			firstErr = err
		}
	}
	if down {
		return res, nil, errs.E("outbox.publish", errs.Unavailable, fmt.Errorf("%d events not published: %w", len(rows), firstErr))
	}
	if err := r.fault(ctx, FaultAfterPublish); err != nil {
		return res, nil, err
	}
	for i, err := range errList {
		x := rows[i]
		switch {
		case err == nil:
			out.published = append(out.published, x.key)
		case errs.Is(errs.Invalid, err) || x.attempts+1 >= r.maxAttempts:
			out.park = append(out.park, x)
			out.parkErr = append(out.parkErr, err)
		default:
			out.retry = append(out.retry, x)
			out.retryErr = append(out.retryErr, err)
		}
	}
	res.published = len(out.published)
	res.failed = len(out.retry)
	if len(out.retry) > 0 {
		res.firstErr = out.retryErr[0]
	}
	return res, out, nil
}

// record deletes the published rows (one statement), counts the failures of
// the rows kept and moves the parked ones to outbox_parked.
func (r *Relay) record(ctx context.Context, tx *sqldb.Tx, out *outcome) error {
	key := `rowid`
	if r.db.Dialect == sqldb.Postgres {
		key = `seq`
	}
	del := func(keys []int64) error {
		if len(keys) == 0 {
			return nil
		}
		args := make([]any, len(keys))
		for i, k := range keys {
			args[i] = k
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM outbox WHERE `+key+` IN (?`+strings.Repeat(`, ?`, len(keys)-1)+`)`, args...)
		return err
	}
	if err := del(out.published); err != nil {
		return err
	}
	for i, x := range out.retry {
		if _, err := tx.ExecContext(ctx, `UPDATE outbox SET attempts = attempts + 1, last_error = ? WHERE `+key+` = ?`,
			errText(out.retryErr[i]), x.key); err != nil {
			return err
		}
	}
	if len(out.park) == 0 {
		return nil
	}
	now := sqldb.Millis(r.clock.Now())
	keys := make([]int64, len(out.park))
	for i, x := range out.park {
		keys[i] = x.key
		if _, err := tx.ExecContext(ctx, `INSERT INTO outbox_parked
			(seq_id, subject, payload, created_at, traceparent, attempts, last_error, parked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (seq_id) DO UPDATE SET subject = excluded.subject, payload = excluded.payload,
				created_at = excluded.created_at, traceparent = excluded.traceparent, attempts = excluded.attempts,
				last_error = excluded.last_error, parked_at = excluded.parked_at`,
			x.id, x.subject, x.payload, x.createdAt, x.traceparent, x.attempts+1, errText(out.parkErr[i]), now); err != nil {
			return err
		}
	}
	return del(keys)
}

// errText is an error's message for last_error, bounded.
func errText(err error) string {
	if err == nil {
		return ""
	}
	s := err.Error()
	if len(s) > 1000 {
		s = strings.ToValidUTF8(s[:1000], "")
	}
	return s
}
