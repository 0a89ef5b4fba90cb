package inbox_test

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/inbox"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

var t0 = time.Date(2031, 5, 17, 10, 0, 0, 0, time.UTC)

// open returns a database of backend b with the inbox table and a counter
// table standing for a consumer's effect.
func open(t *testing.T, b testenv.Backend) *sqldb.DB {
	t.Helper()
	db := b.Open(t)
	fsys := fstest.MapFS{
		"00001_inbox.sql":   {Data: []byte(inbox.Migration)},
		"00002_effects.sql": {Data: []byte("-- +goose Up\nCREATE TABLE effects (k TEXT PRIMARY KEY, n BIGINT NOT NULL);\n")},
	}
	if err := db.Migrate(context.Background(), "inboxtest", fsys); err != nil {
		t.Fatal(err)
	}
	return db
}

// apply is a consumer's handler: the effect (a counter bump) happens only
// for a fresh message, in the transaction that records it.
func apply(ctx context.Context, db *sqldb.DB, consumer, id string, fail bool) (bool, error) {
	var fresh bool
	err := db.InTx(ctx, func(tx *sqldb.Tx) error {
		var err error
		fresh, err = inbox.Apply(ctx, tx, consumer, id, t0)
		if err != nil || !fresh {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO effects (k, n) VALUES (?, 1) ON CONFLICT (k) DO UPDATE SET n = effects.n + 1`, consumer); err != nil {
			return err
		}
		if fail {
			return errors.New("the effect failed after the inbox row")
		}
		return nil
	})
	return fresh, err
}

func count(t *testing.T, db *sqldb.DB, consumer string) int64 {
	t.Helper()
	var n int64
	err := db.QueryRowContext(context.Background(), `SELECT n FROM effects WHERE k = ?`, consumer).Scan(&n)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		t.Fatal(err)
	}
	return n
}

// TestInbox is the conformance suite of inbox.Apply on SQLite and PostgreSQL.
func TestInbox(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			t.Run("a message applied twice counts once", func(t *testing.T) {
				db := open(t, b)
				for i, want := range []bool{true, false, false} {
					fresh, err := apply(ctx, db, "c1", "msg-1", false)
					if err != nil || fresh != want {
						t.Fatalf("apply #%d = %v, %v; want %v", i+1, fresh, err, want)
					}
				}
				if n := count(t, db, "c1"); n != 1 {
					t.Errorf("effect applied %d times, want 1", n)
				}
				if fresh, err := apply(ctx, db, "c1", "msg-2", false); err != nil || !fresh {
					t.Errorf("another message = %v, %v; want fresh", fresh, err)
				}
				if n := count(t, db, "c1"); n != 2 {
					t.Errorf("effect applied %d times, want 2", n)
				}
			})
			t.Run("consumers are independent", func(t *testing.T) {
				db := open(t, b)
				for _, c := range []string{"c1", "c2"} {
					if fresh, err := apply(ctx, db, c, "msg-1", false); err != nil || !fresh {
						t.Fatalf("%s: %v, %v; want fresh", c, fresh, err)
					}
				}
			})
			t.Run("a rolled-back effect leaves the message unapplied", func(t *testing.T) {
				db := open(t, b)
				if _, err := apply(ctx, db, "c1", "msg-1", true); err == nil {
					t.Fatal("the failing effect committed")
				}
				if n := count(t, db, "c1"); n != 0 {
					t.Fatalf("effect count %d after a rollback", n)
				}
				if fresh, err := apply(ctx, db, "c1", "msg-1", false); err != nil || !fresh {
					t.Errorf("redelivery after a rollback = %v, %v; want fresh", fresh, err)
				}
				if n := count(t, db, "c1"); n != 1 {
					t.Errorf("effect count %d, want 1", n)
				}
			})
			t.Run("concurrent deliveries apply once", func(t *testing.T) {
				db := open(t, b)
				var fresh atomic.Int32
				var wg sync.WaitGroup
				for range 8 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						f, err := apply(ctx, db, "c1", "msg-x", false)
						if err != nil {
							t.Error(err)
						}
						if f {
							fresh.Add(1)
						}
					}()
				}
				wg.Wait()
				if fresh.Load() != 1 || count(t, db, "c1") != 1 {
					t.Errorf("%d deliveries were fresh, effect count %d; want 1 and 1", fresh.Load(), count(t, db, "c1"))
				}
			})
			t.Run("empty ids are refused", func(t *testing.T) {
				db := open(t, b)
				_, err := apply(ctx, db, "c1", "", false)
				if !errs.Is(errs.Invalid, err) {
					t.Errorf("empty id: %v, want errs.Invalid", err)
				}
			})
			t.Run("forget", func(t *testing.T) {
				db := open(t, b)
				if _, err := apply(ctx, db, "c1", "old", false); err != nil {
					t.Fatal(err)
				}
				n, err := inbox.Forget(ctx, db, t0)
				if err != nil || n != 0 {
					t.Fatalf("Forget(t0) = %d, %v; want 0 (nothing older)", n, err)
				}
				n, err = inbox.Forget(ctx, db, t0.Add(time.Second))
				if err != nil || n != 1 {
					t.Fatalf("Forget(t0+1s) = %d, %v; want 1", n, err)
				}
				if fresh, err := apply(ctx, db, "c1", "old", false); err != nil || !fresh {
					t.Errorf("a forgotten id = %v, %v; want fresh", fresh, err)
				}
			})
		})
	}
}
