package order

import (
	"context"
	"errors"
	"net/mail"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/globomantics/globomantics/internal/payment"
	"github.com/globomantics/globomantics/internal/platform/clock"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/money"
	"github.com/globomantics/globomantics/internal/platform/page"
	"github.com/globomantics/globomantics/internal/platform/shard"
	"github.com/globomantics/globomantics/internal/shipping"
)

// Limits on the input of CreateOrder and Cancel.
const (
	MaxIDLen     = 100 // order and product ids
	MaxItems     = 100 // lines per order
	MaxNameLen   = 200 // item names and user ids
	MaxEmailLen  = 254
	MaxReasonLen = 500
)

// Event is an event that Store.Update writes to the outbox in the same
// transaction as the change; ID is its de-duplication key. Jobs are written
// after it in the same transaction (the EmailRequested of the change).
type Event struct {
	Subject string
	ID      string
	Data    any
	Jobs    []Event
}

// ErrNoChange may be returned by the function given to Store.Update to leave
// the order as it is: Update then writes nothing and returns the order and nil.
var ErrNoChange = errors.New("order: no change")

// Store persists orders. Each method is atomic.
type Store interface {
	// Create inserts o with its items and reports created=true. If an order
	// with o.ID exists it changes nothing and returns that order with
	// created=false. o.Number is a new NewNumber of the user's shard; when
	// another order on the node holds it, the store draws another (the
	// stored order says which it kept). errs.Conflict, writing nothing, when o.ID was cancelled
	// before it was created (see Tombstone).
	Create(ctx context.Context, o Order) (stored Order, created bool, err error)
	// Tombstone records that order id was cancelled before it was created,
	// on the node that would hold it, so that a later or concurrent Create
	// with that id fails with errs.Conflict (both claim the one unique id,
	// so exactly one of them wins). Recording it again is a no-op. It is
	// errs.Conflict, recording nothing, when an order with that id exists
	// (it may have been created a moment ago): cancel that order instead;
	// errs.Invalid, recording nothing, for an id that does not tell which
	// node would hold it. A tombstone is no order: Get, Update, ListByUser
	// and the operators' list never show it.
	Tombstone(ctx context.Context, id string, now time.Time) error
	// Get returns the order with its items; errs.NotFound.
	Get(ctx context.Context, id string) (Order, error)
	// GetByNumber returns the order with this order number (as NewNumber
	// spells it), from the node of the shard it carries; errs.NotFound.
	GetByNumber(ctx context.Context, number string) (Order, error)
	// ListByUser returns at most limit of the user's orders, newest first
	// (by CreatedAt, then id, both descending), starting right after the
	// order at after, or with the newest when after is nil; never nil.
	ListByUser(ctx context.Context, userID string, after *ListKey, limit int) ([]Order, error)
	// Update loads the order in a transaction, calls fn with it and, if fn
	// returns nil, saves its mutable fields (Status, Payment, Shipment,
	// CancelReason, UpdatedAt) and, when fn returned an event, writes the
	// event and then its Jobs to the outbox before committing. fn may run more than once if the
	// transaction is retried. fn returning ErrNoChange writes nothing; any
	// other error is returned and writes nothing. errs.NotFound for an
	// unknown id.
	Update(ctx context.Context, id string, fn func(o *Order) (*Event, error)) (Order, error)
}

// Service is the order service over a Store.
type Service struct {
	store Store
	kick  func()
	clk   clock.Clock
}

var _ API = (*Service)(nil)

// NewService returns the order service. kick is called after a commit that
// wrote to the outbox, to wake the outbox relay (nil means no-op); clk is the
// source of time (nil means the wall clock).
func NewService(store Store, kick func(), clk clock.Clock) *Service {
	if kick == nil {
		kick = func() {}
	}
	if clk == nil {
		clk = clock.Real{}
	}
	return &Service{store: store, kick: kick, clk: clk}
}

// ValidID reports whether id can name an order: 1 to MaxIDLen ASCII letters,
// digits, '_' or '-'. Order ids are safe in URLs and file names.
func ValidID(id string) bool {
	if id == "" || len(id) > MaxIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// now is the clock's time at the millisecond precision the stores keep.
func (s *Service) now() time.Time { return s.clk.Now().UTC().Truncate(time.Millisecond) }

// CreateOrder creates a pending order, or returns the existing one with the
// same id when it was created for the same user with the same items (product,
// quantity, unit price), shipping cost and total, whatever its status since
// (callers check Status). errs.Conflict, creating nothing, when the existing
// order differs, and when the id was cancelled before it was created.
func (s *Service) CreateOrder(ctx context.Context, n NewOrder) (Order, error) {
	const op = "order.CreateOrder"
	o, err := s.build(n)
	if err != nil {
		return Order{}, errs.E(op, err)
	}
	stored, created, err := s.store.Create(ctx, o)
	if err != nil {
		return Order{}, errs.E(op, err)
	}
	if !created && !sameOrder(stored, o) {
		return Order{}, errs.E(op, errs.Conflict, errs.Msg("order %s already exists with other items or total", o.ID))
	}
	return stored, nil
}

// sameOrder reports whether the stored order a was created from the same
// request as b: same user, items (product, quantity, unit price), shipping
// cost and total.
func sameOrder(a, b Order) bool {
	if a.UserID != b.UserID || len(a.Items) != len(b.Items) ||
		a.ShippingCost.Amount != b.ShippingCost.Amount || a.Total.Amount != b.Total.Amount ||
		a.Total.Currency != b.Total.Currency {
		return false
	}
	for i, x := range a.Items {
		y := b.Items[i]
		if x.ProductID != y.ProductID || x.Quantity != y.Quantity || x.UnitPrice.Amount != y.UnitPrice.Amount {
			return false
		}
	}
	return true
}

// build validates n and turns it into a pending order with computed totals.
func (s *Service) build(n NewOrder) (Order, error) {
	switch {
	case strings.TrimSpace(n.ID) == "":
		return Order{}, errs.E(errs.Invalid, errs.Msg("id is required"))
	case !ValidID(n.ID):
		return Order{}, errs.E(errs.Invalid, errs.Msg("id must be 1 to %d letters, digits, '_' or '-'", MaxIDLen))
	case strings.TrimSpace(n.UserID) == "":
		return Order{}, errs.E(errs.Invalid, errs.Msg("user_id is required"))
	case len(n.UserID) > MaxNameLen || !printable(n.UserID):
		return Order{}, errs.E(errs.Invalid, errs.Msg("user_id must be at most %d printable characters", MaxNameLen))
	case strings.TrimSpace(n.Email) == "":
		return Order{}, errs.E(errs.Invalid, errs.Msg("email is required"))
	case !validEmail(n.Email):
		return Order{}, errs.E(errs.Invalid, errs.Msg("email is not a valid address"))
	case len(n.Items) == 0:
		return Order{}, errs.E(errs.Invalid, errs.Msg("an order needs at least one item"))
	case len(n.Items) > MaxItems:
		return Order{}, errs.E(errs.Invalid, errs.Msg("an order has at most %d items", MaxItems))
	}
	shippingCost, err := usd("shipping_cost", n.ShippingCost)
	if err != nil {
		return Order{}, err
	}
	items := make([]Item, len(n.Items))
	subtotal := money.USD(0)
	seen := make(map[string]bool, len(n.Items))
	for i, it := range n.Items {
		switch {
		case strings.TrimSpace(it.ProductID) == "":
			return Order{}, errs.E(errs.Invalid, errs.Msg("item %d: product_id is required", i+1))
		case len(it.ProductID) > MaxIDLen || !printable(it.ProductID):
			return Order{}, errs.E(errs.Invalid, errs.Msg("item %d: product_id must be at most %d printable characters", i+1, MaxIDLen))
		case seen[it.ProductID]:
			return Order{}, errs.E(errs.Invalid, errs.Msg("item %d: product %s appears twice", i+1, it.ProductID))
		case strings.TrimSpace(it.Name) == "" || utf8.RuneCountInString(it.Name) > MaxNameLen || !printable(it.Name):
			return Order{}, errs.E(errs.Invalid, errs.Msg("item %d: name must be 1 to %d printable characters", i+1, MaxNameLen))
		case it.Quantity < 1:
			return Order{}, errs.E(errs.Invalid, errs.Msg("item %d: quantity must be at least 1", i+1))
		case it.Quantity > 10000:
			return Order{}, errs.E(errs.Invalid, errs.Msg("item %d: quantity must be at most 10000", i+1))
		}
		seen[it.ProductID] = true
		price, err := usd("unit_price", it.UnitPrice)
		if err != nil {
			return Order{}, errs.E(errs.Invalid, errs.Msg("item %d: %s", i+1, errs.Detail(err)))
		}
		line := price.Times(it.Quantity)
		items[i] = Item{ProductID: it.ProductID, Name: it.Name, Quantity: it.Quantity, UnitPrice: price, LineTotal: line}
		subtotal = subtotal.Add(line)
	}
	now := s.now()
	return Order{
		ID:              n.ID,
		Number:          NewNumber(shard.ForUser(n.UserID)),
		UserID:          n.UserID,
		Email:           n.Email,
		Status:          StatusPending,
		Items:           items,
		Subtotal:        subtotal,
		ShippingCost:    shippingCost,
		Total:           subtotal.Add(shippingCost),
		ShippingAddress: n.ShippingAddress,
		CreatedAt:       now,
		UpdatedAt:       now,
	}, nil
}

// usd checks that m is a non-negative amount in the shop's currency ("" is
// taken to mean it) and returns it with the currency set.
func usd(field string, m money.Money) (money.Money, error) {
	if m.Currency != "" && m.Currency != money.Currency {
		return money.Money{}, errs.E(errs.Invalid, errs.Msg("%s must be in %s", field, money.Currency))
	}
	if m.Amount < 0 {
		return money.Money{}, errs.E(errs.Invalid, errs.Msg("%s must not be negative", field))
	}
	return money.USD(m.Amount), nil
}

func validEmail(s string) bool {
	if len(s) > MaxEmailLen {
		return false
	}
	a, err := mail.ParseAddress(s)
	return err == nil && a.Address == s && a.Name == ""
}

// printable reports whether s is valid UTF-8 without control characters.
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

// GetOrder returns the order with this id or order number; errs.NotFound.
func (s *Service) GetOrder(ctx context.Context, id string) (Order, error) {
	const op = "order.GetOrder"
	if number, _, ok := ParseNumber(id); ok {
		o, err := s.store.GetByNumber(ctx, number)
		if err != nil {
			return Order{}, errs.E(op, err)
		}
		return o, nil
	}
	if !ValidID(id) {
		return Order{}, errs.E(op, errs.NotFound, errs.Msg("order not found"))
	}
	o, err := s.store.Get(ctx, id)
	if err != nil {
		return Order{}, errs.E(op, err)
	}
	return o, nil
}

// ListKey is the position of an order in its user's history, newest first:
// its creation time in Unix milliseconds (the stores' precision), then its id.
type ListKey struct {
	CreatedAtMillis int64
	ID              string
}

// ordersList names the list of userID's orders, newest first, in page tokens.
func ordersList(userID string) string { return "orders/newest/" + userID }

// ListOrders returns a page of the user's orders, newest first; errs.Invalid
// for an empty user id, errs.BadRequest for a page token that is not one of
// this list's. Orders placed while a client pages never make it skip or
// repeat an order: the token holds the last order's key.
func (s *Service) ListOrders(ctx context.Context, userID string, p page.Request) (OrderPage, error) {
	const op = "order.ListOrders"
	if strings.TrimSpace(userID) == "" {
		return OrderPage{}, errs.E(op, errs.Invalid, errs.Msg("user_id is required"))
	}
	p = clampPage(p)
	after, err := decodeListKey(op, p, userID)
	if err != nil {
		return OrderPage{}, err
	}
	list, err := s.store.ListByUser(ctx, userID, after, p.Size+1)
	if err != nil {
		return OrderPage{}, errs.E(op, err)
	}
	next := p.Next(ordersList(userID), len(list), func() []string {
		last := list[p.Size-1]
		return []string{strconv.FormatInt(last.CreatedAt.UnixMilli(), 10), last.ID}
	})
	if len(list) > p.Size {
		list = list[:p.Size]
	}
	return OrderPage{Items: list, NextPageToken: next}, nil
}

// decodeListKey returns the key p's token holds for userID's orders, nil for
// the first page; errs.BadRequest for a token that is not one of them.
func decodeListKey(op string, p page.Request, userID string) (*ListKey, error) {
	key, err := p.After(ordersList(userID), 2)
	if err != nil || key == nil {
		return nil, err
	}
	ms, err := strconv.ParseInt(key[0], 10, 64)
	if err != nil || key[1] == "" {
		return nil, page.BadToken(op)
	}
	return &ListKey{CreatedAtMillis: ms, ID: key[1]}, nil
}

// clampPage makes p's size valid: a size outside 1..page.MaxSize becomes
// the default or the maximum.
func clampPage(p page.Request) page.Request {
	switch {
	case p.Size < 1:
		p.Size = page.DefaultSize
	case p.Size > page.MaxSize:
		p.Size = page.MaxSize
	}
	return p
}

var paymentStatuses = map[string]bool{
	payment.StatusAuthorized: true,
	payment.StatusCaptured:   true,
	payment.StatusVoided:     true,
	payment.StatusRefunded:   true,
	payment.StatusDeclined:   true,
}

func checkPayment(p PaymentInfo) error {
	if p.Status == "" && p.ID == "" {
		return nil
	}
	if !paymentStatuses[p.Status] {
		return errs.E(errs.Invalid, errs.Msg("payment status %q is not a payment status", p.Status))
	}
	if len(p.ID) > MaxIDLen || !printable(p.ID) {
		return errs.E(errs.Invalid, errs.Msg("payment id must be at most %d printable characters", MaxIDLen))
	}
	return nil
}

// SetPayment records the payment's id and status on the order, whatever its
// state; errs.NotFound, errs.Invalid for an unknown payment status.
func (s *Service) SetPayment(ctx context.Context, id string, p PaymentInfo) (Order, error) {
	const op = "order.SetPayment"
	if !ValidID(id) {
		return Order{}, errs.E(op, errs.NotFound, errs.Msg("order not found"))
	}
	if p.Status == "" {
		return Order{}, errs.E(op, errs.Invalid, errs.Msg("payment status is required"))
	}
	if err := checkPayment(p); err != nil {
		return Order{}, errs.E(op, err)
	}
	now := s.now()
	o, err := s.store.Update(ctx, id, func(o *Order) (*Event, error) {
		if o.Payment == p {
			return nil, ErrNoChange
		}
		o.Payment = p
		o.UpdatedAt = now
		return nil, nil
	})
	if err != nil {
		return Order{}, errs.E(op, err)
	}
	return o, nil
}

// Confirm moves a pending order to confirmed with its payment and shipment
// and writes OrderPlaced to the outbox in the same transaction. Confirming a
// confirmed order is a no-op; errs.Conflict for a cancelled one;
// errs.Invalid unless the payment is authorized or captured and the shipment
// has an id.
func (s *Service) Confirm(ctx context.Context, id string, p PaymentInfo, sh ShipmentInfo) (Order, error) {
	const op = "order.Confirm"
	if !ValidID(id) {
		return Order{}, errs.E(op, errs.NotFound, errs.Msg("order not found"))
	}
	if p.Status != payment.StatusAuthorized && p.Status != payment.StatusCaptured {
		return Order{}, errs.E(op, errs.Invalid, errs.Msg("a confirmed order needs an authorized or captured payment"))
	}
	if err := checkPayment(p); err != nil {
		return Order{}, errs.E(op, err)
	}
	if strings.TrimSpace(sh.ID) == "" {
		return Order{}, errs.E(op, errs.Invalid, errs.Msg("a confirmed order needs a shipment"))
	}
	if len(sh.ID) > MaxIDLen || len(sh.Status) > MaxIDLen || len(sh.TrackingNumber) > MaxIDLen ||
		!printable(sh.ID+sh.Status+sh.TrackingNumber) {
		return Order{}, errs.E(op, errs.Invalid, errs.Msg("shipment fields must be at most %d printable characters", MaxIDLen))
	}
	if sh.Status == "" {
		sh.Status = shipping.StatusCreated
	}
	now := s.now()
	wrote := false
	o, err := s.store.Update(ctx, id, func(o *Order) (*Event, error) {
		wrote = false
		switch o.Status {
		case StatusConfirmed:
			return nil, ErrNoChange
		case StatusCancelled:
			return nil, errs.E(errs.Conflict, errs.Msg("order %s is cancelled", o.ID))
		}
		o.Status = StatusConfirmed
		o.Payment = p
		o.Shipment = sh
		o.UpdatedAt = now
		wrote = true
		return &Event{Subject: SubjectOrderPlaced, ID: o.ID, Data: OrderPlaced{Order: *o},
			Jobs: []Event{emailJob(EmailOrderConfirmation, *o)}}, nil
	})
	if err != nil {
		return Order{}, errs.E(op, err)
	}
	if wrote {
		s.kick()
	}
	return o, nil
}

// Cancel moves a pending order to cancelled with a reason and, when given,
// the payment's status, and writes OrderCancelled to the outbox in the same
// transaction. Cancelling a cancelled order is a no-op (and writes nothing);
// errs.Conflict for a confirmed one; errs.Invalid for an empty reason.
//
// An order that does not exist (yet) is errs.NotFound, as before, but its id
// is first recorded as cancelled-before-created, so that a CreateOrder with
// that id arriving later (a late, in-flight call) fails with errs.Conflict
// and creates nothing. If that CreateOrder wins the race instead, the order
// it created is cancelled.
func (s *Service) Cancel(ctx context.Context, id, reason string, p PaymentInfo) (Order, error) {
	const op = "order.Cancel"
	if !ValidID(id) {
		return Order{}, errs.E(op, errs.NotFound, errs.Msg("order not found"))
	}
	reason = strings.TrimSpace(reason)
	if reason == "" {
		return Order{}, errs.E(op, errs.Invalid, errs.Msg("a cancel reason is required"))
	}
	if len(reason) > MaxReasonLen || !printable(reason) {
		return Order{}, errs.E(op, errs.Invalid, errs.Msg("the cancel reason must be at most %d printable characters", MaxReasonLen))
	}
	if err := checkPayment(p); err != nil {
		return Order{}, errs.E(op, err)
	}
	now := s.now()
	for attempt := 0; ; attempt++ {
		wrote := false
		o, err := s.store.Update(ctx, id, func(o *Order) (*Event, error) {
			wrote = false
			switch o.Status {
			case StatusCancelled:
				return nil, ErrNoChange
			case StatusConfirmed:
				return nil, errs.E(errs.Conflict, errs.Msg("order %s is confirmed and cannot be cancelled", o.ID))
			}
			o.Status = StatusCancelled
			o.CancelReason = reason
			if p != (PaymentInfo{}) {
				o.Payment = p
			}
			o.UpdatedAt = now
			wrote = true
			return &Event{Subject: SubjectOrderCancelled, ID: CancelledEventID(o.ID), Data: OrderCancelled{Order: *o},
				Jobs: []Event{emailJob(EmailOrderCancellation, *o)}}, nil
		})
		if err == nil {
			if wrote {
				s.kick()
			}
			return o, nil
		}
		if !errs.Is(errs.NotFound, err) {
			return Order{}, errs.E(op, err)
		}
		terr := s.store.Tombstone(ctx, id, now)
		switch {
		case terr == nil, errs.Is(errs.Invalid, terr):
			// Recorded (or, for an id that names no node, not recordable):
			// the order does not exist.
			return Order{}, errs.E(op, err)
		case errs.Is(errs.Conflict, terr) && attempt < 2:
			continue // created meanwhile: cancel it
		}
		return Order{}, errs.E(op, terr)
	}
}

// emailJob is the EmailRequested job of kind about order o as it is after
// the change, to be written with the change's event.
func emailJob(kind EmailKind, o Order) Event {
	return Event{Subject: SubjectEmailRequested, ID: EmailJobID(o.ID, kind),
		Data: EmailRequested{Kind: kind, OrderID: o.ID, To: o.Email, Order: o, RequestedAt: o.UpdatedAt.UTC()}}
}
