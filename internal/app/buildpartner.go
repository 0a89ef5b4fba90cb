package app

import (
	"context"
	"net/http"
	"time"

	"github.com/globomantics/globomantics/internal/config"
	"github.com/globomantics/globomantics/internal/partner"
	"github.com/globomantics/globomantics/internal/partner/partnerdb"
	"github.com/globomantics/globomantics/internal/platform/bus"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/storefront"
	"github.com/globomantics/globomantics/internal/worker/webhooks"
)

// partnerSweepEvery is how often expired inbox records of the partner
// service are deleted.
const partnerSweepEvery = time.Hour

// buildPartner builds the partner service: its store (with the outbox of
// webhook jobs, relayed by this instance, and the inbox), the one durable
// consumer of ThumbnailsReady and OrderPlaced every instance shares, the
// inbox sweeper, and the internal API.
func (a *app) buildPartner(ctx context.Context, s *services, sdb *serviceDB) (http.Handler, error) {
	store, err := partnerdb.Open(ctx, sdb.db)
	if err != nil {
		return nil, err
	}
	log := a.log.With("service", config.Partner)
	svc := partner.NewService(store, s.catalog, a.relay(sdb.db, config.Partner), a.clock, partner.WithLogger(log))
	s.partner = svc
	a.subs = append(a.subs, subscription{partner.ConsumerName, partner.Subjects, svc.Handle, nil})
	a.bg = append(a.bg, func(ctx context.Context) { svc.RunSweeper(ctx, partnerSweepEvery) })
	return partner.NewHandler(svc), nil
}

// webhookConcurrency is how many webhooks one worker delivers at once: a
// delivery mostly waits on a partner's server (up to its 10 s timeout), so
// one slow partner must not hold every other partner's webhooks back.
const webhookConcurrency = 8

// buildWebhooks builds the webhook delivery worker: one durable consumer of
// the webhook jobs shared by every worker, wherever it runs.
func (a *app) buildWebhooks(_ context.Context, s *services, _ *serviceDB) (http.Handler, error) {
	w := webhooks.New(s.partner, a.clock, a.log.With("worker", config.Webhooks))
	a.subs = append(a.subs, subscription{webhooks.ConsumerName, webhooks.Subjects, w.Handle,
		[]bus.SubOption{bus.Concurrency(webhookConcurrency)}})
	return nil, nil
}

// storefrontPartners is the partner API the storefront serves to partners
// when the partner service runs here or is given as a peer; nil otherwise
// (the storefront then has no partner API).
func (a *app) storefrontPartners(s *services) storefront.Partners {
	if !a.cfg.Runs(config.Partner) && len(a.cfg.Peers[config.Partner]) == 0 {
		return nil
	}
	return lazyPartners{s}
}

// lazyPartners calls the partner service this process reaches at the time of
// the call: the storefront only uses partner, so it may be built before it.
type lazyPartners struct{ s *services }

func (p lazyPartners) api() (partner.API, error) {
	if p.s.partner == nil {
		return nil, errs.E("app.partner", errs.Unavailable, errs.Msg("the partner service is not built yet"))
	}
	return p.s.partner, nil
}

func (p lazyPartners) Authenticate(ctx context.Context, key string) (partner.Partner, error) {
	api, err := p.api()
	if err != nil {
		return partner.Partner{}, err
	}
	return api.Authenticate(ctx, key)
}

func (p lazyPartners) CreateProduct(ctx context.Context, partnerID string, np partner.NewProduct) (partner.Product, error) {
	api, err := p.api()
	if err != nil {
		return partner.Product{}, err
	}
	return api.CreateProduct(ctx, partnerID, np)
}

func (p lazyPartners) SetImage(ctx context.Context, partnerID, listingID string, image []byte) (partner.Product, error) {
	api, err := p.api()
	if err != nil {
		return partner.Product{}, err
	}
	return api.SetImage(ctx, partnerID, listingID, image)
}

func (p lazyPartners) Products(ctx context.Context, partnerID string) ([]partner.Product, error) {
	api, err := p.api()
	if err != nil {
		return nil, err
	}
	return api.Products(ctx, partnerID)
}

func (p lazyPartners) Sales(ctx context.Context, partnerID string, limit int) (partner.SalesReport, error) {
	api, err := p.api()
	if err != nil {
		return partner.SalesReport{}, err
	}
	return api.Sales(ctx, partnerID, limit)
}

func (p lazyPartners) Webhook(ctx context.Context, partnerID string) (partner.Webhook, error) {
	api, err := p.api()
	if err != nil {
		return partner.Webhook{}, err
	}
	return api.Webhook(ctx, partnerID)
}

func (p lazyPartners) SetWebhook(ctx context.Context, partnerID, url string) (partner.Webhook, error) {
	api, err := p.api()
	if err != nil {
		return partner.Webhook{}, err
	}
	return api.SetWebhook(ctx, partnerID, url)
}

func (p lazyPartners) Deliveries(ctx context.Context, partnerID string, limit int) ([]partner.Delivery, error) {
	api, err := p.api()
	if err != nil {
		return nil, err
	}
	return api.Deliveries(ctx, partnerID, limit)
}

var (
	_ storefront.Partners = (*partner.Service)(nil)
	_ storefront.Partners = (*partner.Client)(nil)
	_ storefront.Partners = lazyPartners{}
	_ webhooks.Deliveries = (*partner.Client)(nil)
)
