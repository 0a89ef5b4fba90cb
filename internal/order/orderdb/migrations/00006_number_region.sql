-- +goose Up
-- The order number the customer knows the order by (order.NewNumber: it
-- carries the shard of the order's user, so one unique index per node makes
-- it unique everywhere), and the region (state, province) of the shipping
-- address. Orders written before this migration hold '' until the store's
-- Open gives each a number; tombstones never get one.
ALTER TABLE orders ADD COLUMN number TEXT NOT NULL DEFAULT '';
ALTER TABLE orders ADD COLUMN ship_region TEXT NOT NULL DEFAULT '';
CREATE UNIQUE INDEX orders_number ON orders (number) WHERE number <> '';
-- The orders still without a number (older orders until Open numbers them,
-- and tombstones): Open looks for them on every start, through this index
-- rather than by reading every order.
CREATE INDEX orders_unnumbered ON orders (id) WHERE number = '';
