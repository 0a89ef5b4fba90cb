package sqldb_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

func TestRebind(t *testing.T) {
	pg := &sqldb.DB{Dialect: sqldb.Postgres}
	lite := &sqldb.DB{Dialect: sqldb.SQLite}
	tests := []struct{ in, want string }{
		{`SELECT 1`, `SELECT 1`},
		{`SELECT * FROM t WHERE a = ? AND b = ?`, `SELECT * FROM t WHERE a = $1 AND b = $2`},
		{`INSERT INTO t (a, b, c) VALUES (?, ?, ?)`, `INSERT INTO t (a, b, c) VALUES ($1, $2, $3)`},
		{`SELECT '?' FROM t WHERE a = ?`, `SELECT '?' FROM t WHERE a = $1`},
		{`SELECT 'what?', ? , 'it''s ?' WHERE x = ?`, `SELECT 'what?', $1 , 'it''s ?' WHERE x = $2`},
		{`UPDATE t SET a=?,b=? WHERE c=?`, `UPDATE t SET a=$1,b=$2 WHERE c=$3`},
	}
	for _, tt := range tests {
		if got := pg.Rebind(tt.in); got != tt.want {
			t.Errorf("postgres Rebind(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if got := lite.Rebind(tt.in); got != tt.in {
			t.Errorf("sqlite Rebind(%q) = %q, want it unchanged", tt.in, got)
		}
	}
}

func TestOpenDispatchesOnDSN(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sub", "dir", "x.db")
	db, err := sqldb.Open(ctx, "sqlite:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if db.Dialect != sqldb.SQLite || db.Name() != "x.db" {
		t.Errorf("Open(sqlite:...) = %s %q", db.Dialect, db.Name())
	}
	if err := db.Ping(ctx); err != nil {
		t.Error(err)
	}
	var mode string
	if err := db.QueryRowContext(ctx, `PRAGMA journal_mode`).Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode = %q, %v; want wal", mode, err)
	}
	var fk int
	if err := db.QueryRowContext(ctx, `PRAGMA foreign_keys`).Scan(&fk); err != nil || fk != 1 {
		t.Errorf("foreign_keys = %d, %v; want 1", fk, err)
	}

	pg, err := sqldb.Open(ctx, testenv.PostgresDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	if pg.Dialect != sqldb.Postgres || pg.Name() != "postgres" {
		t.Errorf("Open(postgres://...) = %s %q", pg.Dialect, pg.Name())
	}
}

func TestMillis(t *testing.T) {
	tm := time.Date(2024, 2, 29, 13, 14, 15, 678_900_000, time.FixedZone("X", 3600))
	ms := sqldb.Millis(tm)
	if ms != tm.UnixMilli() {
		t.Fatalf("Millis = %d", ms)
	}
	back := sqldb.FromMillis(ms)
	if !back.Equal(tm.Truncate(time.Millisecond)) || back.Location() != time.UTC {
		t.Errorf("FromMillis(Millis(t)) = %v, want %v in UTC", back, tm.Truncate(time.Millisecond))
	}
}

const kvTable = `CREATE TABLE kv (k TEXT PRIMARY KEY, v BIGINT NOT NULL)`

func newKV(t *testing.T, b testenv.Backend) *sqldb.DB {
	t.Helper()
	db := b.Open(t)
	migrate(t, db, "kv", kvTable+";")
	return db
}

func get(t *testing.T, q sqldb.Querier, k string) (int64, bool) {
	t.Helper()
	var v int64
	err := q.QueryRowContext(context.Background(), `SELECT v FROM kv WHERE k = ?`, k).Scan(&v)
	if err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return 0, false
		}
		t.Fatal(err)
	}
	return v, true
}

func TestBackends(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Run("InTxCommits", func(t *testing.T) { testInTxCommits(t, b) })
			t.Run("InTxRollsBackOnError", func(t *testing.T) { testInTxRollsBackOnError(t, b) })
			t.Run("InTxRollsBackOnPanic", func(t *testing.T) { testInTxRollsBackOnPanic(t, b) })
			t.Run("InTxCancelledContext", func(t *testing.T) { testInTxCancelledContext(t, b) })
			t.Run("RebindInsideTx", func(t *testing.T) { testRebindInsideTx(t, b) })
			t.Run("IsUniqueViolation", func(t *testing.T) { testIsUniqueViolation(t, b) })
			t.Run("ConcurrentWriters", func(t *testing.T) { testConcurrentWriters(t, b) })
		})
	}
}

func testInTxCommits(t *testing.T, b testenv.Backend) {
	ctx := context.Background()
	db := newKV(t, b)
	err := db.InTx(ctx, func(tx *sqldb.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO kv (k, v) VALUES (?, ?), (?, ?)`, "a", 1, "b", 2); err != nil {
			return err
		}
		// The transaction sees its own writes.
		if v, ok := get(t, tx, "b"); !ok || v != 2 {
			return fmt.Errorf("inside tx: b = %d, %v", v, ok)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := get(t, db, "a"); !ok || v != 1 {
		t.Errorf("after commit: a = %d, %v", v, ok)
	}
}

func testInTxRollsBackOnError(t *testing.T, b testenv.Backend) {
	ctx := context.Background()
	db := newKV(t, b)
	if _, err := db.ExecContext(ctx, `INSERT INTO kv (k, v) VALUES (?, ?)`, "keep", 7); err != nil {
		t.Fatal(err)
	}
	sentinel := errs.E("store.Op", errs.Conflict, errs.Msg("nope"))
	err := db.InTx(ctx, func(tx *sqldb.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO kv (k, v) VALUES (?, ?)`, "new", 1); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE kv SET v = ? WHERE k = ?`, 8, "keep"); err != nil {
			return err
		}
		return sentinel
	})
	if err != sentinel {
		t.Fatalf("InTx returned %v, want fn's error unchanged", err)
	}
	if _, ok := get(t, db, "new"); ok {
		t.Error("insert of a failed transaction is visible")
	}
	if v, _ := get(t, db, "keep"); v != 7 {
		t.Errorf("update of a failed transaction is visible: keep = %d", v)
	}
	// The connection is usable afterwards.
	if _, err := db.ExecContext(ctx, `INSERT INTO kv (k, v) VALUES (?, ?)`, "after", 1); err != nil {
		t.Fatal(err)
	}
}

func testInTxRollsBackOnPanic(t *testing.T, b testenv.Backend) {
	ctx := context.Background()
	db := newKV(t, b)
	func() {
		defer func() {
			if v := recover(); v != "boom" {
				t.Fatalf("recover() = %v, want the panic re-raised", v)
			}
		}()
		_ = db.InTx(ctx, func(tx *sqldb.Tx) error {
			if _, err := tx.ExecContext(ctx, `INSERT INTO kv (k, v) VALUES (?, ?)`, "p", 1); err != nil {
				return err
			}
			panic("boom")
		})
	}()
	if _, ok := get(t, db, "p"); ok {
		t.Error("insert of a panicking transaction is visible")
	}
	// No transaction is left holding a lock or a connection: all
	// connections can write again.
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := db.InTx(ctx, func(tx *sqldb.Tx) error {
				_, err := tx.ExecContext(ctx, `INSERT INTO kv (k, v) VALUES (?, ?)`, fmt.Sprint("after", i), i)
				return err
			}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
}

func testInTxCancelledContext(t *testing.T, b testenv.Backend) {
	db := newKV(t, b)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	called := false
	err := db.InTx(ctx, func(tx *sqldb.Tx) error { called = true; return nil })
	if err == nil || called {
		t.Fatalf("InTx on a cancelled context: err %v, fn called %v", err, called)
	}
	if !errs.Is(errs.Unavailable, err) {
		t.Errorf("kind %v, want Unavailable", errs.KindOf(err))
	}
}

func testRebindInsideTx(t *testing.T, b testenv.Backend) {
	ctx := context.Background()
	db := newKV(t, b)
	err := db.InTx(ctx, func(tx *sqldb.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO kv (k, v) VALUES ('why?', ?)`, 3); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, `SELECT k FROM kv WHERE k <> '?' AND v = ?`, 3)
		if err != nil {
			return err
		}
		defer rows.Close()
		var keys []string
		for rows.Next() {
			var k string
			if err := rows.Scan(&k); err != nil {
				return err
			}
			keys = append(keys, k)
		}
		if len(keys) != 1 || keys[0] != "why?" {
			return fmt.Errorf("keys = %q", keys)
		}
		return rows.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
}

func testIsUniqueViolation(t *testing.T, b testenv.Backend) {
	ctx := context.Background()
	db := b.Open(t)
	migrate(t, db, "u", `CREATE TABLE users (id TEXT PRIMARY KEY, email TEXT NOT NULL UNIQUE, age BIGINT NOT NULL);`)
	if _, err := db.ExecContext(ctx, `INSERT INTO users (id, email, age) VALUES (?, ?, ?)`, "u1", "a@x", 30); err != nil {
		t.Fatal(err)
	}
	_, pkErr := db.ExecContext(ctx, `INSERT INTO users (id, email, age) VALUES (?, ?, ?)`, "u1", "b@x", 30)
	_, uqErr := db.ExecContext(ctx, `INSERT INTO users (id, email, age) VALUES (?, ?, ?)`, "u2", "a@x", 30)
	_, nnErr := db.ExecContext(ctx, `INSERT INTO users (id, email, age) VALUES (?, ?, NULL)`, "u3", "c@x")
	_, synErr := db.ExecContext(ctx, `INSERT INTO nosuchtable (id) VALUES (?)`, "u4")
	for name, c := range map[string]struct {
		err  error
		want bool
	}{
		"primary key":        {pkErr, true},
		"unique column":      {uqErr, true},
		"wrapped unique":     {fmt.Errorf("store: %w", uqErr), true},
		"errs-wrapped":       {errs.E("store.Create", uqErr), true},
		"not null":           {nnErr, false},
		"no such table":      {synErr, false},
		"nil":                {nil, false},
		"plain":              {errors.New("UNIQUE constraint failed"), false},
		"inside transaction": {uniqueInTx(ctx, db), true},
	} {
		if c.want && c.err == nil {
			t.Errorf("%s: no error at all", name)
			continue
		}
		if got := sqldb.IsUniqueViolation(c.err); got != c.want {
			t.Errorf("%s: IsUniqueViolation(%v) = %v, want %v", name, c.err, got, c.want)
		}
	}
}

func uniqueInTx(ctx context.Context, db *sqldb.DB) error {
	return db.InTx(ctx, func(tx *sqldb.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO users (id, email, age) VALUES (?, ?, ?)`, "u9", "a@x", 1)
		return err
	})
}

// testConcurrentWriters runs read-modify-write transactions from many
// goroutines; every one must succeed (no SQLITE_BUSY, no lost update).
func testConcurrentWriters(t *testing.T, b testenv.Backend) {
	ctx := context.Background()
	db := newKV(t, b)
	if _, err := db.ExecContext(ctx, `INSERT INTO kv (k, v) VALUES (?, ?)`, "counter", 0); err != nil {
		t.Fatal(err)
	}
	const workers, each = 8, 50
	var wg sync.WaitGroup
	errc := make(chan error, workers*each)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				err := db.InTx(ctx, func(tx *sqldb.Tx) error {
					var v int64
					if err := tx.QueryRowContext(ctx, `SELECT v FROM kv WHERE k = ?`+forUpdate(db), "counter").Scan(&v); err != nil {
						return err
					}
					_, err := tx.ExecContext(ctx, `UPDATE kv SET v = ? WHERE k = ?`, v+1, "counter")
					return err
				})
				if err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Errorf("concurrent increment failed: %v", err)
	}
	if v, _ := get(t, db, "counter"); v != workers*each {
		t.Errorf("counter = %d, want %d", v, workers*each)
	}
}

// forUpdate locks the row read on PostgreSQL (whose default isolation
// would otherwise lose updates); SQLite's write-locking transactions
// serialise the writers by themselves.
func forUpdate(db *sqldb.DB) string {
	if db.Dialect == sqldb.Postgres {
		return " FOR UPDATE"
	}
	return ""
}

func TestInTxRetriesSerializationFailures(t *testing.T) {
	ctx := context.Background()
	db := newKV(t, testenv.Backends()[0])
	for _, code := range []string{"40001", "40P01"} {
		attempts := 0
		err := db.InTx(ctx, func(tx *sqldb.Tx) error {
			attempts++
			if _, err := tx.ExecContext(ctx, `INSERT INTO kv (k, v) VALUES (?, ?)`, "r"+code, attempts); err != nil {
				return err
			}
			if attempts == 1 {
				return fmt.Errorf("update: %w", &pgconn.PgError{Code: code})
			}
			return nil
		})
		if err != nil || attempts != 2 {
			t.Fatalf("code %s: err %v after %d attempts, want success on the 2nd", code, err, attempts)
		}
		if v, _ := get(t, db, "r"+code); v != 2 {
			t.Errorf("code %s: the failed attempt's write survived (v = %d)", code, v)
		}
	}

	// A failure that persists is returned after a bounded number of attempts.
	attempts := 0
	err := db.InTx(ctx, func(tx *sqldb.Tx) error {
		attempts++
		return &pgconn.PgError{Code: "40001"}
	})
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || attempts != 4 {
		t.Errorf("persistent serialization failure: %v after %d attempts, want it returned after 4", err, attempts)
	}
	// Other errors are not retried.
	attempts = 0
	_ = db.InTx(ctx, func(tx *sqldb.Tx) error {
		attempts++
		return &pgconn.PgError{Code: "23505"}
	})
	if attempts != 1 {
		t.Errorf("a unique violation was retried: %d attempts", attempts)
	}
}
