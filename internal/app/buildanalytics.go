package app

import (
	"context"
	"net/http"
	"time"

	"github.com/globomantics/globomantics/internal/analytics"
	"github.com/globomantics/globomantics/internal/analytics/analyticsdb"
	"github.com/globomantics/globomantics/internal/config"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/storefront"
)

// analyticsSweepEvery is how often expired analytics counts and inbox
// records are deleted.
const analyticsSweepEvery = time.Hour

// buildAnalytics builds the analytics service: its store, the durable
// consumers every instance shares (the instances share the database, and the
// store's inbox makes a redelivery count nothing), the sweeper, and the
// internal API (/svc/analytics/v1/popular, /searches, /revenue, and the
// operator's HTML /report).
func (a *app) buildAnalytics(ctx context.Context, s *services, sdb *serviceDB) (http.Handler, error) {
	store, err := analyticsdb.Open(ctx, sdb.db)
	if err != nil {
		return nil, err
	}
	svc := analytics.NewService(store, a.clock, a.log.With("service", config.Analytics))
	s.analytics = svc
	a.subs = append(a.subs, subscription{analytics.ConsumerName, analytics.Subjects, svc.Handle, nil})
	// Revenue: the payment service's captures are on the GLOBO stream, not
	// GLOBO_ANALYTICS, so they have a durable consumer of their own, shared
	// by the instances as the first one is.
	a.subs = append(a.subs, subscription{analytics.PaymentsConsumerName, analytics.PaymentSubjects, svc.Handle, nil})
	a.bg = append(a.bg, func(ctx context.Context) { svc.RunSweeper(ctx, analyticsSweepEvery) })
	return analytics.NewHandler(svc), nil
}

// storefrontAnalytics is what the storefront gets of analytics: the
// fire-and-forget emitter when this process has the broker (its publishing
// loop runs in the background), and the "Popular now" source when analytics
// runs here or is given as a peer. Either may be nil: the storefront then
// publishes nothing, or shows no strip.
func (a *app) storefrontAnalytics(s *services) (storefront.AnalyticsEvents, storefront.PopularProducts) {
	var events storefront.AnalyticsEvents
	if a.bus != nil {
		em := analytics.NewEmitter(a.bus, a.clock, a.log.With("service", "storefront", "emitter", "analytics"), analytics.EmitterOptions{})
		a.bg = append(a.bg, em.Run)
		events = em
	}
	var popular storefront.PopularProducts
	if a.cfg.Runs(config.Analytics) || len(a.cfg.Peers[config.Analytics]) > 0 {
		popular = lazyPopular{s}
	}
	return events, popular
}

// lazyPopular asks the analytics service this process reaches at the time
// of the call: the storefront does not need analytics, so it may be built
// before it.
type lazyPopular struct{ s *services }

func (p lazyPopular) PopularProductIDs(ctx context.Context, window time.Duration, limit int) ([]string, error) {
	if p.s.analytics == nil {
		return nil, errs.E("app.popular", errs.Unavailable, errs.Msg("analytics is not built yet"))
	}
	return p.s.analytics.PopularProductIDs(ctx, window, limit)
}

var (
	_ storefront.AnalyticsEvents = (*analytics.Emitter)(nil)
	_ storefront.PopularProducts = (*analytics.Service)(nil)
	_ storefront.PopularProducts = (*analytics.Client)(nil)
	_ storefront.PopularProducts = lazyPopular{}
)
