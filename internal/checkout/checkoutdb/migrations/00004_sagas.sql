-- +goose Up
-- The saga log replaces the attempts table: one row per checkout, its
-- state, step, lease and data, and its history in saga_steps. Attempts of
-- the old checkout are not carried over (their keys would expire within a
-- day anyway).
DROP TABLE checkout_attempts;
CREATE TABLE sagas (
	id TEXT PRIMARY KEY,
	user_id TEXT NOT NULL,
	idem_key TEXT NOT NULL,
	request_hash TEXT NOT NULL,
	state TEXT NOT NULL,
	step INTEGER NOT NULL,
	attempts INTEGER NOT NULL,
	next_at BIGINT NOT NULL,
	deadline BIGINT NOT NULL,
	epoch BIGINT NOT NULL,
	owner TEXT NOT NULL,
	lease_until BIGINT NOT NULL,
	version BIGINT NOT NULL,
	data TEXT NOT NULL,
	error_status INTEGER NOT NULL,
	error_detail TEXT NOT NULL,
	retryable INTEGER NOT NULL,
	callback_url TEXT NOT NULL,
	callback_state TEXT NOT NULL,
	callback_attempts INTEGER NOT NULL,
	callback_next_at BIGINT NOT NULL,
	callback_error TEXT NOT NULL,
	created_at BIGINT NOT NULL,
	updated_at BIGINT NOT NULL,
	expires_at BIGINT NOT NULL,
	shard INTEGER NOT NULL,
	UNIQUE (user_id, idem_key)
);
-- Recovery looks for unfinished sagas whose lease ran out.
CREATE INDEX sagas_live ON sagas (lease_until) WHERE state IN ('running', 'compensating');
CREATE INDEX sagas_callbacks ON sagas (callback_next_at) WHERE callback_state = 'pending';
CREATE INDEX sagas_expiry ON sagas (expires_at) WHERE state IN ('confirmed', 'cancelled');
CREATE INDEX sagas_shard ON sagas (shard);
CREATE TABLE saga_steps (
	saga_id TEXT NOT NULL,
	seq BIGINT NOT NULL,
	step TEXT NOT NULL,
	outcome TEXT NOT NULL,
	detail TEXT NOT NULL,
	epoch BIGINT NOT NULL,
	at BIGINT NOT NULL,
	shard INTEGER NOT NULL,
	PRIMARY KEY (saga_id, seq)
);
