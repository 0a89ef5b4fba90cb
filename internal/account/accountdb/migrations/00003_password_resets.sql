-- +goose Up
-- Password reset links (account.Service.RequestPasswordReset): one row per
-- link sent, on the node of its account (shard = shard.ForUser(account_id)).
-- id is the random part the signed link carries; used_at is 0 until the link
-- is used (or voided by a later password change), then the Unix ms of that.
CREATE TABLE password_resets (
	id TEXT PRIMARY KEY,
	account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
	created_at BIGINT NOT NULL,
	expires_at BIGINT NOT NULL,
	used_at BIGINT NOT NULL DEFAULT 0,
	shard INTEGER NOT NULL
);
CREATE INDEX password_resets_account_id ON password_resets (account_id);
CREATE INDEX password_resets_expires_at ON password_resets (expires_at);
