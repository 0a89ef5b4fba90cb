// Package mail is the order e-mail worker: it turns every OrderPlaced event
// into an order confirmation, an RFC 5322 message sent through a Sender. The
// development Sender writes each message to a file (<dir>/<order id>.eml),
// which the storefront's development page lists; the production one speaks
// SMTP.
//
// Delivery is at least once: a message whose send fails is retried by the
// bus. The message for an order is the same bytes every time (its Date is the
// order's confirmation time and its Message-ID derives from the order id), so
// a repeat overwrites the same file, and an SMTP receiver can recognise it.
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
	"github.com/globomantics/globomantics/internal/platform/bus"
)

// ConsumerName is the durable bus consumer the worker's instances share.
const ConsumerName = "mail-worker"

// Subjects are the bus subjects the worker handles.
var Subjects = []string{order.SubjectOrderPlaced}

// Message is one e-mail, ready to send.
type Message struct {
	ID      string // the order id; names the message
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

// Worker sends order confirmations.
type Worker struct {
	sender Sender
	from   *mail.Address
	log    *slog.Logger
}

// New returns a worker that sends through sender as from (an RFC 5322
// address such as "Globomantics <orders@globomantics.example>"). It panics
// if from is not a valid address: configuration validation must catch that
// first. log nil means slog.Default().
func New(sender Sender, from string, log *slog.Logger) *Worker {
	a, err := mail.ParseAddress(from)
	if err != nil {
		panic(fmt.Sprintf("mail.New: invalid from address %q: %v", from, err))
	}
	if log == nil {
		log = slog.Default()
	}
	return &Worker{sender: sender, from: a, log: log}
}

// Handle is the bus handler for OrderPlaced: it composes and sends the
// order's confirmation. A send that may succeed later returns its error so
// that the bus redelivers the event; an event that can never be mailed is
// logged and dropped (nil).
func (w *Worker) Handle(ctx context.Context, ev bus.Event) error {
	if ev.Type != order.SubjectOrderPlaced {
		w.log.Debug("mail worker ignores event", "subject", ev.Type, "id", ev.ID)
		return nil
	}
	var placed order.OrderPlaced
	if err := ev.Decode(&placed); err != nil {
		w.log.Error("undecodable OrderPlaced dropped", "id", ev.ID, "err", err)
		return nil
	}
	o := placed.Order
	if o.UpdatedAt.IsZero() {
		o.UpdatedAt = ev.Time
	}
	msg, err := Compose(w.from, o)
	if err != nil {
		w.log.Error("order confirmation dropped", "order_id", o.ID, "err", err)
		return nil
	}
	if err := w.sender.Send(ctx, msg); err != nil {
		if IsPermanent(err) {
			w.log.Error("order confirmation refused, dropped", "order_id", o.ID, "to", msg.To, "err", err)
			return nil
		}
		return fmt.Errorf("sending confirmation of %s: %w", o.ID, err)
	}
	w.log.Info("order confirmation sent", "order_id", o.ID, "to", msg.To)
	return nil
}

// Compose builds the confirmation of o from from: a text/plain UTF-8
// message in quoted-printable with the items, the totals, the shipping
// address and the tracking number. The Date is o.UpdatedAt (the time it was
// confirmed). ErrUndeliverable when o has no valid recipient or id.
func Compose(from *mail.Address, o order.Order) (Message, error) {
	if !order.ValidID(o.ID) {
		return Message{}, fmt.Errorf("%w: invalid order id %q", ErrUndeliverable, o.ID)
	}
	to, err := mail.ParseAddress(o.Email)
	if err != nil || strings.TrimSpace(o.Email) == "" {
		return Message{}, fmt.Errorf("%w: no valid recipient address %q", ErrUndeliverable, o.Email)
	}
	to.Name = clean(o.ShippingAddress.Name)
	date := o.UpdatedAt
	if date.IsZero() {
		date = o.CreatedAt
	}
	domain := "globomantics.invalid"
	if at := strings.LastIndexByte(from.Address, '@'); at >= 0 && at < len(from.Address)-1 {
		domain = from.Address[at+1:]
	}
	subject := "Your Globomantics order " + o.ID

	var b bytes.Buffer
	header(&b, "Date", date.Format(time.RFC1123Z))
	header(&b, "From", from.String())
	header(&b, "To", to.String())
	header(&b, "Subject", mime.QEncoding.Encode("utf-8", subject))
	header(&b, "Message-ID", "<order-"+o.ID+"@"+domain+">")
	header(&b, "MIME-Version", "1.0")
	header(&b, "Content-Type", "text/plain; charset=utf-8")
	header(&b, "Content-Transfer-Encoding", "quoted-printable")
	b.WriteString("\r\n")
	qp := quotedprintable.NewWriter(&b)
	if _, err := qp.Write([]byte(body(o))); err != nil {
		return Message{}, err
	}
	if err := qp.Close(); err != nil {
		return Message{}, err
	}
	if !bytes.HasSuffix(b.Bytes(), []byte("\r\n")) {
		b.WriteString("\r\n")
	}
	return Message{ID: o.ID, From: from.Address, To: to.Address, Subject: subject, Data: b.Bytes()}, nil
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

// body is the message text, with \n line ends (the quoted-printable writer
// turns them into CRLF).
func body(o order.Order) string {
	var b strings.Builder
	name := clean(o.ShippingAddress.Name)
	if name == "" {
		name = "customer"
	}
	fmt.Fprintf(&b, "Hello %s,\n\n", name)
	fmt.Fprintf(&b, "thank you for shopping at Globomantics. Your order %s is confirmed.\n\n", o.ID)
	b.WriteString("Items:\n")
	for _, it := range o.Items {
		fmt.Fprintf(&b, "  %d × %s — %s each: %s\n", it.Quantity, clean(it.Name), it.UnitPrice.String(), it.LineTotal.String())
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "Subtotal: %s\n", o.Subtotal.String())
	fmt.Fprintf(&b, "Shipping: %s\n", o.ShippingCost.String())
	fmt.Fprintf(&b, "Total:    %s\n\n", o.Total.String())
	a := o.ShippingAddress
	b.WriteString("Shipping to:\n")
	for _, l := range []string{a.Name, a.Line1, strings.TrimSpace(a.PostalCode + " " + a.City), a.Country} {
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
