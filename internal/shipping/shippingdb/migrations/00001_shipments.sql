-- +goose Up
CREATE TABLE shipments (
	id TEXT PRIMARY KEY,
	order_id TEXT NOT NULL UNIQUE,
	status TEXT NOT NULL,
	tracking_number TEXT NOT NULL UNIQUE,
	cost BIGINT NOT NULL,
	currency TEXT NOT NULL,
	name TEXT NOT NULL,
	line1 TEXT NOT NULL,
	city TEXT NOT NULL,
	postal_code TEXT NOT NULL,
	country TEXT NOT NULL,
	created_at BIGINT NOT NULL
);
