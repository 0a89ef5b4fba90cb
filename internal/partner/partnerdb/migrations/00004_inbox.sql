-- +goose Up
CREATE TABLE inbox (
	consumer TEXT NOT NULL,
	message_id TEXT NOT NULL,
	applied_at BIGINT NOT NULL,
	PRIMARY KEY (consumer, message_id)
);
CREATE INDEX inbox_applied_at ON inbox (applied_at);
