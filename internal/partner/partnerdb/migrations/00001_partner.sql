-- +goose Up
-- Times are Unix milliseconds (UTC); 0 means none.
-- A partner's API key is kept as its SHA-256 (hex), never in clear; the
-- webhook secret is kept in clear, since every webhook is signed with it.
CREATE TABLE partners (
	id TEXT PRIMARY KEY,
	name TEXT NOT NULL,
	key_hash TEXT NOT NULL UNIQUE,
	webhook_url TEXT NOT NULL DEFAULT '',
	webhook_secret TEXT NOT NULL DEFAULT '',
	created_at BIGINT NOT NULL
);
-- A partner's products: id is the partner's handle, product_id the
-- catalog's id once listed (NULL before; unique, so a catalog product has
-- one owner).
CREATE TABLE partner_products (
	id TEXT PRIMARY KEY,
	partner_id TEXT NOT NULL REFERENCES partners (id),
	product_id TEXT,
	status TEXT NOT NULL,
	name TEXT NOT NULL,
	description TEXT NOT NULL,
	category TEXT NOT NULL,
	price BIGINT NOT NULL,
	currency TEXT NOT NULL,
	stock BIGINT NOT NULL,
	thumbnails TEXT NOT NULL DEFAULT '{}',
	listing_since BIGINT NOT NULL DEFAULT 0,
	created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX partner_products_product ON partner_products (product_id);
CREATE INDEX partner_products_partner ON partner_products (partner_id, created_at);
CREATE INDEX partner_products_status ON partner_products (status, listing_since);
-- Sales of partners' products, one row per order and product.
CREATE TABLE sales (
	order_id TEXT NOT NULL,
	product_id TEXT NOT NULL,
	partner_id TEXT NOT NULL,
	listing_id TEXT NOT NULL,
	quantity BIGINT NOT NULL,
	amount BIGINT NOT NULL,
	currency TEXT NOT NULL,
	sold_at BIGINT NOT NULL,
	PRIMARY KEY (order_id, product_id)
);
CREATE INDEX sales_partner ON sales (partner_id, sold_at);
-- The delivery log: one row per webhook, its attempts summed up.
CREATE TABLE webhook_deliveries (
	id TEXT PRIMARY KEY,
	partner_id TEXT NOT NULL,
	event_type TEXT NOT NULL,
	payload TEXT NOT NULL,
	status TEXT NOT NULL,
	attempts INTEGER NOT NULL DEFAULT 0,
	last_status_code INTEGER NOT NULL DEFAULT 0,
	last_error TEXT NOT NULL DEFAULT '',
	last_duration_ms BIGINT NOT NULL DEFAULT 0,
	next_attempt_at BIGINT NOT NULL DEFAULT 0,
	created_at BIGINT NOT NULL,
	updated_at BIGINT NOT NULL
);
CREATE INDEX webhook_deliveries_partner ON webhook_deliveries (partner_id, created_at);
