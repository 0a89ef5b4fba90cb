-- +goose Up
-- Every account and session carries its logical shard, shard.ForUser of
-- the account id. Rows written before this migration hold -1 until the
-- store's Open fills it in (writing the e-mail directory row of each
-- account first).
ALTER TABLE accounts ADD COLUMN shard INTEGER NOT NULL DEFAULT -1;
ALTER TABLE sessions ADD COLUMN shard INTEGER NOT NULL DEFAULT -1;
CREATE INDEX accounts_shard ON accounts (shard);
CREATE INDEX sessions_shard ON sessions (shard);
-- The e-mail directory: which account (and shard) an e-mail belongs to,
-- kept on the node of shard.ForKey(email), which is this row's shard. It
-- makes an e-mail unique across every node and finds the account at login.
CREATE TABLE account_emails (
	email TEXT PRIMARY KEY,
	account_id TEXT NOT NULL,
	account_shard INTEGER NOT NULL,
	created_at BIGINT NOT NULL,
	shard INTEGER NOT NULL
);
CREATE INDEX account_emails_shard ON account_emails (shard);
