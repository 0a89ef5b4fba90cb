-- +goose Up
-- A shipment cancelled before it was created (CancelForOrder of an order
-- with no shipment yet) is recorded as a tombstone row holding the order's
-- id, so that the unique order_id refuses a later (or concurrent) create.
-- Tombstones are never shown as shipments.
ALTER TABLE shipments ADD COLUMN tombstone INTEGER NOT NULL DEFAULT 0;
