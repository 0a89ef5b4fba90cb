-- +goose Up
-- The region (state, province) of the delivery address; '' for shipments
-- created before it existed, for tombstones, and where a country has none.
ALTER TABLE shipments ADD COLUMN region TEXT NOT NULL DEFAULT '';
