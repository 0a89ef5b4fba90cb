package mail_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/contracts"
	"github.com/globomantics/globomantics/internal/order"
	"github.com/globomantics/globomantics/internal/platform/bus"
	"github.com/globomantics/globomantics/internal/platform/testenv"
	mailworker "github.com/globomantics/globomantics/internal/worker/mail"
)

// readMail parses raw as a recipient's mail program would and checks what
// every message of the worker has: CRLF lines of at most 78 characters plus
// CRLF, From, To (with the display name), the RFC 2047 subject decoding to
// subject, Message-ID, Date and a quoted-printable UTF-8 body. It returns
// the decoded body text.
func readMail(t *testing.T, raw []byte, o order.Order, subject, messageID string, date time.Time) string {
	t.Helper()
	if bytes.Contains(bytes.ReplaceAll(raw, []byte("\r\n"), nil), []byte("\n")) {
		t.Errorf("message has a bare LF line end:\n%q", raw)
	}
	for i, line := range bytes.Split(raw, []byte("\r\n")) {
		if len(line) > 78 {
			t.Errorf("line %d is %d bytes long: %q", i+1, len(line), line)
		}
	}
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("message does not parse: %v\n%s", err, raw)
	}
	h := m.Header
	if d, err := h.Date(); err != nil || !d.Equal(date) {
		t.Errorf("Date = %v, %v; want %v", d, err, date)
	}
	if a, err := mail.ParseAddress(h.Get("From")); err != nil || a.Address != "orders@globomantics.example" || a.Name != "Globomantics" {
		t.Errorf("From = %q (%v)", h.Get("From"), err)
	}
	to, err := h.AddressList("To")
	if err != nil || len(to) != 1 || to[0].Address != o.Email || to[0].Name != o.ShippingAddress.Name {
		t.Errorf("To = %q (%+v, %v)", h.Get("To"), to, err)
	}
	dec := new(mime.WordDecoder)
	if got, err := dec.DecodeHeader(h.Get("Subject")); err != nil || got != subject {
		t.Errorf("Subject = %q (%v), want %q", got, err, subject)
	}
	if got := h.Get("Message-ID"); got != messageID {
		t.Errorf("Message-ID = %q, want %q", got, messageID)
	}
	for k, want := range map[string]string{
		"MIME-Version": "1.0", "Content-Type": "text/plain; charset=utf-8", "Content-Transfer-Encoding": "quoted-printable",
	} {
		if got := h.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	text, err := io.ReadAll(quotedprintable.NewReader(m.Body))
	if err != nil {
		t.Fatalf("body is not quoted-printable: %v", err)
	}
	return string(text)
}

func wantIn(t *testing.T, text string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(text, w) {
			t.Errorf("body lacks %q:\n%s", w, text)
		}
	}
}

// TestComposeCancellation checks the cancellation notice for each way an
// order's payment can end: what it says of the money follows the payment's
// status, and the message names the order, the reason, the items and the
// total.
func TestComposeCancellation(t *testing.T) {
	fromAddr, _ := mail.ParseAddress(from)
	for _, tc := range []struct {
		payment string
		want    string
		not     string
	}{
		{"", "You were not charged.", "refund"},
		{"declined", "You were not charged.", "refund"},
		{"voided", "You were not charged: the hold on your card has been released.", "refund"},
		{"refunded", "Your payment of $42.98 has been refunded.", "not charged"},
		{"captured", "Your payment of $42.98 will be refunded", "not charged"},
	} {
		t.Run("payment "+tc.payment, func(t *testing.T) {
			o := cancelledOrder(sampleOrder("ord_c1"), "payment declined", tc.payment)
			msg, err := mailworker.ComposeCancellation(fromAddr, o)
			if err != nil {
				t.Fatal(err)
			}
			if msg.ID != "ord_c1.cancelled" || msg.Kind != mailworker.KindCancellation || msg.To != o.Email ||
				msg.From != "orders@globomantics.example" || msg.Subject != "Your Globomantics order GM-4K7Q-2XPN was cancelled" {
				t.Errorf("message = %+v", msg)
			}
			text := readMail(t, msg.Data, o, "Your Globomantics order GM-4K7Q-2XPN was cancelled",
				"<order-ord_c1.cancelled@globomantics.example>", cancelledAt)
			wantIn(t, text, "Hello Zoë Ünicode,", "your Globomantics order GM-4K7Q-2XPN of 1 March 2025 was cancelled.",
				"Reason: payment declined", tc.want, "2 × Widget: $25.00", "1 × Crème brûlée torch: $9.99", "Total: $42.98")
			if strings.Contains(text, tc.not) {
				t.Errorf("body for payment %q says %q:\n%s", tc.payment, tc.not, text)
			}
		})
	}
	// The confirmation and the cancellation of one order are two messages.
	conf, err := mailworker.Compose(fromAddr, sampleOrder("ord_c1"))
	if err != nil {
		t.Fatal(err)
	}
	if conf.ID != "ord_c1" || conf.Kind != mailworker.KindConfirmation {
		t.Errorf("confirmation id %q kind %q", conf.ID, conf.Kind)
	}
	o := cancelledOrder(sampleOrder("ord_c1"), "x", "")
	o.Email = "not an address"
	if _, err := mailworker.ComposeCancellation(fromAddr, o); !errors.Is(err, mailworker.ErrUndeliverable) {
		t.Errorf("no recipient: %v, want ErrUndeliverable", err)
	}
}

// TestCancellationIsIdempotentFile: the cancellation is written beside the
// confirmation under its own name, and a redelivery rewrites the same bytes.
func TestCancellationIsIdempotentFile(t *testing.T) {
	dir := t.TempDir()
	w, _ := newWorker(t, mailworker.NewFileSender(dir))
	placed := sampleOrder("ord_1")
	cancelled := cancelledOrder(sampleOrder("ord_2"), "out of stock", "voided")
	var first []byte
	for i := range 2 {
		for _, ev := range []bus.Event{event(t, placed), cancelEvent(t, cancelled)} {
			if err := w.Handle(context.Background(), ev); err != nil {
				t.Fatal(err)
			}
		}
		raw, err := mailworker.ReadMessage(dir, "ord_2.cancelled")
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = raw
		} else if !bytes.Equal(raw, first) {
			t.Error("the redelivered cancellation wrote different bytes")
		}
	}
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, ",") != "ord_1.eml,ord_2.cancelled.eml" {
		t.Errorf("files = %v", names)
	}
	list, err := mailworker.ListMessages(dir)
	if err != nil || len(list) != 2 || list[0].ID != "ord_2.cancelled" || list[0].Subject != "Your Globomantics order GM-4K7Q-2XPN was cancelled" {
		t.Errorf("list = %+v, %v", list, err)
	}
	text := readMail(t, first, cancelled, "Your Globomantics order GM-4K7Q-2XPN was cancelled",
		"<order-ord_2.cancelled@globomantics.example>", cancelledAt)
	wantIn(t, text, "Reason: out of stock", "You were not charged")
	if _, err := os.Stat(filepath.Join(dir, "ord_2.eml")); err == nil {
		t.Error("a cancellation was written under the confirmation's name")
	}
}

func TestSMTPSender(t *testing.T) {
	srv := testenv.SMTP(t)
	srv.SetAuth("mailer", "s3cret")
	o := sampleOrder("ord_smtp")
	w, _ := newWorker(t, mailworker.NewSMTPSender(srv.Addr, "mailer", "s3cret"))
	if err := w.Handle(context.Background(), event(t, o)); err != nil {
		t.Fatal(err)
	}
	fromAddr, _ := mail.ParseAddress(from)
	want, err := mailworker.Compose(fromAddr, o)
	if err != nil {
		t.Fatal(err)
	}
	msgs := srv.Messages()
	if len(msgs) != 1 {
		t.Fatalf("%d messages delivered, want 1", len(msgs))
	}
	m := msgs[0]
	if m.User != "mailer" || m.From != "orders@globomantics.example" || len(m.To) != 1 || m.To[0] != "zoe@example.com" {
		t.Errorf("session: user %q, envelope %q -> %q", m.User, m.From, m.To)
	}
	if !bytes.Equal(m.Data, want.Data) {
		t.Errorf("DATA differs:\n got %q\nwant %q", m.Data, want.Data)
	}
}

// TestSMTPSenderDotStuffing sends a message with lines that start with a
// dot, and one that is a lone dot, through the SMTP client and the test
// server: the server receives exactly the bytes sent.
func TestSMTPSenderDotStuffing(t *testing.T) {
	srv := testenv.SMTP(t)
	data := []byte("Subject: dots\r\n\r\n.leading dot\r\n.\r\n..two\r\nend\r\n")
	err := mailworker.NewSMTPSender(srv.Addr, "", "").Send(context.Background(),
		mailworker.Message{ID: "ord_1", From: "a@example.com", To: "b@example.com", Data: data})
	if err != nil {
		t.Fatal(err)
	}
	if msgs := srv.Messages(); len(msgs) != 1 || !bytes.Equal(msgs[0].Data, data) {
		t.Errorf("received %q, want %q", msgs, data)
	}
}

func TestSMTPSenderPermanentRefusal(t *testing.T) {
	srv := testenv.SMTP(t)
	srv.Fail("RCPT", 550, -1)
	s := mailworker.NewSMTPSender(srv.Addr, "", "")
	fromAddr, _ := mail.ParseAddress(from)
	msg, err := mailworker.Compose(fromAddr, sampleOrder("ord_1"))
	if err != nil {
		t.Fatal(err)
	}
	err = s.Send(context.Background(), msg)
	if err == nil || !mailworker.IsPermanent(err) {
		t.Errorf("Send to a refused recipient = %v, want a permanent error", err)
	}
	w, _ := newWorker(t, s)
	if err := w.Handle(context.Background(), event(t, sampleOrder("ord_1"))); !bus.IsPermanent(err) {
		t.Errorf("a refused recipient = %v, want bus.Permanent", err)
	}
	// A 4xx reply is temporary.
	srv2 := testenv.SMTP(t)
	srv2.Fail("DATA", 451, 1)
	err = mailworker.NewSMTPSender(srv2.Addr, "", "").Send(context.Background(), msg)
	if err == nil || mailworker.IsPermanent(err) || !strings.Contains(err.Error(), "451") {
		t.Errorf("Send answered 451 = %v, want a transient error", err)
	}
	// Nothing listens: a transient error.
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	err = mailworker.NewSMTPSender(addr, "", "").Send(context.Background(), msg)
	if err == nil || mailworker.IsPermanent(err) {
		t.Errorf("Send to a closed port = %v, want a transient error", err)
	}
}

// TestSMTPSenderSetupFailureIsTransient: a 5xx reply while setting up the
// session (here wrong credentials) says nothing about the message: every
// order's confirmation would be refused the same way until an operator fixes
// the server or the configuration. Such failures must be retried, not
// dropped as if the recipient had been refused.
func TestSMTPSenderSetupFailureIsTransient(t *testing.T) {
	srv := testenv.SMTP(t)
	srv.SetAuth("mailer", "right")
	s := mailworker.NewSMTPSender(srv.Addr, "mailer", "wrong")
	fromAddr, _ := mail.ParseAddress(from)
	msg, err := mailworker.Compose(fromAddr, sampleOrder("ord_1"))
	if err != nil {
		t.Fatal(err)
	}
	err = s.Send(context.Background(), msg)
	if err == nil || mailworker.IsPermanent(err) || !strings.Contains(err.Error(), "535") {
		t.Errorf("Send with rejected credentials = %v, want a transient error", err)
	}
	w, _ := newWorker(t, s)
	if err := w.Handle(context.Background(), event(t, sampleOrder("ord_1"))); err == nil || bus.IsPermanent(err) {
		t.Errorf("a confirmation refused for wrong credentials = %v, want an error the bus retries", err)
	}
	if n := len(srv.Messages()); n != 0 {
		t.Errorf("%d messages accepted without authentication", n)
	}
}

// smtpPipeline is the production path on a real embedded broker: the mail
// worker, its handler wrapped in the contract check as the app does, as
// the shared durable consumer, sending to the test's SMTP server.
func smtpPipeline(t *testing.T) (*bus.Bus, *testenv.SMTPServer) {
	t.Helper()
	b := testenv.Bus(t)
	srv := testenv.SMTP(t)
	srv.SetAuth("mailer", "s3cret")
	reg, err := contracts.New()
	if err != nil {
		t.Fatal(err)
	}
	w, _ := newWorker(t, mailworker.NewSMTPSender(srv.Addr, "mailer", "s3cret"))
	if err := b.Subscribe(context.Background(), mailworker.ConsumerName, mailworker.Subjects, reg.Handler(w.Handle)); err != nil {
		t.Fatal(err)
	}
	return b, srv
}

// publishPlaced enqueues the confirmation job of o, as the order service
// does with OrderPlaced.
func publishPlaced(t *testing.T, b *bus.Bus, o order.Order) {
	t.Helper()
	publishJob(t, b, order.EmailOrderConfirmation, o)
}

// publishCancelled enqueues the cancellation job of o, as the order
// service does with OrderCancelled.
func publishCancelled(t *testing.T, b *bus.Bus, o order.Order) {
	t.Helper()
	publishJob(t, b, order.EmailOrderCancellation, o)
}

func publishJob(t *testing.T, b *bus.Bus, kind order.EmailKind, o order.Order) {
	t.Helper()
	job := order.EmailRequested{Kind: kind, OrderID: o.ID, To: o.Email, Order: o, RequestedAt: o.UpdatedAt}
	if err := b.Publish(context.Background(), order.SubjectEmailRequested, order.EmailJobID(o.ID, kind), job); err != nil {
		t.Fatal(err)
	}
}

// byMessageID indexes delivered messages by their Message-ID header.
func byMessageID(t *testing.T, msgs []testenv.SMTPMessage) map[string]testenv.SMTPMessage {
	t.Helper()
	out := map[string]testenv.SMTPMessage{}
	for _, m := range msgs {
		pm, err := mail.ReadMessage(bytes.NewReader(m.Data))
		if err != nil {
			t.Fatalf("delivered message does not parse: %v", err)
		}
		id := pm.Header.Get("Message-ID")
		if _, dup := out[id]; dup {
			t.Errorf("%s delivered twice", id)
		}
		out[id] = m
	}
	return out
}

// TestSMTPDeliveryThroughBus publishes an OrderPlaced and an OrderCancelled
// on a real broker; the worker delivers the confirmation and the
// cancellation notice over SMTP, each once, with the right envelope,
// headers and a body that decodes to the expected text.
func TestSMTPDeliveryThroughBus(t *testing.T) {
	b, srv := smtpPipeline(t)
	placed := sampleOrder("ord_p1")
	cancelled := cancelledOrder(sampleOrder("ord_c1"), "payment declined", "declined")
	cancelled.Email = "yves@example.com"
	publishPlaced(t, b, placed)
	publishCancelled(t, b, cancelled)
	msgs := byMessageID(t, srv.WaitMessages(t, 2, 10*time.Second))

	conf, ok := msgs["<order-ord_p1@globomantics.example>"]
	if !ok {
		t.Fatalf("no confirmation among %v", msgs)
	}
	if conf.From != "orders@globomantics.example" || strings.Join(conf.To, ",") != "zoe@example.com" || conf.User != "mailer" {
		t.Errorf("confirmation envelope %q -> %v as %q", conf.From, conf.To, conf.User)
	}
	checkMessage(t, conf.Data, placed)

	canc, ok := msgs["<order-ord_c1.cancelled@globomantics.example>"]
	if !ok {
		t.Fatalf("no cancellation among %v", msgs)
	}
	if strings.Join(canc.To, ",") != "yves@example.com" {
		t.Errorf("cancellation envelope -> %v", canc.To)
	}
	text := readMail(t, canc.Data, cancelled, "Your Globomantics order GM-4K7Q-2XPN was cancelled",
		"<order-ord_c1.cancelled@globomantics.example>", cancelledAt)
	wantIn(t, text, "your Globomantics order GM-4K7Q-2XPN", "was cancelled", "Reason: payment declined", "You were not charged.", "Total: $42.98")

	dl, err := b.DeadLetters(context.Background(), bus.DeadLetterFilter{Consumer: mailworker.ConsumerName})
	if err != nil || len(dl) != 0 {
		t.Errorf("dead letters = %+v, %v; want none", dl, err)
	}
}

// TestSMTPTemporaryFailureRetried: the server answers the first attempt
// with 451 (try again later); the bus redelivers, and the confirmation is
// delivered exactly once, in a second session.
func TestSMTPTemporaryFailureRetried(t *testing.T) {
	b, srv := smtpPipeline(t)
	srv.Fail("DATA", 451, 1)
	srv.Fail("RCPT", 452, 1) // then the second attempt is refused earlier; the third succeeds
	o := sampleOrder("ord_t1")
	start := time.Now()
	publishPlaced(t, b, o)
	msgs := srv.WaitMessages(t, 1, 15*time.Second)
	took := time.Since(start)
	checkMessage(t, msgs[0].Data, o)
	if n := srv.Sessions(); n != 3 {
		t.Errorf("%d SMTP sessions, want 3 (451, 452, then delivered)", n)
	}
	// The delivered message was acked, not offered again: a later event,
	// handled after it by the same consumer, is the only other delivery.
	publishPlaced(t, b, sampleOrder("ord_t2"))
	seen := byMessageID(t, srv.WaitMessages(t, 2, 10*time.Second))
	if len(seen) != 2 {
		t.Errorf("delivered %d distinct messages, want ord_t1 once and ord_t2", len(seen))
	}
	dl, err := b.DeadLetters(context.Background(), bus.DeadLetterFilter{Consumer: mailworker.ConsumerName})
	if err != nil || len(dl) != 0 {
		t.Errorf("dead letters = %+v, %v; want none", dl, err)
	}
	t.Logf("delivered after two temporary failures in %v", took.Round(time.Millisecond))
}

// TestSMTPPermanentFailureDeadLetters: the server refuses the recipient
// with 550; the message goes to the dead letters at once (not after the
// allowed deliveries), with the SMTP reply as the reason, and the worker
// carries on with the next message.
func TestSMTPPermanentFailureDeadLetters(t *testing.T) {
	b, srv := smtpPipeline(t)
	srv.Fail("RCPT", 550, 1)
	refused := cancelledOrder(sampleOrder("ord_x1"), "out of stock", "voided")
	publishCancelled(t, b, refused)
	var dl []bus.DeadLetter
	testenv.CheckFor(t, 10*time.Second, func() error {
		var err error
		dl, err = b.DeadLetters(context.Background(), bus.DeadLetterFilter{Consumer: mailworker.ConsumerName})
		if err != nil {
			return err
		}
		if len(dl) != 1 {
			return fmt.Errorf("%d dead letters", len(dl))
		}
		return nil
	})
	d := dl[0]
	if !d.Permanent || d.Deliveries != 1 || d.Subject != order.SubjectEmailRequested || d.Stream != bus.JobsStreamName ||
		d.MsgID != order.EmailJobID("ord_x1", order.EmailOrderCancellation) || !strings.Contains(d.Error, "550") {
		t.Errorf("dead letter = %+v", d)
	}
	// The next message goes through.
	next := sampleOrder("ord_x2")
	publishPlaced(t, b, next)
	msgs := srv.WaitMessages(t, 1, 10*time.Second)
	if len(msgs) != 1 || !bytes.Contains(msgs[0].Data, []byte("<order-ord_x2@")) {
		t.Errorf("delivered %d messages after the refusal, want only ord_x2's", len(msgs))
	}
}
