// Package analyticsdb is the SQL store of the analytics service: hourly
// counts of product views and of searches per normalised query, the
// revenue captured per hour, and the
// inbox of applied message ids (summaries, and the older single events) (internal/platform/inbox) that makes counting
// idempotent. SQLite and PostgreSQL.
package analyticsdb

import (
	"context"
	"embed"
	"io/fs"
	"time"

	"github.com/globomantics/globomantics/internal/analytics"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/inbox"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
)

// migrations (goose SQL files) are applied in order and never edited once
// released. 00002_inbox.sql is inbox.Migration (a test keeps them equal).
//
//go:embed migrations/*.sql
var migrations embed.FS

// Migrations are the store's goose migrations, for tests and tools.
func Migrations() fs.FS {
	dir, _ := fs.Sub(migrations, "migrations") // the directory is embedded
	return dir
}

// Store keeps the analytics counts in a SQL database.
type Store struct {
	db *sqldb.DB
}

var _ analytics.Store = (*Store)(nil)

// Open returns the store over db after applying its migrations.
func Open(ctx context.Context, db *sqldb.DB) (*Store, error) {
	if err := db.Migrate(ctx, "analytics", Migrations()); err != nil {
		return nil, err
	}
	return &Store{db: db}, nil
}

func hourOf(t time.Time) int64 { return sqldb.Millis(t.UTC().Truncate(time.Hour)) }

// ApplyPageView counts ev in its hour unless msgID was applied before, in
// one transaction with the inbox record.
func (s *Store) ApplyPageView(ctx context.Context, msgID string, ev analytics.PageViewed, now time.Time) (bool, error) {
	return s.apply(ctx, "analyticsdb.ApplyPageView", analytics.ConsumerName, msgID, now, func(tx *sqldb.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO product_views (product_id, hour, views) VALUES (?, ?, 1)
			ON CONFLICT (product_id, hour) DO UPDATE SET views = product_views.views + 1`, ev.ProductID, hourOf(ev.ViewedAt))
		return err
	})
}

// ApplySearch counts ev (and, with no result, as a search with no result)
// in its hour unless msgID was applied before, in one transaction with the
// inbox record.
func (s *Store) ApplySearch(ctx context.Context, msgID string, ev analytics.SearchMade, now time.Time) (bool, error) {
	none := 0
	if ev.Results == 0 {
		none = 1
	}
	return s.apply(ctx, "analyticsdb.ApplySearch", analytics.ConsumerName, msgID, now, func(tx *sqldb.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO search_counts (query, hour, searches, no_result) VALUES (?, ?, 1, ?)
			ON CONFLICT (query, hour) DO UPDATE SET searches = search_counts.searches + 1, no_result = search_counts.no_result + ?`,
			ev.Query, hourOf(ev.SearchedAt), none, none)
		return err
	})
}

// ApplyPageViews adds the summary's counts to the hour of its window's
// start unless msgID was applied before, in one transaction with the inbox
// record.
func (s *Store) ApplyPageViews(ctx context.Context, msgID string, sum analytics.PageViewsCounted, now time.Time) (bool, error) {
	hour := hourOf(sum.WindowStart)
	return s.apply(ctx, "analyticsdb.ApplyPageViews", analytics.ConsumerName, msgID, now, func(tx *sqldb.Tx) error {
		for _, c := range sum.Counts {
			if _, err := tx.ExecContext(ctx, `INSERT INTO product_views (product_id, hour, views) VALUES (?, ?, ?)
				ON CONFLICT (product_id, hour) DO UPDATE SET views = product_views.views + ?`, c.ProductID, hour, c.Views, c.Views); err != nil {
				return err
			}
		}
		return nil
	})
}

// ApplySearches adds the summary's counts (searches, and searches with no
// result) to the hour of its window's start unless msgID was applied
// before, in one transaction with the inbox record. The queries must be
// normalised and distinct.
func (s *Store) ApplySearches(ctx context.Context, msgID string, sum analytics.SearchesCounted, now time.Time) (bool, error) {
	hour := hourOf(sum.WindowStart)
	return s.apply(ctx, "analyticsdb.ApplySearches", analytics.ConsumerName, msgID, now, func(tx *sqldb.Tx) error {
		for _, c := range sum.Counts {
			if _, err := tx.ExecContext(ctx, `INSERT INTO search_counts (query, hour, searches, no_result) VALUES (?, ?, ?, ?)
				ON CONFLICT (query, hour) DO UPDATE SET searches = search_counts.searches + ?, no_result = search_counts.no_result + ?`,
				c.Query, hour, c.Searches, c.NoResult, c.Searches, c.NoResult); err != nil {
				return err
			}
		}
		return nil
	})
}

// ApplyPaymentCaptured adds p's amount, and one payment, to the revenue of
// the hour of p.CapturedAt in p's currency unless msgID was applied before
// (under analytics.PaymentsConsumerName), in one transaction with the inbox
// record.
func (s *Store) ApplyPaymentCaptured(ctx context.Context, msgID string, p analytics.PaymentCaptured, now time.Time) (bool, error) {
	return s.apply(ctx, "analyticsdb.ApplyPaymentCaptured", analytics.PaymentsConsumerName, msgID, now, func(tx *sqldb.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO captured_revenue (hour, currency, amount, payments) VALUES (?, ?, ?, 1)
			ON CONFLICT (hour, currency) DO UPDATE SET amount = captured_revenue.amount + ?, payments = captured_revenue.payments + 1`,
			hourOf(p.CapturedAt), p.Amount.Currency, p.Amount.Amount, p.Amount.Amount)
		return err
	})
}

// apply runs count in one transaction with the inbox record of msgID for
// consumer, unless the inbox has it already.
func (s *Store) apply(ctx context.Context, op, consumer, msgID string, now time.Time, count func(*sqldb.Tx) error) (bool, error) {
	var fresh bool
	err := s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		var err error
		fresh, err = inbox.Apply(ctx, tx, consumer, msgID, now)
		if err != nil || !fresh {
			return err
		}
		return count(tx)
	})
	if err != nil {
		return false, errs.E(op, err)
	}
	return fresh, nil
}

// Popular lists the most viewed products in the hours from since on, most
// viewed first (ties by product id).
func (s *Store) Popular(ctx context.Context, since time.Time, limit int) ([]analytics.ProductViews, error) {
	const op = "analyticsdb.Popular"
	rows, err := s.db.QueryContext(ctx, `SELECT product_id, SUM(views) AS n FROM product_views WHERE hour >= ?
		GROUP BY product_id ORDER BY n DESC, product_id LIMIT ?`, hourOf(since), limit)
	if err != nil {
		return nil, errs.E(op, err)
	}
	defer rows.Close()
	var out []analytics.ProductViews
	for rows.Next() {
		var p analytics.ProductViews
		if err := rows.Scan(&p.ProductID, &p.Views); err != nil {
			return nil, errs.E(op, err)
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, errs.E(op, err)
	}
	return out, nil
}

// TopSearches lists the most frequent queries in the hours from since on
// (with noResultOnly, counting only the searches that found nothing), most
// frequent first (ties by query).
func (s *Store) TopSearches(ctx context.Context, since time.Time, limit int, noResultOnly bool) ([]analytics.QueryCount, error) {
	const op = "analyticsdb.TopSearches"
	col := "searches"
	if noResultOnly {
		col = "no_result"
	}
	rows, err := s.db.QueryContext(ctx, `SELECT query, SUM(`+col+`) AS n FROM search_counts WHERE hour >= ?
		GROUP BY query HAVING SUM(`+col+`) > 0 ORDER BY n DESC, query LIMIT ?`, hourOf(since), limit)
	if err != nil {
		return nil, errs.E(op, err)
	}
	defer rows.Close()
	var out []analytics.QueryCount
	for rows.Next() {
		var q analytics.QueryCount
		if err := rows.Scan(&q.Query, &q.Searches); err != nil {
			return nil, errs.E(op, err)
		}
		out = append(out, q)
	}
	if err := rows.Err(); err != nil {
		return nil, errs.E(op, err)
	}
	return out, nil
}

// Revenue lists the revenue of the hours from since on, newest first (then
// by currency).
func (s *Store) Revenue(ctx context.Context, since time.Time) ([]analytics.HourlyRevenue, error) {
	const op = "analyticsdb.Revenue"
	rows, err := s.db.QueryContext(ctx, `SELECT hour, currency, amount, payments FROM captured_revenue WHERE hour >= ?
		ORDER BY hour DESC, currency`, hourOf(since))
	if err != nil {
		return nil, errs.E(op, err)
	}
	defer rows.Close()
	var out []analytics.HourlyRevenue
	for rows.Next() {
		var (
			r    analytics.HourlyRevenue
			hour int64
		)
		if err := rows.Scan(&hour, &r.Captured.Currency, &r.Captured.Amount, &r.Payments); err != nil {
			return nil, errs.E(op, err)
		}
		r.Hour = sqldb.FromMillis(hour)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, errs.E(op, err)
	}
	return out, nil
}

// Forget deletes the counts of hours before countsBefore and the inbox
// records of messages applied before inboxBefore.
func (s *Store) Forget(ctx context.Context, countsBefore, inboxBefore time.Time) error {
	const op = "analyticsdb.Forget"
	for _, q := range []string{`DELETE FROM product_views WHERE hour < ?`, `DELETE FROM search_counts WHERE hour < ?`,
		`DELETE FROM captured_revenue WHERE hour < ?`} {
		if _, err := s.db.ExecContext(ctx, q, hourOf(countsBefore)); err != nil {
			return errs.E(op, err)
		}
	}
	if _, err := inbox.Forget(ctx, s.db, inboxBefore); err != nil {
		return errs.E(op, err)
	}
	return nil
}
