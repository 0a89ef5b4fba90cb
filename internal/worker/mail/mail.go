// Package mail is the e-mail worker. It sends the account service's
// password reset links (PasswordResetRequested jobs, reset.go), and it
// takes the EmailRequested jobs the order service enqueues with OrderPlaced and OrderCancelled (on the
// work-queue stream: each job goes to one worker instance) and sends an
// order confirmation or a cancellation notice, RFC 5322 messages sent
// through a Sender. The
// development Sender writes each message to a file (<dir>/<message id>.eml),
// which the storefront's development page lists; the production one speaks
// SMTP.
//
// Delivery is at least once: a message whose send fails for now (a refused
// connection, an SMTP 4xx reply) is retried by the bus; one that can never be
// sent (an SMTP 5xx reply to the message, no valid recipient) is a dead
// letter at once (bus.Permanent), for an operator to inspect and replay. The
// message of an order and kind is the same bytes every time (its Date is the
// time of the change and its Message-ID derives from the order id and the
// kind), so a repeat overwrites the same file, and an SMTP receiver can
// recognise it.
package mail

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"mime/quotedprintable"
	"net/mail"
	"strings"
	"time"
	"unicode"

	"github.com/globomantics/globomantics/internal/order"
	"github.com/globomantics/globomantics/internal/payment"
	"github.com/globomantics/globomantics/internal/platform/bus"
	"github.com/globomantics/globomantics/internal/platform/clock"
	"github.com/globomantics/globomantics/internal/shipping"
)

// ConsumerName is the durable bus consumer of the e-mail jobs, which the
// worker's instances share: the one consumer of the job subject on the
// work-queue stream.
const ConsumerName = "mail-jobs"

// Subjects are the job subjects the worker handles.
var Subjects = []string{order.SubjectEmailRequested}

// LegacyConsumerName is the durable consumer of OrderPlaced and
// OrderCancelled on the events stream through which versions before the
// e-mail jobs sent mail. A deployment upgraded from one still has it, with
// the orders changed before the upgrade whose mail was not sent yet: the
// worker finishes those through it (bus.Retire), then it is deleted. Not to
// be reused.
const LegacyConsumerName = "mail-worker"

// LegacySubjects are the subjects of LegacyConsumerName.
var LegacySubjects = []string{order.SubjectOrderPlaced, order.SubjectOrderCancelled}

// Kind is what a message tells the customer.
type Kind string

// The kinds of message the worker sends.
const (
	KindConfirmation Kind = "confirmation" // the order is confirmed
	KindCancellation Kind = "cancellation" // the order was cancelled
)

// cancelledSuffix ends the id of a cancellation: "<order id>.cancelled".
// Order ids never hold a '.', so no order's confirmation can share it.
const cancelledSuffix = ".cancelled"

// MessageID is the id that names the message of kind about order orderID:
// the order id for a confirmation, "<order id>.cancelled" for a
// cancellation. It names the development file and is part of the
// Message-ID header.
func MessageID(orderID string, k Kind) string {
	if k == KindCancellation {
		return orderID + cancelledSuffix
	}
	return orderID
}

// ValidMessageID reports whether id is one MessageID returns for a valid
// order id: safe in a file name and a URL.
func ValidMessageID(id string) bool {
	return order.ValidID(strings.TrimSuffix(id, cancelledSuffix))
}

// Message is one e-mail, ready to send.
type Message struct {
	ID      string // names the message: MessageID(order id, kind)
	Kind    Kind
	From    string // envelope sender, a bare address
	To      string // envelope recipient, a bare address
	Subject string // the subject, unencoded
	Data    []byte // the RFC 5322 message: headers and body, CRLF line ends
}

// Sender delivers messages.
type Sender interface {
	Send(ctx context.Context, msg Message) error
}

// PermanentError is a send failure that retrying cannot fix (a malformed
// message, a recipient the server refuses for good).
type PermanentError struct{ Err error }

func (e *PermanentError) Error() string { return "permanent send failure: " + e.Err.Error() }

func (e *PermanentError) Unwrap() error { return e.Err }

// IsPermanent reports whether err says that sending again cannot succeed:
// a PermanentError, or an SMTP reply in the 5xx range to the message's own
// commands (not to the session set-up, which fails every message alike).
func IsPermanent(err error) bool {
	var pe *PermanentError
	if errors.As(err, &pe) {
		return true
	}
	var se *setupError
	if errors.As(err, &se) {
		return false
	}
	return smtpCode(err) >= 500
}

// ErrUndeliverable is returned by Compose for an order that no message can be
// sent for: no valid recipient address or an id that cannot name a message.
var ErrUndeliverable = errors.New("mail: order cannot be mailed")

// Worker sends order confirmations and cancellation notices.
type Worker struct {
	sender  Sender
	from    *mail.Address
	log     *slog.Logger
	shopURL string      // links begin with it (WithShopURL, reset.go)
	clock   clock.Clock // WithClock; clock.Real by default
}

// New returns a worker that sends through sender as from (an RFC 5322
// address such as "Globomantics <orders@globomantics.example>"). It panics
// if from is not a valid address: configuration validation must catch that
// first. log nil means slog.Default().
func New(sender Sender, from string, log *slog.Logger, opts ...Option) *Worker {
	a, err := mail.ParseAddress(from)
	if err != nil {
		panic(fmt.Sprintf("mail.New: invalid from address %q: %v", from, err))
	}
	if log == nil {
		log = slog.Default()
	}
	w := &Worker{sender: sender, from: a, log: log, shopURL: DefaultShopURL, clock: clock.Real{}}
	for _, o := range opts {
		o(w)
	}
	return w
}

// Handle is the bus handler for EmailRequested jobs (and, from
// LegacyConsumerName, OrderPlaced and OrderCancelled events): it composes
// and sends the order's confirmation or cancellation notice, to the job's
// recipient. A send that may
// succeed later returns its error, so that the bus redelivers the event
// with backoff; an event that can never be mailed (undecodable, no valid
// recipient, refused by the SMTP server with a 5xx reply) returns a
// bus.Permanent error, so that it goes to the dead letters at once with the
// reason. Events of other subjects are ignored (nil).
func (w *Worker) Handle(ctx context.Context, ev bus.Event) error {
	var (
		o       order.Order
		kind    Kind
		compose func(*mail.Address, order.Order) (Message, error)
	)
	switch ev.Type {
	case order.SubjectEmailRequested:
		var job order.EmailRequested
		if err := ev.Decode(&job); err != nil {
			return bus.Permanent(fmt.Errorf("undecodable EmailRequested %s: %w", ev.ID, err))
		}
		switch job.Kind {
		case order.EmailOrderConfirmation:
			kind, compose = KindConfirmation, Compose
		case order.EmailOrderCancellation:
			kind, compose = KindCancellation, ComposeCancellation
		default:
			return bus.Permanent(fmt.Errorf("EmailRequested %s: unknown kind %q", ev.ID, job.Kind))
		}
		if job.OrderID != job.Order.ID {
			return bus.Permanent(fmt.Errorf("EmailRequested %s: order id %q but the order carried is %q", ev.ID, job.OrderID, job.Order.ID))
		}
		o = job.Order
		if job.To != "" {
			o.Email = job.To
		}
	case order.SubjectOrderPlaced:
		var placed order.OrderPlaced
		if err := ev.Decode(&placed); err != nil {
			return bus.Permanent(fmt.Errorf("undecodable OrderPlaced %s: %w", ev.ID, err))
		}
		o, kind, compose = placed.Order, KindConfirmation, Compose
	case order.SubjectOrderCancelled:
		var cancelled order.OrderCancelled
		if err := ev.Decode(&cancelled); err != nil {
			return bus.Permanent(fmt.Errorf("undecodable OrderCancelled %s: %w", ev.ID, err))
		}
		o, kind, compose = cancelled.Order, KindCancellation, ComposeCancellation
	default:
		w.log.Debug("mail worker ignores event", "subject", ev.Type, "id", ev.ID)
		return nil
	}
	if o.UpdatedAt.IsZero() {
		o.UpdatedAt = ev.Time
	}
	msg, err := compose(w.from, o)
	if err != nil {
		w.log.Error("order e-mail cannot be composed", "kind", kind, "order_id", o.ID, "err", err)
		return bus.Permanent(fmt.Errorf("order %s %s: %w", o.ID, kind, err))
	}
	if err := w.sender.Send(ctx, msg); err != nil {
		if IsPermanent(err) {
			w.log.Error("order e-mail refused for good", "kind", kind, "order_id", o.ID, "to", msg.To, "err", err)
			return bus.Permanent(fmt.Errorf("sending %s of %s: %w", kind, o.ID, err))
		}
		return fmt.Errorf("sending %s of %s: %w", kind, o.ID, err)
	}
	w.log.Info("order e-mail sent", "kind", kind, "order_id", o.ID, "to", msg.To)
	return nil
}

// Compose builds the confirmation of o from from: a text/plain UTF-8
// message in quoted-printable with the items, the totals, the shipping
// address and the tracking number. The Date is o.UpdatedAt (the time it was
// confirmed); the Message-ID is <order-ID@domain of from>.
// ErrUndeliverable when o has no valid recipient or id.
func Compose(from *mail.Address, o order.Order) (Message, error) {
	return compose(from, o, KindConfirmation, "Your Globomantics order "+orderRef(o), confirmationBody(o))
}

// ComposeCancellation builds the notice that o was cancelled, from from: a
// text/plain UTF-8 message in quoted-printable with the reason, what
// happened to the payment (not charged, or refunded), the items and the
// total. The Date is o.UpdatedAt (the time it was cancelled); the
// Message-ID is <order-ID.cancelled@domain of from>. ErrUndeliverable when
// o has no valid recipient or id.
func ComposeCancellation(from *mail.Address, o order.Order) (Message, error) {
	return compose(from, o, KindCancellation, "Your Globomantics order "+orderRef(o)+" was cancelled", cancellationBody(o))
}

// compose builds the message of kind about o with subject and text (with
// \n line ends).
func compose(from *mail.Address, o order.Order, kind Kind, subject, text string) (Message, error) {
	if !order.ValidID(o.ID) {
		return Message{}, fmt.Errorf("%w: invalid order id %q", ErrUndeliverable, o.ID)
	}
	to, err := recipient(o.Email, o.ShippingAddress.Name)
	if err != nil {
		return Message{}, err
	}
	date := o.UpdatedAt
	if date.IsZero() {
		date = o.CreatedAt
	}
	id := MessageID(o.ID, kind)

	data, err := plainText(date, from, to, subject, "<order-"+id+"@"+domainOf(from)+">", text)
	if err != nil {
		return Message{}, err
	}
	return Message{ID: id, Kind: kind, From: from.Address, To: to.Address, Subject: subject, Data: data}, nil
}

// recipient parses addr as the To address, named name (cleaned).
// ErrUndeliverable when addr is not a valid address.
func recipient(addr, name string) (*mail.Address, error) {
	to, err := mail.ParseAddress(addr)
	if err != nil || strings.TrimSpace(addr) == "" {
		return nil, fmt.Errorf("%w: no valid recipient address %q", ErrUndeliverable, addr)
	}
	to.Name = clean(name)
	return to, nil
}

// domainOf is the domain of from's address, which Message-IDs end with.
func domainOf(from *mail.Address) string {
	if at := strings.LastIndexByte(from.Address, '@'); at >= 0 && at < len(from.Address)-1 {
		return from.Address[at+1:]
	}
	return "globomantics.invalid"
}

// plainText is a whole RFC 5322 message: its headers and body, a UTF-8
// text sent quoted-printable, with CRLF line ends.
func plainText(date time.Time, from, to *mail.Address, subject, messageID, body string) ([]byte, error) {
	var b bytes.Buffer
	header(&b, "Date", date.Format(time.RFC1123Z))
	header(&b, "From", from.String())
	header(&b, "To", to.String())
	header(&b, "Subject", mime.QEncoding.Encode("utf-8", subject))
	header(&b, "Message-ID", messageID)
	header(&b, "MIME-Version", "1.0")
	header(&b, "Content-Type", "text/plain; charset=utf-8")
	header(&b, "Content-Transfer-Encoding", "quoted-printable")
	b.WriteString("\r\n")
	qp := quotedprintable.NewWriter(&b)
	if _, err := qp.Write([]byte(body)); err != nil {
		return nil, err
	}
	if err := qp.Close(); err != nil {
		return nil, err
	}
	if !bytes.HasSuffix(b.Bytes(), []byte("\r\n")) {
		b.WriteString("\r\n")
	}
	return b.Bytes(), nil
}

// header writes "name: value", folding the value at spaces so that lines
// stay within 78 characters where its words allow.
func header(b *bytes.Buffer, name, value string) {
	line := name + ":"
	first := true
	for _, word := range strings.Split(value, " ") {
		if !first && len(line)+1+len(word) > 78 {
			b.WriteString(line)
			b.WriteString("\r\n")
			line = ""
		}
		line += " " + word
		first = false
	}
	b.WriteString(line)
	b.WriteString("\r\n")
}

// clean drops control characters, which have no place in a display name.
func clean(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return -1
		}
		return r
	}, strings.TrimSpace(s))
}

// orderRef is how the order is named to its customer: its number ("GM-
// 4K7Q-2XPN"); the id stands in only for an order that has none.
func orderRef(o order.Order) string {
	if n, _, ok := order.ParseNumber(o.Number); ok {
		return n
	}
	return o.ID
}

// addressLines is the shipping address as it is written on a parcel:
// name, street, "City, Region Postal code", and the country's name.
func addressLines(a shipping.Address) []string {
	city := a.City
	if r := shipping.RegionName(a.Country, a.Region); r != "" {
		city += ", " + r
	}
	return []string{a.Name, a.Line1, strings.TrimSpace(city + " " + a.PostalCode), shipping.CountryName(a.Country)}
}

// greeting is the first line of every message.
func greeting(o order.Order) string { return hello(o.ShippingAddress.Name) }

// hello greets name (cleaned), or "customer" when it is empty.
func hello(name string) string {
	if name = clean(name); name == "" {
		name = "customer"
	}
	return fmt.Sprintf("Hello %s,\n\n", name)
}

// confirmationBody is the confirmation's text, with \n line ends (the
// quoted-printable writer turns them into CRLF).
func confirmationBody(o order.Order) string {
	var b strings.Builder
	b.WriteString(greeting(o))
	fmt.Fprintf(&b, "thank you for shopping at Globomantics. Your order %s is confirmed.\n\n", orderRef(o))
	b.WriteString("Items:\n")
	for _, it := range o.Items {
		fmt.Fprintf(&b, "  %d × %s — %s each: %s\n", it.Quantity, clean(it.Name), it.UnitPrice.String(), it.LineTotal.String())
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "Subtotal: %s\n", o.Subtotal.String())
	fmt.Fprintf(&b, "Shipping: %s\n", o.ShippingCost.String())
	fmt.Fprintf(&b, "Total:    %s\n\n", o.Total.String())
	if o.Payment.Status == payment.StatusCaptured {
		b.WriteString("Payment: paid. We are preparing your parcel.\n\n")
	}
	b.WriteString("Shipping to:\n")
	for _, l := range addressLines(o.ShippingAddress) {
		if l = clean(l); l != "" {
			fmt.Fprintf(&b, "  %s\n", l)
		}
	}
	b.WriteString("\n")
	if o.Shipment.TrackingNumber != "" {
		fmt.Fprintf(&b, "Tracking number: %s\n\n", clean(o.Shipment.TrackingNumber))
	} else {
		b.WriteString("You will receive a tracking number when your parcel ships.\n\n")
	}
	b.WriteString("Thank you,\nGlobomantics\n")
	return b.String()
}

// cancellationBody is the cancellation notice's text, with \n line ends.
// What it says of the money follows the payment's status when the order was
// cancelled: refunded, to be refunded (captured), or not charged (no
// payment, a declined card, a voided or still pending authorization).
func cancellationBody(o order.Order) string {
	var b strings.Builder
	b.WriteString(greeting(o))
	fmt.Fprintf(&b, "your Globomantics order %s", orderRef(o))
	if !o.CreatedAt.IsZero() {
		fmt.Fprintf(&b, " of %s", o.CreatedAt.UTC().Format("2 January 2006"))
	}
	b.WriteString(" was cancelled.\n\n")
	if r := clean(o.CancelReason); r != "" {
		fmt.Fprintf(&b, "Reason: %s\n\n", r)
	}
	switch o.Payment.Status {
	case payment.StatusRefunded:
		fmt.Fprintf(&b, "Your payment of %s has been refunded. It may take a few days to appear on your statement.\n\n", o.Total.String())
	case payment.StatusCaptured:
		fmt.Fprintf(&b, "Your payment of %s will be refunded to the card you paid with.\n\n", o.Total.String())
	case payment.StatusVoided, payment.StatusAuthorized:
		b.WriteString("You were not charged: the hold on your card has been released.\n\n")
	default:
		b.WriteString("You were not charged.\n\n")
	}
	b.WriteString("The order held:\n")
	for _, it := range o.Items {
		fmt.Fprintf(&b, "  %d × %s: %s\n", it.Quantity, clean(it.Name), it.LineTotal.String())
	}
	fmt.Fprintf(&b, "Total: %s\n\n", o.Total.String())
	b.WriteString("You are welcome to place the order again at any time.\n\nGlobomantics\n")
	return b.String()
}
