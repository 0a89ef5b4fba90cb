package storefront

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/globomantics/globomantics/internal/account"
	"github.com/globomantics/globomantics/internal/cart"
	"github.com/globomantics/globomantics/internal/catalog"
	"github.com/globomantics/globomantics/internal/checkout"
	"github.com/globomantics/globomantics/internal/order"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/httpx"
	"github.com/globomantics/globomantics/internal/platform/money"
	"github.com/globomantics/globomantics/internal/platform/page"
	"github.com/globomantics/globomantics/internal/shipping"
)

// List is the JSON shape of every list answer of the public API.
type List[T any] struct {
	Items         []T    `json:"items"`
	NextPageToken string `json:"next_page_token"`
}

// Order is the public view of an order: what its customer may see. Internal
// fields (user id, payment and shipment ids, the cancel reason) stay out.
type Order struct {
	ID string `json:"id"`
	// Number is the short number the customer knows the order by
	// ("GM-4K7Q-2XPN"); GET /api/v1/orders/{number} finds the order too.
	Number          string           `json:"number"`
	Status          string           `json:"status"`
	Items           []order.Item     `json:"items"`
	Subtotal        money.Money      `json:"subtotal"`
	ShippingCost    money.Money      `json:"shipping_cost"`
	Total           money.Money      `json:"total"`
	ShippingAddress shipping.Address `json:"shipping_address"`
	Payment         OrderPayment     `json:"payment"`
	Shipment        OrderShipment    `json:"shipment"`
	CreatedAt       time.Time        `json:"created_at"`
}

// OrderPayment is the public view of an order's payment.
type OrderPayment struct {
	Status string `json:"status"`
}

// OrderShipment is the public view of an order's shipment.
type OrderShipment struct {
	Status         string `json:"status"`
	TrackingNumber string `json:"tracking_number"`
}

// PublicOrder returns the public view of o.
func PublicOrder(o order.Order) Order {
	items := o.Items
	if items == nil {
		items = []order.Item{}
	}
	return Order{
		ID:              o.ID,
		Number:          o.Number,
		Status:          o.Status,
		Items:           items,
		Subtotal:        o.Subtotal,
		ShippingCost:    o.ShippingCost,
		Total:           o.Total,
		ShippingAddress: o.ShippingAddress,
		Payment:         OrderPayment{Status: o.Payment.Status},
		Shipment:        OrderShipment{Status: o.Shipment.Status, TrackingNumber: o.Shipment.TrackingNumber},
		CreatedAt:       o.CreatedAt,
	}
}

// apiHandler adapts an API handler: answers are private unless the handler
// says otherwise, unsafe cross-origin browser requests are refused, and
// errors become problem+json (a limit's refusal: 429 with Retry-After).
func (s *Server) apiHandler(h func(w http.ResponseWriter, r *http.Request) error) http.Handler {
	return httpx.Handler(func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("Cache-Control", privateCacheControl)
		if err := s.checkOrigin(r); err != nil {
			return err
		}
		err := h(w, r)
		if tm := asTooMany(err); tm != nil {
			httpx.Logger(r.Context()).Debug("request limited", "method", r.Method, "path", r.URL.Path, "err", err)
			writeTooMany(w, r, tm)
			return nil
		}
		return err
	})
}

// apiNoRoute answers unknown API paths (404) and wrong methods (405) with
// problem+json.
func (s *Server) apiNoRoute(w http.ResponseWriter, r *http.Request, allow []string) {
	if len(allow) == 0 {
		httpx.NotFound(w, r)
		return
	}
	writeMethodNotAllowed(w, r, allow)
}

// writeMethodNotAllowed writes a 405 problem listing the allowed methods.
func writeMethodNotAllowed(w http.ResponseWriter, r *http.Request, allow []string) {
	w.Header().Set("Allow", strings.Join(allow, ", "))
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusMethodNotAllowed)
	_ = json.NewEncoder(w).Encode(errs.Problem{
		Type:     "about:blank",
		Title:    "Method Not Allowed",
		Status:   http.StatusMethodNotAllowed,
		Detail:   "method " + r.Method + " is not allowed here; allowed: " + strings.Join(allow, ", "),
		Instance: r.URL.Path,
	})
}

func (s *Server) apiCategories(w http.ResponseWriter, r *http.Request) error {
	cats, err := s.categories(r.Context())
	if err != nil {
		return err
	}
	return s.writeCacheable(w, r, CategoryList{Items: cats})
}

// CategoryList is the answer of GET /api/v1/categories.
type CategoryList struct {
	Items []catalog.Category `json:"items"`
}

func (s *Server) apiProducts(w http.ResponseWriter, r *http.Request) error {
	q, err := httpx.Query(r)
	if err != nil {
		return err
	}
	p, err := page.Parse(q.Get("page_size"), q.Get("page_token"))
	if err != nil {
		return err
	}
	pp, err := s.d.Catalog.ListProducts(r.Context(), catalog.ProductFilter{Category: q.Get("category"), Page: p})
	if err != nil {
		return err
	}
	if pp.Items == nil {
		pp.Items = []catalog.Product{}
	}
	return s.writeCacheable(w, r, List[catalog.Product]{Items: pp.Items, NextPageToken: pp.NextPageToken})
}

func (s *Server) apiProduct(w http.ResponseWriter, r *http.Request) error {
	p, err := s.d.Catalog.GetProduct(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	return s.writeCacheable(w, r, p)
}

func (s *Server) apiRegister(w http.ResponseWriter, r *http.Request) error {
	var reg account.Registration
	if err := httpx.Decode(r, &reg); err != nil {
		return err
	}
	if err := s.limitRegister(r); err != nil {
		return err
	}
	a, err := s.d.Accounts.Register(r.Context(), reg)
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusCreated, a)
	return nil
}

type credentials struct {
	Email    string `json:"email"`
	Password string `json:"password"`
}

func (s *Server) apiLogin(w http.ResponseWriter, r *http.Request) error {
	var c credentials
	if err := httpx.Decode(r, &c); err != nil {
		return err
	}
	a, err := s.login(w, r, c.Email, c.Password)
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, a)
	return nil
}

func (s *Server) apiLogout(w http.ResponseWriter, r *http.Request) error {
	if err := s.logout(w, r); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) apiMe(w http.ResponseWriter, r *http.Request) error {
	a, err := s.requireAccount(r)
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, a)
	return nil
}

// emptyCart is the cart of a visitor who has none.
func emptyCart() cart.Cart { return cart.Cart{Items: []cart.Item{}, Total: money.USD(0)} }

func normalCart(c cart.Cart) cart.Cart {
	if c.Items == nil {
		c.Items = []cart.Item{}
	}
	if c.Total.Currency == "" {
		c.Total.Currency = money.Currency
	}
	return c
}

func (s *Server) apiCart(w http.ResponseWriter, r *http.Request) error {
	owner, err := s.cartOwner(r)
	if err != nil {
		return err
	}
	c := emptyCart()
	if owner != "" {
		if c, err = s.d.Carts.GetCart(r.Context(), owner); err != nil {
			return err
		}
		// Lines the stock stopped covering since they were added carry a
		// cart.NoticeShort, as the cart page warns of them.
		c, _ = s.checkStock(r.Context(), c)
	}
	httpx.WriteJSON(w, http.StatusOK, normalCart(c))
	return nil
}

// checkQuantity validates a cart quantity from a client; min is 1 for
// adding and 0 (remove) for setting.
func checkQuantity(op string, qty, min int) error {
	if qty < min || qty > cart.MaxQuantity {
		return errs.E(op, errs.Invalid, errs.Msg("quantity must be a whole number from %d to %d", min, cart.MaxQuantity))
	}
	return nil
}

// AddItemRequest is the body of POST /api/v1/cart/items: Quantity more of
// the product.
type AddItemRequest struct {
	ProductID string `json:"product_id"`
	Quantity  int    `json:"quantity"`
}

// SetQuantityRequest is the body of PUT /api/v1/cart/items/{product_id}.
type SetQuantityRequest struct {
	Quantity *int `json:"quantity"`
}

func (s *Server) apiAddItem(w http.ResponseWriter, r *http.Request) error {
	const op = "storefront.addItem"
	var in AddItemRequest
	if err := httpx.Decode(r, &in); err != nil {
		return err
	}
	if err := httpx.Required(op, map[string]string{"product_id": in.ProductID}); err != nil {
		return err
	}
	if err := checkQuantity(op, in.Quantity, 1); err != nil {
		return err
	}
	owner, newTok, err := s.cartOwnerForWrite(r)
	if err != nil {
		return err
	}
	c, err := s.d.Carts.AddItem(r.Context(), owner, in.ProductID, in.Quantity)
	if err != nil {
		return err
	}
	s.keepCart(w, newTok, len(c.Items))
	httpx.WriteJSON(w, http.StatusOK, normalCart(c))
	return nil
}

func (s *Server) apiSetQuantity(w http.ResponseWriter, r *http.Request) error {
	const op = "storefront.setQuantity"
	var in SetQuantityRequest
	if err := httpx.Decode(r, &in); err != nil {
		return err
	}
	if in.Quantity == nil {
		return errs.E(op, errs.Invalid, errs.Msg("missing required field(s): quantity"))
	}
	if err := checkQuantity(op, *in.Quantity, 0); err != nil {
		return err
	}
	owner, newTok, err := s.cartOwnerForWrite(r)
	if err != nil {
		return err
	}
	c, err := s.d.Carts.SetQuantity(r.Context(), owner, r.PathValue("product_id"), *in.Quantity)
	if err != nil {
		return err
	}
	s.keepCart(w, newTok, len(c.Items))
	httpx.WriteJSON(w, http.StatusOK, normalCart(c))
	return nil
}

func (s *Server) apiRemoveItem(w http.ResponseWriter, r *http.Request) error {
	owner, err := s.cartOwner(r)
	if err != nil {
		return err
	}
	c := emptyCart()
	if owner != "" {
		if c, err = s.d.Carts.RemoveItem(r.Context(), owner, r.PathValue("product_id")); err != nil {
			return err
		}
	}
	httpx.WriteJSON(w, http.StatusOK, normalCart(c))
	return nil
}

// CheckoutView is the public view of a checkout, the answer of
// GET /api/v1/checkouts/{key} and of a POST /api/v1/checkout that is still
// running (202). State is "pending", "confirmed" or "cancelled"; Done is true
// once it is not pending. Order is the order placed or, while pending, the
// order as it will be placed. Error is set (and only then) when the checkout
// was cancelled; Callback is set when the checkout asked for one.
type CheckoutView struct {
	Key      string            `json:"key"`
	State    string            `json:"state"`
	Done     bool              `json:"done"`
	Order    Order             `json:"order"`
	Error    *CheckoutError    `json:"error"`
	Callback *CheckoutCallback `json:"callback"`
}

// CheckoutError is why a checkout was cancelled: the HTTP status the
// checkout would have failed with, its title, and a message fit for the
// customer (never an internal cause).
type CheckoutError struct {
	Status int    `json:"status"`
	Title  string `json:"title"`
	Detail string `json:"detail"`
}

// CheckoutCallback is how the delivery of a checkout's callback stands:
// State is "pending", "delivered" or "failed"; NextAt is when the next
// attempt is due, if one is.
type CheckoutCallback struct {
	URL      string    `json:"url"`
	State    string    `json:"state"`
	Attempts int       `json:"attempts"`
	NextAt   time.Time `json:"next_at,omitzero"`
}

// checkoutState is the state of res, for results that predate State (or
// leave it out): Done means confirmed unless an error is given.
func checkoutState(res checkout.Result) string {
	switch res.State {
	case checkout.StatePending, checkout.StateConfirmed, checkout.StateCancelled:
		return res.State
	}
	switch {
	case !res.Done:
		return checkout.StatePending
	case res.Error != nil:
		return checkout.StateCancelled
	}
	return checkout.StateConfirmed
}

// failureError is the error a cancelled checkout ended with, of the kind
// its Failure's status maps to; internal errors keep no detail.
func failureError(op string, f *checkout.Failure) error {
	if f == nil {
		return errs.E(op, errs.Other, errs.Msg("the checkout was cancelled"))
	}
	k := errs.KindForStatus(f.Status)
	if f.Detail == "" || k == errs.Other {
		return errs.E(op, k)
	}
	return errs.E(op, k, errs.Msg("%s", f.Detail))
}

// PublicCheckout returns the public view of res: no internal ids, no
// internal error causes, no callback delivery errors.
func PublicCheckout(res checkout.Result) CheckoutView {
	v := CheckoutView{Key: res.Key, State: checkoutState(res), Order: PublicOrder(res.Order)}
	v.Done = v.State != checkout.StatePending
	if v.State == checkout.StateCancelled {
		p := errs.ProblemFor(failureError("", res.Error))
		v.Error = &CheckoutError{Status: p.Status, Title: p.Title, Detail: p.Detail}
	}
	if c := res.Callback; c != nil {
		v.Callback = &CheckoutCallback{URL: c.URL, State: c.State, Attempts: c.Attempts, NextAt: c.NextAt}
	}
	return v
}

// maxCheckoutKey is the longest Idempotency-Key the checkout service takes;
// longer keys cannot name a checkout.
const maxCheckoutKey = 200

// checkoutPath is the API path of the checkout under key.
func checkoutPath(key string) string { return "/api/v1/checkouts/" + url.PathEscape(key) }

// apiCheckout places the order: 201 with the order and its Location when it
// is confirmed at once; 202 with the checkout (CheckoutView) and its
// Location to poll while it is still running; problem+json when it ended
// cancelled.
func (s *Server) apiCheckout(w http.ResponseWriter, r *http.Request) error {
	const op = "storefront.checkout"
	a, err := s.requireAccount(r)
	if err != nil {
		return err
	}
	if err := s.limit(r.Context(), s.limits.CheckoutPerAccount, checkoutAccountKey(a.ID), "checkout attempts"); err != nil {
		return err
	}
	key := r.Header.Get("Idempotency-Key")
	if strings.TrimSpace(key) == "" {
		return errs.E(op, errs.BadRequest, errs.Msg("the Idempotency-Key header is required"))
	}
	var req checkout.Request
	if err := httpx.Decode(r, &req); err != nil {
		return err
	}
	res, err := s.d.Checkout.PlaceOrder(r.Context(), checkout.Customer{UserID: a.ID, Email: a.Email}, key, req)
	if err != nil {
		return err
	}
	if res.Key == "" {
		res.Key = key
	}
	switch checkoutState(res) {
	case checkout.StateConfirmed:
		w.Header().Set("Location", "/api/v1/orders/"+url.PathEscape(res.Order.ID))
		httpx.WriteJSON(w, http.StatusCreated, PublicOrder(res.Order))
		return nil
	case checkout.StateCancelled:
		return failureError(op, res.Error)
	}
	w.Header().Set("Location", checkoutPath(res.Key))
	w.Header().Set("Retry-After", "2")
	httpx.WriteJSON(w, http.StatusAccepted, PublicCheckout(res))
	return nil
}

// apiGetCheckout shows the logged-in customer's checkout under the key in
// the path. Another customer's key is a 404 like an unknown one: checkouts
// are looked up by the logged-in customer's id.
func (s *Server) apiGetCheckout(w http.ResponseWriter, r *http.Request) error {
	a, err := s.requireAccount(r)
	if err != nil {
		return err
	}
	res, err := s.ownCheckout(r, a, r.PathValue("key"))
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	httpx.WriteJSON(w, http.StatusOK, PublicCheckout(res))
	return nil
}

// ownCheckout returns a's checkout under key; errs.NotFound, with the same
// detail, when there is none or it is not a's.
func (s *Server) ownCheckout(r *http.Request, a account.Account, key string) (checkout.Result, error) {
	const op = "storefront.checkoutStatus"
	notFound := errs.E(op, errs.NotFound, errs.Msg("no such checkout"))
	if key == "" || len(key) > maxCheckoutKey {
		return checkout.Result{}, notFound
	}
	res, err := s.d.Checkout.Checkout(r.Context(), a.ID, key)
	if errs.Is(errs.NotFound, err) {
		return checkout.Result{}, notFound
	}
	if err != nil {
		return checkout.Result{}, errs.E(op, err)
	}
	if res.Order.UserID != "" && res.Order.UserID != a.ID { // defence in depth
		return checkout.Result{}, notFound
	}
	if res.Key == "" {
		res.Key = key
	}
	return res, nil
}

func (s *Server) apiOrders(w http.ResponseWriter, r *http.Request) error {
	a, err := s.requireAccount(r)
	if err != nil {
		return err
	}
	q, err := httpx.Query(r)
	if err != nil {
		return err
	}
	p, err := page.Parse(q.Get("page_size"), q.Get("page_token"))
	if err != nil {
		return err
	}
	op, err := s.d.Orders.ListOrders(r.Context(), a.ID, p)
	if err != nil {
		return err
	}
	out := List[Order]{Items: make([]Order, 0, len(op.Items)), NextPageToken: op.NextPageToken}
	for _, o := range op.Items {
		out.Items = append(out.Items, PublicOrder(o))
	}
	httpx.WriteJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) apiOrder(w http.ResponseWriter, r *http.Request) error {
	a, err := s.requireAccount(r)
	if err != nil {
		return err
	}
	o, err := s.ownOrder(r, a, r.PathValue("id"))
	if err != nil {
		return err
	}
	httpx.WriteJSON(w, http.StatusOK, PublicOrder(o))
	return nil
}

// ownOrder returns the order with id if it belongs to a. Another customer's
// order is errs.NotFound with the same detail as a missing one, so that
// nobody learns which order ids exist.
func (s *Server) ownOrder(r *http.Request, a account.Account, id string) (order.Order, error) {
	const op = "storefront.order"
	notFound := errs.E(op, errs.NotFound, errs.Msg("no such order"))
	o, err := s.d.Orders.GetOrder(r.Context(), id)
	if errs.Is(errs.NotFound, err) {
		return order.Order{}, notFound
	}
	if err != nil {
		return order.Order{}, errs.E(op, err)
	}
	if o.UserID != a.ID {
		return order.Order{}, notFound
	}
	return o, nil
}
