// Package shippingdb is the SQL store of the shipping service: the shipments
// table, which also holds the tombstones of shipments cancelled before they
// were created (rows with tombstone = 1, never shown as shipments).
package shippingdb

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"io/fs"
	"time"

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
	name, line1, city, postal_code, country, created_at, region`

// Create inserts sh; errs.Conflict if its order already has a shipment or
// its id or tracking number is taken.
func (s *Store) Create(ctx context.Context, sh shipping.Shipment) error {
	const op = "shippingdb.Create"
	a := sh.Address
	_, err := s.db.ExecContext(ctx, `INSERT INTO shipments (`+columns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		sh.ID, sh.OrderID, sh.Status, sh.TrackingNumber, sh.Cost.Amount, sh.Cost.Currency,
		a.Name, a.Line1, a.City, a.PostalCode, a.Country, sqldb.Millis(sh.CreatedAt), a.Region)
	if sqldb.IsUniqueViolation(err) {
		return errs.E(op, errs.Conflict, errs.Msg("shipment already exists"), err)
	}
	if err != nil {
		return errs.E(op, err)
	}
	return nil
}

// Get returns the shipment with this id; errs.NotFound (also for the
// internal id of a tombstone).
func (s *Store) Get(ctx context.Context, id string) (shipping.Shipment, error) {
	sh, err := scan(s.db.QueryRowContext(ctx, `SELECT `+columns+` FROM shipments WHERE id = ? AND tombstone = 0`, id))
	if err != nil {
		return shipping.Shipment{}, errs.E("shippingdb.Get", err)
	}
	return sh, nil
}

// GetByOrder returns the shipment of an order; errs.NotFound. An order whose
// shipment was cancelled before it was created has a tombstone, returned as
// a Shipment with an empty ID, the order id, StatusCancelled and the time
// of the cancel.
func (s *Store) GetByOrder(ctx context.Context, orderID string) (shipping.Shipment, error) {
	sh, err := scanFull(s.db.QueryRowContext(ctx, `SELECT `+columns+`, tombstone FROM shipments WHERE order_id = ?`, orderID))
	if err != nil {
		return shipping.Shipment{}, errs.E("shippingdb.GetByOrder", err)
	}
	return sh, nil
}

// CancelByOrder cancels the order's shipment in one transaction that locks
// its row; when the order has none, it inserts a tombstone under the unique
// order_id. A Create racing it either commits first (the insert then waits
// for it, does nothing, and the shipment it made is cancelled) or fails on
// the tombstone.
func (s *Store) CancelByOrder(ctx context.Context, orderID string, now time.Time) (shipping.Shipment, error) {
	const op = "shippingdb.CancelByOrder"
	q := `SELECT ` + columns + `, tombstone FROM shipments WHERE order_id = ?`
	if s.db.Dialect == sqldb.Postgres {
		q += ` FOR UPDATE`
	}
	var out shipping.Shipment
	err := s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		sh, err := scanFull(tx.QueryRowContext(ctx, q, orderID))
		if errs.Is(errs.NotFound, err) {
			var res sql.Result
			res, err = tx.ExecContext(ctx, `INSERT INTO shipments (`+columns+`, tombstone)
				VALUES (?, ?, ?, ?, 0, '', '', '', '', '', '', ?, '', 1) ON CONFLICT (order_id) DO NOTHING`,
				tombstonePrefix+orderID, orderID, shipping.StatusCancelled, tombstonePrefix+orderID, sqldb.Millis(now))
			if err != nil {
				return err
			}
			n, rerr := res.RowsAffected()
			if rerr != nil {
				return rerr
			}
			if n == 1 {
				out = tombstoneOf(orderID, sqldb.Millis(now))
				return nil
			}
			// A Create committed meanwhile (on PostgreSQL the insert
			// waited for it): this statement sees it.
			sh, err = scanFull(tx.QueryRowContext(ctx, q, orderID))
		}
		if err != nil {
			return err
		}
		if sh.ID != "" && sh.Status != shipping.StatusCancelled {
			if _, err := tx.ExecContext(ctx, `UPDATE shipments SET status = ? WHERE id = ?`, shipping.StatusCancelled, sh.ID); err != nil {
				return err
			}
			sh.Status = shipping.StatusCancelled
		}
		out = sh
		return nil
	})
	if err != nil {
		return shipping.Shipment{}, errs.E(op, sqldb.NodeError(err))
	}
	return out, nil
}

// tombstonePrefix starts the internal id and tracking number of a
// tombstone (both unique columns); real ones start "shp_" and "GLB".
const tombstonePrefix = "void:"

// tombstoneOf is the Shipment a tombstone stands for.
func tombstoneOf(orderID string, createdMillis int64) shipping.Shipment {
	return shipping.Shipment{OrderID: orderID, Status: shipping.StatusCancelled, CreatedAt: sqldb.FromMillis(createdMillis)}
}

// Update loads shipment id with its row locked, applies fn and saves its
// Status, in one transaction. An error from fn aborts the update, writing
// nothing, and keeps its kind; errs.NotFound for an unknown id.
func (s *Store) Update(ctx context.Context, id string, fn func(sh *shipping.Shipment) error) (shipping.Shipment, error) {
	const op = "shippingdb.Update"
	q := `SELECT ` + columns + ` FROM shipments WHERE id = ? AND tombstone = 0`
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

// scanFull scans a row of columns and the tombstone flag; a tombstone is
// returned as tombstoneOf.
func scanFull(row *sql.Row) (shipping.Shipment, error) {
	var (
		sh        shipping.Shipment
		cost      int64
		currency  string
		created   int64
		tombstone int
	)
	a := &sh.Address
	err := row.Scan(&sh.ID, &sh.OrderID, &sh.Status, &sh.TrackingNumber, &cost, &currency,
		&a.Name, &a.Line1, &a.City, &a.PostalCode, &a.Country, &created, &a.Region, &tombstone)
	if errors.Is(err, sql.ErrNoRows) {
		return shipping.Shipment{}, errs.E(errs.NotFound, errs.Msg("shipment not found"))
	}
	if err != nil {
		return shipping.Shipment{}, err
	}
	if tombstone != 0 {
		return tombstoneOf(sh.OrderID, created), nil
	}
	sh.Cost = money.Money{Amount: cost, Currency: currency}
	sh.CreatedAt = sqldb.FromMillis(created)
	return sh, nil
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
		&a.Name, &a.Line1, &a.City, &a.PostalCode, &a.Country, &created, &a.Region)
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
