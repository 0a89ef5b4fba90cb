package cart

import (
	"context"
	"time"

	"github.com/globomantics/globomantics/internal/platform/errs"
)

// StaleLockAge is how old a checkout's lock on a cart must be before another
// checkout may take the cart over: a safety valve for a checkout that died
// holding it, far longer than any checkout runs.
const StaleLockAge = 2 * time.Hour

// LockRetention is how long the record of a checkout's lock is kept after it
// ended (or, for one never ended, after it locked) before the cleanup removes
// it; until then a late call of that checkout is recognised and refused.
const LockRetention = 7 * 24 * time.Hour

// MaxLockIDLen is the longest lock id, in bytes.
const MaxLockIDLen = 200

// LockState is where a checkout's lock on a cart stands.
type LockState string

// The states of a lock: held, then ended one way or the other. Ended locks
// are remembered (for LockRetention) so that a late call is refused.
const (
	LockHeld      LockState = "held"      // the checkout owns the snapshot
	LockCompleted LockState = "completed" // its lines left the cart
	LockReleased  LockState = "released"  // unlocked, taken over, or unlocked before it locked
)

// CartLock is a checkout's lock on a cart as the store keeps it.
type CartLock struct {
	LockID   string
	State    LockState
	Lines    Lines     // the snapshot: the cart's lines when locked
	Version  int64     // the cart's revision when locked
	LockedAt time.Time // zero for a lock released before it ever locked
	EndedAt  time.Time // zero while held
}

// Locks is what Store.UpdateLocks shows fn of a cart's locks, and what it
// stores of them afterwards.
type Locks struct {
	// Version is the cart's revision before this update: how many times it
	// was updated since it was last empty (0 for an empty cart).
	Version int64
	// Held is the lock holding the cart, nil if none.
	Held *CartLock
	// Mine is the lock of the lock id asked about, nil if it has none; the
	// same pointer as Held when that lock holds the cart.
	Mine *CartLock
}

// The refusals of the lock calls, as clients see them.
var (
	errBusy   = errs.Msg("this cart is already being checked out")
	errEnded  = errs.Msg("this checkout has ended")
	errNoLock = errs.Msg("this cart is not locked for this checkout")
)

// Lock freezes owner's cart for the checkout lockID and returns the snapshot
// it checks out: the cart's lines and Version when first locked, the same
// for every repeat, whatever was added since. An empty cart locks, with no
// lines. errs.Conflict while another checkout holds the cart (unless its
// lock is older than StaleLockAge: then this one takes the cart over and the
// other has ended) and for a lockID that has ended; errs.Invalid for a
// malformed owner or lock id.
func (s *Service) Lock(ctx context.Context, owner, lockID string) (Cart, error) {
	const op = "cart.Lock"
	if err := validateLock(owner, lockID); err != nil {
		return Cart{}, errs.E(op, err)
	}
	var out Cart
	err := s.store.UpdateLocks(ctx, owner, lockID, func(lines *Lines, l *Locks) error {
		now := s.clock.Now()
		if m := l.Mine; m != nil {
			if m.State != LockHeld {
				return errs.E(errs.Conflict, errEnded)
			}
			out = m.snapshot()
			return nil
		}
		if h := l.Held; h != nil {
			if now.Sub(h.LockedAt) < StaleLockAge {
				return errs.E(errs.Conflict, errBusy)
			}
			h.State, h.EndedAt = LockReleased, now // taken over
		}
		l.Mine = &CartLock{LockID: lockID, State: LockHeld, Lines: append(Lines(nil), *lines...),
			Version: l.Version, LockedAt: now}
		out = l.Mine.snapshot()
		return nil
	})
	if err != nil {
		return Cart{}, errs.E(op, err)
	}
	return out, nil
}

// Unlock releases owner's cart if the checkout lockID holds it; otherwise it
// changes nothing. Either way lockID is remembered as ended, so that a Lock
// of it arriving later is refused: a checkout's compensation wins over its
// own late call. Idempotent; errs.Invalid for a malformed owner or lock id.
func (s *Service) Unlock(ctx context.Context, owner, lockID string) error {
	const op = "cart.Unlock"
	if err := validateLock(owner, lockID); err != nil {
		return errs.E(op, err)
	}
	err := s.store.UpdateLocks(ctx, owner, lockID, func(_ *Lines, l *Locks) error {
		now := s.clock.Now()
		switch {
		case l.Mine == nil:
			l.Mine = &CartLock{LockID: lockID, State: LockReleased, EndedAt: now}
		case l.Mine.State == LockHeld:
			l.Mine.State, l.Mine.EndedAt = LockReleased, now
		}
		return nil
	})
	if err != nil {
		return errs.E(op, err)
	}
	return nil
}

// CompleteCheckout ends the checkout lockID by taking its snapshot out of
// owner's cart: each snapshot line's quantity is subtracted from the cart's
// line of that product (a line raised since keeps the difference; a line
// that drops to 0 goes), lines added since stay, and the cart is unlocked.
// It returns the cart that is left. It acts once: a repeat changes nothing
// and returns the current cart. errs.Conflict for a lockID that was
// released (Unlock, or taken over as stale) or never locked this cart;
// errs.Invalid for a malformed owner or lock id.
func (s *Service) CompleteCheckout(ctx context.Context, owner, lockID string) (Cart, error) {
	const op = "cart.CompleteCheckout"
	if err := validateLock(owner, lockID); err != nil {
		return Cart{}, errs.E(op, err)
	}
	var out Lines
	err := s.store.UpdateLocks(ctx, owner, lockID, func(lines *Lines, l *Locks) error {
		m := l.Mine
		switch {
		case m == nil:
			return errs.E(errs.Conflict, errNoLock)
		case m.State == LockReleased:
			return errs.E(errs.Conflict, errEnded)
		case m.State == LockHeld:
			for _, sl := range m.Lines {
				i := lines.index(sl.ProductID)
				if i < 0 {
					continue
				}
				if q := (*lines)[i].Quantity - sl.Quantity; q > 0 {
					(*lines)[i].Quantity = q
				} else {
					*lines = append((*lines)[:i], (*lines)[i+1:]...)
				}
			}
			m.State, m.EndedAt = LockCompleted, s.clock.Now()
		}
		out = *lines
		return nil
	})
	if err != nil {
		return Cart{}, errs.E(op, err)
	}
	return out.Cart(), nil
}

// DeleteAbandoned deletes the carts of visitors (owners not starting
// "user:") not updated for olderThan, and the records of checkout locks that
// ended (or, never ended, locked) more than LockRetention ago, on every
// node, in batches; several instances may run it at once. It reports how
// many carts it deleted; a node that fails does not stop the others. A
// olderThan below one hour is raised to one hour, so that no visitor loses
// the cart being filled.
func (s *Service) DeleteAbandoned(ctx context.Context, olderThan time.Duration) (int, error) {
	now := s.clock.Now()
	olderThan = max(olderThan, time.Hour)
	n, _, err := s.store.DeleteAbandoned(ctx, now.Add(-olderThan), now.Add(-LockRetention))
	if err != nil {
		return n, errs.E("cart.DeleteAbandoned", err)
	}
	return n, nil
}

// RunCleanup calls DeleteAbandoned(ctx, olderThan) every interval until ctx
// ends, logging failures; it returns when ctx is done.
func (s *Service) RunCleanup(ctx context.Context, every, olderThan time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n, err := s.DeleteAbandoned(ctx, olderThan)
		switch {
		case err != nil && ctx.Err() == nil:
			s.log.WarnContext(ctx, "cart: deleting abandoned carts", "err", err, "deleted", n)
		case n > 0:
			s.log.InfoContext(ctx, "cart: deleted abandoned carts", "count", n)
		}
	}
}

// snapshot is the cart a lock checks out.
func (l *CartLock) snapshot() Cart {
	c := l.Lines.Cart()
	c.Version = l.Version
	return c
}

// validateLock checks the owner and lock id of a lock call.
func validateLock(owner, lockID string) error {
	if err := ValidateOwner(owner); err != nil {
		return err
	}
	switch {
	case lockID == "":
		return errs.E(errs.Invalid, errs.Msg("lock_id is required"))
	case len(lockID) > MaxLockIDLen:
		return errs.E(errs.Invalid, errs.Msg("lock_id must be at most %d bytes", MaxLockIDLen))
	case !printable(lockID):
		return errs.E(errs.Invalid, errs.Msg("lock_id must be printable UTF-8 text"))
	}
	return nil
}
