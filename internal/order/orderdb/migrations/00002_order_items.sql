-- +goose Up
CREATE TABLE order_items (
	order_id TEXT NOT NULL REFERENCES orders (id),
	line_no INTEGER NOT NULL,
	product_id TEXT NOT NULL,
	name TEXT NOT NULL,
	quantity INTEGER NOT NULL,
	unit_price BIGINT NOT NULL,
	line_total BIGINT NOT NULL,
	PRIMARY KEY (order_id, line_no)
);
