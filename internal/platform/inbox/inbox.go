// Package inbox makes a bus consumer idempotent: the consumer records each
// message id it applies in the same transaction as the message's effect, so
// a redelivered message (the broker delivers at least once) changes nothing
// the second time.
//
// A store that uses it adds Migration to its own goose migrations (the table
// lives in the store's database, next to the data the effect changes) and
// calls Apply first in the transaction that applies the message:
//
//	err := db.InTx(ctx, func(tx *sqldb.Tx) error {
//		fresh, err := inbox.Apply(ctx, tx, "analytics", ev.ID, now)
//		if err != nil || !fresh {
//			return err // already applied: commit nothing new
//		}
//		return applyEffect(ctx, tx, ev)
//	})
package inbox

import (
	"context"
	"time"

	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
)

// Migration is the goose migration body that creates the inbox table; put it
// in a migration file of the store that uses the inbox (the same on SQLite
// and PostgreSQL). A consumer's message id is applied at most once: the pair
// is the primary key.
const Migration = `-- +goose Up
CREATE TABLE inbox (
	consumer TEXT NOT NULL,
	message_id TEXT NOT NULL,
	applied_at BIGINT NOT NULL,
	PRIMARY KEY (consumer, message_id)
);
CREATE INDEX inbox_applied_at ON inbox (applied_at);
`

// Apply records that consumer applies message msgID at now, inside tx. It
// reports fresh = true when the message was not applied before (the caller
// then applies its effect in the same transaction) and false when it was (the
// caller must change nothing). Concurrent Applies of one id in two
// transactions on PostgreSQL wait for each other: one is fresh, the other
// sees the committed row. Errors are of kind Invalid for an empty consumer or
// id, otherwise the database's.
func Apply(ctx context.Context, tx *sqldb.Tx, consumer, msgID string, now time.Time) (fresh bool, err error) {
	const op = "inbox.Apply"
	if consumer == "" || msgID == "" {
		return false, errs.E(op, errs.Invalid, errs.Msg("consumer and message id are required"))
	}
	res, err := tx.ExecContext(ctx, `INSERT INTO inbox (consumer, message_id, applied_at) VALUES (?, ?, ?)
		ON CONFLICT (consumer, message_id) DO NOTHING`, consumer, msgID, sqldb.Millis(now))
	if err != nil {
		return false, errs.E(op, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, errs.E(op, err)
	}
	return n == 1, nil
}

// Forget deletes the records of messages applied before cutoff, in db or a
// transaction, and returns how many it deleted. Call it only for ids the
// broker can no longer redeliver (older than the stream's retention), or a
// redelivery of one would be applied again.
func Forget(ctx context.Context, db sqldb.Querier, cutoff time.Time) (int64, error) {
	res, err := db.ExecContext(ctx, `DELETE FROM inbox WHERE applied_at < ?`, sqldb.Millis(cutoff))
	if err != nil {
		return 0, errs.E("inbox.Forget", err)
	}
	return res.RowsAffected()
}
