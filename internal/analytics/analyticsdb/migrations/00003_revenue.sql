-- +goose Up
-- Revenue per hour: the payments captured (PaymentCaptured events) in each
-- hour, per currency, added once per event through the inbox.
CREATE TABLE captured_revenue (
	hour BIGINT NOT NULL,
	currency TEXT NOT NULL,
	amount BIGINT NOT NULL,
	payments BIGINT NOT NULL,
	PRIMARY KEY (hour, currency)
);
