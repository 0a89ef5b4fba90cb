-- +goose Up
CREATE TABLE checkout_attempts (
	user_id TEXT NOT NULL,
	idem_key TEXT NOT NULL,
	order_id TEXT NOT NULL,
	request_hash TEXT NOT NULL,
	state TEXT NOT NULL,
	error_status INTEGER NOT NULL,
	error_detail TEXT NOT NULL,
	created_at BIGINT NOT NULL,
	updated_at BIGINT NOT NULL,
	PRIMARY KEY (user_id, idem_key)
);
