package checkout

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"net/mail"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/globomantics/globomantics/internal/cart"
	"github.com/globomantics/globomantics/internal/catalog"
	"github.com/globomantics/globomantics/internal/order"
	"github.com/globomantics/globomantics/internal/payment"
	"github.com/globomantics/globomantics/internal/platform/clock"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/ids"
	"github.com/globomantics/globomantics/internal/platform/money"
	"github.com/globomantics/globomantics/internal/platform/shard"
	"github.com/globomantics/globomantics/internal/shipping"
)

// Carts is what checkout needs of the cart service.
type Carts interface {
	GetCart(ctx context.Context, owner string) (cart.Cart, error)
	Clear(ctx context.Context, owner string) error
}

// Inventory is what checkout needs of the catalog service.
type Inventory interface {
	GetProducts(ctx context.Context, ids []string) ([]catalog.Product, error)
	ReserveStock(ctx context.Context, reservationID string, lines []catalog.Line) error
	ReleaseStock(ctx context.Context, reservationID string) error
}

// Payments is what checkout needs of the payment service.
type Payments interface {
	Authorize(ctx context.Context, r payment.AuthorizeRequest) (payment.Payment, error)
	Capture(ctx context.Context, id string) (payment.Payment, error)
	Void(ctx context.Context, id string) (payment.Payment, error)
	Refund(ctx context.Context, id string) (payment.Payment, error)
	PaymentForOrder(ctx context.Context, orderID string) (payment.Payment, error)
}

// Shipments is what checkout needs of the shipping service.
type Shipments interface {
	Quote(ctx context.Context, addr shipping.Address, items int) (money.Money, error)
	CreateShipment(ctx context.Context, orderID string, addr shipping.Address, items int) (shipping.Shipment, error)
	CancelShipment(ctx context.Context, id string) (shipping.Shipment, error)
}

// Orders is what checkout needs of the order service.
type Orders interface {
	CreateOrder(ctx context.Context, o order.NewOrder) (order.Order, error)
	GetOrder(ctx context.Context, id string) (order.Order, error)
	SetPayment(ctx context.Context, id string, p order.PaymentInfo) (order.Order, error)
	Confirm(ctx context.Context, id string, p order.PaymentInfo, s order.ShipmentInfo) (order.Order, error)
	Cancel(ctx context.Context, id, reason string, p order.PaymentInfo) (order.Order, error)
}

// Each service's API meets the interface checkout declares for it, so the
// in-process services and their HTTP clients can both be passed in.
var (
	_ Carts     = cart.API(nil)
	_ Inventory = catalog.API(nil)
	_ Payments  = payment.API(nil)
	_ Shipments = shipping.API(nil)
	_ Orders    = order.API(nil)
)

// The states of an attempt.
const (
	AttemptStarted  = "started"
	AttemptFinished = "finished"
)

// MaxKeyLen is the longest Idempotency-Key accepted, in bytes.
const MaxKeyLen = 200

// Outcome is how a finished attempt ended: success, or the kind and
// client-safe detail of the error it returned.
type Outcome struct {
	Failed    bool
	ErrKind   errs.Kind
	ErrDetail string
	// Retryable marks a transient failure (errs.Unavailable) after which
	// every finished step was undone: the same key may then run again.
	Retryable bool
}

// Attempt is one idempotency key of one customer and the order it places.
type Attempt struct {
	UserID      string
	Key         string
	OrderID     string
	RequestHash string // hex SHA-256 of the request's JSON
	State       string // AttemptStarted or AttemptFinished
	Outcome     Outcome
	CreatedAt   time.Time
	UpdatedAt   time.Time
}

// Store keeps checkout attempts.
type Store interface {
	// Begin records a as started and reports created=true, or, if an attempt
	// with a's user and key exists, changes nothing and returns that attempt
	// with created=false. Concurrent Begins with one key create one attempt.
	Begin(ctx context.Context, a Attempt) (stored Attempt, created bool, err error)
	// Finish marks the attempt finished with its outcome; finishing a
	// finished attempt changes nothing. errs.NotFound for an unknown attempt.
	Finish(ctx context.Context, userID, key string, o Outcome, now time.Time) error
	// Get returns the attempt of userID under key; errs.NotFound if none.
	Get(ctx context.Context, userID, key string) (Attempt, error)
	// Restart starts a finished attempt whose outcome is Retryable again
	// under a new order id, and reports whether this call did so (one of
	// concurrent callers does). errs.NotFound for an unknown attempt.
	Restart(ctx context.Context, userID, key, orderID string, now time.Time) (bool, error)
}

// Retry policy: calls that may be repeated safely are tried this many times
// in all when they fail with errs.Unavailable, waiting backoff, then twice
// as long, between tries.
const (
	attempts = 4 // the first try and three retries
	backoff  = 25 * time.Millisecond
	// stepTimeout bounds each call to another service.
	stepTimeout = 20 * time.Second
)

// Service places orders.
type Service struct {
	store  Store
	carts  Carts
	inv    Inventory
	pay    Payments
	ship   Shipments
	orders Orders
	clk    clock.Clock
	log    *slog.Logger
	// replayWait is how long after an attempt started a duplicate request
	// waits for its outcome before answering "still in progress".
	replayWait time.Duration
}

// ReplayWait is how long, by default, a duplicate request waits for the
// first one's outcome before answering "still in progress".
const ReplayWait = 5 * time.Second

// Option adjusts a Service.
type Option func(*Service)

// WithReplayWait sets how long a duplicate request waits for the first
// one's outcome (default ReplayWait; 0 answers at once).
func WithReplayWait(d time.Duration) Option { return func(s *Service) { s.replayWait = d } }

var _ API = (*Service)(nil)

// NewService returns the checkout service over its attempts store and the
// five services it coordinates. clk nil means the wall clock, log nil
// slog.Default().
func NewService(store Store, carts Carts, inv Inventory, pay Payments, ship Shipments, orders Orders, clk clock.Clock, log *slog.Logger, opts ...Option) *Service {
	if clk == nil {
		clk = clock.Real{}
	}
	if log == nil {
		log = slog.Default()
	}
	s := &Service{store: store, carts: carts, inv: inv, pay: pay, ship: ship, orders: orders, clk: clk, log: log, replayWait: ReplayWait}
	for _, o := range opts {
		o(s)
	}
	return s
}

// newOrderID returns a new order id for userID that carries the user's shard
// (shard.ForUser), so that the sharded order store finds the order's node
// from its id alone.
func newOrderID(userID string, now time.Time) string {
	return ids.NewInShard("ord", now, uint16(shard.ForUser(userID)))
}

// CartOwner is the cart checked out for a user.
func CartOwner(userID string) string { return "user:" + userID }

// PlaceOrder checks out the customer's cart under an idempotency key; see API.
func (s *Service) PlaceOrder(ctx context.Context, c Customer, key string, r Request) (Result, error) {
	const op = "checkout.PlaceOrder"
	now := s.clk.Now().UTC().Truncate(time.Millisecond)
	if err := checkKey(key); err != nil {
		return Result{}, errs.E(op, err)
	}
	if err := checkRequest(c, r, now); err != nil {
		return Result{}, errs.E(op, err)
	}
	hash := RequestHash(r)
	a, created, err := s.store.Begin(ctx, Attempt{
		UserID: c.UserID, Key: key, OrderID: newOrderID(c.UserID, now), RequestHash: hash,
		State: AttemptStarted, CreatedAt: now, UpdatedAt: now,
	})
	if err != nil {
		return Result{}, errs.E(op, err)
	}
	if !created {
		return s.replay(ctx, c, r, a, hash)
	}
	return s.execute(ctx, c, key, a.OrderID, r)
}

// execute runs the attempt of key that this call started, and records its
// outcome.
func (s *Service) execute(ctx context.Context, c Customer, key, orderID string, r Request) (Result, error) {
	const op = "checkout.PlaceOrder"
	// From here on the checkout runs to a consistent end even if the caller
	// goes away: a half-done checkout would hold stock or money.
	run := context.WithoutCancel(ctx)
	log := s.log.With("order_id", orderID, "user_id", c.UserID)
	o, runErr := s.run(run, log, c, orderID, r)
	var out Outcome
	if runErr != nil {
		var dirty incompleteRollback
		out = Outcome{Failed: true, ErrKind: errs.KindOf(runErr), ErrDetail: errs.Detail(runErr)}
		out.Retryable = out.ErrKind == errs.Unavailable && !errors.As(runErr, &dirty)
	}
	s.finish(run, log, c.UserID, key, out)
	if runErr != nil {
		log.Info("checkout failed", "kind", errs.KindOf(runErr).Title(), "err", runErr)
		return Result{}, errs.E(op, runErr)
	}
	log.Info("order placed", "total", o.Total.String())
	return Result{Order: o, Done: true}, nil
}

// replay answers a request whose key was seen before.
func (s *Service) replay(ctx context.Context, c Customer, r Request, a Attempt, hash string) (Result, error) {
	const op = "checkout.PlaceOrder"
	if a.RequestHash != hash {
		return Result{}, errs.E(op, errs.Invalid, errs.Msg("Idempotency-Key was already used with a different request"))
	}
	// A duplicate (a double click, a client retry) usually arrives while the
	// first request is still running: wait a little for its outcome rather
	// than answer "in progress" with an order that may not exist yet.
	deadline := time.Now().Add(s.replayWait)
	for wait := 10 * time.Millisecond; a.State != AttemptFinished && time.Now().Before(deadline); wait = min(2*wait, 200*time.Millisecond) {
		select {
		case <-ctx.Done():
			return Result{}, errs.E(op, errs.Unavailable, ctx.Err())
		case <-time.After(wait):
		}
		latest, err := s.store.Get(ctx, a.UserID, a.Key)
		if err != nil {
			return Result{}, errs.E(op, err)
		}
		a = latest
	}
	if a.State == AttemptFinished && a.Outcome.Retryable {
		// The first run failed on a service that was down and undid all it
		// had done: run again, under a new order, rather than replay a
		// "try again" forever.
		orderID := newOrderID(a.UserID, s.clk.Now())
		restarted, err := s.store.Restart(ctx, a.UserID, a.Key, orderID, s.clk.Now().UTC().Truncate(time.Millisecond))
		if err != nil {
			return Result{}, errs.E(op, err)
		}
		if restarted {
			return s.execute(ctx, c, a.Key, orderID, r)
		}
		if a, err = s.store.Get(ctx, a.UserID, a.Key); err != nil { // another request restarted it
			return Result{}, errs.E(op, err)
		}
		return s.replay(ctx, c, r, a, hash)
	}
	if a.State == AttemptFinished {
		if a.Outcome.Failed {
			if a.Outcome.ErrKind == errs.Other {
				return Result{}, errs.E(op, errs.Other)
			}
			return Result{}, errs.E(op, a.Outcome.ErrKind, errs.Msg("%s", a.Outcome.ErrDetail))
		}
		o, err := s.orders.GetOrder(ctx, a.OrderID)
		if err != nil {
			return Result{}, errs.E(op, err)
		}
		return Result{Order: o, Done: true}, nil
	}
	// Another request with this key is still working on it.
	o, err := s.orders.GetOrder(ctx, a.OrderID)
	if err != nil {
		o = order.Order{ID: a.OrderID, UserID: c.UserID, Email: c.Email, Status: order.StatusPending,
			Items: []order.Item{}, ShippingAddress: r.ShippingAddress, CreatedAt: a.CreatedAt, UpdatedAt: a.UpdatedAt}
	}
	return Result{Order: o, Done: false}, nil
}

// finish records the outcome, retrying a while: an attempt left started
// answers "still in progress" to every retry of its key.
func (s *Service) finish(ctx context.Context, log *slog.Logger, userID, key string, out Outcome) {
	_, err := retry(ctx, func(ctx context.Context) (struct{}, error) {
		return struct{}{}, s.store.Finish(ctx, userID, key, out, s.clk.Now().UTC().Truncate(time.Millisecond))
	})
	if err != nil {
		log.Error("checkout attempt could not be marked finished", "key", key, "err", err)
	}
}

// saga is one run's record of the steps to undo if a later step fails.
type saga struct {
	log   *slog.Logger // carries the order id
	undos []undo
}

type undo struct {
	step string
	fn   func(ctx context.Context) error
}

func (g *saga) onFailure(step string, fn func(ctx context.Context) error) {
	g.undos = append(g.undos, undo{step, fn})
}

// compensate undoes the finished steps in reverse order and reports whether
// every undo succeeded. An undo that still fails after retries is logged at
// error level and the rest carry on.
func (g *saga) compensate(ctx context.Context) bool {
	clean := true
	for i := len(g.undos) - 1; i >= 0; i-- {
		u := g.undos[i]
		_, err := retry(ctx, func(ctx context.Context) (struct{}, error) { return struct{}{}, u.fn(ctx) })
		if err != nil {
			clean = false
			g.log.Error("checkout compensation failed; needs manual repair", "step", u.step, "err", err)
		}
	}
	return clean
}

// incompleteRollback marks the error of a run whose undoing failed half-way:
// its attempt must not run again under a new order.
type incompleteRollback struct{ error }

func (e incompleteRollback) Unwrap() error { return e.error }

// run places the order: each step either completes or undoes the ones
// before it and returns its error.
func (s *Service) run(ctx context.Context, log *slog.Logger, c Customer, orderID string, r Request) (order.Order, error) {
	g := &saga{log: log}
	fail := func(err error) (order.Order, error) {
		if !g.compensate(ctx) {
			return order.Order{}, incompleteRollback{err}
		}
		return order.Order{}, err
	}
	owner := CartOwner(c.UserID)

	crt, err := retry(ctx, func(ctx context.Context) (cart.Cart, error) { return s.carts.GetCart(ctx, owner) })
	if err != nil {
		return order.Order{}, err
	}
	if len(crt.Items) == 0 {
		return order.Order{}, errs.E(errs.Invalid, errs.Msg("cart is empty"))
	}
	items, lines, units, err := s.price(ctx, crt)
	if err != nil {
		return order.Order{}, err
	}
	cost, err := retry(ctx, func(ctx context.Context) (money.Money, error) {
		return s.ship.Quote(ctx, r.ShippingAddress, units)
	})
	if err != nil {
		return order.Order{}, err
	}

	// The order. Its undo is registered first so that a create whose answer
	// was lost is still cancelled; cancelling an order that does not exist
	// is a no-op.
	var pi order.PaymentInfo // the payment as the order should record it
	reason := "checkout failed"
	g.onFailure("cancel order", func(ctx context.Context) error {
		o, err := s.orders.Cancel(ctx, orderID, reason, pi)
		if errs.Is(errs.NotFound, err) {
			return nil
		}
		if err == nil && pi.Status != "" && o.Payment != pi {
			// Cancelled earlier (see Confirm below), before the payment
			// was voided or refunded: record how the payment ended.
			_, err = s.orders.SetPayment(ctx, orderID, pi)
		}
		return err
	})
	failWith := func(why string, err error) (order.Order, error) {
		reason = why
		return fail(err)
	}
	created, err := retry(ctx, func(ctx context.Context) (order.Order, error) {
		return s.orders.CreateOrder(ctx, order.NewOrder{
			ID: orderID, UserID: c.UserID, Email: c.Email, Items: items,
			ShippingCost: cost, ShippingAddress: r.ShippingAddress,
		})
	})
	if err != nil {
		return failWith("the order could not be created", err)
	}

	// Stock. Releasing an unknown reservation is a no-op, so the undo goes
	// in before the call for the same reason as above.
	g.onFailure("release stock", func(ctx context.Context) error { return s.inv.ReleaseStock(ctx, orderID) })
	_, err = retry(ctx, func(ctx context.Context) (struct{}, error) {
		return struct{}{}, s.inv.ReserveStock(ctx, orderID, lines)
	})
	if errs.Is(errs.NotFound, err) {
		err = errs.E(errs.Conflict, errs.Msg("a product in your cart is no longer sold"), err)
	}
	if err != nil {
		if errs.Is(errs.Conflict, err) {
			return failWith("out of stock", err)
		}
		return failWith("stock could not be reserved", err)
	}

	// Payment: authorize the total now, capture it once the parcel exists.
	p, err := retry(ctx, func(ctx context.Context) (payment.Payment, error) {
		return s.pay.Authorize(ctx, payment.AuthorizeRequest{OrderID: orderID, Amount: created.Total, Card: r.Payment})
	})
	if err != nil {
		if errs.Is(errs.Declined, err) {
			pi = order.PaymentInfo{ID: p.ID, Status: payment.StatusDeclined}
			return failWith("payment declined", err)
		}
		if k := errs.KindOf(err); k == errs.Unavailable || k == errs.Other {
			// The authorization may exist without our knowing its id (an
			// answer lost on the way back): look it up by order and void it,
			// so that no money stays held for a cancelled order.
			g.onFailure("void payment", func(ctx context.Context) error {
				p, err := s.pay.PaymentForOrder(ctx, orderID)
				if errs.Is(errs.NotFound, err) {
					return nil
				}
				if err != nil {
					return err
				}
				res, err := s.pay.Void(ctx, p.ID)
				if err == nil {
					pi = order.PaymentInfo{ID: res.ID, Status: res.Status}
				}
				return err
			})
		}
		return failWith("payment failed", err)
	}
	payID := p.ID
	pi = order.PaymentInfo{ID: payID, Status: p.Status}
	captured := false
	g.onFailure("void or refund payment", func(ctx context.Context) error {
		var (
			res payment.Payment
			err error
		)
		if !captured {
			res, err = s.pay.Void(ctx, payID)
		}
		if captured || errs.Is(errs.Conflict, err) { // captured after all: give the money back
			res, err = s.pay.Refund(ctx, payID)
		}
		if err == nil {
			pi = order.PaymentInfo{ID: res.ID, Status: res.Status}
		}
		return err
	})
	if _, err := retry(ctx, func(ctx context.Context) (order.Order, error) { return s.orders.SetPayment(ctx, orderID, pi) }); err != nil {
		return failWith("the payment could not be recorded", err)
	}

	// Shipment.
	sh, err := retry(ctx, func(ctx context.Context) (shipping.Shipment, error) {
		return s.ship.CreateShipment(ctx, orderID, r.ShippingAddress, units)
	})
	if err != nil {
		if k := errs.KindOf(err); k == errs.Unavailable || k == errs.Other {
			// The shipment may exist without our knowing its id: creating
			// is idempotent by order, so ask again and cancel what comes back.
			g.onFailure("cancel shipment", func(ctx context.Context) error {
				sh, err := s.ship.CreateShipment(ctx, orderID, r.ShippingAddress, units)
				if err != nil {
					return err
				}
				_, err = s.ship.CancelShipment(ctx, sh.ID)
				return err
			})
		}
		return failWith("the shipment could not be created", err)
	}
	g.onFailure("cancel shipment", func(ctx context.Context) error {
		_, err := s.ship.CancelShipment(ctx, sh.ID)
		return err
	})

	capt, err := retry(ctx, func(ctx context.Context) (payment.Payment, error) { return s.pay.Capture(ctx, payID) })
	if err != nil {
		return failWith("payment could not be captured", err)
	}
	captured = true
	pi = order.PaymentInfo{ID: payID, Status: capt.Status}

	si := order.ShipmentInfo{ID: sh.ID, Status: sh.Status, TrackingNumber: sh.TrackingNumber}
	confirmed, err := retry(ctx, func(ctx context.Context) (order.Order, error) { return s.orders.Confirm(ctx, orderID, pi, si) })
	if err != nil {
		// The confirmation may have been committed with its answer lost:
		// undoing a confirmed order would refund a real sale. Settle the
		// order before undoing anything: once cancelled it can no longer be
		// confirmed, and cancelling fails with errs.Conflict only when it
		// is confirmed already.
		reason = "the order could not be confirmed"
		_, cerr := retry(ctx, func(ctx context.Context) (order.Order, error) { return s.orders.Cancel(ctx, orderID, reason, pi) })
		if errs.Is(errs.Conflict, cerr) {
			confirmed, err = s.confirmedOrder(ctx, log, created, pi, si), nil
		}
	}
	if err != nil {
		return failWith("the order could not be confirmed", err)
	}

	if _, err := retry(ctx, func(ctx context.Context) (struct{}, error) { return struct{}{}, s.carts.Clear(ctx, owner) }); err != nil {
		log.Warn("cart not cleared after checkout", "owner", owner, "err", err)
	}
	return confirmed, nil
}

// confirmedOrder returns order created as confirmed by the order service,
// which answered that it is confirmed; if it cannot be read back, the order
// as confirmed with payment p and shipment sh.
func (s *Service) confirmedOrder(ctx context.Context, log *slog.Logger, created order.Order, p order.PaymentInfo, sh order.ShipmentInfo) order.Order {
	o, err := retry(ctx, func(ctx context.Context) (order.Order, error) { return s.orders.GetOrder(ctx, created.ID) })
	if err == nil && o.Status == order.StatusConfirmed {
		return o
	}
	log.Warn("confirmed order could not be read back", "err", err)
	o = created
	o.Status, o.Payment, o.Shipment = order.StatusConfirmed, p, sh
	if o.Shipment.Status == "" {
		o.Shipment.Status = shipping.StatusCreated
	}
	o.UpdatedAt = s.clk.Now().UTC().Truncate(time.Millisecond)
	return o
}

// price turns the cart into order items at the catalog's current prices,
// the stock lines to reserve and the number of units.
func (s *Service) price(ctx context.Context, crt cart.Cart) ([]order.Item, []catalog.Line, int, error) {
	pids := make([]string, len(crt.Items))
	for i, it := range crt.Items {
		pids[i] = it.ProductID
	}
	prods, err := retry(ctx, func(ctx context.Context) ([]catalog.Product, error) { return s.inv.GetProducts(ctx, pids) })
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

// retry calls fn with a per-call timeout until it succeeds, fails with an
// error that is not errs.Unavailable, or has been tried attempts times.
func retry[T any](ctx context.Context, fn func(ctx context.Context) (T, error)) (T, error) {
	wait := backoff
	for i := 1; ; i++ {
		cctx, cancel := context.WithTimeout(ctx, stepTimeout)
		v, err := fn(cctx)
		cancel()
		if err == nil || !errs.Temporary(err) || i >= attempts {
			return v, err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return v, err
		case <-t.C:
		}
		wait *= 2
	}
}

// RequestHash is the hex SHA-256 of r's JSON with the card reduced to its
// last four digits and expiry: two requests with the same hash are the same
// request. The card number and CVC stay out of it, because the hash is
// stored and a fast hash of them could be reversed by trying every CVC and
// every number that passes the Luhn check.
func RequestHash(r Request) string {
	number := strings.ReplaceAll(r.Payment.Number, " ", "")
	if len(number) > 4 {
		number = number[len(number)-4:]
	}
	r.Payment = payment.Card{Number: number, ExpMonth: r.Payment.ExpMonth, ExpYear: r.Payment.ExpYear}
	b, err := json.Marshal(r)
	if err != nil { // a struct of strings and ints always marshals
		panic(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// checkKey validates an Idempotency-Key: 1 to MaxKeyLen printable ASCII bytes.
func checkKey(key string) error {
	if key == "" {
		return errs.E(errs.BadRequest, errs.Msg("Idempotency-Key header is required"))
	}
	if len(key) > MaxKeyLen {
		return errs.E(errs.BadRequest, errs.Msg("Idempotency-Key header must be at most %d bytes", MaxKeyLen))
	}
	for i := 0; i < len(key); i++ {
		if key[i] < 0x20 || key[i] > 0x7e {
			return errs.E(errs.BadRequest, errs.Msg("Idempotency-Key header must be printable ASCII"))
		}
	}
	return nil
}

const maxFieldLen = 200

// checkRequest validates the customer, the address and the shape of the card.
func checkRequest(c Customer, r Request, now time.Time) error {
	if strings.TrimSpace(c.UserID) == "" || len(c.UserID) > maxFieldLen {
		return errs.E(errs.Invalid, errs.Msg("customer user_id is required"))
	}
	if a, err := mail.ParseAddress(c.Email); err != nil || a.Address != c.Email || a.Name != "" {
		return errs.E(errs.Invalid, errs.Msg("customer email is not a valid address"))
	}
	a := r.ShippingAddress
	var missing []string
	for _, f := range []struct{ name, v string }{
		{"name", a.Name}, {"line1", a.Line1}, {"city", a.City}, {"postal_code", a.PostalCode}, {"country", a.Country},
	} {
		switch {
		case strings.TrimSpace(f.v) == "":
			missing = append(missing, f.name)
		case utf8.RuneCountInString(f.v) > maxFieldLen || !printable(f.v):
			return errs.E(errs.Invalid, errs.Msg("shipping_address.%s must be at most %d printable characters", f.name, maxFieldLen))
		}
	}
	if len(missing) > 0 {
		return errs.E(errs.Invalid, errs.Msg("shipping_address is missing %s", strings.Join(missing, ", ")))
	}
	if len(a.Country) != 2 || !letter(a.Country[0]) || !letter(a.Country[1]) {
		return errs.E(errs.Invalid, errs.Msg("shipping_address.country must be a two-letter country code"))
	}
	return checkCard(r.Payment, now)
}

func letter(b byte) bool { return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' }

func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// checkCard checks the card's shape with the payment service's own rules,
// before anything is touched. Whether the card is good is the payment
// service's business.
func checkCard(c payment.Card, now time.Time) error {
	_, err := payment.ValidateCard(c, now)
	return err
}
