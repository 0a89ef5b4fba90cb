package checkout_test

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/globomantics/globomantics/internal/cart"
	"github.com/globomantics/globomantics/internal/catalog"
	"github.com/globomantics/globomantics/internal/checkout"
	"github.com/globomantics/globomantics/internal/order"
	"github.com/globomantics/globomantics/internal/payment"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/money"
	"github.com/globomantics/globomantics/internal/shipping"
)

// The fakes below keep state and follow the contracts of the real services
// (idempotency, state machines, error kinds) so that checkout's
// compensations can be checked against what a real service would hold.
// Every fake can be told to fail a method: before doing the work, or after
// doing it (an answer lost on the way back).

type fault struct {
	err   error
	times int // how many calls fail; -1 for all
	after bool
}

type faults struct {
	mu    sync.Mutex
	m     map[string]*fault
	calls map[string]int
}

// inject makes the next `times` calls of method fail with err (-1: all of
// them); with after, each call does its work and then fails.
func (f *faults) inject(method string, err error, times int, after bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil {
		f.m = map[string]*fault{}
	}
	f.m[method] = &fault{err: err, times: times, after: after}
}

// enter counts a call and returns the injected error, if any, and whether it
// applies after the work.
func (f *faults) enter(method string) (error, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.calls == nil {
		f.calls = map[string]int{}
	}
	f.calls[method]++
	x := f.m[method]
	if x == nil || x.times == 0 {
		return nil, false
	}
	if x.times > 0 {
		x.times--
	}
	return x.err, x.after
}

func (f *faults) count(method string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[method]
}

func (f *faults) total() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		n += c
	}
	return n
}

// call runs work under the method's injected fault.
func call[T any](f *faults, method string, work func() (T, error)) (T, error) {
	var zero T
	ferr, after := f.enter(method)
	if ferr != nil && !after {
		return zero, ferr
	}
	v, err := work()
	if ferr != nil {
		return zero, ferr
	}
	return v, err
}

// fakeCarts is the cart service.
type fakeCarts struct {
	faults
	mu    sync.Mutex
	carts map[string][]cart.Item
}

var _ checkout.Carts = (*fakeCarts)(nil)

func (c *fakeCarts) GetCart(_ context.Context, owner string) (cart.Cart, error) {
	return call(&c.faults, "GetCart", func() (cart.Cart, error) {
		c.mu.Lock()
		defer c.mu.Unlock()
		out := cart.Cart{Items: slices.Clone(c.carts[owner]), Total: money.USD(0)}
		if out.Items == nil {
			out.Items = []cart.Item{}
		}
		for _, it := range out.Items {
			out.Total = out.Total.Add(it.LineTotal)
		}
		return out, nil
	})
}

func (c *fakeCarts) Clear(_ context.Context, owner string) error {
	_, err := call(&c.faults, "Clear", func() (struct{}, error) {
		c.mu.Lock()
		defer c.mu.Unlock()
		delete(c.carts, owner)
		return struct{}{}, nil
	})
	return err
}

func (c *fakeCarts) items(owner string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.carts[owner])
}

// fakeInventory is the catalog's products and stock.
type fakeInventory struct {
	faults
	mu           sync.Mutex
	products     map[string]catalog.Product
	reservations map[string][]catalog.Line
	released     map[string]bool
}

var _ checkout.Inventory = (*fakeInventory)(nil)

func (v *fakeInventory) GetProducts(_ context.Context, ids []string) ([]catalog.Product, error) {
	return call(&v.faults, "GetProducts", func() ([]catalog.Product, error) {
		v.mu.Lock()
		defer v.mu.Unlock()
		out := []catalog.Product{}
		for _, id := range ids {
			if p, ok := v.products[id]; ok {
				out = append(out, p)
			}
		}
		return out, nil
	})
}

func (v *fakeInventory) ReserveStock(_ context.Context, id string, lines []catalog.Line) error {
	_, err := call(&v.faults, "ReserveStock", func() (struct{}, error) {
		v.mu.Lock()
		defer v.mu.Unlock()
		if _, ok := v.reservations[id]; ok {
			return struct{}{}, nil // once per reservation id
		}
		for _, l := range lines {
			p, ok := v.products[l.ProductID]
			switch {
			case !ok:
				return struct{}{}, errs.E(errs.NotFound, errs.Msg("product %s not found", l.ProductID))
			case l.Quantity < 1:
				return struct{}{}, errs.E(errs.Invalid, errs.Msg("quantity must be at least 1"))
			case p.Stock < l.Quantity:
				return struct{}{}, errs.E(errs.Conflict, errs.Msg("not enough stock of %s", p.Name))
			}
		}
		for _, l := range lines {
			p := v.products[l.ProductID]
			p.Stock -= l.Quantity
			v.products[l.ProductID] = p
		}
		v.reservations[id] = slices.Clone(lines)
		return struct{}{}, nil
	})
	return err
}

func (v *fakeInventory) ReleaseStock(_ context.Context, id string) error {
	_, err := call(&v.faults, "ReleaseStock", func() (struct{}, error) {
		v.mu.Lock()
		defer v.mu.Unlock()
		lines, ok := v.reservations[id]
		if !ok || v.released[id] {
			return struct{}{}, nil
		}
		for _, l := range lines {
			p := v.products[l.ProductID]
			p.Stock += l.Quantity
			v.products[l.ProductID] = p
		}
		v.released[id] = true
		return struct{}{}, nil
	})
	return err
}

func (v *fakeInventory) stock() map[string]int {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := map[string]int{}
	for id, p := range v.products {
		out[id] = p.Stock
	}
	return out
}

func (v *fakeInventory) remove(id string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	delete(v.products, id)
}

// The payment service's test cards.
const (
	cardOK        = "4242424242424242"
	cardDeclined  = "4000000000000002"
	cardTransient = "4000000000000119"
)

// fakePayments is the payment service's simulated processor.
type fakePayments struct {
	faults
	mu      sync.Mutex
	byID    map[string]*payment.Payment
	byOrder map[string]string
	// hook, when set, runs at the start of every Authorize.
	hook func()
}

var _ checkout.Payments = (*fakePayments)(nil)

func (p *fakePayments) Authorize(_ context.Context, r payment.AuthorizeRequest) (payment.Payment, error) {
	p.mu.Lock()
	hook := p.hook
	p.mu.Unlock()
	if hook != nil {
		hook()
	}
	return call(&p.faults, "Authorize", func() (payment.Payment, error) {
		p.mu.Lock()
		defer p.mu.Unlock()
		if id, ok := p.byOrder[r.OrderID]; ok {
			existing := *p.byID[id]
			if existing.Status == payment.StatusDeclined {
				return payment.Payment{}, errs.E(errs.Declined, errs.Msg("card declined"))
			}
			return existing, nil
		}
		if r.Amount.Amount <= 0 {
			return payment.Payment{}, errs.E(errs.Invalid, errs.Msg("amount must be positive"))
		}
		if r.Card.Number == cardTransient {
			return payment.Payment{}, errs.E(errs.Unavailable, errs.Msg("payment processor unavailable, try again"))
		}
		pay := &payment.Payment{ID: fmt.Sprintf("pay_%d", len(p.byID)+1), OrderID: r.OrderID, Amount: r.Amount,
			Status: payment.StatusAuthorized, CardLast4: r.Card.Number[len(r.Card.Number)-4:]}
		if r.Card.Number == cardDeclined {
			pay.Status = payment.StatusDeclined
		}
		p.byID[pay.ID] = pay
		p.byOrder[r.OrderID] = pay.ID
		if pay.Status == payment.StatusDeclined {
			return payment.Payment{}, errs.E(errs.Declined, errs.Msg("card declined"))
		}
		return *pay, nil
	})
}

// move changes a payment's status: from "from" to "to", a no-op when it is
// in one of noop, errs.Conflict otherwise.
func (p *fakePayments) move(method, id, from, to string, noop ...string) (payment.Payment, error) {
	return call(&p.faults, method, func() (payment.Payment, error) {
		p.mu.Lock()
		defer p.mu.Unlock()
		pay, ok := p.byID[id]
		switch {
		case !ok:
			return payment.Payment{}, errs.E(errs.NotFound, errs.Msg("payment not found"))
		case pay.Status == from:
			pay.Status = to
		case !slices.Contains(noop, pay.Status):
			return payment.Payment{}, errs.E(errs.Conflict, errs.Msg("payment is %s", pay.Status))
		}
		return *pay, nil
	})
}

func (p *fakePayments) Capture(_ context.Context, id string) (payment.Payment, error) {
	return p.move("Capture", id, payment.StatusAuthorized, payment.StatusCaptured, payment.StatusCaptured)
}

func (p *fakePayments) Void(_ context.Context, id string) (payment.Payment, error) {
	return p.move("Void", id, payment.StatusAuthorized, payment.StatusVoided, payment.StatusVoided, payment.StatusDeclined)
}

func (p *fakePayments) Refund(_ context.Context, id string) (payment.Payment, error) {
	return p.move("Refund", id, payment.StatusCaptured, payment.StatusRefunded, payment.StatusRefunded)
}

func (p *fakePayments) PaymentForOrder(_ context.Context, orderID string) (payment.Payment, error) {
	return call(&p.faults, "PaymentForOrder", func() (payment.Payment, error) {
		pay, ok := p.forOrder(orderID)
		if !ok {
			return payment.Payment{}, errs.E(errs.NotFound, errs.Msg("payment not found"))
		}
		return pay, nil
	})
}

// statuses lists the status of every payment made.
func (p *fakePayments) statuses() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, pay := range p.byID {
		out = append(out, pay.Status)
	}
	slices.Sort(out)
	return out
}

func (p *fakePayments) forOrder(orderID string) (payment.Payment, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	id, ok := p.byOrder[orderID]
	if !ok {
		return payment.Payment{}, false
	}
	return *p.byID[id], true
}

// fakeShipments is the shipping service.
type fakeShipments struct {
	faults
	mu      sync.Mutex
	byOrder map[string]*shipping.Shipment
	byID    map[string]*shipping.Shipment
}

var _ checkout.Shipments = (*fakeShipments)(nil)

func checkAddr(a shipping.Address, items int) error {
	if a.Name == "" || a.Line1 == "" || a.City == "" || a.PostalCode == "" || len(a.Country) != 2 {
		return errs.E(errs.Invalid, errs.Msg("address is incomplete"))
	}
	if items < 1 {
		return errs.E(errs.Invalid, errs.Msg("nothing to ship"))
	}
	return nil
}

func quote(items int) money.Money { return money.USD(499 + 100*int64(items)) }

func (s *fakeShipments) Quote(_ context.Context, a shipping.Address, items int) (money.Money, error) {
	return call(&s.faults, "Quote", func() (money.Money, error) {
		if err := checkAddr(a, items); err != nil {
			return money.Money{}, err
		}
		return quote(items), nil
	})
}

func (s *fakeShipments) CreateShipment(_ context.Context, orderID string, a shipping.Address, items int) (shipping.Shipment, error) {
	return call(&s.faults, "CreateShipment", func() (shipping.Shipment, error) {
		if err := checkAddr(a, items); err != nil {
			return shipping.Shipment{}, err
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if sh, ok := s.byOrder[orderID]; ok {
			return *sh, nil
		}
		n := len(s.byID) + 1
		sh := &shipping.Shipment{ID: fmt.Sprintf("shp_%d", n), OrderID: orderID, Status: shipping.StatusCreated,
			TrackingNumber: fmt.Sprintf("1ZGLOBO%04d", n), Cost: quote(items), Address: a}
		s.byOrder[orderID], s.byID[sh.ID] = sh, sh
		return *sh, nil
	})
}

func (s *fakeShipments) CancelShipment(_ context.Context, id string) (shipping.Shipment, error) {
	return call(&s.faults, "CancelShipment", func() (shipping.Shipment, error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		sh, ok := s.byID[id]
		if !ok {
			return shipping.Shipment{}, errs.E(errs.NotFound, errs.Msg("shipment not found"))
		}
		sh.Status = shipping.StatusCancelled
		return *sh, nil
	})
}

func (s *fakeShipments) statuses() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, sh := range s.byID {
		out = append(out, sh.Status)
	}
	slices.Sort(out)
	return out
}

// faultyOrders is the real order service with injectable faults.
type faultyOrders struct {
	faults
	svc *order.Service
}

var _ checkout.Orders = (*faultyOrders)(nil)

func (o *faultyOrders) CreateOrder(ctx context.Context, n order.NewOrder) (order.Order, error) {
	return call(&o.faults, "CreateOrder", func() (order.Order, error) { return o.svc.CreateOrder(ctx, n) })
}

func (o *faultyOrders) GetOrder(ctx context.Context, id string) (order.Order, error) {
	return call(&o.faults, "GetOrder", func() (order.Order, error) { return o.svc.GetOrder(ctx, id) })
}

func (o *faultyOrders) SetPayment(ctx context.Context, id string, p order.PaymentInfo) (order.Order, error) {
	return call(&o.faults, "SetPayment", func() (order.Order, error) { return o.svc.SetPayment(ctx, id, p) })
}

func (o *faultyOrders) Confirm(ctx context.Context, id string, p order.PaymentInfo, s order.ShipmentInfo) (order.Order, error) {
	return call(&o.faults, "Confirm", func() (order.Order, error) { return o.svc.Confirm(ctx, id, p, s) })
}

func (o *faultyOrders) Cancel(ctx context.Context, id, reason string, p order.PaymentInfo) (order.Order, error) {
	return call(&o.faults, "Cancel", func() (order.Order, error) { return o.svc.Cancel(ctx, id, reason, p) })
}
