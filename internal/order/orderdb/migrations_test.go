package orderdb_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/globomantics/globomantics/internal/order/orderdb"
	"github.com/globomantics/globomantics/internal/platform/outbox"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

// TestOutboxMigrationIsACopy: the store's outbox migration is outbox.Migration.
func TestOutboxMigrationIsACopy(t *testing.T) {
	b, err := os.ReadFile("migrations/00003_outbox.sql")
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != outbox.Migration {
		t.Fatalf("migrations/00003_outbox.sql differs from outbox.Migration:\n%s", b)
	}
}

// TestOutboxMigrationV2IsACopy: the store's second outbox migration is
// outbox.MigrationV2, applied after its copy of outbox.Migration.
func TestOutboxMigrationV2IsACopy(t *testing.T) {
	b, err := os.ReadFile("migrations/00005_outbox_v2.sql")
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != outbox.MigrationV2 {
		t.Fatalf("migrations/00005_outbox_v2.sql differs from outbox.MigrationV2:\n%s", b)
	}
}

// TestOpenLegacyDatabase: a database migrated by the code before goose (its
// tables and the table schema_migrations) opens without re-applying a
// migration, and the store works on it.
func TestOpenLegacyDatabase(t *testing.T) {
	ctx := context.Background()
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			db := b.Open(t)
			legacyMigrate(t, db, "order")
			s, err := orderdb.Open(ctx, db)
			if err != nil {
				t.Fatalf("Open on a legacy database: %v", err)
			}
			mustCreate(t, s, sample("ord_1", "usr_1", t0))
			var n int
			// The 3 legacy versions adopted, and the later ones applied by goose.
			files, _ := filepath.Glob("migrations/*.sql")
			if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM goose_order WHERE version_id > 0`).Scan(&n); err != nil || n != len(files) {
				t.Fatalf("goose_order has %d versions, %v; want %d", n, err, len(files))
			}
		})
	}
}

// legacyMigrate applies the migration files the pre-goose code had (the
// first three) as the pre-goose Migrate did, recording them in
// schema_migrations.
func legacyMigrate(t *testing.T, db *sqldb.DB, component string) {
	t.Helper()
	ctx := context.Background()
	files, err := filepath.Glob("migrations/*.sql")
	if err != nil || len(files) < 3 {
		t.Fatal(files, err)
	}
	files = files[:3]
	if _, err := db.ExecContext(ctx, `CREATE TABLE schema_migrations (
		component TEXT NOT NULL, version INTEGER NOT NULL, PRIMARY KEY (component, version))`); err != nil {
		t.Fatal(err)
	}
	for i, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, stmt := range strings.Split(strings.ReplaceAll(string(b), "-- +goose Up", ""), ";") {
			if strings.TrimSpace(stmt) == "" {
				continue
			}
			if _, err := db.ExecContext(ctx, stmt); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
		}
		if _, err := db.ExecContext(ctx, `INSERT INTO schema_migrations (component, version) VALUES (?, ?)`, component, i+1); err != nil {
			t.Fatal(err)
		}
	}
}
