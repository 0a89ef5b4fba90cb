package payment

import (
	"context"
	"strings"
	"time"

	"github.com/globomantics/globomantics/internal/platform/clock"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/ids"
	"github.com/globomantics/globomantics/internal/platform/money"
	"github.com/globomantics/globomantics/internal/platform/shard"
)

// The simulated processor's test cards (see the package comment).
const (
	TestCardOK          = "4242424242424242"
	TestCardDeclined    = "4000000000000002"
	TestCardUnavailable = "4000000000000119"
)

// Limits on an authorization.
const (
	MaxAmount     = 100_000_000 // cents: one million dollars
	MaxOrderIDLen = 128
	// MaxExpiryYears is how far in the future an expiry date may lie.
	MaxExpiryYears = 20
)

// Store is the payment service's persistence, declared here by its consumer
// and implemented by paymentdb.Store. Every change of a payment is written
// together with its ledger entry, in one transaction.
type Store interface {
	// Create records a new payment and its first ledger entry e (an
	// authorization or a decline) in one transaction. errs.Conflict if a
	// payment for p.OrderID already exists (a unique constraint, so that
	// concurrent creators for one order cannot both succeed, and a
	// cancellation recorded by UpdateOrder wins against a later Create).
	Create(ctx context.Context, p Payment, e Entry) error
	// Get returns the payment with this id; errs.NotFound.
	Get(ctx context.Context, id string) (Payment, error)
	// GetByOrder returns the payment of an order; errs.NotFound.
	GetByOrder(ctx context.Context, orderID string) (Payment, error)
	// Update loads payment id, locked against concurrent updates, and lets
	// fn change it. When fn returns an entry, the payment's Status and
	// UpdatedAt and the entry are saved in one transaction; when it returns
	// nil, nothing is written (a no-op) and the payment is returned as
	// loaded. An error from fn aborts the update, writing nothing, and keeps
	// its kind; errs.NotFound for an unknown id; errs.Conflict if the
	// payment already has an entry of that kind (nothing is written). The
	// entry's event (EventOf), if any, goes to the store's outbox in the
	// same transaction. It returns the saved payment.
	Update(ctx context.Context, id string, fn func(p *Payment) (*Entry, error)) (Payment, error)
	// UpdateOrder is Update for the payment of an order, except that when
	// the order has no payment it records ifNone instead (without a ledger
	// entry) and returns it. It is atomic against a concurrent Create for
	// the order: whichever commits first wins, and UpdateOrder applies fn
	// to a payment created before it.
	UpdateOrder(ctx context.Context, orderID string, ifNone Payment, fn func(p *Payment) (*Entry, error)) (Payment, error)
	// Ledger returns the entries of a payment, oldest first; empty for an
	// unknown payment.
	Ledger(ctx context.Context, paymentID string) ([]Entry, error)
	// Audit checks the whole ledger (see Audit); errs.Unavailable when a
	// database node does not answer.
	Audit(ctx context.Context) (Audit, error)
}

// Service is the payment service: a simulated card processor over a Store.
type Service struct {
	store Store
	clk   clock.Clock
	kick  func() // wakes the outbox relay after a capture; never nil
}

// Option configures a Service.
type Option func(*Service)

// WithKick has the service call kick after each capture it records, so the
// outbox relay publishes PaymentCaptured at once instead of at its next
// poll. kick must not block.
func WithKick(kick func()) Option {
	return func(s *Service) {
		if kick != nil {
			s.kick = kick
		}
	}
}

var (
	_ API     = (*Service)(nil)
	_ Auditor = (*Service)(nil)
)

// NewService returns the payment service over store, telling time by clk.
func NewService(store Store, clk clock.Clock, opts ...Option) *Service {
	s := &Service{store: store, clk: clk, kick: func() {}}
	for _, o := range opts {
		o(s)
	}
	return s
}

// now is the current time at the precision the store keeps.
func (s *Service) now() time.Time { return s.clk.Now().UTC().Truncate(time.Millisecond) }

// Authorize holds r.Amount on r.Card for r.OrderID, once per order.
func (s *Service) Authorize(ctx context.Context, r AuthorizeRequest) (Payment, error) {
	const op = "payment.Authorize"
	now := s.now()
	if err := validateOrderID(r.OrderID); err != nil {
		return Payment{}, errs.E(op, err)
	}
	if err := validateAmount(r.Amount); err != nil {
		return Payment{}, errs.E(op, err)
	}
	number, err := ValidateCard(r.Card, now)
	if err != nil {
		return Payment{}, errs.E(op, err)
	}
	last4 := number[len(number)-4:]

	if p, err := s.store.GetByOrder(ctx, r.OrderID); err == nil {
		return repeat(op, p, r.Amount, last4)
	} else if !errs.Is(errs.NotFound, err) {
		return Payment{}, errs.E(op, err)
	}

	p := Payment{
		// The payment sits on its order's shard, and its id says which.
		ID:        ids.NewInShard("pay", now, uint16(shard.OfIDOrKey(r.OrderID))),
		OrderID:   r.OrderID,
		Amount:    r.Amount,
		Status:    StatusAuthorized,
		CardLast4: last4,
		CreatedAt: now,
		UpdatedAt: now,
	}
	kind := KindAuthorization
	switch number {
	case TestCardUnavailable:
		return Payment{}, errs.E(op, errs.Unavailable, errs.Msg("payment processor temporarily unavailable"))
	case TestCardDeclined:
		p.Status, kind = StatusDeclined, KindDecline
	}
	if err := s.store.Create(ctx, p, newEntry(p, kind, now)); err != nil {
		if !errs.Is(errs.Conflict, err) {
			return Payment{}, errs.E(op, err)
		}
		// A concurrent request for the same order (or a VoidForOrder) got
		// there first.
		existing, gerr := s.store.GetByOrder(ctx, r.OrderID)
		if gerr != nil {
			return Payment{}, errs.E(op, gerr)
		}
		return repeat(op, existing, r.Amount, last4)
	}
	if p.Status == StatusDeclined {
		return Payment{}, declined(op)
	}
	return p, nil
}

// repeat answers an authorization of amount on a card ending in last4 for
// an order that already has payment p.
func repeat(op string, p Payment, amount money.Money, last4 string) (Payment, error) {
	switch {
	case p.Status == StatusVoided:
		return Payment{}, errs.E(op, errs.Conflict, errs.Msg("the order's payment was cancelled"))
	case p.Amount != amount:
		return Payment{}, errs.E(op, errs.Conflict, errs.Msg("order %s already has a payment of %s", p.OrderID, p.Amount))
	case p.CardLast4 != last4:
		return Payment{}, errs.E(op, errs.Conflict, errs.Msg("order %s already has a payment with another card", p.OrderID))
	case p.Status == StatusDeclined:
		return Payment{}, declined(op)
	}
	return p, nil
}

func declined(op string) error { return errs.E(op, errs.Declined, errs.Msg("card declined")) }

// newEntry is the ledger entry of kind for payment p, of its whole amount.
func newEntry(p Payment, kind string, now time.Time) Entry {
	return Entry{
		ID:        ids.NewInShard("led", now, uint16(shard.OfIDOrKey(p.OrderID))),
		PaymentID: p.ID,
		OrderID:   p.OrderID,
		Kind:      kind,
		Amount:    p.Amount,
		CreatedAt: now,
	}
}

// Capture takes an authorized payment; capturing a captured one is a no-op.
// The store writes PaymentCaptured (EventOf) with the capture's ledger
// entry, so a repeated capture publishes nothing.
func (s *Service) Capture(ctx context.Context, id string) (Payment, error) {
	captured := false
	p, err := s.transition(ctx, "payment.Capture", id, func(p *Payment, now time.Time) (*Entry, error) {
		captured = false // fn may run again when the store retries
		switch p.Status {
		case StatusCaptured:
			return nil, nil
		case StatusAuthorized:
			captured = true
			return change(p, StatusCaptured, KindCapture, now), nil
		}
		return nil, errs.E(errs.Conflict, errs.Msg("payment is %s and cannot be captured", p.Status))
	})
	if err == nil && captured {
		s.kick()
	}
	return p, err
}

// Void releases an authorized payment; voiding a voided or declined one is a
// no-op.
func (s *Service) Void(ctx context.Context, id string) (Payment, error) {
	return s.transition(ctx, "payment.Void", id, voidFn)
}

// voidFn is the rule of Void and VoidForOrder.
func voidFn(p *Payment, now time.Time) (*Entry, error) {
	switch p.Status {
	case StatusVoided, StatusDeclined:
		return nil, nil
	case StatusAuthorized:
		return change(p, StatusVoided, KindVoid, now), nil
	case StatusCaptured:
		return nil, errs.E(errs.Conflict, errs.Msg("payment is captured and cannot be voided; refund it instead"))
	}
	return nil, errs.E(errs.Conflict, errs.Msg("payment is %s and cannot be voided", p.Status))
}

// Refund gives back a captured payment; refunding a refunded one is a no-op.
func (s *Service) Refund(ctx context.Context, id string) (Payment, error) {
	return s.transition(ctx, "payment.Refund", id, func(p *Payment, now time.Time) (*Entry, error) {
		switch p.Status {
		case StatusRefunded:
			return nil, nil
		case StatusCaptured:
			return change(p, StatusRefunded, KindRefund, now), nil
		}
		return nil, errs.E(errs.Conflict, errs.Msg("payment is %s and cannot be refunded", p.Status))
	})
}

// VoidForOrder voids the order's payment, or cancels the order's payment
// before it exists (see API).
func (s *Service) VoidForOrder(ctx context.Context, orderID string) (Payment, error) {
	const op = "payment.VoidForOrder"
	if err := validateOrderID(orderID); err != nil {
		return Payment{}, errs.E(op, err)
	}
	now := s.now()
	cancelled := Payment{
		ID:        ids.NewInShard("pay", now, uint16(shard.OfIDOrKey(orderID))),
		OrderID:   orderID,
		Amount:    money.USD(0),
		Status:    StatusVoided,
		CreatedAt: now,
		UpdatedAt: now,
	}
	p, err := s.store.UpdateOrder(ctx, orderID, cancelled, func(p *Payment) (*Entry, error) { return voidFn(p, now) })
	if err != nil {
		return Payment{}, errs.E(op, err)
	}
	return present(p), nil
}

// present is p as the order-keyed calls return it: a cancellation without
// the id of its row, since no payment was made.
func present(p Payment) Payment {
	if p.Cancelled() {
		p.ID = ""
	}
	return p
}

// change moves p to status and returns the ledger entry of kind that
// records it.
func change(p *Payment, status, kind string, now time.Time) *Entry {
	p.Status, p.UpdatedAt = status, now
	e := newEntry(*p, kind, now)
	return &e
}

func (s *Service) transition(ctx context.Context, op, id string, fn func(p *Payment, now time.Time) (*Entry, error)) (Payment, error) {
	if strings.TrimSpace(id) == "" {
		return Payment{}, errs.E(op, errs.NotFound, errs.Msg("payment not found"))
	}
	now := s.now()
	p, err := s.store.Update(ctx, id, func(p *Payment) (*Entry, error) { return fn(p, now) })
	if err != nil {
		return Payment{}, errs.E(op, err)
	}
	return p, nil
}

// Audit checks the whole payment ledger (see Auditor).
func (s *Service) Audit(ctx context.Context) (Audit, error) {
	a, err := s.store.Audit(ctx)
	if err != nil {
		return Audit{}, errs.E("payment.Audit", err)
	}
	return a, nil
}

// GetPayment returns a payment by id.
func (s *Service) GetPayment(ctx context.Context, id string) (Payment, error) {
	const op = "payment.GetPayment"
	if strings.TrimSpace(id) == "" {
		return Payment{}, errs.E(op, errs.NotFound, errs.Msg("payment not found"))
	}
	p, err := s.store.Get(ctx, id)
	if err != nil {
		return Payment{}, errs.E(op, err)
	}
	return p, nil
}

// PaymentForOrder returns the payment of an order, or its cancellation (with
// an empty ID); errs.NotFound if it has none.
func (s *Service) PaymentForOrder(ctx context.Context, orderID string) (Payment, error) {
	const op = "payment.PaymentForOrder"
	if strings.TrimSpace(orderID) == "" || len(orderID) > MaxOrderIDLen {
		return Payment{}, errs.E(op, errs.NotFound, errs.Msg("payment not found"))
	}
	p, err := s.store.GetByOrder(ctx, orderID)
	if err != nil {
		return Payment{}, errs.E(op, err)
	}
	return present(p), nil
}

func validateOrderID(id string) error {
	switch {
	case strings.TrimSpace(id) == "":
		return errs.E(errs.Invalid, errs.Msg("order_id is required"))
	case len(id) > MaxOrderIDLen:
		return errs.E(errs.Invalid, errs.Msg("order_id must be at most %d characters", MaxOrderIDLen))
	}
	return nil
}

func validateAmount(m money.Money) error {
	switch {
	case m.Currency != money.Currency:
		return errs.E(errs.Invalid, errs.Msg("currency must be %s", money.Currency))
	case m.Amount <= 0:
		return errs.E(errs.Invalid, errs.Msg("amount must be positive"))
	case m.Amount > MaxAmount:
		return errs.E(errs.Invalid, errs.Msg("amount must be at most %s", money.USD(MaxAmount)))
	}
	return nil
}

// ValidateCard checks a card's shape as of now (12-19 digits passing the
// Luhn check, a valid expiry month neither passed nor too far ahead, a CVC of
// 3 or 4 digits) and returns its number without spaces; errs.Invalid with the
// reason otherwise, never echoing the number. Whether the card is good is
// decided by Authorize.
func ValidateCard(c Card, now time.Time) (string, error) {
	number := strings.ReplaceAll(c.Number, " ", "")
	switch {
	case number == "":
		return "", errs.E(errs.Invalid, errs.Msg("card number is required"))
	case !allDigits(number):
		return "", errs.E(errs.Invalid, errs.Msg("card number must contain only digits"))
	case len(number) < 12 || len(number) > 19:
		return "", errs.E(errs.Invalid, errs.Msg("card number must have 12 to 19 digits"))
	case !luhn(number):
		return "", errs.E(errs.Invalid, errs.Msg("card number is not valid"))
	case c.ExpMonth < 1 || c.ExpMonth > 12:
		return "", errs.E(errs.Invalid, errs.Msg("exp_month must be from 1 to 12"))
	case c.ExpYear < 1000 || c.ExpYear > 9999:
		return "", errs.E(errs.Invalid, errs.Msg("exp_year must have four digits"))
	}
	// A card is good through the last day of its expiry month.
	y, m, _ := now.Date()
	switch {
	case c.ExpYear < y || (c.ExpYear == y && c.ExpMonth < int(m)):
		return "", errs.E(errs.Invalid, errs.Msg("card has expired"))
	case c.ExpYear > y+MaxExpiryYears:
		return "", errs.E(errs.Invalid, errs.Msg("card expiry is too far in the future"))
	case len(c.CVC) < 3 || len(c.CVC) > 4 || !allDigits(c.CVC):
		return "", errs.E(errs.Invalid, errs.Msg("cvc must be 3 or 4 digits"))
	}
	return number, nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// luhn reports whether the digits in s pass the Luhn check.
func luhn(s string) bool {
	sum := 0
	double := false
	for i := len(s) - 1; i >= 0; i-- {
		d := int(s[i] - '0')
		if double {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
	}
	return sum%10 == 0
}
