-- +goose Up
-- Every row carries its logical shard: shard.ForUser(<id>) for the owner
-- "user:<id>", shard.ForKey(owner) for any other owner. Rows written before
-- this migration hold -1 until the store's Open fills it in.
ALTER TABLE carts ADD COLUMN shard INTEGER NOT NULL DEFAULT -1;
ALTER TABLE cart_lines ADD COLUMN shard INTEGER NOT NULL DEFAULT -1;
CREATE INDEX carts_shard ON carts (shard);
CREATE INDEX cart_lines_shard ON cart_lines (shard);
-- A pair update of two carts on different nodes commits the second cart
-- (to_owner) first, with a row here saying which lines of from_owner it
-- absorbed (from_digest) and what from_owner must become (from_after); if
-- the process stops before from_owner is written, the next pair update of
-- the same carts finds this row and finishes the first instead of applying
-- it twice. The row lives on to_owner's node and carries to_owner's shard.
CREATE TABLE cart_merges (
	to_owner TEXT NOT NULL,
	from_owner TEXT NOT NULL,
	from_digest TEXT NOT NULL,
	from_after TEXT NOT NULL,
	created_at BIGINT NOT NULL,
	shard INTEGER NOT NULL,
	PRIMARY KEY (to_owner, from_owner)
);
CREATE INDEX cart_merges_shard ON cart_merges (shard);
