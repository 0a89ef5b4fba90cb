-- +goose Up
CREATE TABLE categories (
	id TEXT PRIMARY KEY,
	name TEXT NOT NULL,
	position INTEGER NOT NULL
);
CREATE TABLE products (
	id TEXT PRIMARY KEY,
	name TEXT NOT NULL,
	description TEXT NOT NULL,
	category TEXT NOT NULL REFERENCES categories (id),
	price_amount BIGINT NOT NULL,
	price_currency TEXT NOT NULL,
	stock INTEGER NOT NULL CHECK (stock >= 0),
	image_key TEXT NOT NULL,
	thumbnails TEXT NOT NULL DEFAULT '{}',
	created_at BIGINT NOT NULL
);
CREATE INDEX products_by_category ON products (category, id);
CREATE TABLE reservations (
	id TEXT PRIMARY KEY,
	created_at BIGINT NOT NULL,
	released_at BIGINT
);
CREATE TABLE reservation_lines (
	reservation_id TEXT NOT NULL REFERENCES reservations (id),
	product_id TEXT NOT NULL,
	quantity INTEGER NOT NULL,
	PRIMARY KEY (reservation_id, product_id)
);
