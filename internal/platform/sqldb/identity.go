package sqldb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// The identity table records, per service, the shop a database belongs to,
// so that a database that vanished and came back empty, or one taken from
// another shop, is noticed at start instead of silently used.
const identityTable = `CREATE TABLE IF NOT EXISTS globo_identity (
	service TEXT PRIMARY KEY,
	shop_id TEXT NOT NULL,
	created_at BIGINT NOT NULL)`

// identityLockKey is the advisory lock taken while creating the identity
// table on PostgreSQL ("globoidn"), where instances starting at once would
// otherwise race on CREATE TABLE IF NOT EXISTS.
const identityLockKey int64 = 0x676c6f626f69646e

// ensureIdentityTable creates the identity table if it does not exist.
func ensureIdentityTable(ctx context.Context, db *DB) error {
	if db.Dialect != Postgres {
		_, err := db.ExecContext(ctx, identityTable)
		return err
	}
	return db.InTx(ctx, func(tx *Tx) error {
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(?)`, identityLockKey); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, identityTable)
		return err
	})
}

// Identity returns the id of the shop that service's data in db belongs to,
// or "" if db carries none for service (it is new, or was emptied). It
// creates the identity table if it is absent and fails only if db cannot be
// read or written.
func Identity(ctx context.Context, db *DB, service string) (shopID string, err error) {
	if err := ensureIdentityTable(ctx, db); err != nil {
		return "", fmt.Errorf("sqldb: identity of %s: %w", service, err)
	}
	err = db.QueryRowContext(ctx, `SELECT shop_id FROM globo_identity WHERE service = ?`, service).Scan(&shopID)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("sqldb: identity of %s: %w", service, err)
	}
	return shopID, nil
}

// Claim records that service's data in db belongs to shop shopID, unless db
// already carries an identity for service, and returns the identity db
// carries afterwards: shopID if this call (or a concurrent one with the same
// id) wrote it, else the one written first. It never overwrites an identity.
func Claim(ctx context.Context, db *DB, service, shopID string, now time.Time) (string, error) {
	if strings.TrimSpace(shopID) == "" {
		return "", fmt.Errorf("sqldb: claim %s: empty shop id", service)
	}
	if err := ensureIdentityTable(ctx, db); err != nil {
		return "", fmt.Errorf("sqldb: claim %s: %w", service, err)
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO globo_identity (service, shop_id, created_at) VALUES (?, ?, ?)
		ON CONFLICT (service) DO NOTHING`, service, shopID, Millis(now)); err != nil {
		return "", fmt.Errorf("sqldb: claim %s: %w", service, err)
	}
	got, err := Identity(ctx, db, service)
	if err != nil {
		return "", err
	}
	if got == "" {
		return "", fmt.Errorf("sqldb: claim %s: identity not found after writing it", service)
	}
	return got, nil
}

// CheckIntegrity reports an error if db's storage is damaged. On SQLite it
// runs PRAGMA quick_check, which reads every page (so it takes time in
// proportion to the file's size) and fails unless the answer is "ok". On
// PostgreSQL, which verifies its own pages as it reads them, it only checks
// that the server answers a query.
func CheckIntegrity(ctx context.Context, db *DB) error {
	if db.Dialect == Postgres {
		var one int
		if err := db.QueryRowContext(ctx, `SELECT 1`).Scan(&one); err != nil {
			return fmt.Errorf("sqldb: integrity check: %w", err)
		}
		return nil
	}
	rows, err := db.QueryContext(ctx, `PRAGMA quick_check`)
	if err != nil {
		return fmt.Errorf("sqldb: integrity check: %w", err)
	}
	defer rows.Close()
	var problems []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			return fmt.Errorf("sqldb: integrity check: %w", err)
		}
		if line != "ok" {
			problems = append(problems, line)
		}
		if len(problems) >= 5 { // enough to name the damage
			break
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("sqldb: integrity check: %w", err)
	}
	if len(problems) > 0 {
		return fmt.Errorf("sqldb: integrity check failed: %s", strings.Join(problems, "; "))
	}
	return nil
}
