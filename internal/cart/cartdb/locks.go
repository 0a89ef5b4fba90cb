package cartdb

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/globomantics/globomantics/internal/cart"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/shard"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
)

// UpdateLocks calls fn, inside a transaction that holds owner's cart locked
// as Update does, with owner's lines and the checkout locks that concern
// lockID: the lock holding the cart (if any), lockID's own (if any), and the
// cart's revision before this update. It then writes the lines fn leaves,
// and the locks: Held first, then Mine, each created or replaced by lock
// id. An error from fn is returned unchanged and nothing is written. A
// second held lock on one cart, which fn should never make, fails with
// errs.Conflict.
func (s *Store) UpdateLocks(ctx context.Context, owner, lockID string, fn func(lines *cart.Lines, locks *cart.Locks) error) error {
	db, sh, err := s.node(owner)
	if err != nil {
		return errs.E("cartdb.UpdateLocks", err)
	}
	err = db.InTx(ctx, func(tx *sqldb.Tx) error {
		if err := s.lock(ctx, tx, owner, sh); err != nil {
			return err
		}
		var version int64
		if err := tx.QueryRowContext(ctx, `SELECT version FROM carts WHERE owner = ?`, owner).Scan(&version); err != nil {
			return err
		}
		held, mine, err := readLocks(ctx, tx, owner, lockID)
		if err != nil {
			return err
		}
		old, err := readLines(ctx, tx, owner)
		if err != nil {
			return err
		}
		// version counts this update too.
		locks := cart.Locks{Version: version - 1, Held: copyLock(held), Mine: copyLock(mine)}
		if held != nil && mine != nil && held.LockID == mine.LockID {
			locks.Mine = locks.Held
		}
		lines := append(cart.Lines(nil), old...)
		if err := fn(&lines, &locks); err != nil {
			return fnError{err}
		}
		if err := write(ctx, tx, owner, sh, old, lines); err != nil {
			return err
		}
		for i, l := range []*cart.CartLock{locks.Held, locks.Mine} {
			if l == nil || i == 1 && l == locks.Held { // Mine is Held: written
				continue
			}
			if before := byID(l.LockID, held, mine); before != nil && sameLock(*before, *l) {
				continue
			}
			if err := putLock(ctx, tx, owner, sh, l); err != nil {
				return err
			}
		}
		return nil
	})
	return unwrap("cartdb.UpdateLocks", err)
}

// readLocks reads owner's held lock and lockID's lock (the same one when
// lockID holds the cart).
func readLocks(ctx context.Context, q sqldb.Querier, owner, lockID string) (held, mine *cart.CartLock, err error) {
	rows, err := q.QueryContext(ctx, `SELECT lock_id, state, snapshot, version, locked_at, ended_at
		FROM cart_locks WHERE owner = ? AND (lock_id = ? OR state = ?)`, owner, lockID, string(cart.LockHeld))
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			l                 cart.CartLock
			state, snap       string
			lockedAt, endedAt int64
		)
		if err := rows.Scan(&l.LockID, &state, &snap, &l.Version, &lockedAt, &endedAt); err != nil {
			return nil, nil, err
		}
		l.State, l.LockedAt, l.EndedAt = cart.LockState(state), sqldb.FromMillisOrZero(lockedAt), sqldb.FromMillisOrZero(endedAt)
		if err := json.Unmarshal([]byte(snap), &l.Lines); err != nil {
			return nil, nil, fmt.Errorf("cart_locks snapshot of %q, lock %q: %w", owner, l.LockID, err)
		}
		if l.State == cart.LockHeld {
			held = &l
		}
		if l.LockID == lockID {
			mine = &l
		}
	}
	return held, mine, rows.Err()
}

// putLock creates or replaces l.
func putLock(ctx context.Context, tx *sqldb.Tx, owner string, sh shard.ID, l *cart.CartLock) error {
	if l.Lines == nil {
		l.Lines = cart.Lines{}
	}
	snap, err := json.Marshal(l.Lines)
	if err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO cart_locks (owner, lock_id, state, snapshot, version, locked_at, ended_at, shard)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (owner, lock_id) DO UPDATE SET state = excluded.state, snapshot = excluded.snapshot,
			version = excluded.version, locked_at = excluded.locked_at, ended_at = excluded.ended_at`,
		owner, l.LockID, string(l.State), string(snap), l.Version, sqldb.MillisOrZero(l.LockedAt), sqldb.MillisOrZero(l.EndedAt), int(sh))
	if sqldb.IsUniqueViolation(err) {
		// The one-held-lock index: another checkout holds the cart.
		return fnError{errs.E(errs.Conflict, errs.Msg("this cart is already being checked out"), err)}
	}
	return err
}

func copyLock(l *cart.CartLock) *cart.CartLock {
	if l == nil {
		return nil
	}
	c := *l
	c.Lines = append(cart.Lines(nil), l.Lines...)
	return &c
}

// byID is whichever of the locks read has id, or nil.
func byID(id string, ls ...*cart.CartLock) *cart.CartLock {
	for _, l := range ls {
		if l != nil && l.LockID == id {
			return l
		}
	}
	return nil
}

// sameLock reports whether storing b over a would change nothing.
func sameLock(a, b cart.CartLock) bool {
	if a.State != b.State || a.Version != b.Version || sqldb.MillisOrZero(a.LockedAt) != sqldb.MillisOrZero(b.LockedAt) ||
		sqldb.MillisOrZero(a.EndedAt) != sqldb.MillisOrZero(b.EndedAt) || len(a.Lines) != len(b.Lines) {
		return false
	}
	for i := range a.Lines {
		if a.Lines[i].ProductID != b.Lines[i].ProductID || !sameLine(a.Lines[i], b.Lines[i]) {
			return false
		}
	}
	return true
}

// cleanupBatch is how many rows one statement of DeleteAbandoned touches.
const cleanupBatch = 200

// DeleteAbandoned deletes, on every node, the carts of owners that do not
// start "user:" last updated before updatedBefore (with their lines), and
// the checkout locks that ended before endedBefore or, still held, locked
// before it; in batches of cleanupBatch rows, each its own transaction. A
// cart whose update time is unknown (written before the column existed) is
// first given the current time, so that it gets the full grace period.
// Carts being updated are skipped (PostgreSQL: SKIP LOCKED), so several
// instances may sweep at once. It reports how many carts and locks it
// deleted; a node that fails does not stop the others, and its error is
// returned with the counts.
func (s *Store) DeleteAbandoned(ctx context.Context, updatedBefore, endedBefore time.Time) (carts, locks int, err error) {
	const op = "cartdb.DeleteAbandoned"
	err = s.sh.Each(ctx, func(ctx context.Context, _ string, db *sqldb.DB) error {
		if err := stampUnknown(ctx, db, s.clock.Now()); err != nil {
			return sqldb.NodeError(err)
		}
		n, err := deleteCarts(ctx, db, updatedBefore)
		carts += n
		if err != nil {
			return sqldb.NodeError(err)
		}
		n, err = deleteLocks(ctx, db, endedBefore)
		locks += n
		return sqldb.NodeError(err)
	})
	if err != nil {
		return carts, locks, errs.E(op, err)
	}
	return carts, locks, nil
}

// stampUnknown gives the carts without an update time the time now.
func stampUnknown(ctx context.Context, db *sqldb.DB, now time.Time) error {
	for {
		res, err := db.ExecContext(ctx, fmt.Sprintf(`UPDATE carts SET updated_at = ?
			WHERE owner IN (SELECT owner FROM carts WHERE updated_at = 0 LIMIT %d)`, cleanupBatch), sqldb.Millis(now))
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n < cleanupBatch {
			return err
		}
	}
}

// deleteCarts deletes db's anonymous carts updated before before.
func deleteCarts(ctx context.Context, db *sqldb.DB, before time.Time) (int, error) {
	sel := fmt.Sprintf(`SELECT owner FROM carts
		WHERE updated_at > 0 AND updated_at < ? AND substr(owner, 1, 5) <> 'user:'
		ORDER BY updated_at LIMIT %d`, cleanupBatch)
	if db.Dialect == sqldb.Postgres {
		// Carts being updated now are not abandoned; another sweeper's
		// batch is its own.
		sel += ` FOR UPDATE SKIP LOCKED`
	}
	total := 0
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		var owners []any
		err := db.InTx(ctx, func(tx *sqldb.Tx) error {
			owners = owners[:0]
			rows, err := tx.QueryContext(ctx, sel, sqldb.Millis(before))
			if err != nil {
				return err
			}
			for rows.Next() {
				var o string
				if err := rows.Scan(&o); err != nil {
					rows.Close()
					return err
				}
				owners = append(owners, o)
			}
			rows.Close()
			if err := rows.Err(); err != nil || len(owners) == 0 {
				return err
			}
			in := strings.TrimSuffix(strings.Repeat("?, ", len(owners)), ", ")
			if _, err := tx.ExecContext(ctx, `DELETE FROM cart_lines WHERE owner IN (`+in+`)`, owners...); err != nil {
				return err
			}
			_, err = tx.ExecContext(ctx, `DELETE FROM carts WHERE owner IN (`+in+`)`, owners...)
			return err
		})
		if err != nil {
			return total, err
		}
		total += len(owners)
		if len(owners) < cleanupBatch {
			return total, nil
		}
	}
}

// deleteLocks deletes db's locks that ended before before, or that are
// still held and were locked before it.
func deleteLocks(ctx context.Context, db *sqldb.DB, before time.Time) (int, error) {
	q := fmt.Sprintf(`DELETE FROM cart_locks WHERE (owner, lock_id) IN (
		SELECT owner, lock_id FROM cart_locks
		WHERE (state <> 'held' AND ended_at < ?) OR (state = 'held' AND locked_at < ?)
		LIMIT %d)`, cleanupBatch)
	total := 0
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		res, err := db.ExecContext(ctx, q, sqldb.Millis(before), sqldb.Millis(before))
		if err != nil {
			return total, err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return total, err
		}
		total += int(n)
		if n < cleanupBatch {
			return total, nil
		}
	}
}
