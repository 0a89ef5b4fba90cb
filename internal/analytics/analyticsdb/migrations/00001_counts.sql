-- +goose Up
-- Hourly counts: hour is the start of the hour, Unix milliseconds (UTC).
CREATE TABLE product_views (
	product_id TEXT NOT NULL,
	hour BIGINT NOT NULL,
	views BIGINT NOT NULL,
	PRIMARY KEY (product_id, hour)
);
CREATE INDEX product_views_hour ON product_views (hour);
CREATE TABLE search_counts (
	query TEXT NOT NULL,
	hour BIGINT NOT NULL,
	searches BIGINT NOT NULL,
	no_result BIGINT NOT NULL,
	PRIMARY KEY (query, hour)
);
CREATE INDEX search_counts_hour ON search_counts (hour);
