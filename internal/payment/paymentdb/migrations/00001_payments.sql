-- +goose Up
CREATE TABLE payments (
	id TEXT PRIMARY KEY,
	order_id TEXT NOT NULL UNIQUE,
	amount BIGINT NOT NULL,
	currency TEXT NOT NULL,
	status TEXT NOT NULL,
	card_last4 TEXT NOT NULL,
	created_at BIGINT NOT NULL,
	updated_at BIGINT NOT NULL
);
