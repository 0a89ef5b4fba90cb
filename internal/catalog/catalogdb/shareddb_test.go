package catalogdb_test

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/catalog/catalogdb"
	"github.com/globomantics/globomantics/internal/order/orderdb"
	"github.com/globomantics/globomantics/internal/platform/outbox"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

// TestSharedDatabase migrates the catalog and order stores, both with an
// outbox (and each with its copy of outbox.MigrationV2), on one database,
// in both orders, on one SQLite file and one PostgreSQL database: the
// second must not fail on the columns the first added, each store records
// all its versions, and the shared outbox keeps a row written before the
// second migration, in order, and takes new ones.
func TestSharedDatabase(t *testing.T) {
	ctx := context.Background()
	open := map[string]func(*sqldb.DB) error{
		"catalog": func(db *sqldb.DB) error { _, err := catalogdb.Open(ctx, db); return err },
		"order":   func(db *sqldb.DB) error { _, err := orderdb.Open(ctx, db); return err },
	}
	for _, b := range testenv.Backends() {
		for _, order := range [][]string{{"catalog", "order"}, {"order", "catalog"}} {
			t.Run(fmt.Sprintf("%s/%s_then_%s", b.Name, order[0], order[1]), func(t *testing.T) {
				db := b.Open(t)
				if err := open[order[0]](db); err != nil {
					t.Fatalf("%s first: %v", order[0], err)
				}
				addOutbox(t, db, "ev_1", time.Unix(100, 0))
				if err := open[order[1]](db); err != nil {
					t.Fatalf("%s second, on the database %s migrated: %v", order[1], order[0], err)
				}
				addOutbox(t, db, "ev_2", time.Unix(50, 0)) // older time, later row
				for name, dir := range map[string]string{"catalog": "migrations", "order": "../../order/orderdb/migrations"} {
					files, _ := filepath.Glob(filepath.Join(dir, "*.sql"))
					var n int
					if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM goose_`+name+` WHERE version_id > 0`).Scan(&n); err != nil || n != len(files) || n == 0 {
						t.Errorf("goose_%s has %d versions, %v; want %d", name, n, err, len(files))
					}
				}
				// Both rows are there with the v2 columns; on PostgreSQL
				// seq gives the order they were written in.
				rows, err := db.QueryContext(ctx, `SELECT seq_id, traceparent, attempts, last_error FROM outbox ORDER BY `+seqOrder(db))
				if err != nil {
					t.Fatal(err)
				}
				defer rows.Close()
				var got []string
				for rows.Next() {
					var id, tp, last string
					var attempts int
					if err := rows.Scan(&id, &tp, &attempts, &last); err != nil {
						t.Fatal(err)
					}
					got = append(got, id)
				}
				if err := rows.Err(); err != nil {
					t.Fatal(err)
				}
				if fmt.Sprint(got) != "[ev_1 ev_2]" {
					t.Errorf("outbox rows %v, want [ev_1 ev_2]", got)
				}
				// Opening again (a restart) applies nothing and fails nothing.
				for _, name := range order {
					if err := open[name](db); err != nil {
						t.Errorf("%s reopened: %v", name, err)
					}
				}
			})
		}
	}
}

func seqOrder(db *sqldb.DB) string {
	if db.Dialect == sqldb.Postgres {
		return "seq"
	}
	return "rowid"
}

func addOutbox(t *testing.T, db *sqldb.DB, id string, at time.Time) {
	t.Helper()
	if err := db.InTx(context.Background(), func(tx *sqldb.Tx) error {
		return outbox.Add(context.Background(), tx, "globo.test", id, map[string]string{"id": id}, at)
	}); err != nil {
		t.Fatal(err)
	}
}

// TestSharedMigrationsKeepTheCopy: the store's file stays outbox.MigrationV2
// (TestOutboxMigrationV2IsACopy); what SharedMigrations serves in its place
// on a database whose outbox has v2 is MigrationV2 without its ALTER TABLEs
// and renumbering, and every other file is served unchanged.
func TestSharedMigrationsKeepTheCopy(t *testing.T) {
	ctx := context.Background()
	db := testenv.SQLite(t)
	if _, err := catalogdb.Open(ctx, db); err != nil {
		t.Fatal(err)
	}
	fsys, err := outbox.SharedMigrations(ctx, db, os.DirFS("migrations"), "00005_outbox_v2.sql")
	if err != nil {
		t.Fatal(err)
	}
	names, err := fs.Glob(fsys, "*.sql")
	if err != nil || len(names) < 6 {
		t.Fatalf("glob: %v, %v", names, err)
	}
	for _, n := range names {
		got, err := fs.ReadFile(fsys, n)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := fs.ReadFile(os.DirFS("migrations"), n)
		if n != "00005_outbox_v2.sql" {
			if string(got) != string(want) {
				t.Errorf("%s changed", n)
			}
			continue
		}
		if string(want) != outbox.MigrationV2 || string(got) == string(want) {
			t.Errorf("%s: the copy is not MigrationV2, or was served unchanged on a database that has v2:\n%s", n, got)
		}
		for _, keep := range []string{"CREATE UNIQUE INDEX IF NOT EXISTS outbox_by_seq", "CREATE TABLE IF NOT EXISTS outbox_parked"} {
			if !strings.Contains(string(got), keep) {
				t.Errorf("%s served without %q", n, keep)
			}
		}
		for _, drop := range []string{"ADD COLUMN", "UPDATE outbox"} {
			if strings.Contains(string(got), drop) {
				t.Errorf("%s served with %q", n, drop)
			}
		}
	}
}
