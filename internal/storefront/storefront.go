// Package storefront is the shop's front end: server-rendered HTML pages and
// the public JSON API v1 under /api/v1/. Storefront servers are stateless: a
// visitor's state lives in cookies (the account session token and, before
// login, an anonymous cart token) and in the account and cart services, so any
// instance can serve any request. The only server-side memory is the shared
// look-aside cache (categories, and token→account lookups for a few seconds).
//
// Browsing is the "available" side of the CAP trade-off: catalog reads may be
// served from a cache that is up to a minute old (and, when the catalog is
// down, from an older copy), whereas carts, sessions and orders always go to
// their owning service and fail visibly rather than show stale state.
package storefront

import (
	"context"
	"html/template"
	"log/slog"
	"net/http"
	"net/netip"
	"time"

	"github.com/globomantics/globomantics/internal/account"
	"github.com/globomantics/globomantics/internal/cart"
	"github.com/globomantics/globomantics/internal/catalog"
	"github.com/globomantics/globomantics/internal/checkout"
	"github.com/globomantics/globomantics/internal/order"
	"github.com/globomantics/globomantics/internal/platform/blob"
	"github.com/globomantics/globomantics/internal/platform/cache"
	"github.com/globomantics/globomantics/internal/platform/clock"
	"github.com/globomantics/globomantics/internal/platform/compress"
	"github.com/globomantics/globomantics/internal/platform/httpx"
	"github.com/globomantics/globomantics/internal/platform/page"
	"github.com/globomantics/globomantics/internal/platform/ratelimit"
	"github.com/globomantics/globomantics/internal/search"
)

// Accounts is what the storefront needs of the account service; account.API
// (the in-process *Service and the HTTP *Client) satisfies it.
type Accounts interface {
	Register(ctx context.Context, r account.Registration) (account.Account, error)
	Login(ctx context.Context, email, password string) (account.Session, error)
	Logout(ctx context.Context, token string) error
	Authenticate(ctx context.Context, token string) (account.Account, error)
	UpdateProfile(ctx context.Context, id, name string) (account.Account, error)
}

// Catalog is what the storefront needs of the catalog service (reads only).
type Catalog interface {
	ListCategories(ctx context.Context) ([]catalog.Category, error)
	ListProducts(ctx context.Context, f catalog.ProductFilter) (catalog.ProductPage, error)
	GetProduct(ctx context.Context, id string) (catalog.Product, error)
	GetProducts(ctx context.Context, ids []string) ([]catalog.Product, error)
}

// Searcher is what the storefront needs of the search service.
type Searcher interface {
	Search(ctx context.Context, query string, p page.Request) (search.Result, error)
}

// Carts is what the storefront needs of the cart service.
type Carts interface {
	GetCart(ctx context.Context, owner string) (cart.Cart, error)
	AddItem(ctx context.Context, owner, productID string, qty int) (cart.Cart, error)
	SetQuantity(ctx context.Context, owner, productID string, qty int) (cart.Cart, error)
	RemoveItem(ctx context.Context, owner, productID string) (cart.Cart, error)
	Merge(ctx context.Context, from, to string) (cart.Cart, error)
}

// Checkout is what the storefront needs of the checkout service: placing an
// order under an idempotency key, and looking a checkout up by its key (only
// ever with the logged-in customer's id).
type Checkout interface {
	PlaceOrder(ctx context.Context, c checkout.Customer, key string, r checkout.Request) (checkout.Result, error)
	Checkout(ctx context.Context, userID, key string) (checkout.Result, error)
}

// Orders is what the storefront needs of the order service (reads only).
type Orders interface {
	GetOrder(ctx context.Context, id string) (order.Order, error)
	ListOrders(ctx context.Context, userID string, p page.Request) (order.OrderPage, error)
}

// MailSummary describes one message in the development mailbox.
type MailSummary struct {
	ID      string
	To      string
	Subject string
	Date    time.Time
}

// Mailbox is the development mailbox shown at /dev/mail: the messages the
// mail worker has "sent". List returns them (newest first is nicest); Read
// returns one raw message and errs.NotFound for an unknown id.
type Mailbox interface {
	List(ctx context.Context) ([]MailSummary, error)
	Read(ctx context.Context, id string) ([]byte, error)
}

// Interface guards: the services' contracts satisfy the storefront's needs.
var (
	_ Accounts = account.API(nil)
	_ Catalog  = catalog.API(nil)
	_ Searcher = search.API(nil)
	_ Carts    = cart.API(nil)
	_ Checkout = checkout.API(nil)
	_ Orders   = order.API(nil)
)

// Deps is everything a storefront server needs. Mail and Blobs may be nil
// (then /dev/mail and /media/ answer 404); Cache, Clock, Log and
// RateLimiter default to an in-process cache, the real clock, slog.Default
// and an in-process limiter. The services are required.
type Deps struct {
	Accounts Accounts
	Catalog  Catalog
	Search   Searcher
	Carts    Carts
	Checkout Checkout
	Orders   Orders
	Mail     Mailbox
	Blobs    blob.Store
	Cache    cache.Cache
	Clock    clock.Clock
	Log      *slog.Logger
	// SecureCookies marks the session and cart cookies Secure (HTTPS only).
	SecureCookies bool
	// CatalogStaleness is how stale, at most, the catalog's answers may be
	// (its cache's expiry plus its replicas' lag bound: the catalog chose
	// availability); sent to clients in the StalenessHeader of catalog
	// reads. Zero means DefaultCatalogStaleness.
	CatalogStaleness time.Duration
	// RateLimiter keeps the budgets of Limits. Nil means one in this
	// process's memory (each instance then limits on its own); a shared
	// one makes the limits hold across instances.
	RateLimiter ratelimit.Limiter
	// Limits are the abuse limits on logins, registrations and checkouts;
	// zero fields get DefaultLimits.
	Limits Limits
	// Analytics, when set, receives a PageViewed for each product page and
	// a SearchMade for each search, fire-and-forget (analytics.go).
	Analytics AnalyticsEvents
	// Popular, when set, gives the home page its "Popular now" strip; the
	// page goes without it when Popular fails or is slow (analytics.go).
	Popular PopularProducts
	// Partners, when set, serves the partner API under /api/v1/partner/
	// (partnerapi.go); without it those paths answer 404.
	Partners Partners
	// TrustedProxies are the reverse proxies whose X-Forwarded-For is
	// believed when they are the connection's peer (see clientAddr). Empty
	// means none: the client is always the connection's peer.
	TrustedProxies []netip.Prefix
}

// StalenessHeader tells a client, in whole seconds, how stale at most the
// answer to a catalog read may be: the catalog serves reads from caches and
// replicas, and keeps serving them when its primary database is gone.
// Categories may be older still (categoriesTTL, or the last known copy while
// the catalog is down).
const StalenessHeader = "Globo-Max-Staleness"

// DefaultCatalogStaleness is the catalog's product cache expiry (5 s) plus
// the default replica lag bound (1 s).
const DefaultCatalogStaleness = 6 * time.Second

// Server is a stateless storefront server; build it with New and serve
// Handler. It is safe for concurrent use.
type Server struct {
	d       Deps
	log     *slog.Logger
	static  *staticFiles
	pages   map[string]*template.Template
	csrf    *http.CrossOriginProtection
	html    *http.ServeMux // the page routes, for finding where a form belongs
	handler http.Handler
	limiter ratelimit.Limiter
	limits  Limits
	shared  *pageCache // anonymous catalog pages (homecache.go)
}

// New returns a storefront server over d. It panics if a required service is
// missing, which is a wiring mistake.
func New(d Deps) *Server {
	switch {
	case d.Accounts == nil, d.Catalog == nil, d.Search == nil, d.Carts == nil, d.Checkout == nil, d.Orders == nil:
		panic("storefront.New: Deps needs Accounts, Catalog, Search, Carts, Checkout and Orders")
	}
	if d.Clock == nil {
		d.Clock = clock.Real{}
	}
	if d.Cache == nil {
		d.Cache = cache.NewMemory(d.Clock, 10000)
	}
	if d.Log == nil {
		d.Log = slog.Default()
	}
	if d.CatalogStaleness <= 0 {
		d.CatalogStaleness = DefaultCatalogStaleness
	}
	if d.RateLimiter == nil {
		d.RateLimiter = ratelimit.NewMemory(d.Clock, 0)
	}
	s := &Server{
		d:       d,
		log:     d.Log,
		static:  loadStatic(),
		csrf:    http.NewCrossOriginProtection(),
		limiter: d.RateLimiter,
		limits:  d.Limits.withDefaults(),
		shared:  newPageCache(d.Clock),
	}
	s.pages = s.parseTemplates()
	s.routes()
	return s
}

// Handler returns the storefront's HTTP handler: /static/, /media/, /api/
// and the HTML pages, every answer with the security headers (see
// withSecurityHeaders). It does not log requests or recover panics: wrap it
// in httpx.Middleware.
func (s *Server) Handler() http.Handler { return s.handler }

func (s *Server) routes() {
	api := http.NewServeMux()
	api.Handle("GET /api/v1/categories", s.apiHandler(s.apiCategories))
	api.Handle("GET /api/v1/products", s.apiHandler(s.apiProducts))
	// The same for every visitor without read-after positions (whose
	// reads must see their own writes): shared for a moment (homecache.go).
	api.Handle("GET /api/v1/products/{id}", s.apiHandler(func(w http.ResponseWriter, r *http.Request) error {
		if _, err := r.Cookie(s.cookieName(ReadAfterCookie)); err == nil {
			return s.apiProduct(w, r)
		}
		return s.sharedAnswer(w, r, s.apiProduct)
	}))
	api.Handle("GET /api/v1/search", s.apiHandler(s.apiSearch))
	api.Handle("POST /api/v1/accounts", s.apiHandler(s.apiRegister))
	api.Handle("POST /api/v1/sessions", s.apiHandler(s.apiLogin))
	api.Handle("DELETE /api/v1/sessions", s.apiHandler(s.apiLogout))
	api.Handle("GET /api/v1/me", s.apiHandler(s.apiMe))
	api.Handle("PATCH /api/v1/me", s.apiHandler(s.apiUpdateMe))
	api.Handle("GET /api/v1/cart", s.apiHandler(s.apiCart))
	api.Handle("POST /api/v1/cart/items", s.apiHandler(s.apiAddItem))
	api.Handle("PUT /api/v1/cart/items/{product_id}", s.apiHandler(s.apiSetQuantity))
	api.Handle("DELETE /api/v1/cart/items/{product_id}", s.apiHandler(s.apiRemoveItem))
	api.Handle("POST /api/v1/checkout", s.apiHandler(s.apiCheckout))
	api.Handle("GET /api/v1/checkouts/{key}", s.apiHandler(s.apiGetCheckout))
	api.Handle("GET /api/v1/orders", s.apiHandler(s.apiOrders))
	api.Handle("GET /api/v1/orders/{id}", s.apiHandler(s.apiOrder))
	s.partnerRoutes(api) // partnerapi.go

	html := http.NewServeMux()
	html.Handle("GET /{$}", s.pageHandler(s.homePage))
	html.Handle("GET /category/{id}", s.pageHandler(s.categoryPage))
	html.Handle("GET /products/{id}", s.pageHandler(s.productPage))
	html.Handle("GET /search", s.pageHandler(s.searchPage))
	html.Handle("GET /cart", s.pageHandler(s.cartPage))
	html.Handle("POST /cart/add", s.pageHandler(s.cartAdd))
	html.Handle("POST /cart/items/{product_id}", s.pageHandler(s.cartUpdate))
	html.Handle("POST /cart/items/{product_id}/remove", s.pageHandler(s.cartRemove))
	html.Handle("GET /login", s.pageHandler(s.loginPage))
	html.Handle("POST /login", s.pageHandler(s.loginSubmit))
	html.Handle("GET /register", s.pageHandler(s.registerPage))
	html.Handle("POST /register", s.pageHandler(s.registerSubmit))
	html.Handle("POST /logout", s.pageHandler(s.logoutSubmit))
	html.Handle("GET /checkout", s.pageHandler(s.checkoutPage))
	html.Handle("POST /checkout", s.pageHandler(s.checkoutSubmit))
	html.Handle("GET /checkout/status", s.pageHandler(s.checkoutStatusPage))
	html.Handle("GET /account", s.pageHandler(s.accountPage))
	html.Handle("POST /account", s.pageHandler(s.accountSubmit))
	html.Handle("GET /orders", s.pageHandler(s.ordersPage))
	html.Handle("GET /orders/{id}", s.pageHandler(s.orderPage))
	html.Handle("GET /dev/mail", s.pageHandler(s.mailListPage))
	html.Handle("GET /dev/mail/{id}", s.pageHandler(s.mailMessage))
	s.html = html

	root := http.NewServeMux()
	root.HandleFunc("/static/{name}", s.serveStatic)
	root.HandleFunc("/media/{key...}", s.serveMedia)
	root.Handle("/api/", s.withReadAfter(withVisitor(s.dispatch(api, s.apiNoRoute))))
	root.Handle("/", s.withReadAfter(withVisitor(s.dispatch(html, s.htmlNoRoute))))
	// Text answers (pages, CSS, JSON, SVG) are compressed as the client
	// negotiates, with Vary: Accept-Encoding; behind the edge, the edge
	// passes an encoded answer through and its CDN keeps one copy per coding.
	s.handler = withSecurityHeaders(compress.Handler(root))
}

// dispatch serves r with mux when one of its patterns matches; otherwise it
// calls noRoute with the methods the path does allow (empty for 404), so
// that unknown paths and wrong methods get the storefront's own error
// format instead of the mux's plain text.
func (s *Server) dispatch(mux *http.ServeMux, noRoute func(w http.ResponseWriter, r *http.Request, allow []string)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := mux.Handler(r); pattern != "" {
			mux.ServeHTTP(w, r)
			httpx.NoteRoute(r) // the route of the metrics and spans
			return
		}
		var allow []string
		for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch} {
			if m == r.Method {
				continue
			}
			probe := r.Clone(r.Context())
			probe.Method = m
			if _, pattern := mux.Handler(probe); pattern != "" {
				allow = append(allow, m)
			}
		}
		if len(allow) > 0 && contains(allow, http.MethodGet) {
			allow = append(allow, http.MethodHead)
		}
		noRoute(w, r, allow)
	})
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
