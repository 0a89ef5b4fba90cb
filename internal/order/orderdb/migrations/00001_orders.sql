-- +goose Up
CREATE TABLE orders (
	id TEXT PRIMARY KEY,
	user_id TEXT NOT NULL,
	email TEXT NOT NULL,
	status TEXT NOT NULL,
	currency TEXT NOT NULL,
	subtotal BIGINT NOT NULL,
	shipping_cost BIGINT NOT NULL,
	total BIGINT NOT NULL,
	ship_name TEXT NOT NULL,
	ship_line1 TEXT NOT NULL,
	ship_city TEXT NOT NULL,
	ship_postal_code TEXT NOT NULL,
	ship_country TEXT NOT NULL,
	payment_id TEXT NOT NULL,
	payment_status TEXT NOT NULL,
	shipment_id TEXT NOT NULL,
	shipment_status TEXT NOT NULL,
	tracking_number TEXT NOT NULL,
	cancel_reason TEXT NOT NULL,
	created_at BIGINT NOT NULL,
	updated_at BIGINT NOT NULL
);
CREATE INDEX orders_user_created ON orders (user_id, created_at, id);
