-- +goose Up
-- Products change after they are listed (UpdateProduct). version counts the
-- changes (1 when listed), for If-Match and for telling a cached copy older
-- than a change. updated_at is when the last change was made (NULL before one).
ALTER TABLE products ADD COLUMN version BIGINT NOT NULL DEFAULT 1;
ALTER TABLE products ADD COLUMN updated_at BIGINT;
