// Package outbox makes "change the database and publish an event" atomic: the
// event is written to an outbox table in the same transaction as the change,
// and a relay publishes it afterwards, retrying until the broker accepts it.
// Each message keeps its id, so the broker's de-duplication turns the relay's
// at-least-once into exactly-once delivery into the stream.
package outbox

import (
	"context"
	"encoding/json"
	"log/slog"
	"time"

	"github.com/globomantics/globomantics/internal/platform/bus"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
)

// Migration is the goose migration file that creates the outbox table. A
// store that uses an outbox keeps a byte-for-byte copy of it among its own
// migration files (goose reads migrations from files, numbered per store);
// the store's tests check that the copy equals Migration.
const Migration = `-- +goose Up
CREATE TABLE IF NOT EXISTS outbox (
	seq_id TEXT PRIMARY KEY,
	subject TEXT NOT NULL,
	payload TEXT NOT NULL,
	created_at BIGINT NOT NULL
);
`

// Add records an event to publish once tx commits. id is the event's unique
// id (its de-duplication key).
func Add(ctx context.Context, tx *sqldb.Tx, subject, id string, data any, now time.Time) error {
	b, err := json.Marshal(data)
	if err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO outbox (seq_id, subject, payload, created_at) VALUES (?, ?, ?, ?)`,
		id, subject, string(b), sqldb.Millis(now))
	return err
}

// Relay publishes outbox rows of one database and deletes them once the broker
// has accepted them.
type Relay struct {
	DB        *sqldb.DB
	Publisher bus.Publisher
	Log       *slog.Logger
	kick      chan struct{}
}

// NewRelay returns a relay for db.
func NewRelay(db *sqldb.DB, pub bus.Publisher, log *slog.Logger) *Relay {
	return &Relay{DB: db, Publisher: pub, Log: log, kick: make(chan struct{}, 1)}
}

// Kick wakes the relay to publish now rather than at its next poll.
func (r *Relay) Kick() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// Run publishes pending rows until ctx ends, polling every second and
// whenever kicked.
func (r *Relay) Run(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		if _, err := r.Flush(ctx); err != nil && ctx.Err() == nil {
			r.Log.Warn("outbox relay", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-r.kick:
		}
	}
}

// batchSize is how many rows Flush reads at a time.
const batchSize = 100

// Flush publishes every pending row once, oldest first, and reports how many
// it published. It stops at the first publish error.
func (r *Relay) Flush(ctx context.Context) (int, error) {
	total := 0
	for {
		n, full, err := r.flushBatch(ctx)
		total += n
		if err != nil || !full {
			return total, err
		}
	}
}

// flushBatch publishes up to batchSize rows; full reports whether it read a
// whole batch, so that more rows may be pending.
func (r *Relay) flushBatch(ctx context.Context) (n int, full bool, err error) {
	type row struct{ id, subject, payload string }
	rows, err := r.DB.QueryContext(ctx, `SELECT seq_id, subject, payload FROM outbox ORDER BY created_at, seq_id LIMIT ?`, batchSize)
	if err != nil {
		return 0, false, err
	}
	var pending []row
	for rows.Next() {
		var x row
		if err := rows.Scan(&x.id, &x.subject, &x.payload); err != nil {
			rows.Close()
			return 0, false, err
		}
		pending = append(pending, x)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, false, err
	}
	for _, x := range pending {
		if err := r.Publisher.Publish(ctx, x.subject, x.id, json.RawMessage(x.payload)); err != nil {
			return n, false, err
		}
		if _, err := r.DB.ExecContext(ctx, `DELETE FROM outbox WHERE seq_id = ?`, x.id); err != nil {
			return n, false, err
		}
		n++
	}
	return n, len(pending) == batchSize, nil
}
