package app

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"

	"github.com/globomantics/globomantics/internal/account"
	"github.com/globomantics/globomantics/internal/analytics"
	"github.com/globomantics/globomantics/internal/cart"
	"github.com/globomantics/globomantics/internal/catalog"
	"github.com/globomantics/globomantics/internal/checkout"
	"github.com/globomantics/globomantics/internal/config"
	"github.com/globomantics/globomantics/internal/order"
	"github.com/globomantics/globomantics/internal/partner"
	"github.com/globomantics/globomantics/internal/payment"
	"github.com/globomantics/globomantics/internal/platform/httpx"
	"github.com/globomantics/globomantics/internal/platform/svcauth"
	"github.com/globomantics/globomantics/internal/search"
	"github.com/globomantics/globomantics/internal/shipping"
)

// component is one service, worker or server this binary can run: what it
// needs and how it is built. The registry (components) is the only place
// the shop's service graph is written down; the configuration checks, the
// broker and blob store needs, the choice of in-process service or remote
// client and the build order are all derived from it.
type component struct {
	name  string
	needs []string // components it calls: run in this process or reached through --peer
	// uses are components it calls when they are there (run here or given
	// with --peer) and does without otherwise: they are not required, and
	// not built before it, but it may call their internal APIs.
	uses  []string
	bus   bool // publishes or subscribes on the broker
	blobs bool // reads or writes the blob store
	db    bool // keeps its data in a database of its own (config.DatabaseFor)
	// available marks a service that chose availability over consistency
	// (AP): with no primary it keeps serving reads from replicas and
	// caches, so its readiness needs any node of its database, not the
	// primary. The others are consistent (CP): their writes fail fast
	// with 503 while no primary answers.
	available bool
	// remote sets, in s, the client of the component's instances running
	// elsewhere; nil when it has no internal API (workers, the storefront).
	remote func(s *services, c *httpx.Client)
	// build builds the component in this process once everything it needs
	// is in s, sets it in s, and returns the handler of its internal API
	// (nil if it has none). db is its database when it has one.
	build func(a *app, ctx context.Context, s *services, db *serviceDB) (http.Handler, error)
}

// components is the registry, in no particular order: plan sorts it.
func components() []component {
	return []component{
		{name: config.Account, db: true, bus: true, // bus: password reset e-mail jobs, through its outbox
			remote: func(s *services, c *httpx.Client) { s.account = account.NewClient(c) },
			build:  (*app).buildAccount},
		{name: config.Catalog, db: true, bus: true, blobs: true, available: true,
			remote: func(s *services, c *httpx.Client) { s.catalog = catalog.NewClient(c) },
			build:  (*app).buildCatalog},
		// A new search index is rebuilt from the catalog.
		{name: config.Search, needs: []string{config.Catalog}, bus: true,
			remote: func(s *services, c *httpx.Client) { s.search = search.NewClient(c) },
			build:  (*app).buildSearch},
		{name: config.Cart, needs: []string{config.Catalog}, db: true,
			remote: func(s *services, c *httpx.Client) { s.cart = cart.NewClient(c) },
			build:  (*app).buildCart},
		{name: config.Payment, db: true, bus: true,
			remote: func(s *services, c *httpx.Client) { s.payment = payment.NewClient(c) },
			build:  (*app).buildPayment},
		{name: config.Shipping, db: true,
			remote: func(s *services, c *httpx.Client) { s.shipping = shipping.NewClient(c) },
			build:  (*app).buildShipping},
		{name: config.Order, db: true, bus: true,
			remote: func(s *services, c *httpx.Client) { s.order = order.NewClient(c) },
			build:  (*app).buildOrder},
		{name: config.Checkout, needs: []string{config.Cart, config.Catalog, config.Payment, config.Shipping, config.Order}, db: true,
			remote: func(s *services, c *httpx.Client) { s.checkout = checkout.NewClient(c) },
			build:  (*app).buildCheckout},
		{name: config.Thumbnails, needs: []string{config.Catalog}, bus: true, blobs: true,
			build: (*app).buildThumbnails},
		{name: config.Mail, bus: true,
			build: (*app).buildMail},
		// Page views and searches, published fire-and-forget by the
		// storefront, summarised ("Popular now", the operator's report).
		{name: config.Analytics, db: true, bus: true,
			remote: func(s *services, c *httpx.Client) { s.analytics = analytics.NewClient(c) },
			build:  (*app).buildAnalytics},
		// Partners' listings, sales and delivery log (buildpartner.go), and
		// the worker that delivers their webhooks, as many as wanted.
		{name: config.Partner, needs: []string{config.Catalog}, db: true, bus: true,
			remote: func(s *services, c *httpx.Client) { s.partner = partner.NewClient(c) },
			build:  (*app).buildPartner},
		{name: config.Webhooks, needs: []string{config.Partner}, bus: true,
			build: (*app).buildWebhooks},
		// The storefront shows "Popular now" when analytics is there, and
		// publishes analytics events when the process has a broker (one
		// of its other components needs it, or --nats-url names one): a
		// storefront alone does not start a broker of its own for them.
		{name: config.Storefront, needs: []string{config.Account, config.Catalog, config.Search, config.Cart, config.Checkout, config.Order},
			uses: []string{config.Analytics, config.Partner}, blobs: true,
			build: (*app).buildStorefront},
	}
}

// sortComponents orders list so that every component comes after the
// components it needs (Kahn's algorithm). Among components whose needs are
// all met, the one earlier in list comes first, so the order is the same on
// every run. It fails on a need missing from list or on a cycle.
func sortComponents(list []component) ([]component, error) {
	index := make(map[string]int, len(list))
	for i, c := range list {
		if _, dup := index[c.name]; dup {
			return nil, fmt.Errorf("component %s is registered twice", c.name)
		}
		index[c.name] = i
	}
	pending := make([]int, len(list))      // needs not yet placed, per component
	dependants := make([][]int, len(list)) // who needs component i
	for i, c := range list {
		for _, n := range c.needs {
			j, ok := index[n]
			if !ok {
				return nil, fmt.Errorf("component %s needs %s, which is not registered", c.name, n)
			}
			pending[i]++
			dependants[j] = append(dependants[j], i)
		}
	}
	var ready []int // indexes into list with nothing pending, kept sorted
	for i := range list {
		if pending[i] == 0 {
			ready = append(ready, i)
		}
	}
	out := make([]component, 0, len(list))
	for len(ready) > 0 {
		i := ready[0]
		ready = ready[1:]
		out = append(out, list[i])
		for _, d := range dependants[i] {
			if pending[d]--; pending[d] == 0 {
				ready = append(ready, d)
			}
		}
		sort.Ints(ready)
	}
	if len(out) < len(list) {
		var cycle []string
		for i, c := range list {
			if pending[i] > 0 {
				cycle = append(cycle, c.name)
			}
		}
		return nil, fmt.Errorf("components %s need each other in a cycle", strings.Join(cycle, ", "))
	}
	return out, nil
}

// plan is what one process runs and reaches, derived from the registry and
// the configuration.
type plan struct {
	local  []component // run in this process, every one after what it needs
	remote []component // run elsewhere and reached through their peers
	bus    bool        // some local component uses the broker
	blobs  bool        // some local component uses the blob store
}

// newPlan checks cfg against the registry and returns what this process
// runs, in build order. It fails, naming every problem, when a component
// run here needs one that is neither run here nor given as a peer, or when
// a peer is given for a component that has no API.
func newPlan(cfg config.Config) (plan, error) {
	return planFrom(components(), cfg)
}

func planFrom(registry []component, cfg config.Config) (plan, error) {
	sorted, err := sortComponents(registry)
	if err != nil {
		return plan{}, err
	}
	byName := make(map[string]component, len(sorted))
	for _, c := range sorted {
		byName[c.name] = c
	}
	// Names outside the registry are config.Validate's to report (the
	// registry and config.AllServices name the same components).
	var p plan
	var problems []string
	for _, c := range sorted {
		if !cfg.Runs(c.name) {
			if c.remote != nil && len(cfg.Peers[c.name]) > 0 {
				p.remote = append(p.remote, c)
			}
			continue
		}
		p.local = append(p.local, c)
		p.bus = p.bus || c.bus || (c.name == config.Storefront && cfg.NATSURL != "")
		p.blobs = p.blobs || c.blobs
		for _, n := range c.needs {
			switch {
			case cfg.Runs(n):
			case byName[n].remote == nil:
				problems = append(problems, fmt.Sprintf("service %s needs %s: run it here (it cannot be reached through --peer)", c.name, n))
			case len(cfg.Peers[n]) == 0:
				problems = append(problems, fmt.Sprintf("service %s needs %s: run it here or give its instances with --peer %s=URL", c.name, n, n))
			}
		}
	}
	for name := range cfg.Peers {
		if c, ok := byName[name]; ok && c.remote == nil {
			problems = append(problems, fmt.Sprintf("peer %s: it has no API to call, so it cannot be a peer", name))
		}
	}
	if len(problems) > 0 {
		slices.Sort(problems)
		return plan{}, errors.New("invalid configuration: " + strings.Join(slices.Compact(problems), "; "))
	}
	return p, nil
}

// callersOf lists the components that call service s: the only ones (with
// the operator) its internal API accepts.
func callersOf(s string) []string {
	var out []string
	for _, c := range components() {
		if slices.Contains(c.needs, s) || slices.Contains(c.uses, s) {
			out = append(out, c.name)
		}
	}
	return out
}

// callerOf is the identity this process presents to service s: the first
// of its components, in build order, that calls s.
func (a *app) callerOf(s string) string {
	for _, c := range a.plan.local {
		if slices.Contains(c.needs, s) || slices.Contains(c.uses, s) {
			return c.name
		}
	}
	return svcauth.Operator // nothing here calls s (a readiness check at most)
}
