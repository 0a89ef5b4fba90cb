package testenv_test

import (
	"context"
	"testing"

	"github.com/globomantics/globomantics/internal/platform/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

func TestBackends(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			db := b.Open(t)
			ctx := context.Background()
			if err := db.Migrate(ctx, "t", []string{`CREATE TABLE kv (k TEXT PRIMARY KEY, v BIGINT NOT NULL)`}); err != nil {
				t.Fatal(err)
			}
			// Migrating twice is a no-op.
			if err := db.Migrate(ctx, "t", []string{`CREATE TABLE kv (k TEXT PRIMARY KEY, v BIGINT NOT NULL)`}); err != nil {
				t.Fatal(err)
			}
			if _, err := db.ExecContext(ctx, `INSERT INTO kv (k, v) VALUES (?, ?)`, "a", 1); err != nil {
				t.Fatal(err)
			}
			_, err := db.ExecContext(ctx, `INSERT INTO kv (k, v) VALUES (?, ?)`, "a", 2)
			if !sqldbIsUnique(err) {
				t.Fatalf("second insert: got %v, want unique violation", err)
			}
			var v int64
			if err := db.QueryRowContext(ctx, `SELECT v FROM kv WHERE k = ?`, "a").Scan(&v); err != nil || v != 1 {
				t.Fatalf("v = %d, %v", v, err)
			}
		})
	}
}
