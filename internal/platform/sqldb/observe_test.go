package sqldb_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/globomantics/globomantics/internal/platform/consistency"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

// samples lists the samples of metric name as "label=value,... value"
// lines (a histogram's value is its count), sorted.
func samples(t *testing.T, reg *prometheus.Registry, name string) []string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, l.GetName()+"="+l.GetValue())
			}
			v := 0.0
			switch {
			case m.Counter != nil:
				v = m.Counter.GetValue()
			case m.Gauge != nil:
				v = m.Gauge.GetValue()
			case m.Histogram != nil:
				v = float64(m.Histogram.GetSampleCount())
			}
			out = append(out, fmt.Sprintf("%s %g", strings.Join(ls, ","), v))
		}
	}
	sort.Strings(out)
	return out
}

// exercise makes one call of each kind on db: a CREATE, an INSERT, a
// transaction with an UPDATE, a SELECT, a failing SELECT and a DELETE.
func exercise(t *testing.T, db *sqldb.DB) {
	t.Helper()
	ctx := context.Background()
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS obs (k TEXT PRIMARY KEY, v BIGINT NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO obs (k, v) VALUES (?, ?)`, "a", 1); err != nil {
		t.Fatal(err)
	}
	if err := db.InTx(ctx, func(tx *sqldb.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE obs SET v = v + 1 WHERE k = ?`, "a")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var v int
	if err := db.QueryRowContext(ctx, `SELECT v FROM obs WHERE k = ?`, "a").Scan(&v); err != nil || v != 2 {
		t.Fatalf("v = %d, %v", v, err)
	}
	if _, err := db.QueryContext(ctx, `SELECT nope FROM obs`); err == nil {
		t.Fatal("a query of a missing column succeeded")
	}
	if _, err := db.ExecContext(ctx, "\n\t-- a comment first\nDELETE FROM obs WHERE k = ?", "a"); err != nil {
		t.Fatal(err)
	}
}

func TestOperationMetrics(t *testing.T) {
	ctx := context.Background()
	want := []string{
		"db_name=order,db_operation=DELETE,node_role=primary,outcome=ok 1",
		"db_name=order,db_operation=INSERT,node_role=primary,outcome=ok 1",
		"db_name=order,db_operation=OTHER,node_role=primary,outcome=ok 1",
		"db_name=order,db_operation=SELECT,node_role=primary,outcome=error 1",
		"db_name=order,db_operation=SELECT,node_role=primary,outcome=ok 1",
		"db_name=order,db_operation=TX,node_role=primary,outcome=ok 2",
	}
	open := map[string]func(t *testing.T, o sqldb.Options) *sqldb.DB{
		"sqlite": func(t *testing.T, o sqldb.Options) *sqldb.DB {
			db, err := sqldb.OpenWith(ctx, filepath.Join(t.TempDir(), "order.db"), o)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			return db
		},
		"postgres": func(t *testing.T, o sqldb.Options) *sqldb.DB {
			db, err := sqldb.OpenWith(ctx, testenv.PostgresDSN(t), o)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			return db
		},
	}
	for _, name := range []string{"sqlite", "postgres"} {
		t.Run(name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			rec := tracetest.NewSpanRecorder()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
			db := open[name](t, sqldb.Options{Source: "order", Registerer: reg, TracerProvider: tp})
			// A second database on the registry shares its metrics.
			open[name](t, sqldb.Options{Source: "other", Registerer: reg})
			exercise(t, db) // no span in ctx: no TX span
			if n := len(rec.Ended()); n != 0 {
				t.Errorf("%d spans of calls outside any trace", n)
			}
			ctx, parent := tp.Tracer("test").Start(ctx, "request")
			if err := db.InTx(ctx, func(tx *sqldb.Tx) error { return nil }); err != nil {
				t.Fatal(err)
			}
			parent.End()
			if got := samples(t, reg, "db_client_operation_duration_seconds"); strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("operations:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
			if got := samples(t, reg, "sqldb_reads_total"); fmt.Sprint(got) != "[db_name=order,node_role=primary 2]" {
				t.Errorf("reads %v", got)
			}
			var tx []string
			for _, s := range rec.Ended() {
				if s.Parent().SpanID() == parent.SpanContext().SpanID() {
					tx = append(tx, s.Name())
				}
			}
			if fmt.Sprint(tx) != "[TX order]" {
				t.Errorf("spans under the request: %v, want one TX span", tx)
			}
		})
	}
}

// Reads sent to a replica are labelled replica, and every replica's lag
// is reported.
func TestReplicaMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	db, _ := openCluster(t, sqldb.Options{DBName: "catalog", Registerer: reg})
	ctx := context.Background()
	for range 5 {
		rows, err := db.Reader(ctx, consistency.Bounded).QueryContext(ctx, `SELECT k FROM kv`)
		if err != nil {
			t.Fatal(err)
		}
		rows.Close()
	}
	if got := samples(t, reg, "sqldb_reads_total"); fmt.Sprint(got) != "[db_name=catalog,node_role=replica 5]" {
		t.Errorf("reads %v", got)
	}
	lags := samples(t, reg, "sqldb_replica_lag_seconds")
	if len(lags) != 2 {
		t.Fatalf("lag samples %v, want one per replica", lags)
	}
	for _, l := range lags {
		if !strings.HasPrefix(l, "db_name=catalog,node=") {
			t.Errorf("lag sample %q", l)
		}
	}
}

func TestOperationOf(t *testing.T) {
	for q, want := range map[string]string{
		"select 1": "SELECT", " (SELECT 1)": "SELECT", "WITH x AS (SELECT 1) SELECT * FROM x": "SELECT",
		"insert into t values (1)": "INSERT", "UPDATE t SET a = 1": "UPDATE", "DELETE FROM t": "DELETE",
		"-- note\nDELETE FROM t": "DELETE", "CREATE TABLE u (a INTEGER)": "OTHER", "": "OTHER", "SELECTED": "OTHER",
	} {
		if got := sqldb.OperationOf(q); got != want {
			t.Errorf("OperationOf(%q) = %q, want %q", q, got, want)
		}
	}
}
