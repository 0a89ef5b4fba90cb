// Package paymentdb is the SQL store of the payment service: the payments
// table, which keeps only the last four digits of a card, and the
// payment_ledger table, one row per money movement, each written in the
// same transaction as the payments row's change it records, and the outbox
// (internal/platform/outbox) that carries the events of those movements
// (PaymentCaptured), written in that transaction too.
//
// The store is sharded (see sqldb.Sharded): a payment lives on the node of
// its order's shard (shard.OfIDOrKey of the order id: the shard the order's
// id carries), recorded in its shard column, with its ledger rows; its id, made by the
// payment service with ids.NewInShard, carries that shard too. A look-up by
// a payment id made before sharding, which carries none, asks every node.
// Each node has its own outbox table, drained by its own relay (see
// Outboxes); a payment's events sit on its node.
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
	"github.com/globomantics/globomantics/internal/platform/outbox"
	"github.com/globomantics/globomantics/internal/platform/shard"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
)

// migrations (goose SQL files) are applied in order and never edited once
// released. 00004 and 00005 are outbox.Migration and outbox.MigrationV2 (a
// test keeps the copies equal); 00005 is served through
// outbox.SharedMigrations, since a node may share its database with another
// store's outbox (order's, on one PostgreSQL).
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
	if err := sh.Each(ctx, func(ctx context.Context, _ string, db *sqldb.DB) error {
		fsys, err := outbox.SharedMigrations(ctx, db, dir, "00005_outbox_v2.sql")
		if err != nil {
			return err
		}
		return db.Migrate(ctx, "payment", fsys)
	}); err != nil {
		return nil, err
	}
	err = sh.Each(ctx, func(ctx context.Context, _ string, db *sqldb.DB) error {
		for _, table := range []string{"payments", "payment_ledger"} {
			err := sqldb.BackfillShard(ctx, db, table, "order_id", "order_id", func(orderID, _ string) shard.ID {
				return shard.OfIDOrKey(orderID)
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, errs.E("paymentdb.Open", errs.Msg("filling in the shard column"), err)
	}
	return &Store{sh: sh}, nil
}

// Outboxes returns the database of every node, by node name: each holds an
// outbox table of its own, which needs its own outbox.Relay.
func (s *Store) Outboxes() map[string]*sqldb.DB { return s.sh.All() }

// nodeOf returns the node of the payment with this id: the node of the
// shard the id carries, or, for an id made before sharding, the node that
// has the payment, asked of every node at once; errs.NotFound when none has
// it, errs.Unavailable when none has it and a node did not answer.
func (s *Store) nodeOf(ctx context.Context, id string) (*sqldb.DB, error) {
	return s.sh.NodeOfID(ctx, "payments", id, "payment")
}

const columns = `id, order_id, amount, currency, status, card_last4, created_at, updated_at`

const ledgerColumns = `id, payment_id, order_id, kind, amount, currency, created_at`

// Create inserts p and its first ledger entry e in one transaction;
// errs.Conflict if its order (or its id) already has a payment, errs.Invalid
// if e is not p's.
func (s *Store) Create(ctx context.Context, p payment.Payment, e payment.Entry) error {
	const op = "paymentdb.Create"
	sh := shard.OfIDOrKey(p.OrderID)
	if idShard, ok := shard.OfID(p.ID); ok && idShard != sh {
		return errs.E(op, errs.Invalid, errs.Msg("payment id carries shard %d, not its order's shard %d", idShard, sh))
	}
	if err := checkEntry(p, e); err != nil {
		return errs.E(op, err)
	}
	db, err := s.sh.ForShard(sh)
	if err != nil {
		return errs.E(op, err)
	}
	err = db.InTx(ctx, func(tx *sqldb.Tx) error {
		if _, err := insertPayment(ctx, tx, p, sh, ""); err != nil {
			return err
		}
		return insertEntry(ctx, tx, e, sh)
	})
	if sqldb.IsUniqueViolation(err) {
		return errs.E(op, errs.Conflict, errs.Msg("order already has a payment"), err)
	}
	if err != nil {
		return errs.E(op, sqldb.NodeError(err))
	}
	return nil
}

// checkEntry refuses an entry that is not of payment p.
func checkEntry(p payment.Payment, e payment.Entry) error {
	switch {
	case e.ID == "":
		return errs.E(errs.Invalid, errs.Msg("ledger entry has no id"))
	case e.PaymentID != p.ID || e.OrderID != p.OrderID:
		return errs.E(errs.Invalid, errs.Msg("ledger entry is not of payment %s", p.ID))
	case e.Amount.Amount < 0:
		return errs.E(errs.Invalid, errs.Msg("ledger entry amount is negative"))
	}
	return nil
}

// insertPayment inserts p on shard sh and returns how many rows it
// inserted; with suffix " ON CONFLICT DO NOTHING" a row for the same order
// (or id) is left alone instead, and it returns 0.
func insertPayment(ctx context.Context, q sqldb.Querier, p payment.Payment, sh shard.ID, suffix string) (int64, error) {
	res, err := q.ExecContext(ctx, `INSERT INTO payments (`+columns+`, shard) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`+suffix,
		p.ID, p.OrderID, p.Amount.Amount, p.Amount.Currency, p.Status, p.CardLast4,
		sqldb.Millis(p.CreatedAt), sqldb.Millis(p.UpdatedAt), int(sh))
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func insertEntry(ctx context.Context, q sqldb.Querier, e payment.Entry, sh shard.ID) error {
	_, err := q.ExecContext(ctx, `INSERT INTO payment_ledger (`+ledgerColumns+`, shard) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		e.ID, e.PaymentID, e.OrderID, e.Kind, e.Amount.Amount, e.Amount.Currency, sqldb.Millis(e.CreatedAt), int(sh))
	return err
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

// Update loads payment id with its row locked and applies fn; when fn
// returns an entry it saves the payment's Status and UpdatedAt, the entry
// and the entry's event (payment.EventOf) in the outbox in one transaction,
// and when it returns nil it writes nothing. An
// error from fn aborts the update, writing nothing, and keeps its kind;
// errs.NotFound for an unknown id; errs.Conflict when the payment already
// has an entry of that kind.
func (s *Store) Update(ctx context.Context, id string, fn func(p *payment.Payment) (*payment.Entry, error)) (payment.Payment, error) {
	const op = "paymentdb.Update"
	db, err := s.nodeOf(ctx, id)
	if err != nil {
		return payment.Payment{}, errs.E(op, sqldb.NodeError(err))
	}
	var out payment.Payment
	err = db.InTx(ctx, func(tx *sqldb.Tx) error {
		p, err := scan(tx.QueryRowContext(ctx, selectLocked(db, "id"), id))
		if err != nil {
			return err
		}
		out, err = apply(ctx, tx, p, fn)
		return err
	})
	if err != nil {
		return payment.Payment{}, errs.E(op, ledgerError(err))
	}
	return out, nil
}

// UpdateOrder is Update for the payment of orderID, except that when the
// order has none it inserts ifNone (with no ledger entry) and returns it,
// in the same transaction: a concurrent Create for the order either
// commits first, and fn is applied to its payment, or fails with
// errs.Conflict.
func (s *Store) UpdateOrder(ctx context.Context, orderID string, ifNone payment.Payment, fn func(p *payment.Payment) (*payment.Entry, error)) (payment.Payment, error) {
	const op = "paymentdb.UpdateOrder"
	sh := shard.OfIDOrKey(orderID)
	if ifNone.OrderID != orderID {
		return payment.Payment{}, errs.E(op, errs.Invalid, errs.Msg("the payment to record is not of order %s", orderID))
	}
	if idShard, ok := shard.OfID(ifNone.ID); ok && idShard != sh {
		return payment.Payment{}, errs.E(op, errs.Invalid, errs.Msg("payment id carries shard %d, not its order's shard %d", idShard, sh))
	}
	db, err := s.sh.ForShard(sh)
	if err != nil {
		return payment.Payment{}, errs.E(op, err)
	}
	q := selectLocked(db, "order_id")
	var out payment.Payment
	err = db.InTx(ctx, func(tx *sqldb.Tx) error {
		p, err := scan(tx.QueryRowContext(ctx, q, orderID))
		if errs.Is(errs.NotFound, err) {
			// ON CONFLICT DO NOTHING waits for a concurrent insert of the
			// order's payment and then leaves it alone; the statement
			// after it sees that payment, committed.
			n, ierr := insertPayment(ctx, tx, ifNone, sh, " ON CONFLICT DO NOTHING")
			if ierr != nil {
				return ierr
			}
			if n == 1 {
				out = ifNone
				out.CreatedAt = sqldb.FromMillis(sqldb.Millis(out.CreatedAt))
				out.UpdatedAt = sqldb.FromMillis(sqldb.Millis(out.UpdatedAt))
				return nil
			}
			p, err = scan(tx.QueryRowContext(ctx, q, orderID))
		}
		if err != nil {
			return err
		}
		out, err = apply(ctx, tx, p, fn)
		return err
	})
	if err != nil {
		return payment.Payment{}, errs.E(op, ledgerError(err))
	}
	return out, nil
}

// selectLocked selects a payment by column col, locking its row on
// PostgreSQL (SQLite transactions already hold the write lock).
func selectLocked(db *sqldb.DB, col string) string {
	q := `SELECT ` + columns + ` FROM payments WHERE ` + col + ` = ?`
	if db.Dialect == sqldb.Postgres {
		q += ` FOR UPDATE`
	}
	return q
}

// apply runs fn on the locked payment p inside tx and, when it returns an
// entry, saves the change, the entry and the entry's event. The entry goes
// first: its unique (payment, kind) is what refuses a second capture, so a
// second PaymentCaptured is never written either.
func apply(ctx context.Context, tx *sqldb.Tx, p payment.Payment, fn func(p *payment.Payment) (*payment.Entry, error)) (payment.Payment, error) {
	loaded := p
	e, err := fn(&p)
	if err != nil {
		return payment.Payment{}, err
	}
	if e == nil {
		return loaded, nil
	}
	if err := checkEntry(p, *e); err != nil {
		return payment.Payment{}, err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE payments SET status = ?, updated_at = ? WHERE id = ?`,
		p.Status, sqldb.Millis(p.UpdatedAt), p.ID); err != nil {
		return payment.Payment{}, err
	}
	if err := insertEntry(ctx, tx, *e, shard.OfIDOrKey(p.OrderID)); err != nil {
		return payment.Payment{}, err
	}
	if ev := payment.EventOf(p, *e); ev != nil {
		if err := outbox.Add(ctx, tx, ev.Subject, ev.ID, ev.Data, e.CreatedAt); err != nil {
			return payment.Payment{}, err
		}
	}
	p.UpdatedAt = sqldb.FromMillis(sqldb.Millis(p.UpdatedAt))
	return p, nil
}

// ledgerError makes a unique violation of the ledger (a second entry of a
// kind) errs.Conflict and passes other errors through sqldb.NodeError.
func ledgerError(err error) error {
	if sqldb.IsUniqueViolation(err) {
		return errs.E(errs.Conflict, errs.Msg("the payment already has a ledger entry of that kind"), err)
	}
	return sqldb.NodeError(err)
}

// Ledger returns the entries of payment id, oldest first (in the order
// of the payment's history when written at the same instant); empty for an
// unknown payment.
func (s *Store) Ledger(ctx context.Context, id string) ([]payment.Entry, error) {
	const op = "paymentdb.Ledger"
	db, err := s.nodeOf(ctx, id)
	if errs.Is(errs.NotFound, err) {
		return nil, nil
	}
	if err != nil {
		return nil, errs.E(op, sqldb.NodeError(err))
	}
	rows, err := db.QueryContext(ctx, `SELECT `+ledgerColumns+` FROM payment_ledger WHERE payment_id = ?
		ORDER BY created_at, CASE kind WHEN 'authorization' THEN 0 WHEN 'decline' THEN 0 WHEN 'refund' THEN 2 ELSE 1 END`, id)
	if err != nil {
		return nil, errs.E(op, sqldb.NodeError(err))
	}
	defer rows.Close()
	var out []payment.Entry
	for rows.Next() {
		var (
			e        payment.Entry
			amount   int64
			currency string
			created  int64
		)
		if err := rows.Scan(&e.ID, &e.PaymentID, &e.OrderID, &e.Kind, &amount, &currency, &created); err != nil {
			return nil, errs.E(op, err)
		}
		e.Amount = money.Money{Amount: amount, Currency: currency}
		e.CreatedAt = sqldb.FromMillis(created)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, errs.E(op, sqldb.NodeError(err))
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
