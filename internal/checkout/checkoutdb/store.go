// Package checkoutdb is the SQL store of the checkout service: the attempts
// table that makes placing an order idempotent.
//
// The store is sharded by user (see sqldb.Sharded): a user's attempts live
// on the node holding shard.ForUser(user id), recorded in their shard
// column; every call names its user, so none asks more than one node.
package checkoutdb

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"io/fs"
	"time"

	"github.com/globomantics/globomantics/internal/checkout"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/shard"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
)

// migrations (goose SQL files) are applied in order and never edited once released. An
// outcome's error kind is stored as its HTTP status (0 for success), which
// stays stable if kinds are ever renumbered.
//
//go:embed migrations/*.sql
var migrations embed.FS

// Store keeps checkout attempts in a SQL database, one node or several.
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
// migrations to every node and filling in the shard column of rows written
// before it existed. Every node must answer.
func OpenSharded(ctx context.Context, sh *sqldb.Sharded) (*Store, error) {
	dir, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return nil, err
	}
	if err := sh.Migrate(ctx, "checkout", dir); err != nil {
		return nil, err
	}
	err = sh.Each(ctx, func(ctx context.Context, _ string, db *sqldb.DB) error {
		return sqldb.BackfillShard(ctx, db, "checkout_attempts", "user_id", "user_id", func(user, _ string) shard.ID {
			return shard.ForUser(user)
		})
	})
	if err != nil {
		return nil, errs.E("checkoutdb.Open", errs.Msg("filling in the shard column"), err)
	}
	return &Store{sh: sh}, nil
}

// Begin records a started attempt, or returns the existing one for its user and key.
func (s *Store) Begin(ctx context.Context, a checkout.Attempt) (checkout.Attempt, bool, error) {
	const op = "checkoutdb.Begin"
	status, detail := encodeOutcome(a.Outcome)
	db, sh, err := s.sh.ForUser(a.UserID)
	if err != nil {
		return checkout.Attempt{}, false, errs.E(op, err)
	}
	res, err := db.ExecContext(ctx, `INSERT INTO checkout_attempts
		(user_id, idem_key, order_id, request_hash, state, error_status, error_detail, created_at, updated_at, shard)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (user_id, idem_key) DO NOTHING`,
		a.UserID, a.Key, a.OrderID, a.RequestHash, a.State, status, detail,
		sqldb.Millis(a.CreatedAt), sqldb.Millis(a.UpdatedAt), int(sh))
	if err != nil {
		return checkout.Attempt{}, false, errs.E(op, sqldb.NodeError(err))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return checkout.Attempt{}, false, errs.E(op, err)
	}
	stored, err := s.get(ctx, a.UserID, a.Key)
	if err != nil {
		return checkout.Attempt{}, false, errs.E(op, err)
	}
	return stored, n == 1, nil
}

// Finish marks the attempt finished with its outcome; a finished attempt
// keeps its first outcome. errs.NotFound for an unknown attempt.
func (s *Store) Finish(ctx context.Context, userID, key string, o checkout.Outcome, now time.Time) error {
	const op = "checkoutdb.Finish"
	status, detail := encodeOutcome(o)
	db, _, err := s.sh.ForUser(userID)
	if err != nil {
		return errs.E(op, err)
	}
	res, err := db.ExecContext(ctx, `UPDATE checkout_attempts
		SET state = ?, error_status = ?, error_detail = ?, retryable = ?, updated_at = ?
		WHERE user_id = ? AND idem_key = ? AND state = ?`,
		checkout.AttemptFinished, status, detail, boolInt(o.Failed && o.Retryable), sqldb.Millis(now), userID, key, checkout.AttemptStarted)
	if err != nil {
		return errs.E(op, sqldb.NodeError(err))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return errs.E(op, err)
	}
	if n == 0 { // finished already, or unknown
		if _, err := s.get(ctx, userID, key); err != nil {
			return errs.E(op, err)
		}
	}
	return nil
}

// Restart starts a finished, retryable attempt again under a new order id
// and reports whether this call did (of concurrent callers, one does).
// errs.NotFound for an unknown attempt.
func (s *Store) Restart(ctx context.Context, userID, key, orderID string, now time.Time) (bool, error) {
	const op = "checkoutdb.Restart"
	db, _, err := s.sh.ForUser(userID)
	if err != nil {
		return false, errs.E(op, err)
	}
	res, err := db.ExecContext(ctx, `UPDATE checkout_attempts
		SET state = ?, order_id = ?, error_status = 0, error_detail = '', retryable = 0, updated_at = ?
		WHERE user_id = ? AND idem_key = ? AND state = ? AND retryable = 1`,
		checkout.AttemptStarted, orderID, sqldb.Millis(now), userID, key, checkout.AttemptFinished)
	if err != nil {
		return false, errs.E(op, sqldb.NodeError(err))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, errs.E(op, err)
	}
	if n == 0 {
		if _, err := s.get(ctx, userID, key); err != nil {
			return false, errs.E(op, err)
		}
	}
	return n == 1, nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Get returns the attempt of userID under key; errs.NotFound if there is none.
func (s *Store) Get(ctx context.Context, userID, key string) (checkout.Attempt, error) {
	a, err := s.get(ctx, userID, key)
	if err != nil {
		return checkout.Attempt{}, errs.E("checkoutdb.Get", err)
	}
	return a, nil
}

func (s *Store) get(ctx context.Context, userID, key string) (checkout.Attempt, error) {
	var (
		a            checkout.Attempt
		status       int
		detail       string
		retryable    int
		created, upd int64
	)
	db, _, err := s.sh.ForUser(userID)
	if err != nil {
		return checkout.Attempt{}, err
	}
	err = db.QueryRowContext(ctx, `SELECT user_id, idem_key, order_id, request_hash, state, error_status, error_detail,
		retryable, created_at, updated_at FROM checkout_attempts WHERE user_id = ? AND idem_key = ?`, userID, key).
		Scan(&a.UserID, &a.Key, &a.OrderID, &a.RequestHash, &a.State, &status, &detail, &retryable, &created, &upd)
	if errors.Is(err, sql.ErrNoRows) {
		return checkout.Attempt{}, errs.E(errs.NotFound, errs.Msg("checkout attempt not found"))
	}
	if err != nil {
		return checkout.Attempt{}, sqldb.NodeError(err)
	}
	a.Outcome = decodeOutcome(status, detail)
	a.Outcome.Retryable = a.Outcome.Failed && retryable == 1
	a.CreatedAt = sqldb.FromMillis(created)
	a.UpdatedAt = sqldb.FromMillis(upd)
	return a, nil
}

func encodeOutcome(o checkout.Outcome) (int, string) {
	if !o.Failed {
		return 0, ""
	}
	return o.ErrKind.Status(), o.ErrDetail
}

func decodeOutcome(status int, detail string) checkout.Outcome {
	if status == 0 {
		return checkout.Outcome{}
	}
	return checkout.Outcome{Failed: true, ErrKind: errs.KindForStatus(status), ErrDetail: detail}
}
