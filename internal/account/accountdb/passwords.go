package accountdb

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/globomantics/globomantics/internal/account"
	"github.com/globomantics/globomantics/internal/platform/consistency"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/outbox"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
)

// resetsKept is how long after its expiry a reset link's row is kept (for
// an operator's questions) before DeleteExpiredSessions removes it.
const resetsKept = 24 * time.Hour

// Outboxes returns the database of every node, by node name: each holds an
// outbox table of its own (password reset e-mail jobs), which needs its own
// outbox.Relay.
func (s *Store) Outboxes() map[string]*sqldb.DB { return s.sh.All() }

// GetPasswordHash returns the account's password hash. errs.NotFound.
func (s *Store) GetPasswordHash(ctx context.Context, accountID string) (string, error) {
	const op = "accountdb.GetPasswordHash"
	db, _, err := s.sh.ForUser(accountID)
	if err != nil {
		return "", errs.E(op, err)
	}
	var hash string
	// The primary's copy: a password just changed must not verify stale.
	err = db.Reader(ctx, consistency.Primary).QueryRowContext(ctx, `SELECT password_hash FROM accounts WHERE id = ?`, accountID).Scan(&hash)
	if err != nil {
		return "", notFound(op, err)
	}
	return hash, nil
}

// SetPassword stores the account's new hash and voids its unused reset
// links, in one transaction. errs.NotFound.
func (s *Store) SetPassword(ctx context.Context, accountID, hash string, now time.Time) error {
	const op = "accountdb.SetPassword"
	db, _, err := s.sh.ForUser(accountID)
	if err != nil {
		return errs.E(op, err)
	}
	err = db.InTx(ctx, func(tx *sqldb.Tx) error {
		return setPassword(ctx, tx, accountID, hash, now)
	})
	if err != nil {
		return errs.E(op, err)
	}
	return nil
}

func setPassword(ctx context.Context, tx *sqldb.Tx, accountID, hash string, now time.Time) error {
	res, err := tx.ExecContext(ctx, `UPDATE accounts SET password_hash = ? WHERE id = ?`, hash, accountID)
	if err != nil {
		return sqldb.NodeError(err)
	}
	if err := affected(res, "account"); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE password_resets SET used_at = ? WHERE account_id = ? AND used_at = 0`,
		sqldb.Millis(now), accountID); err != nil {
		return sqldb.NodeError(err)
	}
	return nil
}

// CreatePasswordReset records r and writes job to the outbox in the same
// transaction, on the account's node. errs.NotFound for an unknown
// account.
func (s *Store) CreatePasswordReset(ctx context.Context, r account.PasswordReset, job account.PasswordResetRequested) error {
	const op = "accountdb.CreatePasswordReset"
	db, sh, err := s.sh.ForUser(r.AccountID)
	if err != nil {
		return errs.E(op, err)
	}
	err = db.InTx(ctx, func(tx *sqldb.Tx) error {
		// Through a SELECT of the account, as CreateSession: a missing
		// account inserts nothing on both engines.
		res, err := tx.ExecContext(ctx, `INSERT INTO password_resets (id, account_id, created_at, expires_at, used_at, shard)
			SELECT ?, id, ?, ?, 0, ? FROM accounts WHERE id = ?`,
			r.ID, sqldb.Millis(r.CreatedAt), sqldb.Millis(r.ExpiresAt), int(sh), r.AccountID)
		if err != nil {
			return sqldb.NodeError(err)
		}
		if err := affected(res, "account"); err != nil {
			return err
		}
		return outbox.Add(ctx, tx, account.SubjectPasswordResetRequested, r.ID, job, r.CreatedAt)
	})
	if err != nil {
		return errs.E(op, err)
	}
	return nil
}

// CheckPasswordReset reports whether the link is the account's, unused and
// not expired at now. errs.NotFound if not.
func (s *Store) CheckPasswordReset(ctx context.Context, id, accountID string, now time.Time) error {
	const op = "accountdb.CheckPasswordReset"
	db, _, err := s.sh.ForUser(accountID)
	if err != nil {
		return errs.E(op, err)
	}
	var one int
	err = db.Reader(ctx, consistency.Primary).QueryRowContext(ctx, `SELECT 1 FROM password_resets
		WHERE id = ? AND account_id = ? AND used_at = 0 AND expires_at > ?`, id, accountID, sqldb.Millis(now)).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return errs.E(op, errs.NotFound, errs.Msg("reset link not found"))
	}
	if err != nil {
		return errs.E(op, sqldb.NodeError(err))
	}
	return nil
}

// UsePasswordReset marks the link used, stores the new hash and voids the
// account's other unused links, in one transaction; errs.NotFound (nothing
// changed) when the link is unknown, another account's, used or expired.
// Of two uses of one link at once, one wins: the UPDATE's condition
// used_at = 0 is evaluated on the row under its write lock.
func (s *Store) UsePasswordReset(ctx context.Context, id, accountID, hash string, now time.Time) error {
	const op = "accountdb.UsePasswordReset"
	db, _, err := s.sh.ForUser(accountID)
	if err != nil {
		return errs.E(op, err)
	}
	ms := sqldb.Millis(now)
	err = db.InTx(ctx, func(tx *sqldb.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE password_resets SET used_at = ?
			WHERE id = ? AND account_id = ? AND used_at = 0 AND expires_at > ?`, ms, id, accountID, ms)
		if err != nil {
			return sqldb.NodeError(err)
		}
		if err := affected(res, "reset link"); err != nil {
			return err
		}
		return setPassword(ctx, tx, accountID, hash, now)
	})
	if err != nil {
		return errs.E(op, err)
	}
	return nil
}

// DeleteOtherSessions deletes every session of the account, on its node,
// except the one of the session key keep ("" keeps none), and reports how
// many it deleted.
func (s *Store) DeleteOtherSessions(ctx context.Context, accountID, keep string) (int64, error) {
	const op = "accountdb.DeleteOtherSessions"
	if keep == "" {
		return s.DeleteAccountSessions(ctx, accountID)
	}
	hash, _, _ := account.ParseSessionKey(keep)
	db, _, err := s.sh.ForUser(accountID)
	if err != nil {
		return 0, errs.E(op, err)
	}
	res, err := db.ExecContext(ctx, `DELETE FROM sessions WHERE account_id = ? AND token_hash <> ?`, accountID, hash)
	if err != nil {
		return 0, errs.E(op, sqldb.NodeError(err))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, errs.E(op, err)
	}
	return n, nil
}

// affected is nil when res changed a row, else errs.NotFound ("<what> not
// found") or the driver's error.
func affected(res sql.Result, what string) error {
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return errs.E(errs.NotFound, errs.Msg("%s not found", what))
	}
	return nil
}

// purgeResets deletes the reset links of db that expired resetsKept before
// now.
func purgeResets(ctx context.Context, db *sqldb.DB, now time.Time) error {
	_, err := db.ExecContext(ctx, `DELETE FROM password_resets WHERE expires_at <= ?`, sqldb.Millis(now.Add(-resetsKept)))
	return sqldb.NodeError(err)
}
