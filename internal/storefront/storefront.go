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
	"sync"
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
	// Passwords (password.go).
	ChangePassword(ctx context.Context, accountID, keepToken, current, newPassword string) error
	RequestPasswordReset(ctx context.Context, email string) error
	CheckPasswordReset(ctx context.Context, token string) error
	ResetPassword(ctx context.Context, token, newPassword string) (account.Account, error)
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
	Search(ctx context.Context, q search.Query, p page.Request) (search.Result, error)
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
	QuoteOrder(ctx context.Context, r checkout.QuoteRequest) (checkout.Quote, error)
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
	// SettleWait is how long the checkout progress page and a pending
	// order's page wait, on the server, for the order to settle before
	// showing "still being placed" with a Check again button (instead of a
	// page that refreshes itself, which screen readers and keyboard users
	// cannot stop: WCAG 2.2.1). Zero means DefaultSettleWait; negative, no
	// wait.
	SettleWait time.Duration
}

// DefaultSettleWait is the default Deps.SettleWait: long enough for a
// checkout that is merely slow, short of the client's patience and of the
// server's write timeout.
const DefaultSettleWait = 5 * time.Second

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
	shared  *pageCache                   // anonymous catalog pages (homecache.go)
	apiDoc  func() (*apiDocument, error) // the OpenAPI document, built once (openapi.go)
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
	if d.SettleWait == 0 {
		d.SettleWait = DefaultSettleWait
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

// apiOps is the public API: the one table that both the mux (routes) and
// the OpenAPI document (openapi.go) are built from, so that no route is
// served undocumented. Add an operation with one op(...) line; its schemas
// are reflected from the Go types given to in and out.
func (s *Server) apiOps() []*apiOp {
	const (
		ok, created, accepted, noContent = http.StatusOK, http.StatusCreated, http.StatusAccepted, http.StatusNoContent
		unauthorized, payment, notFound  = http.StatusUnauthorized, http.StatusPaymentRequired, http.StatusNotFound
		conflict, invalid, tooMany       = http.StatusConflict, http.StatusUnprocessableEntity, http.StatusTooManyRequests
	)
	pageSize := func(o *apiOp) *apiOp {
		return o.query("page_size", "integer", "How many items a page holds (default 20).").
			query("page_token", "string", "The next_page_token of the previous page.")
	}
	ops := []*apiOp{
		op("GET /api/v1/categories", "listCategories", "List the categories", s.apiCategories).out(ok, CategoryList{}, "The categories.").cached(),
		pageSize(op("GET /api/v1/products", "listProducts", "List products", s.apiProducts).query("category", "string", "Only products of this category id.")).out(ok, List[catalog.Product]{}, "A page of products.").cached(),
		// The same for every visitor without read-after positions (whose
		// reads must see their own writes): shared for a moment (homecache.go).
		op("GET /api/v1/products/{id}", "getProduct", "Get a product", func(w http.ResponseWriter, r *http.Request) error {
			if _, err := r.Cookie(s.cookieName(ReadAfterCookie)); err == nil {
				return s.apiProduct(w, r)
			}
			return s.sharedAnswer(w, r, s.apiProduct)
		}).out(ok, catalog.Product{}, "The product.").fails(notFound).cached(),
		pageSize(op("GET /api/v1/search", "searchProducts", "Search products", s.apiSearch).query("q", "string", "The words to look for (required).").
			query("sort", "string", "relevance (default), price_asc, price_desc or newest.").query("category", "string", "Only products of this category id.").
			query("min_price", "integer", "Only products costing at least this many cents.").query("max_price", "integer", "Only products costing less than this many cents.")).
			out(ok, SearchResults{}, "A page of matching products with the result count, facets and, when nothing matched, a suggestion.").cached(),
		op("POST /api/v1/accounts", "register", "Register an account", s.apiRegister).in(account.Registration{}).out(created, account.Account{}, "The new account.").fails(conflict, invalid, tooMany),
		op("POST /api/v1/sessions", "login", "Log in (sets the session cookie)", s.apiLogin).in(credentials{}).out(ok, account.Account{}, "The account logged in to.").fails(unauthorized, invalid, tooMany),
		op("DELETE /api/v1/sessions", "logout", "Log out", s.apiLogout).out(noContent, nil, "Logged out; the session is ended."),
		op("GET /api/v1/me", "getMe", "The logged-in customer's account", s.apiMe).out(ok, account.Account{}, "The account.").session(),
		op("PATCH /api/v1/me", "updateMe", "Change the customer's profile", s.apiUpdateMe).in(profileUpdate{}).out(ok, account.Account{}, "The updated account.").session().fails(invalid),
		// Passwords (password.go).
		op("PUT /api/v1/me/password", "changePassword", "Change the customer's password (ends their other sessions)", s.apiChangePassword).in(PasswordChange{}).out(noContent, nil, "Changed; this session stays, every other one is ended.").session().fails(http.StatusForbidden, invalid, tooMany),
		op("POST /api/v1/password-resets", "requestPasswordReset", "E-mail a password reset link", s.apiRequestReset).in(PasswordResetRequest{}).out(accepted, PasswordResetAccepted{}, "The same answer whether or not the address has an account.").fails(invalid, tooMany),
		op("POST /api/v1/password-resets/confirm", "confirmPasswordReset", "Set a new password with a reset link's token", s.apiConfirmReset).in(PasswordResetConfirm{}).out(noContent, nil, "Changed; every session of the account is ended (log in again).").fails(http.StatusForbidden, invalid, tooMany),
		op("GET /api/v1/cart", "getCart", "The visitor's cart", s.apiCart).out(ok, cart.Cart{}, "The cart (empty when there is none).").visitor(),
		op("POST /api/v1/cart/items", "addCartItem", "Add a product to the cart", s.apiAddItem).in(AddItemRequest{}).out(ok, cart.Cart{}, "The cart.").visitor().fails(notFound, conflict, invalid),
		op("PUT /api/v1/cart/items/{product_id}", "setCartQuantity", "Set a cart line's quantity (0 removes it)", s.apiSetQuantity).in(SetQuantityRequest{}).out(ok, cart.Cart{}, "The cart.").visitor().fails(notFound, conflict, invalid),
		op("DELETE /api/v1/cart/items/{product_id}", "removeCartItem", "Remove a product from the cart", s.apiRemoveItem).out(ok, cart.Cart{}, "The cart.").visitor().fails(notFound),
		op("POST /api/v1/checkout", "checkout", "Place the order for the cart", s.apiCheckout).
			about("Runs the checkout saga: the cart is locked, stock reserved, the card authorized, the shipment booked, the order placed and the payment captured, or everything done so far is undone. The answer waits a few seconds for the outcome; a checkout still running answers 202 with the checkout to poll. A declined card is 402 and charges nothing. Quote first (quoteCheckout) to show the customer the total.").
			header("Idempotency-Key", "Names this checkout: a retry with the same key and body returns the same outcome, never a second order.").
			in(checkout.Request{}).out(created, Order{}, "The order, placed (Location: the order).").
			out(accepted, CheckoutView{}, "Still running (Location: the checkout to poll, Retry-After).").
			session().fails(payment, notFound, conflict, invalid, tooMany),
		op("POST /api/v1/checkout/quote", "quoteCheckout", "What checking out the cart to an address would charge", s.apiCheckoutQuote).in(CheckoutQuoteRequest{}).out(ok, CheckoutQuote{}, "The lines, subtotal, shipping and total.").session().fails(conflict, invalid),
		op("GET /api/v1/checkouts/{key}", "getCheckout", "How a checkout stands", s.apiGetCheckout).out(ok, CheckoutView{}, "The checkout.").session().fails(notFound),
		pageSize(op("GET /api/v1/orders", "listOrders", "The customer's orders, newest first", s.apiOrders)).out(ok, List[Order]{}, "A page of orders.").session(),
		op("GET /api/v1/orders/{id}", "getOrder", "One of the customer's orders, by its id or its order number", s.apiOrder).out(ok, Order{}, "The order.").session().fails(notFound),
	}
	ops = append(ops, s.partnerOps()...) // partnerapi.go
	return append(ops, s.referenceOps()...)
}

func (s *Server) routes() {
	api := http.NewServeMux()
	ops := s.apiOps()
	s.apiDoc = sync.OnceValues(func() (*apiDocument, error) {
		css, err := s.static.url("style.css")
		if err != nil {
			return nil, err
		}
		return newAPIDocument(ops, css)
	})
	s.registerAPI(api, ops)

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
	html.Handle("POST /checkout/guest", s.pageHandler(s.guestCheckoutSubmit))
	html.Handle("GET /register", s.pageHandler(s.registerPage))
	html.Handle("POST /register", s.pageHandler(s.registerSubmit))
	html.Handle("POST /logout", s.pageHandler(s.logoutSubmit))
	html.Handle("GET /checkout", s.pageHandler(s.checkoutPage))
	html.Handle("POST /checkout", s.pageHandler(s.checkoutSubmit))
	html.Handle("GET /checkout/status", s.pageHandler(s.checkoutStatusPage))
	html.Handle("GET /account", s.pageHandler(s.accountPage))
	html.Handle("POST /account", s.pageHandler(s.accountSubmit))
	html.Handle("GET /account/password", s.pageHandler(s.passwordPage))
	html.Handle("POST /account/password", s.pageHandler(s.passwordSubmit))
	html.Handle("GET /forgot-password", s.pageHandler(s.forgotPage))
	html.Handle("POST /forgot-password", s.pageHandler(s.forgotSubmit))
	html.Handle("GET /reset-password", s.pageHandler(s.resetPage))
	html.Handle("POST /reset-password", s.pageHandler(s.resetSubmit))
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
