package reshard

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/shard"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
)

// verify counts and checksums the moved rows per shard and table on the
// source and, through snap, on the destination as of the switch.
func (m *mover) verify(ctx context.Context, snap *sql.Tx) (map[shard.ID]map[string]Check, error) {
	out := map[shard.ID]map[string]Check{}
	for _, t := range m.tables {
		q := fmt.Sprintf(`SELECT shard, count(*), coalesce(md5(string_agg(r::text, E'\n' ORDER BY %s)), '')
			FROM %s AS r WHERE shard BETWEEN $1 AND $2 GROUP BY shard`, "r."+strings.Join(t.pk, ", r."), t.name)
		for side, qr := range []interface {
			QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error)
		}{m.src.DB, snap} {
			rows, err := qr.QueryContext(ctx, q, int(m.opts.Lo), int(m.opts.Hi))
			if err != nil {
				return nil, errs.E("reshard", errs.Msg("verifying %s", t.name), sqldb.NodeError(err))
			}
			for rows.Next() {
				var s int
				var n int64
				var sum string
				if err := rows.Scan(&s, &n, &sum); err != nil {
					rows.Close()
					return nil, err
				}
				id := shard.ID(s)
				if out[id] == nil {
					out[id] = map[string]Check{}
				}
				c := out[id][t.name]
				if side == 0 {
					c.SourceRows, c.SourceSum = n, sum
				} else {
					c.DestRows, c.DestSum = n, sum
				}
				out[id][t.name] = c
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return nil, sqldb.NodeError(err)
			}
		}
	}
	return out, nil
}

// deleteMoved deletes the moved rows from the source, children first, in
// batches, each its own transaction past the fence trigger.
func (m *mover) deleteMoved(ctx context.Context) (map[string]int64, error) {
	out := map[string]int64{}
	for _, t := range m.tables {
		q := fmt.Sprintf(`DELETE FROM %[1]s WHERE ctid IN (SELECT ctid FROM %[1]s WHERE shard BETWEEN $1 AND $2 LIMIT %[2]d)`, t.name, m.opts.DeleteBatch)
		for {
			var n int64
			err := func() error {
				tx, err := m.src.DB.BeginTx(ctx, nil)
				if err != nil {
					return err
				}
				defer tx.Rollback()
				if _, err := tx.ExecContext(ctx, `SET LOCAL globo.reshard_cleanup = 'on'`); err != nil {
					return err
				}
				res, err := tx.ExecContext(ctx, q, int(m.opts.Lo), int(m.opts.Hi))
				if err != nil {
					return err
				}
				if n, err = res.RowsAffected(); err != nil {
					return err
				}
				return tx.Commit()
			}()
			if err != nil {
				return out, sqldb.NodeError(err)
			}
			out[t.name] += n
			if n == 0 {
				break
			}
		}
	}
	return out, nil
}

// dropReplication drops the subscription on the destination (disabled and
// detached from its slot first), then the slot and the publication on the
// source; each only if it exists. Failures are logged: leftovers are
// dropped again by the next run.
func (m *mover) dropReplication(ctx context.Context) {
	var exists bool
	if err := m.dst.DB.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM pg_subscription WHERE subname = $1)`, m.name).Scan(&exists); err != nil {
		m.log.Warn("reshard: cannot look up the subscription", "err", redactErr(err))
	}
	if exists {
		for _, q := range []string{
			`ALTER SUBSCRIPTION ` + m.name + ` DISABLE`,
			`ALTER SUBSCRIPTION ` + m.name + ` SET (slot_name = NONE)`,
			`DROP SUBSCRIPTION ` + m.name,
		} {
			if _, err := m.dst.DB.ExecContext(ctx, q); err != nil {
				m.log.Warn("reshard: dropping the subscription", "err", redactErr(err))
				break
			}
		}
	}
	// The slot can be dropped once the walsender serving it has gone.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var found, active bool
		err := m.src.DB.QueryRowContext(ctx, `SELECT count(*) > 0, coalesce(bool_or(active), false) FROM pg_replication_slots WHERE slot_name = $1`, m.name).Scan(&found, &active)
		if err != nil {
			m.log.Warn("reshard: cannot look up the slot", "err", redactErr(err))
			break
		}
		if !found {
			break
		}
		if !active {
			if _, err := m.src.DB.ExecContext(ctx, `SELECT pg_drop_replication_slot($1)`, m.name); err != nil {
				m.log.Warn("reshard: dropping the slot", "err", redactErr(err))
			}
			break
		}
		if time.Now().After(deadline) || sleep(ctx, 20*time.Millisecond) != nil {
			m.log.Warn("reshard: the slot stayed active; not dropped", "slot", m.name)
			break
		}
	}
	if _, err := m.src.DB.ExecContext(ctx, `DROP PUBLICATION IF EXISTS `+m.name); err != nil {
		m.log.Warn("reshard: dropping the publication", "err", redactErr(err))
	}
}

// pgxOnlyParams are DSN parameters of pgx that libpq (CREATE SUBSCRIPTION's
// CONNECTION) would refuse.
var pgxOnlyParams = []string{"pool_", "default_query_exec_mode", "statement_cache_capacity", "description_cache_capacity", "min_read_buffer_size"}

// libpqConnString returns dsn in a form libpq reads: a postgres:// URL
// without pgx's own parameters, or a key=value string as it is.
func libpqConnString(dsn string) (string, error) {
	if !strings.HasPrefix(dsn, "postgres://") && !strings.HasPrefix(dsn, "postgresql://") {
		return dsn, nil
	}
	u, err := url.Parse(dsn)
	if err != nil {
		return "", errs.E(errs.BadRequest, errs.Msg("the source DSN is not a valid URL"))
	}
	q := u.Query()
	for k := range q {
		for _, p := range pgxOnlyParams {
			if strings.HasPrefix(k, p) {
				q.Del(k)
			}
		}
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// quote returns s as an SQL string literal.
func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

var secretRE = regexp.MustCompile(`(?i)(password\s*=\s*)\S+|(://[^:/@\s]*:)[^@\s]*@`)

// redactErr returns err's text with anything that looks like a password
// masked, keeping a PostgreSQL error's SQLSTATE.
func redactErr(err error) error {
	if err == nil {
		return nil
	}
	msg := secretRE.ReplaceAllString(err.Error(), "${1}${2}xxxxx@")
	msg = strings.ReplaceAll(msg, "=xxxxx@", "=xxxxx")
	if st := sqlState(err); st != "" {
		return fmt.Errorf("%s (SQLSTATE %s)", msg, st)
	}
	return errors.New(msg)
}

func sqlState(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
