package testenv_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/globomantics/globomantics/internal/platform/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// kvMigration is one goose migration that makes the table kv.
var kvMigration = fstest.MapFS{"00001_kv.sql": {Data: []byte("-- +goose Up\nCREATE TABLE kv (k TEXT PRIMARY KEY, v BIGINT NOT NULL);\n")}}

func TestBackends(t *testing.T) {
	for _, b := range testenv.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			db := b.Open(t)
			ctx := context.Background()
			if err := db.Migrate(ctx, "t", kvMigration); err != nil {
				t.Fatal(err)
			}
			// Migrating twice is a no-op.
			if err := db.Migrate(ctx, "t", kvMigration); err != nil {
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

// recordingTB is a testing.TB whose Log and Cleanup are recorded.
type recordingTB struct {
	testing.TB
	lines    []string
	cleanups []func()
}

func (r *recordingTB) Helper()           {}
func (r *recordingTB) Log(args ...any)   { r.lines = append(r.lines, fmt.Sprint(args...)) }
func (r *recordingTB) Cleanup(fn func()) { r.cleanups = append(r.cleanups, fn) }

// TestLoggerWritesWarningsToTestLog: warnings and errors reach the test log,
// info does not, and nothing is logged (or panics) once clean-up has begun.
func TestLoggerWritesWarningsToTestLog(t *testing.T) {
	t.Setenv("GLOBO_TEST_DEBUG", "")
	tb := &recordingTB{TB: t}
	log := testenv.Logger(tb)
	log.Info("routine", "n", 1)
	log.With("service", "catalog").Warn("disk nearly full", "free", "1%")
	log.Error("write failed", "err", "boom")
	if len(tb.lines) != 2 || !strings.Contains(tb.lines[0], "disk nearly full") || !strings.Contains(tb.lines[0], "service=catalog") ||
		!strings.Contains(tb.lines[1], "write failed") {
		t.Fatalf("logged %q, want the warning and the error only", tb.lines)
	}
	for _, fn := range tb.cleanups {
		fn()
	}
	log.Error("after the test")
	if len(tb.lines) != 2 {
		t.Fatalf("logged after clean-up: %q", tb.lines)
	}
}
