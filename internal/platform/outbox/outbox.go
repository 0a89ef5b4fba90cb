// Package outbox makes "change the database and publish an event" atomic: the
// event is written to an outbox table in the same transaction as the change,
// and a relay publishes it afterwards, retrying until the broker accepts it.
// Each message keeps its id (Nats-Msg-Id), so the broker's de-duplication
// turns the relay's at-least-once into exactly-once delivery into the stream.
//
// Rows are published in the order the database assigned them (a sequence on
// PostgreSQL, the rowid on SQLite), in batches: on PostgreSQL each batch is
// claimed with SELECT ... FOR UPDATE SKIP LOCKED inside a transaction, so
// every instance of a service may run a relay on the shared database and
// each row is published by one of them. A batch is published asynchronously
// and its rows deleted in one statement once the broker has acknowledged
// them. A row the broker refuses is retried on later passes without holding
// back the rows behind it, and set aside (parked) after MaxAttempts failures
// or at once when it can never be published; Parked lists what was set
// aside and Unpark puts a row back.
package outbox

import (
	"context"
	"encoding/json"
	"time"

	"github.com/globomantics/globomantics/internal/platform/bus"
	"github.com/globomantics/globomantics/internal/platform/errs"
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

// MigrationV2 is the goose migration, applied after Migration, that the
// relay of this package needs: the publishing order, the trace context, the
// failure count and the table of parked rows. A store keeps a byte-for-byte
// copy of it after its copy of Migration, as for Migration. Rows already in
// the outbox keep their place: they are numbered by created_at, before any
// row written afterwards.
//
// The SQL is the same on SQLite and PostgreSQL. seq is a BIGSERIAL that
// PostgreSQL fills from a sequence. SQLite has no sequences and keeps it
// NULL: there the relay orders by the rowid, which its single writer assigns
// in commit order. ALTER TABLE ... ADD COLUMN has no IF NOT EXISTS on SQLite,
// so this text fails on a database where another store already applied it:
// a store opens its migrations through SharedMigrations, which serves in its
// place what that database needs, so two stores with an outbox can share one.
const MigrationV2 = `-- +goose Up
-- Outbox v2 (outbox.MigrationV2): rows published in the order the database
-- assigned (seq on PostgreSQL, the rowid on SQLite), the W3C trace context of
-- the change, failed attempts, and rows set aside after too many failures.
-- created_at stays the time of the change (the event's occurred time).
ALTER TABLE outbox ADD COLUMN seq BIGSERIAL;
ALTER TABLE outbox ADD COLUMN traceparent TEXT NOT NULL DEFAULT '';
ALTER TABLE outbox ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN last_error TEXT NOT NULL DEFAULT '';
UPDATE outbox SET seq = r.n
	FROM (SELECT seq_id, ROW_NUMBER() OVER (ORDER BY created_at, seq_id) AS n FROM outbox) AS r
	WHERE outbox.seq_id = r.seq_id;
CREATE UNIQUE INDEX IF NOT EXISTS outbox_by_seq ON outbox (seq);
CREATE TABLE IF NOT EXISTS outbox_parked (
	seq_id TEXT PRIMARY KEY,
	subject TEXT NOT NULL,
	payload TEXT NOT NULL,
	created_at BIGINT NOT NULL,
	traceparent TEXT NOT NULL,
	attempts INTEGER NOT NULL,
	last_error TEXT NOT NULL,
	parked_at BIGINT NOT NULL
);
`

// Add records an event to publish once tx commits. id is the event's unique
// id (its de-duplication key); now is when the change happened, the event's
// time as consumers see it. The trace context of ctx (its OpenTelemetry
// span, else bus.WithTraceparent's), if any, is stored with the row and
// travels with the event. It fails if data cannot be marshalled to JSON.
func Add(ctx context.Context, tx *sqldb.Tx, subject, id string, data any, now time.Time) error {
	b, err := json.Marshal(data)
	if err != nil {
		return errs.E("outbox.Add", errs.Invalid, err)
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO outbox (seq_id, subject, payload, created_at, traceparent) VALUES (?, ?, ?, ?, ?)`,
		id, subject, string(b), sqldb.Millis(now), bus.TraceparentOf(ctx))
	return err
}

// ParkedEvent is an event the relay set aside.
type ParkedEvent struct {
	ID          string
	Subject     string
	Payload     json.RawMessage
	OccurredAt  time.Time
	Traceparent string
	Attempts    int       // publishes that failed
	LastError   string    // the last failure
	ParkedAt    time.Time // when it was set aside
}

// Parked lists up to limit events set aside in db's outbox, oldest parked
// first (all when limit <= 0).
func Parked(ctx context.Context, db *sqldb.DB, limit int) ([]ParkedEvent, error) {
	const op = "outbox.Parked"
	q := `SELECT seq_id, subject, payload, created_at, traceparent, attempts, last_error, parked_at
		FROM outbox_parked ORDER BY parked_at, seq_id`
	var args []any
	if limit > 0 {
		q += ` LIMIT ?`
		args = append(args, limit)
	}
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, errs.E(op, err)
	}
	defer rows.Close()
	var out []ParkedEvent
	for rows.Next() {
		var (
			p              ParkedEvent
			payload        string
			created, parkd int64
		)
		if err := rows.Scan(&p.ID, &p.Subject, &payload, &created, &p.Traceparent, &p.Attempts, &p.LastError, &parkd); err != nil {
			return nil, errs.E(op, err)
		}
		p.Payload = json.RawMessage(payload)
		p.OccurredAt, p.ParkedAt = sqldb.FromMillis(created), sqldb.FromMillis(parkd)
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, errs.E(op, err)
	}
	return out, nil
}

// Unpark puts the parked event id back into the outbox with no failures
// counted, behind every row pending, for the relay to publish again (after
// the cause was fixed). errs.NotFound if no such event is parked.
func Unpark(ctx context.Context, db *sqldb.DB, id string) error {
	const op = "outbox.Unpark"
	err := db.InTx(ctx, func(tx *sqldb.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO outbox (seq_id, subject, payload, created_at, traceparent)
			SELECT seq_id, subject, payload, created_at, traceparent FROM outbox_parked WHERE seq_id = ?`, id)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return errs.E(op, errs.NotFound, errs.Msg("no parked event %q", id))
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM outbox_parked WHERE seq_id = ?`, id)
		return err
	})
	if err != nil && !errs.Is(errs.NotFound, err) {
		return errs.E(op, err)
	}
	return err
}
