package shipping

import (
	"context"
	"crypto/rand"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/globomantics/globomantics/internal/platform/clock"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/ids"
	"github.com/globomantics/globomantics/internal/platform/money"
)

// The rate table. A parcel to the domestic country costs DomesticBase for
// the first unit and DomesticPerUnit for each further unit; to any other
// country, InternationalBase and InternationalPerUnit. All amounts are in
// US cents: 3 units to "US" cost $5.00 + 2 × $1.00 = $7.00, and to "FR"
// $15.00 + 2 × $2.50 = $20.00.
const (
	DomesticCountry      = "US"
	DomesticBase         = 500
	DomesticPerUnit      = 100
	InternationalBase    = 1500
	InternationalPerUnit = 250
)

// Limits on requests.
const (
	MaxItems      = 1000 // units in one parcel
	MaxFieldLen   = 200  // characters in an address field
	MaxOrderIDLen = 128
)

// TrackingPrefix starts every tracking number; twelve random upper-case
// letters and digits follow it.
const TrackingPrefix = "GLB"

// Store is the shipping service's persistence, declared here by its consumer
// and implemented by shippingdb.Store.
type Store interface {
	// Create records a new shipment. errs.Conflict if its order already has
	// a shipment, or its id or tracking number is taken (unique
	// constraints, so concurrent creators for one order cannot both
	// succeed).
	Create(ctx context.Context, s Shipment) error
	// Get returns the shipment with this id; errs.NotFound.
	Get(ctx context.Context, id string) (Shipment, error)
	// GetByOrder returns the shipment of an order; errs.NotFound.
	GetByOrder(ctx context.Context, orderID string) (Shipment, error)
	// Update loads shipment id, lets fn change it and saves its Status, in
	// one transaction that locks the shipment against concurrent updates.
	// An error from fn aborts the update, writing nothing, and keeps its
	// kind; errs.NotFound for an unknown id. It returns the saved shipment.
	Update(ctx context.Context, id string, fn func(s *Shipment) error) (Shipment, error)
}

// Service is the shipping service over a Store.
type Service struct {
	store Store
	clk   clock.Clock
}

var _ API = (*Service)(nil)

// NewService returns the shipping service over store, telling time by clk.
func NewService(store Store, clk clock.Clock) *Service {
	return &Service{store: store, clk: clk}
}

// Quote prices a parcel of items units to addr by the rate table.
func (s *Service) Quote(ctx context.Context, addr Address, items int) (money.Money, error) {
	const op = "shipping.Quote"
	a, err := NormalizeAddress(addr)
	if err != nil {
		return money.Money{}, errs.E(op, err)
	}
	if err := validateItems(items); err != nil {
		return money.Money{}, errs.E(op, err)
	}
	return rate(a.Country, items), nil
}

// rate is the rate table; country is normalised and items in range.
func rate(country string, items int) money.Money {
	if country == DomesticCountry {
		return money.USD(DomesticBase + DomesticPerUnit*int64(items-1))
	}
	return money.USD(InternationalBase + InternationalPerUnit*int64(items-1))
}

// CreateShipment creates the shipment of an order, once: a repeat with the
// same address and number of units returns the existing shipment; one with
// another address or size is errs.Conflict.
func (s *Service) CreateShipment(ctx context.Context, orderID string, addr Address, items int) (Shipment, error) {
	const op = "shipping.CreateShipment"
	switch {
	case strings.TrimSpace(orderID) == "":
		return Shipment{}, errs.E(op, errs.Invalid, errs.Msg("order_id is required"))
	case len(orderID) > MaxOrderIDLen:
		return Shipment{}, errs.E(op, errs.Invalid, errs.Msg("order_id must be at most %d characters", MaxOrderIDLen))
	}
	a, err := NormalizeAddress(addr)
	if err != nil {
		return Shipment{}, errs.E(op, err)
	}
	if err := validateItems(items); err != nil {
		return Shipment{}, errs.E(op, err)
	}
	cost := rate(a.Country, items)

	if sh, err := s.store.GetByOrder(ctx, orderID); err == nil {
		return repeat(op, sh, a, cost)
	} else if !errs.Is(errs.NotFound, err) {
		return Shipment{}, errs.E(op, err)
	}
	now := s.clk.Now().UTC().Truncate(time.Millisecond)
	for attempt := 0; ; attempt++ {
		sh := Shipment{
			ID:             ids.New("shp", now),
			OrderID:        orderID,
			Status:         StatusCreated,
			TrackingNumber: newTrackingNumber(),
			Cost:           cost,
			Address:        a,
			CreatedAt:      now,
		}
		err := s.store.Create(ctx, sh)
		if err == nil {
			return sh, nil
		}
		if !errs.Is(errs.Conflict, err) {
			return Shipment{}, errs.E(op, err)
		}
		existing, gerr := s.store.GetByOrder(ctx, orderID)
		if gerr == nil { // a concurrent request for the order got there first
			return repeat(op, existing, a, cost)
		}
		if !errs.Is(errs.NotFound, gerr) || attempt == 2 {
			return Shipment{}, errs.E(op, err)
		}
		// The tracking number (60 random bits) collided: draw another.
	}
}

// repeat answers a CreateShipment for an order that already has shipment sh.
func repeat(op string, sh Shipment, a Address, cost money.Money) (Shipment, error) {
	if sh.Address != a || sh.Cost != cost {
		return Shipment{}, errs.E(op, errs.Conflict, errs.Msg("order %s already has a shipment to another address or of another size", sh.OrderID))
	}
	return sh, nil
}

// CancelShipment cancels a created shipment; cancelling twice is a no-op.
func (s *Service) CancelShipment(ctx context.Context, id string) (Shipment, error) {
	const op = "shipping.CancelShipment"
	if strings.TrimSpace(id) == "" {
		return Shipment{}, errs.E(op, errs.NotFound, errs.Msg("shipment not found"))
	}
	sh, err := s.store.Update(ctx, id, func(sh *Shipment) error {
		switch sh.Status {
		case StatusCancelled:
			return nil
		case StatusCreated:
			sh.Status = StatusCancelled
			return nil
		}
		return errs.E(errs.Conflict, errs.Msg("shipment is %s and cannot be cancelled", sh.Status))
	})
	if err != nil {
		return Shipment{}, errs.E(op, err)
	}
	return sh, nil
}

// GetShipment returns a shipment by id.
func (s *Service) GetShipment(ctx context.Context, id string) (Shipment, error) {
	const op = "shipping.GetShipment"
	if strings.TrimSpace(id) == "" {
		return Shipment{}, errs.E(op, errs.NotFound, errs.Msg("shipment not found"))
	}
	sh, err := s.store.Get(ctx, id)
	if err != nil {
		return Shipment{}, errs.E(op, err)
	}
	return sh, nil
}

// NormalizeAddress returns a with every field trimmed and the country
// upper-cased, or errs.Invalid naming the first bad field: an empty one, one
// over MaxFieldLen characters or with control characters, or a country that
// is not two letters.
func NormalizeAddress(a Address) (Address, error) {
	fields := []struct {
		name string
		v    *string
	}{
		{"name", &a.Name}, {"line1", &a.Line1}, {"city", &a.City},
		{"postal_code", &a.PostalCode}, {"country", &a.Country},
	}
	for _, f := range fields {
		v := strings.TrimSpace(*f.v)
		switch {
		case v == "":
			return Address{}, errs.E(errs.Invalid, errs.Msg("address %s is required", f.name))
		case !utf8.ValidString(v):
			return Address{}, errs.E(errs.Invalid, errs.Msg("address %s must be valid UTF-8", f.name))
		case utf8.RuneCountInString(v) > MaxFieldLen:
			return Address{}, errs.E(errs.Invalid, errs.Msg("address %s must be at most %d characters", f.name, MaxFieldLen))
		case strings.ContainsFunc(v, unicode.IsControl):
			return Address{}, errs.E(errs.Invalid, errs.Msg("address %s must not contain control characters", f.name))
		}
		*f.v = v
	}
	c := strings.ToUpper(a.Country)
	if len(c) != 2 || c[0] < 'A' || c[0] > 'Z' || c[1] < 'A' || c[1] > 'Z' {
		return Address{}, errs.E(errs.Invalid, errs.Msg("address country must be a two-letter ISO 3166 code such as US"))
	}
	a.Country = c
	return a, nil
}

func validateItems(n int) error {
	if n < 1 || n > MaxItems {
		return errs.E(errs.Invalid, errs.Msg("items must be from 1 to %d", MaxItems))
	}
	return nil
}

// newTrackingNumber is TrackingPrefix and twelve random characters from
// A-Z and 2-7 (60 bits).
func newTrackingNumber() string { return TrackingPrefix + rand.Text()[:12] }
