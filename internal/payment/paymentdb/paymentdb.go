// Package paymentdb is the SQL store of the payment service: the payments
// table, which keeps only the last four digits of a card.
package paymentdb

import (
	"context"
	"database/sql"
	"errors"

	"github.com/globomantics/globomantics/internal/payment"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/money"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
)

// migrations are applied in order and never edited once released.
var migrations = []string{
	`CREATE TABLE payments (
		id TEXT PRIMARY KEY,
		order_id TEXT NOT NULL UNIQUE,
		amount BIGINT NOT NULL,
		currency TEXT NOT NULL,
		status TEXT NOT NULL,
		card_last4 TEXT NOT NULL,
		created_at BIGINT NOT NULL,
		updated_at BIGINT NOT NULL
	)`,
}

// Store keeps payments in a SQL database.
type Store struct {
	db *sqldb.DB
}

var _ payment.Store = (*Store)(nil)

// Open returns the store over db after applying its migrations.
func Open(ctx context.Context, db *sqldb.DB) (*Store, error) {
	if err := db.Migrate(ctx, "payment", migrations); err != nil {
		return nil, err
	}
	return &Store{db: db}, nil
}

const columns = `id, order_id, amount, currency, status, card_last4, created_at, updated_at`

// Create inserts p; errs.Conflict if its order (or its id) already has a
// payment.
func (s *Store) Create(ctx context.Context, p payment.Payment) error {
	const op = "paymentdb.Create"
	_, err := s.db.ExecContext(ctx, `INSERT INTO payments (`+columns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		p.ID, p.OrderID, p.Amount.Amount, p.Amount.Currency, p.Status, p.CardLast4,
		sqldb.Millis(p.CreatedAt), sqldb.Millis(p.UpdatedAt))
	if sqldb.IsUniqueViolation(err) {
		return errs.E(op, errs.Conflict, errs.Msg("order already has a payment"), err)
	}
	if err != nil {
		return errs.E(op, err)
	}
	return nil
}

// Get returns the payment with this id; errs.NotFound.
func (s *Store) Get(ctx context.Context, id string) (payment.Payment, error) {
	p, err := scan(s.db.QueryRowContext(ctx, `SELECT `+columns+` FROM payments WHERE id = ?`, id))
	if err != nil {
		return payment.Payment{}, errs.E("paymentdb.Get", err)
	}
	return p, nil
}

// GetByOrder returns the payment of an order; errs.NotFound.
func (s *Store) GetByOrder(ctx context.Context, orderID string) (payment.Payment, error) {
	p, err := scan(s.db.QueryRowContext(ctx, `SELECT `+columns+` FROM payments WHERE order_id = ?`, orderID))
	if err != nil {
		return payment.Payment{}, errs.E("paymentdb.GetByOrder", err)
	}
	return p, nil
}

// Update loads payment id with its row locked, applies fn and saves its
// Status and UpdatedAt, in one transaction. An error from fn aborts the
// update, writing nothing, and keeps its kind; errs.NotFound for an unknown
// id.
func (s *Store) Update(ctx context.Context, id string, fn func(p *payment.Payment) error) (payment.Payment, error) {
	const op = "paymentdb.Update"
	q := `SELECT ` + columns + ` FROM payments WHERE id = ?`
	if s.db.Dialect == sqldb.Postgres {
		q += ` FOR UPDATE` // SQLite transactions already hold the write lock
	}
	var out payment.Payment
	err := s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		p, err := scan(tx.QueryRowContext(ctx, q, id))
		if err != nil {
			return err
		}
		if err := fn(&p); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE payments SET status = ?, updated_at = ? WHERE id = ?`,
			p.Status, sqldb.Millis(p.UpdatedAt), id); err != nil {
			return err
		}
		p.UpdatedAt = sqldb.FromMillis(sqldb.Millis(p.UpdatedAt))
		out = p
		return nil
	})
	if err != nil {
		return payment.Payment{}, errs.E(op, err)
	}
	return out, nil
}

func scan(row *sql.Row) (payment.Payment, error) {
	var (
		p                payment.Payment
		amount           int64
		currency         string
		created, updated int64
	)
	err := row.Scan(&p.ID, &p.OrderID, &amount, &currency, &p.Status, &p.CardLast4, &created, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return payment.Payment{}, errs.E(errs.NotFound, errs.Msg("payment not found"))
	}
	if err != nil {
		return payment.Payment{}, err
	}
	p.Amount = money.Money{Amount: amount, Currency: currency}
	p.CreatedAt, p.UpdatedAt = sqldb.FromMillis(created), sqldb.FromMillis(updated)
	return p, nil
}
