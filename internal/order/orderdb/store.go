// Package orderdb is the SQL store of the order service: the orders and
// order_items tables, and the outbox that carries OrderPlaced events.
package orderdb

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"strings"

	"github.com/globomantics/globomantics/internal/order"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/money"
	"github.com/globomantics/globomantics/internal/platform/outbox"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
)

// migrations are applied in order and never edited once released.
var migrations = []string{
	`CREATE TABLE orders (
		id TEXT PRIMARY KEY,
		user_id TEXT NOT NULL,
		email TEXT NOT NULL,
		status TEXT NOT NULL,
		currency TEXT NOT NULL,
		subtotal BIGINT NOT NULL,
		shipping_cost BIGINT NOT NULL,
		total BIGINT NOT NULL,
		ship_name TEXT NOT NULL,
		ship_line1 TEXT NOT NULL,
		ship_city TEXT NOT NULL,
		ship_postal_code TEXT NOT NULL,
		ship_country TEXT NOT NULL,
		payment_id TEXT NOT NULL,
		payment_status TEXT NOT NULL,
		shipment_id TEXT NOT NULL,
		shipment_status TEXT NOT NULL,
		tracking_number TEXT NOT NULL,
		cancel_reason TEXT NOT NULL,
		created_at BIGINT NOT NULL,
		updated_at BIGINT NOT NULL
	);
	CREATE INDEX orders_user_created ON orders (user_id, created_at, id)`,
	`CREATE TABLE order_items (
		order_id TEXT NOT NULL REFERENCES orders (id),
		line_no INTEGER NOT NULL,
		product_id TEXT NOT NULL,
		name TEXT NOT NULL,
		quantity INTEGER NOT NULL,
		unit_price BIGINT NOT NULL,
		line_total BIGINT NOT NULL,
		PRIMARY KEY (order_id, line_no)
	)`,
	outbox.Migration,
}

// Store keeps orders in a SQL database.
type Store struct {
	db *sqldb.DB
}

var _ order.Store = (*Store)(nil)

// Open returns the store over db after applying its migrations.
func Open(ctx context.Context, db *sqldb.DB) (*Store, error) {
	if err := db.Migrate(ctx, "order", migrations); err != nil {
		return nil, err
	}
	return &Store{db: db}, nil
}

const orderColumns = `id, user_id, email, status, currency, subtotal, shipping_cost, total,
	ship_name, ship_line1, ship_city, ship_postal_code, ship_country,
	payment_id, payment_status, shipment_id, shipment_status, tracking_number,
	cancel_reason, created_at, updated_at`

// Create inserts o and its items, or returns the existing order with o.ID.
func (s *Store) Create(ctx context.Context, o order.Order) (order.Order, bool, error) {
	const op = "orderdb.Create"
	created := false
	err := s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		created = false
		a := o.ShippingAddress
		res, err := tx.ExecContext(ctx, `INSERT INTO orders (`+orderColumns+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (id) DO NOTHING`,
			o.ID, o.UserID, o.Email, o.Status, currency(o.Total), o.Subtotal.Amount, o.ShippingCost.Amount, o.Total.Amount,
			a.Name, a.Line1, a.City, a.PostalCode, a.Country,
			o.Payment.ID, o.Payment.Status, o.Shipment.ID, o.Shipment.Status, o.Shipment.TrackingNumber,
			o.CancelReason, sqldb.Millis(o.CreatedAt), sqldb.Millis(o.UpdatedAt))
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if n == 0 {
			return nil // it exists: leave it as it is
		}
		for i, it := range o.Items {
			if _, err := tx.ExecContext(ctx, `INSERT INTO order_items
				(order_id, line_no, product_id, name, quantity, unit_price, line_total)
				VALUES (?, ?, ?, ?, ?, ?, ?)`,
				o.ID, i+1, it.ProductID, it.Name, it.Quantity, it.UnitPrice.Amount, it.LineTotal.Amount); err != nil {
				return err
			}
		}
		created = true
		return nil
	})
	if err != nil {
		return order.Order{}, false, errs.E(op, err)
	}
	stored, err := s.Get(ctx, o.ID)
	if err != nil {
		return order.Order{}, false, errs.E(op, err)
	}
	return stored, created, nil
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
	o, err := getOrder(ctx, s.db, id, false)
	if err != nil {
		return order.Order{}, errs.E(op, err)
	}
	return o, nil
}

// getOrder reads one order and its items through q; forUpdate locks the
// order's row until the end of the transaction on PostgreSQL (SQLite
// transactions already hold the write lock).
func getOrder(ctx context.Context, q sqldb.Querier, id string, forUpdate bool) (order.Order, error) {
	query := `SELECT ` + orderColumns + ` FROM orders WHERE id = ?`
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
		&o.CancelReason, &c, &u)
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

// ListByUser returns at most limit of the user's orders after offset, newest first.
func (s *Store) ListByUser(ctx context.Context, userID string, offset, limit int) ([]order.Order, error) {
	const op = "orderdb.ListByUser"
	list := []order.Order{}
	if limit <= 0 {
		return list, nil
	}
	rows, err := s.db.QueryContext(ctx, `SELECT `+orderColumns+` FROM orders WHERE user_id = ?
		ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?`, userID, limit, max(offset, 0))
	if err != nil {
		return nil, errs.E(op, err)
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
	items, err := loadItems(ctx, s.db, ids, money.Currency)
	if err != nil {
		return nil, errs.E(op, err)
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
	return list, nil
}

// Update changes the order's mutable fields through fn and writes fn's
// event, if any, to the outbox in the same transaction.
func (s *Store) Update(ctx context.Context, id string, fn func(o *order.Order) (*order.Event, error)) (order.Order, error) {
	const op = "orderdb.Update"
	var result order.Order
	err := s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		o, err := getOrder(ctx, tx, id, s.db.Dialect == sqldb.Postgres)
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
			if err := outbox.Add(ctx, tx, ev.Subject, ev.ID, ev.Data, o.UpdatedAt); err != nil {
				return err
			}
		}
		// Only the mutable fields were saved: answer with exactly what is stored.
		result = stored
		result.Status, result.Payment, result.Shipment = o.Status, o.Payment, o.Shipment
		result.CancelReason, result.UpdatedAt = o.CancelReason, sqldb.FromMillis(sqldb.Millis(o.UpdatedAt))
		return nil
	})
	if err != nil {
		return order.Order{}, errs.E(op, err)
	}
	return result, nil
}
