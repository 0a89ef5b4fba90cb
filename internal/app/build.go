package app

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/globomantics/globomantics/internal/account"
	"github.com/globomantics/globomantics/internal/account/accountdb"
	"github.com/globomantics/globomantics/internal/account/accountredis"
	"github.com/globomantics/globomantics/internal/analytics"
	"github.com/globomantics/globomantics/internal/cart"
	"github.com/globomantics/globomantics/internal/cart/cartdb"
	"github.com/globomantics/globomantics/internal/catalog"
	"github.com/globomantics/globomantics/internal/catalog/catalogdb"
	"github.com/globomantics/globomantics/internal/checkout"
	"github.com/globomantics/globomantics/internal/checkout/checkoutdb"
	"github.com/globomantics/globomantics/internal/config"
	"github.com/globomantics/globomantics/internal/contracts"
	"github.com/globomantics/globomantics/internal/order"
	"github.com/globomantics/globomantics/internal/order/orderdb"
	"github.com/globomantics/globomantics/internal/partner"
	"github.com/globomantics/globomantics/internal/payment"
	"github.com/globomantics/globomantics/internal/payment/paymentdb"
	"github.com/globomantics/globomantics/internal/platform/blob"
	"github.com/globomantics/globomantics/internal/platform/bus"
	"github.com/globomantics/globomantics/internal/platform/cache"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/fault"
	"github.com/globomantics/globomantics/internal/platform/httpx"
	"github.com/globomantics/globomantics/internal/platform/ids"
	"github.com/globomantics/globomantics/internal/platform/outbox"
	"github.com/globomantics/globomantics/internal/platform/ratelimit"
	"github.com/globomantics/globomantics/internal/platform/redisx"
	"github.com/globomantics/globomantics/internal/platform/svcauth"
	"github.com/globomantics/globomantics/internal/search"
	"github.com/globomantics/globomantics/internal/shipping"
	"github.com/globomantics/globomantics/internal/shipping/shippingdb"
	"github.com/globomantics/globomantics/internal/storefront"
	"github.com/globomantics/globomantics/internal/worker/mail"
	"github.com/globomantics/globomantics/internal/worker/thumbnail"
)

// productCacheTTL bounds how long a product read may be served from the
// cache after another catalog instance changed it.
const productCacheTTL = 5 * time.Second

// services holds, for each service this process talks to, either the
// in-process service or an HTTP client of its remote instances.
type services struct {
	account  account.API
	catalog  catalog.API
	search   search.API
	cart     cart.API
	payment  payment.API
	shipping shipping.API
	order    order.API
	checkout checkout.API
	// analytics is nil when it is neither run here nor given as a peer
	// (the storefront does without it).
	analytics analytics.API
	// partner, likewise, when the partner service is not reached.
	partner partner.API
}

// build opens every resource and wires every service this process runs,
// each after the services it needs (the plan's order), so a dependency is
// always set, in process or remote, before its dependants are built.
func (a *app) build(ctx context.Context) error {
	cfg := a.cfg
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	a.mountHealth()
	if cfg.FaultInjection {
		f := fault.New(nil)
		if err := f.Set(cfg.Faults); err != nil { // validated with the configuration
			return err
		}
		a.faults = f
		a.log.Warn("fault injection is on: checkout steps, outbox relays and consumers may fail, hang or crash this process on purpose", "rules", f.String())
	}
	switch {
	case cfg.CredentialsDir != "":
		keys, err := svcauth.LoadDir(cfg.CredentialsDir, cfg.Services)
		if err != nil {
			return err
		}
		a.keys = keys
	case cfg.ServiceToken != "":
		a.keys = svcauth.FromSharedToken(cfg.ServiceToken)
	default: // one process runs everything: nobody else may call in
		a.keys = svcauth.FromSharedToken(ids.Token())
	}

	if a.plan.bus {
		reg, err := contracts.New()
		if err != nil {
			return fmt.Errorf("message contracts: %w", err)
		}
		a.contracts = reg
		b, err := bus.Open(ctx, a.observeBus(bus.Options{
			URL:        cfg.NATSURL,
			StoreDir:   filepath.Join(cfg.DataDir, "nats"),
			ListenAddr: cfg.NATSListen,
			Name:       "globomantics " + cfg.HTTPAddr,
			Log:        a.log,
			Clock:      a.clock,
			AckWait:    cfg.AckWait,
		}))
		if err != nil {
			return err
		}
		a.bus = b
		a.onClose(b.Close)
		a.checks["broker"] = b.Ping
	}
	if a.plan.blobs {
		blobs, err := blob.OpenSpec(ctx, cfg.BlobSpec)
		if err != nil {
			return fmt.Errorf("blob store %s: %w", cfg.BlobSpec, err) // the spec prints no secret
		}
		a.blobs = blobs
		if p, ok := blobs.(blob.Pinger); ok {
			a.checks["blobs"] = p.Ping
		}
	}
	a.cache = cache.NewMemory(a.clock, 10000)
	if cfg.RedisURL != "" {
		// Every cached read, limited request and session look-up waits on
		// Redis: short timeouts (dial 200 ms, read 500 ms), one retry. A
		// cache error is a miss, a limiter error lets the request through,
		// a session store error serves the visitor as anonymous: a slow or
		// lost Redis costs database reads and log-ins, no more, and is not
		// a readiness check. A Redis down at start is waited for, not
		// refused: the shop starts degraded.
		rc, err := redisx.NewClient(cfg.RedisURL)
		if err != nil {
			return fmt.Errorf("GLOBO_REDIS_URL: %w", err)
		}
		a.redis = rc
		a.onClose(rc.Close)
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		if err := rc.Ping(pctx).Err(); err != nil {
			a.log.Warn("Redis does not answer yet: caches miss, limits let requests through and sessions are refused until it does", "redis", redisx.Redact(cfg.RedisURL), "err", err)
		}
		cancel()
		a.cache = cache.NewRedis(rc, "globo:cache:")
		a.log.Info("cache, rate limits and sessions kept in Redis, shared by every instance", "redis", redisx.Redact(cfg.RedisURL))
	}
	a.cache = cache.Instrument(a.cache, "shop", a.obsRegisterer()) // cache_requests_total{cache="shop"}

	var s services
	// Services run elsewhere are reached over HTTP.
	for _, c := range a.plan.remote {
		c.remote(&s, a.client(c.name))
		a.checks["peer:"+c.name] = a.peerCheck(c.name)
	}
	// Every local database is opened, checked and matched to this shop
	// before any service uses it.
	dbs, err := a.openDatabases(ctx, a.plan.local)
	if err != nil {
		return err
	}
	a.mountDataStatus()
	a.mountObs() // obs.go
	for _, c := range a.plan.local {
		h, err := c.build(a, ctx, &s, dbs[c.name])
		if err != nil {
			return fmt.Errorf("%s: %w", c.name, err)
		}
		if h != nil {
			// The internal APIs trust their callers: only the services
			// that call this one (and the operator) get in, each with its
			// own credential, and only on the internal listener.
			a.imux.Handle("/svc/"+c.name+"/", a.keys.Require(c.name, callersOf(c.name), h))
		}
	}
	if !cfg.Runs(config.Storefront) {
		a.mux.HandleFunc("/", httpx.NotFound)
	}
	a.imux.HandleFunc("/", httpx.NotFound)
	return nil
}

func (a *app) buildStorefront(_ context.Context, s *services, _ *serviceDB) (http.Handler, error) {
	var box storefront.Mailbox
	if a.cfg.DevPages {
		if !a.cfg.LoopbackOnly() { // config.Validate refuses this too
			return nil, fmt.Errorf("development pages need an http address on loopback, not %q", a.cfg.HTTPAddr)
		}
		box = mailbox{dir: a.cfg.MailDir}
		a.log.Warn("development pages are on: /dev/mail shows every order e-mail; use --dev-pages=false in production")
	}
	var limits storefront.Limits  // zero: the defaults
	var limiter ratelimit.Limiter // nil: in this process
	if a.redis != nil {
		limiter = ratelimit.NewRedis(a.redis, "globo:ratelimit:", a.clock)
	}
	if !a.cfg.RateLimits {
		a.log.Warn("rate limits are off: login, registration and checkout may be tried without limit")
		limits = storefront.NoLimits
	}
	events, popular := a.storefrontAnalytics(s) // buildanalytics.go
	a.mux.Handle("/", storefront.New(storefront.Deps{
		Accounts:      s.account,
		Catalog:       s.catalog,
		Search:        s.search,
		Carts:         s.cart,
		Checkout:      s.checkout,
		Orders:        s.order,
		Mail:          box,
		Blobs:         a.blobs,
		Cache:         a.cache,
		Clock:         a.clock,
		Log:           a.log.With("service", "storefront"),
		SecureCookies: a.cfg.SecureCookies,
		// X-Forwarded-For is believed only from these (the edge, a load
		// balancer): the rate limits key on the client's address.
		TrustedProxies: a.cfg.TrustedProxies,
		Limits:         limits,
		RateLimiter:    limiter,
		Analytics:      events,
		Popular:        popular,
		Partners:       a.storefrontPartners(s), // buildpartner.go
	}).Handler())
	return nil, nil
}

func (a *app) buildAccount(ctx context.Context, s *services, sdb *serviceDB) (http.Handler, error) {
	store, err := accountdb.OpenSharded(ctx, sdb.sharded())
	if err != nil {
		return nil, err
	}
	var opts []account.Option
	if a.redis != nil {
		rs := accountredis.New(a.redis, "globo:session:", a.clock, accountredis.WithLogger(a.log.With("service", "account")))
		// Sessions made while they were kept in SQL stay valid until they
		// expire (account.SessionTTL): nobody is logged out by the move.
		opts = append(opts, account.WithSessionStore(account.MigratingSessions{Primary: rs, Legacy: store}))
	}
	// Password reset e-mail jobs go through each node's outbox, as the
	// order service's events.
	relays := outbox.NewRelays(store.Outboxes, a.contracts.Publisher(a.bus), a.log.With("outbox", config.Account), a.relayOptions()...)
	a.bg = append(a.bg, relays.Run)
	secret, err := a.resetSecret()
	if err != nil {
		return nil, err
	}
	opts = append(opts, account.WithKick(relays.Kick), account.WithResetSecret(secret))
	svc := account.NewService(store, a.clock, opts...)
	a.bg = append(a.bg, func(ctx context.Context) { svc.RunSessionSweeper(ctx, time.Hour, a.log.With("service", "account")) })
	s.account = svc
	return account.NewHandler(svc), nil
}

func (a *app) buildCatalog(ctx context.Context, s *services, sdb *serviceDB) (http.Handler, error) {
	db := sdb.db
	store, err := catalogdb.Open(ctx, db)
	if err != nil {
		return nil, err
	}
	// Product reads go through the look-aside cache (the browsing side of the
	// CAP choice: up to productCacheTTL stale across instances).
	svc := catalog.NewService(store, a.blobs, a.relay(db, config.Catalog), a.clock, catalog.WithCache(a.cache, productCacheTTL),
		catalog.WithLogger(a.log.With("service", "catalog")))
	s.catalog = svc
	a.catalogSvc = svc
	// Each instance caches products in its own memory (unless Redis is
	// shared): each needs every ProductChanged event, pushed to a consumer
	// of its own (bus.React), to forget a changed product within a second.
	// The cache starts empty, so events stored before the consumer was
	// made are of no use (FromNow), and events missed while down lose
	// nothing. The pull consumer "catalog-<id>" of earlier versions is
	// deleted by the broker after an hour unused.
	cid, err := a.instanceID("catalog-consumer", false)
	if err != nil {
		return nil, err
	}
	a.reacts = append(a.reacts, subscription{"catalog-cache-" + cid, []string{catalog.SubjectProductChanged}, svc.HandleProductChanged,
		[]bus.SubOption{bus.ForgetAfter(time.Hour), bus.FromNow()}})
	// Reservations of checkouts that never finished go back to stock when
	// they expire (the saga ends long before; this is the safety net).
	a.bg = append(a.bg, func(ctx context.Context) { svc.RunSweeper(ctx, catalog.DefaultSweepEvery) })
	// The demo catalog goes only into a catalog database new at this
	// start: one that lost its products must not get them back at their
	// original stock (openDatabases refuses a vanished database anyway).
	if a.cfg.Seed && sdb.created {
		start := time.Now()
		n, err := catalog.Seed(ctx, svc)
		if err != nil {
			return nil, fmt.Errorf("seeding the demo catalog: %w", err)
		}
		if n > 0 {
			a.log.Info("seeded demo catalog", "products", n, "took", time.Since(start).Round(time.Millisecond))
		}
	}
	return catalog.NewHandler(svc), nil
}

func (a *app) buildSearch(ctx context.Context, s *services, _ *serviceDB) (http.Handler, error) {
	log := a.log.With("service", "search")
	dir := filepath.Join(a.cfg.DataDir, "search.bleve")
	_, statErr := os.Stat(dir)
	fresh := os.IsNotExist(statErr)
	idx, err := search.OpenIndex(dir)
	if errors.Is(err, search.ErrIndexUnusable) {
		// The index is only a copy of the catalog: a damaged one is set
		// aside (one broken copy is kept, for a post-mortem) and rebuilt,
		// as a missing one is.
		broken := dir + ".broken"
		log.Warn("search index cannot be opened: setting it aside and rebuilding it from the catalog",
			"index", dir, "moved_to", broken, "err", err)
		if err := os.RemoveAll(broken); err != nil {
			return nil, fmt.Errorf("search: removing the previous broken index: %w", err)
		}
		if err := os.Rename(dir, broken); err != nil {
			return nil, fmt.Errorf("search: setting the broken index aside: %w", err)
		}
		fresh = true
		idx, err = search.OpenIndex(dir)
	}
	if err != nil {
		return nil, err
	}
	a.onClose(idx.Close)
	a.checks["search-index"] = idx.Ping
	// Each search instance keeps its own index, so each needs every event:
	// a durable consumer of its own, renewed when the index is new.
	id, err := a.instanceID("search-consumer", fresh)
	if err != nil {
		return nil, err
	}
	svc := search.NewService(idx, log)
	// Each instance's consumer is deleted by the broker after a week unused.
	a.subs = append(a.subs, subscription{"search-" + id, []string{catalog.SubjectItemListed, catalog.SubjectProductChanged}, svc.HandleEvent,
		[]bus.SubOption{bus.ForgetAfter(7 * 24 * time.Hour)}})
	// A new index starts from the catalog: events older than the broker's
	// retention are gone. Retried until the catalog answers; a marker file
	// records that it finished, so an interrupted rebuild runs again.
	marker := filepath.Join(a.cfg.DataDir, "search.rebuilt")
	if fresh {
		_ = os.Remove(marker)
	}
	if _, err := os.Stat(marker); err != nil {
		cat := s.catalog
		// Not ready until the index holds the catalog.
		var rebuilt atomic.Bool
		a.checks["search-rebuild"] = func(context.Context) error {
			if !rebuilt.Load() {
				return errs.E(errs.Unavailable, errs.Msg("search index is being rebuilt from the catalog"))
			}
			return nil
		}
		a.bg = append(a.bg, func(ctx context.Context) {
			for wait := 200 * time.Millisecond; ; wait = min(2*wait, 10*time.Second) {
				n, err := svc.Rebuild(ctx, cat)
				if err == nil {
					rebuilt.Store(true)
					log.Info("search index rebuilt from the catalog", "products", n)
					if err := os.WriteFile(marker, []byte(a.clock.Now().Format(time.RFC3339)+"\n"), 0o644); err != nil {
						log.Warn("search rebuild marker", "err", err)
					}
					return
				}
				log.Warn("search index rebuild failed, retrying", "err", err)
				select {
				case <-ctx.Done():
					return
				case <-time.After(wait):
				}
			}
		})
	}
	s.search = svc
	return search.NewHandler(svc), nil
}

func (a *app) buildCart(ctx context.Context, s *services, sdb *serviceDB) (http.Handler, error) {
	store, err := cartdb.OpenSharded(ctx, sdb.sharded(), cartdb.WithClock(a.clock))
	if err != nil {
		return nil, err
	}
	svc := cart.NewService(store, s.catalog, a.clock, cart.WithLogger(a.log.With("service", "cart")))
	s.cart = svc
	// Visitors' carts untouched for 30 days go, and old checkout locks.
	a.bg = append(a.bg, func(ctx context.Context) { svc.RunCleanup(ctx, time.Hour, 30*24*time.Hour) })
	return cart.NewHandler(svc), nil
}

func (a *app) buildPayment(ctx context.Context, s *services, sdb *serviceDB) (http.Handler, error) {
	store, err := paymentdb.OpenSharded(ctx, sdb.sharded())
	if err != nil {
		return nil, err
	}
	// PaymentCaptured goes through each node's outbox, as order's events.
	relays := outbox.NewRelays(store.Outboxes, a.contracts.Publisher(a.bus), a.log.With("outbox", config.Payment), a.relayOptions()...)
	a.bg = append(a.bg, relays.Run)
	svc := payment.NewService(store, a.clock, payment.WithKick(relays.Kick))
	s.payment = svc
	return payment.NewHandler(svc), nil
}

func (a *app) buildShipping(ctx context.Context, s *services, sdb *serviceDB) (http.Handler, error) {
	db := sdb.db
	store, err := shippingdb.Open(ctx, db)
	if err != nil {
		return nil, err
	}
	svc := shipping.NewService(store, a.clock)
	s.shipping = svc
	return shipping.NewHandler(svc), nil
}

func (a *app) buildOrder(ctx context.Context, s *services, sdb *serviceDB) (http.Handler, error) {
	store, err := orderdb.OpenSharded(ctx, sdb.sharded())
	if err != nil {
		return nil, err
	}
	// Each node has its own outbox table, so each gets its own relay,
	// also a node that joins when shards move to it.
	relays := outbox.NewRelays(store.Outboxes, a.contracts.Publisher(a.bus), a.log.With("outbox", config.Order), a.relayOptions()...)
	a.bg = append(a.bg, relays.Run)
	svc := order.NewService(store, relays.Kick, a.clock)
	s.order = svc
	return order.NewHandler(svc), nil
}

func (a *app) buildCheckout(ctx context.Context, s *services, sdb *serviceDB) (http.Handler, error) {
	store, err := checkoutdb.OpenSharded(ctx, sdb.sharded())
	if err != nil {
		return nil, err
	}
	opts := []checkout.Option{
		checkout.WithLease(a.cfg.CheckoutLease),
		checkout.WithBudget(a.cfg.CheckoutBudget),
		checkout.WithCallbackSecret(callbackSecret(a.cfg.CallbackSecret, a.keys)),
		checkout.WithRegisterer(a.obsRegisterer()), checkout.WithTracerProvider(a.obsTracerProvider()),
	}
	if a.faults != nil { // one injector per process: see build
		opts = append(opts, checkout.WithFaults(a.faults))
	}
	svc := checkout.NewService(store, s.cart, s.catalog, s.payment, s.shipping, s.order, a.clock, a.log.With("service", "checkout"), opts...)
	s.checkout = svc
	// Recovery of orphaned sagas, callbacks and key expiry.
	a.bg = append(a.bg, svc.Run)
	mux := http.NewServeMux()
	mux.Handle(checkout.Prefix+"admin/", checkout.NewAdminHandler(svc))
	mux.Handle(checkout.Prefix, checkout.NewHandler(svc))
	return mux, nil
}

func (a *app) buildThumbnails(_ context.Context, s *services, _ *serviceDB) (http.Handler, error) {
	w := thumbnail.New(a.blobs, s.catalog, a.log.With("worker", "thumbnails"))
	// One shared durable consumer of the thumbnail jobs (work-queue stream
	// GLOBO_JOBS): thumbnail workers share the work, each job done once.
	a.subs = append(a.subs, subscription{thumbnail.ConsumerName, thumbnail.Subjects, w.Handle, nil})
	// Upgrade from versions that made thumbnails from ItemListed: their
	// consumer ("thumbnail", on GLOBO) may hold items listed before the
	// upgrade; they are finished through it, then it is deleted. Items
	// listed since have jobs (bus.Retire). A new deployment has none.
	a.subs = append(a.subs, subscription{thumbnail.LegacyConsumerName, thumbnail.LegacySubjects, w.Handle,
		[]bus.SubOption{bus.Retire(a.clock.Now())}})
	return nil, nil
}

func (a *app) buildMail(_ context.Context, _ *services, _ *serviceDB) (http.Handler, error) {
	var sender mail.Sender
	if a.cfg.SMTPAddr != "" {
		sender = mail.NewSMTPSender(a.cfg.SMTPAddr, a.cfg.SMTPUser, a.cfg.SMTPPassword)
	} else {
		if err := os.MkdirAll(a.cfg.MailDir, 0o755); err != nil {
			return nil, err
		}
		sender = mail.NewFileSender(a.cfg.MailDir)
	}
	// Links in messages (password resets) point at the shop's public URL:
	// --advertise, else http://<--http-addr>; never a request's Host.
	w := mail.New(sender, a.cfg.MailFrom, a.log.With("worker", "mail"),
		mail.WithShopURL(advertised(a.cfg.Advertise, a.cfg.HTTPAddr)), mail.WithClock(a.clock))
	// One shared durable consumer of the e-mail jobs (GLOBO_JOBS).
	a.subs = append(a.subs, subscription{mail.ConsumerName, mail.Subjects, w.Handle, nil})
	// And one of the account service's (password reset links).
	a.subs = append(a.subs, subscription{mail.AccountConsumerName, mail.AccountSubjects, w.HandleAccount, nil})
	// Upgrade from versions that mailed from OrderPlaced and OrderCancelled:
	// their consumer ("mail-worker", on GLOBO) may hold orders whose mail
	// was not sent before the upgrade; they are sent through it, then it
	// is deleted. Orders changed since have jobs (bus.Retire).
	a.subs = append(a.subs, subscription{mail.LegacyConsumerName, mail.LegacySubjects, w.Handle,
		[]bus.SubOption{bus.Retire(a.clock.Now())}})
	return nil, nil
}

// mailbox shows the mail worker's files on the storefront's development page.
type mailbox struct{ dir string }

func (m mailbox) List(ctx context.Context) ([]storefront.MailSummary, error) {
	list, err := mail.ListMessages(m.dir)
	if err != nil {
		return nil, err
	}
	out := make([]storefront.MailSummary, len(list))
	for i, s := range list {
		out[i] = storefront.MailSummary{ID: s.ID, To: s.To, Subject: s.Subject, Date: s.Date}
	}
	return out, nil
}

func (m mailbox) Read(ctx context.Context, id string) ([]byte, error) {
	return mail.ReadMessage(m.dir, id)
}

// resetSecret is the key that signs password reset links. With shared
// credentials (--credentials or GLOBO_SERVICE_TOKEN) it is derived from the
// account service's credential, which every instance of the service shares.
// A process without them runs the whole shop alone and makes a random
// credential at every start, so the key is instead kept in the data
// directory (made once, mode 0600): links sent before a restart still work.
func (a *app) resetSecret() ([]byte, error) {
	if a.cfg.CredentialsDir == "" && a.cfg.ServiceToken == "" {
		return persistentKey(filepath.Join(a.cfg.DataDir, "password-reset.key"))
	}
	return derivedKey(a.keys, config.Account, "password resets"), nil
}

// derivedKey is a key for purpose derived from service's credential: the
// same on every instance of the service, and not the credential itself.
func derivedKey(keys *svcauth.Keyring, service, purpose string) []byte {
	cred, _ := keys.Credential(service)
	sum := sha256.Sum256([]byte("globomantics " + purpose + "\x00" + cred))
	return sum[:]
}

// persistentKey reads the 32-byte key at path, making it when missing.
func persistentKey(path string) ([]byte, error) {
	if b, err := os.ReadFile(path); err == nil && len(b) == 32 {
		return b, nil
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, key, 0o600); err != nil {
		return nil, fmt.Errorf("writing %s: %w", path, err)
	}
	return key, nil
}

// callbackSecret is the key that signs checkout callbacks: the configured
// one, else one derived from the checkout service's own credential (the
// same on every instance, and not the credential itself).
func callbackSecret(configured string, keys *svcauth.Keyring) []byte {
	if configured != "" {
		return []byte(configured)
	}
	return derivedKey(keys, config.Checkout, "checkout callbacks")
}
