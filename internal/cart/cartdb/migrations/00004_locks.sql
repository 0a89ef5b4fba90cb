-- +goose Up
-- When each cart was last updated, for the removal of abandoned anonymous
-- carts. Rows written before this migration (or by an older instance) hold 0
-- until the sweep stamps them with the time it first sees them.
ALTER TABLE carts ADD COLUMN updated_at BIGINT NOT NULL DEFAULT 0;
CREATE INDEX carts_updated_at ON carts (updated_at);
-- One row per checkout that locked a cart (or was ended before it could):
-- state 'held' while the checkout owns the cart's snapshot (at most one per
-- cart), then 'completed' or 'released', kept so that a late call of an
-- ended checkout is refused, until the sweep removes it. snapshot is the
-- cart's lines when locked, as JSON; version the cart's revision then;
-- locked_at 0 for a checkout released before it locked; ended_at 0 while
-- held. The row lives on its cart's node and carries its shard.
CREATE TABLE cart_locks (
	owner TEXT NOT NULL,
	lock_id TEXT NOT NULL,
	state TEXT NOT NULL CHECK (state IN ('held', 'completed', 'released')),
	snapshot TEXT NOT NULL,
	version BIGINT NOT NULL,
	locked_at BIGINT NOT NULL,
	ended_at BIGINT NOT NULL,
	shard INTEGER NOT NULL,
	PRIMARY KEY (owner, lock_id)
);
CREATE UNIQUE INDEX cart_locks_one_held ON cart_locks (owner) WHERE state = 'held';
CREATE INDEX cart_locks_ended_at ON cart_locks (ended_at);
CREATE INDEX cart_locks_locked_at ON cart_locks (locked_at);
CREATE INDEX cart_locks_shard ON cart_locks (shard);
