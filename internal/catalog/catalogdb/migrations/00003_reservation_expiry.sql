-- +goose Up
-- A reservation now ends one of three ways: committed (the stock is sold),
-- released (put back by its owner), or expired (put back by the sweeper once
-- expires_at has passed). Reservations made before this migration have no
-- expiry, and those never released are sold because the checkout that made them
-- never released a successful one.
ALTER TABLE reservations ADD COLUMN expires_at BIGINT;
ALTER TABLE reservations ADD COLUMN committed_at BIGINT;
UPDATE reservations SET committed_at = created_at WHERE released_at IS NULL;
CREATE INDEX reservations_live_expiry ON reservations (expires_at) WHERE released_at IS NULL AND committed_at IS NULL;
CREATE INDEX reservation_lines_product ON reservation_lines (product_id);
