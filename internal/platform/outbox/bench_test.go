package outbox_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/platform/bus"
	"github.com/globomantics/globomantics/internal/platform/outbox"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

// legacyFlush is the relay as it was before batches: rows read oldest
// first by created_at, each published synchronously and deleted by its own
// statement. Kept here as the benchmark's baseline.
func legacyFlush(ctx context.Context, db *sqldb.DB, pub bus.Publisher) (int, error) {
	total := 0
	for {
		type row struct{ id, subject, payload string }
		rows, err := db.QueryContext(ctx, `SELECT seq_id, subject, payload FROM outbox ORDER BY created_at, seq_id LIMIT 100`)
		if err != nil {
			return total, err
		}
		var pending []row
		for rows.Next() {
			var x row
			if err := rows.Scan(&x.id, &x.subject, &x.payload); err != nil {
				rows.Close()
				return total, err
			}
			pending = append(pending, x)
		}
		rows.Close()
		for _, x := range pending {
			if err := pub.Publish(ctx, x.subject, x.id, json.RawMessage(x.payload)); err != nil {
				return total, err
			}
			if _, err := db.ExecContext(ctx, `DELETE FROM outbox WHERE seq_id = ?`, x.id); err != nil {
				return total, err
			}
			total++
		}
		if len(pending) < 100 {
			return total, nil
		}
	}
}

// BenchmarkRelay measures how fast a backlog of events leaves the outbox
// for the embedded broker: the batched relay against the one-by-one
// baseline, on each database. Reported as events/s.
func BenchmarkRelay(b *testing.B) {
	const backlog = 1000
	for _, be := range testenv.Backends() {
		for _, mode := range []string{"old", "new"} {
			b.Run(be.Name+"/"+mode, func(b *testing.B) {
				ctx := context.Background()
				db := be.Open(b)
				if err := db.Migrate(ctx, "things", storeMigrations()); err != nil {
					b.Fatal(err)
				}
				bb := testenv.Bus(b)
				relay := outbox.NewRelay(db, bb, testenv.Logger(b))
				var elapsed time.Duration
				for i := 0; i < b.N; i++ {
					b.StopTimer()
					if err := db.InTx(ctx, func(tx *sqldb.Tx) error {
						for j := 0; j < backlog; j++ {
							id := fmt.Sprintf("thg_%d_%d", i, j)
							if err := outbox.Add(ctx, tx, "globo.thing.created", id, thing{ID: id, Name: "bench"}, t0); err != nil {
								return err
							}
						}
						return nil
					}); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
					start := time.Now()
					var n int
					var err error
					if mode == "old" {
						n, err = legacyFlush(ctx, db, bb)
					} else {
						n, err = relay.Flush(ctx)
					}
					elapsed += time.Since(start)
					if err != nil || n != backlog {
						b.Fatalf("flush = %d, %v", n, err)
					}
				}
				b.ReportMetric(float64(backlog*b.N)/elapsed.Seconds(), "events/s")
			})
		}
	}
}
