package checkout

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/mail"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/globomantics/globomantics/internal/cart"
	"github.com/globomantics/globomantics/internal/catalog"
	"github.com/globomantics/globomantics/internal/order"
	"github.com/globomantics/globomantics/internal/payment"
	"github.com/globomantics/globomantics/internal/platform/clock"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/fault"
	"github.com/globomantics/globomantics/internal/platform/ids"
	"github.com/globomantics/globomantics/internal/platform/money"
	"github.com/globomantics/globomantics/internal/platform/shard"
	"github.com/globomantics/globomantics/internal/shipping"
)

// Carts is what checkout needs of the cart service: a cart frozen for one
// checkout (its snapshot), released on roll-back, and its checked-out lines
// removed on success.
type Carts interface {
	Lock(ctx context.Context, owner, lockID string) (cart.Cart, error)
	Unlock(ctx context.Context, owner, lockID string) error
	CompleteCheckout(ctx context.Context, owner, lockID string) (cart.Cart, error)
}

// Inventory is what checkout needs of the catalog service.
type Inventory interface {
	GetProducts(ctx context.Context, ids []string) ([]catalog.Product, error)
	ReserveStock(ctx context.Context, reservationID string, lines []catalog.Line, hold time.Duration) error
	CommitStock(ctx context.Context, reservationID string) error
	ReleaseStock(ctx context.Context, reservationID string) error
}

// Payments is what checkout needs of the payment service.
type Payments interface {
	Authorize(ctx context.Context, r payment.AuthorizeRequest) (payment.Payment, error)
	Capture(ctx context.Context, id string) (payment.Payment, error)
	VoidForOrder(ctx context.Context, orderID string) (payment.Payment, error)
	PaymentForOrder(ctx context.Context, orderID string) (payment.Payment, error)
}

// Shipments is what checkout needs of the shipping service.
type Shipments interface {
	Quote(ctx context.Context, addr shipping.Address, items int) (money.Money, error)
	CreateShipment(ctx context.Context, orderID string, addr shipping.Address, items int) (shipping.Shipment, error)
	CancelForOrder(ctx context.Context, orderID string) (shipping.Shipment, error)
}

// Orders is what checkout needs of the order service.
type Orders interface {
	CreateOrder(ctx context.Context, o order.NewOrder) (order.Order, error)
	GetOrder(ctx context.Context, id string) (order.Order, error)
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

// MaxKeyLen is the longest Idempotency-Key accepted, in bytes.
const MaxKeyLen = 200

// Defaults of the options.
const (
	// DefaultBudget is how long PlaceOrder waits for the saga before it
	// answers "pending" and lets it finish in the background.
	DefaultBudget = 3 * time.Second
	// DefaultRecoveryInterval is how often an instance looks for sagas
	// whose driver died.
	DefaultRecoveryInterval = time.Second
)

// Service places orders.
type Service struct {
	store    Store
	carts    Carts
	inv      Inventory
	pay      Payments
	ship     Shipments
	orders   Orders
	clk      clock.Clock
	log      *slog.Logger
	faults   *fault.Injector
	faultsOn bool   // the admin endpoint may change the rules
	owner    string // this instance, as recorded in the leases it holds
	lease    time.Duration
	budget   time.Duration
	recovery time.Duration
	// stepDeadline, when set, replaces every step's own deadline.
	stepDeadline time.Duration
	secret       []byte       // signs callbacks
	hc           *http.Client // delivers callbacks

	// base is the context of the sagas this instance drives; Run cancels
	// it when the service stops.
	base   context.Context
	stop   context.CancelFunc
	mu     sync.Mutex
	active map[string]chan struct{} // sagas driven here, closed when they stop
	wg     sync.WaitGroup
	// sem bounds how many recovered sagas are driven at once.
	sem chan struct{}

	metrics *Metrics     // nil: none (observe.go)
	tracer  trace.Tracer // nil: no spans
}

// Option adjusts a Service.
type Option func(*Service)

// WithBudget sets how long PlaceOrder waits for the saga (default
// DefaultBudget).
func WithBudget(d time.Duration) Option { return func(s *Service) { s.budget = d } }

// WithLease sets the lease of a driver on a saga (default DefaultLease).
func WithLease(d time.Duration) Option { return func(s *Service) { s.lease = d } }

// WithStepDeadline sets how long any step before the pivot is retried
// before the saga rolls back (default: each step's own, 20 to 30 s).
func WithStepDeadline(d time.Duration) Option { return func(s *Service) { s.stepDeadline = d } }

// WithRecoveryInterval sets how often orphaned sagas are looked for.
func WithRecoveryInterval(d time.Duration) Option { return func(s *Service) { s.recovery = d } }

// WithFaults sets the fault injector consulted around every step and lets
// the admin endpoint change its rules. Without it there are none.
func WithFaults(f *fault.Injector) Option {
	return func(s *Service) { s.faults, s.faultsOn = f, f != nil }
}

// WithCallbackSecret sets the key that signs callbacks (HMAC-SHA256).
func WithCallbackSecret(secret []byte) Option { return func(s *Service) { s.secret = secret } }

// WithCallbackClient sets the HTTP client that delivers callbacks.
func WithCallbackClient(hc *http.Client) Option { return func(s *Service) { s.hc = hc } }

// WithOwner names this instance in the leases it takes (default
// hostname, pid and a random suffix).
func WithOwner(name string) Option { return func(s *Service) { s.owner = name } }

var _ API = (*Service)(nil)

// NewService returns the checkout service over its saga log and the five
// services it coordinates. clk nil means the wall clock, log nil
// slog.Default(). Sagas accepted by PlaceOrder run at once; Run resumes
// those whose driver died and delivers callbacks.
func NewService(store Store, carts Carts, inv Inventory, pay Payments, ship Shipments, orders Orders, clk clock.Clock, log *slog.Logger, opts ...Option) *Service {
	if clk == nil {
		clk = clock.Real{}
	}
	if log == nil {
		log = slog.Default()
	}
	host, _ := os.Hostname()
	s := &Service{store: store, carts: carts, inv: inv, pay: pay, ship: ship, orders: orders, clk: clk, log: log,
		owner: fmt.Sprintf("%s/%d/%s", host, os.Getpid(), ids.Token()[:8]),
		lease: DefaultLease, budget: DefaultBudget, recovery: DefaultRecoveryInterval,
		hc: &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse // a callback is delivered where it was asked, nowhere else
		}},
		active: map[string]chan struct{}{}, sem: make(chan struct{}, 32)}
	for _, o := range opts {
		o(s)
	}
	if s.faults == nil {
		s.faults = fault.New(nil)
	}
	if s.lease < 300*time.Millisecond {
		s.lease = 300 * time.Millisecond
	}
	s.base, s.stop = context.WithCancel(context.Background())
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
	g := s.newSaga(c, key, RequestHash(r), r, now)
	g.Data.Traceparent = traceparentOf(ctx)
	stored, created, err := s.store.Create(ctx, g)
	if err != nil {
		return Result{}, errs.E(op, err)
	}
	if !created {
		return s.replay(ctx, c, r, stored)
	}
	return s.start(ctx, &stored, &r.Payment)
}

// newSaga is a new saga at its first step, driven by this instance.
func (s *Service) newSaga(c Customer, key, hash string, r Request, now time.Time) Saga {
	card4 := strings.ReplaceAll(r.Payment.Number, " ", "")
	if len(card4) > 4 {
		card4 = card4[len(card4)-4:]
	}
	// The address as the customer's form would spell it (checkRequest
	// accepted it); the request hash stays that of what was sent.
	addr, _ := shipping.ValidateAddress(r.ShippingAddress)
	return Saga{
		ID: newOrderID(c.UserID, now), UserID: c.UserID, Key: key, RequestHash: hash,
		State: SagaRunning, Step: 0, NextAt: now, Deadline: s.deadlineOf(0, now),
		Epoch: 1, Owner: s.owner, LeaseUntil: now.Add(s.lease),
		Data:      Data{Email: c.Email, Address: addr, Card4: card4},
		Callback:  CallbackStatus{URL: r.CallbackURL},
		CreatedAt: now, UpdatedAt: now,
	}
}

// start drives a saga this call created and waits for it up to the budget.
func (s *Service) start(ctx context.Context, g *Saga, card *payment.Card) (Result, error) {
	// g belongs to the driver once launched: read what is needed first.
	userID, key, snapshot := g.UserID, g.Key, *g
	done := s.launch(g, card)
	if done == nil { // shutting down: recovery elsewhere takes it
		return s.result(ctx, snapshot)
	}
	return s.await(ctx, userID, key, done)
}

// launch drives g in the background, detached from any request, and
// returns a channel closed when the driver stops (nil if the service has
// stopped).
func (s *Service) launch(g *Saga, card *payment.Card) chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.base.Err() != nil {
		return nil
	}
	if ch, ok := s.active[g.ID]; ok {
		return ch
	}
	done := make(chan struct{})
	s.active[g.ID] = done
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer func() {
			s.mu.Lock()
			delete(s.active, g.ID)
			s.mu.Unlock()
			close(done)
		}()
		s.drive(s.base, g, card)
	}()
	return done
}

// await waits up to the budget for the saga to end (done closes when this
// instance's driver stops; nil when another instance drives it) and
// answers with its state.
func (s *Service) await(ctx context.Context, userID, key string, done chan struct{}) (Result, error) {
	t := time.NewTimer(s.budget)
	defer t.Stop()
	// Driven here: the driver says when it stops. Driven elsewhere: the
	// log says when the saga ends.
	var poll <-chan time.Time
	if done == nil {
		tk := time.NewTicker(25 * time.Millisecond)
		defer tk.Stop()
		poll = tk.C
	}
	for {
		select {
		case <-ctx.Done():
			return Result{}, errs.E("checkout.PlaceOrder", errs.Unavailable, ctx.Err())
		case <-t.C:
			return s.current(ctx, userID, key)
		case <-done:
			return s.current(ctx, userID, key)
		case <-poll:
			if g, err := s.store.Get(ctx, userID, key); err == nil && g.Terminal() {
				return s.outcome(ctx, g)
			}
		}
	}
}

// current answers with the stored saga's state: its outcome when final.
func (s *Service) current(ctx context.Context, userID, key string) (Result, error) {
	g, err := s.store.Get(ctx, userID, key)
	if err != nil {
		return Result{}, errs.E("checkout.PlaceOrder", err)
	}
	return s.outcome(ctx, g)
}

// outcome is PlaceOrder's answer for saga g: the order when confirmed, the
// error it ended with when cancelled, the pending state otherwise.
func (s *Service) outcome(ctx context.Context, g Saga) (Result, error) {
	const op = "checkout.PlaceOrder"
	if g.State == SagaCancelled && g.Failure != nil {
		kind := errs.KindForStatus(g.Failure.Status)
		if kind == errs.Other {
			return Result{}, errs.E(op, errs.Other)
		}
		return Result{}, errs.E(op, kind, errs.Msg("%s", g.Failure.Detail))
	}
	return s.result(ctx, g)
}

// replay answers a request whose key was seen before: the same outcome for
// the same request, 422 for another request, a new run after a roll-back
// caused by a service that was down.
func (s *Service) replay(ctx context.Context, c Customer, r Request, g Saga) (Result, error) {
	const op = "checkout.PlaceOrder"
	if g.RequestHash != RequestHash(r) {
		return Result{}, errs.E(op, errs.Invalid, errs.Msg("Idempotency-Key was already used with a different request"))
	}
	if g.State == SagaCancelled && g.Retryable {
		now := s.clk.Now().UTC().Truncate(time.Millisecond)
		ng := s.newSaga(c, g.Key, g.RequestHash, r, now)
		restarted, err := s.store.Restart(ctx, ng)
		if err != nil {
			return Result{}, errs.E(op, err)
		}
		if restarted {
			ng.Version = 1 // as stored
			return s.start(ctx, &ng, &r.Payment)
		}
		latest, err := s.store.Get(ctx, c.UserID, g.Key) // another request restarted it
		if err != nil {
			return Result{}, errs.E(op, err)
		}
		if latest.ID == g.ID { // not restartable after all
			return s.outcome(ctx, latest)
		}
		return s.replay(ctx, c, r, latest)
	}
	if g.Terminal() {
		return s.outcome(ctx, g)
	}
	// A duplicate (double click, client retry) of a checkout still
	// running: wait for it like the first request does.
	s.mu.Lock()
	done := s.active[g.ID]
	s.mu.Unlock()
	return s.await(ctx, c.UserID, g.Key, done)
}

// Checkout returns the customer's checkout under key; see API.
func (s *Service) Checkout(ctx context.Context, userID, key string) (Result, error) {
	const op = "checkout.Checkout"
	if checkKey(key) != nil || strings.TrimSpace(userID) == "" {
		return Result{}, errs.E(op, errs.NotFound, errs.Msg("no such checkout"))
	}
	g, err := s.store.Get(ctx, userID, key)
	if errs.Is(errs.NotFound, err) {
		return Result{}, errs.E(op, errs.NotFound, errs.Msg("no such checkout"))
	}
	if err != nil {
		return Result{}, errs.E(op, err)
	}
	return s.result(ctx, g)
}

// result is the customer's view of saga g: the stored order once it is
// confirmed, otherwise the order as the saga knows it.
func (s *Service) result(ctx context.Context, g Saga) (Result, error) {
	res := Result{Key: g.Key, Done: g.Terminal(), Error: g.Failure}
	switch g.State {
	case SagaConfirmed:
		res.State = StateConfirmed
	case SagaCancelled:
		res.State = StateCancelled
	default:
		res.State = StatePending
	}
	if g.Callback.URL != "" {
		cb := g.Callback
		res.Callback = &cb
	}
	if g.State == SagaConfirmed {
		if o, err := s.orders.GetOrder(ctx, g.ID); err == nil {
			res.Order = o
			return res, nil
		}
	}
	res.Order = sagaOrder(g)
	return res, nil
}

// sagaOrder is the order as saga g knows it, for a checkout whose order is
// not (or not yet) stored.
func sagaOrder(g Saga) order.Order {
	items := g.Data.Items
	if items == nil {
		items = []order.Item{}
	}
	var sub money.Money
	for _, it := range items {
		sub = sub.Add(it.LineTotal)
	}
	status := order.StatusPending
	switch g.State {
	case SagaConfirmed:
		status = order.StatusConfirmed
	case SagaCancelled:
		status = order.StatusCancelled
	}
	return order.Order{ID: g.ID, Number: g.Data.OrderNumber, UserID: g.UserID, Email: g.Data.Email, Status: status, Items: items,
		Subtotal: sub, ShippingCost: g.Data.ShippingCost, Total: g.Data.Total, ShippingAddress: g.Data.Address,
		Payment: g.Data.Payment, Shipment: g.Data.Shipment, CreatedAt: g.CreatedAt, UpdatedAt: g.UpdatedAt}
}

// Run resumes sagas whose driver died (on start and every recovery
// interval), delivers callbacks and forgets expired keys, until ctx ends;
// then it stops the sagas driven here at their next step boundary (their
// leases run out and another instance resumes them).
func (s *Service) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); s.recoverLoop(ctx) }()
	go func() { defer wg.Done(); s.callbackLoop(ctx) }()
	purge := time.NewTicker(time.Minute)
	defer purge.Stop()
	for {
		if n, err := s.store.Purge(ctx, s.clk.Now(), 500); err != nil && ctx.Err() == nil {
			s.log.Warn("expired checkouts not purged", "err", err)
		} else if n > 0 {
			s.log.Info("expired checkouts purged", "count", n)
		}
		select {
		case <-ctx.Done():
			wg.Wait()
			s.Close()
			return
		case <-purge.C:
		}
	}
}

// Close stops the sagas driven here and waits for their drivers.
func (s *Service) Close() {
	s.mu.Lock()
	s.stop()
	s.mu.Unlock()
	s.wg.Wait()
}

// recoverLoop claims and drives sagas whose lease ran out.
func (s *Service) recoverLoop(ctx context.Context) {
	t := time.NewTicker(s.recovery)
	defer t.Stop()
	for {
		s.recoverOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// recoverOnce claims every orphaned saga it can drive now and drives it;
// it returns how many it claimed.
func (s *Service) recoverOnce(ctx context.Context) int {
	now := s.clk.Now()
	claims, err := s.store.Expired(ctx, now, cap(s.sem))
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("looking for orphaned checkouts failed", "err", err)
		}
		return 0
	}
	n := 0
	for _, c := range claims {
		s.mu.Lock()
		_, mine := s.active[c.ID]
		s.mu.Unlock()
		if mine {
			continue // driven here; its lease is only late
		}
		select {
		case s.sem <- struct{}{}:
		default:
			return n // busy enough: the rest wait for the next round
		}
		ok, err := s.store.Claim(ctx, c, s.owner, now, now.Add(s.lease))
		if err != nil || !ok {
			<-s.sem
			continue
		}
		g, err := s.store.Load(ctx, c.ID)
		if err != nil || g.Epoch != c.Epoch+1 {
			<-s.sem
			continue
		}
		n++
		s.log.Info("resuming orphaned checkout", "order_id", g.ID, "state", g.State, "step", stepName(g), "epoch", g.Epoch)
		done := s.launch(&g, nil)
		go func() {
			if done != nil {
				<-done
			}
			<-s.sem
		}()
	}
	return n
}

// SagaView is a saga as the operator sees it: its state and history.
type SagaView struct {
	ID         string          `json:"id"`
	UserID     string          `json:"user_id"`
	Key        string          `json:"key"`
	State      string          `json:"state"`
	Step       string          `json:"step"`
	Attempts   int             `json:"attempts"`
	Epoch      int64           `json:"epoch"`
	Owner      string          `json:"owner"`
	LeaseUntil time.Time       `json:"lease_until"`
	Version    int64           `json:"version"`
	Failure    *Failure        `json:"failure,omitempty"`
	Callback   *CallbackStatus `json:"callback,omitempty"`
	History    []StepRecord    `json:"history"`
}

// Inspect returns saga id with its history; errs.NotFound.
func (s *Service) Inspect(ctx context.Context, id string) (SagaView, error) {
	g, err := s.store.Load(ctx, id)
	if err != nil {
		return SagaView{}, errs.E("checkout.Inspect", err)
	}
	h, err := s.store.History(ctx, id)
	if err != nil {
		return SagaView{}, errs.E("checkout.Inspect", err)
	}
	v := SagaView{ID: g.ID, UserID: g.UserID, Key: g.Key, State: g.State, Step: stepName(g), Attempts: g.Attempts,
		Epoch: g.Epoch, Owner: g.Owner, LeaseUntil: g.LeaseUntil, Version: g.Version, Failure: g.Failure, History: h}
	if g.Callback.URL != "" {
		cb := g.Callback
		v.Callback = &cb
	}
	return v, nil
}

func stepName(g Saga) string {
	if g.Step >= 0 && g.Step < len(steps) {
		return steps[g.Step].name
	}
	return ""
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
	if err := checkAddress(r.ShippingAddress, false); err != nil {
		return err
	}
	if err := checkCallbackURL(r.CallbackURL); err != nil {
		return err
	}
	return checkCard(r.Payment, now)
}

// checkAddress holds a shipping address to shipping.ValidateAddress (a
// country the shop ships to, its region and postal code format), naming
// every bad field as shipping_address.<field>. For a quote (quote true)
// only the country is required.
func checkAddress(a shipping.Address, quote bool) error {
	_, fe := shipping.ValidateAddress(a)
	var parts []string
	for f, msg := range fe.All() {
		empty := strings.TrimSpace(fieldOf(a, f)) == ""
		if quote && f != shipping.FieldCountry && (empty || f == shipping.FieldRegion || f == shipping.FieldPostalCode) {
			continue // a quote needs the country alone
		}
		parts = append(parts, "shipping_address."+f+": "+msg)
	}
	if len(parts) > 0 {
		return errs.E(errs.Invalid, errs.Msg("%s", strings.Join(parts, "; ")))
	}
	return nil
}

// fieldOf is the value of a's field named f (a shipping.Field* name).
func fieldOf(a shipping.Address, f string) string {
	switch f {
	case shipping.FieldName:
		return a.Name
	case shipping.FieldLine1:
		return a.Line1
	case shipping.FieldCity:
		return a.City
	case shipping.FieldRegion:
		return a.Region
	case shipping.FieldPostalCode:
		return a.PostalCode
	}
	return a.Country
}

// QuoteOrder prices r as a checkout would; see API.
func (s *Service) QuoteOrder(ctx context.Context, r QuoteRequest) (Quote, error) {
	const op = "checkout.QuoteOrder"
	switch {
	case len(r.Items) == 0:
		return Quote{}, errs.E(op, errs.Invalid, errs.Msg("there is nothing to quote: the cart is empty"))
	case len(r.Items) > order.MaxItems:
		return Quote{}, errs.E(op, errs.Invalid, errs.Msg("a quote has at most %d lines", order.MaxItems))
	}
	for i, it := range r.Items {
		if strings.TrimSpace(it.ProductID) == "" || it.Quantity < 1 {
			return Quote{}, errs.E(op, errs.Invalid, errs.Msg("item %d needs a product_id and a quantity of at least 1", i+1))
		}
	}
	if err := checkAddress(r.Address, true); err != nil {
		return Quote{}, errs.E(op, err)
	}
	q, _, _, err := s.quote(ctx, r.Items, shipping.Address{Country: r.Address.Country})
	if err != nil {
		return Quote{}, errs.E(op, err)
	}
	return q, nil
}

// checkCallbackURL accepts "" or an absolute http(s) URL of at most 2,000
// bytes with a host and no credentials.
func checkCallbackURL(raw string) error {
	if raw == "" {
		return nil
	}
	u, err := url.Parse(raw)
	if len(raw) > 2000 || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
		return errs.E(errs.Invalid, errs.Msg("callback_url must be an absolute http or https URL of at most 2000 bytes, without credentials"))
	}
	return nil
}

// checkCard checks the card's shape with the payment service's own rules,
// before anything is touched. Whether the card is good is the payment
// service's business.
func checkCard(c payment.Card, now time.Time) error {
	_, err := payment.ValidateCard(c, now)
	return err
}
