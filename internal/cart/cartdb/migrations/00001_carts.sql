-- +goose Up
CREATE TABLE carts (
	owner TEXT PRIMARY KEY,
	version BIGINT NOT NULL
);
CREATE TABLE cart_lines (
	owner TEXT NOT NULL REFERENCES carts (owner) ON DELETE CASCADE,
	product_id TEXT NOT NULL,
	name TEXT NOT NULL,
	quantity INTEGER NOT NULL CHECK (quantity > 0),
	unit_price_amount BIGINT NOT NULL,
	currency TEXT NOT NULL,
	added_at BIGINT NOT NULL,
	PRIMARY KEY (owner, product_id)
);
