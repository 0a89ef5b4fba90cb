// Package orderdb is the SQL store of the order service: the orders and
// order_items tables, and the outbox that carries OrderPlaced events.
//
// The store is sharded by user (see sqldb.Sharded): an order, its items and
// the outbox rows of its events live on the node holding
// shard.ForUser(order.UserID), and every order and item row records that
// shard in its shard column. Order ids made by checkout carry the same
// shard (ids.NewInShard), so a look-up by id goes straight to its node; an
// id without a shard (made before sharding) is looked for on every node.
// Each node has its own outbox table, drained by its own relay (see
// Outboxes).
//
// An order id cancelled before it was created is kept as a tombstone: a row
// of orders with status "tombstone" on the node of the id's shard, holding
// only the id and its shard (so it moves with its shard), which the unique
// id makes refuse a later Create. No read of orders ever returns it.
package orderdb

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"io/fs"
	"slices"
	"strings"
	"time"

	"github.com/globomantics/globomantics/internal/order"
	"github.com/globomantics/globomantics/internal/platform/consistency"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/money"
	"github.com/globomantics/globomantics/internal/platform/outbox"
	"github.com/globomantics/globomantics/internal/platform/shard"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
)

// migrations (goose SQL files) are applied in order and never edited once released.
//
//go:embed migrations/*.sql
var migrations embed.FS

// Store keeps orders in a SQL database, one node or several.
type Store struct {
	sh *sqldb.Sharded
}

var (
	_ order.Store      = (*Store)(nil)
	_ order.RangeStore = (*Store)(nil)
)

// Open returns the store over the one database db (every shard on it) after
// applying its migrations.
func Open(ctx context.Context, db *sqldb.DB) (*Store, error) {
	return OpenSharded(ctx, sqldb.Single(db))
}

// OpenSharded returns the store over the nodes of sh after applying its
// migrations to every node and filling in the shard column of rows written
// before it existed. Every node must answer.
func OpenSharded(ctx context.Context, sh *sqldb.Sharded) (*Store, error) {
	const op = "orderdb.Open"
	dir, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return nil, err
	}
	// Each node's outbox may share its database with another store's.
	if err := sh.Each(ctx, func(ctx context.Context, _ string, db *sqldb.DB) error {
		fsys, err := outbox.SharedMigrations(ctx, db, dir, "00005_outbox_v2.sql")
		if err != nil {
			return err
		}
		return db.Migrate(ctx, "order", fsys)
	}); err != nil {
		return nil, err
	}
	err = sh.Each(ctx, func(ctx context.Context, _ string, db *sqldb.DB) error {
		if err := sqldb.BackfillShard(ctx, db, "orders", "id", "user_id", func(_, user string) shard.ID {
			return shard.ForUser(user)
		}); err != nil {
			return err
		}
		_, err := db.ExecContext(ctx, `UPDATE order_items
			SET shard = (SELECT o.shard FROM orders o WHERE o.id = order_items.order_id) WHERE shard = -1`)
		return err
	})
	if err != nil {
		return nil, errs.E(op, errs.Msg("filling in the shard column"), err)
	}
	if err := sh.Each(ctx, func(ctx context.Context, _ string, db *sqldb.DB) error {
		return backfillNumbers(ctx, db)
	}); err != nil {
		return nil, errs.E(op, errs.Msg("numbering the orders written before order numbers"), err)
	}
	return &Store{sh: sh}, nil
}

// Outboxes returns the database of every node, by node name: each holds
// an outbox table of its own, which needs its own outbox.Relay.
func (s *Store) Outboxes() map[string]*sqldb.DB { return s.sh.All() }

// nodeOf returns the node of the order with this id: the node of the shard
// the id carries, or, for an id made before sharding that carries none, the
// node that has the order, asked of every node at once (errs.NotFound when
// none has it; errs.Unavailable when none has it and a node did not answer).
func (s *Store) nodeOf(ctx context.Context, id string) (*sqldb.DB, error) {
	return s.sh.NodeOfID(ctx, "orders", id, "order")
}

// userNode returns the node and shard of o's user, checking that an id that
// carries a shard carries that one.
func (s *Store) userNode(o order.Order) (*sqldb.DB, shard.ID, error) {
	db, sh, err := s.sh.ForUser(o.UserID)
	if err != nil {
		return nil, 0, err
	}
	if idShard, ok := shard.OfID(o.ID); ok && idShard != sh {
		return nil, 0, errs.E(errs.Invalid, errs.Msg("order id carries shard %d, not its user's shard %d", idShard, sh))
	}
	return db, sh, nil
}

const orderColumns = `id, user_id, email, status, currency, subtotal, shipping_cost, total,
	ship_name, ship_line1, ship_city, ship_postal_code, ship_country,
	payment_id, payment_status, shipment_id, shipment_status, tracking_number,
	cancel_reason, created_at, updated_at, number, ship_region`

// numberAttempts is how many order numbers Create draws before it gives up:
// with 30 random bits per shard, a second collision in a row means something
// other than chance is wrong.
const numberAttempts = 4

// Create inserts o and its items, or returns the existing order with o.ID.
func (s *Store) Create(ctx context.Context, o order.Order) (order.Order, bool, error) {
	const op = "orderdb.Create"
	created := false
	db, sh, err := s.userNode(o)
	if err != nil {
		return order.Order{}, false, errs.E(op, err)
	}
	if num, numShard, ok := order.ParseNumber(o.Number); !ok || num != o.Number || numShard != sh {
		o.Number = order.NewNumber(sh)
	}
	err = db.InTx(ctx, func(tx *sqldb.Tx) error {
		created = false
		a := o.ShippingAddress
		for attempt := 1; ; attempt++ {
			// No conflict target: a taken id and a taken number both insert
			// nothing, told apart below.
			res, err := tx.ExecContext(ctx, `INSERT INTO orders (`+orderColumns+`, shard)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
				ON CONFLICT DO NOTHING`,
				o.ID, o.UserID, o.Email, o.Status, currency(o.Total), o.Subtotal.Amount, o.ShippingCost.Amount, o.Total.Amount,
				a.Name, a.Line1, a.City, a.PostalCode, a.Country,
				o.Payment.ID, o.Payment.Status, o.Shipment.ID, o.Shipment.Status, o.Shipment.TrackingNumber,
				o.CancelReason, sqldb.Millis(o.CreatedAt), sqldb.Millis(o.UpdatedAt), o.Number, a.Region, int(sh))
			if err != nil {
				return err
			}
			n, err := res.RowsAffected()
			if err != nil {
				return err
			}
			if n == 1 {
				break
			}
			// On PostgreSQL the insert waited for a concurrent writer of the
			// id to commit: this statement sees its row.
			var status string
			err = tx.QueryRowContext(ctx, `SELECT status FROM orders WHERE id = ?`, o.ID).Scan(&status)
			switch {
			case err == nil: // it exists: leave it as it is, unless it is a tombstone
				if status == statusTombstone {
					return errs.E(errs.Conflict, errs.Msg("order %s was cancelled before it was created", o.ID))
				}
				return nil
			case !errors.Is(err, sql.ErrNoRows):
				return err
			case attempt == numberAttempts:
				return errs.E(errs.Unavailable, errs.Msg("no free order number after %d attempts", attempt))
			}
			o.Number = order.NewNumber(sh) // the number was taken: draw another
		}
		for i, it := range o.Items {
			if _, err := tx.ExecContext(ctx, `INSERT INTO order_items
				(order_id, line_no, product_id, name, quantity, unit_price, line_total, shard)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
				o.ID, i+1, it.ProductID, it.Name, it.Quantity, it.UnitPrice.Amount, it.LineTotal.Amount, int(sh)); err != nil {
				return err
			}
		}
		created = true
		return nil
	})
	if err != nil {
		return order.Order{}, false, errs.E(op, sqldb.NodeError(err))
	}
	stored, err := getOrder(ctx, db, o.ID, false)
	if err != nil {
		return order.Order{}, false, errs.E(op, sqldb.NodeError(err))
	}
	return stored, created, nil
}

// statusTombstone is the status of the row that records an order id
// cancelled before it was created: the row holds the id (so that the primary
// key refuses the order) and its shard, and nothing else. It is never read
// as an order.
const statusTombstone = "tombstone"

// Tombstone records that order id was cancelled before it was created, as a
// row of orders with status statusTombstone on the node of the shard the id
// carries (for an id without a shard: the only node of a single-node store,
// with shard shard.ForKey(id)). Create of the id then finds the row and
// fails. errs.Conflict when an order with the id exists; errs.Invalid for an
// id without a shard on several nodes.
func (s *Store) Tombstone(ctx context.Context, id string, now time.Time) error {
	const op = "orderdb.Tombstone"
	sh, ok := shard.OfID(id)
	var (
		db  *sqldb.DB
		err error
	)
	switch {
	case ok:
		db, err = s.sh.ForShard(sh)
	case s.sh.Single():
		sh = shard.ForKey(id)
		db, err = s.sh.ForShard(sh)
	default:
		return errs.E(op, errs.Invalid, errs.Msg("order id %s carries no shard", id))
	}
	if err != nil {
		return errs.E(op, err)
	}
	err = db.InTx(ctx, func(tx *sqldb.Tx) error {
		ms := sqldb.Millis(now)
		res, err := tx.ExecContext(ctx, `INSERT INTO orders (`+orderColumns+`, shard)
			VALUES (?, '', '', ?, ?, 0, 0, 0, '', '', '', '', '', '', '', '', '', '', '', ?, ?, '', '', ?)
			ON CONFLICT (id) DO NOTHING`,
			id, statusTombstone, money.Currency, ms, ms, int(sh))
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil || n == 1 {
			return err
		}
		var status string
		if err := tx.QueryRowContext(ctx, `SELECT status FROM orders WHERE id = ?`, id).Scan(&status); err != nil {
			return err
		}
		if status != statusTombstone {
			return errs.E(errs.Conflict, errs.Msg("order %s exists", id))
		}
		return nil // recorded before
	})
	if err != nil {
		return errs.E(op, sqldb.NodeError(err))
	}
	return nil
}

func currency(m money.Money) string {
	if m.Currency == "" {
		return money.Currency
	}
	return m.Currency
}

// Get returns the order with its items; errs.NotFound.
func (s *Store) Get(ctx context.Context, id string) (order.Order, error) {
	const op = "orderdb.Get"
	db, err := s.nodeOf(ctx, id)
	if err != nil {
		return order.Order{}, errs.E(op, sqldb.NodeError(err))
	}
	// The customer sees the order they just placed, whichever replica
	// answers (read-your-writes).
	o, err := getOrder(ctx, db.Reader(ctx, consistency.ReadYourWrites), id, false)
	if err != nil {
		return order.Order{}, errs.E(op, sqldb.NodeError(err))
	}
	return o, nil
}

// GetByNumber returns the order with this order number, from the node of
// the shard the number carries; errs.NotFound.
func (s *Store) GetByNumber(ctx context.Context, number string) (order.Order, error) {
	const op = "orderdb.GetByNumber"
	num, sh, ok := order.ParseNumber(number)
	if !ok {
		return order.Order{}, errs.E(op, errs.NotFound, errs.Msg("order not found"))
	}
	db, err := s.sh.ForShard(sh)
	if err != nil {
		return order.Order{}, errs.E(op, err)
	}
	rd := db.Reader(ctx, consistency.ReadYourWrites)
	var id string
	err = rd.QueryRowContext(ctx, `SELECT id FROM orders WHERE number = ? AND status <> '`+statusTombstone+`'`, num).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return order.Order{}, errs.E(op, errs.NotFound, errs.Msg("order not found"))
	}
	if err != nil {
		return order.Order{}, errs.E(op, sqldb.NodeError(err))
	}
	o, err := getOrder(ctx, rd, id, false)
	if err != nil {
		return order.Order{}, errs.E(op, sqldb.NodeError(err))
	}
	return o, nil
}

// backfillNumbers gives every order of db written before order numbers
// existed a number of its shard, drawing again when one is taken.
func backfillNumbers(ctx context.Context, db *sqldb.DB) error {
	for {
		rows, err := db.QueryContext(ctx, `SELECT id, shard FROM orders
			WHERE number = '' AND status <> '`+statusTombstone+`' AND shard >= 0 LIMIT 500`)
		if err != nil {
			return err
		}
		type row struct {
			id string
			sh int
		}
		var todo []row
		for rows.Next() {
			var r row
			if err := rows.Scan(&r.id, &r.sh); err != nil {
				rows.Close()
				return err
			}
			todo = append(todo, r)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if len(todo) == 0 {
			return nil
		}
		for _, r := range todo {
			for attempt := 1; ; attempt++ {
				_, err := db.ExecContext(ctx, `UPDATE orders SET number = ? WHERE id = ? AND number = ''`,
					order.NewNumber(shard.ID(r.sh)), r.id)
				if err == nil {
					break
				}
				if !sqldb.IsUniqueViolation(err) || attempt == numberAttempts {
					return err
				}
			}
		}
	}
}

// getOrder reads one order and its items through q; forUpdate locks the
// order's row until the end of the transaction on PostgreSQL (SQLite
// transactions already hold the write lock).
func getOrder(ctx context.Context, q sqldb.Querier, id string, forUpdate bool) (order.Order, error) {
	query := `SELECT ` + orderColumns + ` FROM orders WHERE id = ? AND status <> '` + statusTombstone + `'`
	if forUpdate {
		query += ` FOR UPDATE`
	}
	o, err := scanOrder(q.QueryRowContext(ctx, query, id))
	if errors.Is(err, sql.ErrNoRows) {
		return order.Order{}, errs.E(errs.NotFound, errs.Msg("order not found"))
	}
	if err != nil {
		return order.Order{}, err
	}
	byOrder, err := loadItems(ctx, q, []string{id}, o.Subtotal.Currency)
	if err != nil {
		return order.Order{}, err
	}
	o.Items = byOrder[id]
	if o.Items == nil {
		o.Items = []order.Item{}
	}
	return o, nil
}

type scanner interface{ Scan(dest ...any) error }

func scanOrder(sc scanner) (order.Order, error) {
	var (
		o                                   order.Order
		cur                                 string
		subtotal, shippingCost, total, c, u int64
		a                                   = &o.ShippingAddress
	)
	err := sc.Scan(&o.ID, &o.UserID, &o.Email, &o.Status, &cur, &subtotal, &shippingCost, &total,
		&a.Name, &a.Line1, &a.City, &a.PostalCode, &a.Country,
		&o.Payment.ID, &o.Payment.Status, &o.Shipment.ID, &o.Shipment.Status, &o.Shipment.TrackingNumber,
		&o.CancelReason, &c, &u, &o.Number, &a.Region)
	if err != nil {
		return order.Order{}, err
	}
	o.Subtotal = money.Money{Amount: subtotal, Currency: cur}
	o.ShippingCost = money.Money{Amount: shippingCost, Currency: cur}
	o.Total = money.Money{Amount: total, Currency: cur}
	o.CreatedAt = sqldb.FromMillis(c)
	o.UpdatedAt = sqldb.FromMillis(u)
	return o, nil
}

// loadItems returns the items of the given orders, keyed by order id, in line order.
func loadItems(ctx context.Context, q sqldb.Querier, ids []string, cur string) (map[string][]order.Item, error) {
	out := make(map[string][]order.Item, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	rows, err := q.QueryContext(ctx, `SELECT order_id, product_id, name, quantity, unit_price, line_total
		FROM order_items WHERE order_id IN (`+placeholders(len(ids))+`) ORDER BY order_id, line_no`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			oid         string
			it          order.Item
			price, line int64
		)
		if err := rows.Scan(&oid, &it.ProductID, &it.Name, &it.Quantity, &price, &line); err != nil {
			return nil, err
		}
		it.UnitPrice = money.Money{Amount: price, Currency: cur}
		it.LineTotal = money.Money{Amount: line, Currency: cur}
		out[oid] = append(out[oid], it)
	}
	return out, rows.Err()
}

func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

// ListByUser returns at most limit of the user's orders after the order at
// after (from the newest when nil), newest first, by a keyset seek on the
// index (user_id, created_at, id).
func (s *Store) ListByUser(ctx context.Context, userID string, after *order.ListKey, limit int) ([]order.Order, error) {
	const op = "orderdb.ListByUser"
	list := []order.Order{}
	if limit <= 0 {
		return list, nil
	}
	db, _, err := s.sh.ForUser(userID)
	if err != nil {
		return nil, errs.E(op, err)
	}
	q, args := `SELECT `+orderColumns+` FROM orders WHERE user_id = ? AND status <> '`+statusTombstone+`'`, []any{userID}
	if after != nil {
		q += ` AND (created_at < ? OR (created_at = ? AND id < ?))`
		args = append(args, after.CreatedAtMillis, after.CreatedAtMillis, after.ID)
	}
	// Read-your-writes, from one node for the orders and their items.
	rd := db.Reader(ctx, consistency.ReadYourWrites)
	rows, err := rd.QueryContext(ctx, q+` ORDER BY created_at DESC, id DESC LIMIT ?`, append(args, limit)...)
	if err != nil {
		return nil, errs.E(op, sqldb.NodeError(err))
	}
	var ids []string
	for rows.Next() {
		o, err := scanOrder(rows)
		if err != nil {
			rows.Close()
			return nil, errs.E(op, err)
		}
		list = append(list, o)
		ids = append(ids, o.ID)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, errs.E(op, err)
	}
	if err := fillItems(ctx, rd, list, ids); err != nil {
		return nil, errs.E(op, sqldb.NodeError(err))
	}
	return list, nil
}

// fillItems loads the items of list (whose ids are ids) from db.
func fillItems(ctx context.Context, db sqldb.Querier, list []order.Order, ids []string) error {
	items, err := loadItems(ctx, db, ids, money.Currency)
	if err != nil {
		return err
	}
	for i := range list {
		its := items[list[i].ID]
		if its == nil {
			its = []order.Item{}
		}
		for j := range its {
			its[j].UnitPrice.Currency = list[i].Subtotal.Currency
			its[j].LineTotal.Currency = list[i].Subtotal.Currency
		}
		list[i].Items = its
	}
	return nil
}

// Update changes the order's mutable fields through fn and writes fn's
// event, if any, and then its jobs to the outbox in the same transaction.
func (s *Store) Update(ctx context.Context, id string, fn func(o *order.Order) (*order.Event, error)) (order.Order, error) {
	const op = "orderdb.Update"
	var result order.Order
	db, err := s.nodeOf(ctx, id)
	if err != nil {
		return order.Order{}, errs.E(op, sqldb.NodeError(err))
	}
	err = db.InTx(ctx, func(tx *sqldb.Tx) error {
		o, err := getOrder(ctx, tx, id, db.Dialect == sqldb.Postgres)
		if err != nil {
			return err
		}
		stored := o
		stored.Items = slices.Clone(o.Items)
		ev, err := fn(&o)
		if errors.Is(err, order.ErrNoChange) {
			result = stored
			return nil
		}
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE orders SET status = ?, payment_id = ?, payment_status = ?,
			shipment_id = ?, shipment_status = ?, tracking_number = ?, cancel_reason = ?, updated_at = ?
			WHERE id = ?`,
			o.Status, o.Payment.ID, o.Payment.Status, o.Shipment.ID, o.Shipment.Status, o.Shipment.TrackingNumber,
			o.CancelReason, sqldb.Millis(o.UpdatedAt), id); err != nil {
			return err
		}
		if ev != nil {
			for _, e := range append([]order.Event{*ev}, ev.Jobs...) {
				if err := outbox.Add(ctx, tx, e.Subject, e.ID, e.Data, o.UpdatedAt); err != nil {
					return err
				}
			}
		}
		// Only the mutable fields were saved: answer with exactly what is stored.
		result = stored
		result.Status, result.Payment, result.Shipment = o.Status, o.Payment, o.Shipment
		result.CancelReason, result.UpdatedAt = o.CancelReason, sqldb.FromMillis(sqldb.Millis(o.UpdatedAt))
		return nil
	})
	if err != nil {
		return order.Order{}, errs.E(op, sqldb.NodeError(err))
	}
	return result, nil
}
