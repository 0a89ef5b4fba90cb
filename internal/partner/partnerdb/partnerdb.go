// Package partnerdb is the SQL store of the partner service (SQLite and
// PostgreSQL): partners, their products, sales, the webhook delivery log,
// the outbox of webhook jobs (internal/platform/outbox) and the inbox of
// applied event ids (internal/platform/inbox).
package partnerdb

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"io/fs"
	"strings"
	"time"

	"github.com/globomantics/globomantics/internal/partner"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/inbox"
	"github.com/globomantics/globomantics/internal/platform/money"
	"github.com/globomantics/globomantics/internal/platform/outbox"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
)

// migrations (goose SQL files) are applied in order and never edited once
// released. 00002 and 00003 are outbox.Migration and outbox.MigrationV2,
// 00004 is inbox.Migration (a test keeps the copies equal).
//
//go:embed migrations/*.sql
var migrations embed.FS

// Migrations are the store's goose migrations, for tests and tools.
func Migrations() fs.FS {
	dir, _ := fs.Sub(migrations, "migrations") // the directory is embedded
	return dir
}

// Store is the partner service's SQL store.
type Store struct {
	db *sqldb.DB
}

var _ partner.Store = (*Store)(nil)

// Open returns the store over db after applying its migrations.
func Open(ctx context.Context, db *sqldb.DB) (*Store, error) {
	// Its outbox may share the database with another store's (catalog,
	// order, payment): their copies of outbox.MigrationV2 must not clash.
	dir, err := outbox.SharedMigrations(ctx, db, Migrations(), "00003_outbox_v2.sql")
	if err != nil {
		return nil, err
	}
	if err := db.Migrate(ctx, "partner", dir); err != nil {
		return nil, err
	}
	return &Store{db: db}, nil
}

// DB is the store's database, for the outbox relay.
func (s *Store) DB() *sqldb.DB { return s.db }

func millis(t time.Time) int64 { return sqldb.MillisOrZero(t) }

func fromMillis(ms int64) time.Time { return sqldb.FromMillisOrZero(ms) }

// CreatePartner inserts p; errs.Conflict for a taken id or key hash.
func (s *Store) CreatePartner(ctx context.Context, p partner.PartnerRecord) error {
	const op = "partnerdb.CreatePartner"
	_, err := s.db.ExecContext(ctx, `INSERT INTO partners (id, name, key_hash, webhook_url, webhook_secret, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
		p.ID, p.Name, p.KeyHash, p.WebhookURL, p.WebhookSecret, millis(p.CreatedAt))
	if sqldb.IsUniqueViolation(err) {
		return errs.E(op, errs.Conflict, errs.Msg("partner exists"), err)
	}
	if err != nil {
		return errs.E(op, err)
	}
	return nil
}

const partnerColumns = `id, name, key_hash, webhook_url, webhook_secret, created_at`

type scanner interface{ Scan(dest ...any) error }

func scanPartner(row scanner) (partner.PartnerRecord, error) {
	var (
		p       partner.PartnerRecord
		created int64
	)
	err := row.Scan(&p.ID, &p.Name, &p.KeyHash, &p.WebhookURL, &p.WebhookSecret, &created)
	p.CreatedAt = fromMillis(created)
	return p, err
}

// Partners lists every partner, oldest first.
func (s *Store) Partners(ctx context.Context) ([]partner.Partner, error) {
	const op = "partnerdb.Partners"
	rows, err := s.db.QueryContext(ctx, `SELECT `+partnerColumns+` FROM partners ORDER BY created_at, id`)
	if err != nil {
		return nil, errs.E(op, err)
	}
	defer rows.Close()
	var out []partner.Partner
	for rows.Next() {
		p, err := scanPartner(rows)
		if err != nil {
			return nil, errs.E(op, err)
		}
		out = append(out, p.Partner)
	}
	if err := rows.Err(); err != nil {
		return nil, errs.E(op, err)
	}
	return out, nil
}

func (s *Store) partnerWhere(ctx context.Context, q sqldb.Querier, op, where string, arg any) (partner.PartnerRecord, error) {
	p, err := scanPartner(q.QueryRowContext(ctx, `SELECT `+partnerColumns+` FROM partners WHERE `+where+` = ?`, arg))
	if errors.Is(err, sql.ErrNoRows) {
		return p, errs.E(op, errs.NotFound, errs.Msg("no such partner"), err)
	}
	if err != nil {
		return p, errs.E(op, err)
	}
	return p, nil
}

// Partner returns one partner; errs.NotFound.
func (s *Store) Partner(ctx context.Context, id string) (partner.PartnerRecord, error) {
	return s.partnerWhere(ctx, s.db, "partnerdb.Partner", "id", id)
}

// PartnerByKeyHash returns the partner whose key has this hash;
// errs.NotFound.
func (s *Store) PartnerByKeyHash(ctx context.Context, hash string) (partner.Partner, error) {
	p, err := s.partnerWhere(ctx, s.db, "partnerdb.PartnerByKeyHash", "key_hash", hash)
	return p.Partner, err
}

// SetWebhook sets a partner's webhook URL and secret; errs.NotFound.
func (s *Store) SetWebhook(ctx context.Context, partnerID, url, secret string) error {
	const op = "partnerdb.SetWebhook"
	res, err := s.db.ExecContext(ctx, `UPDATE partners SET webhook_url = ?, webhook_secret = ? WHERE id = ?`, url, secret, partnerID)
	if err != nil {
		return errs.E(op, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return errs.E(op, err)
	} else if n == 0 {
		return errs.E(op, errs.NotFound, errs.Msg("no such partner"))
	}
	return nil
}

const productColumns = `id, partner_id, product_id, status, name, description, category, price, currency, stock, thumbnails, listing_since, created_at`

func scanProduct(row scanner) (partner.ProductRecord, error) {
	var (
		p                    partner.ProductRecord
		productID            sql.NullString
		thumbs               string
		listingSince, create int64
	)
	err := row.Scan(&p.ID, &p.PartnerID, &productID, &p.Status, &p.Name, &p.Description, &p.Category,
		&p.Price.Amount, &p.Price.Currency, &p.Stock, &thumbs, &listingSince, &create)
	if err != nil {
		return p, err
	}
	p.ProductID = productID.String
	p.ListingSince, p.CreatedAt = fromMillis(listingSince), fromMillis(create)
	if thumbs != "" && thumbs != "{}" {
		if err := json.Unmarshal([]byte(thumbs), &p.ThumbnailKeys); err != nil {
			return p, err
		}
	}
	return p, nil
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func marshalThumbs(keys map[string]string) (string, error) {
	if len(keys) == 0 {
		return "{}", nil
	}
	b, err := json.Marshal(keys)
	return string(b), err
}

// CreateProduct inserts p; errs.Conflict for a taken id.
func (s *Store) CreateProduct(ctx context.Context, p partner.ProductRecord) error {
	const op = "partnerdb.CreateProduct"
	thumbs, err := marshalThumbs(p.ThumbnailKeys)
	if err != nil {
		return errs.E(op, err)
	}
	_, err = s.db.ExecContext(ctx, `INSERT INTO partner_products (`+productColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		p.ID, p.PartnerID, nullable(p.ProductID), p.Status, p.Name, p.Description, p.Category,
		p.Price.Amount, currency(p.Price), p.Stock, thumbs, millis(p.ListingSince), millis(p.CreatedAt))
	if sqldb.IsUniqueViolation(err) {
		return errs.E(op, errs.Conflict, errs.Msg("product exists"), err)
	}
	if err != nil {
		return errs.E(op, err)
	}
	return nil
}

func currency(m money.Money) string {
	if m.Currency == "" {
		return money.Currency
	}
	return m.Currency
}

// Product returns a partner's product; errs.NotFound also for another
// partner's.
func (s *Store) Product(ctx context.Context, partnerID, listingID string) (partner.ProductRecord, error) {
	const op = "partnerdb.Product"
	p, err := scanProduct(s.db.QueryRowContext(ctx, `SELECT `+productColumns+` FROM partner_products WHERE id = ? AND partner_id = ?`, listingID, partnerID))
	if errors.Is(err, sql.ErrNoRows) {
		return p, errs.E(op, errs.NotFound, errs.Msg("no such product"), err)
	}
	if err != nil {
		return p, errs.E(op, err)
	}
	return p, nil
}

// Products lists a partner's products, newest first, at most limit.
func (s *Store) Products(ctx context.Context, partnerID string, limit int) ([]partner.ProductRecord, error) {
	const op = "partnerdb.Products"
	rows, err := s.db.QueryContext(ctx, `SELECT `+productColumns+` FROM partner_products WHERE partner_id = ?
		ORDER BY created_at DESC, id DESC LIMIT ?`, partnerID, limit)
	if err != nil {
		return nil, errs.E(op, err)
	}
	return collect(op, rows, scanProduct)
}

func collect[T any](op string, rows *sql.Rows, scan func(scanner) (T, error)) ([]T, error) {
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, errs.E(op, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, errs.E(op, err)
	}
	return out, nil
}

// forUpdate is the row lock of a read-modify-write on PostgreSQL (a SQLite
// transaction holds the write lock already).
func (s *Store) forUpdate() string {
	if s.db.Dialect == sqldb.Postgres {
		return ` FOR UPDATE`
	}
	return ``
}

// UpdateProduct changes a partner's product in one transaction, its row
// locked; errs.NotFound also for another partner's.
func (s *Store) UpdateProduct(ctx context.Context, partnerID, listingID string, fn func(*partner.ProductRecord) error) (partner.ProductRecord, error) {
	const op = "partnerdb.UpdateProduct"
	var out partner.ProductRecord
	err := s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		p, err := scanProduct(tx.QueryRowContext(ctx, `SELECT `+productColumns+` FROM partner_products WHERE id = ? AND partner_id = ?`+s.forUpdate(), listingID, partnerID))
		if errors.Is(err, sql.ErrNoRows) {
			return errs.E(errs.NotFound, errs.Msg("no such product"), err)
		}
		if err != nil {
			return err
		}
		if err := fn(&p); err != nil {
			return err
		}
		thumbs, err := marshalThumbs(p.ThumbnailKeys)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE partner_products SET product_id = ?, status = ?, name = ?, description = ?, category = ?,
			price = ?, currency = ?, stock = ?, thumbnails = ?, listing_since = ? WHERE id = ?`,
			nullable(p.ProductID), p.Status, p.Name, p.Description, p.Category, p.Price.Amount, currency(p.Price), p.Stock,
			thumbs, millis(p.ListingSince), p.ID)
		if sqldb.IsUniqueViolation(err) {
			return errs.E(errs.Conflict, errs.Msg("the catalog product has another owner"), err)
		}
		out = p
		return err
	})
	if err != nil {
		return partner.ProductRecord{}, errs.E(op, err)
	}
	return out, nil
}

// Apply runs fn with the inbox record of msgID in one transaction.
func (s *Store) Apply(ctx context.Context, msgID string, now time.Time, fn func(partner.Tx) error) (bool, error) {
	var fresh bool
	err := s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		var err error
		fresh, err = inbox.Apply(ctx, tx, partner.ConsumerName, msgID, now)
		if err != nil || !fresh {
			return err
		}
		return fn(&storeTx{s: s, tx: tx})
	})
	if err != nil {
		return false, errs.E("partnerdb.Apply", err)
	}
	return fresh, nil
}

// storeTx is partner.Tx inside one of Apply's transactions.
type storeTx struct {
	s  *Store
	tx *sqldb.Tx
}

func (t *storeTx) ProductsByCatalogID(ctx context.Context, productIDs []string) ([]partner.ProductRecord, error) {
	if len(productIDs) == 0 {
		return nil, nil
	}
	args := make([]any, len(productIDs))
	for i, id := range productIDs {
		args[i] = id
	}
	rows, err := t.tx.QueryContext(ctx, `SELECT `+productColumns+` FROM partner_products WHERE product_id IN (?`+
		strings.Repeat(", ?", len(productIDs)-1)+`) ORDER BY id`, args...)
	if err != nil {
		return nil, err
	}
	return collect("partnerdb.ProductsByCatalogID", rows, scanProduct)
}

func (t *storeTx) ListingInFlight(ctx context.Context, since time.Time) (bool, error) {
	var n int
	err := t.tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM partner_products WHERE status = ? AND listing_since > ?`,
		partner.ProductListing, millis(since)).Scan(&n)
	return n > 0, err
}

func (t *storeTx) SetThumbnails(ctx context.Context, listingID string, keys map[string]string) error {
	thumbs, err := marshalThumbs(keys)
	if err != nil {
		return err
	}
	_, err = t.tx.ExecContext(ctx, `UPDATE partner_products SET thumbnails = ?, status = ? WHERE id = ?`, thumbs, partner.ProductReady, listingID)
	return err
}

func (t *storeTx) Partner(ctx context.Context, id string) (partner.PartnerRecord, error) {
	return t.s.partnerWhere(ctx, t.tx, "partnerdb.Partner", "id", id)
}

func (t *storeTx) AddSale(ctx context.Context, r partner.SaleRecord) error {
	_, err := t.tx.ExecContext(ctx, `INSERT INTO sales (order_id, product_id, partner_id, listing_id, quantity, amount, currency, sold_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (order_id, product_id) DO UPDATE SET quantity = sales.quantity + excluded.quantity, amount = sales.amount + excluded.amount`,
		r.OrderID, r.ProductID, r.PartnerID, r.ListingID, r.Quantity, r.Amount.Amount, currency(r.Amount), millis(r.SoldAt))
	return err
}

func (t *storeTx) AddDelivery(ctx context.Context, d partner.Delivery, job *partner.WebhookRequested) error {
	var next int64
	if d.NextAttemptAt != nil {
		next = millis(*d.NextAttemptAt)
	}
	_, err := t.tx.ExecContext(ctx, `INSERT INTO webhook_deliveries (id, partner_id, event_type, payload, status, attempts,
		last_status_code, last_error, last_duration_ms, next_attempt_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		d.ID, d.PartnerID, d.EventType, string(d.Payload), d.Status, d.Attempts, d.LastStatusCode, d.LastError, d.LastDurationMS,
		next, millis(d.CreatedAt), millis(d.UpdatedAt))
	if err != nil || job == nil {
		return err
	}
	return outbox.Add(ctx, t.tx, partner.SubjectWebhookJob, d.ID, job, d.CreatedAt)
}

// Sales lists a partner's sales, newest first, and the totals of all.
func (s *Store) Sales(ctx context.Context, partnerID string, limit int) ([]partner.Sale, int, int64, error) {
	const op = "partnerdb.Sales"
	var units, revenue int64
	if err := s.db.QueryRowContext(ctx, `SELECT COALESCE(SUM(quantity), 0), COALESCE(SUM(amount), 0) FROM sales WHERE partner_id = ?`,
		partnerID).Scan(&units, &revenue); err != nil {
		return nil, 0, 0, errs.E(op, err)
	}
	rows, err := s.db.QueryContext(ctx, `SELECT order_id, product_id, listing_id, quantity, amount, currency, sold_at FROM sales
		WHERE partner_id = ? ORDER BY sold_at DESC, order_id DESC, product_id LIMIT ?`, partnerID, limit)
	if err != nil {
		return nil, 0, 0, errs.E(op, err)
	}
	sales, err := collect(op, rows, func(row scanner) (partner.Sale, error) {
		var (
			sl   partner.Sale
			sold int64
		)
		err := row.Scan(&sl.OrderID, &sl.ProductID, &sl.ListingID, &sl.Quantity, &sl.Amount.Amount, &sl.Amount.Currency, &sold)
		sl.SoldAt = fromMillis(sold)
		return sl, err
	})
	return sales, int(units), revenue, err
}

const deliveryColumns = `id, partner_id, event_type, payload, status, attempts, last_status_code, last_error, last_duration_ms,
	next_attempt_at, created_at, updated_at`

func scanDelivery(row scanner) (partner.Delivery, error) {
	var (
		d                      partner.Delivery
		payload                string
		next, created, updated int64
	)
	err := row.Scan(&d.ID, &d.PartnerID, &d.EventType, &payload, &d.Status, &d.Attempts, &d.LastStatusCode, &d.LastError,
		&d.LastDurationMS, &next, &created, &updated)
	d.Payload = json.RawMessage(payload)
	if next != 0 {
		t := fromMillis(next)
		d.NextAttemptAt = &t
	}
	d.CreatedAt, d.UpdatedAt = fromMillis(created), fromMillis(updated)
	return d, err
}

// Deliveries lists a partner's delivery log, newest first.
func (s *Store) Deliveries(ctx context.Context, partnerID string, limit int) ([]partner.Delivery, error) {
	const op = "partnerdb.Deliveries"
	rows, err := s.db.QueryContext(ctx, `SELECT `+deliveryColumns+` FROM webhook_deliveries WHERE partner_id = ?
		ORDER BY created_at DESC, id DESC LIMIT ?`, partnerID, limit)
	if err != nil {
		return nil, errs.E(op, err)
	}
	return collect(op, rows, scanDelivery)
}

// Delivery returns one delivery; errs.NotFound.
func (s *Store) Delivery(ctx context.Context, id string) (partner.Delivery, error) {
	const op = "partnerdb.Delivery"
	d, err := scanDelivery(s.db.QueryRowContext(ctx, `SELECT `+deliveryColumns+` FROM webhook_deliveries WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return d, errs.E(op, errs.NotFound, errs.Msg("no such delivery"), err)
	}
	if err != nil {
		return d, errs.E(op, err)
	}
	return d, nil
}

// UpdateDelivery changes a delivery in one transaction, its row locked.
func (s *Store) UpdateDelivery(ctx context.Context, id string, fn func(*partner.Delivery) error) (partner.Delivery, error) {
	const op = "partnerdb.UpdateDelivery"
	var out partner.Delivery
	err := s.db.InTx(ctx, func(tx *sqldb.Tx) error {
		d, err := scanDelivery(tx.QueryRowContext(ctx, `SELECT `+deliveryColumns+` FROM webhook_deliveries WHERE id = ?`+s.forUpdate(), id))
		if errors.Is(err, sql.ErrNoRows) {
			return errs.E(errs.NotFound, errs.Msg("no such delivery"), err)
		}
		if err != nil {
			return err
		}
		if err := fn(&d); err != nil {
			return err
		}
		var next int64
		if d.NextAttemptAt != nil {
			next = millis(*d.NextAttemptAt)
		}
		_, err = tx.ExecContext(ctx, `UPDATE webhook_deliveries SET status = ?, attempts = ?, last_status_code = ?, last_error = ?,
			last_duration_ms = ?, next_attempt_at = ?, updated_at = ? WHERE id = ?`,
			d.Status, d.Attempts, d.LastStatusCode, d.LastError, d.LastDurationMS, next, millis(d.UpdatedAt), d.ID)
		out = d
		return err
	})
	if err != nil {
		return partner.Delivery{}, errs.E(op, err)
	}
	return out, nil
}

// Forget deletes inbox records of messages applied before cutoff.
func (s *Store) Forget(ctx context.Context, cutoff time.Time) error {
	if _, err := inbox.Forget(ctx, s.db, cutoff); err != nil {
		return errs.E("partnerdb.Forget", err)
	}
	return nil
}
