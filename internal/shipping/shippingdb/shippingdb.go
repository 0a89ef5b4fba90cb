// Package shippingdb is the SQL store of the shipping service: the shipments
// table.
package shippingdb

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"io/fs"

	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/money"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
	"github.com/globomantics/globomantics/internal/shipping"
)

// migrations (goose SQL files) are applied in order and never edited once released.
//
//go:embed migrations/*.sql
var migrations embed.FS

// Store keeps shipments in a SQL database.
type Store struct {
	db *sqldb.DB
}

var _ shipping.Store = (*Store)(nil)

// Open returns the store over db after applying its migrations.
func Open(ctx context.Context, db *sqldb.DB) (*Store, error) {
	dir, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return nil, err
	}
	if err := db.Migrate(ctx, "shipping", dir); err != nil {
		return nil, err
	}
	return &Store{db: db}, nil
}

const columns = `id, order_id, status, tracking_number, cost, currency,
	name, line1, city, postal_code, country, created_at`

// Create inserts sh; errs.Conflict if its order already has a shipment or
// its id or tracking number is taken.
func (s *Store) Create(ctx context.Context, sh shipping.Shipment) error {
	const op = "shippingdb.Create"
	a := sh.Address
	_, err := s.db.ExecContext(ctx, `INSERT INTO shipments (`+columns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		sh.ID, sh.OrderID, sh.Status, sh.TrackingNumber, sh.Cost.Amount, sh.Cost.Currency,
		a.Name, a.Line1, a.City, a.PostalCode, a.Country, sqldb.Millis(sh.CreatedAt))
	if sqldb.IsUniqueViolation(err) {
		return errs.E(op, errs.Conflict, errs.Msg("shipment already exists"), err)
	}
	if err != nil {
		return errs.E(op, err)
	}
	return nil
}

// Get returns the shipment with this id; errs.NotFound.
func (s *Store) Get(ctx context.Context, id string) (shipping.Shipment, error) {
	sh, err := scan(s.db.QueryRowContext(ctx, `SELECT `+columns+` FROM shipments WHERE id = ?`, id))
	if err != nil {
		return shipping.Shipment{}, errs.E("shippingdb.Get", err)
	}
	return sh, nil
}

// GetByOrder returns the shipment of an order; errs.NotFound.
func (s *Store) GetByOrder(ctx context.Context, orderID string) (shipping.Shipment, error) {
	sh, err := scan(s.db.QueryRowContext(ctx, `SELECT `+columns+` FROM shipments WHERE order_id = ?`, orderID))
	if err != nil {
		return shipping.Shipment{}, errs.E("shippingdb.GetByOrder", err)
	}
	return sh, nil
}

// Update loads shipment id with its row locked, applies fn and saves its
// Status, in one transaction. An error from fn aborts the update, writing
// nothing, and keeps its kind; errs.NotFound for an unknown id.
func (s *Store) Update(ctx context.Context, id string, fn func(sh *shipping.Shipment) error) (shipping.Shipment, error) {
	const op = "shippingdb.Update"
	q := `SELECT ` + columns + ` FROM shipments WHERE id = ?`
	if s.db.Dialect == sqldb.Postgres {
		q += ` FOR UPDATE` // SQLite transactions already hold the write lock
	}
	var out shipping.Shipment
	err := s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		sh, err := scan(tx.QueryRowContext(ctx, q, id))
		if err != nil {
			return err
		}
		if err := fn(&sh); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE shipments SET status = ? WHERE id = ?`, sh.Status, id); err != nil {
			return err
		}
		out = sh
		return nil
	})
	if err != nil {
		return shipping.Shipment{}, errs.E(op, err)
	}
	return out, nil
}

func scan(row *sql.Row) (shipping.Shipment, error) {
	var (
		sh       shipping.Shipment
		cost     int64
		currency string
		created  int64
	)
	a := &sh.Address
	err := row.Scan(&sh.ID, &sh.OrderID, &sh.Status, &sh.TrackingNumber, &cost, &currency,
		&a.Name, &a.Line1, &a.City, &a.PostalCode, &a.Country, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return shipping.Shipment{}, errs.E(errs.NotFound, errs.Msg("shipment not found"))
	}
	if err != nil {
		return shipping.Shipment{}, err
	}
	sh.Cost = money.Money{Amount: cost, Currency: currency}
	sh.CreatedAt = sqldb.FromMillis(created)
	return sh, nil
}
