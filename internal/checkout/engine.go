package checkout

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/globomantics/globomantics/internal/payment"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/fault"
	"github.com/globomantics/globomantics/internal/platform/retry"
)

// The engine's timing. Lease and recovery interval are options (tests and
// crash drills shorten them); the rest are fixed.
const (
	// DefaultLease is how long a driver's claim on a saga lasts without
	// renewal; a driver renews it every third of it while it works.
	DefaultLease = 10 * time.Second
	// tryTimeout bounds one try of a step (the call to one service).
	tryTimeout = 10 * time.Second
	// keyTTL is how long a finished checkout's idempotency key is kept.
	keyTTL = 24 * time.Hour
)

// stepRetry is how a failed step is tried again: soon at first, then at
// most every 30 s. A step before the pivot gives up at its deadline; one
// after it and a compensation never give up.
var stepRetry = retry.Policy{Base: 100 * time.Millisecond, Max: 30 * time.Second}

// errFenced means the driver lost its lease: another instance drives the
// saga now, and this one must not write.
var errFenced = errors.New("checkout: lease lost")

// drive runs saga g to a final state, or until this instance loses its
// lease, crashes on an injected fault, or ctx ends (shutdown: the lease is
// left to run out and another instance resumes). card is nil except in the
// instance that accepted the checkout.
func (s *Service) drive(ctx context.Context, g *Saga, card *payment.Card) {
	log := s.log.With("order_id", g.ID, "user_id", g.UserID, "epoch", g.Epoch)
	wasTerminal := g.Terminal()
	ctx, span := s.startSaga(ctx, g, card != nil)
	defer s.endSaga(span, g, wasTerminal)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	lost := make(chan struct{})
	go s.heartbeat(ctx, cancel, g.ID, g.Epoch, lost)
	r := &runner{s: s, saga: g, card: card}
	defer func() {
		// Stopped by a shutdown while the saga is unfinished: hand it over
		// now rather than when the lease runs out.
		if s.base.Err() != nil && !g.Terminal() && !r.dead {
			hctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			if err := s.store.Renew(hctx, g.ID, g.Epoch, time.Time{}); err == nil {
				log.Info("checkout saga handed over at shutdown", "step", stepName(*g))
			}
		}
	}()
	for !g.Terminal() {
		if wait := g.NextAt.Sub(s.clk.Now()); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		var err error
		if g.State == SagaRunning {
			err = s.forward(ctx, r, log)
		} else {
			err = s.backward(ctx, r, log)
		}
		switch {
		case errors.Is(err, fault.ErrCrashed):
			r.dead = true
			return // as a killed process: nothing more is written
		case errors.Is(err, errFenced):
			r.dead = true
			log.Warn("checkout saga taken over by another instance; this one stops")
			return
		case err != nil: // the log could not be written: try again after a pause
			select {
			case <-lost:
				r.dead = true
				return
			default:
			}
			if ctx.Err() != nil {
				return
			}
			log.Warn("checkout saga log write failed; retrying", "err", err)
			g2, lerr := s.store.Load(ctx, g.ID)
			if lerr == nil && g2.Epoch != g.Epoch {
				return
			}
			if lerr == nil {
				*g = g2 // the write may have landed: carry on from what is stored
				r.pending = nil
			}
			g.NextAt = s.clk.Now().Add(stepRetry.Backoff(2))
		}
	}
	switch g.State {
	case SagaConfirmed:
		log.Info("order placed", "total", g.Data.Total.String())
	case SagaCancelled:
		detail := ""
		if g.Failure != nil {
			detail = g.Failure.Detail
		}
		log.Info("checkout cancelled, every step undone", "reason", g.Data.Reason, "detail", detail)
	}
}

// heartbeat renews the lease every third of its length until ctx ends; if
// the lease is lost it closes lost and cancels the driver.
func (s *Service) heartbeat(ctx context.Context, cancel context.CancelFunc, id string, epoch int64, lost chan struct{}) {
	t := time.NewTicker(s.lease / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := s.store.Renew(ctx, id, epoch, s.clk.Now().Add(s.lease))
		if errs.Is(errs.Conflict, err) {
			close(lost)
			cancel()
			return
		}
		if err != nil && ctx.Err() == nil {
			s.log.Warn("checkout lease not renewed", "order_id", id, "err", err)
		}
	}
}

// try runs one try of a step or compensation named name: injected faults
// before and after, injected latency, and a timeout.
func (s *Service) try(ctx context.Context, name, service string, fn func(context.Context) error) (err error) {
	sctx, endStep := s.startStep(ctx, name, service)
	defer func() { endStep(err) }()
	cctx, cancel := context.WithTimeout(sctx, tryTimeout)
	defer cancel()
	err = s.faults.At(cctx, "before:"+name)
	if err == nil {
		err = s.faults.Delay(cctx, service)
	}
	if err == nil {
		err = fn(cctx)
	}
	if err == nil {
		err = s.faults.At(cctx, "after:"+name)
	}
	if err != nil && ctx.Err() == nil && cctx.Err() != nil && !errs.Temporary(err) {
		err = errs.E(errs.Unavailable, errs.Msg("%s timed out", service), err)
	}
	return err
}

// forward tries the saga's current step and records the outcome.
func (s *Service) forward(ctx context.Context, r *runner, log *slog.Logger) error {
	g := r.saga
	st := steps[g.Step]
	err := s.try(ctx, st.name, st.service, func(ctx context.Context) error { return st.do(ctx, r) })
	if errors.Is(err, fault.ErrCrashed) {
		return err
	}
	now := s.clk.Now()
	if ctx.Err() != nil && err != nil {
		return ctx.Err() // shutting down: the lease runs out, another instance resumes
	}
	if err == nil {
		g.Step++
		g.Attempts = 0
		g.NextAt = now
		if g.Step == len(steps) {
			s.finish(g, SagaConfirmed, now)
		} else {
			g.Deadline = s.deadlineOf(g.Step, now)
			if !st.checkpoint && len(r.pending) < MaxRecordsPerWrite-2 {
				r.pending = append(r.pending, StepRecord{SagaID: g.ID, Step: st.name, Outcome: "done", Epoch: g.Epoch, At: now})
				return nil
			}
		}
		return s.save(ctx, r, st.name, "done", "", now)
	}
	if g.Step == pivot && (!errs.Temporary(err) || isPermanent(err) || !now.Before(g.Deadline)) {
		// An uncertain or refused capture: settle it by voiding.
		serr := s.try(ctx, "settle_capture", "payment", func(ctx context.Context) error { return settleCapture(ctx, r, err) })
		if errors.Is(serr, fault.ErrCrashed) {
			return serr
		}
		if serr == nil { // captured after all
			g.Step++
			g.Attempts = 0
			g.NextAt = now
			return s.save(ctx, r, st.name, "done", "settled: captured", now)
		}
		if !isPermanent(serr) { // still unknown
			return s.retryLater(ctx, r, st.name, serr, now, log)
		}
		err = serr
	}
	if g.Step > pivot {
		// After the pivot the saga only moves forward: try again, however
		// long it takes, and say so loudly if it is not transient.
		if !errs.Temporary(err) {
			log.Error("checkout step after the pivot refused; retrying", "step", st.name, "err", err)
		}
		return s.retryLater(ctx, r, st.name, err, now, log)
	}
	if errs.Temporary(err) && !isPermanent(err) && now.Before(g.Deadline) {
		return s.retryLater(ctx, r, st.name, err, now, log)
	}
	// Give up: roll back, starting with this step's own compensation (its
	// outcome may be unknown; compensations are safe either way).
	kind := errs.KindOf(err)
	g.State = SagaCompensating
	g.Failure = &Failure{Status: kind.Status(), Detail: customerDetail(err)}
	g.Retryable = kind == errs.Unavailable
	g.Data.Reason = reasonOf(st.name, err)
	g.Attempts = 0
	g.NextAt = now
	log.Info("checkout step failed; rolling back", "step", st.name, "kind", kind.Title(), "err", err)
	return s.save(ctx, r, st.name, "failed", errs.Detail(err), now)
}

// backward undoes the saga's current step, if it has a compensation, and
// records the outcome. Compensations are retried until they succeed.
func (s *Service) backward(ctx context.Context, r *runner, log *slog.Logger) error {
	g := r.saga
	now := s.clk.Now()
	for g.Step >= 0 && steps[g.Step].undo == "" {
		g.Step--
	}
	if g.Step < 0 {
		s.finish(g, SagaCancelled, now)
		return s.save(ctx, r, "rollback", "done", "", now)
	}
	st := steps[g.Step]
	err := s.try(ctx, st.undo, st.undoService, func(ctx context.Context) error { return st.compensate(ctx, r) })
	if errors.Is(err, fault.ErrCrashed) {
		return err
	}
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !errs.Temporary(err) {
			log.Error("checkout compensation refused; retrying", "step", st.undo, "err", err)
		}
		return s.retryLater(ctx, r, st.undo, err, now, log)
	}
	g.Step--
	g.Attempts = 0
	g.NextAt = now
	for g.Step >= 0 && steps[g.Step].undo == "" {
		g.Step--
	}
	if g.Step < 0 {
		s.finish(g, SagaCancelled, now)
	}
	return s.save(ctx, r, st.undo, "undone", "", now)
}

func (s *Service) retryLater(ctx context.Context, r *runner, name string, err error, now time.Time, log *slog.Logger) error {
	g := r.saga
	g.Attempts++
	g.NextAt = now.Add(stepRetry.Backoff(g.Attempts))
	log.Debug("checkout step will be retried", "step", name, "attempt", g.Attempts, "err", err)
	return s.save(ctx, r, name, "retry", errs.Detail(err), now)
}

// finish moves g to a final state, starting its key's 24 hours and its
// callback.
func (s *Service) finish(g *Saga, state string, now time.Time) {
	g.State = state
	g.ExpiresAt = now.Add(keyTTL)
	if state == SagaConfirmed {
		g.Failure, g.Retryable, g.Data.Reason = nil, false, ""
	}
	if g.Callback.URL != "" && g.Callback.State == "" {
		g.Callback.State = CallbackPending
		g.Callback.NextAt = now
	}
}

// save writes g to the log, fenced by its epoch, with the records of the
// steps done since the last write.
func (s *Service) save(ctx context.Context, r *runner, name, outcome, detail string, now time.Time) error {
	g := r.saga
	g.UpdatedAt = now
	g.LeaseUntil = now.Add(s.lease)
	// The log must be written even while shutting down: a step done and
	// not recorded is done again by the next driver (harmless, but slow).
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	recs := append(r.pending[:len(r.pending):len(r.pending)], StepRecord{SagaID: g.ID, Step: name, Outcome: outcome, Detail: detail, Epoch: g.Epoch, At: now})
	err := s.store.Save(wctx, g, recs...)
	if errs.Is(errs.Conflict, err) {
		return errFenced
	}
	if err == nil {
		r.pending = nil
	} else if !errors.Is(err, errFenced) {
		r.pending = recs // not written: they go with the next write
	}
	return err
}

// deadlineOf is when step, started at now, gives up: its own deadline, or
// the service's WithStepDeadline; none after the pivot.
func (s *Service) deadlineOf(step int, now time.Time) time.Time {
	if step >= len(steps) || steps[step].deadline == 0 {
		return time.Time{}
	}
	if s.stepDeadline > 0 {
		return now.Add(s.stepDeadline)
	}
	return now.Add(steps[step].deadline)
}

// customerDetail is the error's message fit for the customer: the detail
// of a client error, a generic sentence for the rest.
func customerDetail(err error) string {
	switch errs.KindOf(err) {
	case errs.Other:
		return "the order could not be placed"
	case errs.Unavailable:
		if d := errs.Detail(err); d != "" && isPermanent(err) {
			return d
		}
		return "a service needed to place the order is unavailable; nothing was charged, please try again"
	}
	return errs.Detail(err)
}

// reasonOf is why the order (if it was created) was cancelled.
func reasonOf(step string, err error) string {
	switch {
	case errs.Is(errs.Declined, err):
		return "payment declined"
	case step == "reserve_stock" && errs.Is(errs.Conflict, err):
		return "out of stock"
	}
	switch step {
	case "lock_cart":
		return "the cart could not be checked out"
	case "reserve_stock":
		return "stock could not be reserved"
	case "authorize_payment":
		return "payment failed"
	case "create_order":
		return "the order could not be created"
	case "create_shipment":
		return "the shipment could not be created"
	case "commit_stock":
		return "the reserved stock expired"
	case "capture_payment":
		return "payment could not be captured"
	}
	return "checkout failed"
}
