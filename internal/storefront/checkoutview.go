package storefront

// The checkout page's quote, address form and pictures, and the words an
// order's state reads in to its customer (issue 10: the total before
// paying, short order numbers, addresses with regions, pictures).

import (
	"cmp"
	"context"
	"net/http"
	"strings"

	"github.com/globomantics/globomantics/internal/account"
	"github.com/globomantics/globomantics/internal/cart"
	"github.com/globomantics/globomantics/internal/checkout"
	"github.com/globomantics/globomantics/internal/order"
	"github.com/globomantics/globomantics/internal/payment"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/httpx"
	"github.com/globomantics/globomantics/internal/platform/money"
	"github.com/globomantics/globomantics/internal/platform/page"
	"github.com/globomantics/globomantics/internal/shipping"
)

// DefaultCountry is the country the checkout page quotes shipping to when
// the customer has no earlier order to take the address from.
const DefaultCountry = "US"

// checkoutData is the checkout page: the cart's lines with their pictures,
// the quote (subtotal, shipping, total) for the address in the form, the
// address as typed and what is wrong with it, field by field.
type checkoutData struct {
	Cart      cart.Cart
	Lines     []orderLine
	Nonce     string // nonce of this rendering of the form (see formKey)
	Address   shipping.Address
	Countries []countryOption
	Regions   []regionGroup
	// Quote is what placing the order would charge; nil when it could not
	// be had (QuoteError says why, in words for the customer).
	Quote      *checkout.Quote
	QuoteTo    string // the country the quote is for, by name
	QuoteError string
	Fields     shipping.FieldErrors
	Error      string
}

// countryOption is a country of the country list.
type countryOption struct {
	Code, Name string
	Selected   bool
}

// regionGroup is the regions of one country, for the region list.
type regionGroup struct {
	Country string
	Label   string
	Options []regionOption
}

// regionOption is a region of the region list; its value is the ISO
// 3166-2 code ("US-IL"), which tells apart regions of different countries
// with the same code (WA in the US and in Australia).
type regionOption struct {
	Value, Name string
	Selected    bool
}

// orderLine is a line of the checkout or order page with its picture.
type orderLine struct {
	order.Item
	Image string // a small picture of the product, or "" (none, or the catalog did not answer)
}

// lineImages returns a small picture of each of the products, by id, from
// one GetProducts call; an empty map when the catalog does not answer (the
// lines then show without pictures).
func (s *Server) lineImages(ctx context.Context, ids []string) map[string]string {
	out := make(map[string]string, len(ids))
	if len(ids) == 0 {
		return out
	}
	products, err := s.d.Catalog.GetProducts(ctx, ids)
	if err != nil {
		httpx.Logger(ctx).Warn("pictures of order lines not loaded", "err", err)
		return out
	}
	for _, p := range products {
		if u := productImage(p, "small"); u != "" {
			out[p.ID] = u
		}
	}
	return out
}

// withImages returns items as lines with their pictures (one catalog call).
func (s *Server) withImages(ctx context.Context, items []order.Item) []orderLine {
	ids := make([]string, len(items))
	for i, it := range items {
		ids[i] = it.ProductID
	}
	img := s.lineImages(ctx, ids)
	lines := make([]orderLine, len(items))
	for i, it := range items {
		lines[i] = orderLine{Item: it, Image: img[it.ProductID]}
	}
	return lines
}

// lastAddress is the shipping address of the customer's latest order, or
// one with only their name and DefaultCountry.
func (s *Server) lastAddress(ctx context.Context, a account.Account) shipping.Address {
	pg, err := s.d.Orders.ListOrders(ctx, a.ID, page.Request{Size: 1})
	if err == nil && len(pg.Items) > 0 {
		if addr := pg.Items[0].ShippingAddress; addr.Country != "" {
			return addr
		}
	}
	return shipping.Address{Name: a.Name, Country: DefaultCountry}
}

// checkoutView is the checkout page's data for cart c and the address as
// typed, quoted by the checkout service (the rule the checkout charges by).
// A quote that cannot be had leaves the page without one and says why;
// the page never claims a total it does not know.
func (s *Server) checkoutView(ctx context.Context, c cart.Cart, addr shipping.Address, nonce string, fields shipping.FieldErrors, msg string) checkoutData {
	c = normalCart(c)
	d := checkoutData{Cart: c, Nonce: nonce, Address: addr, Fields: fields, Error: msg}
	// The region as typed, or as the list sent it, in the list's terms.
	picked := strings.ToUpper(addr.Region)
	if !strings.Contains(picked, "-") {
		picked = strings.ToUpper(addr.Country) + "-" + picked
	}
	for _, co := range shipping.Countries() {
		d.Countries = append(d.Countries, countryOption{Code: co.Code, Name: co.Name, Selected: strings.EqualFold(co.Code, addr.Country)})
		if !co.HasRegions() {
			continue
		}
		g := regionGroup{Country: co.Name, Label: co.RegionLabel}
		for _, r := range co.Regions {
			v := co.Code + "-" + r.Code
			g.Options = append(g.Options, regionOption{Value: v, Name: r.Name, Selected: v == picked})
		}
		d.Regions = append(d.Regions, g)
	}
	items := make([]order.Item, len(c.Items))
	for i, it := range c.Items {
		items[i] = order.Item(it)
	}
	d.Lines = s.withImages(ctx, items)
	if len(c.Items) == 0 {
		return d
	}
	country := strings.ToUpper(strings.TrimSpace(addr.Country))
	if _, ok := shipping.CountryByCode(country); !ok {
		d.QuoteError = "Choose the country to ship to, then “Update shipping”, to see the shipping cost."
		return d
	}
	q, err := s.d.Checkout.QuoteOrder(ctx, checkout.QuoteRequest{Items: c.Items, Address: shipping.Address{Country: country}})
	switch {
	case err == nil:
		d.Quote, d.QuoteTo = &q, shipping.CountryName(country)
	case errs.Is(errs.Conflict, err):
		d.QuoteError = errs.Detail(err)
	default:
		httpx.Logger(ctx).Warn("checkout quote failed", "err", err)
		d.QuoteError = "We couldn't work out the shipping cost just now. Please try “Update shipping” again in a moment."
	}
	return d
}

// addressForm reads the address fields of the checkout form.
func addressForm(get func(string) string) shipping.Address {
	return shipping.Address{
		Name:       strings.TrimSpace(get("name")),
		Line1:      strings.TrimSpace(get("line1")),
		City:       strings.TrimSpace(get("city")),
		Region:     strings.TrimSpace(get("region")),
		PostalCode: strings.TrimSpace(get("postal_code")),
		Country:    strings.ToUpper(strings.TrimSpace(get("country"))),
	}
}

// CheckoutQuoteRequest is the body of POST /api/v1/checkout/quote: where
// the logged-in customer's cart would go. Only the country is required.
type CheckoutQuoteRequest struct {
	Address shipping.Address `json:"address"`
}

// CheckoutQuote is what checking out the logged-in customer's cart to an
// address would charge now: the lines priced, the subtotal, the shipping
// and the total, in the shop's currency. The checkout charges exactly this
// unless the cart, a price or the address changes first.
type CheckoutQuote struct {
	Items    []order.Item `json:"items"`
	Subtotal money.Money  `json:"subtotal"`
	Shipping money.Money  `json:"shipping"`
	Total    money.Money  `json:"total"`
}

// apiCheckoutQuote prices the logged-in customer's cart to the address in
// the body; errs.Invalid (422) for an empty cart or a country the shop does
// not ship to.
func (s *Server) apiCheckoutQuote(w http.ResponseWriter, r *http.Request) error {
	const op = "storefront.checkoutQuote"
	a, err := s.requireAccount(r)
	if err != nil {
		return err
	}
	var body CheckoutQuoteRequest
	if err := httpx.Decode(r, &body); err != nil {
		return err
	}
	c, err := s.d.Carts.GetCart(r.Context(), userOwner(a.ID))
	if err != nil {
		return err
	}
	if len(c.Items) == 0 {
		return errs.E(op, errs.Invalid, errs.Msg("your cart is empty"))
	}
	q, err := s.d.Checkout.QuoteOrder(r.Context(), checkout.QuoteRequest{Items: c.Items, Address: body.Address})
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	httpx.WriteJSON(w, http.StatusOK, CheckoutQuote{Items: q.Items, Subtotal: q.Subtotal, Shipping: q.Shipping, Total: q.Total})
	return nil
}

// Ref is how the order is named to its customer and in its page's address:
// its number (orders made before numbers existed have one since; the id
// stands in only if a store did not give one).
func (o Order) Ref() string { return cmp.Or(o.Number, o.ID) }

// orderPath is the customer's page of order o (named as by Order.Ref).
func orderPath(o order.Order) string { return "/orders/" + cmp.Or(o.Number, o.ID) }

// paymentWords is how an order's payment reads to its customer.
func paymentWords(o Order) string {
	switch o.Payment.Status {
	case payment.StatusCaptured:
		return "Paid"
	case payment.StatusAuthorized:
		return "Card approved, not yet charged"
	case payment.StatusRefunded:
		return "Refunded"
	case payment.StatusVoided, payment.StatusDeclined:
		return "Not charged"
	}
	if o.Status == order.StatusCancelled {
		return "Not charged"
	}
	return "Awaiting payment"
}

// shipmentPreparing is how a created shipment reads.
const shipmentPreparing = "Preparing to ship"

// shipmentWords is how an order's shipment reads to its customer.
func shipmentWords(o Order) string {
	switch o.Shipment.Status {
	case shipping.StatusCreated:
		return shipmentPreparing
	case "shipped":
		return "Shipped"
	case "delivered":
		return "Delivered"
	case shipping.StatusCancelled:
		return "Will not be shipped"
	}
	if o.Status == order.StatusCancelled {
		return "Will not be shipped"
	}
	return "Not yet prepared"
}

// regionName is the name of an address's region ("Illinois" for IL in the
// US), or the region as typed where the shop has no list.
func regionName(a shipping.Address) string { return shipping.RegionName(a.Country, a.Region) }

// countryName is the name of a country by its code ("United States").
func countryName(code string) string { return shipping.CountryName(code) }
