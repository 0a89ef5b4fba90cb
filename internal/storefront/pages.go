package storefront

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/globomantics/globomantics/internal/account"
	"github.com/globomantics/globomantics/internal/cart"
	"github.com/globomantics/globomantics/internal/catalog"
	"github.com/globomantics/globomantics/internal/checkout"
	"github.com/globomantics/globomantics/internal/order"
	"github.com/globomantics/globomantics/internal/payment"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/httpx"
	"github.com/globomantics/globomantics/internal/platform/ids"
	"github.com/globomantics/globomantics/internal/platform/page"
	"github.com/globomantics/globomantics/internal/shipping"
)

// Page sizes of the HTML pages.
const (
	homeProducts     = 12
	categoryPageSize = 12
	searchPageSize   = 12
	ordersPageSize   = 10
)

// parseForm reads a form post (bounded by pageHandler's body limit).
func parseForm(r *http.Request) error {
	if err := r.ParseForm(); err != nil {
		var maxErr *http.MaxBytesError
		if errors.As(err, &maxErr) {
			return errs.E("storefront.form", errs.TooLarge, errs.Msg("the form is too large"), err)
		}
		return errs.E("storefront.form", errs.BadRequest, errs.Msg("the form could not be read"), err)
	}
	return nil
}

// pageParam parses the opaque ?page= token of a paginated HTML page; a query
// string that does not parse or a token that is not one of ours is
// errs.BadRequest.
func pageParam(r *http.Request, size int) (page.Request, error) {
	q, err := httpx.Query(r)
	if err != nil {
		return page.Request{}, err
	}
	p, err := page.Parse("", q.Get("page"))
	if err != nil {
		return page.Request{}, errs.E("storefront.page", errs.BadRequest, errs.Msg("that page link is not valid"), err)
	}
	p.Size = size
	return p, nil
}

// badPageLink words a list's refusal of a page token (one of another list,
// or of an older format) for a page whose token is the ?page= link.
func badPageLink(err error) error {
	if errs.Is(errs.BadRequest, err) {
		return errs.E("storefront.page", errs.BadRequest, errs.Msg("that page link is not valid"), err)
	}
	return err
}

type homeData struct {
	Products []catalog.Product
	Popular  []catalog.Product // "Popular now" (analytics.go); none when analytics is not there
}

// homePage is shared by anonymous visitors (see sharedPage).
func (s *Server) homePage(w http.ResponseWriter, r *http.Request) error {
	return s.sharedPage(w, r, s.renderHome)
}

func (s *Server) renderHome(w http.ResponseWriter, r *http.Request) error {
	products, err := s.homeProducts(r.Context())
	if err != nil {
		return err
	}
	s.publicPage(w, r)
	return s.render(w, r, http.StatusOK, "home", "", homeData{Products: products, Popular: s.popularNow(r.Context())})
}

type categoryData struct {
	Category catalog.Category
	Products []catalog.Product
	Next     string // token of the next page, if any
	Paged    bool   // not the first page
}

// categoryPage is shared by anonymous visitors (see sharedPage).
func (s *Server) categoryPage(w http.ResponseWriter, r *http.Request) error {
	return s.sharedPage(w, r, s.renderCategory)
}

func (s *Server) renderCategory(w http.ResponseWriter, r *http.Request) error {
	ctx := r.Context()
	cat, err := s.category(ctx, r.PathValue("id"))
	if err != nil {
		return err
	}
	p, err := pageParam(r, categoryPageSize)
	if err != nil {
		return err
	}
	pp, err := s.d.Catalog.ListProducts(ctx, catalog.ProductFilter{Category: cat.ID, Page: p})
	if err != nil {
		return badPageLink(err)
	}
	s.publicPage(w, r)
	return s.render(w, r, http.StatusOK, "category", cat.Name, categoryData{
		Category: cat, Products: pp.Items, Next: pp.NextPageToken, Paged: p.Token != "",
	})
}

type productData struct {
	Product  catalog.Product
	Category catalog.Category // ID only when its name is unknown
	Error    string
}

// productView gathers a product page's data; the category name is a
// nicety, left out when it cannot be had.
func (s *Server) productView(r *http.Request, p catalog.Product, msg string) productData {
	cat, err := s.category(r.Context(), p.Category)
	if err != nil {
		cat = catalog.Category{ID: p.Category}
	}
	return productData{Product: p, Category: cat, Error: msg}
}

// productPage is shared by anonymous visitors (see sharedPage).
func (s *Server) productPage(w http.ResponseWriter, r *http.Request) error {
	err := s.sharedPage(w, r, s.renderProduct)
	if err == nil { // every view counts, also those served from the page cache
		s.pageViewed(r, r.PathValue("id"))
	}
	return err
}

func (s *Server) renderProduct(w http.ResponseWriter, r *http.Request) error {
	p, err := s.d.Catalog.GetProduct(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	s.publicPage(w, r)
	return s.render(w, r, http.StatusOK, "product", p.Name, s.productView(r, p, ""))
}

type cartData struct {
	Cart  cart.Cart
	Lines []cartLine
	// Short says that some line holds more than is in stock now: checkout
	// is not offered until the customer changes it.
	Short bool
	Error string
}

// cartLine is one line of the cart page.
type cartLine struct {
	cart.Item
	Image   string // a small picture of the product, or "" (none, or the catalog did not answer)
	Max     int    // the most the quantity field takes: the stock, when known
	Warning string // why the line will not check out as it is (cart.NoticeShort), or ""
}

// cartView is the cart page's data for c. One GetProducts call gives each
// line its picture and checks the lines against the current stock
// (cart.CheckStock): stock is only reserved at checkout, so it may have
// fallen since a line was added, and the customer must learn that here, not
// at checkout. If the catalog does not answer, the lines show without
// pictures or stock warnings: the checkout still checks the stock.
func (s *Server) cartView(ctx context.Context, c cart.Cart, errMsg string) cartData {
	c, products := s.checkStock(ctx, c)
	byID := make(map[string]catalog.Product, len(products))
	for _, p := range products {
		byID[p.ID] = p
	}
	warnings := make(map[string]string, len(c.Notices))
	for _, n := range c.Notices {
		if n.Code == cart.NoticeShort {
			warnings[n.ProductID] = n.Message
		}
	}
	d := cartData{Cart: c, Lines: make([]cartLine, 0, len(c.Items)), Short: c.Short(), Error: errMsg}
	for _, it := range c.Items {
		l := cartLine{Item: it, Max: cart.MaxQuantity, Warning: warnings[it.ProductID]}
		if p, ok := byID[it.ProductID]; ok {
			l.Image = productImage(p, "small")
			l.Max = min(cart.MaxQuantity, max(p.Stock, 0))
		}
		d.Lines = append(d.Lines, l)
	}
	return d
}

// checkStock returns c with the notices of cart.CheckStock, and the
// products of its lines; c as it is, and no products, when the catalog does
// not answer (logged).
func (s *Server) checkStock(ctx context.Context, c cart.Cart) (cart.Cart, []catalog.Product) {
	if len(c.Items) == 0 {
		return c, nil
	}
	ids := make([]string, 0, len(c.Items))
	for _, it := range c.Items {
		ids = append(ids, it.ProductID)
	}
	products, err := s.d.Catalog.GetProducts(ctx, ids)
	if err != nil {
		s.log.Warn("cart: products unavailable, stock not checked", "err", err)
		return c, nil
	}
	return cart.CheckStock(c, products), products
}

// cappedNotice is the message of the NoticeCapped an answer of the cart
// service carries, or "".
func cappedNotice(c cart.Cart) string {
	for _, n := range c.Notices {
		if n.Code == cart.NoticeCapped {
			return n.Message
		}
	}
	return ""
}

func (s *Server) loadCart(r *http.Request) (cart.Cart, error) {
	owner, err := s.cartOwner(r)
	if err != nil || owner == "" {
		return emptyCart(), err
	}
	c, err := s.d.Carts.GetCart(r.Context(), owner)
	return normalCart(c), err
}

func (s *Server) cartPage(w http.ResponseWriter, r *http.Request) error {
	c, err := s.loadCart(r)
	if err != nil {
		return err
	}
	return s.render(w, r, http.StatusOK, "cart", "Your cart", s.cartView(r.Context(), c, ""))
}

// formQuantity parses a quantity field; an empty field means def.
func formQuantity(v string, def, min int) (int, error) {
	const op = "storefront.quantity"
	v = strings.TrimSpace(v)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, errs.E(op, errs.Invalid, errs.Msg("quantity must be a whole number from %d to %d", min, cart.MaxQuantity))
	}
	return n, checkQuantity(op, n, min)
}

func (s *Server) cartAdd(w http.ResponseWriter, r *http.Request) error {
	if err := parseForm(r); err != nil {
		return err
	}
	ctx := r.Context()
	productID := r.PostForm.Get("product_id")
	if productID == "" {
		return errs.E("storefront.cartAdd", errs.BadRequest, errs.Msg("no product was chosen"))
	}
	qty, err := formQuantity(r.PostForm.Get("quantity"), 1, 1)
	if err == nil {
		var owner, newTok string
		if owner, newTok, err = s.cartOwnerForWrite(r); err != nil {
			return err
		}
		var c cart.Cart
		if c, err = s.d.Carts.AddItem(ctx, owner, productID, qty); err == nil {
			s.keepCart(w, newTok, len(c.Items))
			if msg := cappedNotice(c); msg != "" {
				s.setFlash(w, FlashWarning, msg)
			} else {
				s.setFlash(w, FlashInfo, addedMessage(c, productID, qty))
			}
			http.Redirect(w, r, "/cart", http.StatusSeeOther)
			return nil
		}
	}
	// A bad quantity, or a product sold out (errs.Conflict): show the
	// product again with what went wrong.
	if !errs.Is(errs.Invalid, err) && !errs.Is(errs.Conflict, err) {
		return err
	}
	p, perr := s.d.Catalog.GetProduct(ctx, productID)
	if perr != nil {
		return perr
	}
	return s.render(w, r, errs.KindOf(err).Status(), "product", p.Name, s.productView(r, p, errs.Detail(err)))
}

func (s *Server) cartUpdate(w http.ResponseWriter, r *http.Request) error {
	if err := parseForm(r); err != nil {
		return err
	}
	qty, err := formQuantity(r.PostForm.Get("quantity"), -1, 0)
	if err == nil && qty < 0 {
		err = errs.E("storefront.cartUpdate", errs.Invalid, errs.Msg("enter a quantity"))
	}
	if err == nil {
		var owner, newTok string
		if owner, newTok, err = s.cartOwnerForWrite(r); err != nil {
			return err
		}
		var c cart.Cart
		if c, err = s.d.Carts.SetQuantity(r.Context(), owner, r.PathValue("product_id"), qty); err == nil {
			s.keepCart(w, newTok, len(c.Items))
			if msg := cappedNotice(c); msg != "" {
				s.setFlash(w, FlashWarning, msg)
			}
			http.Redirect(w, r, "/cart", http.StatusSeeOther)
			return nil
		}
	}
	// A bad quantity, or more of a product that is sold out (errs.Conflict).
	if !errs.Is(errs.Invalid, err) && !errs.Is(errs.Conflict, err) {
		return err
	}
	c, cerr := s.loadCart(r)
	if cerr != nil {
		return cerr
	}
	return s.render(w, r, errs.KindOf(err).Status(), "cart", "Your cart", s.cartView(r.Context(), c, errs.Detail(err)))
}

func (s *Server) cartRemove(w http.ResponseWriter, r *http.Request) error {
	owner, err := s.cartOwner(r)
	if err != nil {
		return err
	}
	if owner != "" {
		if _, err := s.d.Carts.RemoveItem(r.Context(), owner, r.PathValue("product_id")); err != nil {
			return err
		}
	}
	http.Redirect(w, r, "/cart", http.StatusSeeOther)
	return nil
}

type authData struct {
	Name  string
	Email string
	Next  string
	Error string // not about one field (too many attempts)
	// Errors says what is wrong next to the field it is about.
	Errors formErrors
	// Exists says the e-mail of a registration has an account already:
	// the page offers to log in with it.
	Exists bool
	// Guest is the guest checkout form, offered on the way to checkout.
	Guest *guestData
}

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) error {
	v, err := httpx.Query(r)
	if err != nil {
		return err
	}
	next := localPath(v.Get("next"))
	if a, err := s.account(r); err == nil && a != nil {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return nil
	}
	d := authData{Next: next}
	if guestOffered(next) {
		d.Guest = &guestData{}
	}
	return s.render(w, r, http.StatusOK, "login", "Log in", d)
}

func (s *Server) loginSubmit(w http.ResponseWriter, r *http.Request) error {
	if err := parseForm(r); err != nil {
		return err
	}
	f := r.PostForm
	d := authData{Email: strings.TrimSpace(f.Get("email")), Next: localPath(f.Get("next"))}
	if guestOffered(d.Next) {
		d.Guest = &guestData{}
	}
	_, err := s.login(w, r, d.Email, f.Get("password"))
	switch {
	case err == nil:
		s.setFlash(w, FlashInfo, "You're logged in.")
		http.Redirect(w, r, d.Next, http.StatusSeeOther)
		return nil
	case errs.Is(errs.Unauthorized, err):
		d.Errors = formErrors{"password": "That email and password don't match an account."}
		return s.render(w, r, http.StatusUnauthorized, "login", "Log in", d)
	case asTooMany(err) != nil:
		tm := asTooMany(err)
		tm.setHeaders(w)
		d.Error = tm.message()
		return s.render(w, r, http.StatusTooManyRequests, "login", "Log in", d)
	}
	return err
}

func (s *Server) registerPage(w http.ResponseWriter, r *http.Request) error {
	v, err := httpx.Query(r)
	if err != nil {
		return err
	}
	return s.render(w, r, http.StatusOK, "register", "Create an account", authData{Next: localPath(v.Get("next"))})
}

func (s *Server) registerSubmit(w http.ResponseWriter, r *http.Request) error {
	if err := parseForm(r); err != nil {
		return err
	}
	f := r.PostForm
	d := authData{
		Name:  strings.TrimSpace(f.Get("name")),
		Email: strings.TrimSpace(f.Get("email")),
		Next:  localPath(f.Get("next")),
	}
	password := f.Get("password")
	if tm := asTooMany(s.limitRegister(r)); tm != nil {
		tm.setHeaders(w)
		d.Error = tm.message()
		return s.render(w, r, http.StatusTooManyRequests, "register", "Create an account", d)
	}
	_, err := s.d.Accounts.Register(r.Context(), account.Registration{Email: d.Email, Password: password, Name: d.Name})
	switch {
	case errs.Is(errs.Conflict, err):
		d.Errors, d.Exists = formErrors{"email": "An account with this email already exists."}, true
		return s.render(w, r, http.StatusConflict, "register", "Create an account", d)
	case errs.Is(errs.Invalid, err):
		d.Errors = formErrors{registrationField(errs.Detail(err)): sentence(errs.Detail(err))}
		return s.render(w, r, http.StatusUnprocessableEntity, "register", "Create an account", d)
	case err != nil:
		return err
	}
	if _, err := s.login(w, r, d.Email, password); err != nil {
		s.log.Warn("login right after registration failed", "err", err)
		http.Redirect(w, r, "/login?next="+url.QueryEscape(d.Next), http.StatusSeeOther)
		return nil
	}
	http.Redirect(w, r, d.Next, http.StatusSeeOther)
	return nil
}

func (s *Server) logoutSubmit(w http.ResponseWriter, r *http.Request) error {
	if err := s.logout(w, r); err != nil {
		return err
	}
	s.setFlash(w, FlashInfo, "You're logged out. See you soon!")
	http.Redirect(w, r, "/", http.StatusSeeOther)
	return nil
}

// nonceField is the checkout form's hidden field holding its nonce (named
// for what it used to hold, so that forms and clients keep working).
const nonceField = "idempotency_key"

func (s *Server) checkoutPage(w http.ResponseWriter, r *http.Request) error {
	a, err := s.requireAccount(r)
	if err != nil {
		return err
	}
	c, err := s.d.Carts.GetCart(r.Context(), userOwner(a.ID))
	if err != nil {
		return err
	}
	// The address of a checkout that did not go through, when the visitor
	// comes back from it (?retry=<its key>), else that of the last order,
	// so that its shipping is quoted at once.
	var addr shipping.Address
	if key := r.URL.Query().Get("retry"); key != "" {
		if res, err := s.ownCheckout(r, a, key); err == nil && res.Order.ShippingAddress.Country != "" {
			addr = res.Order.ShippingAddress
		}
	}
	if addr.Country == "" {
		addr = s.lastAddress(r.Context(), a)
	}
	return s.render(w, r, http.StatusOK, "checkout", "Checkout", s.checkoutView(r.Context(), c, addr, ids.Token(), nil, ""))
}

// validNonce reports whether n can be a form nonce: 1 to 64 URL-safe
// base64 characters (ids.Token makes 43).
func validNonce(n string) bool {
	if n == "" || len(n) > 64 {
		return false
	}
	for _, c := range n {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// formKey is the idempotency key a checkout form post is placed under: the
// form's nonce and a hash of the request submitted. Submitting the same
// form twice (a double click, a reload) is the same key and places at most
// one order; a changed form (another card after a failure) is a new key,
// hence a new attempt rather than a reuse of the key with a different
// request. The hash is salted with the nonce, so the key tells nothing
// about the card or address.
func formKey(nonce string, req checkout.Request) string {
	sum := sha256.Sum256([]byte(nonce + "\x00" + checkout.RequestHash(req)))
	return "web." + nonce + "." + hex.EncodeToString(sum[:16])
}

// checkoutFormRequest reads the checkout form; ok is false when the expiry
// is not numeric.
func checkoutFormRequest(f url.Values) (req checkout.Request, ok bool) {
	req = checkout.Request{
		ShippingAddress: addressForm(f.Get),
		Payment: payment.Card{
			Number: strings.Map(func(r rune) rune {
				if r == ' ' || r == '-' {
					return -1
				}
				return r
			}, f.Get("card_number")),
			CVC: strings.TrimSpace(f.Get("cvc")),
		},
	}
	month, merr := strconv.Atoi(strings.TrimSpace(f.Get("exp_month")))
	year, yerr := strconv.Atoi(strings.TrimSpace(f.Get("exp_year")))
	req.Payment.ExpMonth, req.Payment.ExpYear = month, year
	return req, merr == nil && yerr == nil
}

// Messages of the checkout pages.
const (
	msgFormExpired = "The form had expired. Please check your details and place the order again."
	msgCartBusy    = "Your cart is already being checked out, perhaps in another window. Please wait a moment and look at your orders before trying again."
)

// checkoutFailure words a checkout failure for the customer: the page's
// status, the message, and whether the form keeps its nonce (true only when
// the outcome was "try again": the same form then runs the checkout again
// under the same key). ok is false for errors the checkout form cannot
// explain (shown as an error page). Messages about idempotency keys never
// reach the customer.
func checkoutFailure(err error) (status int, msg string, keep, ok bool) {
	k := errs.KindOf(err)
	detail := errs.Detail(err)
	aboutKey := strings.Contains(strings.ToLower(detail), "idempotency")
	status = k.Status()
	switch {
	case k == errs.Declined:
		msg = "Your card was declined and nothing was charged. Please try another card."
	case k == errs.Conflict && isCartBusy(detail):
		msg = msgCartBusy
	case k == errs.Conflict:
		msg = "Some items are no longer in stock in the quantity you asked for (" + detail + "). Please update your cart."
	case (k == errs.Invalid || k == errs.BadRequest) && aboutKey:
		msg = msgFormExpired
	case k == errs.Invalid || k == errs.BadRequest:
		msg = detail
	case k == errs.Unavailable:
		return status, "We couldn't complete your order just now and nothing was charged. Please try again in a moment.", true, true
	default:
		return 0, "", false, false
	}
	return status, msg, false, true
}

// isCartBusy reports whether a Conflict's detail says that the cart is
// being checked out under another key (the cart service's "this cart is
// already being checked out") rather than that stock is short.
func isCartBusy(detail string) bool {
	d := strings.ToLower(detail)
	return strings.Contains(d, "being checked out") || strings.Contains(d, "another key")
}

// checkoutStatusURL is the progress page of the checkout under key.
func checkoutStatusURL(key string) string { return "/checkout/status?key=" + url.QueryEscape(key) }

// checkoutSubmit places the order under formKey(nonce, request). A
// confirmed checkout goes to the order's page, a pending one to its progress
// page. After a definite failure (declined, out of stock, invalid input) the
// form comes back with a fresh nonce, so that submitting it again is a new
// attempt; after a "try again" failure (a service unavailable, everything
// rolled back) it keeps its nonce, so that the same form runs the same
// checkout again, while a corrected form is a new key anyway.
func (s *Server) checkoutSubmit(w http.ResponseWriter, r *http.Request) error {
	const op = "storefront.checkoutSubmit"
	a, err := s.requireAccount(r)
	if err != nil {
		return err
	}
	if err := parseForm(r); err != nil {
		return err
	}
	f := r.PostForm
	nonce := f.Get(nonceField)
	req, expiryOK := checkoutFormRequest(f)
	addr, fields := shipping.ValidateAddress(req.ShippingAddress)
	// again is the form again, as typed but for the card, quoted for the
	// address typed; a nonce that is not valid (or was cleared) is new.
	again := func(status int, fields shipping.FieldErrors, msg string) error {
		if !validNonce(nonce) {
			nonce = ids.Token()
		}
		c, err := s.d.Carts.GetCart(r.Context(), userOwner(a.ID))
		if err != nil {
			return err
		}
		return s.render(w, r, status, "checkout", "Checkout",
			s.checkoutView(r.Context(), c, req.ShippingAddress, nonce, fields, msg))
	}

	var status int
	var msg string
	if f.Get("action") == "quote" {
		// "Update shipping": the page again, nothing placed; of the
		// address, only a bad country is pointed out yet.
		shown := shipping.FieldErrors{}
		if m, bad := fields[shipping.FieldCountry]; bad {
			shown[shipping.FieldCountry] = m
		}
		return again(http.StatusOK, shown, "")
	}
	tm := asTooMany(s.limit(r.Context(), s.limits.CheckoutPerAccount, checkoutAccountKey(a.ID), "checkout attempts"))
	switch {
	case tm != nil:
		// The form comes back as it was, nonce and all: submitting it
		// again later is the same attempt.
		tm.setHeaders(w)
		status, msg = http.StatusTooManyRequests, tm.message()
		if !validNonce(nonce) {
			nonce = ""
		}
	case !validNonce(nonce):
		status, msg, nonce = http.StatusBadRequest, msgFormExpired, ""
	case len(fields) > 0:
		status, msg = http.StatusUnprocessableEntity, "Please check the shipping address: what is wrong is shown next to each field."
	case !expiryOK:
		status, msg = http.StatusUnprocessableEntity, "Enter the card's expiry month and year as numbers."
	default:
		req.ShippingAddress = addr
		key := formKey(nonce, req)
		res, err := s.d.Checkout.PlaceOrder(r.Context(), checkout.Customer{UserID: a.ID, Email: a.Email}, key, req)
		if err == nil {
			if res.Key == "" {
				res.Key = key
			}
			switch checkoutState(res) {
			case checkout.StateConfirmed:
				http.Redirect(w, r, orderPath(res.Order), http.StatusSeeOther)
				return nil
			case checkout.StatePending:
				http.Redirect(w, r, checkoutStatusURL(res.Key), http.StatusSeeOther)
				return nil
			}
			err = failureError(op, res.Error)
		}
		var keep, ok bool
		if status, msg, keep, ok = checkoutFailure(err); !ok {
			return err
		}
		if !keep {
			nonce = ""
		}
	}
	return again(status, fields, msg)
}

type checkoutStatusData struct {
	Key     string
	Pending bool
	Order   Order
	Error   string
}

// checkoutStatusPage shows how the logged-in customer's checkout under
// ?key= stands: while it runs, a page that refreshes itself every 2 seconds
// with the order summary; once confirmed, a redirect to the order's page;
// once cancelled, why, with a way back to the checkout form (the cart is
// as it was). Another customer's key is a 404 like an unknown one.
func (s *Server) checkoutStatusPage(w http.ResponseWriter, r *http.Request) error {
	a, err := s.requireAccount(r)
	if err != nil {
		return err
	}
	q, err := httpx.Query(r)
	if err != nil {
		return err
	}
	key := q.Get("key")
	res, err := s.ownCheckout(r, a, key)
	if err != nil {
		return err
	}
	if checkoutState(res) == checkout.StatePending {
		err = s.settle(r, func() (bool, error) {
			now, err := s.ownCheckout(r, a, key)
			if err != nil {
				return false, err
			}
			res = now
			return checkoutState(res) != checkout.StatePending, nil
		})
		if err != nil {
			return err
		}
	}
	d := checkoutStatusData{Key: res.Key, Order: PublicOrder(res.Order)}
	switch checkoutState(res) {
	case checkout.StateConfirmed:
		http.Redirect(w, r, orderPath(res.Order), http.StatusSeeOther)
		return nil
	case checkout.StatePending:
		d.Pending = true
		return s.render(w, r, http.StatusOK, "checkout-status", "Placing your order", d)
	}
	_, msg, _, ok := checkoutFailure(failureError("storefront.checkoutStatus", res.Error))
	if !ok {
		msg = "We couldn't complete your order and nothing was charged. Please try again."
	}
	d.Error = msg
	return s.render(w, r, http.StatusOK, "checkout-status", "Your order was not placed", d)
}

type orderData struct {
	Order   Order
	Lines   []orderLine // the order's items with their pictures
	Pending bool
}

func (s *Server) orderPage(w http.ResponseWriter, r *http.Request) error {
	a, err := s.requireAccount(r)
	if err != nil {
		return err
	}
	o, err := s.ownOrder(r, a, r.PathValue("id"))
	if err != nil {
		return err
	}
	if o.Status == order.StatusPending {
		err = s.settle(r, func() (bool, error) {
			now, err := s.ownOrder(r, a, r.PathValue("id"))
			if err != nil {
				return false, err
			}
			o = now
			return o.Status != order.StatusPending, nil
		})
		if err != nil {
			return err
		}
	}
	po := PublicOrder(o)
	return s.render(w, r, http.StatusOK, "order", "Order "+po.Ref(), orderData{
		Order: po, Lines: s.withImages(r.Context(), o.Items), Pending: o.Status == order.StatusPending,
	})
}

type ordersData struct {
	Orders []Order
	Next   string
	Paged  bool
}

func (s *Server) ordersPage(w http.ResponseWriter, r *http.Request) error {
	a, err := s.requireAccount(r)
	if err != nil {
		return err
	}
	p, err := pageParam(r, ordersPageSize)
	if err != nil {
		return err
	}
	op, err := s.d.Orders.ListOrders(r.Context(), a.ID, p)
	if err != nil {
		return badPageLink(err)
	}
	d := ordersData{Next: op.NextPageToken, Paged: p.Token != ""}
	for _, o := range op.Items {
		d.Orders = append(d.Orders, PublicOrder(o))
	}
	return s.render(w, r, http.StatusOK, "orders", "Your orders", d)
}

// mailData is the development mailbox page: the list of messages, or one
// message decoded for reading.
type mailData struct {
	Messages []MailSummary
	Message  *mailView
}

func (s *Server) mailListPage(w http.ResponseWriter, r *http.Request) error {
	if s.d.Mail == nil {
		return errs.E("storefront.mail", errs.NotFound)
	}
	msgs, err := s.d.Mail.List(r.Context())
	if err != nil {
		return err
	}
	return s.render(w, r, http.StatusOK, "mail", "Development mailbox", mailData{Messages: msgs})
}

// mailMessage shows one message decoded for reading (headers and text
// parts, escaped: an HTML body shows as its source), or, with ?raw=1, its
// raw source as plain text, never as HTML.
func (s *Server) mailMessage(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if s.d.Mail == nil || id == "" || strings.ContainsAny(id, "/\\") || strings.Contains(id, "..") {
		return errs.E("storefront.mail", errs.NotFound)
	}
	b, err := s.d.Mail.Read(r.Context(), id)
	if err != nil {
		return err
	}
	if r.URL.Query().Get("raw") != "1" {
		v := decodeMail(id, b)
		title := v.Subject
		if title == "" {
			title = "Message " + id
		}
		return s.render(w, r, http.StatusOK, "mail", title, mailData{Message: &v})
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
	return nil
}

// addedMessage is the feedback after adding qty of productID to the cart c:
// it names the product (never its id) and how many of it the cart now holds.
func addedMessage(c cart.Cart, productID string, qty int) string {
	for _, it := range c.Items {
		if it.ProductID != productID {
			continue
		}
		msg := "Added " + it.Name + " to your cart."
		if qty > 1 {
			msg = "Added " + strconv.Itoa(qty) + " × " + it.Name + " to your cart."
		}
		if it.Quantity > qty {
			msg += " You now have " + strconv.Itoa(it.Quantity) + "."
		}
		return msg
	}
	return "Added to your cart."
}

// settle calls done every settlePoll until it reports true, fails, the
// visitor leaves or Deps.SettleWait has passed (a long poll: the page then
// shows how things stand, with a "Check again" button). A failure after
// the first look is not the visitor's problem yet: settle stops and the
// page shows what was last seen.
func (s *Server) settle(r *http.Request, done func() (bool, error)) error {
	if s.d.SettleWait < 0 {
		return nil
	}
	const settlePoll = 150 * time.Millisecond
	deadline := time.NewTimer(s.d.SettleWait)
	defer deadline.Stop()
	tick := time.NewTicker(settlePoll)
	defer tick.Stop()
	for {
		select {
		case <-r.Context().Done():
			return r.Context().Err()
		case <-deadline.C:
			return nil
		case <-tick.C:
			ok, err := done()
			if err != nil {
				s.log.Warn("waiting for a checkout to settle", "err", err)
				return nil
			}
			if ok {
				return nil
			}
		}
	}
}
