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
	// a shipment (or its shipment was cancelled before it was created), or
	// its id or tracking number is taken (unique constraints, so concurrent
	// creators for one order cannot both succeed).
	Create(ctx context.Context, s Shipment) error
	// Get returns the shipment with this id; errs.NotFound.
	Get(ctx context.Context, id string) (Shipment, error)
	// GetByOrder returns the shipment of an order; errs.NotFound. For an
	// order whose shipment was cancelled before it was created it returns a
	// Shipment with an empty ID, the order id, StatusCancelled and the time
	// of the cancel.
	GetByOrder(ctx context.Context, orderID string) (Shipment, error)
	// CancelByOrder cancels the order's shipment in one transaction: a
	// created one becomes cancelled, a cancelled one is left as it is, and
	// when there is none the order's shipment is recorded as cancelled at
	// now under the order's unique key, so that a concurrent Create cannot
	// slip in (it fails, or it wins and is cancelled). It returns the
	// shipment as GetByOrder then would.
	CancelByOrder(ctx context.Context, orderID string, now time.Time) (Shipment, error)
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

// Quote prices a parcel of items units to addr by the rate table. Only
// the country is required: the checkout page quotes before the rest of the
// address is typed.
func (s *Service) Quote(ctx context.Context, addr Address, items int) (money.Money, error) {
	const op = "shipping.Quote"
	country, err := quoteCountry(addr)
	if err != nil {
		return money.Money{}, errs.E(op, err)
	}
	if err := validateItems(items); err != nil {
		return money.Money{}, errs.E(op, err)
	}
	return rate(country, items), nil
}

// rate is the rate table; country is normalised and items in range.
func rate(country string, items int) money.Money {
	if country == DomesticCountry {
		return money.USD(DomesticBase + DomesticPerUnit*int64(items-1))
	}
	return money.USD(InternationalBase + InternationalPerUnit*int64(items-1))
}

// checkOrderID is errs.Invalid for an empty or over-long order id.
func checkOrderID(orderID string) error {
	switch {
	case strings.TrimSpace(orderID) == "":
		return errs.E(errs.Invalid, errs.Msg("order_id is required"))
	case len(orderID) > MaxOrderIDLen:
		return errs.E(errs.Invalid, errs.Msg("order_id must be at most %d characters", MaxOrderIDLen))
	}
	return nil
}

// CreateShipment creates the shipment of an order, once: a repeat with the
// same address and number of units returns the existing shipment; one with
// another address or size is errs.Conflict, and so is any create for an
// order whose shipment was cancelled (a late, in-flight create after the
// checkout gave up).
func (s *Service) CreateShipment(ctx context.Context, orderID string, addr Address, items int) (Shipment, error) {
	const op = "shipping.CreateShipment"
	if err := checkOrderID(orderID); err != nil {
		return Shipment{}, errs.E(op, err)
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
	if sh.Status == StatusCancelled {
		return Shipment{}, errs.E(op, errs.Conflict, errs.Msg("the order's shipment was cancelled"))
	}
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

// CancelForOrder cancels the order's shipment, or, when it has none yet,
// records it as cancelled so that no shipment can be created for the order
// any more (see API for what it returns). Idempotent.
func (s *Service) CancelForOrder(ctx context.Context, orderID string) (Shipment, error) {
	const op = "shipping.CancelForOrder"
	if err := checkOrderID(orderID); err != nil {
		return Shipment{}, errs.E(op, err)
	}
	sh, err := s.store.CancelByOrder(ctx, orderID, s.clk.Now().UTC().Truncate(time.Millisecond))
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
// upper-cased, or errs.Invalid naming the first bad field: an empty one
// (but the region, which is optional), one over MaxFieldLen characters or
// with control characters, or a country that is not two letters. It checks
// the shape only: ValidateAddress holds a new order's address to the
// country list, its regions and postal codes, which this service does not
// re-check so that checkouts begun before those rules still ship.
func NormalizeAddress(a Address) (Address, error) {
	fields := []struct {
		name string
		v    *string
	}{
		{"name", &a.Name}, {"line1", &a.Line1}, {"city", &a.City},
		{"postal_code", &a.PostalCode}, {"country", &a.Country},
	}
	if r := strings.TrimSpace(a.Region); r != "" {
		// Optional here: orders placed before regions existed have none.
		fields = append(fields, struct {
			name string
			v    *string
		}{"region", &a.Region})
	} else {
		a.Region = ""
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

// quoteCountry checks addr for a quote as NormalizeAddress does, but for
// the fields left empty (all but the country, which is all the rate table
// needs), and returns its normalized country.
func quoteCountry(addr Address) (string, error) {
	for _, p := range []*string{&addr.Name, &addr.Line1, &addr.City, &addr.PostalCode} {
		if strings.TrimSpace(*p) == "" {
			*p = "-" // not asked for: stands in for the check
		}
	}
	a, err := NormalizeAddress(addr)
	if err != nil {
		return "", err
	}
	return a.Country, nil
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
