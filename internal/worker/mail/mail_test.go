package mail_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/order"
	"github.com/globomantics/globomantics/internal/platform/bus"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/money"
	"github.com/globomantics/globomantics/internal/platform/testenv"
	"github.com/globomantics/globomantics/internal/shipping"
	mailworker "github.com/globomantics/globomantics/internal/worker/mail"
)

func TestMain(m *testing.M) { testenv.Main(m) }

const from = "Globomantics <orders@globomantics.example>"

var confirmedAt = time.Date(2025, 3, 1, 12, 30, 15, 0, time.UTC)

func sampleOrder(id string) order.Order {
	return order.Order{
		ID: id, Number: "GM-4K7Q-2XPN", UserID: "usr_1", Email: "zoe@example.com", Status: order.StatusConfirmed,
		Items: []order.Item{
			{ProductID: "prd_a", Name: "Widget", Quantity: 2, UnitPrice: money.USD(1250), LineTotal: money.USD(2500)},
			{ProductID: "prd_b", Name: "Crème brûlée torch", Quantity: 1, UnitPrice: money.USD(999), LineTotal: money.USD(999)},
		},
		Subtotal: money.USD(3499), ShippingCost: money.USD(799), Total: money.USD(4298),
		ShippingAddress: shipping.Address{Name: "Zoë Ünicode", Line1: "12 Analytical St", City: "London", PostalCode: "N1 9GU", Country: "GB"},
		Payment:         order.PaymentInfo{ID: "pay_1", Status: "captured"},
		Shipment:        order.ShipmentInfo{ID: "shp_1", Status: "created", TrackingNumber: "1ZGLOBO0001"},
		CreatedAt:       confirmedAt.Add(-time.Minute), UpdatedAt: confirmedAt,
	}
}

func event(t *testing.T, o order.Order) bus.Event {
	t.Helper()
	data, err := json.Marshal(order.OrderPlaced{Order: o})
	if err != nil {
		t.Fatal(err)
	}
	return bus.Event{ID: o.ID, Type: order.SubjectOrderPlaced, Time: confirmedAt, Data: data}
}

var cancelledAt = confirmedAt.Add(2 * time.Minute)

// cancelledOrder is o as the order service cancels it: reason and payment
// status set, UpdatedAt the time of the cancellation.
func cancelledOrder(o order.Order, reason, paymentStatus string) order.Order {
	o.Status = order.StatusCancelled
	o.CancelReason = reason
	o.Payment = order.PaymentInfo{ID: "pay_1", Status: paymentStatus}
	o.Shipment = order.ShipmentInfo{}
	o.UpdatedAt = cancelledAt
	return o
}

func cancelEvent(t *testing.T, o order.Order) bus.Event {
	t.Helper()
	data, err := json.Marshal(order.OrderCancelled{Order: o})
	if err != nil {
		t.Fatal(err)
	}
	return bus.Event{ID: order.CancelledEventID(o.ID), Type: order.SubjectOrderCancelled, Time: cancelledAt, Data: data}
}

type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newWorker(t *testing.T, s mailworker.Sender) (*mailworker.Worker, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	return mailworker.New(s, from, slog.New(slog.NewTextHandler(logs, nil))), logs
}

// checkMessage parses raw as RFC 5322 and checks the confirmation of o.
func checkMessage(t *testing.T, raw []byte, o order.Order) {
	t.Helper()
	for i, line := range bytes.SplitAfter(raw, []byte("\n")) {
		if len(line) > 0 && !bytes.HasSuffix(line, []byte("\r\n")) && i < bytes.Count(raw, []byte("\n")) {
			t.Errorf("line %d does not end in CRLF: %q", i+1, line)
		}
		if len(line) > 80 {
			t.Errorf("line %d is %d bytes long", i+1, len(line))
		}
	}
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("message does not parse: %v\n%s", err, raw)
	}
	h := m.Header
	if d, err := h.Date(); err != nil || !d.Equal(o.UpdatedAt) {
		t.Errorf("Date = %v, %v; want %v", d, err, o.UpdatedAt)
	}
	fromAddr, err := mail.ParseAddress(h.Get("From"))
	if err != nil || fromAddr.Address != "orders@globomantics.example" || fromAddr.Name != "Globomantics" {
		t.Errorf("From = %q (%+v, %v)", h.Get("From"), fromAddr, err)
	}
	to, err := h.AddressList("To")
	if err != nil || len(to) != 1 || to[0].Address != o.Email || to[0].Name != o.ShippingAddress.Name {
		t.Errorf("To = %q (%+v, %v)", h.Get("To"), to, err)
	}
	if got, want := h.Get("Subject"), "Your Globomantics order "+o.Number; got != want {
		t.Errorf("Subject = %q, want %q", got, want)
	}
	if got, want := h.Get("Message-ID"), "<order-"+o.ID+"@globomantics.example>"; got != want {
		t.Errorf("Message-ID = %q, want %q", got, want)
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
	for _, want := range []string{
		"Hello " + o.ShippingAddress.Name, "Your order " + o.Number + " is confirmed", "Payment: paid",
		"2 × Widget — $12.50 each: $25.00", "1 × Crème brûlée torch — $9.99 each: $9.99",
		"Subtotal: $34.99", "Shipping: $7.99", "Total:    $42.98",
		"12 Analytical St", "London N1 9GU", "United Kingdom", "Tracking number: 1ZGLOBO0001",
	} {
		if !strings.Contains(string(text), want) {
			t.Errorf("body lacks %q:\n%s", want, text)
		}
	}
	for _, internal := range []string{o.ID, "captured", "Captured", "created"} {
		if strings.Contains(string(text), internal) || strings.Contains(h.Get("Subject"), internal) {
			t.Errorf("message shows %q:\n%s", internal, text)
		}
	}
}

func TestFileSenderWritesParsableMessage(t *testing.T) {
	dir := t.TempDir()
	w, _ := newWorker(t, mailworker.NewFileSender(dir))
	o := sampleOrder("ord_1")
	if err := w.Handle(context.Background(), event(t, o)); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "ord_1.eml"))
	if err != nil {
		t.Fatal(err)
	}
	checkMessage(t, raw, o)
}

func TestHandleIsIdempotent(t *testing.T) {
	dir := t.TempDir()
	w, _ := newWorker(t, mailworker.NewFileSender(dir))
	ev := event(t, sampleOrder("ord_1"))
	var first []byte
	for i := range 3 {
		if err := w.Handle(context.Background(), ev); err != nil {
			t.Fatal(err)
		}
		raw, err := os.ReadFile(filepath.Join(dir, "ord_1.eml"))
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = raw
		} else if !bytes.Equal(raw, first) {
			t.Errorf("delivery %d wrote different bytes", i+1)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("files = %v, want only ord_1.eml", names)
	}
}

// TestUndeliverableIsPermanent: an event that can never be mailed (no
// recipient, an id that cannot name a message, undecodable) is a permanent
// failure, which the bus sets aside as a dead letter at once; an event of
// another subject is ignored.
func TestUndeliverableIsPermanent(t *testing.T) {
	dir := t.TempDir()
	w, logs := newWorker(t, mailworker.NewFileSender(dir))
	noEmail := sampleOrder("ord_1")
	noEmail.Email = ""
	badID := sampleOrder("../../etc/passwd")
	for _, ev := range []bus.Event{
		event(t, noEmail),
		cancelEvent(t, noEmail),
		event(t, badID),
		{ID: "x", Type: order.SubjectOrderPlaced, Data: json.RawMessage(`{"order": 42}`)},
		{ID: "x2", Type: order.SubjectOrderCancelled, Data: json.RawMessage(`{"order": "no"}`)},
	} {
		if err := w.Handle(context.Background(), ev); !bus.IsPermanent(err) {
			t.Errorf("event %s: %v, want a permanent error (dead letter)", ev.ID, err)
		}
	}
	if err := w.Handle(context.Background(), bus.Event{ID: "y", Type: "globo.catalog.item_listed", Data: json.RawMessage(`{}`)}); err != nil {
		t.Errorf("an event of another subject: %v, want nil (ignored)", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("undeliverable events wrote %d files", len(entries))
	}
	if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), "ord_1") {
		t.Errorf("dropping was not logged: %s", logs.String())
	}
}

type failingSender struct{ err error }

func (f failingSender) Send(context.Context, mailworker.Message) error { return f.err }

func TestSendFailures(t *testing.T) {
	ev := event(t, sampleOrder("ord_1"))
	w, _ := newWorker(t, failingSender{errors.New("connection refused")})
	if err := w.Handle(context.Background(), ev); err == nil || bus.IsPermanent(err) {
		t.Errorf("a transient send failure = %v, want an error the bus retries", err)
	}
	w, _ = newWorker(t, failingSender{&textproto.Error{Code: 550, Msg: "no such user"}})
	if err := w.Handle(context.Background(), ev); !bus.IsPermanent(err) {
		t.Errorf("a permanent refusal = %v, want bus.Permanent (dead letter)", err)
	}
}

func TestListAndReadMessages(t *testing.T) {
	dir := t.TempDir()
	if list, err := mailworker.ListMessages(filepath.Join(dir, "missing")); err != nil || len(list) != 0 {
		t.Errorf("missing dir: %v, %v", list, err)
	}
	w, _ := newWorker(t, mailworker.NewFileSender(dir))
	older, newer := sampleOrder("ord_1"), sampleOrder("ord_2")
	newer.UpdatedAt = confirmedAt.Add(time.Hour)
	for _, o := range []order.Order{older, newer} {
		if err := w.Handle(context.Background(), event(t, o)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	list, err := mailworker.ListMessages(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].ID != "ord_2" || list[1].ID != "ord_1" {
		t.Fatalf("list = %+v, want ord_2 then ord_1", list)
	}
	s := list[1]
	if s.Subject != "Your Globomantics order GM-4K7Q-2XPN" || !strings.Contains(s.To, "Zoë Ünicode") ||
		!strings.Contains(s.To, "zoe@example.com") || !s.Date.Equal(confirmedAt) || s.Size == 0 {
		t.Errorf("summary = %+v", s)
	}
	raw, err := mailworker.ReadMessage(dir, "ord_1")
	if err != nil {
		t.Fatal(err)
	}
	checkMessage(t, raw, older)
	for _, id := range []string{"../ord_1", "ord_1.eml", "", "a/b"} {
		if _, err := mailworker.ReadMessage(dir, id); !errs.Is(errs.BadRequest, err) {
			t.Errorf("ReadMessage(%q) = %v, want BadRequest", id, err)
		}
	}
	if _, err := mailworker.ReadMessage(dir, "ord_404"); !errs.Is(errs.NotFound, err) {
		t.Errorf("ReadMessage unknown = %v, want NotFound", err)
	}
}

// TestEndToEndThroughBus enqueues a confirmation job on a real embedded
// broker and waits for the worker's file.
func TestEndToEndThroughBus(t *testing.T) {
	b := testenv.Bus(t)
	dir := t.TempDir()
	w, _ := newWorker(t, mailworker.NewFileSender(dir))
	ctx := context.Background()
	if err := b.Subscribe(ctx, mailworker.ConsumerName, mailworker.Subjects, w.Handle); err != nil {
		t.Fatal(err)
	}
	o := sampleOrder("ord_bus")
	job := order.EmailRequested{Kind: order.EmailOrderConfirmation, OrderID: o.ID, To: o.Email, Order: o, RequestedAt: o.UpdatedAt}
	if err := b.Publish(ctx, order.SubjectEmailRequested, order.EmailJobID(o.ID, order.EmailOrderConfirmation), job); err != nil {
		t.Fatal(err)
	}
	var raw []byte
	testenv.CheckFor(t, 10*time.Second, func() error {
		var err error
		raw, err = mailworker.ReadMessage(dir, o.ID)
		return err
	})
	checkMessage(t, raw, o)
}

func TestComposeRejects(t *testing.T) {
	fromAddr, _ := mail.ParseAddress(from)
	for name, o := range map[string]order.Order{
		"no email":  func() order.Order { o := sampleOrder("ord_1"); o.Email = ""; return o }(),
		"bad email": func() order.Order { o := sampleOrder("ord_1"); o.Email = "nobody"; return o }(),
		"bad id":    sampleOrder("a/b"),
	} {
		if _, err := mailworker.Compose(fromAddr, o); !errors.Is(err, mailworker.ErrUndeliverable) {
			t.Errorf("%s: %v, want ErrUndeliverable", name, err)
		}
	}
	// Header injection through the name is neutralised.
	o := sampleOrder("ord_1")
	o.ShippingAddress.Name = "Eve\r\nBcc: victim@example.com"
	msg, err := mailworker.Compose(fromAddr, o)
	if err != nil {
		t.Fatal(err)
	}
	m, err := mail.ReadMessage(bytes.NewReader(msg.Data))
	if err != nil {
		t.Fatal(err)
	}
	if m.Header.Get("Bcc") != "" {
		t.Errorf("a Bcc header was injected: %q", m.Header.Get("Bcc"))
	}
	if to, err := m.Header.AddressList("To"); err != nil || len(to) != 1 || to[0].Address != "zoe@example.com" {
		t.Errorf("To = %q (%v), want one recipient", m.Header.Get("To"), err)
	}
}

func jobEvent(t *testing.T, kind order.EmailKind, o order.Order) bus.Event {
	t.Helper()
	data, err := json.Marshal(order.EmailRequested{Kind: kind, OrderID: o.ID, To: o.Email, Order: o, RequestedAt: o.UpdatedAt})
	if err != nil {
		t.Fatal(err)
	}
	return bus.Event{ID: order.EmailJobID(o.ID, kind), Type: order.SubjectEmailRequested, Time: o.UpdatedAt, Data: data}
}

// TestJobsMailAsEventsDid: an EmailRequested job gives the same message as
// the event the legacy consumer handles (same bytes, same file), sent to the
// job's recipient; a job of an unknown kind, or whose order is another's,
// is a dead letter at once.
func TestJobsMailAsEventsDid(t *testing.T) {
	ctx := context.Background()
	fromEvents, fromJobs := t.TempDir(), t.TempDir()
	we, _ := newWorker(t, mailworker.NewFileSender(fromEvents))
	wj, _ := newWorker(t, mailworker.NewFileSender(fromJobs))
	placed := sampleOrder("ord_1")
	cancelled := cancelledOrder(sampleOrder("ord_2"), "payment declined", "declined")
	for _, pair := range [][2]bus.Event{
		{event(t, placed), jobEvent(t, order.EmailOrderConfirmation, placed)},
		{cancelEvent(t, cancelled), jobEvent(t, order.EmailOrderCancellation, cancelled)},
	} {
		if err := we.Handle(ctx, pair[0]); err != nil {
			t.Fatal(err)
		}
		if err := wj.Handle(ctx, pair[1]); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"ord_1", mailworker.MessageID("ord_2", mailworker.KindCancellation)} {
		a, errA := mailworker.ReadMessage(fromEvents, id)
		b, errB := mailworker.ReadMessage(fromJobs, id)
		if errA != nil || errB != nil || !bytes.Equal(a, b) {
			t.Errorf("message %s: from the event %d bytes (%v), from the job %d bytes (%v); want the same bytes", id, len(a), errA, len(b), errB)
		}
	}
	// The job's recipient is the one mailed.
	sent := &recordingSender{}
	w, _ := newWorker(t, sent)
	ev := jobEvent(t, order.EmailOrderConfirmation, placed)
	var job order.EmailRequested
	if err := ev.Decode(&job); err != nil {
		t.Fatal(err)
	}
	job.To = "other@example.com"
	ev.Data, _ = json.Marshal(job)
	if err := w.Handle(ctx, ev); err != nil || len(sent.msgs) != 1 || sent.msgs[0].To != "other@example.com" {
		t.Errorf("Handle = %v, sent %+v; want one message to other@example.com", err, sent.msgs)
	}

	unknown := jobEvent(t, "order_shipped", placed)
	mismatch := jobEvent(t, order.EmailOrderConfirmation, placed)
	mismatch.Data = bytes.Replace(mismatch.Data, []byte(`"order_id":"ord_1"`), []byte(`"order_id":"ord_9"`), 1)
	for _, ev := range []bus.Event{unknown, mismatch, {ID: "x", Type: order.SubjectEmailRequested, Data: json.RawMessage(`{"order": 1}`)}} {
		if err := w.Handle(ctx, ev); !bus.IsPermanent(err) {
			t.Errorf("job %s: %v, want a permanent error", ev.Data, err)
		}
	}
}

type recordingSender struct{ msgs []mailworker.Message }

func (r *recordingSender) Send(_ context.Context, m mailworker.Message) error {
	r.msgs = append(r.msgs, m)
	return nil
}
