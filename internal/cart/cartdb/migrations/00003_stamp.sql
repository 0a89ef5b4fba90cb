-- +goose Up
-- Every locked update of a cart gives it a new random stamp. A pair update
-- across nodes records the stamp of the cart it takes lines from together
-- with their digest (cart_merges.from_digest), so that its record can only
-- be taken for an unfinished merge while that cart has not been written
-- since: the same lines reached again later are another state.
ALTER TABLE carts ADD COLUMN stamp TEXT NOT NULL DEFAULT '';
