// Package sqldb is the SQL layer under every store: one *DB per service
// database, over SQLite (the embedded default, pure Go, WAL mode) or
// PostgreSQL, with forward-only migrations and a transaction helper. Queries
// are written with ? placeholders and rebound for PostgreSQL.
package sqldb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/globomantics/globomantics/internal/platform/errs"
)

// Dialect names a SQL engine.
type Dialect string

// The supported engines.
const (
	SQLite   Dialect = "sqlite"
	Postgres Dialect = "postgres"
)

// DB is a database handle that rebinds ? placeholders for its dialect.
type DB struct {
	*sql.DB
	Dialect Dialect
	name    string
}

// OpenSQLite opens (creating if needed) the SQLite database file at path in
// WAL mode with foreign keys on, a 5 s busy timeout and write-locking
// transactions so concurrent writers queue instead of failing.
func OpenSQLite(ctx context.Context, path string) (*DB, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	dsn := "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(8)
	db.SetMaxIdleConns(8)
	db.SetConnMaxIdleTime(5 * time.Minute)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	return &DB{DB: db, Dialect: SQLite, name: filepath.Base(path)}, nil
}

// OpenPostgres connects to PostgreSQL at dsn (a URL or key=value string).
func OpenPostgres(ctx context.Context, dsn string) (*DB, error) {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(16)
	db.SetMaxIdleConns(16)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open postgres: %w", err)
	}
	return &DB{DB: db, Dialect: Postgres, name: "postgres"}, nil
}

// Open opens a database from a DSN: "postgres://..." or "postgresql://..."
// for PostgreSQL, anything else is a SQLite file path.
func Open(ctx context.Context, dsn string) (*DB, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		return OpenPostgres(ctx, dsn)
	}
	return OpenSQLite(ctx, strings.TrimPrefix(dsn, "sqlite:"))
}

// Rebind rewrites ? placeholders as $1, $2, ... for PostgreSQL.
func (db *DB) Rebind(q string) string { return rebind(db.Dialect, q) }

func rebind(d Dialect, q string) string {
	if d != Postgres || !strings.Contains(q, "?") {
		return q
	}
	var b strings.Builder
	n := 0
	inStr := false
	for i := 0; i < len(q); i++ {
		c := q[i]
		if c == '\'' {
			inStr = !inStr
		}
		if c == '?' && !inStr {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// ExecContext runs q with ? placeholders.
func (db *DB) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	return db.DB.ExecContext(ctx, db.Rebind(q), args...)
}

// QueryContext runs q with ? placeholders.
func (db *DB) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	return db.DB.QueryContext(ctx, db.Rebind(q), args...)
}

// QueryRowContext runs q with ? placeholders.
func (db *DB) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	return db.DB.QueryRowContext(ctx, db.Rebind(q), args...)
}

// Tx is a transaction that rebinds ? placeholders.
type Tx struct {
	*sql.Tx
	dialect Dialect
}

// ExecContext runs q with ? placeholders inside the transaction.
func (tx *Tx) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	return tx.Tx.ExecContext(ctx, rebind(tx.dialect, q), args...)
}

// QueryContext runs q with ? placeholders inside the transaction.
func (tx *Tx) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	return tx.Tx.QueryContext(ctx, rebind(tx.dialect, q), args...)
}

// QueryRowContext runs q with ? placeholders inside the transaction.
func (tx *Tx) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	return tx.Tx.QueryRowContext(ctx, rebind(tx.dialect, q), args...)
}

// Querier is what DB and Tx have in common.
type Querier interface {
	ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row
}

var (
	_ Querier = (*DB)(nil)
	_ Querier = (*Tx)(nil)
)

// InTx runs fn in a transaction, committing if it returns nil and rolling back
// otherwise. On PostgreSQL the transaction is SERIALIZABLE-safe to retry:
// serialization failures are retried up to three times.
func (db *DB) InTx(ctx context.Context, fn func(tx *Tx) error) error {
	for attempt := 0; ; attempt++ {
		err := db.inTx(ctx, fn)
		if err != nil && attempt < 3 && isRetryable(err) {
			continue
		}
		return err
	}
}

func (db *DB) inTx(ctx context.Context, fn func(tx *Tx) error) (err error) {
	stx, err := db.DB.BeginTx(ctx, nil)
	if err != nil {
		return errs.E("sqldb.InTx", errs.Unavailable, err)
	}
	tx := &Tx{Tx: stx, dialect: db.Dialect}
	defer func() {
		if p := recover(); p != nil {
			_ = stx.Rollback()
			panic(p)
		}
		if err != nil {
			_ = stx.Rollback()
		}
	}()
	if err = fn(tx); err != nil {
		return err
	}
	return stx.Commit()
}

func isRetryable(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "40001" || pe.Code == "40P01"
	}
	return false
}

// IsUniqueViolation reports whether err is a unique or primary-key constraint violation.
func IsUniqueViolation(err error) bool {
	var se *sqlite.Error
	if errors.As(err, &se) {
		c := se.Code()
		return c == sqlite3.SQLITE_CONSTRAINT_UNIQUE || c == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "23505"
	}
	return false
}

// Millis stores a time as integer milliseconds since the Unix epoch, the one
// time representation every store uses so that SQL stays portable.
func Millis(t time.Time) int64 { return t.UnixMilli() }

// FromMillis is the inverse of Millis, in UTC.
func FromMillis(ms int64) time.Time { return time.UnixMilli(ms).UTC() }

// Migrate applies, in order, the migrations not yet applied to db, each in its
// own transaction, recording them in the table schema_migrations under the
// given component name so several stores may share one database.
//
// On PostgreSQL, where several instances of a service share one database and
// may start at once, a session-level advisory lock makes them migrate one at
// a time.
func (db *DB) Migrate(ctx context.Context, component string, migrations []string) error {
	if db.Dialect == Postgres {
		conn, err := db.DB.Conn(ctx)
		if err != nil {
			return fmt.Errorf("migrate %s: %w", component, err)
		}
		defer conn.Close()
		if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock($1)`, migrateLockKey); err != nil {
			return fmt.Errorf("migrate %s: lock: %w", component, err)
		}
		defer conn.ExecContext(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, migrateLockKey) //nolint:errcheck
	}
	return db.migrate(ctx, component, migrations)
}

// migrateLockKey is the advisory lock taken while migrating ("globomig").
const migrateLockKey int64 = 0x676c6f626f6d6967

func (db *DB) migrate(ctx context.Context, component string, migrations []string) error {
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		component TEXT NOT NULL, version INTEGER NOT NULL, PRIMARY KEY (component, version))`); err != nil {
		return fmt.Errorf("migrate %s: %w", component, err)
	}
	for i, m := range migrations {
		v := i + 1
		err := db.InTx(ctx, func(tx *Tx) error {
			var n int
			if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE component = ? AND version = ?`, component, v).Scan(&n); err != nil {
				return err
			}
			if n > 0 {
				return nil
			}
			for _, stmt := range splitStatements(m) {
				if _, err := tx.ExecContext(ctx, stmt); err != nil {
					return fmt.Errorf("migration %d: %w", v, err)
				}
			}
			_, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (component, version) VALUES (?, ?)`, component, v)
			return err
		})
		if err != nil {
			if IsUniqueViolation(err) { // another instance applied it concurrently
				continue
			}
			return fmt.Errorf("migrate %s: %w", component, err)
		}
	}
	return nil
}

func splitStatements(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ";") {
		if strings.TrimSpace(p) != "" {
			out = append(out, p)
		}
	}
	return out
}

// Ping checks the database answers within the context.
func (db *DB) Ping(ctx context.Context) error { return db.DB.PingContext(ctx) }

// Name is the database's short name for logs and health reports.
func (db *DB) Name() string { return db.name }
