package sqldb_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/platform/sqldb"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

// TestIdentity runs the identity conformance suite on both engines: a new
// database carries none, the first claim wins and is never overwritten,
// concurrent claims agree, and the integrity check passes on a sound one.
func TestIdentity(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			db := b.Open(t)
			now := time.Unix(1700000000, 0)
			if id, err := sqldb.Identity(ctx, db, "catalog"); err != nil || id != "" {
				t.Fatalf("Identity of a new database = %q, %v; want none", id, err)
			}
			if got, err := sqldb.Claim(ctx, db, "catalog", "shop_a", now); err != nil || got != "shop_a" {
				t.Fatalf("first Claim = %q, %v; want shop_a", got, err)
			}
			if got, err := sqldb.Claim(ctx, db, "catalog", "shop_b", now); err != nil || got != "shop_a" {
				t.Fatalf("second Claim = %q, %v; want the first claim, shop_a", got, err)
			}
			if id, err := sqldb.Identity(ctx, db, "catalog"); err != nil || id != "shop_a" {
				t.Fatalf("Identity = %q, %v; want shop_a", id, err)
			}
			// Services sharing one database have identities of their own.
			if id, err := sqldb.Identity(ctx, db, "cart"); err != nil || id != "" {
				t.Fatalf("Identity of another service = %q, %v; want none", id, err)
			}
			if _, err := sqldb.Claim(ctx, db, "cart", " ", now); err == nil {
				t.Fatal("Claim with an empty shop id succeeded")
			}

			// Instances starting at once agree on one winner.
			var wg sync.WaitGroup
			got := make([]string, 6)
			errList := make([]error, 6)
			for i := range got {
				wg.Add(1)
				go func() {
					defer wg.Done()
					got[i], errList[i] = sqldb.Claim(ctx, db, "order", fmt.Sprintf("shop_%d", i), now)
				}()
			}
			wg.Wait()
			for i := range got {
				if errList[i] != nil || got[i] != got[0] {
					t.Fatalf("concurrent claims = %v, %v; want one id for all", got, errList)
				}
			}
			if err := sqldb.CheckIntegrity(ctx, db); err != nil {
				t.Fatalf("CheckIntegrity of a sound database: %v", err)
			}
		})
	}
}

// TestIdentityTableRacesOnPostgres: processes sharing a fresh PostgreSQL
// database read their identity at the same moment; none fails creating the
// identity table.
func TestIdentityTableRacesOnPostgres(t *testing.T) {
	dsn := testenv.PostgresDSN(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	errList := make([]error, 4)
	for i := range errList {
		wg.Add(1)
		go func() {
			defer wg.Done()
			db, err := sqldb.Open(ctx, dsn)
			if err != nil {
				errList[i] = err
				return
			}
			defer db.Close()
			_, errList[i] = sqldb.Identity(ctx, db, "catalog")
		}()
	}
	wg.Wait()
	for _, err := range errList {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestCheckIntegrityFindsDamage overwrites pages in the middle of a SQLite
// file with garbage: the database is refused, at open or by the check.
func TestCheckIntegrityFindsDamage(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "damaged.db")
	db, err := sqldb.OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	for i := range 2000 {
		if _, err := db.ExecContext(ctx, `INSERT INTO kv (k, v) VALUES (?, ?)`, fmt.Sprintf("key-%05d", i), strings.Repeat("v", 100)); err != nil {
			t.Fatal(err)
		}
	}
	if err := sqldb.CheckIntegrity(ctx, db); err != nil {
		t.Fatalf("sound database: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	testenv.CorruptFile(t, path)

	db, err = sqldb.OpenSQLite(ctx, path)
	if err != nil {
		return // refused at open: as good
	}
	defer db.Close()
	if err := sqldb.CheckIntegrity(ctx, db); err == nil {
		st, _ := os.Stat(path)
		t.Fatalf("CheckIntegrity of a file with garbage pages (%d bytes) = nil", st.Size())
	}
}
