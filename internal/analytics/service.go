package analytics

import (
	"context"
	"log/slog"
	"time"

	"github.com/globomantics/globomantics/internal/platform/bus"
	"github.com/globomantics/globomantics/internal/platform/clock"
	"github.com/globomantics/globomantics/internal/platform/errs"
)

// Retention: hourly counts are kept for MaxWindow; inbox records for longer
// than the analytics stream keeps a message (a week), so that any
// redelivery the broker can still make is recognised.
const (
	countsRetention = MaxWindow + time.Hour
	inboxRetention  = 8 * 24 * time.Hour
)

// Service is the analytics service: the consumer of the analytics events
// and the read API over their counts.
type Service struct {
	store Store
	clock clock.Clock
	log   *slog.Logger
}

var _ API = (*Service)(nil)

// NewService returns the service over store; log may be nil.
func NewService(store Store, clk clock.Clock, log *slog.Logger) *Service {
	if log == nil {
		log = slog.Default()
	}
	return &Service{store: store, clock: clk, log: log}
}

// Handle is the bus handler of Subjects: it counts the event once, however
// often it is delivered (the event id is recorded in the store's inbox in
// the same transaction). An event it cannot decode, or of another subject,
// is a permanent failure (a dead letter); a store error asks for redelivery.
func (s *Service) Handle(ctx context.Context, ev bus.Event) error {
	_, err := s.apply(ctx, ev)
	return err
}

func (s *Service) apply(ctx context.Context, ev bus.Event) (bool, error) {
	const op = "analytics.Handle"
	now := s.clock.Now()
	switch ev.Type {
	case SubjectPageViewed:
		var pv PageViewed
		if err := ev.Decode(&pv); err != nil || pv.ProductID == "" || pv.ViewedAt.IsZero() {
			return false, bus.Permanent(errs.E(op, errs.Invalid, errs.Msg("undecodable %s %s: %v", ev.Type, ev.ID, err)))
		}
		return s.store.ApplyPageView(ctx, ev.ID, pv, now)
	case SubjectSearchMade:
		var sm SearchMade
		if err := ev.Decode(&sm); err != nil || sm.SearchedAt.IsZero() || sm.Results < 0 {
			return false, bus.Permanent(errs.E(op, errs.Invalid, errs.Msg("undecodable %s %s: %v", ev.Type, ev.ID, err)))
		}
		sm.Query = NormalizeQuery(sm.Query)
		if sm.Query == "" {
			return false, nil // nothing to count
		}
		return s.store.ApplySearch(ctx, ev.ID, sm, now)
	}
	return false, bus.Permanent(errs.E(op, errs.Invalid, errs.Msg("analytics does not handle %q", ev.Type)))
}

// Apply is Handle that also reports whether the event was counted now
// (false: it had been counted before, or had nothing to count).
func (s *Service) Apply(ctx context.Context, ev bus.Event) (fresh bool, err error) {
	return s.apply(ctx, ev)
}

// since is the start of the first whole hour of the window ending now.
func (s *Service) since(window time.Duration) time.Time {
	return s.clock.Now().Add(-window).Truncate(time.Hour)
}

func checkRead(op string, window time.Duration, limit int) error {
	if window <= 0 || window > MaxWindow {
		return errs.E(op, errs.BadRequest, errs.Msg("window must be between 1h and %v", MaxWindow))
	}
	if limit <= 0 || limit > MaxLimit {
		return errs.E(op, errs.BadRequest, errs.Msg("limit must be between 1 and %d", MaxLimit))
	}
	return nil
}

// Popular implements API. errs.BadRequest for a window or limit out of range.
func (s *Service) Popular(ctx context.Context, window time.Duration, limit int) ([]ProductViews, error) {
	const op = "analytics.Popular"
	if err := checkRead(op, window, limit); err != nil {
		return nil, err
	}
	out, err := s.store.Popular(ctx, s.since(window), limit)
	if err != nil {
		return nil, errs.E(op, err)
	}
	return out, nil
}

// PopularProductIDs lists the ids of the most viewed products of the last
// window, most viewed first (what the storefront's "Popular now" needs).
func (s *Service) PopularProductIDs(ctx context.Context, window time.Duration, limit int) ([]string, error) {
	return productIDs(s.Popular(ctx, window, limit))
}

func productIDs(pv []ProductViews, err error) ([]string, error) {
	if err != nil {
		return nil, err
	}
	out := make([]string, len(pv))
	for i, p := range pv {
		out[i] = p.ProductID
	}
	return out, nil
}

// Searches implements API. errs.BadRequest for a window or limit out of
// range.
func (s *Service) Searches(ctx context.Context, window time.Duration, limit int) (SearchReport, error) {
	const op = "analytics.Searches"
	if err := checkRead(op, window, limit); err != nil {
		return SearchReport{}, err
	}
	since := s.since(window)
	top, err := s.store.TopSearches(ctx, since, limit, false)
	if err != nil {
		return SearchReport{}, errs.E(op, err)
	}
	none, err := s.store.TopSearches(ctx, since, limit, true)
	if err != nil {
		return SearchReport{}, errs.E(op, err)
	}
	return SearchReport{Window: window.String(), Top: top, NoResult: none}, nil
}

// RunSweeper deletes expired counts and inbox records every interval until
// ctx ends.
func (s *Service) RunSweeper(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		now := s.clock.Now()
		if err := s.store.Forget(ctx, now.Add(-countsRetention), now.Add(-inboxRetention)); err != nil && ctx.Err() == nil {
			s.log.Warn("analytics sweep failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
