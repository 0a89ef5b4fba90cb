package mail_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime/quotedprintable"
	"net"
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
		ID: id, UserID: "usr_1", Email: "zoe@example.com", Status: order.StatusConfirmed,
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
	if got, want := h.Get("Subject"), "Your Globomantics order "+o.ID; got != want {
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
		"Hello " + o.ShippingAddress.Name, o.ID,
		"2 × Widget — $12.50 each: $25.00", "1 × Crème brûlée torch — $9.99 each: $9.99",
		"Subtotal: $34.99", "Shipping: $7.99", "Total:    $42.98",
		"12 Analytical St", "N1 9GU London", "GB", "Tracking number: 1ZGLOBO0001",
	} {
		if !strings.Contains(string(text), want) {
			t.Errorf("body lacks %q:\n%s", want, text)
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

func TestUndeliverableIsDropped(t *testing.T) {
	dir := t.TempDir()
	w, logs := newWorker(t, mailworker.NewFileSender(dir))
	noEmail := sampleOrder("ord_1")
	noEmail.Email = ""
	badID := sampleOrder("../../etc/passwd")
	for _, ev := range []bus.Event{
		event(t, noEmail),
		event(t, badID),
		{ID: "x", Type: order.SubjectOrderPlaced, Data: json.RawMessage(`{"order": 42}`)},
		{ID: "y", Type: "globo.catalog.item_listed", Data: json.RawMessage(`{}`)},
	} {
		if err := w.Handle(context.Background(), ev); err != nil {
			t.Errorf("event %s: %v, want nil (dropped)", ev.ID, err)
		}
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
	if err := w.Handle(context.Background(), ev); err == nil {
		t.Error("a transient send failure was not returned for redelivery")
	}
	w, _ = newWorker(t, failingSender{&textproto.Error{Code: 550, Msg: "no such user"}})
	if err := w.Handle(context.Background(), ev); err != nil {
		t.Errorf("a permanent refusal was returned for redelivery: %v", err)
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
	if s.Subject != "Your Globomantics order ord_1" || !strings.Contains(s.To, "Zoë Ünicode") ||
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

// TestEndToEndThroughBus publishes OrderPlaced on a real embedded broker and
// waits for the worker's file.
func TestEndToEndThroughBus(t *testing.T) {
	b := testenv.Bus(t)
	dir := t.TempDir()
	w, _ := newWorker(t, mailworker.NewFileSender(dir))
	ctx := context.Background()
	if err := b.Subscribe(ctx, mailworker.ConsumerName, mailworker.Subjects, w.Handle); err != nil {
		t.Fatal(err)
	}
	o := sampleOrder("ord_bus")
	if err := b.Publish(ctx, order.SubjectOrderPlaced, o.ID, order.OrderPlaced{Order: o}); err != nil {
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

// smtpServer is a minimal SMTP server: enough of RFC 5321 for one client
// (EHLO, AUTH PLAIN, MAIL, RCPT, DATA, QUIT), recording what it receives.
type smtpServer struct {
	addr     string
	rejectTo string // a recipient answered with 550
	authFail bool   // AUTH answered with 535 (wrong credentials)

	mu       sync.Mutex
	auth     string // decoded "identity\x00user\x00pass"
	mailFrom string
	rcptTo   string
	data     []byte
}

func startSMTP(t *testing.T) *smtpServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	s := &smtpServer{addr: l.Addr().String()}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go s.serve(c)
		}
	}()
	return s
}

func (s *smtpServer) serve(nc net.Conn) {
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	c := textproto.NewConn(nc)
	reply := func(format string, args ...any) { _ = c.PrintfLine(format, args...) }
	reply("220 127.0.0.1 ESMTP test")
	for {
		line, err := c.ReadLine()
		if err != nil {
			return
		}
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "EHLO":
			reply("250-127.0.0.1 hello %s", arg)
			reply("250-AUTH PLAIN")
			reply("250 8BITMIME")
		case "AUTH":
			mech, b64, _ := strings.Cut(arg, " ")
			dec, err := base64.StdEncoding.DecodeString(b64)
			if mech != "PLAIN" || err != nil {
				reply("504 unsupported")
				continue
			}
			if s.authFail {
				reply("535 5.7.8 authentication credentials invalid")
				continue
			}
			s.mu.Lock()
			s.auth = string(dec)
			s.mu.Unlock()
			reply("235 2.7.0 authenticated")
		case "MAIL":
			s.mu.Lock()
			s.mailFrom = arg
			s.mu.Unlock()
			reply("250 2.1.0 ok")
		case "RCPT":
			if s.rejectTo != "" && strings.Contains(arg, s.rejectTo) {
				reply("550 5.1.1 no such user")
				continue
			}
			s.mu.Lock()
			s.rcptTo = arg
			s.mu.Unlock()
			reply("250 2.1.5 ok")
		case "DATA":
			reply("354 end with <CRLF>.<CRLF>")
			data, err := io.ReadAll(c.DotReader())
			if err != nil {
				return
			}
			s.mu.Lock()
			s.data = data
			s.mu.Unlock()
			reply("250 2.0.0 queued")
		case "QUIT":
			reply("221 2.0.0 bye")
			return
		case "RSET", "NOOP":
			reply("250 ok")
		default:
			reply("502 5.5.2 unknown command")
		}
	}
}

func TestSMTPSender(t *testing.T) {
	srv := startSMTP(t)
	o := sampleOrder("ord_smtp")
	// A body line starting with a dot must survive dot-stuffing.
	o.Items[0].Name = ".dotted"
	w, _ := newWorker(t, mailworker.NewSMTPSender(srv.addr, "mailer", "s3cret"))
	if err := w.Handle(context.Background(), event(t, o)); err != nil {
		t.Fatal(err)
	}
	fromAddr, _ := mail.ParseAddress(from)
	want, err := mailworker.Compose(fromAddr, o)
	if err != nil {
		t.Fatal(err)
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.auth != "\x00mailer\x00s3cret" {
		t.Errorf("AUTH PLAIN = %q", srv.auth)
	}
	if !strings.HasPrefix(srv.mailFrom, "FROM:<orders@globomantics.example>") || !strings.HasPrefix(srv.rcptTo, "TO:<zoe@example.com>") {
		t.Errorf("envelope %q -> %q", srv.mailFrom, srv.rcptTo)
	}
	// DotReader turns CRLF into LF; compare on that footing.
	if got, wantData := string(srv.data), strings.ReplaceAll(string(want.Data), "\r\n", "\n"); got != wantData {
		t.Errorf("DATA differs:\n got %q\nwant %q", got, wantData)
	}
}

func TestSMTPSenderPermanentRefusal(t *testing.T) {
	srv := startSMTP(t)
	srv.rejectTo = "zoe@example.com"
	s := mailworker.NewSMTPSender(srv.addr, "", "")
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
	if err := w.Handle(context.Background(), event(t, sampleOrder("ord_1"))); err != nil {
		t.Errorf("a refused recipient was returned for redelivery: %v", err)
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

// TestSMTPSenderSetupFailureIsTransient: a 5xx reply while setting up the
// session (here wrong credentials) says nothing about the message: every
// order's confirmation would be refused the same way until an operator fixes
// the server or the configuration. Such failures must be retried, not
// dropped as if the recipient had been refused.
func TestSMTPSenderSetupFailureIsTransient(t *testing.T) {
	srv := startSMTP(t)
	srv.authFail = true
	s := mailworker.NewSMTPSender(srv.addr, "mailer", "wrong")
	fromAddr, _ := mail.ParseAddress(from)
	msg, err := mailworker.Compose(fromAddr, sampleOrder("ord_1"))
	if err != nil {
		t.Fatal(err)
	}
	err = s.Send(context.Background(), msg)
	if err == nil || mailworker.IsPermanent(err) {
		t.Errorf("Send with rejected credentials = %v, want a transient error", err)
	}
	w, _ := newWorker(t, s)
	if err := w.Handle(context.Background(), event(t, sampleOrder("ord_1"))); err == nil {
		t.Error("a confirmation refused for wrong credentials was dropped, not returned for redelivery")
	}
}
