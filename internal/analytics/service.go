package analytics

import (
	"context"
	"fmt"
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

// Handle is the bus handler of Subjects and PaymentSubjects: it counts the
// summary (or, from an older storefront, the single event, or a payment
// captured) once, however often it is delivered
// (the message id is recorded in the store's inbox in the same transaction
// as the counts). An event it cannot decode, or of another subject,
// is a permanent failure (a dead letter); a store error asks for redelivery.
func (s *Service) Handle(ctx context.Context, ev bus.Event) error {
	_, err := s.apply(ctx, ev)
	return err
}

func (s *Service) apply(ctx context.Context, ev bus.Event) (bool, error) {
	const op = "analytics.Handle"
	now := s.clock.Now()
	switch ev.Type {
	case SubjectPageViewsCounted:
		var sum PageViewsCounted
		if err := ev.Decode(&sum); err != nil {
			return false, bus.Permanent(errs.E(op, errs.Invalid, errs.Msg("undecodable %s %s: %v", ev.Type, ev.ID, err)))
		}
		if err := checkSummary(sum.Instance, sum.WindowStart, sum.WindowEnd, len(sum.Counts), func(i int) bool {
			return sum.Counts[i].ProductID != "" && sum.Counts[i].Views > 0
		}); err != nil {
			return false, bus.Permanent(errs.E(op, errs.Invalid, errs.Msg("invalid %s %s: %v", ev.Type, ev.ID, err)))
		}
		if sum.Dropped > 0 {
			s.log.Warn("a storefront dropped page views past its key bound", "instance", sum.Instance, "window_start", sum.WindowStart, "dropped", sum.Dropped)
		}
		return s.store.ApplyPageViews(ctx, ev.ID, sum, now)
	case SubjectSearchesCounted:
		var sum SearchesCounted
		if err := ev.Decode(&sum); err != nil {
			return false, bus.Permanent(errs.E(op, errs.Invalid, errs.Msg("undecodable %s %s: %v", ev.Type, ev.ID, err)))
		}
		if err := checkSummary(sum.Instance, sum.WindowStart, sum.WindowEnd, len(sum.Counts), func(i int) bool {
			c := &sum.Counts[i]
			c.Query = NormalizeQuery(c.Query)
			return c.Query != "" && c.Searches > 0 && c.NoResult >= 0 && c.NoResult <= c.Searches
		}); err != nil {
			return false, bus.Permanent(errs.E(op, errs.Invalid, errs.Msg("invalid %s %s: %v", ev.Type, ev.ID, err)))
		}
		if sum.Dropped > 0 {
			s.log.Warn("a storefront dropped searches past its key bound", "instance", sum.Instance, "window_start", sum.WindowStart, "dropped", sum.Dropped)
		}
		return s.store.ApplySearches(ctx, ev.ID, mergeQueries(sum), now)
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
	case SubjectPaymentCaptured:
		var pc PaymentCaptured
		if err := ev.Decode(&pc); err != nil {
			return false, bus.Permanent(errs.E(op, errs.Invalid, errs.Msg("undecodable %s %s: %v", ev.Type, ev.ID, err)))
		}
		if pc.Amount.Amount <= 0 || !isCurrency(pc.Amount.Currency) || pc.CapturedAt.IsZero() {
			return false, bus.Permanent(errs.E(op, errs.Invalid, errs.Msg("invalid %s %s: amount %d %q at %v",
				ev.Type, ev.ID, pc.Amount.Amount, pc.Amount.Currency, pc.CapturedAt)))
		}
		return s.store.ApplyPaymentCaptured(ctx, ev.ID, pc, now)
	}
	return false, bus.Permanent(errs.E(op, errs.Invalid, errs.Msg("analytics does not handle %q", ev.Type)))
}

// isCurrency reports whether c looks like an ISO 4217 code.
func isCurrency(c string) bool {
	if len(c) != 3 {
		return false
	}
	for i := range 3 {
		if c[i] < 'A' || c[i] > 'Z' {
			return false
		}
	}
	return true
}

// checkSummary checks a summary's header and, with ok, each of its n
// counts.
func checkSummary(instance string, start, end time.Time, n int, ok func(int) bool) error {
	if instance == "" || start.IsZero() || end.Before(start) {
		return fmt.Errorf("instance %q, window %v to %v", instance, start, end)
	}
	if n > MaxSummaryCounts {
		return fmt.Errorf("%d counts, more than %d", n, MaxSummaryCounts)
	}
	for i := range n {
		if !ok(i) {
			return fmt.Errorf("count %d is empty or out of range", i)
		}
	}
	return nil
}

// mergeQueries adds up the counts of queries that the consumer's
// normalisation made equal (a producer that normalised differently), so
// that one transaction never updates one row twice from the same summary
// with two conflicting results.
func mergeQueries(sum SearchesCounted) SearchesCounted {
	at := make(map[string]int, len(sum.Counts))
	out := sum.Counts[:0]
	for _, c := range sum.Counts {
		if i, ok := at[c.Query]; ok {
			out[i].Searches += c.Searches
			out[i].NoResult += c.NoResult
			continue
		}
		at[c.Query] = len(out)
		out = append(out, c)
	}
	sum.Counts = out
	return sum
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

// Revenue implements API. errs.BadRequest for a window out of range.
func (s *Service) Revenue(ctx context.Context, window time.Duration) (RevenueReport, error) {
	const op = "analytics.Revenue"
	if err := checkRead(op, window, 1); err != nil {
		return RevenueReport{}, err
	}
	hours, err := s.store.Revenue(ctx, s.since(window))
	if err != nil {
		return RevenueReport{}, errs.E(op, err)
	}
	return RevenueReport{Window: window.String(), Hours: hours}, nil
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
