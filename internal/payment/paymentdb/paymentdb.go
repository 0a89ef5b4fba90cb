// Package paymentdb is the SQL store of the payment service: the payments
// table, which keeps only the last four digits of a card.
//
// The store is sharded (see sqldb.Sharded): a payment lives on the node of
// its order's shard (shard.OfIDOrKey of the order id: the shard the order's
// id carries), recorded in its shard column, and its id, made by the
// payment service with ids.NewInShard, carries that shard too. A look-up by
// a payment id made before sharding, which carries none, asks every node.
package paymentdb

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"io/fs"

	"github.com/globomantics/globomantics/internal/payment"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/money"
	"github.com/globomantics/globomantics/internal/platform/shard"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
)

// migrations (goose SQL files) are applied in order and never edited once released.
//
//go:embed migrations/*.sql
var migrations embed.FS

// Store keeps payments in a SQL database, one node or several.
type Store struct {
	sh *sqldb.Sharded
}

var _ payment.Store = (*Store)(nil)

// Open returns the store over the one database db (every shard on it) after
// applying its migrations.
func Open(ctx context.Context, db *sqldb.DB) (*Store, error) {
	return OpenSharded(ctx, sqldb.Single(db))
}

// OpenSharded returns the store over the nodes of sh after applying its
// migrations to every node and filling in the shard column of rows written
// before it existed. Every node must answer.
func OpenSharded(ctx context.Context, sh *sqldb.Sharded) (*Store, error) {
	dir, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return nil, err
	}
	if err := sh.Migrate(ctx, "payment", dir); err != nil {
		return nil, err
	}
	err = sh.Each(ctx, func(ctx context.Context, _ string, db *sqldb.DB) error {
		return sqldb.BackfillShard(ctx, db, "payments", "order_id", "order_id", func(orderID, _ string) shard.ID {
			return shard.OfIDOrKey(orderID)
		})
	})
	if err != nil {
		return nil, errs.E("paymentdb.Open", errs.Msg("filling in the shard column"), err)
	}
	return &Store{sh: sh}, nil
}

// nodeOf returns the node of the payment with this id: the node of the
// shard the id carries, or, for an id made before sharding, the node that
// has the payment, asked of every node at once; errs.NotFound when none has
// it, errs.Unavailable when none has it and a node did not answer.
func (s *Store) nodeOf(ctx context.Context, id string) (*sqldb.DB, error) {
	return s.sh.NodeOfID(ctx, "payments", id, "payment")
}

const columns = `id, order_id, amount, currency, status, card_last4, created_at, updated_at`

// Create inserts p; errs.Conflict if its order (or its id) already has a
// payment.
func (s *Store) Create(ctx context.Context, p payment.Payment) error {
	const op = "paymentdb.Create"
	sh := shard.OfIDOrKey(p.OrderID)
	if idShard, ok := shard.OfID(p.ID); ok && idShard != sh {
		return errs.E(op, errs.Invalid, errs.Msg("payment id carries shard %d, not its order's shard %d", idShard, sh))
	}
	db, err := s.sh.ForShard(sh)
	if err != nil {
		return errs.E(op, err)
	}
	_, err = db.ExecContext(ctx, `INSERT INTO payments (`+columns+`, shard) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		p.ID, p.OrderID, p.Amount.Amount, p.Amount.Currency, p.Status, p.CardLast4,
		sqldb.Millis(p.CreatedAt), sqldb.Millis(p.UpdatedAt), int(sh))
	if sqldb.IsUniqueViolation(err) {
		return errs.E(op, errs.Conflict, errs.Msg("order already has a payment"), err)
	}
	if err != nil {
		return errs.E(op, sqldb.NodeError(err))
	}
	return nil
}

// Get returns the payment with this id; errs.NotFound.
func (s *Store) Get(ctx context.Context, id string) (payment.Payment, error) {
	db, err := s.nodeOf(ctx, id)
	if err != nil {
		return payment.Payment{}, errs.E("paymentdb.Get", sqldb.NodeError(err))
	}
	p, err := scan(db.QueryRowContext(ctx, `SELECT `+columns+` FROM payments WHERE id = ?`, id))
	if err != nil {
		return payment.Payment{}, errs.E("paymentdb.Get", sqldb.NodeError(err))
	}
	return p, nil
}

// GetByOrder returns the payment of an order; errs.NotFound.
func (s *Store) GetByOrder(ctx context.Context, orderID string) (payment.Payment, error) {
	db, err := s.sh.ForShard(shard.OfIDOrKey(orderID))
	if err != nil {
		return payment.Payment{}, errs.E("paymentdb.GetByOrder", err)
	}
	p, err := scan(db.QueryRowContext(ctx, `SELECT `+columns+` FROM payments WHERE order_id = ?`, orderID))
	if err != nil {
		return payment.Payment{}, errs.E("paymentdb.GetByOrder", sqldb.NodeError(err))
	}
	return p, nil
}

// Update loads payment id with its row locked, applies fn and saves its
// Status and UpdatedAt, in one transaction. An error from fn aborts the
// update, writing nothing, and keeps its kind; errs.NotFound for an unknown
// id.
func (s *Store) Update(ctx context.Context, id string, fn func(p *payment.Payment) error) (payment.Payment, error) {
	const op = "paymentdb.Update"
	db, err := s.nodeOf(ctx, id)
	if err != nil {
		return payment.Payment{}, errs.E(op, sqldb.NodeError(err))
	}
	q := `SELECT ` + columns + ` FROM payments WHERE id = ?`
	if db.Dialect == sqldb.Postgres {
		q += ` FOR UPDATE` // SQLite transactions already hold the write lock
	}
	var out payment.Payment
	err = db.InTx(ctx, func(tx *sqldb.Tx) error {
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
		return payment.Payment{}, errs.E(op, sqldb.NodeError(err))
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
