package checkout

import (
	"context"
	"errors"
	"time"

	"github.com/globomantics/globomantics/internal/cart"
	"github.com/globomantics/globomantics/internal/catalog"
	"github.com/globomantics/globomantics/internal/order"
	"github.com/globomantics/globomantics/internal/payment"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/money"
	"github.com/globomantics/globomantics/internal/shipping"
)

// step is one step of the checkout saga: what it does, and the
// compensation that undoes it. Every action and compensation is keyed by
// the saga's id (which is the order id), so the service it calls applies it
// at most once however often it is sent; and every compensation is safe
// when its action never happened or happens late: it leaves a tombstone
// that makes the late action fail (see each service's API).
type step struct {
	name    string
	service string // the service it calls, for injected latency
	do      func(ctx context.Context, r *runner) error
	// undo is the compensation, "" when the step has none of its own.
	undo        string
	undoService string
	compensate  func(ctx context.Context, r *runner) error
	// deadline is how long the step is retried before the saga gives up
	// and rolls back; steps after the pivot retry until they succeed.
	deadline time.Duration
	// checkpoint: the saga log is written as soon as the step is done.
	// The other steps' completions are written with the next checkpoint
	// (or the next failure): if the driver dies before that, the next one
	// does them again, which every step allows (each is keyed by the saga
	// id). A checkpoint is where something must not be lost: the priced
	// cart, the authorization (after it the card is no longer needed),
	// the pivot.
	checkpoint bool
}

// The steps, in order. Capture is the pivot: before it every failure rolls
// the saga back, after it the saga only moves forward.
var steps = []step{
	{name: "lock_cart", service: "cart", do: lockCart, undo: "unlock_cart", undoService: "cart", compensate: unlockCart, deadline: 20 * time.Second, checkpoint: true},
	{name: "reserve_stock", service: "catalog", do: reserveStock, undo: "release_stock", undoService: "catalog", compensate: releaseStock, deadline: 20 * time.Second},
	{name: "authorize_payment", service: "payment", do: authorize, undo: "void_payment", undoService: "payment", compensate: voidPayment, deadline: 30 * time.Second, checkpoint: true},
	{name: "create_order", service: "order", do: createOrder, undo: "cancel_order", undoService: "order", compensate: cancelOrder, deadline: 20 * time.Second},
	{name: "create_shipment", service: "shipping", do: createShipment, undo: "cancel_shipment", undoService: "shipping", compensate: cancelShipment, deadline: 20 * time.Second},
	// Released with the reservation if the saga rolls back (ReleaseStock
	// gives back committed units too).
	{name: "commit_stock", service: "catalog", do: commitStock, deadline: 20 * time.Second},
	{name: "capture_payment", service: "payment", do: capture, deadline: 30 * time.Second, checkpoint: true},
	{name: "confirm_order", service: "order", do: confirmOrder},
	{name: "complete_cart", service: "cart", do: completeCart},
}

// pivot is the index of the capture step.
var pivot = stepIndex("capture_payment")

func stepIndex(name string) int {
	for i, s := range steps {
		if s.name == name {
			return i
		}
	}
	panic("checkout: no step " + name)
}

// StepNames lists the saga's steps and compensations, the points where
// faults can be injected ("before:<name>", "after:<name>").
func StepNames() []string {
	var out []string
	for _, s := range steps {
		out = append(out, s.name)
	}
	for i := len(steps) - 1; i >= 0; i-- {
		if steps[i].undo != "" {
			out = append(out, steps[i].undo)
		}
	}
	return out
}

// reservationHold is how long reserved stock stays reserved: far longer
// than any saga takes to reach its pivot, after which the stock is
// committed. A reservation left by a saga that somehow never ends is
// released by the catalog when it expires.
const reservationHold = 30 * time.Minute

// runner is what a step works with: the service's dependencies, the saga
// (whose Data the step fills in) and, only in the instance that accepted
// the checkout, the card.
type runner struct {
	s    *Service
	saga *Saga
	card *payment.Card
	dead bool // crashed (injected) or fenced: must write nothing more
	// pending holds the records of steps done since the last write, which
	// the next write appends.
	pending []StepRecord
}

// permanent marks a step error that is not worth retrying even though its
// kind is errs.Unavailable (a recovered saga without the card).
type permanent struct{ error }

func (p permanent) Unwrap() error { return p.error }

func isPermanent(err error) bool {
	var p permanent
	return errors.As(err, &p)
}

func lockCart(ctx context.Context, r *runner) error {
	g := r.saga
	crt, err := r.s.carts.Lock(ctx, CartOwner(g.UserID), g.ID)
	if err != nil {
		return err
	}
	if len(crt.Items) == 0 {
		return errs.E(errs.Invalid, errs.Msg("cart is empty"))
	}
	q, lines, units, err := r.s.quote(ctx, crt.Items, g.Data.Address)
	if err != nil {
		return err
	}
	g.Data.CartVersion = crt.Version
	g.Data.Items, g.Data.Lines, g.Data.Units = q.Items, lines, units
	g.Data.ShippingCost, g.Data.Total = q.Shipping, q.Total
	return nil
}

// quote prices items from the catalog and ships them to addr: what the
// saga charges (lockCart) and what QuoteOrder shows, by one rule.
func (s *Service) quote(ctx context.Context, items []cart.Item, addr shipping.Address) (Quote, []catalog.Line, int, error) {
	priced, lines, units, err := s.price(ctx, cart.Cart{Items: items})
	if err != nil {
		return Quote{}, nil, 0, err
	}
	cost, err := s.ship.Quote(ctx, addr, units)
	if err != nil {
		return Quote{}, nil, 0, err
	}
	sub := money.USD(0)
	for _, it := range priced {
		sub = sub.Add(it.LineTotal)
	}
	return Quote{Items: priced, Subtotal: sub, Shipping: cost, Total: sub.Add(cost)}, lines, units, nil
}

func unlockCart(ctx context.Context, r *runner) error {
	return r.s.carts.Unlock(ctx, CartOwner(r.saga.UserID), r.saga.ID)
}

func reserveStock(ctx context.Context, r *runner) error {
	err := r.s.inv.ReserveStock(ctx, r.saga.ID, r.saga.Data.Lines, reservationHold)
	if errs.Is(errs.NotFound, err) {
		return errs.E(errs.Conflict, errs.Msg("a product in your cart is no longer sold"), err)
	}
	return err
}

func releaseStock(ctx context.Context, r *runner) error {
	return r.s.inv.ReleaseStock(ctx, r.saga.ID)
}

// authorize holds the total on the card. A saga resumed by recovery has no
// card (it is never stored): it finds the authorization the first driver
// made, if its answer was lost, or rolls back.
func authorize(ctx context.Context, r *runner) error {
	g := r.saga
	var (
		p   payment.Payment
		err error
	)
	if r.card != nil {
		p, err = r.s.pay.Authorize(ctx, payment.AuthorizeRequest{OrderID: g.ID, Amount: g.Data.Total, Card: *r.card})
	} else {
		p, err = r.s.pay.PaymentForOrder(ctx, g.ID)
		switch {
		case errs.Is(errs.NotFound, err):
			return permanent{errs.E(errs.Unavailable, errs.Msg("the checkout was interrupted before the payment was made; please try again"))}
		case err == nil && p.Status == payment.StatusDeclined:
			err = errs.E(errs.Declined, errs.Msg("the card was declined"))
		case err == nil && p.Status != payment.StatusAuthorized && p.Status != payment.StatusCaptured:
			err = errs.E(errs.Conflict, errs.Msg("the payment was cancelled"))
		}
	}
	if err != nil {
		return err
	}
	g.Data.PaymentID = p.ID
	g.Data.Payment = order.PaymentInfo{ID: p.ID, Status: p.Status}
	return nil
}

func voidPayment(ctx context.Context, r *runner) error {
	g := r.saga
	p, err := r.s.pay.VoidForOrder(ctx, g.ID)
	if err != nil {
		return err
	}
	if p.ID != "" {
		g.Data.Payment = order.PaymentInfo{ID: p.ID, Status: p.Status}
	} else if g.Data.PaymentID != "" {
		g.Data.Payment.Status = payment.StatusVoided
	}
	return nil
}

func createOrder(ctx context.Context, r *runner) error {
	g := r.saga
	o, err := r.s.orders.CreateOrder(ctx, order.NewOrder{
		ID: g.ID, UserID: g.UserID, Email: g.Data.Email, Items: g.Data.Items,
		ShippingCost: g.Data.ShippingCost, ShippingAddress: g.Data.Address,
	})
	if err == nil {
		g.Data.OrderCreated, g.Data.OrderNumber = true, o.Number
	}
	return err
}

func cancelOrder(ctx context.Context, r *runner) error {
	g := r.saga
	pi := g.Data.Payment
	if pi.ID != "" && pi.Status == payment.StatusAuthorized {
		// The authorization is voided next (compensations run in
		// reverse): the order records how its payment ends.
		pi.Status = payment.StatusVoided
	}
	reason := g.Data.Reason
	if reason == "" {
		reason = "checkout failed"
	}
	_, err := r.s.orders.Cancel(ctx, g.ID, reason, pi)
	if errs.Is(errs.NotFound, err) { // never created: the order service keeps a tombstone
		return nil
	}
	return err
}

func createShipment(ctx context.Context, r *runner) error {
	g := r.saga
	sh, err := r.s.ship.CreateShipment(ctx, g.ID, g.Data.Address, g.Data.Units)
	if err != nil {
		return err
	}
	g.Data.Shipment = order.ShipmentInfo{ID: sh.ID, Status: sh.Status, TrackingNumber: sh.TrackingNumber}
	return nil
}

func cancelShipment(ctx context.Context, r *runner) error {
	_, err := r.s.ship.CancelForOrder(ctx, r.saga.ID)
	return err
}

func commitStock(ctx context.Context, r *runner) error {
	return r.s.inv.CommitStock(ctx, r.saga.ID)
}

// capture is the pivot. When it cannot tell whether the capture happened
// (a transient error at its deadline, see Service.forward), voiding the
// authorization decides: a void that succeeds means nothing was captured
// and the saga rolls back; one refused because the payment is captured
// means it was, and the saga goes on.
func capture(ctx context.Context, r *runner) error {
	g := r.saga
	p, err := r.s.pay.Capture(ctx, g.Data.PaymentID)
	if err != nil {
		return err
	}
	g.Data.Payment = order.PaymentInfo{ID: p.ID, Status: p.Status}
	return nil
}

// settleCapture decides an uncertain capture by voiding: nil when the
// payment turns out captured (go forward), else the error to roll back with.
func settleCapture(ctx context.Context, r *runner, cause error) error {
	g := r.saga
	p, err := r.s.pay.VoidForOrder(ctx, g.ID)
	switch {
	case errs.Is(errs.Conflict, err): // captured after all
		g.Data.Payment = order.PaymentInfo{ID: g.Data.PaymentID, Status: payment.StatusCaptured}
		return nil
	case err != nil:
		return err // still unknown: try again later
	}
	g.Data.Payment = order.PaymentInfo{ID: p.ID, Status: p.Status}
	return permanent{errs.E(errs.KindOf(cause), errs.Msg("the payment could not be captured"), cause)}
}

func confirmOrder(ctx context.Context, r *runner) error {
	g := r.saga
	_, err := r.s.orders.Confirm(ctx, g.ID, g.Data.Payment, g.Data.Shipment)
	return err
}

func completeCart(ctx context.Context, r *runner) error {
	_, err := r.s.carts.CompleteCheckout(ctx, CartOwner(r.saga.UserID), r.saga.ID)
	return err
}

// price turns the cart into order items at the catalog's current prices,
// the stock lines to reserve and the number of units.
func (s *Service) price(ctx context.Context, crt cart.Cart) ([]order.Item, []catalog.Line, int, error) {
	pids := make([]string, len(crt.Items))
	for i, it := range crt.Items {
		pids[i] = it.ProductID
	}
	prods, err := s.inv.GetProducts(ctx, pids)
	if err != nil {
		return nil, nil, 0, err
	}
	byID := make(map[string]catalog.Product, len(prods))
	for _, p := range prods {
		byID[p.ID] = p
	}
	items := make([]order.Item, 0, len(crt.Items))
	lines := make([]catalog.Line, 0, len(crt.Items))
	units := 0
	for _, it := range crt.Items {
		p, ok := byID[it.ProductID]
		if !ok {
			return nil, nil, 0, errs.E(errs.Conflict, errs.Msg("%s is no longer sold; remove it from your cart", it.Name))
		}
		items = append(items, order.Item{ProductID: p.ID, Name: p.Name, Quantity: it.Quantity,
			UnitPrice: p.Price, LineTotal: p.Price.Times(it.Quantity)})
		lines = append(lines, catalog.Line{ProductID: p.ID, Quantity: it.Quantity})
		units += it.Quantity
	}
	return items, lines, units, nil
}
