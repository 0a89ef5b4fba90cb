package cart_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/cart"
	"github.com/globomantics/globomantics/internal/cart/cartdb"
	"github.com/globomantics/globomantics/internal/catalog"
	"github.com/globomantics/globomantics/internal/platform/clock"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/httpx"
	"github.com/globomantics/globomantics/internal/platform/money"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

// products is an in-memory catalog for the cart's tests.
type products struct {
	mu    sync.Mutex
	items map[string]catalog.Product
	down  bool // answer every call with errs.Unavailable
}

func (p *products) GetProduct(_ context.Context, id string) (catalog.Product, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down {
		return catalog.Product{}, errs.E("catalog.GetProduct", errs.Unavailable, errs.Msg("catalog service is unavailable"))
	}
	pr, ok := p.items[id]
	if !ok {
		return catalog.Product{}, errs.E("catalog.GetProduct", errs.NotFound, errs.Msg("product not found"))
	}
	return pr, nil
}

func (p *products) setPrice(id string, cents int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pr := p.items[id]
	pr.Price = money.USD(cents)
	p.items[id] = pr
}

func (p *products) setStock(id string, n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pr := p.items[id]
	pr.Stock = n
	p.items[id] = pr
}

// list is the catalog's products, as CheckStock takes them.
func (p *products) list() []catalog.Product {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]catalog.Product, 0, len(p.items))
	for _, pr := range p.items {
		out = append(out, pr)
	}
	return out
}

func (p *products) setDown(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
}

func newProducts() *products {
	p := &products{items: map[string]catalog.Product{}}
	for _, pr := range []catalog.Product{
		{ID: "prd_lamp", Name: "Desk lamp", Price: money.USD(2499), Stock: 5},
		{ID: "prd_mug", Name: "Mug", Price: money.USD(850), Stock: 100},
		{ID: "prd_pen", Name: "Pen", Price: money.USD(199), Stock: 0}, // sold out
		{ID: "prd_sofa", Name: "Sofa", Price: money.USD(49900), Stock: 3},
		{ID: "prd_book", Name: "Book", Price: money.USD(199), Stock: 500},
		{ID: "prd/odd ?#%", Name: "Odd id", Price: money.USD(1), Stock: 100},
	} {
		p.items[pr.ID] = pr
	}
	return p
}

type fixture struct {
	api      cart.API
	products *products
	clock    *clock.Fake
}

func newService(t *testing.T) (*cart.Service, *products, *clock.Fake) {
	t.Helper()
	clk := clock.NewFake(time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC))
	store, err := cartdb.Open(context.Background(), testenv.SQLite(t), cartdb.WithClock(clk))
	if err != nil {
		t.Fatal(err)
	}
	p := newProducts()
	return cart.NewService(store, p, clk), p, clk
}

// TestAPI runs the contract suite against the service in process and over HTTP.
func TestAPI(t *testing.T) {
	impls := map[string]func(t *testing.T) fixture{
		"service": func(t *testing.T) fixture {
			svc, p, clk := newService(t)
			return fixture{svc, p, clk}
		},
		"client": func(t *testing.T) fixture {
			svc, p, clk := newService(t)
			srv := httptest.NewServer(cart.NewHandler(svc))
			t.Cleanup(srv.Close)
			return fixture{cart.NewClient(httpx.NewClient("cart", []string{srv.URL}, nil)), p, clk}
		},
	}
	for name, mk := range impls {
		t.Run(name, func(t *testing.T) {
			t.Run("AddItem", func(t *testing.T) { testAddItem(t, mk(t)) })
			t.Run("AddItemInvalid", func(t *testing.T) { testAddItemInvalid(t, mk(t)) })
			t.Run("Order", func(t *testing.T) { testOrder(t, mk(t)) })
			t.Run("SetQuantity", func(t *testing.T) { testSetQuantity(t, mk(t)) })
			t.Run("Stock", func(t *testing.T) { testStock(t, mk(t)) })
			t.Run("RemoveAndClear", func(t *testing.T) { testRemoveAndClear(t, mk(t)) })
			t.Run("Merge", func(t *testing.T) { testMerge(t, mk(t)) })
			t.Run("Owners", func(t *testing.T) { testOwners(t, mk(t)) })
			t.Run("Lock", func(t *testing.T) { testLock(t, mk(t)) })
			t.Run("LockInvalid", func(t *testing.T) { testLockInvalid(t, mk(t)) })
		})
	}
}

func wantKind(t *testing.T, what string, err error, k errs.Kind) {
	t.Helper()
	if !errs.Is(k, err) {
		t.Errorf("%s: got error %v (kind %v), want kind %v", what, err, errs.KindOf(err), k)
	}
}

// summary renders a cart as "id×qty@price ... =total" for compact comparison.
func summary(c cart.Cart) string {
	var b strings.Builder
	for _, it := range c.Items {
		fmt.Fprintf(&b, "%s×%d@%s ", it.ProductID, it.Quantity, strings.TrimPrefix(it.UnitPrice.String(), "$"))
	}
	fmt.Fprintf(&b, "=%s", strings.TrimPrefix(c.Total.String(), "$"))
	if c.Total.Currency != money.Currency {
		fmt.Fprintf(&b, " (currency %q)", c.Total.Currency)
	}
	return b.String()
}

func mustCart(t *testing.T, what string) func(cart.Cart, error) cart.Cart {
	t.Helper()
	return func(c cart.Cart, err error) cart.Cart {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return c
	}
}

func wantCart(t *testing.T, api cart.API, owner, want string) {
	t.Helper()
	c, err := api.GetCart(context.Background(), owner)
	if err != nil {
		t.Fatalf("GetCart(%q): %v", owner, err)
	}
	if got := summary(c); got != want {
		t.Errorf("cart %q = %s, want %s", owner, got, want)
	}
}

func testAddItem(t *testing.T, f fixture) {
	ctx := context.Background()
	const owner = "user:acc_1"

	empty := mustCart(t, "GetCart")(f.api.GetCart(ctx, owner))
	if empty.Items == nil || len(empty.Items) != 0 || empty.Total != money.USD(0) {
		t.Errorf("empty cart = %+v; want no items (non-nil) and a zero USD total", empty)
	}

	c := mustCart(t, "AddItem")(f.api.AddItem(ctx, owner, "prd_lamp", 2))
	want := cart.Item{ProductID: "prd_lamp", Name: "Desk lamp", Quantity: 2, UnitPrice: money.USD(2499), LineTotal: money.USD(4998)}
	if len(c.Items) != 1 || c.Items[0] != want || c.Total != money.USD(4998) {
		t.Fatalf("after AddItem: %+v; want one line %+v, total 49.98", c, want)
	}

	// Adding again adds to the line, which keeps the price it was added at.
	f.products.setPrice("prd_lamp", 9999)
	c = mustCart(t, "AddItem again")(f.api.AddItem(ctx, owner, "prd_lamp", 3))
	if summary(c) != "prd_lamp×5@24.99 =124.95" {
		t.Errorf("after second add: %s", summary(c))
	}
	if len(c.Notices) != 0 {
		t.Errorf("adding what is in stock gave notices %+v", c.Notices)
	}
	c = mustCart(t, "AddItem book")(f.api.AddItem(ctx, owner, "prd_book", 1))
	if summary(c) != "prd_lamp×5@24.99 prd_book×1@1.99 =126.94" {
		t.Errorf("after adding a book: %s", summary(c))
	}
	wantCart(t, f.api, owner, "prd_lamp×5@24.99 prd_book×1@1.99 =126.94")

	// Up to MaxQuantity is fine.
	c = mustCart(t, "AddItem to max")(f.api.AddItem(ctx, owner, "prd_book", cart.MaxQuantity-1))
	if c.Items[1].Quantity != cart.MaxQuantity || len(c.Notices) != 0 {
		t.Errorf("quantity = %d (notices %+v), want %d", c.Items[1].Quantity, c.Notices, cart.MaxQuantity)
	}
}

func testAddItemInvalid(t *testing.T, f fixture) {
	ctx := context.Background()
	const owner = "anon:tok"
	mustCart(t, "AddItem")(f.api.AddItem(ctx, owner, "prd_mug", 98))
	const before = "prd_mug×98@8.50 =833.00"

	for _, qty := range []int{0, -1, cart.MaxQuantity + 1, 1 << 40} {
		_, err := f.api.AddItem(ctx, owner, "prd_lamp", qty)
		wantKind(t, "AddItem qty "+strconv.Itoa(qty), err, errs.Invalid)
	}
	_, err := f.api.AddItem(ctx, owner, "prd_mug", 2)
	wantKind(t, "AddItem beyond MaxQuantity", err, errs.Invalid)
	if d := errs.Detail(err); !strings.Contains(d, "at most 99") || !strings.Contains(d, "98") {
		t.Errorf("detail %q should say the limit and the quantity held", d)
	}

	_, err = f.api.AddItem(ctx, owner, "prd_nope", 1)
	wantKind(t, "unknown product", err, errs.NotFound)
	if d := errs.Detail(err); !strings.Contains(d, "prd_nope") {
		t.Errorf("unknown product detail %q does not name the product", d)
	}
	for _, id := range []string{strings.Repeat("p", 500), "bad\x00id", "\xff"} {
		_, err = f.api.AddItem(ctx, owner, id, 1)
		wantKind(t, "impossible product id", err, errs.NotFound)
	}
	_, err = f.api.AddItem(ctx, owner, "", 1)
	wantKind(t, "empty product id", err, errs.Invalid)

	f.products.setDown(true)
	_, err = f.api.AddItem(ctx, owner, "prd_lamp", 1)
	wantKind(t, "catalog down", err, errs.Unavailable)
	f.products.setDown(false)

	wantCart(t, f.api, owner, before) // nothing above changed the cart
}

func testOrder(t *testing.T, f fixture) {
	ctx := context.Background()
	const owner = "user:order"
	// The clock does not move: order still follows the calls, not the ids.
	for _, id := range []string{"prd_sofa", "prd_lamp", "prd_mug"} {
		mustCart(t, "AddItem "+id)(f.api.AddItem(ctx, owner, id, 1))
	}
	f.clock.Advance(time.Minute)
	mustCart(t, "AddItem")(f.api.AddItem(ctx, owner, "prd_sofa", 1)) // existing line keeps its place
	mustCart(t, "AddItem")(f.api.AddItem(ctx, owner, "prd_book", 1))
	wantCart(t, f.api, owner, "prd_sofa×2@499.00 prd_lamp×1@24.99 prd_mug×1@8.50 prd_book×1@1.99 =1,033.48")
	// Removed and re-added goes to the end.
	mustCart(t, "RemoveItem")(f.api.RemoveItem(ctx, owner, "prd_sofa"))
	mustCart(t, "AddItem")(f.api.AddItem(ctx, owner, "prd_sofa", 1))
	wantCart(t, f.api, owner, "prd_lamp×1@24.99 prd_mug×1@8.50 prd_book×1@1.99 prd_sofa×1@499.00 =534.48")
}

func testSetQuantity(t *testing.T, f fixture) {
	ctx := context.Background()
	const owner = "user:set"
	mustCart(t, "AddItem")(f.api.AddItem(ctx, owner, "prd_lamp", 1))
	mustCart(t, "AddItem")(f.api.AddItem(ctx, owner, "prd_mug", 1))

	c := mustCart(t, "SetQuantity")(f.api.SetQuantity(ctx, owner, "prd_lamp", 4))
	if summary(c) != "prd_lamp×4@24.99 prd_mug×1@8.50 =108.46" {
		t.Errorf("after set: %s", summary(c))
	}
	// Setting is idempotent, and keeps the line's price and place.
	f.products.setPrice("prd_lamp", 1)
	c = mustCart(t, "SetQuantity again")(f.api.SetQuantity(ctx, owner, "prd_lamp", 4))
	if summary(c) != "prd_lamp×4@24.99 prd_mug×1@8.50 =108.46" {
		t.Errorf("after repeated set: %s", summary(c))
	}
	c = mustCart(t, "SetQuantity max")(f.api.SetQuantity(ctx, owner, "prd_mug", cart.MaxQuantity))
	if c.Items[1].Quantity != cart.MaxQuantity {
		t.Errorf("quantity = %d", c.Items[1].Quantity)
	}

	for _, qty := range []int{-1, cart.MaxQuantity + 1} {
		_, err := f.api.SetQuantity(ctx, owner, "prd_lamp", qty)
		wantKind(t, "SetQuantity "+strconv.Itoa(qty), err, errs.Invalid)
	}
	_, err := f.api.SetQuantity(ctx, owner, "prd_nope", 1)
	wantKind(t, "SetQuantity unknown product", err, errs.NotFound)
	_, err = f.api.SetQuantity(ctx, owner, "", 1)
	wantKind(t, "SetQuantity empty product", err, errs.Invalid)
	wantCart(t, f.api, owner, "prd_lamp×4@24.99 prd_mug×99@8.50 =941.46")

	// 0 removes the line; 0 for an absent line changes nothing.
	c = mustCart(t, "SetQuantity 0")(f.api.SetQuantity(ctx, owner, "prd_lamp", 0))
	if summary(c) != "prd_mug×99@8.50 =841.50" {
		t.Errorf("after set to 0: %s", summary(c))
	}
	c = mustCart(t, "SetQuantity 0 absent")(f.api.SetQuantity(ctx, owner, "prd_lamp", 0))
	if summary(c) != "prd_mug×99@8.50 =841.50" {
		t.Errorf("after set absent to 0: %s", summary(c))
	}
	// Above 0 for an absent line adds it at the current price.
	c = mustCart(t, "SetQuantity absent")(f.api.SetQuantity(ctx, owner, "prd_lamp", 2))
	if summary(c) != "prd_mug×99@8.50 prd_lamp×2@0.01 =841.52" {
		t.Errorf("after set of an absent line: %s", summary(c))
	}
}

// wantNotices compares notices as "code id requested/available: message".
func wantNotices(t *testing.T, what string, got []cart.Notice, want ...string) {
	t.Helper()
	var g []string
	for _, n := range got {
		g = append(g, fmt.Sprintf("%s %s %d/%d: %s", n.Code, n.ProductID, n.Requested, n.Available, n.Message))
		if n.Name == "" {
			t.Errorf("%s: notice %+v has no product name", what, n)
		}
	}
	if strings.Join(g, "\n") != strings.Join(want, "\n") {
		t.Errorf("%s: notices\n%s\nwant\n%s", what, strings.Join(g, "\n"), strings.Join(want, "\n"))
	}
}

// testStock checks that a cart never takes more than is in stock, says so
// naming the product, and refuses a sold-out product; and that lines the
// stock stopped covering after they were added are reported by CheckStock.
func testStock(t *testing.T, f fixture) {
	ctx := context.Background()
	const owner = "user:stock"
	c := mustCart(t, "AddItem")(f.api.AddItem(ctx, owner, "prd_lamp", 4))
	wantNotices(t, "AddItem within stock", c.Notices)

	// Adding beyond the stock (5) caps the line at the stock and says so.
	c = mustCart(t, "AddItem beyond stock")(f.api.AddItem(ctx, owner, "prd_lamp", 3))
	if summary(c) != "prd_lamp×5@24.99 =124.95" {
		t.Errorf("after a capped add: %s", summary(c))
	}
	wantNotices(t, "capped add", c.Notices, "quantity_capped prd_lamp 7/5: Only 5 of Desk lamp are in stock; your cart has 5.")
	// Adding when the line holds all there is changes nothing, and says so.
	c = mustCart(t, "AddItem at stock")(f.api.AddItem(ctx, owner, "prd_lamp", 1))
	wantNotices(t, "add at stock", c.Notices, "quantity_capped prd_lamp 6/5: Only 5 of Desk lamp are in stock; your cart has 5.")
	// Notices belong to the answer, not to the cart.
	if c := mustCart(t, "GetCart")(f.api.GetCart(ctx, owner)); len(c.Notices) != 0 {
		t.Errorf("stored cart has notices %+v", c.Notices)
	}

	// Setting caps likewise, for a line in the cart or a new one.
	c = mustCart(t, "SetQuantity beyond stock")(f.api.SetQuantity(ctx, owner, "prd_lamp", 9))
	wantNotices(t, "capped set", c.Notices, "quantity_capped prd_lamp 9/5: Only 5 of Desk lamp are in stock; your cart has 5.")
	c = mustCart(t, "SetQuantity new line beyond stock")(f.api.SetQuantity(ctx, owner, "prd_sofa", 7))
	wantNotices(t, "capped set of a new line", c.Notices, "quantity_capped prd_sofa 7/3: Only 3 of Sofa are in stock; your cart has 3.")
	c = mustCart(t, "SetQuantity within stock")(f.api.SetQuantity(ctx, owner, "prd_lamp", 3))
	wantNotices(t, "set within stock", c.Notices)
	if summary(c) != "prd_lamp×3@24.99 prd_sofa×3@499.00 =1,571.97" {
		t.Errorf("after capped sets: %s", summary(c))
	}

	// A sold-out product is refused, naming it (never its id), and nothing
	// changes.
	_, err := f.api.AddItem(ctx, owner, "prd_pen", 1)
	wantKind(t, "AddItem sold out", err, errs.Conflict)
	if d := errs.Detail(err); d != "Pen is sold out." {
		t.Errorf("sold-out detail %q", d)
	}
	_, err = f.api.SetQuantity(ctx, owner, "prd_pen", 1)
	wantKind(t, "SetQuantity sold out", err, errs.Conflict)

	// The stock falls after the lines were added (another customer bought
	// some): the cart keeps its lines, CheckStock reports the short ones.
	f.products.setStock("prd_lamp", 2)
	f.products.setStock("prd_sofa", 0)
	c = mustCart(t, "GetCart")(f.api.GetCart(ctx, owner))
	if summary(c) != "prd_lamp×3@24.99 prd_sofa×3@499.00 =1,571.97" || len(c.Notices) != 0 {
		t.Errorf("cart after the stock fell: %s %+v", summary(c), c.Notices)
	}
	checked := cart.CheckStock(c, f.products.list())
	wantNotices(t, "CheckStock", checked.Notices,
		"exceeds_stock prd_lamp 3/2: Only 2 of Desk lamp left in stock and your cart has 3; lower the quantity to check out.",
		"exceeds_stock prd_sofa 3/0: Sofa is sold out; remove it from your cart to check out.")
	if !checked.Short() || summary(checked) != summary(c) {
		t.Errorf("CheckStock changed the lines or is not short: %s", summary(checked))
	}
	_, err = f.api.AddItem(ctx, owner, "prd_sofa", 1)
	wantKind(t, "AddItem of a line sold out since", err, errs.Conflict)
	if d := errs.Detail(err); d != "Sofa is sold out." {
		t.Errorf("sold-out detail %q", d)
	}
	// Lowering the quantity caps at the new stock; removing needs no
	// catalog at all.
	c = mustCart(t, "SetQuantity lower")(f.api.SetQuantity(ctx, owner, "prd_lamp", 3))
	wantNotices(t, "set to the same quantity", c.Notices, "quantity_capped prd_lamp 3/2: Only 2 of Desk lamp are in stock; your cart has 2.")
	f.products.setDown(true)
	c = mustCart(t, "SetQuantity 0 with the catalog down")(f.api.SetQuantity(ctx, owner, "prd_sofa", 0))
	f.products.setDown(false)
	if summary(c) != "prd_lamp×2@24.99 =49.98" {
		t.Errorf("after lowering and removing: %s", summary(c))
	}
	if checked := cart.CheckStock(c, f.products.list()); checked.Short() || len(checked.Notices) != 0 {
		t.Errorf("CheckStock of a covered cart: %+v", checked.Notices)
	}
}

func testRemoveAndClear(t *testing.T, f fixture) {
	ctx := context.Background()
	const owner = "user:rm"
	mustCart(t, "AddItem")(f.api.AddItem(ctx, owner, "prd_lamp", 1))
	mustCart(t, "AddItem")(f.api.AddItem(ctx, owner, "prd_mug", 3))
	c := mustCart(t, "RemoveItem")(f.api.RemoveItem(ctx, owner, "prd_lamp"))
	if summary(c) != "prd_mug×3@8.50 =25.50" {
		t.Errorf("after remove: %s", summary(c))
	}
	for _, id := range []string{"prd_lamp", "prd_nope", strings.Repeat("x", 500)} {
		c = mustCart(t, "RemoveItem absent")(f.api.RemoveItem(ctx, owner, id))
		if summary(c) != "prd_mug×3@8.50 =25.50" {
			t.Errorf("after removing absent %q: %s", id, summary(c))
		}
	}
	_, err := f.api.RemoveItem(ctx, owner, "")
	wantKind(t, "RemoveItem empty product", err, errs.Invalid)

	if err := f.api.Clear(ctx, owner); err != nil {
		t.Fatal(err)
	}
	wantCart(t, f.api, owner, "=0.00")
	if err := f.api.Clear(ctx, owner); err != nil {
		t.Errorf("clearing an empty cart: %v", err)
	}
}

func testMerge(t *testing.T, f fixture) {
	ctx := context.Background()
	const anon, user = "anon:visitor", "user:acc_m"
	mustCart(t, "AddItem")(f.api.AddItem(ctx, anon, "prd_mug", 5))
	mustCart(t, "AddItem")(f.api.AddItem(ctx, anon, "prd_book", 5))
	mustCart(t, "AddItem")(f.api.AddItem(ctx, anon, "prd_lamp", 2))
	f.products.setPrice("prd_book", 3000)
	mustCart(t, "AddItem")(f.api.AddItem(ctx, user, "prd_book", 97))
	mustCart(t, "AddItem")(f.api.AddItem(ctx, user, "prd_sofa", 1))

	// Shared products add up (capped at MaxQuantity, at the user's price);
	// the others follow the user's lines in the visitor's order.
	const merged = "prd_book×99@30.00 prd_sofa×1@499.00 prd_mug×5@8.50 prd_lamp×2@24.99 =3,561.48"
	c := mustCart(t, "Merge")(f.api.Merge(ctx, anon, user))
	if summary(c) != merged {
		t.Errorf("merged cart = %s, want %s", summary(c), merged)
	}
	wantCart(t, f.api, user, merged)
	wantCart(t, f.api, anon, "=0.00")

	// Repeating the merge, merging an empty cart, or merging a cart into
	// itself changes nothing.
	for _, from := range []string{anon, "anon:never", user} {
		c = mustCart(t, "Merge "+from)(f.api.Merge(ctx, from, user))
		if summary(c) != merged {
			t.Errorf("after merging %q: %s", from, summary(c))
		}
	}

	for _, c := range []struct{ from, to, detail string }{
		{"", user, "from: owner is required"},
		{user, "", "to: owner is required"},
		{strings.Repeat("a", 201), user, "from: owner must be at most 200 bytes"},
		{user, "a\x01", "to: owner must be printable"},
	} {
		_, err := f.api.Merge(ctx, c.from, c.to)
		wantKind(t, "Merge invalid", err, errs.Invalid)
		if d := errs.Detail(err); !strings.Contains(d, c.detail) {
			t.Errorf("Merge(%q, %q) detail %q, want %q", c.from, c.to, d, c.detail)
		}
	}
	wantCart(t, f.api, user, merged)
}

func testOwners(t *testing.T, f fixture) {
	ctx := context.Background()
	// Owners are opaque: any printable text up to 200 bytes, each its own cart,
	// whatever it does to a URL.
	owners := []string{"a", "a/b", "a%2Fb", ".", "..", "x y?z#w", "ünïcode", strings.Repeat("o", 200)}
	for i, o := range owners {
		mustCart(t, "AddItem "+o)(f.api.AddItem(ctx, o, "prd_mug", i+1))
		mustCart(t, "SetQuantity "+o)(f.api.SetQuantity(ctx, o, "prd/odd ?#%", i+1))
	}
	for i, o := range owners {
		c := mustCart(t, "GetCart "+o)(f.api.GetCart(ctx, o))
		if len(c.Items) != 2 || c.Items[0].Quantity != i+1 || c.Items[1].ProductID != "prd/odd ?#%" {
			t.Errorf("cart of %q = %+v, want %d of each product", o, c, i+1)
		}
	}
	mustCart(t, "RemoveItem")(f.api.RemoveItem(ctx, "..", "prd/odd ?#%"))
	if err := f.api.Clear(ctx, "a/b"); err != nil {
		t.Fatal(err)
	}
	wantCart(t, f.api, "..", "prd_mug×5@8.50 =42.50")
	wantCart(t, f.api, "a/b", "=0.00")
	wantCart(t, f.api, "a", "prd_mug×1@8.50 prd/odd ?#%×1@0.01 =8.51")

	bad := []string{"", strings.Repeat("o", 201), "line\nbreak", "nul\x00", "\xff\xfe"}
	for _, o := range bad {
		_, err := f.api.GetCart(ctx, o)
		wantKind(t, "GetCart bad owner", err, errs.Invalid)
		_, err = f.api.AddItem(ctx, o, "prd_mug", 1)
		wantKind(t, "AddItem bad owner", err, errs.Invalid)
		_, err = f.api.SetQuantity(ctx, o, "prd_mug", 1)
		wantKind(t, "SetQuantity bad owner", err, errs.Invalid)
		_, err = f.api.RemoveItem(ctx, o, "prd_mug")
		wantKind(t, "RemoveItem bad owner", err, errs.Invalid)
		wantKind(t, "Clear bad owner", f.api.Clear(ctx, o), errs.Invalid)
	}
}

// TestHandlerRejectsBadBodies checks the HTTP layer's own validation, and that
// a rejected request changes nothing.
func TestHandlerRejectsBadBodies(t *testing.T) {
	svc, _, _ := newService(t)
	srv := httptest.NewServer(cart.NewHandler(svc))
	t.Cleanup(srv.Close)
	for _, c := range []struct {
		method, path, body string
		status             int
	}{
		{"POST", "/svc/cart/v1/carts/u1/items", `{"product_id":"prd_mug","quantity":1,"price":1}`, http.StatusBadRequest},
		{"POST", "/svc/cart/v1/carts/u1/items", `{"product_id":"prd_mug","quantity":"1"}`, http.StatusBadRequest},
		{"POST", "/svc/cart/v1/carts/u1/items", `{"product_id":"prd_mug","quantity":1}{}`, http.StatusBadRequest},
		{"PUT", "/svc/cart/v1/carts/u1/items/prd_mug", `{"quantity":1.5}`, http.StatusBadRequest},
		{"POST", "/svc/cart/v1/carts/u1/merge", `{}`, http.StatusUnprocessableEntity},
		{"POST", "/svc/cart/v1/carts/u1/items", `{"product_id":"prd_nope","quantity":1}`, http.StatusNotFound},
		{"POST", "/svc/cart/v1/carts/u1/items", `{"product_id":"prd_pen","quantity":1}`, http.StatusConflict},
		{"POST", "/svc/cart/v1/carts/u1/lock", `{}`, http.StatusUnprocessableEntity},
		{"POST", "/svc/cart/v1/carts/u1/lock", `{"lock_id":"x","lines":[]}`, http.StatusBadRequest},
		{"POST", "/svc/cart/v1/carts/u1/unlock", `{"lock_id":1}`, http.StatusBadRequest},
		{"POST", "/svc/cart/v1/carts/u1/complete", `{"lock_id":"never"}`, http.StatusConflict},
	} {
		req, _ := http.NewRequest(c.method, srv.URL+c.path, strings.NewReader(c.body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.status || resp.Header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s %s %s: %d %s, want %d problem+json", c.method, c.path, c.body, resp.StatusCode, resp.Header.Get("Content-Type"), c.status)
		}
	}
	if c, err := svc.GetCart(context.Background(), "u1"); err != nil || len(c.Items) != 0 {
		t.Errorf("cart after rejected requests = %+v, %v; want empty", c, err)
	}
}

func testLock(t *testing.T, f fixture) {
	ctx := context.Background()
	const owner = "user:acc_lock"
	mustCart(t, "AddItem")(f.api.AddItem(ctx, owner, "prd_lamp", 2))
	mustCart(t, "AddItem")(f.api.AddItem(ctx, owner, "prd_mug", 1))
	const snapshot = "prd_lamp×2@24.99 prd_mug×1@8.50 =58.48"

	snap := mustCart(t, "Lock")(f.api.Lock(ctx, owner, "chk_1"))
	if summary(snap) != snapshot || snap.Version <= 0 {
		t.Errorf("Lock = %s (version %d), want %s with a version", summary(snap), snap.Version, snapshot)
	}
	// The cart can still change; a repeat returns the same snapshot; another
	// checkout is refused.
	mustCart(t, "AddItem while locked")(f.api.AddItem(ctx, owner, "prd_lamp", 1))
	mustCart(t, "AddItem while locked")(f.api.AddItem(ctx, owner, "prd_book", 1))
	again := mustCart(t, "Lock again")(f.api.Lock(ctx, owner, "chk_1"))
	if summary(again) != snapshot || again.Version != snap.Version {
		t.Errorf("repeated Lock = %s (version %d), want %s (version %d)", summary(again), again.Version, snapshot, snap.Version)
	}
	_, err := f.api.Lock(ctx, owner, "chk_2")
	wantKind(t, "Lock by another checkout", err, errs.Conflict)
	if d := errs.Detail(err); d != "this cart is already being checked out" {
		t.Errorf("conflicting Lock detail %q", d)
	}
	// GetCart shows the live cart, without a version.
	if c := mustCart(t, "GetCart")(f.api.GetCart(ctx, owner)); c.Version != 0 || len(c.Items) != 3 {
		t.Errorf("GetCart while locked = %+v", c)
	}

	// Completing takes out exactly the snapshot, once.
	const left = "prd_lamp×1@24.99 prd_book×1@1.99 =26.98"
	c := mustCart(t, "CompleteCheckout")(f.api.CompleteCheckout(ctx, owner, "chk_1"))
	if summary(c) != left {
		t.Errorf("CompleteCheckout = %s, want %s", summary(c), left)
	}
	c = mustCart(t, "CompleteCheckout again")(f.api.CompleteCheckout(ctx, owner, "chk_1"))
	if summary(c) != left {
		t.Errorf("repeated CompleteCheckout = %s, want %s", summary(c), left)
	}
	wantCart(t, f.api, owner, left)
	_, err = f.api.Lock(ctx, owner, "chk_1")
	wantKind(t, "Lock after Complete", err, errs.Conflict)
	if d := errs.Detail(err); d != "this checkout has ended" {
		t.Errorf("late Lock detail %q", d)
	}

	// Unlock frees the cart, is idempotent, and refuses a late Lock.
	mustCart(t, "Lock chk_2")(f.api.Lock(ctx, owner, "chk_2"))
	for i := 0; i < 2; i++ {
		if err := f.api.Unlock(ctx, owner, "chk_2"); err != nil {
			t.Fatalf("Unlock: %v", err)
		}
	}
	_, err = f.api.Lock(ctx, owner, "chk_2")
	wantKind(t, "Lock after Unlock", err, errs.Conflict)
	_, err = f.api.CompleteCheckout(ctx, owner, "chk_2")
	wantKind(t, "Complete after Unlock", err, errs.Conflict)
	wantCart(t, f.api, owner, left)
	// A compensation ahead of its Lock wins.
	if err := f.api.Unlock(ctx, owner, "chk_3"); err != nil {
		t.Fatal(err)
	}
	_, err = f.api.Lock(ctx, owner, "chk_3")
	wantKind(t, "Lock after an early Unlock", err, errs.Conflict)

	// A stale lock is taken over.
	mustCart(t, "Lock chk_4")(f.api.Lock(ctx, owner, "chk_4"))
	f.clock.Advance(cart.StaleLockAge)
	c = mustCart(t, "Lock chk_5")(f.api.Lock(ctx, owner, "chk_5"))
	if summary(c) != left {
		t.Errorf("takeover snapshot = %s, want %s", summary(c), left)
	}
	_, err = f.api.CompleteCheckout(ctx, owner, "chk_4")
	wantKind(t, "Complete of a checkout taken over", err, errs.Conflict)

	// An empty cart locks, with no lines.
	empty := mustCart(t, "Lock empty")(f.api.Lock(ctx, "anon:empty", "chk_e"))
	if empty.Items == nil || len(empty.Items) != 0 || empty.Total != money.USD(0) {
		t.Errorf("empty snapshot = %+v", empty)
	}
}

func testLockInvalid(t *testing.T, f fixture) {
	ctx := context.Background()
	for _, c := range []struct{ owner, lockID string }{
		{"", "chk"}, {strings.Repeat("o", 201), "chk"}, {"a\x00", "chk"},
		{"user:x", ""}, {"user:x", strings.Repeat("l", cart.MaxLockIDLen+1)}, {"user:x", "bad\nid"},
	} {
		_, err := f.api.Lock(ctx, c.owner, c.lockID)
		wantKind(t, fmt.Sprintf("Lock(%q, %q)", c.owner, c.lockID), err, errs.Invalid)
		wantKind(t, "Unlock", f.api.Unlock(ctx, c.owner, c.lockID), errs.Invalid)
		_, err = f.api.CompleteCheckout(ctx, c.owner, c.lockID)
		wantKind(t, "CompleteCheckout", err, errs.Invalid)
	}
	// Owners and lock ids that are odd in a URL or JSON work.
	for _, o := range []string{".", "..", "a/b", "x y?z#w"} {
		mustCart(t, "AddItem")(f.api.AddItem(ctx, o, "prd_mug", 1))
		mustCart(t, "Lock "+o)(f.api.Lock(ctx, o, "id/with ?#% and \"quotes\""))
		c := mustCart(t, "Complete "+o)(f.api.CompleteCheckout(ctx, o, "id/with ?#% and \"quotes\""))
		if len(c.Items) != 0 {
			t.Errorf("cart %q after checkout = %s", o, summary(c))
		}
	}
}

// TestRunCleanup checks the loop deletes abandoned visitors' carts and stops
// with its context.
func TestRunCleanup(t *testing.T) {
	svc, _, clk := newService(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	mustCart(t, "AddItem")(svc.AddItem(ctx, "anon:gone", "prd_mug", 1))
	mustCart(t, "AddItem")(svc.AddItem(ctx, "user:kept", "prd_mug", 1))
	clk.Advance(31 * 24 * time.Hour)
	done := make(chan struct{})
	go func() {
		defer close(done)
		svc.RunCleanup(ctx, 5*time.Millisecond, 30*24*time.Hour)
	}()
	testenv.CheckFor(t, 10*time.Second, func() error {
		c, err := svc.GetCart(ctx, "anon:gone")
		if err == nil && len(c.Items) != 0 {
			err = fmt.Errorf("abandoned cart still holds %s", summary(c))
		}
		return err
	})
	wantCart(t, svc, "user:kept", "prd_mug×1@8.50 =8.50")
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("RunCleanup did not return after its context ended")
	}
}

// TestCheckStock checks CheckStock on its own: a product the catalog no
// longer lists counts as sold out, lines within stock get no notice, and
// the notices a cart carries are kept.
func TestCheckStock(t *testing.T) {
	capped := cart.Notice{Code: cart.NoticeCapped, ProductID: "p1", Name: "One", Requested: 4, Available: 2, Message: "Only 2 of One are in stock; your cart has 2."}
	c := cart.Cart{
		Items: []cart.Item{
			{ProductID: "p1", Name: "One", Quantity: 2},
			{ProductID: "p2", Name: "Two", Quantity: 1},
			{ProductID: "gone", Name: "Gone", Quantity: 1},
		},
		Notices: []cart.Notice{capped},
	}
	got := cart.CheckStock(c, []catalog.Product{{ID: "p1", Stock: 2}, {ID: "p2", Stock: 0}})
	wantNotices(t, "CheckStock", got.Notices,
		"quantity_capped p1 4/2: Only 2 of One are in stock; your cart has 2.",
		"exceeds_stock p2 1/0: Two is sold out; remove it from your cart to check out.",
		"exceeds_stock gone 1/0: Gone is sold out; remove it from your cart to check out.")
	if !got.Short() || len(c.Notices) != 1 {
		t.Errorf("Short = %v; the cart passed in has %d notices, want 1 (unchanged)", got.Short(), len(c.Notices))
	}
	one := cart.CheckStock(cart.Cart{Items: []cart.Item{{ProductID: "p1", Name: "One", Quantity: 2}}}, []catalog.Product{{ID: "p1", Stock: 1}})
	wantNotices(t, "CheckStock of one left", one.Notices,
		"exceeds_stock p1 2/1: Only 1 of One left in stock and your cart has 2; lower the quantity to check out.")
}
