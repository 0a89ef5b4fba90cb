package cart

import (
	"fmt"

	"github.com/globomantics/globomantics/internal/catalog"
	"github.com/globomantics/globomantics/internal/platform/errs"
)

// Stock is only reserved when an order is placed (the checkout reserves it
// in the catalog), so a cart cannot hold stock back. What it can do is never
// take more than is on the shelf when a quantity is chosen (AddItem and
// SetQuantity cap it and say so), and tell, when it is shown, which lines
// the stock no longer covers (CheckStock), so that a customer does not first
// learn it at checkout.

// CapToStock is the quantity of p a cart line may hold when want was asked
// for: at most p's stock. notice, naming p by its name, is set when that is
// less than want. errs.Conflict, naming p, when p is sold out. It is the
// rule AddItem and SetQuantity apply.
func CapToStock(p catalog.Product, want int) (qty int, notice *Notice, err error) {
	if p.Stock <= 0 {
		return 0, nil, soldOut(p.Name)
	}
	if want <= p.Stock {
		return want, nil, nil
	}
	return p.Stock, &Notice{
		Code: NoticeCapped, ProductID: p.ID, Name: p.Name, Requested: want, Available: p.Stock,
		Message: fmt.Sprintf("Only %d of %s %s in stock; your cart has %d.", p.Stock, p.Name, are(p.Stock), p.Stock),
	}, nil
}

// soldOut is the error of a quantity asked of a sold-out product.
func soldOut(name string) error {
	return errs.E(errs.Conflict, errs.Msg("%s is sold out.", name))
}

// are is the verb of "Only n of Lamp are in stock".
func are(n int) string {
	if n == 1 {
		return "is"
	}
	return "are"
}

// CheckStock returns c with a NoticeShort for every line that holds more
// than its product's stock in products (the catalog's current products; a
// line whose product is not among them counts as sold out). Notices c
// already carries are kept. It does not change the lines: the customer
// decides what to do.
func CheckStock(c Cart, products []catalog.Product) Cart {
	stock := make(map[string]int, len(products))
	for _, p := range products {
		stock[p.ID] = p.Stock
	}
	var out []Notice
	for _, it := range c.Items {
		n := max(stock[it.ProductID], 0)
		if it.Quantity <= n {
			continue
		}
		msg := fmt.Sprintf("%s is sold out; remove it from your cart to check out.", it.Name)
		if n > 0 {
			msg = fmt.Sprintf("Only %d of %s left in stock and your cart has %d; lower the quantity to check out.", n, it.Name, it.Quantity)
		}
		out = append(out, Notice{Code: NoticeShort, ProductID: it.ProductID, Name: it.Name, Requested: it.Quantity, Available: n, Message: msg})
	}
	if len(out) > 0 {
		c.Notices = append(append([]Notice(nil), c.Notices...), out...)
	}
	return c
}

// Short reports whether some line of c holds more than is in stock, by the
// NoticeShort notices CheckStock left on it.
func (c Cart) Short() bool {
	for _, n := range c.Notices {
		if n.Code == NoticeShort {
			return true
		}
	}
	return false
}
