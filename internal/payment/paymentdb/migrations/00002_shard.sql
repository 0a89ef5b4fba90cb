-- +goose Up
-- Every payment carries its logical shard: the shard its order's id carries
-- (shard.OfIDOrKey), so a payment sits with its order. Rows written before
-- this migration hold -1 until the store's Open fills it in.
ALTER TABLE payments ADD COLUMN shard INTEGER NOT NULL DEFAULT -1;
CREATE INDEX payments_shard ON payments (shard);
