package mail

import (
	"context"
	"fmt"
	"net/mail"
	"net/url"
	"strings"
	"time"

	"github.com/globomantics/globomantics/internal/account"
	"github.com/globomantics/globomantics/internal/platform/bus"
	"github.com/globomantics/globomantics/internal/platform/clock"
)

// AccountConsumerName is the durable bus consumer of the account service's
// e-mail jobs (password reset links), shared by the worker's instances: the
// one consumer of AccountSubjects on the work-queue stream. It is apart
// from ConsumerName so that the order e-mails' consumer keeps its filter.
const AccountConsumerName = "mail-account-jobs"

// AccountSubjects are the account service's job subjects the worker
// handles (HandleAccount).
var AccountSubjects = []string{account.SubjectPasswordResetRequested}

// KindPasswordReset is a message with a password reset link.
const KindPasswordReset Kind = "password_reset"

// ResetPath is the storefront page a password reset link opens; the token
// follows in the query string (the access log records paths only).
const ResetPath = "/reset-password"

// resetPrefix begins the id of a password reset message: "pwreset_" and
// the reset id. Order ids begin "ord_", so no order's message can share it.
const resetPrefix = "pwreset_"

// DefaultShopURL is where links in messages point when WithShopURL is not
// given.
const DefaultShopURL = "http://localhost:8080"

// Option configures a Worker.
type Option func(*Worker)

// WithShopURL sets the shop's public base URL (scheme and host, such as
// "https://shop.example"), which the links in messages begin with. It is
// configuration, never taken from a request: a link must not point where a
// request's Host header says.
func WithShopURL(base string) Option {
	return func(w *Worker) { w.shopURL = strings.TrimRight(base, "/") }
}

// HandleAccount is the bus handler for the account service's jobs
// (PasswordResetRequested): it sends the reset link to the job's recipient.
// A job whose link has expired is acknowledged without sending (the
// customer asks for a new one); an undecodable job or one with no valid
// recipient is a bus.Permanent error; a send that may succeed later
// returns its error for the bus to redeliver. The token appears in no log
// line and no error.
func (w *Worker) HandleAccount(ctx context.Context, ev bus.Event) error {
	if ev.Type != account.SubjectPasswordResetRequested {
		w.log.Debug("mail worker ignores event", "subject", ev.Type, "id", ev.ID)
		return nil
	}
	var job account.PasswordResetRequested
	if err := ev.Decode(&job); err != nil {
		// The decoder's error may quote the payload: keep it out.
		return bus.Permanent(fmt.Errorf("undecodable PasswordResetRequested %s", ev.ID))
	}
	if !job.ExpiresAt.IsZero() && !w.clock.Now().Before(job.ExpiresAt) {
		w.log.Info("password reset e-mail not sent: the link has expired", "reset_id", job.ResetID)
		return nil
	}
	msg, err := ComposePasswordReset(w.from, w.shopURL, job)
	if err != nil {
		w.log.Error("password reset e-mail cannot be composed", "reset_id", job.ResetID, "err", err)
		return bus.Permanent(fmt.Errorf("password reset %s: %w", job.ResetID, err))
	}
	if err := w.sender.Send(ctx, msg); err != nil {
		if IsPermanent(err) {
			w.log.Error("password reset e-mail refused for good", "reset_id", job.ResetID, "to", msg.To, "err", err)
			return bus.Permanent(fmt.Errorf("sending password reset %s: %w", job.ResetID, err))
		}
		return fmt.Errorf("sending password reset %s: %w", job.ResetID, err)
	}
	w.log.Info("password reset e-mail sent", "reset_id", job.ResetID, "to", msg.To)
	return nil
}

// WithClock sets the clock the worker tells a link's expiry by (nil or
// not given: the real one).
func WithClock(c clock.Clock) Option {
	return func(w *Worker) {
		if c != nil {
			w.clock = c
		}
	}
}

// ResetLink is the link of a password reset message: base, ResetPath and
// the token as the query parameter "token".
func ResetLink(base, token string) string {
	return strings.TrimRight(base, "/") + ResetPath + "?" + url.Values{"token": {token}}.Encode()
}

// ComposePasswordReset builds the message with job's reset link (on
// shopURL) from from: text/plain UTF-8 in quoted-printable. The Date is
// job.RequestedAt; the Message-ID is <pwreset_RESET-ID@domain of from>.
// ErrUndeliverable when job has no valid recipient, reset id or token.
func ComposePasswordReset(from *mail.Address, shopURL string, job account.PasswordResetRequested) (Message, error) {
	id := resetPrefix + job.ResetID
	if job.ResetID == "" || !ValidMessageID(id) {
		return Message{}, fmt.Errorf("%w: invalid reset id %q", ErrUndeliverable, job.ResetID)
	}
	if job.Token == "" {
		return Message{}, fmt.Errorf("%w: no token", ErrUndeliverable)
	}
	to, err := recipient(job.To, job.Name)
	if err != nil {
		return Message{}, err
	}
	if shopURL == "" {
		shopURL = DefaultShopURL
	}
	const subject = "Reset your Globomantics password"
	var text strings.Builder
	text.WriteString(hello(job.Name))
	text.WriteString("someone (we hope you) asked to reset the password of your Globomantics account.\n")
	text.WriteString("To choose a new password, open this link:\n\n")
	text.WriteString(ResetLink(shopURL, job.Token) + "\n\n")
	if !job.ExpiresAt.IsZero() {
		fmt.Fprintf(&text, "The link works once, until %s.\n", job.ExpiresAt.UTC().Format("15:04 MST on 2 January 2006"))
	}
	text.WriteString("If you did not ask for this, ignore this message: your password stays as it is.\n\nGlobomantics\n")

	date := job.RequestedAt
	if date.IsZero() {
		date = time.Now()
	}
	data, err := plainText(date, from, to, subject, "<"+id+"@"+domainOf(from)+">", text.String())
	if err != nil {
		return Message{}, err
	}
	return Message{ID: id, Kind: KindPasswordReset, From: from.Address, To: to.Address, Subject: subject, Data: data}, nil
}
