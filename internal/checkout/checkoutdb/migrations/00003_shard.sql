-- +goose Up
-- Every attempt carries its logical shard, shard.ForUser(user_id). Rows
-- written before this migration hold -1 until the store's Open fills it in.
ALTER TABLE checkout_attempts ADD COLUMN shard INTEGER NOT NULL DEFAULT -1;
CREATE INDEX checkout_attempts_shard ON checkout_attempts (shard);
