-- +goose Up
-- The thumbnail worker marks a product whose original it can never make
-- thumbnails of (not an image, too large): thumbnails_error is the reason
-- ('' when none), thumbnails_failed_at when it was recorded.
ALTER TABLE products ADD COLUMN thumbnails_error TEXT NOT NULL DEFAULT '';
ALTER TABLE products ADD COLUMN thumbnails_failed_at BIGINT;
