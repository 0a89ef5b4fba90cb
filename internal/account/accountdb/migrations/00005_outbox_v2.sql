-- +goose Up
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
