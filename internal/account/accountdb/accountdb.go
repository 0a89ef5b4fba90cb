// Package accountdb is the account service's store over SQL (SQLite or
// PostgreSQL): the accounts and sessions tables.
package accountdb

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/globomantics/globomantics/internal/account"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
)

var migrations = []string{
	`CREATE TABLE accounts (
		id TEXT PRIMARY KEY,
		email TEXT NOT NULL UNIQUE,
		name TEXT NOT NULL,
		password_hash TEXT NOT NULL,
		created_at BIGINT NOT NULL
	);
	CREATE TABLE sessions (
		token_hash TEXT PRIMARY KEY,
		account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
		created_at BIGINT NOT NULL,
		expires_at BIGINT NOT NULL
	);
	CREATE INDEX sessions_account_id ON sessions (account_id);
	CREATE INDEX sessions_expires_at ON sessions (expires_at)`,
}

// Store keeps accounts and sessions in a SQL database.
type Store struct {
	db *sqldb.DB
}

var _ account.Store = (*Store)(nil)

// Open returns the store over db, creating or upgrading its tables.
func Open(ctx context.Context, db *sqldb.DB) (*Store, error) {
	if err := db.Migrate(ctx, "account", migrations); err != nil {
		return nil, err
	}
	return &Store{db: db}, nil
}

// CreateAccount inserts a. errs.Conflict if the email is taken.
func (s *Store) CreateAccount(ctx context.Context, a account.StoredAccount) error {
	const op = "accountdb.CreateAccount"
	res, err := s.db.ExecContext(ctx, `INSERT INTO accounts (id, email, name, password_hash, created_at)
		VALUES (?, ?, ?, ?, ?) ON CONFLICT (email) DO NOTHING`,
		a.ID, a.Email, a.Name, a.PasswordHash, sqldb.Millis(a.CreatedAt))
	if err != nil {
		return errs.E(op, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return errs.E(op, err)
	}
	if n == 0 {
		return errs.E(op, errs.Conflict, errs.Msg("an account with this email already exists"))
	}
	return nil
}

// GetAccountByEmail returns the account with the email. errs.NotFound.
func (s *Store) GetAccountByEmail(ctx context.Context, email string) (account.StoredAccount, error) {
	const op = "accountdb.GetAccountByEmail"
	var (
		a       account.StoredAccount
		created int64
	)
	err := s.db.QueryRowContext(ctx, `SELECT id, email, name, password_hash, created_at FROM accounts WHERE email = ?`, email).
		Scan(&a.ID, &a.Email, &a.Name, &a.PasswordHash, &created)
	if err != nil {
		return account.StoredAccount{}, notFound(op, err)
	}
	a.CreatedAt = sqldb.FromMillis(created)
	return a, nil
}

// GetAccount returns the account with the id. errs.NotFound.
func (s *Store) GetAccount(ctx context.Context, id string) (account.Account, error) {
	const op = "accountdb.GetAccount"
	var a account.Account
	err := s.db.QueryRowContext(ctx, `SELECT id, email, name FROM accounts WHERE id = ?`, id).Scan(&a.ID, &a.Email, &a.Name)
	if err != nil {
		return account.Account{}, notFound(op, err)
	}
	return a, nil
}

// UpdateName sets the account's name and returns the account. errs.NotFound.
func (s *Store) UpdateName(ctx context.Context, id, name string) (account.Account, error) {
	const op = "accountdb.UpdateName"
	var a account.Account
	err := s.db.QueryRowContext(ctx, `UPDATE accounts SET name = ? WHERE id = ? RETURNING id, email, name`, name, id).
		Scan(&a.ID, &a.Email, &a.Name)
	if err != nil {
		return account.Account{}, notFound(op, err)
	}
	return a, nil
}

// CreateSession inserts sess. errs.NotFound if its account does not exist.
func (s *Store) CreateSession(ctx context.Context, sess account.StoredSession) error {
	const op = "accountdb.CreateSession"
	// Inserting through a SELECT of the account makes a missing account
	// insert nothing, on both engines, instead of a dialect-specific
	// foreign-key error.
	res, err := s.db.ExecContext(ctx, `INSERT INTO sessions (token_hash, account_id, created_at, expires_at)
		SELECT ?, id, ?, ? FROM accounts WHERE id = ?`,
		sess.TokenHash, sqldb.Millis(sess.CreatedAt), sqldb.Millis(sess.ExpiresAt), sess.AccountID)
	if err != nil {
		return errs.E(op, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return errs.E(op, err)
	}
	if n == 0 {
		return errs.E(op, errs.NotFound, errs.Msg("account not found"))
	}
	return nil
}

// GetSession returns the session with the token hash and its account,
// expired or not. errs.NotFound.
func (s *Store) GetSession(ctx context.Context, tokenHash string) (account.StoredSession, account.Account, error) {
	const op = "accountdb.GetSession"
	var (
		sess             account.StoredSession
		a                account.Account
		created, expires int64
	)
	err := s.db.QueryRowContext(ctx, `SELECT s.token_hash, s.created_at, s.expires_at, a.id, a.email, a.name
		FROM sessions s JOIN accounts a ON a.id = s.account_id WHERE s.token_hash = ?`, tokenHash).
		Scan(&sess.TokenHash, &created, &expires, &a.ID, &a.Email, &a.Name)
	if err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return account.StoredSession{}, account.Account{}, errs.E(op, errs.NotFound, errs.Msg("session not found"), err)
		}
		return account.StoredSession{}, account.Account{}, errs.E(op, err)
	}
	sess.AccountID = a.ID
	sess.CreatedAt, sess.ExpiresAt = sqldb.FromMillis(created), sqldb.FromMillis(expires)
	return sess, a, nil
}

// ExtendSession moves the session's expiry to expiresAt if that is later; an
// unknown session is not an error.
func (s *Store) ExtendSession(ctx context.Context, tokenHash string, expiresAt time.Time) error {
	ms := sqldb.Millis(expiresAt)
	_, err := s.db.ExecContext(ctx, `UPDATE sessions SET expires_at = ? WHERE token_hash = ? AND expires_at < ?`, ms, tokenHash, ms)
	if err != nil {
		return errs.E("accountdb.ExtendSession", err)
	}
	return nil
}

// DeleteSession deletes the session; an unknown session is not an error.
func (s *Store) DeleteSession(ctx context.Context, tokenHash string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM sessions WHERE token_hash = ?`, tokenHash); err != nil {
		return errs.E("accountdb.DeleteSession", err)
	}
	return nil
}

// DeleteExpiredSessions deletes sessions that expired at or before now and
// reports how many it deleted.
func (s *Store) DeleteExpiredSessions(ctx context.Context, now time.Time) (int64, error) {
	const op = "accountdb.DeleteExpiredSessions"
	res, err := s.db.ExecContext(ctx, `DELETE FROM sessions WHERE expires_at <= ?`, sqldb.Millis(now))
	if err != nil {
		return 0, errs.E(op, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, errs.E(op, err)
	}
	return n, nil
}

// notFound maps sql.ErrNoRows to errs.NotFound for an account.
func notFound(op string, err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return errs.E(op, errs.NotFound, errs.Msg("account not found"), err)
	}
	return errs.E(op, err)
}
