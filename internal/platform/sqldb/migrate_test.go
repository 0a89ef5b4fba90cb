package sqldb_test

import (
	"context"
	"fmt"
	"io/fs"
	"path/filepath"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/globomantics/globomantics/internal/platform/sqldb"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

// migrationFS makes goose migration files 00001_m.sql, 00002_m.sql, ... of
// the given Up sections.
func migrationFS(ups ...string) fs.FS {
	m := fstest.MapFS{}
	for i, up := range ups {
		m[fmt.Sprintf("%05d_m.sql", i+1)] = &fstest.MapFile{Data: []byte("-- +goose Up\n" + up + "\n")}
	}
	return m
}

// migrate applies the migrations of ups to db under component.
func migrate(t *testing.T, db *sqldb.DB, component string, ups ...string) {
	t.Helper()
	if err := db.Migrate(context.Background(), component, migrationFS(ups...)); err != nil {
		t.Fatal(err)
	}
}

// applied returns the versions recorded for component, 0 excluded.
func applied(t *testing.T, db *sqldb.DB, component string) []int64 {
	t.Helper()
	rows, err := db.QueryContext(context.Background(), `SELECT version_id FROM goose_`+component+` WHERE version_id > 0 AND is_applied ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var v int64
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestMigrateBackends(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			t.Run("Migrate", func(t *testing.T) { testMigrate(t, b) })
			t.Run("MigrateFailureAppliesNothing", func(t *testing.T) { testMigrateFailure(t, b) })
			t.Run("SemicolonsInsideABody", func(t *testing.T) { testMigrateBody(t, b) })
			t.Run("AdoptsSchemaMigrations", func(t *testing.T) { testAdoptLegacy(t, b) })
			t.Run("BadComponent", func(t *testing.T) {
				if err := b.Open(t).Migrate(context.Background(), "x; DROP", migrationFS(`SELECT 1;`)); err == nil {
					t.Fatal("Migrate accepted a component name that is not an identifier")
				}
			})
		})
	}
}

func testMigrate(t *testing.T, b testenv.Backend) {
	ctx := context.Background()
	db := b.Open(t)
	carts := []string{
		`CREATE TABLE carts (id TEXT PRIMARY KEY);`,
		"ALTER TABLE carts ADD COLUMN owner TEXT NOT NULL DEFAULT '';\nCREATE INDEX carts_owner ON carts (owner);",
	}
	migrate(t, db, "cart", carts[:1]...)
	// Re-running with one more migration applies only the new one.
	migrate(t, db, "cart", carts...)
	// Running again is a no-op (it would fail if it re-ran either statement).
	migrate(t, db, "cart", carts...)
	if _, err := db.ExecContext(ctx, `INSERT INTO carts (id, owner) VALUES (?, ?)`, "c1", "u1"); err != nil {
		t.Fatal(err)
	}
	// Another component keeps its own version numbers in the same database.
	migrate(t, db, "order", `CREATE TABLE orders (id TEXT PRIMARY KEY);`)
	if _, err := db.ExecContext(ctx, `INSERT INTO orders (id) VALUES (?)`, "o1"); err != nil {
		t.Fatal(err)
	}
	if got := applied(t, db, "cart"); fmt.Sprint(got) != "[1 2]" {
		t.Errorf("cart versions = %v", got)
	}
	if got := applied(t, db, "order"); fmt.Sprint(got) != "[1]" {
		t.Errorf("order versions = %v", got)
	}
}

func testMigrateFailure(t *testing.T, b testenv.Backend) {
	ctx := context.Background()
	db := b.Open(t)
	bad := []string{
		`CREATE TABLE a (id TEXT PRIMARY KEY);`,
		"CREATE TABLE b (id TEXT PRIMARY KEY);\nCREATE TABLE broken (id NOSUCHTYPE PRIMARY KEY REFERENCES nowhere(id) WHATEVER);",
	}
	if err := db.Migrate(ctx, "x", migrationFS(bad...)); err == nil {
		t.Fatal("Migrate with a broken migration succeeded")
	}
	// Migration 1 stays applied; migration 2 left nothing behind.
	if _, err := db.ExecContext(ctx, `INSERT INTO a (id) VALUES (?)`, "1"); err != nil {
		t.Fatalf("table a: %v", err)
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO b (id) VALUES (?)`, "1"); err == nil {
		t.Fatal("table b of the failed migration exists")
	}
	if got := applied(t, db, "x"); fmt.Sprint(got) != "[1]" {
		t.Fatalf("recorded versions = %v; want [1]", got)
	}
	// A fixed migration 2 then applies.
	migrate(t, db, "x", bad[0], `CREATE TABLE b (id TEXT PRIMARY KEY);`)
	if _, err := db.ExecContext(ctx, `INSERT INTO b (id) VALUES (?)`, "1"); err != nil {
		t.Fatalf("table b after fix: %v", err)
	}
}

// testMigrateBody: a statement with semicolons inside (a PL/pgSQL function
// on PostgreSQL, a trigger on SQLite) is applied whole.
func testMigrateBody(t *testing.T, b testenv.Backend) {
	ctx := context.Background()
	db := b.Open(t)
	var body string
	if db.Dialect == sqldb.Postgres {
		body = `CREATE TABLE items (id TEXT PRIMARY KEY, n BIGINT NOT NULL, doubled BIGINT);
-- +goose StatementBegin
CREATE FUNCTION items_double() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	NEW.doubled := NEW.n * 2;
	RETURN NEW;
END;
$$;
-- +goose StatementEnd
CREATE TRIGGER items_double BEFORE INSERT ON items FOR EACH ROW EXECUTE FUNCTION items_double();`
	} else {
		body = `CREATE TABLE items (id TEXT PRIMARY KEY, n BIGINT NOT NULL, doubled BIGINT);
-- +goose StatementBegin
CREATE TRIGGER items_double AFTER INSERT ON items FOR EACH ROW
BEGIN
	UPDATE items SET doubled = NEW.n * 2 WHERE id = NEW.id;
	UPDATE items SET doubled = doubled WHERE id = NEW.id;
END;
-- +goose StatementEnd`
	}
	migrate(t, db, "items", body)
	if _, err := db.ExecContext(ctx, `INSERT INTO items (id, n) VALUES (?, ?)`, "i1", 21); err != nil {
		t.Fatal(err)
	}
	var d int64
	if err := db.QueryRowContext(ctx, `SELECT doubled FROM items WHERE id = ?`, "i1").Scan(&d); err != nil || d != 42 {
		t.Fatalf("doubled = %d, %v; want 42 from the trigger", d, err)
	}
}

// legacySchema makes what the pre-goose Migrate left: the tables of
// migrations 1 and 2 of component "shop" and their rows in
// schema_migrations, next to another component's rows.
func legacySchema(t *testing.T, db *sqldb.DB) {
	t.Helper()
	ctx := context.Background()
	for _, q := range []string{
		`CREATE TABLE schema_migrations (component TEXT NOT NULL, version INTEGER NOT NULL, PRIMARY KEY (component, version))`,
		`CREATE TABLE shops (id TEXT PRIMARY KEY)`,
		`ALTER TABLE shops ADD COLUMN name TEXT NOT NULL DEFAULT ''`,
		`CREATE TABLE others (id TEXT PRIMARY KEY)`,
		`INSERT INTO schema_migrations (component, version) VALUES ('shop', 1), ('shop', 2), ('other', 1)`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
}

var shopMigrations = []string{
	`CREATE TABLE shops (id TEXT PRIMARY KEY);`,
	`ALTER TABLE shops ADD COLUMN name TEXT NOT NULL DEFAULT '';`,
	`CREATE TABLE shop_items (shop_id TEXT NOT NULL REFERENCES shops (id), sku TEXT NOT NULL, PRIMARY KEY (shop_id, sku));`,
}

// testAdoptLegacy: a database migrated by the old code opens without
// re-applying anything, and only new migrations run.
func testAdoptLegacy(t *testing.T, b testenv.Backend) {
	ctx := context.Background()
	db := b.Open(t)
	legacySchema(t, db)
	migrate(t, db, "shop", shopMigrations...)
	if got := applied(t, db, "shop"); fmt.Sprint(got) != "[1 2 3]" {
		t.Errorf("shop versions = %v", got)
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO shops (id, name) VALUES (?, ?)`, "s1", "S"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO shop_items (shop_id, sku) VALUES (?, ?)`, "s1", "k"); err != nil {
		t.Fatal(err)
	}
	// The other component is adopted on its own turn; a component the old
	// code never saw starts from scratch.
	migrate(t, db, "other", `CREATE TABLE others (id TEXT PRIMARY KEY);`)
	migrate(t, db, "fresh", `CREATE TABLE fresh (id TEXT PRIMARY KEY);`)
	if got := applied(t, db, "other"); fmt.Sprint(got) != "[1]" {
		t.Errorf("other versions = %v", got)
	}
	if got := applied(t, db, "fresh"); fmt.Sprint(got) != "[1]" {
		t.Errorf("fresh versions = %v", got)
	}
	// And it stays a no-op.
	migrate(t, db, "shop", shopMigrations...)
}

// concurrentMigrate runs Migrate of shopMigrations from n goroutines, each
// with its own connection pool, as n instances starting at once would.
func concurrentMigrate(t *testing.T, n int, open func() (*sqldb.DB, error)) {
	t.Helper()
	var wg sync.WaitGroup
	errc := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			db, err := open()
			if err != nil {
				errc <- err
				return
			}
			defer db.Close()
			errc <- db.Migrate(context.Background(), "shop", migrationFS(shopMigrations...))
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		if err != nil {
			t.Errorf("migrate: %v", err)
		}
	}
}

// TestConcurrentMigrations: instances of a service sharing one database
// start at once; every one migrates without error and each migration is
// applied once (the migrations fail if run twice). On PostgreSQL the
// database is also one the old code migrated halfway.
func TestConcurrentMigrations(t *testing.T) {
	t.Run("postgres", func(t *testing.T) {
		dsn := testenv.PostgresDSN(t)
		open := func() (*sqldb.DB, error) { return sqldb.OpenPostgres(context.Background(), dsn) }
		concurrentMigrate(t, 8, open)
		db, err := open()
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if got := applied(t, db, "shop"); fmt.Sprint(got) != "[1 2 3]" {
			t.Fatalf("applied = %v", got)
		}
	})
	t.Run("postgres-legacy", func(t *testing.T) {
		dsn := testenv.PostgresDSN(t)
		open := func() (*sqldb.DB, error) { return sqldb.OpenPostgres(context.Background(), dsn) }
		db, err := open()
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		legacySchema(t, db)
		concurrentMigrate(t, 8, open)
		if got := applied(t, db, "shop"); fmt.Sprint(got) != "[1 2 3]" {
			t.Fatalf("applied = %v", got)
		}
	})
	t.Run("sqlite", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "shared.db")
		open := func() (*sqldb.DB, error) { return sqldb.OpenSQLite(context.Background(), path) }
		concurrentMigrate(t, 8, open)
		db, err := open()
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if got := applied(t, db, "shop"); fmt.Sprint(got) != "[1 2 3]" {
			t.Fatalf("applied = %v", got)
		}
	})
}
