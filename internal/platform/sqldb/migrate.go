package sqldb

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"time"

	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/database"
	"github.com/pressly/goose/v3/lock"

	"github.com/globomantics/globomantics/internal/platform/errs"
)

// migrateLockID is the PostgreSQL advisory lock ("globomig") held while any
// component migrates. It is one lock for every component, as before goose,
// so stores sharing a database (catalog and order both create the outbox
// table) never run DDL side by side, and an instance still on the old code
// waits for the same lock during a rolling upgrade.
const migrateLockID int64 = 0x676c6f626f6d6967

// sqliteLockLease bounds how long a crashed migrator's lock on a SQLite file
// blocks the next one.
const sqliteLockLease = 2 * time.Minute

var componentName = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// Migrate applies, in order, the goose SQL migrations in the root of fsys
// (files named like 00001_name.sql, each with a "-- +goose Up" section) that
// are not yet applied to db. Each migration runs in its own transaction
// unless it says "-- +goose NO TRANSACTION"; a failed migration leaves
// nothing behind and stops the run. Applied versions are recorded in the
// table goose_<component>, so several stores may share one database.
//
// Instances starting at once against one database migrate one at a time: on
// PostgreSQL under a session advisory lock, on SQLite under a leased lock
// row. A database migrated by the code before goose (the table
// schema_migrations) is adopted first: its applied versions are recorded in
// the goose table, so nothing is applied twice.
func (db *DB) Migrate(ctx context.Context, component string, fsys fs.FS) error {
	op := "sqldb.Migrate " + component
	if !componentName.MatchString(component) {
		return errs.E(op, errs.Msg("component name %q is not a lower-case identifier", component))
	}
	table := "goose_" + component
	dialect, locker, err := db.gooseLocker()
	if err != nil {
		return errs.E(op, err)
	}
	if err := db.adoptLegacy(ctx, dialect, locker, component, table); err != nil {
		return errs.E(op, fmt.Errorf("adopt schema_migrations: %w", err))
	}
	p, err := goose.NewProvider(dialect, db.DB, fsys,
		goose.WithTableName(table),
		goose.WithSessionLocker(locker),
		goose.WithDisableGlobalRegistry(true),
	)
	if err != nil {
		return errs.E(op, err)
	}
	if _, err := p.Up(ctx); err != nil {
		return errs.E(op, err)
	}
	return nil
}

// gooseLocker returns the goose dialect of db and the lock that serialises
// migrators.
func (db *DB) gooseLocker() (goose.Dialect, lock.SessionLocker, error) {
	switch db.Dialect {
	case Postgres:
		l, err := lock.NewPostgresSessionLocker(
			lock.WithLockID(migrateLockID),
			lock.WithLockTimeout(1, 300),  // try every second for five minutes
			lock.WithUnlockTimeout(1, 60), // and give up unlocking after a minute
		)
		return goose.DialectPostgres, l, err
	case SQLite:
		return goose.DialectSQLite3, newSQLiteLocker(), nil
	}
	return "", nil, fmt.Errorf("no migrations for dialect %q", db.Dialect)
}

// adoptLegacy records in table the versions that the pre-goose Migrate
// recorded for component in schema_migrations, when table does not exist yet.
// It runs under locker and in one transaction, so concurrent starters adopt
// once and never see a half-written table.
func (db *DB) adoptLegacy(ctx context.Context, dialect goose.Dialect, locker lock.SessionLocker, component, table string) (err error) {
	// Once the goose table exists it stays, so the common case needs no lock.
	if ok, err := db.tableExists(ctx, db.DB, table); err != nil || ok {
		return err
	}
	if ok, err := db.tableExists(ctx, db.DB, "schema_migrations"); err != nil || !ok {
		return err
	}
	conn, err := db.DB.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := locker.SessionLock(ctx, conn); err != nil {
		return err
	}
	defer func() {
		if uerr := locker.SessionUnlock(context.WithoutCancel(ctx), conn); uerr != nil && err == nil {
			err = uerr
		}
	}()
	store, err := database.NewStore(dialect, table)
	if err != nil {
		return err
	}
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck
	if ok, err := db.tableExists(ctx, tx, table); err != nil || ok {
		return err // adopted meanwhile by another instance
	}
	rows, err := tx.QueryContext(ctx, db.Rebind(`SELECT version FROM schema_migrations WHERE component = ? ORDER BY version`), component)
	if err != nil {
		return err
	}
	var versions []int64
	for rows.Next() {
		var v int64
		if err := rows.Scan(&v); err != nil {
			rows.Close()
			return err
		}
		versions = append(versions, v)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	if len(versions) == 0 {
		return nil // nothing to adopt: goose starts from scratch
	}
	if err := store.CreateVersionTable(ctx, tx); err != nil {
		return err
	}
	for _, v := range append([]int64{0}, versions...) {
		if err := store.Insert(ctx, tx, database.InsertRequest{Version: v}); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// queryer is what *sql.DB, *sql.Conn and *sql.Tx have in common.
type queryer interface {
	QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
}

// tableExists reports whether the table exists in db's current schema.
func (db *DB) tableExists(ctx context.Context, q queryer, table string) (bool, error) {
	var n int
	var err error
	switch db.Dialect {
	case Postgres:
		err = q.QueryRowContext(ctx, `SELECT COUNT(*) FROM pg_catalog.pg_tables WHERE schemaname = current_schema() AND tablename = $1`, table).Scan(&n)
	default:
		err = q.QueryRowContext(ctx, `SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?`, table).Scan(&n)
	}
	return n > 0, err
}

// sqliteLocker is a goose session locker for SQLite, which has no advisory
// locks: the lock is the one row of goose_lock, held by whoever inserted it
// until it deletes it or its lease runs out (should it crash).
type sqliteLocker struct {
	owner string
}

var _ lock.SessionLocker = (*sqliteLocker)(nil)

func newSQLiteLocker() *sqliteLocker {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return &sqliteLocker{owner: hex.EncodeToString(b)}
}

// SessionLock waits until it holds the migration lock of the database or ctx ends.
func (l *sqliteLocker) SessionLock(ctx context.Context, conn *sql.Conn) error {
	if _, err := conn.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS goose_lock (
		id INTEGER PRIMARY KEY CHECK (id = 1), owner TEXT NOT NULL, expires_at BIGINT NOT NULL)`); err != nil {
		return fmt.Errorf("sqlite migration lock: %w", err)
	}
	t := time.NewTicker(25 * time.Millisecond)
	defer t.Stop()
	for {
		now := time.Now()
		res, err := conn.ExecContext(ctx, `INSERT INTO goose_lock (id, owner, expires_at) VALUES (1, ?, ?)
			ON CONFLICT (id) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
			WHERE goose_lock.expires_at < ?`,
			l.owner, Millis(now.Add(sqliteLockLease)), Millis(now))
		if err != nil {
			return fmt.Errorf("sqlite migration lock: %w", err)
		}
		if n, err := res.RowsAffected(); err == nil && n == 1 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("sqlite migration lock: %w", ctx.Err())
		case <-t.C:
		}
	}
}

// SessionUnlock releases the lock if this locker holds it.
func (l *sqliteLocker) SessionUnlock(ctx context.Context, conn *sql.Conn) error {
	res, err := conn.ExecContext(ctx, `DELETE FROM goose_lock WHERE id = 1 AND owner = ?`, l.owner)
	if err != nil {
		return fmt.Errorf("sqlite migration unlock: %w", err)
	}
	if n, err := res.RowsAffected(); err == nil && n != 1 {
		return errors.New("sqlite migration unlock: the lock was not held (its lease ran out?)")
	}
	return nil
}
