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
// and implemented by paymentdb.Store.
type Store interface {
	// Create records a new payment. errs.Conflict if a payment for
	// p.OrderID already exists (a unique constraint, so that concurrent
	// creators for one order cannot both succeed).
	Create(ctx context.Context, p Payment) error
	// Get returns the payment with this id; errs.NotFound.
	Get(ctx context.Context, id string) (Payment, error)
	// GetByOrder returns the payment of an order; errs.NotFound.
	GetByOrder(ctx context.Context, orderID string) (Payment, error)
	// Update loads payment id, lets fn change it and saves its Status and
	// UpdatedAt, all in one transaction that also locks the payment against
	// concurrent updates. An error from fn aborts the update, writing
	// nothing, and keeps its kind; errs.NotFound for an unknown id. It
	// returns the saved payment.
	Update(ctx context.Context, id string, fn func(p *Payment) error) (Payment, error)
}

// Service is the payment service: a simulated card processor over a Store.
type Service struct {
	store Store
	clk   clock.Clock
}

var _ API = (*Service)(nil)

// NewService returns the payment service over store, telling time by clk.
func NewService(store Store, clk clock.Clock) *Service {
	return &Service{store: store, clk: clk}
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

	if p, err := s.store.GetByOrder(ctx, r.OrderID); err == nil {
		return repeat(op, p, r.Amount)
	} else if !errs.Is(errs.NotFound, err) {
		return Payment{}, errs.E(op, err)
	}

	p := Payment{
		// The payment sits on its order's shard, and its id says which.
		ID:        ids.NewInShard("pay", now, uint16(shard.OfIDOrKey(r.OrderID))),
		OrderID:   r.OrderID,
		Amount:    r.Amount,
		Status:    StatusAuthorized,
		CardLast4: number[len(number)-4:],
		CreatedAt: now,
		UpdatedAt: now,
	}
	switch number {
	case TestCardUnavailable:
		return Payment{}, errs.E(op, errs.Unavailable, errs.Msg("payment processor temporarily unavailable"))
	case TestCardDeclined:
		p.Status = StatusDeclined
	}
	if err := s.store.Create(ctx, p); err != nil {
		if !errs.Is(errs.Conflict, err) {
			return Payment{}, errs.E(op, err)
		}
		// A concurrent request for the same order got there first.
		existing, gerr := s.store.GetByOrder(ctx, r.OrderID)
		if gerr != nil {
			return Payment{}, errs.E(op, gerr)
		}
		return repeat(op, existing, r.Amount)
	}
	if p.Status == StatusDeclined {
		return Payment{}, declined(op)
	}
	return p, nil
}

// repeat answers an authorization for an order that already has payment p.
func repeat(op string, p Payment, amount money.Money) (Payment, error) {
	if p.Amount != amount {
		return Payment{}, errs.E(op, errs.Conflict, errs.Msg("order %s already has a payment of %s", p.OrderID, p.Amount))
	}
	if p.Status == StatusDeclined {
		return Payment{}, declined(op)
	}
	return p, nil
}

func declined(op string) error { return errs.E(op, errs.Declined, errs.Msg("card declined")) }

// Capture takes an authorized payment; capturing a captured one is a no-op.
func (s *Service) Capture(ctx context.Context, id string) (Payment, error) {
	return s.transition(ctx, "payment.Capture", id, func(p *Payment, now time.Time) error {
		switch p.Status {
		case StatusCaptured:
			return nil
		case StatusAuthorized:
			p.Status, p.UpdatedAt = StatusCaptured, now
			return nil
		}
		return errs.E(errs.Conflict, errs.Msg("payment is %s and cannot be captured", p.Status))
	})
}

// Void releases an authorized payment; voiding a voided or declined one is a
// no-op.
func (s *Service) Void(ctx context.Context, id string) (Payment, error) {
	return s.transition(ctx, "payment.Void", id, func(p *Payment, now time.Time) error {
		switch p.Status {
		case StatusVoided, StatusDeclined:
			return nil
		case StatusAuthorized:
			p.Status, p.UpdatedAt = StatusVoided, now
			return nil
		case StatusCaptured:
			return errs.E(errs.Conflict, errs.Msg("payment is captured and cannot be voided; refund it instead"))
		}
		return errs.E(errs.Conflict, errs.Msg("payment is %s and cannot be voided", p.Status))
	})
}

// Refund gives back a captured payment; refunding a refunded one is a no-op.
func (s *Service) Refund(ctx context.Context, id string) (Payment, error) {
	return s.transition(ctx, "payment.Refund", id, func(p *Payment, now time.Time) error {
		switch p.Status {
		case StatusRefunded:
			return nil
		case StatusCaptured:
			p.Status, p.UpdatedAt = StatusRefunded, now
			return nil
		}
		return errs.E(errs.Conflict, errs.Msg("payment is %s and cannot be refunded", p.Status))
	})
}

func (s *Service) transition(ctx context.Context, op, id string, fn func(p *Payment, now time.Time) error) (Payment, error) {
	if strings.TrimSpace(id) == "" {
		return Payment{}, errs.E(op, errs.NotFound, errs.Msg("payment not found"))
	}
	now := s.now()
	p, err := s.store.Update(ctx, id, func(p *Payment) error { return fn(p, now) })
	if err != nil {
		return Payment{}, errs.E(op, err)
	}
	return p, nil
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

// PaymentForOrder returns the payment of an order; errs.NotFound if it has none.
func (s *Service) PaymentForOrder(ctx context.Context, orderID string) (Payment, error) {
	const op = "payment.PaymentForOrder"
	if strings.TrimSpace(orderID) == "" || len(orderID) > MaxOrderIDLen {
		return Payment{}, errs.E(op, errs.NotFound, errs.Msg("payment not found"))
	}
	p, err := s.store.GetByOrder(ctx, orderID)
	if err != nil {
		return Payment{}, errs.E(op, err)
	}
	return p, nil
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
