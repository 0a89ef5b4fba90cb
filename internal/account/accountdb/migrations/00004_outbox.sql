-- +goose Up
CREATE TABLE IF NOT EXISTS outbox (
	seq_id TEXT PRIMARY KEY,
	subject TEXT NOT NULL,
	payload TEXT NOT NULL,
	created_at BIGINT NOT NULL
);
