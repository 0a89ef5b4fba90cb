// Package cartdb is the cart service's store over SQL (SQLite or PostgreSQL):
// the carts and cart_lines tables, and cart_locks, the checkouts' locks on
// carts.
//
// The store is sharded (see sqldb.Sharded): the cart of "user:<id>" lives on
// the node of shard.ForUser(<id>), with the user's orders and account, and
// any other owner's ("anon:<token>") on the node of shard.ForKey(owner); the
// rows record that shard in their shard column. See UpdatePair for the pair
// update of two carts on different nodes.
package cartdb

import (
	"context"
	"crypto/rand"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"sync"

	"github.com/globomantics/globomantics/internal/cart"
	"github.com/globomantics/globomantics/internal/platform/clock"
	"github.com/globomantics/globomantics/internal/platform/consistency"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/money"
	"github.com/globomantics/globomantics/internal/platform/shard"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
)

// carts has one row per non-empty cart. Every update first upserts the
// owner's row, which takes a row lock that queues concurrent updates of the
// same cart on PostgreSQL (SQLite transactions already lock the database);
// version counts the updates.
//
//go:embed migrations/*.sql
var migrations embed.FS

// Store keeps carts in a SQL database, one node or several.
type Store struct {
	sh       *sqldb.Sharded
	clock    clock.Clock
	acrossMu sync.Mutex // serialises pair updates across SQLite nodes
}

var _ cart.Store = (*Store)(nil)

// Option configures a Store.
type Option func(*Store)

// WithClock makes the store stamp carts' update times from clk (the
// default is the wall clock).
func WithClock(clk clock.Clock) Option { return func(s *Store) { s.clock = clk } }

// Open returns the store over the one database db (every shard on it),
// creating or upgrading its tables.
func Open(ctx context.Context, db *sqldb.DB, opts ...Option) (*Store, error) {
	return OpenSharded(ctx, sqldb.Single(db), opts...)
}

// OpenSharded returns the store over the nodes of sh after applying its
// migrations to every node and filling in the shard column of rows written
// before it existed. Every node must answer.
func OpenSharded(ctx context.Context, sh *sqldb.Sharded, opts ...Option) (*Store, error) {
	dir, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return nil, err
	}
	if err := sh.Migrate(ctx, "cart", dir); err != nil {
		return nil, err
	}
	err = sh.Each(ctx, func(ctx context.Context, _ string, db *sqldb.DB) error {
		for _, table := range []string{"carts", "cart_lines"} {
			if err := sqldb.BackfillShard(ctx, db, table, "owner", "owner", func(owner, _ string) shard.ID {
				return OwnerShard(owner)
			}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, errs.E("cartdb.Open", errs.Msg("filling in the shard column"), err)
	}
	s := &Store{sh: sh, clock: clock.Real{}}
	for _, o := range opts {
		o(s)
	}
	return s, nil
}

// OwnerShard returns the logical shard of a cart owner: shard.ForUser(<id>)
// for "user:<id>", so that a user's cart shares a node with the user's
// orders, and shard.ForKey(owner) for any other owner.
func OwnerShard(owner string) shard.ID {
	if id, ok := strings.CutPrefix(owner, "user:"); ok {
		return shard.ForUser(id)
	}
	return shard.ForKey(owner)
}

// node returns the database and shard of owner's cart.
func (s *Store) node(owner string) (*sqldb.DB, shard.ID, error) {
	sh := OwnerShard(owner)
	db, err := s.sh.ForShard(sh)
	return db, sh, err
}

// Get returns owner's lines ordered by when they were added; none for an
// owner without a cart.
func (s *Store) Get(ctx context.Context, owner string) (cart.Lines, error) {
	db, _, err := s.node(owner)
	if err != nil {
		return nil, errs.E("cartdb.Get", err)
	}
	lines, err := readLines(ctx, db.Reader(ctx, consistency.ReadYourWrites), owner)
	if err != nil {
		return nil, errs.E("cartdb.Get", sqldb.NodeError(err))
	}
	return lines, nil
}

// Update calls fn with owner's lines inside a transaction that holds owner's
// cart locked, and writes the lines fn leaves. An error from fn is returned
// unchanged and nothing is written.
func (s *Store) Update(ctx context.Context, owner string, fn func(lines *cart.Lines) error) error {
	db, sh, err := s.node(owner)
	if err != nil {
		return errs.E("cartdb.Update", err)
	}
	err = db.InTx(ctx, func(tx *sqldb.Tx) error {
		if err := s.lock(ctx, tx, owner, sh); err != nil {
			return err
		}
		old, err := readLines(ctx, tx, owner)
		if err != nil {
			return err
		}
		lines := append(cart.Lines(nil), old...)
		if err := fn(&lines); err != nil {
			return fnError{err}
		}
		return write(ctx, tx, owner, sh, old, lines)
	})
	return unwrap("cartdb.Update", err)
}

// UpdatePair is Update over two distinct owners: fn sees both carts, each
// locked against every other update, and its result is written for both.
//
// When both carts are on one node, as always unsharded, it is one
// transaction: both carts are written, or neither.
//
// When they are on two nodes it cannot be one transaction. It then locks
// a's cart, then b's, calls fn, checks both results, writes b's cart and
// commits it, together with a record on b's node of which lines of a it
// absorbed (a digest of a's lines) and what a must become, and only then
// writes a's cart and commits it: a stays locked throughout. A failure
// before b's commit writes nothing. If the process stops between the two
// commits, a keeps its lines; the next UpdatePair of a and b (a Merge
// retried at the next login) finds the record and a unchanged since, so it
// writes a as the first call decided without calling fn: b's lines are
// never added twice, and a Merge stays idempotent under the cart service's
// rule (a product in both carts gets the sum of the quantities). One case
// remains: if a changes between the stop and the retry, the record no
// longer matches and the retry merges a's old lines again (capped at
// cart.MaxQuantity).
//
// Two pair updates of the same two carts in opposite directions (which
// Merge never makes: a user's cart is never merged into an anonymous one)
// could wait for each other across two servers: on PostgreSQL the one that
// locks the two nodes against their name order waits at most 100 ms for
// its second lock and starts over (the other waits up to 5 s), and after
// ten tries it fails with errs.Unavailable. Over SQLite nodes, whose transactions
// lock a whole database, pair updates across nodes run one at a time in a
// process (SQLite nodes are not shared between processes).
func (s *Store) UpdatePair(ctx context.Context, a, b string, fn func(a, b *cart.Lines) error) error {
	if a == b {
		return errs.E("cartdb.UpdatePair", fmt.Errorf("UpdatePair of %q with itself", a))
	}
	dbA, shA, err := s.node(a)
	if err != nil {
		return errs.E("cartdb.UpdatePair", err)
	}
	dbB, shB, err := s.node(b)
	if err != nil {
		return errs.E("cartdb.UpdatePair", err)
	}
	if dbA != dbB {
		return unwrap("cartdb.UpdatePair", s.updateAcross(ctx, pairSide{a, shA, dbA}, pairSide{b, shB, dbB}, fn))
	}
	db := dbA
	err = db.InTx(ctx, func(tx *sqldb.Tx) error {
		// Lock in a fixed order so that two pair updates cannot deadlock.
		first, second := a, b
		if second < first {
			first, second = second, first
		}
		for _, o := range []string{first, second} {
			if err := s.lock(ctx, tx, o, OwnerShard(o)); err != nil {
				return err
			}
		}
		oldA, err := readLines(ctx, tx, a)
		if err != nil {
			return err
		}
		oldB, err := readLines(ctx, tx, b)
		if err != nil {
			return err
		}
		linesA := append(cart.Lines(nil), oldA...)
		linesB := append(cart.Lines(nil), oldB...)
		if err := fn(&linesA, &linesB); err != nil {
			return fnError{err}
		}
		if err := write(ctx, tx, a, shA, oldA, linesA); err != nil {
			return err
		}
		return write(ctx, tx, b, shB, oldB, linesB)
	})
	return unwrap("cartdb.UpdatePair", err)
}

// Delete removes owner's cart; deleting an absent cart is not an error.
func (s *Store) Delete(ctx context.Context, owner string) error {
	db, _, err := s.node(owner)
	if err != nil {
		return errs.E("cartdb.Delete", err)
	}
	err = db.InTx(ctx, func(tx *sqldb.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM cart_lines WHERE owner = ?`, owner); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM carts WHERE owner = ?`, owner)
		return err
	})
	if err != nil {
		return errs.E("cartdb.Delete", sqldb.NodeError(err))
	}
	return nil
}

// fnError carries the caller's error through InTx untouched.
type fnError struct{ err error }

func (e fnError) Error() string { return e.err.Error() }

func unwrap(op string, err error) error {
	var fe fnError
	if errors.As(err, &fe) {
		return fe.err
	}
	if err != nil {
		return errs.E(op, sqldb.NodeError(err))
	}
	return nil
}

// lock creates or bumps owner's carts row, stamping its update time,
// holding it locked until the transaction ends.
func (s *Store) lock(ctx context.Context, tx *sqldb.Tx, owner string, sh shard.ID) error {
	_, err := s.lockStamp(ctx, tx, owner, sh)
	return err
}

// lockStamp is lock that also gives the cart a new random stamp and returns
// the one it had ("" for a cart that had no row): the stamp changes with
// every committed update, and is back to what it was if the transaction
// rolls back.
func (s *Store) lockStamp(ctx context.Context, tx *sqldb.Tx, owner string, sh shard.ID) (string, error) {
	if _, err := tx.ExecContext(ctx, `INSERT INTO carts (owner, version, shard, updated_at) VALUES (?, 1, ?, ?)
		ON CONFLICT (owner) DO UPDATE SET version = carts.version + 1, updated_at = excluded.updated_at`,
		owner, int(sh), sqldb.Millis(s.clock.Now())); err != nil {
		return "", err
	}
	var old string
	if err := tx.QueryRowContext(ctx, `SELECT stamp FROM carts WHERE owner = ?`, owner).Scan(&old); err != nil {
		return "", err
	}
	var b [12]byte
	_, _ = rand.Read(b[:]) // crypto/rand never fails on supported platforms
	if _, err := tx.ExecContext(ctx, `UPDATE carts SET stamp = ? WHERE owner = ?`, hex.EncodeToString(b[:]), owner); err != nil {
		return "", err
	}
	return old, nil
}

func readLines(ctx context.Context, q sqldb.Querier, owner string) (cart.Lines, error) {
	rows, err := q.QueryContext(ctx, `SELECT product_id, name, quantity, unit_price_amount, currency, added_at
		FROM cart_lines WHERE owner = ? ORDER BY added_at, product_id`, owner)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var lines cart.Lines
	for rows.Next() {
		var (
			l     cart.Line
			added int64
		)
		if err := rows.Scan(&l.ProductID, &l.Name, &l.Quantity, &l.UnitPrice.Amount, &l.UnitPrice.Currency, &added); err != nil {
			return nil, err
		}
		l.AddedAt = sqldb.FromMillis(added)
		lines = append(lines, l)
	}
	return lines, rows.Err()
}

// check reports why lines cannot be owner's cart: a product on two lines, or
// a quantity below 1.
func check(owner string, lines cart.Lines) error {
	seen := make(map[string]bool, len(lines))
	for _, l := range lines {
		if seen[l.ProductID] {
			return fmt.Errorf("cart %q: product %q on two lines", owner, l.ProductID)
		}
		seen[l.ProductID] = true
		if l.Quantity < 1 {
			return fmt.Errorf("cart %q: quantity %d of %q", owner, l.Quantity, l.ProductID)
		}
	}
	return nil
}

// write turns owner's stored lines old into lines with the fewest
// statements, removing the cart's row when it ends empty; new lines get
// shard sh.
func write(ctx context.Context, tx *sqldb.Tx, owner string, sh shard.ID, old, lines cart.Lines) error {
	if err := check(owner, lines); err != nil {
		return err
	}
	prev := make(map[string]cart.Line, len(old))
	for _, l := range old {
		prev[l.ProductID] = l
	}
	seen := make(map[string]bool, len(lines))
	for _, l := range lines {
		seen[l.ProductID] = true
		p, ok := prev[l.ProductID]
		switch {
		case !ok:
			_, err := tx.ExecContext(ctx, `INSERT INTO cart_lines
				(owner, product_id, name, quantity, unit_price_amount, currency, added_at, shard) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
				owner, l.ProductID, l.Name, l.Quantity, l.UnitPrice.Amount, currency(l.UnitPrice), sqldb.Millis(l.AddedAt), int(sh))
			if err != nil {
				return err
			}
		case !sameLine(p, l):
			_, err := tx.ExecContext(ctx, `UPDATE cart_lines
				SET name = ?, quantity = ?, unit_price_amount = ?, currency = ?, added_at = ?
				WHERE owner = ? AND product_id = ?`,
				l.Name, l.Quantity, l.UnitPrice.Amount, currency(l.UnitPrice), sqldb.Millis(l.AddedAt), owner, l.ProductID)
			if err != nil {
				return err
			}
		}
	}
	for id := range prev {
		if !seen[id] {
			if _, err := tx.ExecContext(ctx, `DELETE FROM cart_lines WHERE owner = ? AND product_id = ?`, owner, id); err != nil {
				return err
			}
		}
	}
	if len(lines) == 0 {
		_, err := tx.ExecContext(ctx, `DELETE FROM carts WHERE owner = ?`, owner)
		return err
	}
	return nil
}

func sameLine(a, b cart.Line) bool {
	return a.Name == b.Name && a.Quantity == b.Quantity && a.UnitPrice == b.UnitPrice &&
		sqldb.Millis(a.AddedAt) == sqldb.Millis(b.AddedAt)
}

// currency defaults an unset currency to the shop's.
func currency(m money.Money) string {
	if m.Currency == "" {
		return money.Currency
	}
	return m.Currency
}
