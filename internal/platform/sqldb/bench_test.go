package sqldb_test

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver, for the direct baseline

	"github.com/globomantics/globomantics/internal/platform/consistency"
	"github.com/globomantics/globomantics/internal/platform/pgnode"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

// benchCluster opens a one-primary, one-replica DB on a fresh database with
// one row in kv, replayed by the replica, and a direct database/sql pool
// (pgx stdlib) on the replica. wctx carries a token of the row's write.
func benchCluster(b *testing.B) (db *sqldb.DB, direct *sql.DB, wctx context.Context, replica *pgnode.Node) {
	primary, replicas := cluster(b)
	ctx := context.Background()
	var err error
	name := fmt.Sprintf("bench%d", pg.dbs.Add(1))
	if err := primary.CreateDatabase(ctx, name); err != nil {
		b.Fatal(err)
	}
	replica = replicas[0]
	db, err = sqldb.OpenWith(ctx, pgnode.MultiHostDSN(name, "", primary, replica), sqldb.Options{Log: testenv.Logger(b)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	tok := consistency.NewToken()
	wctx = consistency.WithToken(ctx, tok)
	if _, err := db.ExecContext(wctx, kvTable); err != nil {
		b.Fatal(err)
	}
	if _, err := db.ExecContext(wctx, `INSERT INTO kv (k, v) VALUES (?, ?)`, "k", 42); err != nil {
		b.Fatal(err)
	}
	testenv.CheckFor(b, 15*time.Second, func() error {
		for _, n := range db.Status().Nodes {
			lsn, _ := consistency.ParseLSN(n.LSN)
			if n.Role != sqldb.RolePrimary && (n.State != sqldb.StateInRotation || lsn < tok.Position(db.Source())) {
				return fmt.Errorf("replica %s at %s", n.State, n.LSN)
			}
		}
		return nil
	})
	direct, err = sql.Open("pgx", replica.DSN(name))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { direct.Close() })
	direct.SetMaxOpenConns(16)
	direct.SetMaxIdleConns(16)
	return db, direct, wctx, replica
}

// BenchmarkReads compares a read routed by the cluster (Bounded, and
// ReadYourWrites with a token the replica has replayed) with the same query
// through database/sql over pgx straight to the same replica, on a cluster
// of one primary and one replica.
func BenchmarkReads(b *testing.B) {
	ctx := context.Background()
	db, direct, wctx, replica := benchCluster(b)
	check := func(b *testing.B, v int64, err error) {
		if err != nil || v != 42 {
			b.Fatalf("read %d, %v", v, err)
		}
	}
	b.Run("direct", func(b *testing.B) {
		for b.Loop() {
			var v int64
			err := direct.QueryRowContext(ctx, `SELECT v FROM kv WHERE k = $1`, "k").Scan(&v)
			check(b, v, err)
		}
	})
	b.Run("bounded", func(b *testing.B) {
		start := nodeStatus2(db, replica.Addr())
		for b.Loop() {
			var v int64
			err := db.Reader(ctx, consistency.Bounded).QueryRowContext(ctx, `SELECT v FROM kv WHERE k = ?`, "k").Scan(&v)
			check(b, v, err)
		}
		if served := nodeStatus2(db, replica.Addr()) - start; served < int64(b.N) {
			b.Fatalf("replica served %d of %d reads", served, b.N)
		}
	})
	b.Run("read-your-writes", func(b *testing.B) {
		start := nodeStatus2(db, replica.Addr())
		for b.Loop() {
			var v int64
			err := db.Reader(wctx, consistency.ReadYourWrites).QueryRowContext(wctx, `SELECT v FROM kv WHERE k = ?`, "k").Scan(&v)
			check(b, v, err)
		}
		if served := nodeStatus2(db, replica.Addr()) - start; served < int64(b.N) {
			b.Fatalf("replica served %d of %d reads", served, b.N)
		}
	})
	b.Run("level-in-context", func(b *testing.B) {
		lctx := consistency.WithLevel(wctx, consistency.ReadYourWrites)
		for b.Loop() {
			var v int64
			err := db.QueryRowContext(lctx, `SELECT v FROM kv WHERE k = ?`, "k").Scan(&v)
			check(b, v, err)
		}
	})
}

func nodeStatus2(db *sqldb.DB, addr string) int64 {
	for _, n := range db.Status().Nodes {
		if n.Addr == addr {
			return n.Reads
		}
	}
	return 0
}

// BenchmarkReadsInterleaved runs the direct, Bounded and ReadYourWrites reads
// in turn within each iteration, so that the load of a shared machine weighs
// on all three alike, and reports their medians and the routing overhead.
func BenchmarkReadsInterleaved(b *testing.B) {
	ctx := context.Background()
	db, direct, wctx, _ := benchCluster(b)
	reads := []func() error{
		func() error {
			var v int64
			return direct.QueryRowContext(ctx, `SELECT v FROM kv WHERE k = $1`, "k").Scan(&v)
		},
		func() error {
			var v int64
			return db.Reader(ctx, consistency.Bounded).QueryRowContext(ctx, `SELECT v FROM kv WHERE k = ?`, "k").Scan(&v)
		},
		func() error {
			var v int64
			return db.Reader(wctx, consistency.ReadYourWrites).QueryRowContext(wctx, `SELECT v FROM kv WHERE k = ?`, "k").Scan(&v)
		},
	}
	took := make([][]time.Duration, len(reads))
	i := 0
	for b.Loop() {
		for j := range reads {
			k := (i + j) % len(reads) // rotate the order
			start := time.Now()
			if err := reads[k](); err != nil {
				b.Fatal(err)
			}
			took[k] = append(took[k], time.Since(start))
		}
		i++
	}
	med := make([]float64, len(reads))
	for k, d := range took {
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		med[k] = float64(d[len(d)/2].Nanoseconds())
	}
	b.ReportMetric(med[0], "direct-ns/read")
	b.ReportMetric(med[1], "bounded-ns/read")
	b.ReportMetric(med[2], "ryw-ns/read")
	b.ReportMetric(100*(med[1]-med[0])/med[0], "bounded-overhead-%")
	b.ReportMetric(100*(med[2]-med[0])/med[0], "ryw-overhead-%")
}

// BenchmarkRoute is the routing decision alone, without the query.
func BenchmarkRoute(b *testing.B) {
	db, _, wctx, _ := benchCluster(b)
	ctx := context.Background()
	b.Run("bounded", func(b *testing.B) {
		for b.Loop() {
			_ = db.Reader(ctx, consistency.Bounded)
		}
	})
	b.Run("read-your-writes", func(b *testing.B) {
		for b.Loop() {
			_ = db.Reader(wctx, consistency.ReadYourWrites)
		}
	})
}
