-- +goose Up
ALTER TABLE checkout_attempts ADD COLUMN retryable INTEGER NOT NULL DEFAULT 0;
