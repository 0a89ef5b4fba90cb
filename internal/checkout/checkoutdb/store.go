// Package checkoutdb is the SQL store of the checkout service: the saga log
// (one row per checkout in sagas, its history in saga_steps), which also
// makes placing an order idempotent (one saga per customer and key).
//
// The store is sharded by user (see sqldb.Sharded): a user's sagas live on
// the node holding shard.ForUser(user id), recorded in their shard column,
// and a saga's id (the order id) carries that shard. Calls naming a user or
// a saga ask one node; recovery, callbacks and purging ask every node.
package checkoutdb

import (
	"context"
	"database/sql"
	"embed"
	"encoding/json"
	"errors"
	"io/fs"
	"time"

	"github.com/globomantics/globomantics/internal/checkout"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/shard"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
)

// migrations (goose SQL files) are applied in order and never edited once
// released. A failure's error kind is stored as its HTTP status, which
// stays stable if kinds are ever renumbered.
//
//go:embed migrations/*.sql
var migrations embed.FS

// Store keeps the saga log in a SQL database, one node or several.
type Store struct {
	sh *sqldb.Sharded
}

var _ checkout.Store = (*Store)(nil)

// Open returns the store over the one database db (every shard on it) after
// applying its migrations.
func Open(ctx context.Context, db *sqldb.DB) (*Store, error) {
	return OpenSharded(ctx, sqldb.Single(db))
}

// OpenSharded returns the store over the nodes of sh after applying its
// migrations to every node. Every node must answer.
func OpenSharded(ctx context.Context, sh *sqldb.Sharded) (*Store, error) {
	dir, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return nil, err
	}
	if err := sh.Migrate(ctx, "checkout", dir); err != nil {
		return nil, err
	}
	return &Store{sh: sh}, nil
}

const sagaColumns = `id, user_id, idem_key, request_hash, state, step, attempts, next_at, deadline, epoch, owner,
	lease_until, version, data, error_status, error_detail, retryable, callback_url, callback_state,
	callback_attempts, callback_next_at, callback_error, created_at, updated_at, expires_at`

// Create records s, or returns the customer's saga under s.Key.
func (s *Store) Create(ctx context.Context, g checkout.Saga) (checkout.Saga, bool, error) {
	const op = "checkoutdb.Create"
	db, sh, err := s.sh.ForUser(g.UserID)
	if err != nil {
		return checkout.Saga{}, false, errs.E(op, err)
	}
	data, err := json.Marshal(g.Data)
	if err != nil {
		return checkout.Saga{}, false, errs.E(op, err)
	}
	g.Version = 1
	created := false
	err = db.InTx(ctx, func(tx *sqldb.Tx) error {
		created = false // InTx may run this again
		res, err := tx.ExecContext(ctx, `INSERT INTO sagas (`+sagaColumns+`, shard)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (user_id, idem_key) DO NOTHING`, insertArgs(g, data, sh)...)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil || n == 0 {
			return err
		}
		created = true
		return appendStep(ctx, tx, checkout.StepRecord{SagaID: g.ID, Seq: seqOf(1, 0), Step: "checkout", Outcome: "started",
			Epoch: g.Epoch, At: g.CreatedAt}, sh)
	})
	if err != nil {
		return checkout.Saga{}, false, errs.E(op, sqldb.NodeError(err))
	}
	if created {
		return g, true, nil
	}
	stored, err := s.Get(ctx, g.UserID, g.Key)
	if err != nil {
		return checkout.Saga{}, false, errs.E(op, err)
	}
	return stored, false, nil
}

func insertArgs(g checkout.Saga, data []byte, sh shard.ID) []any {
	status, detail := failureCols(g.Failure)
	return []any{g.ID, g.UserID, g.Key, g.RequestHash, g.State, g.Step, g.Attempts, sqldb.MillisOrZero(g.NextAt), sqldb.MillisOrZero(g.Deadline),
		g.Epoch, g.Owner, sqldb.MillisOrZero(g.LeaseUntil), g.Version, string(data), status, detail, boolInt(g.Retryable),
		g.Callback.URL, g.Callback.State, g.Callback.Attempts, sqldb.MillisOrZero(g.Callback.NextAt), g.Callback.LastError,
		sqldb.MillisOrZero(g.CreatedAt), sqldb.MillisOrZero(g.UpdatedAt), sqldb.MillisOrZero(g.ExpiresAt), int(sh)}
}

func appendStep(ctx context.Context, tx *sqldb.Tx, r checkout.StepRecord, sh shard.ID) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO saga_steps (saga_id, seq, step, outcome, detail, epoch, at, shard)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)`, r.SagaID, r.Seq, r.Step, r.Outcome, truncate(r.Detail, 500), r.Epoch, sqldb.MillisOrZero(r.At), int(sh))
	return err
}

// Get returns the saga of userID under key; errs.NotFound.
func (s *Store) Get(ctx context.Context, userID, key string) (checkout.Saga, error) {
	const op = "checkoutdb.Get"
	db, _, err := s.sh.ForUser(userID)
	if err != nil {
		return checkout.Saga{}, errs.E(op, err)
	}
	g, err := scanSaga(db.QueryRowContext(ctx, `SELECT `+sagaColumns+` FROM sagas WHERE user_id = ? AND idem_key = ?`, userID, key))
	if err != nil {
		return checkout.Saga{}, errs.E(op, err)
	}
	return g, nil
}

// Load returns the saga with id; errs.NotFound.
func (s *Store) Load(ctx context.Context, id string) (checkout.Saga, error) {
	const op = "checkoutdb.Load"
	db, _, err := s.sh.ForID(id)
	if err != nil {
		return checkout.Saga{}, errs.E(op, errs.NotFound, errs.Msg("saga not found"), err)
	}
	g, err := scanSaga(db.QueryRowContext(ctx, `SELECT `+sagaColumns+` FROM sagas WHERE id = ?`, id))
	if err != nil {
		return checkout.Saga{}, errs.E(op, err)
	}
	return g, nil
}

// seqOf is the sequence number of the i-th history record written with a
// saga's version v: records sort by version, then by their order in the
// write.
func seqOf(v int64, i int) int64 { return v*checkout.MaxRecordsPerWrite + int64(i) }

// Save writes g if the stored saga still has g's epoch and version, and
// appends recs, in one transaction.
func (s *Store) Save(ctx context.Context, g *checkout.Saga, recs ...checkout.StepRecord) error {
	const op = "checkoutdb.Save"
	db, sh, err := s.sh.ForID(g.ID)
	if err != nil {
		return errs.E(op, err)
	}
	data, err := json.Marshal(g.Data)
	if err != nil {
		return errs.E(op, err)
	}
	status, detail := failureCols(g.Failure)
	next := g.Version + 1
	err = db.InTx(ctx, func(tx *sqldb.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE sagas SET state = ?, step = ?, attempts = ?, next_at = ?, deadline = ?,
			lease_until = ?, version = ?, data = ?, error_status = ?, error_detail = ?, retryable = ?,
			callback_state = ?, callback_attempts = ?, callback_next_at = ?, callback_error = ?, updated_at = ?, expires_at = ?
			WHERE id = ? AND epoch = ? AND version = ?`,
			g.State, g.Step, g.Attempts, sqldb.MillisOrZero(g.NextAt), sqldb.MillisOrZero(g.Deadline), sqldb.MillisOrZero(g.LeaseUntil), next, string(data),
			status, detail, boolInt(g.Retryable), g.Callback.State, g.Callback.Attempts, sqldb.MillisOrZero(g.Callback.NextAt),
			g.Callback.LastError, sqldb.MillisOrZero(g.UpdatedAt), sqldb.MillisOrZero(g.ExpiresAt), g.ID, g.Epoch, g.Version)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if n == 0 {
			return errs.E(errs.Conflict, errs.Msg("saga %s moved on without this driver (epoch %d, version %d)", g.ID, g.Epoch, g.Version))
		}
		if len(recs) > checkout.MaxRecordsPerWrite {
			return errs.E(errs.Invalid, errs.Msg("%d history records in one write; at most %d", len(recs), checkout.MaxRecordsPerWrite))
		}
		for i, rec := range recs {
			rec.SagaID, rec.Seq, rec.Epoch = g.ID, seqOf(next, i), g.Epoch
			if err := appendStep(ctx, tx, rec, sh); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		if errs.Is(errs.Conflict, err) {
			return errs.E(op, err)
		}
		return errs.E(op, sqldb.NodeError(err))
	}
	g.Version = next
	return nil
}

// Renew extends the lease held under epoch (to the zero time: hands it
// over at once).
func (s *Store) Renew(ctx context.Context, id string, epoch int64, until time.Time) error {
	const op = "checkoutdb.Renew"
	db, _, err := s.sh.ForID(id)
	if err != nil {
		return errs.E(op, err)
	}
	res, err := db.ExecContext(ctx, `UPDATE sagas SET lease_until = ? WHERE id = ? AND epoch = ? AND state IN ('running', 'compensating')`,
		sqldb.MillisOrZero(until), id, epoch)
	if err != nil {
		return errs.E(op, sqldb.NodeError(err))
	}
	if n, err := res.RowsAffected(); err != nil {
		return errs.E(op, err)
	} else if n == 0 {
		return errs.E(op, errs.Conflict, errs.Msg("lease of saga %s lost", id))
	}
	return nil
}

// Expired returns unfinished sagas whose lease ran out, from every node
// that answers.
func (s *Store) Expired(ctx context.Context, now time.Time, limit int) ([]checkout.Claim, error) {
	r, _ := sqldb.Gather(ctx, s.sh, 5*time.Second, func(ctx context.Context, db *sqldb.DB) ([]checkout.Claim, error) {
		rows, err := db.QueryContext(ctx, `SELECT id, epoch FROM sagas
			WHERE state IN ('running', 'compensating') AND lease_until < ? ORDER BY lease_until LIMIT ?`, sqldb.MillisOrZero(now), limit)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		var out []checkout.Claim
		for rows.Next() {
			var c checkout.Claim
			if err := rows.Scan(&c.ID, &c.Epoch); err != nil {
				return nil, err
			}
			out = append(out, c)
		}
		return out, rows.Err()
	})
	if len(r.Items) == 0 && !r.Complete() {
		return nil, errs.E("checkoutdb.Expired", errs.Unavailable, errs.Msg("no saga log node answered"))
	}
	return r.Items[:min(len(r.Items), limit)], nil
}

// Claim takes over a saga found by Expired.
func (s *Store) Claim(ctx context.Context, c checkout.Claim, owner string, now, until time.Time) (bool, error) {
	const op = "checkoutdb.Claim"
	db, sh, err := s.sh.ForID(c.ID)
	if err != nil {
		return false, errs.E(op, err)
	}
	claimed := false
	err = db.InTx(ctx, func(tx *sqldb.Tx) error {
		claimed = false // InTx may run this again
		res, err := tx.ExecContext(ctx, `UPDATE sagas SET epoch = epoch + 1, owner = ?, lease_until = ?, version = version + 1
			WHERE id = ? AND epoch = ? AND lease_until < ? AND state IN ('running', 'compensating')`,
			owner, sqldb.MillisOrZero(until), c.ID, c.Epoch, sqldb.MillisOrZero(now))
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil || n == 0 {
			return err
		}
		claimed = true
		var version int64
		if err := tx.QueryRowContext(ctx, `SELECT version FROM sagas WHERE id = ?`, c.ID).Scan(&version); err != nil {
			return err
		}
		return appendStep(ctx, tx, checkout.StepRecord{SagaID: c.ID, Seq: seqOf(version, 0), Step: "lease", Outcome: "claimed",
			Detail: owner, Epoch: c.Epoch + 1, At: now}, sh)
	})
	if err != nil {
		return false, errs.E(op, sqldb.NodeError(err))
	}
	return claimed, nil
}

// Restart replaces the cancelled, retryable saga of g.UserID under g.Key.
func (s *Store) Restart(ctx context.Context, g checkout.Saga) (bool, error) {
	const op = "checkoutdb.Restart"
	db, sh, err := s.sh.ForUser(g.UserID)
	if err != nil {
		return false, errs.E(op, err)
	}
	data, err := json.Marshal(g.Data)
	if err != nil {
		return false, errs.E(op, err)
	}
	g.Version = 1
	done := false
	err = db.InTx(ctx, func(tx *sqldb.Tx) error {
		done = false // InTx may run this again
		// The old saga goes, with its history; the new one takes its key.
		if _, err := tx.ExecContext(ctx, `DELETE FROM saga_steps WHERE saga_id IN (SELECT id FROM sagas
			WHERE user_id = ? AND idem_key = ? AND state = 'cancelled' AND retryable = 1)`, g.UserID, g.Key); err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM sagas WHERE user_id = ? AND idem_key = ? AND state = 'cancelled' AND retryable = 1`,
			g.UserID, g.Key)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil || n == 0 {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO sagas (`+sagaColumns+`, shard)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, insertArgs(g, data, sh)...); err != nil {
			return err
		}
		done = true
		return appendStep(ctx, tx, checkout.StepRecord{SagaID: g.ID, Seq: seqOf(1, 0), Step: "checkout", Outcome: "started",
			Detail: "again after a roll-back", Epoch: g.Epoch, At: g.CreatedAt}, sh)
	})
	if err != nil {
		return false, errs.E(op, sqldb.NodeError(err))
	}
	return done, nil
}

// History returns a saga's records, oldest first.
func (s *Store) History(ctx context.Context, id string) ([]checkout.StepRecord, error) {
	const op = "checkoutdb.History"
	db, _, err := s.sh.ForID(id)
	if err != nil {
		return nil, errs.E(op, errs.NotFound, err)
	}
	rows, err := db.QueryContext(ctx, `SELECT seq, step, outcome, detail, epoch, at FROM saga_steps WHERE saga_id = ? ORDER BY seq`, id)
	if err != nil {
		return nil, errs.E(op, sqldb.NodeError(err))
	}
	defer rows.Close()
	out := []checkout.StepRecord{}
	for rows.Next() {
		r := checkout.StepRecord{SagaID: id}
		var at int64
		if err := rows.Scan(&r.Seq, &r.Step, &r.Outcome, &r.Detail, &r.Epoch, &at); err != nil {
			return nil, errs.E(op, err)
		}
		r.At = sqldb.FromMillis(at)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, errs.E(op, sqldb.NodeError(err))
	}
	return out, nil
}

// DueCallbacks returns pending callbacks due at now, from every node that
// answers.
func (s *Store) DueCallbacks(ctx context.Context, now time.Time, limit int) ([]checkout.Saga, error) {
	r, _ := sqldb.Gather(ctx, s.sh, 5*time.Second, func(ctx context.Context, db *sqldb.DB) ([]checkout.Saga, error) {
		rows, err := db.QueryContext(ctx, `SELECT `+sagaColumns+` FROM sagas
			WHERE callback_state = 'pending' AND callback_next_at <= ? ORDER BY callback_next_at LIMIT ?`, sqldb.MillisOrZero(now), limit)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		var out []checkout.Saga
		for rows.Next() {
			g, err := scanSaga(rows)
			if err != nil {
				return nil, err
			}
			out = append(out, g)
		}
		return out, rows.Err()
	})
	if len(r.Items) == 0 && !r.Complete() {
		return nil, errs.E("checkoutdb.DueCallbacks", errs.Unavailable, errs.Msg("no saga log node answered"))
	}
	return r.Items[:min(len(r.Items), limit)], nil
}

// ClaimCallback pushes a due callback's next try to until if it is still
// due at next.
func (s *Store) ClaimCallback(ctx context.Context, id string, next, until time.Time) (bool, error) {
	const op = "checkoutdb.ClaimCallback"
	db, _, err := s.sh.ForID(id)
	if err != nil {
		return false, errs.E(op, err)
	}
	res, err := db.ExecContext(ctx, `UPDATE sagas SET callback_next_at = ? WHERE id = ? AND callback_state = 'pending' AND callback_next_at = ?`,
		sqldb.MillisOrZero(until), id, sqldb.MillisOrZero(next))
	if err != nil {
		return false, errs.E(op, sqldb.NodeError(err))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, errs.E(op, err)
	}
	return n == 1, nil
}

// SaveCallback records a callback delivery's outcome.
func (s *Store) SaveCallback(ctx context.Context, id string, cb checkout.CallbackStatus) error {
	const op = "checkoutdb.SaveCallback"
	db, _, err := s.sh.ForID(id)
	if err != nil {
		return errs.E(op, err)
	}
	_, err = db.ExecContext(ctx, `UPDATE sagas SET callback_state = ?, callback_attempts = ?, callback_next_at = ?, callback_error = ? WHERE id = ?`,
		cb.State, cb.Attempts, sqldb.MillisOrZero(cb.NextAt), truncate(cb.LastError, 500), id)
	if err != nil {
		return errs.E(op, sqldb.NodeError(err))
	}
	return nil
}

// Purge deletes finished sagas whose key expired, with their history, up to
// limit on each node.
func (s *Store) Purge(ctx context.Context, now time.Time, limit int) (int, error) {
	total := 0
	err := s.sh.Each(ctx, func(ctx context.Context, _ string, db *sqldb.DB) error {
		n := 0
		defer func() { total += n }()
		return db.InTx(ctx, func(tx *sqldb.Tx) error {
			n = 0 // InTx may run this again
			rows, err := tx.QueryContext(ctx, `SELECT id FROM sagas WHERE state IN ('confirmed', 'cancelled')
				AND expires_at > 0 AND expires_at < ? AND callback_state <> 'pending' LIMIT ?`, sqldb.MillisOrZero(now), limit)
			if err != nil {
				return err
			}
			var idList []string
			for rows.Next() {
				var id string
				if err := rows.Scan(&id); err != nil {
					rows.Close()
					return err
				}
				idList = append(idList, id)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
			for _, id := range idList {
				if _, err := tx.ExecContext(ctx, `DELETE FROM saga_steps WHERE saga_id = ?`, id); err != nil {
					return err
				}
				if _, err := tx.ExecContext(ctx, `DELETE FROM sagas WHERE id = ?`, id); err != nil {
					return err
				}
			}
			n = len(idList)
			return nil
		})
	})
	if err != nil {
		return total, errs.E("checkoutdb.Purge", sqldb.NodeError(err))
	}
	return total, nil
}

type scanner interface{ Scan(dest ...any) error }

func scanSaga(row scanner) (checkout.Saga, error) {
	var (
		g                                             checkout.Saga
		nextAt, deadline, lease, cbNext, created, upd int64
		expires                                       int64
		data, detail                                  string
		status, retryable                             int
	)
	err := row.Scan(&g.ID, &g.UserID, &g.Key, &g.RequestHash, &g.State, &g.Step, &g.Attempts, &nextAt, &deadline,
		&g.Epoch, &g.Owner, &lease, &g.Version, &data, &status, &detail, &retryable, &g.Callback.URL, &g.Callback.State,
		&g.Callback.Attempts, &cbNext, &g.Callback.LastError, &created, &upd, &expires)
	if errors.Is(err, sql.ErrNoRows) {
		return checkout.Saga{}, errs.E(errs.NotFound, errs.Msg("checkout not found"))
	}
	if err != nil {
		return checkout.Saga{}, sqldb.NodeError(err)
	}
	if err := json.Unmarshal([]byte(data), &g.Data); err != nil {
		return checkout.Saga{}, errs.E(errs.Other, errs.Msg("saga %s has unreadable data", g.ID), err)
	}
	g.NextAt, g.Deadline, g.LeaseUntil = sqldb.FromMillisOrZero(nextAt), sqldb.FromMillisOrZero(deadline), sqldb.FromMillisOrZero(lease)
	g.Callback.NextAt = sqldb.FromMillisOrZero(cbNext)
	g.CreatedAt, g.UpdatedAt, g.ExpiresAt = sqldb.FromMillis(created), sqldb.FromMillis(upd), sqldb.FromMillisOrZero(expires)
	if status != 0 {
		g.Failure = &checkout.Failure{Status: status, Detail: detail}
	}
	g.Retryable = retryable == 1
	return g, nil
}

func failureCols(f *checkout.Failure) (int, string) {
	if f == nil {
		return 0, ""
	}
	return f.Status, f.Detail
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
