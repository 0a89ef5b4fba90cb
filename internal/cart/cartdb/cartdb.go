// Package cartdb is the cart service's store over SQL (SQLite or PostgreSQL):
// the carts and cart_lines tables.
package cartdb

import (
	"context"
	"errors"
	"fmt"

	"github.com/globomantics/globomantics/internal/cart"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/money"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
)

// carts has one row per non-empty cart. Every update first upserts the
// owner's row, which takes a row lock that queues concurrent updates of the
// same cart on PostgreSQL (SQLite transactions already lock the database);
// version counts the updates.
var migrations = []string{
	`CREATE TABLE carts (
		owner TEXT PRIMARY KEY,
		version BIGINT NOT NULL
	);
	CREATE TABLE cart_lines (
		owner TEXT NOT NULL REFERENCES carts (owner) ON DELETE CASCADE,
		product_id TEXT NOT NULL,
		name TEXT NOT NULL,
		quantity INTEGER NOT NULL CHECK (quantity > 0),
		unit_price_amount BIGINT NOT NULL,
		currency TEXT NOT NULL,
		added_at BIGINT NOT NULL,
		PRIMARY KEY (owner, product_id)
	)`,
}

// Store keeps carts in a SQL database.
type Store struct {
	db *sqldb.DB
}

var _ cart.Store = (*Store)(nil)

// Open returns the store over db, creating or upgrading its tables.
func Open(ctx context.Context, db *sqldb.DB) (*Store, error) {
	if err := db.Migrate(ctx, "cart", migrations); err != nil {
		return nil, err
	}
	return &Store{db: db}, nil
}

// Get returns owner's lines ordered by when they were added; none for an
// owner without a cart.
func (s *Store) Get(ctx context.Context, owner string) (cart.Lines, error) {
	lines, err := readLines(ctx, s.db, owner)
	if err != nil {
		return nil, errs.E("cartdb.Get", err)
	}
	return lines, nil
}

// Update calls fn with owner's lines inside a transaction that holds owner's
// cart locked, and writes the lines fn leaves. An error from fn is returned
// unchanged and nothing is written.
func (s *Store) Update(ctx context.Context, owner string, fn func(lines *cart.Lines) error) error {
	err := s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		if err := lock(ctx, tx, owner); err != nil {
			return err
		}
		old, err := readLines(ctx, tx, owner)
		if err != nil {
			return err
		}
		lines := append(cart.Lines(nil), old...)
		if err := fn(&lines); err != nil {
			return fnError{err}
		}
		return write(ctx, tx, owner, old, lines)
	})
	return unwrap("cartdb.Update", err)
}

// UpdatePair is Update over two distinct owners in one transaction: both
// carts are written, or neither.
func (s *Store) UpdatePair(ctx context.Context, a, b string, fn func(a, b *cart.Lines) error) error {
	if a == b {
		return errs.E("cartdb.UpdatePair", fmt.Errorf("UpdatePair of %q with itself", a))
	}
	err := s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		// Lock in a fixed order so that two pair updates cannot deadlock.
		first, second := a, b
		if second < first {
			first, second = second, first
		}
		for _, o := range []string{first, second} {
			if err := lock(ctx, tx, o); err != nil {
				return err
			}
		}
		oldA, err := readLines(ctx, tx, a)
		if err != nil {
			return err
		}
		oldB, err := readLines(ctx, tx, b)
		if err != nil {
			return err
		}
		linesA := append(cart.Lines(nil), oldA...)
		linesB := append(cart.Lines(nil), oldB...)
		if err := fn(&linesA, &linesB); err != nil {
			return fnError{err}
		}
		if err := write(ctx, tx, a, oldA, linesA); err != nil {
			return err
		}
		return write(ctx, tx, b, oldB, linesB)
	})
	return unwrap("cartdb.UpdatePair", err)
}

// Delete removes owner's cart; deleting an absent cart is not an error.
func (s *Store) Delete(ctx context.Context, owner string) error {
	err := s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM cart_lines WHERE owner = ?`, owner); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM carts WHERE owner = ?`, owner)
		return err
	})
	if err != nil {
		return errs.E("cartdb.Delete", err)
	}
	return nil
}

// fnError carries the caller's error through InTx untouched.
type fnError struct{ err error }

func (e fnError) Error() string { return e.err.Error() }

func unwrap(op string, err error) error {
	var fe fnError
	if errors.As(err, &fe) {
		return fe.err
	}
	if err != nil {
		return errs.E(op, err)
	}
	return nil
}

// lock creates or bumps owner's carts row, holding it locked until the
// transaction ends.
func lock(ctx context.Context, tx *sqldb.Tx, owner string) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO carts (owner, version) VALUES (?, 1)
		ON CONFLICT (owner) DO UPDATE SET version = carts.version + 1`, owner)
	return err
}

func readLines(ctx context.Context, q sqldb.Querier, owner string) (cart.Lines, error) {
	rows, err := q.QueryContext(ctx, `SELECT product_id, name, quantity, unit_price_amount, currency, added_at
		FROM cart_lines WHERE owner = ? ORDER BY added_at, product_id`, owner)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var lines cart.Lines
	for rows.Next() {
		var (
			l     cart.Line
			added int64
		)
		if err := rows.Scan(&l.ProductID, &l.Name, &l.Quantity, &l.UnitPrice.Amount, &l.UnitPrice.Currency, &added); err != nil {
			return nil, err
		}
		l.AddedAt = sqldb.FromMillis(added)
		lines = append(lines, l)
	}
	return lines, rows.Err()
}

// write turns owner's stored lines old into lines with the fewest
// statements, removing the cart's row when it ends empty.
func write(ctx context.Context, tx *sqldb.Tx, owner string, old, lines cart.Lines) error {
	prev := make(map[string]cart.Line, len(old))
	for _, l := range old {
		prev[l.ProductID] = l
	}
	seen := make(map[string]bool, len(lines))
	for _, l := range lines {
		if seen[l.ProductID] {
			return fmt.Errorf("cart %q: product %q on two lines", owner, l.ProductID)
		}
		seen[l.ProductID] = true
		if l.Quantity < 1 {
			return fmt.Errorf("cart %q: quantity %d of %q", owner, l.Quantity, l.ProductID)
		}
		p, ok := prev[l.ProductID]
		switch {
		case !ok:
			_, err := tx.ExecContext(ctx, `INSERT INTO cart_lines
				(owner, product_id, name, quantity, unit_price_amount, currency, added_at) VALUES (?, ?, ?, ?, ?, ?, ?)`,
				owner, l.ProductID, l.Name, l.Quantity, l.UnitPrice.Amount, currency(l.UnitPrice), sqldb.Millis(l.AddedAt))
			if err != nil {
				return err
			}
		case !sameLine(p, l):
			_, err := tx.ExecContext(ctx, `UPDATE cart_lines
				SET name = ?, quantity = ?, unit_price_amount = ?, currency = ?, added_at = ?
				WHERE owner = ? AND product_id = ?`,
				l.Name, l.Quantity, l.UnitPrice.Amount, currency(l.UnitPrice), sqldb.Millis(l.AddedAt), owner, l.ProductID)
			if err != nil {
				return err
			}
		}
	}
	for id := range prev {
		if !seen[id] {
			if _, err := tx.ExecContext(ctx, `DELETE FROM cart_lines WHERE owner = ? AND product_id = ?`, owner, id); err != nil {
				return err
			}
		}
	}
	if len(lines) == 0 {
		_, err := tx.ExecContext(ctx, `DELETE FROM carts WHERE owner = ?`, owner)
		return err
	}
	return nil
}

func sameLine(a, b cart.Line) bool {
	return a.Name == b.Name && a.Quantity == b.Quantity && a.UnitPrice == b.UnitPrice &&
		sqldb.Millis(a.AddedAt) == sqldb.Millis(b.AddedAt)
}

// currency defaults an unset currency to the shop's.
func currency(m money.Money) string {
	if m.Currency == "" {
		return money.Currency
	}
	return m.Currency
}
