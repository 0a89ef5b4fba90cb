package testenv_test

import (
	"bytes"
	"errors"
	"net/smtp"
	"net/textproto"
	"testing"

	"github.com/globomantics/globomantics/internal/platform/testenv"
)

// TestSMTPServer drives the test SMTP server with the standard library's
// client: authentication, envelope, dot-stuffing both ways, injected
// temporary and permanent replies, and command order.
func TestSMTPServer(t *testing.T) {
	srv := testenv.SMTP(t)
	srv.SetAuth("u", "p")
	data := []byte("Subject: hi\r\n\r\n.starts with a dot\r\n.\r\nlast\r\n")
	auth := smtp.PlainAuth("", "u", "p", "127.0.0.1")
	if err := smtp.SendMail(srv.Addr, auth, "a@example.com", []string{"b@example.com", "c@example.com"}, data); err != nil {
		t.Fatal(err)
	}
	msgs := srv.Messages()
	if len(msgs) != 1 {
		t.Fatalf("%d messages", len(msgs))
	}
	m := msgs[0]
	if m.From != "a@example.com" || len(m.To) != 2 || m.To[1] != "c@example.com" || m.User != "u" || !bytes.Equal(m.Data, data) {
		t.Errorf("message = %+v\ndata %q", m, m.Data)
	}

	code := func(err error) int {
		var te *textproto.Error
		if errors.As(err, &te) {
			return te.Code
		}
		return 0
	}
	// Wrong credentials: 535, and MAIL is refused without authentication.
	if err := smtp.SendMail(srv.Addr, smtp.PlainAuth("", "u", "bad", "127.0.0.1"), "a@example.com", []string{"b@example.com"}, data); code(err) != 535 {
		t.Errorf("bad credentials: %v, want 535", err)
	}
	c, err := smtp.Dial(srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("b@example.com"); code(err) != 503 {
		t.Errorf("RCPT before MAIL: %v, want 503", err)
	}
	if err := c.Mail("a@example.com"); code(err) != 530 {
		t.Errorf("MAIL without AUTH: %v, want 530", err)
	}
	c.Close()

	// Injected faults: the next RCPT gets 451, then DATA's end gets 554
	// once; each fault is used up, and a refused message is not recorded.
	srv.Fail("RCPT", 451, 1)
	srv.Fail("DATA", 554, 1)
	send := func() error {
		return smtp.SendMail(srv.Addr, auth, "a@example.com", []string{"b@example.com"}, data)
	}
	if err := send(); code(err) != 451 {
		t.Errorf("first send: %v, want 451", err)
	}
	if err := send(); code(err) != 554 {
		t.Errorf("second send: %v, want 554", err)
	}
	if err := send(); err != nil {
		t.Errorf("third send: %v", err)
	}
	if n := len(srv.Messages()); n != 2 {
		t.Errorf("%d messages recorded, want 2", n)
	}
	if n := srv.Sessions(); n != 6 {
		t.Errorf("%d sessions, want 6", n)
	}
}
