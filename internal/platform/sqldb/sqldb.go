// Package sqldb is the SQL layer under every store: one *DB per service
// database, over SQLite (the embedded default, pure Go, WAL mode) or
// PostgreSQL, with forward-only migrations and a transaction helper. Queries
// are written with ? placeholders and rebound for PostgreSQL.
//
// On PostgreSQL a DB is a handle on a cluster: a primary and any number of
// streaming replicas, named by a multi-host DSN
// (postgres://h1:p1,h2:p2/db?...) and Options.Replicas. Roles are discovered
// by probing every node (every 250 ms by default), so a DB follows a failover
// without being reopened. Writes and transactions go to the primary; a read
// says how fresh it must be (Reader, or a consistency level in its context)
// and goes to a replica only when that replica has what the read needs. See
// docs/decisions/0002-read-routing.md.
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
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/globomantics/globomantics/internal/platform/consistency"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/retry"
)

// Dialect names a SQL engine.
type Dialect string

// The supported engines.
const (
	SQLite   Dialect = "sqlite"
	Postgres Dialect = "postgres"
)

// DB is a database handle that rebinds ? placeholders for its dialect. On
// SQLite it is one local database. On PostgreSQL it is a cluster: the
// embedded *sql.DB is a pool whose connections always go to the current
// primary (a connection to a node that stopped being the primary is
// dropped when next taken from the pool), and reads may be routed to
// replicas (see Reader and QueryContext).
type DB struct {
	*sql.DB
	Dialect Dialect
	name    string
	source  string
	c       *cluster  // nil on SQLite
	obs     *observer // nil: not observed (observe.go)
}

// OpenSQLite opens (creating if needed) the SQLite database file at path in
// WAL mode with foreign keys on, a 10 s busy timeout and write-locking
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
	if err := pingSQLite(ctx, db); err != nil {
		db.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	name := filepath.Base(path)
	return &DB{DB: db, Dialect: SQLite, name: name, source: name}, nil
}

// sqliteOpenBusy bounds how long opening a SQLite file waits for another
// process opening it at the same moment.
const sqliteOpenBusy = 10 * time.Second

// pingSQLite opens db's first connection. Two processes opening one new
// file at once race to switch it to WAL, and the loser gets SQLITE_BUSY at
// once (SQLite does not call the busy handler for that lock): it tries
// again, for up to sqliteOpenBusy.
func pingSQLite(ctx context.Context, db *sql.DB) error {
	deadline := time.Now().Add(sqliteOpenBusy)
	for wait := 10 * time.Millisecond; ; wait = min(2*wait, 500*time.Millisecond) {
		err := db.PingContext(ctx)
		var se *sqlite.Error
		if err == nil || !errors.As(err, &se) || se.Code()&0xff != sqlite3.SQLITE_BUSY || time.Now().Add(wait).After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
	}
}

// OpenPostgres connects to the PostgreSQL cluster dsn names (a URL or
// key=value string, with one host or several) with default Options.
func OpenPostgres(ctx context.Context, dsn string) (*DB, error) {
	return openCluster(ctx, dsn, Options{})
}

// Open opens a database from a DSN: "postgres://..." or "postgresql://..."
// for PostgreSQL, anything else is a SQLite file path.
func Open(ctx context.Context, dsn string) (*DB, error) {
	return OpenWith(ctx, dsn, Options{})
}

// OpenWith is Open with options; on SQLite only Options.Source applies. It
// fails when no node of a PostgreSQL cluster answers; it succeeds when only
// replicas do (reads work, writes fail with Unavailable until a primary
// appears).
func OpenWith(ctx context.Context, dsn string, opts Options) (*DB, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		return openCluster(ctx, dsn, opts)
	}
	db, err := OpenSQLite(ctx, strings.TrimPrefix(dsn, "sqlite:"))
	if err == nil && opts.Source != "" {
		db.source = opts.Source
	}
	if err == nil {
		db.instrument(opts)
	}
	return db, err
}

// Close stops probing and closes every pool of the database.
func (db *DB) Close() error {
	db.forget()
	if db.c != nil {
		return db.c.close()
	}
	return db.DB.Close()
}

// Source is the name of this database in consistency tokens: Options.Source,
// or the database name (SQLite: the file name).
func (db *DB) Source() string { return db.source }

// Reader returns where to send reads that need freshness l: the primary for
// consistency.Primary; for ReadYourWrites a replica in rotation that has
// replayed the position of this database in the context's Token (checked on
// that very replica's last probe), else the primary; for Bounded any replica
// within the lag bound (tightened by consistency.WithStaleness), else the
// primary. A replica that fails a read on a connection error is ejected and
// the read retried on the primary. On SQLite it is db itself.
func (db *DB) Reader(ctx context.Context, l consistency.Level) Querier {
	if db.c == nil {
		return db
	}
	return db.c.route(ctx, l)
}

// Status reports every node of the database: role, state, lag and reads
// served. SQLite reports one local node.
func (db *DB) Status() Status {
	if db.c == nil {
		return Status{Name: db.name, Source: db.source, Dialect: db.Dialect,
			Nodes: []NodeStatus{{Addr: "local", Role: RolePrimary, State: StateInRotation}}}
	}
	return db.c.status()
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

// ExecContext runs q with ? placeholders, on PostgreSQL on the primary. When
// ctx carries a consistency.Token, the write's WAL position is recorded in it
// under Source. With no primary reachable it fails at once with
// errs.Unavailable and a retry hint (errs.RetryAfterOf); timeouts and
// connection failures are errs.Unavailable too.
func (db *DB) ExecContext(ctx context.Context, q string, args ...any) (res sql.Result, err error) {
	if db.obs != nil {
		defer func(start time.Time) { db.obs.done(q, "", string(RolePrimary), start, err) }(time.Now())
	}
	if db.c == nil {
		return db.DB.ExecContext(ctx, db.Rebind(q), args...)
	}
	const op = "sqldb.Exec"
	if err := db.c.writable(op); err != nil {
		return nil, err
	}
	q = db.Rebind(q)
	tok := db.c.token(ctx)
	wctx, done, lost := db.c.bind(ctx)
	defer done()
	if tok == nil {
		res, err := db.DB.ExecContext(wctx, q, args...)
		return res, db.c.failWrite(op, err, lost)
	}
	conn, err := db.DB.Conn(wctx)
	if err != nil {
		return nil, db.c.failWrite(op, err, lost)
	}
	defer conn.Close()
	res, err = conn.ExecContext(wctx, q, args...)
	if err != nil {
		return nil, db.c.failWrite(op, err, lost)
	}
	db.c.observe(ctx, conn, tok)
	return res, nil
}

// QueryContext runs q with ? placeholders. On PostgreSQL it reads from the
// primary, unless ctx asks for a level (consistency.WithLevel): then it
// reads where Reader(ctx, level) says. Errors as for ExecContext.
func (db *DB) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	if db.c == nil {
		start := time.Now()
		rows, err := db.DB.QueryContext(ctx, db.Rebind(q), args...)
		db.obs.read(q, string(RolePrimary), start, err)
		return rows, err
	}
	l, _ := consistency.LevelFrom(ctx) // Primary when absent
	return db.c.route(ctx, l).QueryContext(ctx, q, args...)
}

// QueryRowContext runs q with ? placeholders, routed as QueryContext is.
func (db *DB) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	if db.c == nil {
		start := time.Now()
		row := db.DB.QueryRowContext(ctx, db.Rebind(q), args...)
		db.obs.read(q, string(RolePrimary), start, row.Err())
		return row
	}
	l, _ := consistency.LevelFrom(ctx)
	return db.c.route(ctx, l).QueryRowContext(ctx, q, args...)
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
// otherwise; fn's own error is returned unchanged. On PostgreSQL the
// transaction runs on the primary at the server's default isolation (READ
// COMMITTED: lock rows you read to modify, SELECT ... FOR UPDATE);
// serialization failures and deadlocks (40001, 40P01), which can then only
// come from explicit locking or a stricter default, are retried up to three
// times, so fn must be safe to run again. When ctx carries a
// consistency.Token, the commit's WAL position is recorded in it. With no
// primary reachable InTx fails at once with errs.Unavailable and a retry hint.
func (db *DB) InTx(ctx context.Context, fn func(tx *Tx) error) error {
	if db.obs == nil {
		return retry.DoIf(ctx, txPolicy, isRetryable, func(ctx context.Context) error { return db.inTx(ctx, fn) })
	}
	start := time.Now()
	ctx, span := db.obs.startTx(ctx)
	err := retry.DoIf(ctx, txPolicy, isRetryable, func(ctx context.Context) error { return db.inTx(ctx, fn) })
	db.obs.endTx(span, start, err)
	return err
}

// txPolicy is how InTx retries a transaction that lost a serialization
// conflict or a deadlock: three more times, after a few milliseconds
// (jittered, so that the two sides of a deadlock do not meet again).
var txPolicy = retry.Policy{Tries: 4, Base: 5 * time.Millisecond, Max: 20 * time.Millisecond}

func (db *DB) inTx(ctx context.Context, fn func(tx *Tx) error) (err error) {
	const op = "sqldb.InTx"
	var (
		stx  *sql.Tx
		conn *sql.Conn
		tok  *consistency.Token
	)
	txctx := ctx // the transaction's lifetime: ended early when the primary is lost
	lost := func() bool { return false }
	if db.c != nil {
		if err := db.c.writable(op); err != nil {
			return err
		}
		var done func()
		txctx, done, lost = db.c.bind(ctx)
		defer done()
		if tok = db.c.token(ctx); tok != nil {
			// The commit's position is read on the same connection, after it.
			if conn, err = db.DB.Conn(txctx); err != nil {
				return errs.E(op, errs.Unavailable, db.c.failWrite(op, err, lost))
			}
			defer conn.Close()
		}
	}
	if conn != nil {
		stx, err = conn.BeginTx(txctx, nil)
	} else {
		stx, err = db.DB.BeginTx(txctx, nil)
	}
	if err != nil {
		if db.c != nil {
			err = db.c.failWrite(op, err, lost)
		}
		return errs.E(op, errs.Unavailable, err)
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
		if lost() { // the transaction was rolled back under fn
			return db.c.failWrite(op, err, lost)
		}
		return err
	}
	if err = stx.Commit(); err != nil {
		if db.c != nil {
			return db.c.failWrite(op, err, lost)
		}
		return err
	}
	if conn != nil {
		db.c.observe(ctx, conn, tok)
	}
	return nil
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

// MillisOrZero is Millis with the zero time (not set) stored as 0.
func MillisOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return Millis(t)
}

// FromMillisOrZero is the inverse of MillisOrZero: 0 is the zero time.
func FromMillisOrZero(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return FromMillis(ms)
}

// Ping checks the database (on PostgreSQL: the primary) answers within the
// context; errs.Unavailable when no primary is known.
func (db *DB) Ping(ctx context.Context) error {
	if db.c == nil {
		return db.DB.PingContext(ctx)
	}
	if err := db.c.writable("sqldb.Ping"); err != nil {
		return err
	}
	return db.c.fail("sqldb.Ping", db.DB.PingContext(ctx), nil)
}

// Name is the database's short name for logs and health reports.
func (db *DB) Name() string { return db.name }
