// Package catalogdb is the catalog's store over SQL (SQLite or PostgreSQL):
// categories, products with their stock and image keys, stock reservations,
// and the outbox of catalog events.
package catalogdb

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/globomantics/globomantics/internal/catalog"
	"github.com/globomantics/globomantics/internal/platform/consistency"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/money"
	"github.com/globomantics/globomantics/internal/platform/outbox"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
)

// migrations are the store's goose migrations, applied in order and never
// edited once released.
//
//go:embed migrations/*.sql
var migrations embed.FS

// Store is the SQL catalog store.
type Store struct {
	db *sqldb.DB
}

var _ catalog.Store = (*Store)(nil)

// Open runs the catalog migrations on db and returns the store.
func Open(ctx context.Context, db *sqldb.DB) (*Store, error) {
	dir, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return nil, err
	}
	// Its outbox may share the database with another store's.
	if dir, err = outbox.SharedMigrations(ctx, db, dir, "00005_outbox_v2.sql"); err != nil {
		return nil, err
	}
	if err := db.Migrate(ctx, "catalog", dir); err != nil {
		return nil, err
	}
	return &Store{db: db}, nil
}

// DB is the store's database, for the outbox relay.
func (s *Store) DB() *sqldb.DB { return s.db }

// ListCategories returns every category in display order.
func (s *Store) ListCategories(ctx context.Context) ([]catalog.Category, error) {
	const op = "catalogdb.ListCategories"
	rows, err := s.db.Reader(ctx, consistency.Bounded).QueryContext(ctx, `SELECT id, name FROM categories ORDER BY position, id`)
	if err != nil {
		return nil, errs.E(op, sqldb.NodeError(err))
	}
	defer rows.Close()
	var out []catalog.Category
	for rows.Next() {
		var c catalog.Category
		if err := rows.Scan(&c.ID, &c.Name); err != nil {
			return nil, errs.E(op, sqldb.NodeError(err))
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, errs.E(op, sqldb.NodeError(err))
	}
	return out, nil
}

// EnsureCategories creates or renames the categories, in one transaction;
// their order in cats is their display order.
func (s *Store) EnsureCategories(ctx context.Context, cats []catalog.Category) error {
	const op = "catalogdb.EnsureCategories"
	err := s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		for i, c := range cats {
			_, err := tx.ExecContext(ctx, `INSERT INTO categories (id, name, position) VALUES (?, ?, ?)
				ON CONFLICT (id) DO UPDATE SET name = excluded.name, position = excluded.position`, c.ID, c.Name, i)
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return errs.E(op, sqldb.NodeError(err))
	}
	return nil
}

// HasCategory reports whether the category exists.
func (s *Store) HasCategory(ctx context.Context, id string) (bool, error) {
	var n int
	if err := s.db.Reader(ctx, consistency.ReadYourWrites).QueryRowContext(ctx, `SELECT COUNT(*) FROM categories WHERE id = ?`, id).Scan(&n); err != nil {
		return false, errs.E("catalogdb.HasCategory", sqldb.NodeError(err))
	}
	return n > 0, nil
}

// productColumns are the columns a new product is inserted with; version
// starts at its default, 1.
const productColumns = `id, name, description, category, price_amount, price_currency, stock, image_key, thumbnails, created_at`

// readColumns are the columns scanProduct reads.
const readColumns = productColumns + `, version, updated_at`

type scanner interface{ Scan(dest ...any) error }

func scanProduct(sc scanner) (catalog.Record, error) {
	var (
		r       catalog.Record
		thumb   string
		ms      int64
		updated sql.NullInt64
	)
	if err := sc.Scan(&r.ID, &r.Name, &r.Description, &r.Category, &r.Price.Amount, &r.Price.Currency,
		&r.Stock, &r.ImageKey, &thumb, &ms, &r.Version, &updated); err != nil {
		return r, err
	}
	if updated.Valid {
		r.UpdatedAt = sqldb.FromMillis(updated.Int64)
	}
	if thumb != "" && thumb != "{}" {
		if err := json.Unmarshal([]byte(thumb), &r.ThumbnailKeys); err != nil {
			return r, err
		}
	}
	r.CreatedAt = sqldb.FromMillis(ms)
	return r, nil
}

func collect(rows *sql.Rows) ([]catalog.Record, error) {
	defer rows.Close()
	var out []catalog.Record
	for rows.Next() {
		r, err := scanProduct(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// ListProducts returns up to limit products in id order after the id afterID
// ("" for the first), optionally of one category, by a keyset seek on the
// primary key or the index (category, id).
func (s *Store) ListProducts(ctx context.Context, category, afterID string, limit int) ([]catalog.Record, error) {
	const op = "catalogdb.ListProducts"
	q := `SELECT ` + readColumns + ` FROM products WHERE id > ?`
	args := []any{afterID}
	if category != "" {
		q += ` AND category = ?`
		args = append(args, category)
	}
	q += ` ORDER BY id LIMIT ?`
	args = append(args, limit)
	rows, err := s.db.Reader(ctx, consistency.Bounded).QueryContext(ctx, q, args...)
	if err != nil {
		return nil, errs.E(op, sqldb.NodeError(err))
	}
	out, err := collect(rows)
	if err != nil {
		return nil, errs.E(op, sqldb.NodeError(err))
	}
	return out, nil
}

// GetProduct returns one product; errs.NotFound.
func (s *Store) GetProduct(ctx context.Context, id string) (catalog.Record, error) {
	const op = "catalogdb.GetProduct"
	r, err := scanProduct(s.db.Reader(ctx, consistency.Bounded).QueryRowContext(ctx, `SELECT `+readColumns+` FROM products WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return r, errs.E(op, errs.NotFound, errs.Msg("no such product"), err)
	}
	if err != nil {
		return r, errs.E(op, sqldb.NodeError(err))
	}
	return r, nil
}

// getProductsChunk bounds the number of placeholders in one query.
const getProductsChunk = 200

// GetProducts returns the products that exist among ids, in id order.
func (s *Store) GetProducts(ctx context.Context, ids []string) ([]catalog.Record, error) {
	const op = "catalogdb.GetProducts"
	var out []catalog.Record
	for len(ids) > 0 {
		n := min(len(ids), getProductsChunk)
		chunk := ids[:n]
		ids = ids[n:]
		args := make([]any, len(chunk))
		for i, id := range chunk {
			args[i] = id
		}
		q := `SELECT ` + readColumns + ` FROM products WHERE id IN (?` + strings.Repeat(`, ?`, len(chunk)-1) + `) ORDER BY id`
		// Primary: checkout prices orders with these.
		rows, err := s.db.QueryContext(ctx, q, args...)
		if err != nil {
			return nil, errs.E(op, sqldb.NodeError(err))
		}
		recs, err := collect(rows)
		if err != nil {
			return nil, errs.E(op, sqldb.NodeError(err))
		}
		out = append(out, recs...)
	}
	return out, nil
}

// CreateProduct inserts the product, its ItemListed outbox event and its
// ThumbnailRequested job in one transaction. errs.Conflict for a taken id, errs.Invalid for an unknown
// category; in both cases nothing is written.
func (s *Store) CreateProduct(ctx context.Context, r catalog.Record) error {
	const op = "catalogdb.CreateProduct"
	thumbs, err := marshalThumbs(r.ThumbnailKeys)
	if err != nil {
		return errs.E(op, sqldb.NodeError(err))
	}
	err = s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM categories WHERE id = ?`, r.Category).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return errs.E(errs.Invalid, errs.Msg("unknown category %q", r.Category))
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO products (`+productColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			r.ID, r.Name, r.Description, r.Category, r.Price.Amount, currency(r.Price), r.Stock, r.ImageKey, thumbs, sqldb.Millis(r.CreatedAt))
		if err != nil {
			if sqldb.IsUniqueViolation(err) {
				return errs.E(errs.Conflict, errs.Msg("product %s already exists", r.ID), err)
			}
			return err
		}
		ev := catalog.ItemListed{
			ProductID:   r.ID,
			Name:        r.Name,
			Description: r.Description,
			Category:    r.Category,
			Price:       money.Money{Amount: r.Price.Amount, Currency: currency(r.Price)},
			ImageKey:    r.ImageKey,
			ListedAt:    r.ListedAt(),
		}
		if err := outbox.Add(ctx, tx, catalog.SubjectItemListed, r.ID, ev, r.CreatedAt); err != nil {
			return err
		}
		// The thumbnails are a job for one worker (work-queue stream
		// GLOBO_JOBS), enqueued with the listing: never one without the other.
		job := catalog.ThumbnailRequested{ProductID: r.ID, ImageKey: r.ImageKey, RequestedAt: r.CreatedAt.UTC()}
		return outbox.Add(ctx, tx, catalog.SubjectThumbnailRequested, catalog.ThumbnailJobID(r.ID, r.ImageKey), job, r.CreatedAt)
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

func marshalThumbs(keys map[string]string) (string, error) {
	if len(keys) == 0 {
		return "{}", nil
	}
	b, err := json.Marshal(keys) // map keys are sorted: stable text
	return string(b), err
}

// SetThumbnails replaces the product's thumbnail keys and, when they change,
// writes the ThumbnailsReady event to the outbox in the same transaction (on
// the primary, the row locked on PostgreSQL): keys equal to the stored ones
// are a no-op that writes no event, so a redelivered thumbnail job announces
// nothing twice. errs.NotFound.
func (s *Store) SetThumbnails(ctx context.Context, id string, keys map[string]string, now time.Time) error {
	const op = "catalogdb.SetThumbnails"
	thumbs, err := marshalThumbs(keys)
	if err != nil {
		return errs.E(op, sqldb.NodeError(err))
	}
	q := `SELECT thumbnails FROM products WHERE id = ?`
	if s.db.Dialect == sqldb.Postgres {
		q += ` FOR UPDATE`
	}
	err = s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		var old sql.NullString
		err := tx.QueryRowContext(ctx, q, id).Scan(&old)
		if errors.Is(err, sql.ErrNoRows) {
			return errs.E(errs.NotFound, errs.Msg("no such product"), err)
		}
		if err != nil {
			return err
		}
		if old.String == thumbs {
			return nil
		}
		if _, err := tx.ExecContext(ctx, `UPDATE products SET thumbnails = ? WHERE id = ?`, thumbs, id); err != nil {
			return err
		}
		ev := catalog.ThumbnailsReady{ProductID: id, Thumbnails: keys, ReadyAt: now.UTC()}
		return outbox.Add(ctx, tx, catalog.SubjectThumbnailsReady, id+"/thumbnails/"+strconv.FormatInt(sqldb.Millis(now), 10), ev, now)
	})
	if err != nil {
		return errs.E(op, sqldb.NodeError(err))
	}
	return nil
}

// UpdateProduct applies ch in one transaction on the primary: it locks the
// product's row (SELECT ... FOR UPDATE on PostgreSQL; a SQLite transaction
// holds the write lock), checks ch.IfVersion against it, and, when a field
// actually changes, writes the fields, version+1 and updated_at, and the
// ProductChanged event to the outbox. Of concurrent changes made against one
// version, exactly one succeeds. errs.NotFound, errs.Conflict for another
// version, errs.Invalid for an unknown category; nothing is written then.
func (s *Store) UpdateProduct(ctx context.Context, id string, ch catalog.ProductChange, now time.Time) (catalog.Record, error) {
	const op = "catalogdb.UpdateProduct"
	q := `SELECT ` + readColumns + ` FROM products WHERE id = ?`
	if s.db.Dialect == sqldb.Postgres {
		q += ` FOR UPDATE`
	}
	var out catalog.Record
	err := s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		r, err := scanProduct(tx.QueryRowContext(ctx, q, id))
		if errors.Is(err, sql.ErrNoRows) {
			return errs.E(errs.NotFound, errs.Msg("no such product"), err)
		}
		if err != nil {
			return err
		}
		if ch.IfVersion != 0 && ch.IfVersion != r.Version {
			return errs.E(errs.Conflict, errs.Msg("the product was changed meanwhile: it is at version %d, not %d", r.Version, ch.IfVersion))
		}
		var changed []string
		if ch.Name != nil && *ch.Name != r.Name {
			r.Name = *ch.Name
			changed = append(changed, catalog.FieldName)
		}
		if ch.Description != nil && *ch.Description != r.Description {
			r.Description = *ch.Description
			changed = append(changed, catalog.FieldDescription)
		}
		if ch.Category != nil && *ch.Category != r.Category {
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM categories WHERE id = ?`, *ch.Category).Scan(&n); err != nil {
				return err
			}
			if n == 0 {
				return errs.E(errs.Invalid, errs.Msg("unknown category %q", *ch.Category))
			}
			r.Category = *ch.Category
			changed = append(changed, catalog.FieldCategory)
		}
		if ch.Price != nil && (ch.Price.Amount != r.Price.Amount || currency(*ch.Price) != r.Price.Currency) {
			r.Price = money.Money{Amount: ch.Price.Amount, Currency: currency(*ch.Price)}
			changed = append(changed, catalog.FieldPrice)
		}
		if ch.Stock != nil && *ch.Stock != r.Stock {
			r.Stock = *ch.Stock
			changed = append(changed, catalog.FieldStock)
		}
		if len(changed) == 0 {
			out = r
			return nil // nothing changes: nothing is written
		}
		r.Version++
		r.UpdatedAt = now
		res, err := tx.ExecContext(ctx, `UPDATE products SET name = ?, description = ?, category = ?, price_amount = ?,
			price_currency = ?, stock = ?, version = ?, updated_at = ? WHERE id = ? AND version = ?`,
			r.Name, r.Description, r.Category, r.Price.Amount, r.Price.Currency, r.Stock, r.Version, sqldb.Millis(now),
			id, r.Version-1)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n != 1 {
			// Cannot happen under the row lock; refuse rather than
			// publish an event for a change that was not made.
			return errs.E(errs.Conflict, errs.Msg("the product was changed meanwhile"))
		}
		ev := catalog.ProductChanged{
			ProductID:   r.ID,
			Version:     r.Version,
			Changed:     changed,
			Name:        r.Name,
			Description: r.Description,
			Category:    r.Category,
			Price:       r.Price,
			Stock:       r.Stock,
			ChangedAt:   now.UTC(),
			ListedAt:    r.ListedAt(),
		}
		if err := outbox.Add(ctx, tx, catalog.SubjectProductChanged, r.ID+"/v"+strconv.FormatInt(r.Version, 10), ev, now); err != nil {
			return err
		}
		out = r
		return nil
	})
	if err != nil {
		return catalog.Record{}, errs.E(op, sqldb.NodeError(err))
	}
	return out, nil
}

// Reserve takes the lines' quantities out of stock in one transaction and
// records them under reservationID, live until expiresAt. The decrement is a
// conditional UPDATE (stock >= quantity), so concurrent reservations can never
// drive stock negative on either engine; lines are applied in product id
// order so that concurrent transactions lock rows in the same order. A
// reservation id that exists (live, committed or released) makes it a no-op.
func (s *Store) Reserve(ctx context.Context, reservationID string, lines []catalog.Line, now, expiresAt time.Time) error {
	const op = "catalogdb.Reserve"
	sorted := mergeLines(lines)
	err := s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO reservations (id, created_at, expires_at) VALUES (?, ?, ?) ON CONFLICT (id) DO NOTHING`,
			reservationID, sqldb.Millis(now), sqldb.Millis(expiresAt))
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return nil // seen before: a repeat is a no-op
		}
		for _, l := range sorted {
			res, err := tx.ExecContext(ctx, `UPDATE products SET stock = stock - ? WHERE id = ? AND stock >= ?`,
				l.Quantity, l.ProductID, l.Quantity)
			if err != nil {
				return err
			}
			n, err := res.RowsAffected()
			if err != nil {
				return err
			}
			if n == 0 {
				return shortage(ctx, tx, l)
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO reservation_lines (reservation_id, product_id, quantity) VALUES (?, ?, ?)`,
				reservationID, l.ProductID, l.Quantity); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return errs.E(op, sqldb.NodeError(err))
	}
	return nil
}

// shortage explains why a conditional decrement changed no row. The
// message reaches the customer (the checkout page, the API's problem), so it
// names the product by its name, never by its id.
func shortage(ctx context.Context, tx *sqldb.Tx, l catalog.Line) error {
	var (
		name  string
		stock int
	)
	err := tx.QueryRowContext(ctx, `SELECT name, stock FROM products WHERE id = ?`, l.ProductID).Scan(&name, &stock)
	if errors.Is(err, sql.ErrNoRows) {
		return errs.E(errs.NotFound, errs.Msg("a product in the order is no longer sold"), errors.New("no such product: "+l.ProductID))
	}
	if err != nil {
		return err
	}
	if stock == 0 {
		return errs.E(errs.Conflict, errs.Msg("%s is sold out", name))
	}
	return errs.E(errs.Conflict, errs.Msg("only %d of %s left in stock, %d wanted", stock, name, l.Quantity))
}

// mergeLines adds up lines of the same product and sorts them by product id.
func mergeLines(lines []catalog.Line) []catalog.Line {
	at := make(map[string]int, len(lines))
	out := make([]catalog.Line, 0, len(lines))
	for _, l := range lines {
		if i, ok := at[l.ProductID]; ok {
			out[i].Quantity += l.Quantity
			continue
		}
		at[l.ProductID] = len(out)
		out = append(out, l)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ProductID < out[j].ProductID })
	return out
}

// reservationState is what a reservation's row says of it.
type reservationState struct {
	found                          bool
	releasedAt, committedAt, expAt sql.NullInt64
}

func loadState(ctx context.Context, q sqldb.Querier, id string) (reservationState, error) {
	var st reservationState
	err := q.QueryRowContext(ctx, `SELECT released_at, committed_at, expires_at FROM reservations WHERE id = ?`, id).
		Scan(&st.releasedAt, &st.committedAt, &st.expAt)
	if errors.Is(err, sql.ErrNoRows) {
		return st, nil
	}
	st.found = err == nil
	return st, err
}

// expiredBy reports whether the reservation was put back by the sweeper (or
// released only after its expiry), as opposed to released by its owner.
func (st reservationState) expiredBy() bool {
	return st.releasedAt.Valid && st.expAt.Valid && st.releasedAt.Int64 >= st.expAt.Int64
}

var errExpired = errs.Msg("the reservation has expired")

// Commit makes a live, unexpired reservation final, once, by a conditional
// UPDATE: of a commit and a release (or the sweeper) racing, exactly one
// changes the row. errs.Conflict for a released, expired or unknown
// reservation; nothing is written then.
func (s *Store) Commit(ctx context.Context, reservationID string, now time.Time) error {
	const op = "catalogdb.Commit"
	err := s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE reservations SET committed_at = ?
			WHERE id = ? AND released_at IS NULL AND committed_at IS NULL AND (expires_at IS NULL OR expires_at > ?)`,
			sqldb.Millis(now), reservationID, sqldb.Millis(now))
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 1 {
			return err
		}
		st, err := loadState(ctx, tx, reservationID)
		switch {
		case err != nil:
			return err
		case !st.found:
			return errs.E(errs.Conflict, errs.Msg("no such reservation: %s", reservationID))
		case st.committedAt.Valid && !st.releasedAt.Valid:
			return nil // committed before: a repeat is a no-op
		case st.committedAt.Valid, st.releasedAt.Valid && !st.expiredBy():
			return errs.E(errs.Conflict, errs.Msg("the reservation was released"))
		}
		return errs.E(errs.Conflict, errExpired) // swept, or past its expiry and not swept yet
	})
	if err != nil {
		return errs.E(op, sqldb.NodeError(err))
	}
	return nil
}

// Release puts a reservation's recorded quantities back, once, in one
// transaction. An unknown reservation is recorded as released (with no lines)
// so that a Reserve with its id arriving late does nothing. A committed
// reservation is released too (the sale is undone: a checkout rolling back
// before it took the money); after that it can no longer be committed.
func (s *Store) Release(ctx context.Context, reservationID string, now time.Time) ([]catalog.Line, error) {
	const op = "catalogdb.Release"
	const release = `UPDATE reservations SET released_at = ? WHERE id = ? AND released_at IS NULL`
	var lines []catalog.Line
	err := s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		lines = nil
		res, err := tx.ExecContext(ctx, release, sqldb.Millis(now), reservationID)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if n == 0 { // unknown, already released, or reserved by a transaction not yet committed
			res, err := tx.ExecContext(ctx, `INSERT INTO reservations (id, created_at, released_at) VALUES (?, ?, ?) ON CONFLICT (id) DO NOTHING`,
				reservationID, sqldb.Millis(now), sqldb.Millis(now))
			if err != nil {
				return err
			}
			if ins, err := res.RowsAffected(); err != nil || ins == 1 {
				return err // unknown: remembered as released
			}
			// The id exists. On PostgreSQL the insert may have waited for a
			// Reserve that committed meanwhile, which the first UPDATE could
			// not see: this statement does, and releases it.
			res, err = tx.ExecContext(ctx, release, sqldb.Millis(now), reservationID)
			if err != nil {
				return err
			}
			if n, err = res.RowsAffected(); err != nil {
				return err
			}
			if n == 0 {
				return nil // already released
			}
		}
		lines, err = putBack(ctx, tx, reservationID)
		return err
	})
	if err != nil {
		return nil, errs.E(op, sqldb.NodeError(err))
	}
	return lines, nil
}

// putBack adds a just-released reservation's lines back to stock, in product
// id order, and returns them.
func putBack(ctx context.Context, tx *sqldb.Tx, reservationID string) ([]catalog.Line, error) {
	rows, err := tx.QueryContext(ctx, `SELECT product_id, quantity FROM reservation_lines WHERE reservation_id = ? ORDER BY product_id`, reservationID)
	if err != nil {
		return nil, err
	}
	var lines []catalog.Line
	for rows.Next() {
		var l catalog.Line
		if err := rows.Scan(&l.ProductID, &l.Quantity); err != nil {
			rows.Close()
			return nil, err
		}
		lines = append(lines, l)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for _, l := range lines {
		if _, err := tx.ExecContext(ctx, `UPDATE products SET stock = stock + ? WHERE id = ?`, l.Quantity, l.ProductID); err != nil {
			return nil, err
		}
	}
	return lines, nil
}

// Expired returns the ids of up to limit live reservations whose expiry is
// at or before now, soonest expired first, from the primary (by the index
// reservations_live_expiry).
func (s *Store) Expired(ctx context.Context, now time.Time, limit int) ([]string, error) {
	const op = "catalogdb.Expired"
	rows, err := s.db.QueryContext(ctx, `SELECT id FROM reservations
		WHERE released_at IS NULL AND committed_at IS NULL AND expires_at <= ?
		ORDER BY expires_at, id LIMIT ?`, sqldb.Millis(now), limit)
	if err != nil {
		return nil, errs.E(op, sqldb.NodeError(err))
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, errs.E(op, sqldb.NodeError(err))
		}
		out = append(out, id)
	}
	if err := rows.Err(); err != nil {
		return nil, errs.E(op, sqldb.NodeError(err))
	}
	return out, nil
}

// ReleaseExpired releases the reservation if it is still live and expired at
// now, by a conditional UPDATE in one transaction with putting its lines
// back: of concurrent sweepers (and a racing Commit or Release) exactly one
// changes the row. It reports whether this call released it.
func (s *Store) ReleaseExpired(ctx context.Context, reservationID string, now time.Time) ([]catalog.Line, bool, error) {
	const op = "catalogdb.ReleaseExpired"
	var (
		lines    []catalog.Line
		released bool
	)
	err := s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		lines, released = nil, false
		res, err := tx.ExecContext(ctx, `UPDATE reservations SET released_at = ?
			WHERE id = ? AND released_at IS NULL AND committed_at IS NULL AND expires_at <= ?`,
			sqldb.Millis(now), reservationID, sqldb.Millis(now))
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return err
		}
		released = true
		lines, err = putBack(ctx, tx, reservationID)
		return err
	})
	if err != nil {
		return nil, false, errs.E(op, sqldb.NodeError(err))
	}
	return lines, released, nil
}

// StockLevels returns every product's stock with the units of its live and
// committed reservation lines, in one statement on the primary (one
// consistent snapshot), by product id.
func (s *Store) StockLevels(ctx context.Context) ([]catalog.StockLevel, error) {
	const op = "catalogdb.StockLevels"
	rows, err := s.db.QueryContext(ctx, `SELECT p.id, p.stock,
			COALESCE(SUM(CASE WHEN r.released_at IS NULL AND r.committed_at IS NULL THEN l.quantity ELSE 0 END), 0),
			COALESCE(SUM(CASE WHEN r.released_at IS NULL AND r.committed_at IS NOT NULL THEN l.quantity ELSE 0 END), 0)
		FROM products p
		LEFT JOIN reservation_lines l ON l.product_id = p.id
		LEFT JOIN reservations r ON r.id = l.reservation_id
		GROUP BY p.id, p.stock
		ORDER BY p.id`)
	if err != nil {
		return nil, errs.E(op, sqldb.NodeError(err))
	}
	defer rows.Close()
	out := []catalog.StockLevel{}
	for rows.Next() {
		var l catalog.StockLevel
		if err := rows.Scan(&l.ProductID, &l.Stock, &l.Reserved, &l.Sold); err != nil {
			return nil, errs.E(op, sqldb.NodeError(err))
		}
		out = append(out, l)
	}
	if err := rows.Err(); err != nil {
		return nil, errs.E(op, sqldb.NodeError(err))
	}
	return out, nil
}

// CountProducts returns the number of products, as the primary has it
// (seeding decides on it).
func (s *Store) CountProducts(ctx context.Context) (int, error) {
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM products`).Scan(&n); err != nil {
		return 0, errs.E("catalogdb.CountProducts", sqldb.NodeError(err))
	}
	return n, nil
}
