package cartdb

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/globomantics/globomantics/internal/cart"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/shard"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
)

// pairSide is one cart of a pair update across nodes.
type pairSide struct {
	owner string
	shard shard.ID
	db    *sqldb.DB
}

// pairOutcome is what the locked phase of a pair update across nodes
// decided.
type pairOutcome struct {
	oldA   cart.Lines // a's lines when locked
	linesA cart.Lines // what a must become
	digest string     // of oldA
}

// On PostgreSQL a pair update across nodes waits for the second cart's lock
// at most lockWait when it locks the nodes in their global order (a's node
// name before b's), and at most yieldWait when it locks them the other way
// round; past that it starts over. In any cycle of pair updates waiting on
// each other one locks against the order, so that one gives way quickly.
const (
	lockWait  = 5 * time.Second
	yieldWait = 100 * time.Millisecond
)

// pairAttempts is how many times a pair update across nodes tries before it
// gives up with errs.Unavailable.
const pairAttempts = 10

// updateAcross is UpdatePair of two carts on different nodes; see
// UpdatePair.
func (s *Store) updateAcross(ctx context.Context, a, b pairSide, fn func(a, b *cart.Lines) error) error {
	if a.db.Dialect == sqldb.SQLite || b.db.Dialect == sqldb.SQLite {
		// A SQLite transaction locks its whole database from its start, so
		// two pair updates across nodes could each hold the node the other
		// waits for: run them one at a time.
		s.acrossMu.Lock()
		defer s.acrossMu.Unlock()
	}
	m := s.sh.Map()
	wait := lockWait
	if m.NodeFor(a.shard) > m.NodeFor(b.shard) {
		wait = yieldWait
	}
	for attempt := 1; ; attempt++ {
		err := s.updateAcrossOnce(ctx, a, b, wait, fn)
		if !isLockTimeout(err) {
			return err
		}
		if attempt == pairAttempts {
			return errs.E(errs.Unavailable, errs.Msg("cart is busy; try again"), err)
		}
		// Another pair update holds b and may wait for a: let it finish.
		select {
		case <-time.After(time.Duration(1+rand.IntN(attempt*20)) * time.Millisecond):
		case <-ctx.Done():
			return errs.E(errs.Unavailable, context.Cause(ctx))
		}
	}
}

// updateAcrossOnce is one try of updateAcross: a's transaction holds a's
// lock from before b's until after b's commit, and writes a last.
func (s *Store) updateAcrossOnce(ctx context.Context, a, b pairSide, wait time.Duration, fn func(a, b *cart.Lines) error) error {
	var out pairOutcome
	err := a.db.InTx(ctx, func(txA *sqldb.Tx) error {
		stampA, err := s.lockStamp(ctx, txA, a.owner, a.shard)
		if err != nil {
			return err
		}
		err = b.db.InTx(ctx, func(txB *sqldb.Tx) error {
			if b.db.Dialect == sqldb.Postgres {
				// Two pair updates of the same carts in opposite directions
				// on two servers would wait for each other for ever: no
				// server sees both locks.
				if _, err := txB.ExecContext(ctx, fmt.Sprintf(`SET LOCAL lock_timeout = %d`, wait.Milliseconds())); err != nil {
					return err
				}
			}
			if err := s.lock(ctx, txB, b.owner, b.shard); err != nil {
				return err
			}
			var err error
			out, err = lockedPair(ctx, txA, txB, a, b, stampA, fn)
			return err
		})
		if err != nil {
			return err
		}
		// b has committed; a's lock is still held.
		return write(ctx, txA, a.owner, a.shard, out.oldA, out.linesA)
	})
	if err != nil {
		return err
	}
	// Both carts are written: the record is no longer needed. Failing to
	// delete it is harmless (it only matches a's lines as they were).
	_, _ = b.db.ExecContext(ctx, `DELETE FROM cart_merges WHERE to_owner = ? AND from_owner = ? AND from_digest = ?`,
		b.owner, a.owner, out.digest)
	return nil
}

// isLockTimeout reports whether err is PostgreSQL's lock_not_available,
// raised when lock_timeout passes.
func isLockTimeout(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "55P03"
}

// lockedPair runs with both carts locked: it reads them, and either finds
// that an earlier pair update already wrote b for a's current lines (and
// returns what it decided for a), or calls fn, checks both results and
// writes b's cart with the record of the merge through txB.
//
// The record is keyed by a's lines and a's stamp before this update
// (stampA): a record left by an update whose write of a did commit can never
// match again, even when a's lines come back to the same state.
func lockedPair(ctx context.Context, txA, txB *sqldb.Tx, a, b pairSide, stampA string, fn func(a, b *cart.Lines) error) (pairOutcome, error) {
	oldA, err := readLines(ctx, txA, a.owner)
	if err != nil {
		return pairOutcome{}, err
	}
	oldB, err := readLines(ctx, txB, b.owner)
	if err != nil {
		return pairOutcome{}, err
	}
	out := pairOutcome{oldA: oldA, digest: digest(oldA) + ":" + stampA}
	var after string
	err = txB.QueryRowContext(ctx, `SELECT from_after FROM cart_merges WHERE to_owner = ? AND from_owner = ? AND from_digest = ?`,
		b.owner, a.owner, out.digest).Scan(&after)
	switch {
	case err == nil:
		// b already holds the result of a pair update of exactly these
		// lines of a, whose write of a never happened: finish it.
		if err := json.Unmarshal([]byte(after), &out.linesA); err != nil {
			return pairOutcome{}, fmt.Errorf("cart_merges record of %q into %q: %w", a.owner, b.owner, err)
		}
		return out, nil
	case !errors.Is(err, sql.ErrNoRows):
		return pairOutcome{}, err
	}
	linesA := append(cart.Lines(nil), oldA...)
	linesB := append(cart.Lines(nil), oldB...)
	if err := fn(&linesA, &linesB); err != nil {
		return pairOutcome{}, fnError{err}
	}
	// Check both before writing either: after b's commit, a's write must
	// not fail on its content.
	if err := check(a.owner, linesA); err != nil {
		return pairOutcome{}, err
	}
	if err := write(ctx, txB, b.owner, b.shard, oldB, linesB); err != nil {
		return pairOutcome{}, err
	}
	enc, err := json.Marshal(linesA)
	if err != nil {
		return pairOutcome{}, err
	}
	if _, err := txB.ExecContext(ctx, `INSERT INTO cart_merges (to_owner, from_owner, from_digest, from_after, created_at, shard)
		VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (to_owner, from_owner) DO UPDATE SET from_digest = excluded.from_digest,
			from_after = excluded.from_after, created_at = excluded.created_at`,
		b.owner, a.owner, out.digest, string(enc), sqldb.Millis(time.Now()), int(b.shard)); err != nil {
		return pairOutcome{}, err
	}
	out.linesA = linesA
	return out, nil
}

// digest identifies a cart's lines, times included, so that the same
// lines added again later digest differently.
func digest(lines cart.Lines) string {
	h := sha256.New()
	for _, l := range lines {
		for _, f := range []string{l.ProductID, l.Name, strconv.Itoa(l.Quantity),
			strconv.FormatInt(l.UnitPrice.Amount, 10), currency(l.UnitPrice), strconv.FormatInt(sqldb.Millis(l.AddedAt), 10)} {
			h.Write([]byte(strconv.Itoa(len(f))))
			h.Write([]byte{':'})
			h.Write([]byte(f))
		}
		h.Write([]byte{'\n'})
	}
	return hex.EncodeToString(h.Sum(nil))
}
