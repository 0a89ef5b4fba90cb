package mail

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/smtp"
	"net/textproto"
	"os"
	"path/filepath"
	"time"
)

// FileSender "sends" each message by writing it to <Dir>/<msg.ID>.eml, for
// development. Writes are atomic (a temporary file renamed into place), so a
// reader never sees half a message, and sending the same id again replaces
// the file: one file per order and kind.
type FileSender struct {
	Dir string
}

var _ Sender = (*FileSender)(nil)

// NewFileSender returns a sender that writes messages under dir, creating it
// when needed.
func NewFileSender(dir string) *FileSender { return &FileSender{Dir: dir} }

// Send writes msg to <Dir>/<msg.ID>.eml. An id that cannot name a file is a
// PermanentError.
func (f *FileSender) Send(ctx context.Context, msg Message) error {
	if !ValidMessageID(msg.ID) {
		return &PermanentError{Err: fmt.Errorf("invalid message id %q", msg.ID)}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := os.MkdirAll(f.Dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(f.Dir, ".tmp-"+msg.ID+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // fails harmlessly once renamed
	if _, err := tmp.Write(msg.Data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), filepath.Join(f.Dir, msg.ID+ext))
}

// SMTPSender sends messages to an SMTP server (a relay or a submission
// port), upgrading to TLS when the server offers STARTTLS, and logging in
// with PLAIN when a username is set (net/smtp refuses PLAIN without TLS
// except on localhost).
type SMTPSender struct {
	Addr      string // host:port
	Username  string // empty: no authentication
	Password  string
	LocalName string        // the name given in EHLO; "localhost" when empty
	Timeout   time.Duration // for the whole exchange when ctx has no deadline; 30s when zero
	// TLSConfig is used for STARTTLS; nil means verify the server as host.
	TLSConfig *tls.Config
}

var _ Sender = (*SMTPSender)(nil)

// NewSMTPSender returns a sender to the server at addr (host:port); username
// and password, when username is not empty, log in with PLAIN.
func NewSMTPSender(addr, username, password string) *SMTPSender {
	return &SMTPSender{Addr: addr, Username: username, Password: password}
}

// Send delivers msg from msg.From to msg.To. Replies in the 5xx range to the
// message's own commands (MAIL, RCPT, DATA) are permanent (see IsPermanent);
// anything else, including a refused session set-up, may be retried.
func (s *SMTPSender) Send(ctx context.Context, msg Message) error {
	host, _, err := net.SplitHostPort(s.Addr)
	if err != nil {
		return &PermanentError{Err: fmt.Errorf("smtp address %q: %w", s.Addr, err)}
	}
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(timeout)
	}
	d := net.Dialer{Deadline: deadline}
	conn, err := d.DialContext(ctx, "tcp", s.Addr)
	if err != nil {
		return fmt.Errorf("smtp dial %s: %w", s.Addr, err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(deadline); err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	c, err := smtp.NewClient(conn, host)
	if err != nil {
		return &setupError{fmt.Errorf("smtp greeting: %w", err)}
	}
	defer c.Close()
	name := s.LocalName
	if name == "" {
		name = "localhost"
	}
	if err := c.Hello(name); err != nil {
		return &setupError{fmt.Errorf("smtp EHLO: %w", err)}
	}
	if ok, _ := c.Extension("STARTTLS"); ok {
		cfg := s.TLSConfig
		if cfg == nil {
			cfg = &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
		}
		if err := c.StartTLS(cfg); err != nil {
			return &setupError{fmt.Errorf("smtp STARTTLS: %w", err)}
		}
	}
	if s.Username != "" {
		if ok, _ := c.Extension("AUTH"); !ok {
			return &setupError{errors.New("smtp server does not offer AUTH")}
		}
		if err := c.Auth(smtp.PlainAuth("", s.Username, s.Password, host)); err != nil {
			return &setupError{fmt.Errorf("smtp AUTH: %w", err)}
		}
	}
	if err := c.Mail(msg.From); err != nil {
		return fmt.Errorf("smtp MAIL FROM: %w", err)
	}
	if err := c.Rcpt(msg.To); err != nil {
		return fmt.Errorf("smtp RCPT TO: %w", err)
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("smtp DATA: %w", err)
	}
	if _, err := w.Write(msg.Data); err != nil {
		return fmt.Errorf("smtp DATA: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("smtp DATA: %w", err)
	}
	_ = c.Quit() // the message is accepted; a failed goodbye changes nothing
	return nil
}

// setupError is a failure to set up the SMTP session (greeting, EHLO,
// STARTTLS, AUTH). Even with a 5xx reply it is never permanent: it does not
// depend on the message, so it would refuse every order's confirmation alike
// until the server or the configuration is fixed.
type setupError struct{ err error }

func (e *setupError) Error() string { return e.err.Error() }

func (e *setupError) Unwrap() error { return e.err }

// smtpCode is the SMTP reply code carried by err, or 0.
func smtpCode(err error) int {
	var te *textproto.Error
	if errors.As(err, &te) {
		return te.Code
	}
	return 0
}
