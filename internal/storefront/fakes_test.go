package storefront

// In-memory fakes of the services the storefront talks to. They follow the
// services' documented contracts closely enough for the storefront's unit
// tests; the real services are exercised by the end-to-end tests.

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/globomantics/globomantics/internal/account"
	"github.com/globomantics/globomantics/internal/cart"
	"github.com/globomantics/globomantics/internal/catalog"
	"github.com/globomantics/globomantics/internal/checkout"
	"github.com/globomantics/globomantics/internal/order"
	"github.com/globomantics/globomantics/internal/platform/clock"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/ids"
	"github.com/globomantics/globomantics/internal/platform/money"
	"github.com/globomantics/globomantics/internal/platform/page"
	"github.com/globomantics/globomantics/internal/search"
	"github.com/globomantics/globomantics/internal/shipping"
)

type fakeAccounts struct {
	clock clock.Clock

	mu        sync.Mutex
	byEmail   map[string]fakeUser
	sessions  map[string]account.Account
	authCalls int
	down      bool // every call fails with errs.Unavailable
	// Password resets (password_test.go): the links made, by token, and
	// the e-mails "sent", oldest first.
	resets map[string]*fakeReset
	mailed []fakeResetMail
}

type fakeReset struct {
	email   string
	expires time.Time
	used    bool
}

type fakeResetMail struct{ to, token string }

type fakeUser struct {
	acct     account.Account
	password string
}

func newFakeAccounts(c clock.Clock) *fakeAccounts {
	return &fakeAccounts{clock: c, byEmail: map[string]fakeUser{}, sessions: map[string]account.Account{}}
}

func (f *fakeAccounts) Register(_ context.Context, r account.Registration) (account.Account, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return account.Account{}, errs.E(errs.Unavailable, errs.Msg("account service is unavailable"))
	}
	email := strings.ToLower(strings.TrimSpace(r.Email))
	switch {
	case !strings.Contains(email, "@"):
		return account.Account{}, errs.E(errs.Invalid, errs.Msg("email is not valid"))
	case len(r.Password) < 8:
		return account.Account{}, errs.E(errs.Invalid, errs.Msg("password must be at least 8 characters"))
	case strings.TrimSpace(r.Name) == "":
		return account.Account{}, errs.E(errs.Invalid, errs.Msg("name is required"))
	}
	if _, ok := f.byEmail[email]; ok {
		return account.Account{}, errs.E(errs.Conflict, errs.Msg("email is already registered"))
	}
	a := account.Account{ID: fmt.Sprintf("acct_%02d", len(f.byEmail)+1), Email: email, Name: r.Name}
	f.byEmail[email] = fakeUser{acct: a, password: r.Password}
	return a, nil
}

func (f *fakeAccounts) Login(_ context.Context, email, password string) (account.Session, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return account.Session{}, errs.E(errs.Unavailable)
	}
	u, ok := f.byEmail[strings.ToLower(strings.TrimSpace(email))]
	if !ok || u.password != password {
		return account.Session{}, errs.E(errs.Unauthorized, errs.Msg("wrong email or password"))
	}
	tok := ids.Token()
	f.sessions[tok] = u.acct
	return account.Session{Token: tok, Account: u.acct, ExpiresAt: f.clock.Now().Add(account.SessionTTL)}, nil
}

func (f *fakeAccounts) Logout(_ context.Context, token string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return errs.E(errs.Unavailable)
	}
	delete(f.sessions, token)
	return nil
}

func (f *fakeAccounts) Authenticate(_ context.Context, token string) (account.Account, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.authCalls++
	if f.down {
		return account.Account{}, errs.E(errs.Unavailable)
	}
	a, ok := f.sessions[token]
	if !ok {
		return account.Account{}, errs.E(errs.Unauthorized, errs.Msg("session expired"))
	}
	return a, nil
}

// UpdateProfile follows account.Service: the name is trimmed, must not be
// empty and is at most account.MaxNameLen characters. Sessions see the new
// name at once, as they do in the real service.
func (f *fakeAccounts) UpdateProfile(_ context.Context, id, name string) (account.Account, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return account.Account{}, errs.E(errs.Unavailable)
	}
	name = strings.TrimSpace(name)
	switch {
	case name == "":
		return account.Account{}, errs.E(errs.Invalid, errs.Msg("name is required"))
	case utf8.RuneCountInString(name) > account.MaxNameLen:
		return account.Account{}, errs.E(errs.Invalid, errs.Msg("name must be at most %d characters", account.MaxNameLen))
	}
	for email, u := range f.byEmail {
		if u.acct.ID != id {
			continue
		}
		u.acct.Name = name
		f.byEmail[email] = u
		for tok, a := range f.sessions {
			if a.ID == id {
				f.sessions[tok] = u.acct
			}
		}
		return u.acct, nil
	}
	return account.Account{}, errs.E(errs.NotFound, errs.Msg("no such account"))
}

// ChangePassword follows account.Service: errs.Forbidden for a wrong
// current password, errs.Invalid for a new one under 8 characters or equal
// to it; every session of the account but keepToken's ends.
func (f *fakeAccounts) ChangePassword(_ context.Context, id, keepToken, current, next string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return errs.E(errs.Unavailable)
	}
	for email, u := range f.byEmail {
		if u.acct.ID != id {
			continue
		}
		switch {
		case len(next) < 8:
			return errs.E(errs.Invalid, errs.Msg("password must be 8 to 128 characters long"))
		case u.password != current:
			return errs.E(errs.Forbidden, errs.Msg("the current password is incorrect"))
		case next == current:
			return errs.E(errs.Invalid, errs.Msg("the new password must differ from the current one"))
		}
		u.password = next
		f.byEmail[email] = u
		for tok, a := range f.sessions {
			if a.ID == id && tok != keepToken {
				delete(f.sessions, tok)
			}
		}
		for _, r := range f.resets {
			if r.email == email {
				r.used = true
			}
		}
		return nil
	}
	return errs.E(errs.NotFound, errs.Msg("account not found"))
}

// RequestPasswordReset "mails" a link valid for account.ResetTTL to a known
// address; an unknown one is not an error.
func (f *fakeAccounts) RequestPasswordReset(_ context.Context, email string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return errs.E(errs.Unavailable)
	}
	email = strings.ToLower(strings.TrimSpace(email))
	if !strings.Contains(email, "@") {
		return errs.E(errs.Invalid, errs.Msg("email is not a valid address"))
	}
	if _, ok := f.byEmail[email]; !ok {
		return nil
	}
	if f.resets == nil {
		f.resets = map[string]*fakeReset{}
	}
	tok := ids.Token() + "." + ids.Token()
	f.resets[tok] = &fakeReset{email: email, expires: f.clock.Now().Add(account.ResetTTL)}
	f.mailed = append(f.mailed, fakeResetMail{to: email, token: tok})
	return nil
}

func (f *fakeAccounts) usableReset(token string) (*fakeReset, error) {
	r, ok := f.resets[token]
	if !ok || r.used || !f.clock.Now().Before(r.expires) {
		return nil, errs.E(errs.Forbidden, errs.Msg("this password reset link is no longer valid"))
	}
	return r, nil
}

func (f *fakeAccounts) CheckPasswordReset(_ context.Context, token string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return errs.E(errs.Unavailable)
	}
	_, err := f.usableReset(token)
	return err
}

// ResetPassword sets the password with a usable link, uses it, voids the
// account's other links and ends every session of the account.
func (f *fakeAccounts) ResetPassword(_ context.Context, token, next string) (account.Account, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return account.Account{}, errs.E(errs.Unavailable)
	}
	r, err := f.usableReset(token)
	if err != nil {
		return account.Account{}, err
	}
	if len(next) < 8 {
		return account.Account{}, errs.E(errs.Invalid, errs.Msg("password must be 8 to 128 characters long"))
	}
	u := f.byEmail[r.email]
	u.password = next
	f.byEmail[r.email] = u
	for _, o := range f.resets {
		if o.email == r.email {
			o.used = true
		}
	}
	for tok, a := range f.sessions {
		if a.ID == u.acct.ID {
			delete(f.sessions, tok)
		}
	}
	return u.acct, nil
}

// lastReset returns the token of the last link "mailed" to email.
func (f *fakeAccounts) lastReset(email string) (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := len(f.mailed) - 1; i >= 0; i-- {
		if f.mailed[i].to == email {
			return f.mailed[i].token, true
		}
	}
	return "", false
}

// user returns the stored account with email, for checking what changed.
func (f *fakeAccounts) user(email string) account.Account {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.byEmail[email].acct
}

// forget deletes the account with email, as if it had been removed behind
// the storefront's back; its sessions stay.
func (f *fakeAccounts) forget(email string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.byEmail, email)
}

func (f *fakeAccounts) calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.authCalls
}

type fakeCatalog struct {
	mu           sync.Mutex
	categories   []catalog.Category
	products     map[string]catalog.Product
	catListCalls int
	down         bool
}

func (f *fakeCatalog) ListCategories(context.Context) ([]catalog.Category, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.catListCalls++
	if f.down {
		return nil, errs.E(errs.Unavailable, errs.Msg("catalog service is unavailable"))
	}
	return slices.Clone(f.categories), nil
}

func (f *fakeCatalog) ListProducts(_ context.Context, flt catalog.ProductFilter) (catalog.ProductPage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return catalog.ProductPage{}, errs.E(errs.Unavailable, errs.Msg("catalog service is unavailable"))
	}
	var all []catalog.Product
	for _, p := range f.products {
		if flt.Category == "" || p.Category == flt.Category {
			all = append(all, p)
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].ID < all[j].ID })
	items, next, err := keysetPage(flt.Page, "products/id/"+flt.Category, all,
		func(p catalog.Product) string { return p.ID },
		func(p catalog.Product, key string) bool { return p.ID > key })
	return catalog.ProductPage{Items: items, NextPageToken: next}, err
}

func (f *fakeCatalog) GetProduct(_ context.Context, id string) (catalog.Product, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return catalog.Product{}, errs.E(errs.Unavailable, errs.Msg("catalog service is unavailable"))
	}
	p, ok := f.products[id]
	if !ok {
		return catalog.Product{}, errs.E(errs.NotFound, errs.Msg("no such product"))
	}
	return p, nil
}

func (f *fakeCatalog) GetProducts(_ context.Context, idList []string) ([]catalog.Product, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return nil, errs.E(errs.Unavailable, errs.Msg("catalog service is unavailable"))
	}
	var out []catalog.Product
	for _, id := range idList {
		if p, ok := f.products[id]; ok {
			out = append(out, p)
		}
	}
	return out, nil
}

// setStock sets a product's stock, as a sale elsewhere would.
func (f *fakeCatalog) setStock(id string, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.products[id]
	p.Stock = n
	f.products[id] = p
}

func (f *fakeCatalog) product(id string) (catalog.Product, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.products[id]
	return p, ok
}

// fakeSearch answers queries from a fixed table of hits (best first) by
// their text alone: no facets, sorts or filters (the search tests use the
// real service for those, see searchpage_test.go).
type fakeSearch struct {
	hits map[string][]string
}

func (f *fakeSearch) Search(_ context.Context, sq search.Query, p page.Request) (search.Result, error) {
	sq, err := sq.Check()
	if err != nil {
		return search.Result{}, err
	}
	q := strings.ToLower(sq.Text)
	all := f.hits[q]
	res := search.Result{Hits: []search.Hit{}, Total: len(all)}
	ids, next, err := keysetPage(p, "search/fake/"+q, all,
		func(id string) string { return id },
		func(id, key string) bool { return slices.Index(all, id) > slices.Index(all, key) })
	for _, id := range ids {
		res.Hits = append(res.Hits, search.Hit{ProductID: id, Score: float64(len(all) - slices.Index(all, id))})
	}
	res.NextPageToken = next
	return res, err
}

type fakeCarts struct {
	catalog *fakeCatalog

	mu    sync.Mutex
	carts map[string][]cart.Item
}

func checkOwner(owner string) error {
	if owner == "" || len(owner) > 200 {
		return errs.E(errs.Invalid, errs.Msg("bad cart owner"))
	}
	return nil
}

func (f *fakeCarts) view(owner string) cart.Cart {
	c := cart.Cart{Items: []cart.Item{}, Total: money.USD(0)}
	for _, it := range f.carts[owner] {
		c.Items = append(c.Items, it)
		c.Total = c.Total.Add(it.LineTotal)
	}
	return c
}

func (f *fakeCarts) GetCart(_ context.Context, owner string) (cart.Cart, error) {
	if err := checkOwner(owner); err != nil {
		return cart.Cart{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.view(owner), nil
}

func (f *fakeCarts) set(owner, productID string, qty int) error {
	p, ok := f.catalog.product(productID)
	if !ok {
		return errs.E(errs.NotFound, errs.Msg("no such product"))
	}
	items := f.carts[owner]
	i := slices.IndexFunc(items, func(it cart.Item) bool { return it.ProductID == productID })
	switch {
	case qty == 0 && i >= 0:
		items = slices.Delete(items, i, i+1)
	case qty == 0:
	case i >= 0:
		items[i].Quantity = qty
		items[i].LineTotal = items[i].UnitPrice.Times(qty)
	default:
		items = append(items, cart.Item{ProductID: p.ID, Name: p.Name, Quantity: qty, UnitPrice: p.Price, LineTotal: p.Price.Times(qty)})
	}
	f.carts[owner] = items
	return nil
}

func (f *fakeCarts) quantity(owner, productID string) int {
	for _, it := range f.carts[owner] {
		if it.ProductID == productID {
			return it.Quantity
		}
	}
	return 0
}

func (f *fakeCarts) AddItem(_ context.Context, owner, productID string, qty int) (cart.Cart, error) {
	if err := checkOwner(owner); err != nil {
		return cart.Cart{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if qty < 1 || qty > cart.MaxQuantity {
		return cart.Cart{}, errs.E(errs.Invalid, errs.Msg("quantity must be 1 to 99"))
	}
	return f.setCapped(owner, productID, f.quantity(owner, productID)+qty)
}

// setCapped sets a line as the cart service does for a quantity above 0:
// capped at the product's stock (cart.CapToStock), with its notice.
func (f *fakeCarts) setCapped(owner, productID string, qty int) (cart.Cart, error) {
	p, ok := f.catalog.product(productID)
	if !ok {
		return cart.Cart{}, errs.E(errs.NotFound, errs.Msg("no such product"))
	}
	n, notice, err := cart.CapToStock(p, qty)
	if err != nil {
		return cart.Cart{}, err
	}
	if n > cart.MaxQuantity {
		return cart.Cart{}, errs.E(errs.Invalid, errs.Msg("a cart may hold at most 99 of a product"))
	}
	if err := f.set(owner, productID, n); err != nil {
		return cart.Cart{}, err
	}
	c := f.view(owner)
	if notice != nil {
		c.Notices = []cart.Notice{*notice}
	}
	return c, nil
}

func (f *fakeCarts) SetQuantity(_ context.Context, owner, productID string, qty int) (cart.Cart, error) {
	if err := checkOwner(owner); err != nil {
		return cart.Cart{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if qty < 0 || qty > cart.MaxQuantity {
		return cart.Cart{}, errs.E(errs.Invalid, errs.Msg("quantity must be 0 to 99"))
	}
	if qty > 0 {
		return f.setCapped(owner, productID, qty)
	}
	if err := f.set(owner, productID, qty); err != nil {
		return cart.Cart{}, err
	}
	return f.view(owner), nil
}

func (f *fakeCarts) RemoveItem(_ context.Context, owner, productID string) (cart.Cart, error) {
	if err := checkOwner(owner); err != nil {
		return cart.Cart{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.carts[owner] = slices.DeleteFunc(f.carts[owner], func(it cart.Item) bool { return it.ProductID == productID })
	return f.view(owner), nil
}

func (f *fakeCarts) Clear(_ context.Context, owner string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.carts, owner)
	return nil
}

func (f *fakeCarts) Merge(_ context.Context, from, to string) (cart.Cart, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, it := range f.carts[from] {
		_ = f.set(to, it.ProductID, min(cart.MaxQuantity, f.quantity(to, it.ProductID)+it.Quantity))
	}
	delete(f.carts, from)
	return f.view(to), nil
}

func (f *fakeCarts) get(owner string) []cart.Item {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.carts[owner])
}

type fakeOrders struct {
	mu     sync.Mutex
	orders map[string]order.Order
}

func (f *fakeOrders) GetOrder(_ context.Context, id string) (order.Order, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	o, ok := f.orders[id]
	if n, _, isNumber := order.ParseNumber(id); isNumber { // by its number, as order.API
		for _, byNumber := range f.orders {
			if byNumber.Number == n {
				o, ok = byNumber, true
			}
		}
	}
	if !ok {
		return order.Order{}, errs.E(errs.NotFound, errs.Msg("order %s not found", id))
	}
	return o, nil
}

func (f *fakeOrders) ListOrders(_ context.Context, userID string, p page.Request) (order.OrderPage, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var all []order.Order
	for _, o := range f.orders {
		if o.UserID == userID {
			all = append(all, o)
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].ID > all[j].ID })
	items, next, err := keysetPage(p, "orders/newest/"+userID, all,
		func(o order.Order) string { return o.ID },
		func(o order.Order, key string) bool { return o.ID < key })
	return order.OrderPage{Items: items, NextPageToken: next}, err
}

func (f *fakeOrders) put(o order.Order) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.orders[o.ID] = o
}

func (f *fakeOrders) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.orders)
}

// fakeCheckout places orders from the fake cart into the fake order
// service, following checkout.API: a key reused by the same customer with a
// request of another checkout.RequestHash is errs.Invalid; the same request
// replays the outcome, except that an errs.Unavailable outcome runs again.
// Card 4000000000000002 is declined and 4000000000000119 fails with a
// transient errs.Unavailable; neither makes an order. With pending set,
// checkouts stay pending (no order yet, the cart locked against checkouts
// under other keys) until finish is called.
type fakeCheckout struct {
	clock   clock.Clock
	carts   *fakeCarts
	catalog *fakeCatalog
	orders  *fakeOrders

	mu      sync.Mutex
	pending bool
	seq     int
	keys    map[string]attempt // by user id + "\x00" + key
	calls   []string           // the keys PlaceOrder was called with, in order
}

type attempt struct {
	hash string
	res  checkout.Result
	err  error
}

func (f *fakeCheckout) PlaceOrder(ctx context.Context, c checkout.Customer, key string, r checkout.Request) (checkout.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, key)
	if key == "" || len(key) > 200 {
		return checkout.Result{}, errs.E(errs.BadRequest, errs.Msg("Idempotency-Key header must be at most 200 bytes"))
	}
	hash := checkout.RequestHash(r)
	id := c.UserID + "\x00" + key
	if a, ok := f.keys[id]; ok {
		if a.hash != hash {
			return checkout.Result{}, errs.E(errs.Invalid, errs.Msg("Idempotency-Key was already used with a different request"))
		}
		if !errs.Is(errs.Unavailable, a.err) {
			return a.res, a.err
		}
	}
	for k, a := range f.keys {
		if strings.HasPrefix(k, c.UserID+"\x00") && a.res.State == checkout.StatePending {
			return checkout.Result{}, errs.E(errs.Conflict, errs.Msg("this cart is already being checked out"))
		}
	}
	res, err := f.place(ctx, c, r)
	res.Key = key
	if err != nil {
		p := errs.ProblemFor(err)
		res = checkout.Result{Key: key, State: checkout.StateCancelled, Done: true, Error: &checkout.Failure{Status: p.Status, Detail: p.Detail}}
	}
	if r.CallbackURL != "" {
		res.Callback = &checkout.CallbackStatus{URL: r.CallbackURL, State: "pending"}
	}
	f.keys[id] = attempt{hash: hash, res: res, err: err}
	return res, err
}

// QuoteOrder prices the items from the fake catalog with the fake's flat
// $5.00 shipping (what place charges), for a country the shop ships to;
// errs.Invalid otherwise, as checkout.API.
func (f *fakeCheckout) QuoteOrder(_ context.Context, r checkout.QuoteRequest) (checkout.Quote, error) {
	if _, ok := shipping.CountryByCode(r.Address.Country); !ok {
		return checkout.Quote{}, errs.E(errs.Invalid, errs.Msg("shipping_address.country: we do not ship to this country"))
	}
	if len(r.Items) == 0 {
		return checkout.Quote{}, errs.E(errs.Invalid, errs.Msg("there is nothing to quote: the cart is empty"))
	}
	q := checkout.Quote{Subtotal: money.USD(0), Shipping: money.USD(500)}
	for _, it := range r.Items {
		p, ok := f.catalog.product(it.ProductID)
		if !ok {
			return checkout.Quote{}, errs.E(errs.Conflict, errs.Msg("%s is no longer sold; remove it from your cart", it.Name))
		}
		line := order.Item{ProductID: p.ID, Name: p.Name, Quantity: it.Quantity, UnitPrice: p.Price, LineTotal: p.Price.Times(it.Quantity)}
		q.Items = append(q.Items, line)
		q.Subtotal = q.Subtotal.Add(line.LineTotal)
	}
	q.Total = q.Subtotal.Add(q.Shipping)
	return q, nil
}

func (f *fakeCheckout) Checkout(_ context.Context, userID, key string) (checkout.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a, ok := f.keys[userID+"\x00"+key]
	if !ok {
		return checkout.Result{}, errs.E(errs.NotFound, errs.Msg("no such checkout"))
	}
	return a.res, nil
}

// finish ends the pending checkout of userID under key: confirmed (the
// order placed, the cart emptied) or, with a failure, cancelled (no order).
func (f *fakeCheckout) finish(userID, key string, fail *checkout.Failure) {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := userID + "\x00" + key
	a := f.keys[id]
	if a.res.State != checkout.StatePending {
		panic("fakeCheckout.finish: checkout " + key + " is not pending")
	}
	a.res.Done = true
	if fail != nil {
		a.res.State, a.res.Error = checkout.StateCancelled, fail
		a.res.Order.Status = order.StatusCancelled
	} else {
		a.res.State = checkout.StateConfirmed
		a.res.Order.Status = order.StatusConfirmed
		a.res.Order.Payment = order.PaymentInfo{ID: "pay_secret", Status: "captured"}
		a.res.Order.Shipment = order.ShipmentInfo{ID: "shp_secret", Status: "created", TrackingNumber: "GM123456"}
		f.orders.put(a.res.Order)
		_ = f.carts.Clear(context.Background(), userOwner(userID))
	}
	f.keys[id] = a
}

// keysCalled returns the keys PlaceOrder was called with, in order.
func (f *fakeCheckout) keysCalled() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

func (f *fakeCheckout) place(ctx context.Context, c checkout.Customer, r checkout.Request) (checkout.Result, error) {
	a := r.ShippingAddress
	if a.Name == "" || a.Line1 == "" || a.City == "" || a.PostalCode == "" || len(a.Country) != 2 {
		return checkout.Result{}, errs.E(errs.Invalid, errs.Msg("shipping address is incomplete"))
	}
	if len(r.Payment.Number) < 12 || r.Payment.ExpMonth < 1 || r.Payment.ExpMonth > 12 || r.Payment.CVC == "" {
		return checkout.Result{}, errs.E(errs.Invalid, errs.Msg("card details are not valid"))
	}
	items := f.carts.get(userOwner(c.UserID))
	if len(items) == 0 {
		return checkout.Result{}, errs.E(errs.Invalid, errs.Msg("cart is empty"))
	}
	for _, it := range items {
		if p, _ := f.catalog.product(it.ProductID); p.Stock < it.Quantity {
			return checkout.Result{}, errs.E(errs.Conflict, errs.Msg("not enough stock of %s", p.Name))
		}
	}
	switch r.Payment.Number {
	case "4000000000000002":
		return checkout.Result{}, errs.E(errs.Declined, errs.Msg("card declined"))
	case "4000000000000119":
		return checkout.Result{}, errs.E(errs.Unavailable, errs.Msg("payment processor failed; nothing was charged"))
	}
	f.seq++
	o := order.Order{
		ID: fmt.Sprintf("ord_%03d", f.seq), Number: fmt.Sprintf("GM-0000-%04d", f.seq), UserID: c.UserID, Email: c.Email, Status: order.StatusConfirmed,
		ShippingCost: money.USD(500), ShippingAddress: a, CreatedAt: f.clock.Now(), UpdatedAt: f.clock.Now(),
		Payment:  order.PaymentInfo{ID: "pay_secret", Status: "captured"},
		Shipment: order.ShipmentInfo{ID: "shp_secret", Status: "created", TrackingNumber: "GM123456"},
	}
	o.Subtotal = money.USD(0)
	for _, it := range items {
		o.Items = append(o.Items, order.Item(it))
		o.Subtotal = o.Subtotal.Add(it.LineTotal)
	}
	o.Total = o.Subtotal.Add(o.ShippingCost)
	if f.pending {
		o.Status = order.StatusPending
		o.Payment, o.Shipment = order.PaymentInfo{}, order.ShipmentInfo{}
		return checkout.Result{State: checkout.StatePending, Order: o}, nil
	}
	f.orders.put(o)
	_ = f.carts.Clear(ctx, userOwner(c.UserID))
	return checkout.Result{State: checkout.StateConfirmed, Done: true, Order: o}, nil
}

type fakeMail struct {
	msgs map[string]string
	list []MailSummary
}

func (f *fakeMail) List(context.Context) ([]MailSummary, error) { return f.list, nil }

func (f *fakeMail) Read(_ context.Context, id string) ([]byte, error) {
	m, ok := f.msgs[id]
	if !ok {
		return nil, errs.E(errs.NotFound, errs.Msg("no such message"))
	}
	return []byte(m), nil
}

// seedTime is the fixed time of the fake clock and the fake data.
var seedTime = time.Date(2025, 3, 14, 9, 26, 53, 0, time.UTC)

func seedCatalog() *fakeCatalog {
	return &fakeCatalog{
		categories: []catalog.Category{{ID: "cat_lamps", Name: "Lamps"}, {ID: "cat_tools", Name: "Tools"}},
		products: map[string]catalog.Product{
			"prd_01": {ID: "prd_01", Name: "Desk Lamp", Description: "A bright LED desk lamp with a weighted base.",
				Category: "cat_lamps", Price: money.USD(2450), Stock: 10, ImageURL: "/media/products/prd_01.png",
				Thumbnails: map[string]string{"small": "/media/thumbs/prd_01_small.jpg", "medium": "/media/thumbs/prd_01_medium.jpg"}},
			"prd_02": {ID: "prd_02", Name: "Floor Lamp", Description: "Tall & elegant <arc> lamp.",
				Category: "cat_lamps", Price: money.USD(8900), Stock: 0, ImageURL: "/media/products/prd_02.jpg"},
			"prd_03": {ID: "prd_03", Name: "Claw Hammer", Description: "Forged steel, fibreglass handle.",
				Category: "cat_tools", Price: money.USD(1500), Stock: 3, ImageURL: "/media/products/prd_03.png",
				Thumbnails: map[string]string{"small": "/media/thumbs/prd_03_small.jpg"}},
			"prd_04": {ID: "prd_04", Name: "Screwdriver Set", Description: "Twelve precision screwdrivers.",
				Category: "cat_tools", Price: money.USD(1999), Stock: 25, ImageURL: "/media/products/prd_04.png"},
		},
	}
}

// keysetPage pages all (in list order) as the services do: after the item
// whose key the token holds, with a token of the page's last key when more
// follow; errs.BadRequest for a token of another list.
func keysetPage[T any](p page.Request, list string, all []T, key func(T) string, after func(T, string) bool) ([]T, string, error) {
	p, err := p.CheckSize("fake.list")
	if err != nil {
		return nil, "", err
	}
	k, err := p.After(list, 1)
	if err != nil {
		return nil, "", err
	}
	out := []T{}
	for _, it := range all {
		if k == nil || after(it, k[0]) {
			out = append(out, it)
		}
	}
	next := p.Next(list, len(out), func() []string { return []string{key(out[p.Size-1])} })
	if len(out) > p.Size {
		out = out[:p.Size]
	}
	return out, next, nil
}
