-- +goose Up
-- The payment ledger: one row per money movement of a payment, written in
-- the same transaction as the payments row's change it records. A payment
-- has at most one entry of each kind, so a repeated capture, void or refund
-- cannot be recorded twice. Rows sit on their payment's shard.
CREATE TABLE payment_ledger (
	id TEXT PRIMARY KEY,
	payment_id TEXT NOT NULL,
	order_id TEXT NOT NULL,
	kind TEXT NOT NULL CHECK (kind IN ('authorization', 'capture', 'void', 'refund', 'decline')),
	amount BIGINT NOT NULL CHECK (amount >= 0),
	currency TEXT NOT NULL,
	created_at BIGINT NOT NULL,
	shard INTEGER NOT NULL DEFAULT -1
);
CREATE UNIQUE INDEX payment_ledger_payment_kind ON payment_ledger (payment_id, kind);
CREATE INDEX payment_ledger_shard ON payment_ledger (shard);
-- Payments from before the ledger get the entries their status implies,
-- each of the payment's whole amount, with ids derived from the payment's.
-- Their shard is the payment's (-1 until the store's Open fills it in).
INSERT INTO payment_ledger (id, payment_id, order_id, kind, amount, currency, created_at, shard)
SELECT 'led_' || id || '_authorization', id, order_id, 'authorization', amount, currency, created_at, shard
FROM payments WHERE status IN ('authorized', 'captured', 'voided', 'refunded') AND amount > 0;
INSERT INTO payment_ledger (id, payment_id, order_id, kind, amount, currency, created_at, shard)
SELECT 'led_' || id || '_capture', id, order_id, 'capture', amount, currency, updated_at, shard
FROM payments WHERE status IN ('captured', 'refunded') AND amount > 0;
INSERT INTO payment_ledger (id, payment_id, order_id, kind, amount, currency, created_at, shard)
SELECT 'led_' || id || '_void', id, order_id, 'void', amount, currency, updated_at, shard
FROM payments WHERE status = 'voided' AND amount > 0;
INSERT INTO payment_ledger (id, payment_id, order_id, kind, amount, currency, created_at, shard)
SELECT 'led_' || id || '_refund', id, order_id, 'refund', amount, currency, updated_at, shard
FROM payments WHERE status = 'refunded' AND amount > 0;
INSERT INTO payment_ledger (id, payment_id, order_id, kind, amount, currency, created_at, shard)
SELECT 'led_' || id || '_decline', id, order_id, 'decline', amount, currency, created_at, shard
FROM payments WHERE status = 'declined';
