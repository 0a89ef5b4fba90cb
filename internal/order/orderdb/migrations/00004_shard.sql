-- +goose Up
-- Every row carries its logical shard (shard.ForUser of the order's user),
-- so that a range of shards can be copied, filtered and verified when it
-- moves between nodes. Rows written before this migration hold -1 until the
-- store's Open fills it in.
ALTER TABLE orders ADD COLUMN shard INTEGER NOT NULL DEFAULT -1;
ALTER TABLE order_items ADD COLUMN shard INTEGER NOT NULL DEFAULT -1;
CREATE INDEX orders_shard ON orders (shard);
CREATE INDEX order_items_shard ON order_items (shard);
-- The operators' list of every order in a time range seeks on this index.
CREATE INDEX orders_created ON orders (created_at, id);
