// Package accountdb is the account service's store over SQL (SQLite or
// PostgreSQL): the accounts and sessions tables, and the e-mail directory.
//
// The store is sharded by user (see sqldb.Sharded). An account and its
// sessions live on the node of shard.ForUser(account id), recorded in their
// shard column. A session is found from its key (account.SessionKey): the
// tokens made since sessions are sharded carry the account's shard; a key
// without one (an older token) is looked for on every node.
//
// Login finds an account by e-mail through a directory, account_emails,
// whose row for an e-mail lives on the node of shard.ForKey(email): it
// holds the account's id and shard, and makes an e-mail unique across every
// node. Registration writes the directory row first, then the account on its
// own node (see CreateAccount).
package accountdb

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"time"

	"github.com/globomantics/globomantics/internal/account"
	"github.com/globomantics/globomantics/internal/platform/consistency"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/outbox"
	"github.com/globomantics/globomantics/internal/platform/shard"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
)

// migrations are the store's goose migrations, applied in order and never
// edited once released.
//
//go:embed migrations/*.sql
var migrations embed.FS

// ClaimTimeout is how long a directory row whose account does not exist
// still blocks its e-mail: a registration may be between its two writes.
// After it the row is taken to be left over from a registration that
// stopped between them, and the next registration of the e-mail takes it
// over.
const ClaimTimeout = 30 * time.Second

// scatterTimeout bounds each node's answer to a look-up by a session key
// that names no shard.
const scatterTimeout = 2 * time.Second

// Store keeps accounts and sessions in a SQL database, one node or several.
type Store struct {
	sh *sqldb.Sharded
}

var (
	_ account.Store        = (*Store)(nil)
	_ account.SessionStore = (*Store)(nil)
	_ account.Credentials  = (*Store)(nil)
)

// Open returns the store over the one database db (every shard on it),
// creating or upgrading its tables.
func Open(ctx context.Context, db *sqldb.DB) (*Store, error) {
	return OpenSharded(ctx, sqldb.Single(db))
}

// OpenSharded returns the store over the nodes of sh after applying its
// migrations to every node and filling in, for the accounts written before
// the shard column existed, their directory rows and shard column. Every
// node must answer.
func OpenSharded(ctx context.Context, sh *sqldb.Sharded) (*Store, error) {
	dir, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return nil, err
	}
	// Each node's outbox (password reset e-mails) may share its database
	// with another store's.
	if err := sh.Each(ctx, func(ctx context.Context, _ string, db *sqldb.DB) error {
		fsys, err := outbox.SharedMigrations(ctx, db, dir, "00005_outbox_v2.sql")
		if err != nil {
			return err
		}
		return db.Migrate(ctx, "account", fsys)
	}); err != nil {
		return nil, err
	}
	s := &Store{sh: sh}
	err = sh.Each(ctx, func(ctx context.Context, _ string, db *sqldb.DB) error {
		if err := s.backfillAccounts(ctx, db); err != nil {
			return err
		}
		return sqldb.BackfillShard(ctx, db, "sessions", "account_id", "account_id", func(id, _ string) shard.ID {
			return shard.ForUser(id)
		})
	})
	if err != nil {
		return nil, errs.E("accountdb.Open", errs.Msg("filling in the shard column"), err)
	}
	return s, nil
}

// backfillAccounts writes the directory row of every account of db whose
// shard is -1, then sets its shard, in batches; an interrupted run resumes.
func (s *Store) backfillAccounts(ctx context.Context, db *sqldb.DB) error {
	for {
		type acc struct {
			id, email string
			created   int64
		}
		var todo []acc
		rows, err := db.QueryContext(ctx, `SELECT id, email, created_at FROM accounts WHERE shard = -1 LIMIT 500`)
		if err != nil {
			return sqldb.NodeError(err)
		}
		for rows.Next() {
			var a acc
			if err := rows.Scan(&a.id, &a.email, &a.created); err != nil {
				rows.Close()
				return err
			}
			todo = append(todo, a)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return sqldb.NodeError(err)
		}
		if len(todo) == 0 {
			return nil
		}
		for _, a := range todo {
			dirDB, esh, err := s.sh.For(a.email)
			if err != nil {
				return err
			}
			if _, err := dirDB.ExecContext(ctx, `INSERT INTO account_emails (email, account_id, account_shard, created_at, shard)
				VALUES (?, ?, ?, ?, ?) ON CONFLICT (email) DO NOTHING`,
				a.email, a.id, int(shard.ForUser(a.id)), a.created, int(esh)); err != nil {
				return sqldb.NodeError(err)
			}
			if _, err := db.ExecContext(ctx, `UPDATE accounts SET shard = ? WHERE id = ?`, int(shard.ForUser(a.id)), a.id); err != nil {
				return sqldb.NodeError(err)
			}
		}
	}
}

// errEmailTaken is the one answer to a registration of a taken e-mail.
func errEmailTaken(op string) error {
	return errs.E(op, errs.Conflict, errs.Msg("an account with this email already exists"))
}

// CreateAccount inserts a. errs.Conflict if the email is taken.
//
// It claims the e-mail in the directory first, then inserts the account on
// its own node. A directory row held by another account id does not block
// the e-mail when that account does not exist and the row is older than
// ClaimTimeout (by a.CreatedAt): it is left over from a registration that
// stopped between its two writes, and this registration takes it over.
// After inserting the account it checks that the directory still names it
// (a registration stalled past ClaimTimeout may have lost the e-mail) and,
// if not, removes the account and fails with errs.Conflict.
func (s *Store) CreateAccount(ctx context.Context, a account.StoredAccount) error {
	const op = "accountdb.CreateAccount"
	dirDB, esh, err := s.sh.For(a.Email)
	if err != nil {
		return errs.E(op, err)
	}
	accDB, ash, err := s.sh.ForUser(a.ID)
	if err != nil {
		return errs.E(op, err)
	}
	created := sqldb.Millis(a.CreatedAt)
	res, err := dirDB.ExecContext(ctx, `INSERT INTO account_emails (email, account_id, account_shard, created_at, shard)
		VALUES (?, ?, ?, ?, ?) ON CONFLICT (email) DO NOTHING`, a.Email, a.ID, int(ash), created, int(esh))
	if err != nil {
		return errs.E(op, sqldb.NodeError(err))
	}
	if n, err := res.RowsAffected(); err != nil {
		return errs.E(op, err)
	} else if n == 0 {
		if err := s.takeOver(ctx, dirDB, a, ash); err != nil {
			return errs.E(op, err)
		}
	}
	res, err = accDB.ExecContext(ctx, `INSERT INTO accounts (id, email, name, password_hash, created_at, shard)
		VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (email) DO NOTHING`,
		a.ID, a.Email, a.Name, a.PasswordHash, created, int(ash))
	if err != nil {
		return errs.E(op, sqldb.NodeError(err))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return errs.E(op, err)
	}
	if n == 0 {
		// An account with this e-mail on this node that the directory does
		// not name: left by a registration that lost its claim. The claim
		// made above stays until ClaimTimeout, like any unfinished one.
		return errEmailTaken(op)
	}
	var owner string
	if err := dirDB.QueryRowContext(ctx, `SELECT account_id FROM account_emails WHERE email = ?`, a.Email).Scan(&owner); err != nil || owner != a.ID {
		if _, derr := accDB.ExecContext(ctx, `DELETE FROM accounts WHERE id = ?`, a.ID); derr != nil {
			slog.ErrorContext(ctx, "accountdb: cannot remove an account that lost its e-mail claim", "account_id", a.ID, "err", derr)
		}
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return errs.E(op, sqldb.NodeError(err))
		}
		return errEmailTaken(op)
	}
	return nil
}

// takeOver is CreateAccount's answer to an e-mail already in the directory:
// nil when this registration now holds the row (a retry of itself, or a
// takeover of a row left over), errs.Conflict when the e-mail is taken.
func (s *Store) takeOver(ctx context.Context, dirDB *sqldb.DB, a account.StoredAccount, ash shard.ID) error {
	var (
		holder  string
		created int64
	)
	err := dirDB.QueryRowContext(ctx, `SELECT account_id, created_at FROM account_emails WHERE email = ?`, a.Email).Scan(&holder, &created)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return errEmailTaken("accountdb.CreateAccount") // deleted meanwhile: let the caller retry
	case err != nil:
		return sqldb.NodeError(err)
	case holder == a.ID:
		return nil
	}
	holderDB, _, err := s.sh.ForUser(holder)
	if err != nil {
		return err
	}
	var n int
	if err := holderDB.QueryRowContext(ctx, `SELECT COUNT(*) FROM accounts WHERE id = ?`, holder).Scan(&n); err != nil {
		return sqldb.NodeError(err)
	}
	if n > 0 || a.CreatedAt.Sub(sqldb.FromMillis(created)) < ClaimTimeout {
		return errEmailTaken("accountdb.CreateAccount")
	}
	res, err := dirDB.ExecContext(ctx, `UPDATE account_emails SET account_id = ?, account_shard = ?, created_at = ?
		WHERE email = ? AND account_id = ?`, a.ID, int(ash), sqldb.Millis(a.CreatedAt), a.Email, holder)
	if err != nil {
		return sqldb.NodeError(err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return errEmailTaken("accountdb.CreateAccount") // another registration took it first
	}
	slog.WarnContext(ctx, "accountdb: took over an e-mail claim whose account was never written",
		"account_id", a.ID, "stale_account_id", holder)
	return nil
}

// GetAccountByEmail returns the account with the email. errs.NotFound.
func (s *Store) GetAccountByEmail(ctx context.Context, email string) (account.StoredAccount, error) {
	const op = "accountdb.GetAccountByEmail"
	dirDB, _, err := s.sh.For(email)
	if err != nil {
		return account.StoredAccount{}, errs.E(op, err)
	}
	var id string
	// Read-your-writes: a customer logs in right after registering.
	if err := dirDB.Reader(ctx, consistency.ReadYourWrites).QueryRowContext(ctx, `SELECT account_id FROM account_emails WHERE email = ?`, email).Scan(&id); err != nil {
		return account.StoredAccount{}, notFound(op, err)
	}
	accDB, _, err := s.sh.ForUser(id)
	if err != nil {
		return account.StoredAccount{}, errs.E(op, err)
	}
	var (
		a       account.StoredAccount
		created int64
	)
	// An account that was never written (a registration that stopped
	// between its two writes) is not found.
	err = accDB.Reader(ctx, consistency.ReadYourWrites).QueryRowContext(ctx, `SELECT id, email, name, password_hash, created_at FROM accounts WHERE id = ? AND email = ?`, id, email).
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
	db, _, err := s.sh.ForUser(id)
	if err != nil {
		return account.Account{}, errs.E(op, err)
	}
	var a account.Account
	err = db.Reader(ctx, consistency.ReadYourWrites).QueryRowContext(ctx, `SELECT id, email, name FROM accounts WHERE id = ?`, id).Scan(&a.ID, &a.Email, &a.Name)
	if err != nil {
		return account.Account{}, notFound(op, err)
	}
	return a, nil
}

// UpdateName sets the account's name and returns the account. errs.NotFound.
func (s *Store) UpdateName(ctx context.Context, id, name string) (account.Account, error) {
	const op = "accountdb.UpdateName"
	db, _, err := s.sh.ForUser(id)
	if err != nil {
		return account.Account{}, errs.E(op, err)
	}
	var a account.Account
	// In a transaction, so that the write's position reaches the caller's
	// consistency token and its next read sees the new name.
	err = db.InTx(ctx, func(tx *sqldb.Tx) error {
		return tx.QueryRowContext(ctx, `UPDATE accounts SET name = ? WHERE id = ? RETURNING id, email, name`, name, id).
			Scan(&a.ID, &a.Email, &a.Name)
	})
	if err != nil {
		return account.Account{}, notFound(op, err)
	}
	return a, nil
}

// CreateSession inserts sess, on its account's node. errs.NotFound if its
// account does not exist; errs.Conflict if a session with its token hash
// does.
func (s *Store) CreateSession(ctx context.Context, sess account.StoredSession) error {
	const op = "accountdb.CreateSession"
	db, sh, err := s.sh.ForUser(sess.AccountID)
	if err != nil {
		return errs.E(op, err)
	}
	// Inserting through a SELECT of the account makes a missing account
	// insert nothing, on both engines, instead of a dialect-specific
	// foreign-key error.
	res, err := db.ExecContext(ctx, `INSERT INTO sessions (token_hash, account_id, created_at, expires_at, shard)
		SELECT ?, id, ?, ?, ? FROM accounts WHERE id = ?`,
		sess.TokenHash, sqldb.Millis(sess.CreatedAt), sqldb.Millis(sess.ExpiresAt), int(sh), sess.AccountID)
	if err != nil {
		if sqldb.IsUniqueViolation(err) {
			return errs.E(op, errs.Conflict, errs.Msg("session exists"), err)
		}
		return errs.E(op, sqldb.NodeError(err))
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

// sessionNodes returns the token hash of a session key and the nodes to ask
// for it: the node of the shard the key names, or every node for a key that
// names none (a token made before sessions were sharded).
func (s *Store) sessionNodes(key string) (string, []*sqldb.DB, error) {
	hash, sh, ok := account.ParseSessionKey(key)
	if ok {
		db, err := s.sh.ForShard(sh)
		if err != nil {
			return "", nil, err
		}
		return hash, []*sqldb.DB{db}, nil
	}
	m, dbs := s.sh.Snapshot()
	nodes := m.Nodes()
	out := make([]*sqldb.DB, 0, len(nodes))
	for _, n := range nodes {
		out = append(out, dbs[n])
	}
	return hash, out, nil
}

// sessionRow is a session and its account as GetSession reads them.
type sessionRow struct {
	sess account.StoredSession
	acc  account.Account
}

// GetSession returns the session with the session key and its account,
// expired or not. errs.NotFound; errs.Unavailable when the session's node
// (for a key without a shard: any node, if no other has the session) does
// not answer.
func (s *Store) GetSession(ctx context.Context, key string) (account.StoredSession, account.Account, error) {
	const op = "accountdb.GetSession"
	hash, nodes, err := s.sessionNodes(key)
	if err != nil {
		return account.StoredSession{}, account.Account{}, errs.E(op, err)
	}
	if len(nodes) == 1 {
		r, err := getSession(ctx, nodes[0], hash)
		if err != nil {
			return account.StoredSession{}, account.Account{}, errs.E(op, err)
		}
		return r.sess, r.acc, nil
	}
	// An old token: scatter, rather than log out every session made before
	// tokens carried their shard.
	slog.InfoContext(ctx, "accountdb: session token carries no shard; asking every node")
	r, _ := sqldb.Gather(ctx, s.sh, scatterTimeout, func(ctx context.Context, db *sqldb.DB) ([]sessionRow, error) {
		row, err := getSession(ctx, db, hash)
		if errs.Is(errs.NotFound, err) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		return []sessionRow{row}, nil
	})
	switch {
	case len(r.Items) > 0:
		return r.Items[0].sess, r.Items[0].acc, nil
	case !r.Complete():
		return account.StoredSession{}, account.Account{}, errs.E(op, errs.Unavailable, errs.Msg("session store unavailable"),
			fmt.Errorf("nodes did not answer: %s", r.Missing[0].Err))
	}
	return account.StoredSession{}, account.Account{}, errs.E(op, errs.NotFound, errs.Msg("session not found"))
}

// LookupSession returns the session with the session key, expired or not
// (see GetSession, which also returns its account). errs.NotFound;
// errs.Unavailable.
func (s *Store) LookupSession(ctx context.Context, key string) (account.StoredSession, error) {
	sess, _, err := s.GetSession(ctx, key)
	if err != nil {
		return account.StoredSession{}, errs.E("accountdb.LookupSession", err)
	}
	return sess, nil
}

// DeleteAccountSessions deletes every session of the account, on its node,
// and reports how many it deleted.
func (s *Store) DeleteAccountSessions(ctx context.Context, accountID string) (int64, error) {
	const op = "accountdb.DeleteAccountSessions"
	db, _, err := s.sh.ForUser(accountID)
	if err != nil {
		return 0, errs.E(op, err)
	}
	res, err := db.ExecContext(ctx, `DELETE FROM sessions WHERE account_id = ?`, accountID)
	if err != nil {
		return 0, errs.E(op, sqldb.NodeError(err))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, errs.E(op, err)
	}
	return n, nil
}

func getSession(ctx context.Context, db *sqldb.DB, hash string) (sessionRow, error) {
	var (
		r                sessionRow
		created, expires int64
	)
	// Read-your-writes: the session was made by the caller's login.
	err := db.Reader(ctx, consistency.ReadYourWrites).QueryRowContext(ctx, `SELECT s.token_hash, s.created_at, s.expires_at, a.id, a.email, a.name
		FROM sessions s JOIN accounts a ON a.id = s.account_id WHERE s.token_hash = ?`, hash).
		Scan(&r.sess.TokenHash, &created, &expires, &r.acc.ID, &r.acc.Email, &r.acc.Name)
	if err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return sessionRow{}, errs.E(errs.NotFound, errs.Msg("session not found"), err)
		}
		return sessionRow{}, sqldb.NodeError(err)
	}
	r.sess.AccountID = r.acc.ID
	r.sess.CreatedAt, r.sess.ExpiresAt = sqldb.FromMillis(created), sqldb.FromMillis(expires)
	return r, nil
}

// ExtendSession moves the session's expiry to expiresAt if that is later; an
// unknown session is not an error.
func (s *Store) ExtendSession(ctx context.Context, key string, expiresAt time.Time) error {
	const op = "accountdb.ExtendSession"
	hash, nodes, err := s.sessionNodes(key)
	if err != nil {
		return errs.E(op, err)
	}
	ms := sqldb.Millis(expiresAt)
	var all []error
	for _, db := range nodes {
		if _, err := db.ExecContext(ctx, `UPDATE sessions SET expires_at = ? WHERE token_hash = ? AND expires_at < ?`, ms, hash, ms); err != nil {
			all = append(all, sqldb.NodeError(err))
		}
	}
	if err := errors.Join(all...); err != nil {
		return errs.E(op, err)
	}
	return nil
}

// DeleteSession deletes the session; an unknown session is not an error.
func (s *Store) DeleteSession(ctx context.Context, key string) error {
	const op = "accountdb.DeleteSession"
	hash, nodes, err := s.sessionNodes(key)
	if err != nil {
		return errs.E(op, err)
	}
	var all []error
	for _, db := range nodes {
		if _, err := db.ExecContext(ctx, `DELETE FROM sessions WHERE token_hash = ?`, hash); err != nil {
			all = append(all, sqldb.NodeError(err))
		}
	}
	if err := errors.Join(all...); err != nil {
		return errs.E(op, err)
	}
	return nil
}

// DeleteExpiredSessions deletes sessions that expired at or before now on
// every node (and password reset links a day past their expiry) and
// reports how many sessions it deleted; a node that fails does not
// stop the others, and its error is returned with their count.
func (s *Store) DeleteExpiredSessions(ctx context.Context, now time.Time) (int64, error) {
	const op = "accountdb.DeleteExpiredSessions"
	var total int64
	err := s.sh.Each(ctx, func(ctx context.Context, _ string, db *sqldb.DB) error {
		res, err := db.ExecContext(ctx, `DELETE FROM sessions WHERE expires_at <= ?`, sqldb.Millis(now))
		if err != nil {
			return sqldb.NodeError(err)
		}
		if err := purgeResets(ctx, db, now); err != nil { // passwords.go
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		total += n
		return nil
	})
	if err != nil {
		return total, errs.E(op, err)
	}
	return total, nil
}

// notFound maps sql.ErrNoRows to errs.NotFound for an account.
func notFound(op string, err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return errs.E(op, errs.NotFound, errs.Msg("account not found"), err)
	}
	return errs.E(op, sqldb.NodeError(err))
}
