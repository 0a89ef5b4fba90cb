package mail_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"mime/quotedprintable"
	"net/mail"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/account"
	"github.com/globomantics/globomantics/internal/platform/bus"
	"github.com/globomantics/globomantics/internal/platform/clock"
	mailworker "github.com/globomantics/globomantics/internal/worker/mail"
)

var resetAt = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func resetJob() account.PasswordResetRequested {
	return account.PasswordResetRequested{
		ResetID: "0123456789abcdef0123456789abcdef", To: "zoe@example.com", Name: "Zoë Ünicode",
		Token:     "AQAAAABn4x8AAAAAAAAAAAAAAAAAAAAAAAAAAABhY2NfMDE.c2lnbmF0dXJlLXNpZ25hdHVyZS1zaWduYXR1cmUtc2ln",
		ExpiresAt: resetAt.Add(account.ResetTTL), RequestedAt: resetAt,
	}
}

func resetEvent(t *testing.T, job account.PasswordResetRequested) bus.Event {
	t.Helper()
	data, err := json.Marshal(job)
	if err != nil {
		t.Fatal(err)
	}
	return bus.Event{ID: job.ResetID, Type: account.SubjectPasswordResetRequested, Time: job.RequestedAt, Data: data}
}

// body parses raw and returns its decoded text.
func body(t *testing.T, raw []byte) (*mail.Message, string) {
	t.Helper()
	m, err := mail.ReadMessage(strings.NewReader(string(raw)))
	if err != nil {
		t.Fatalf("not an RFC 5322 message: %v\n%s", err, raw)
	}
	b, err := io.ReadAll(quotedprintable.NewReader(m.Body))
	if err != nil {
		t.Fatal(err)
	}
	return m, string(b)
}

// TestPasswordResetMessage: the worker writes the link, on the configured
// shop URL, into a parsable message named by the reset id, the same bytes
// on a repeat; the token is in no log line.
func TestPasswordResetMessage(t *testing.T) {
	dir := t.TempDir()
	logs := &logBuffer{}
	w := mailworker.New(mailworker.NewFileSender(dir), from, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		mailworker.WithShopURL("https://shop.example/"), mailworker.WithClock(clock.NewFake(resetAt.Add(time.Minute))))
	job := resetJob()
	for range 2 { // a redelivery writes the same message again
		if err := w.HandleAccount(context.Background(), resetEvent(t, job)); err != nil {
			t.Fatal(err)
		}
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.eml"))
	if len(files) != 1 || filepath.Base(files[0]) != "pwreset_"+job.ResetID+".eml" {
		t.Fatalf("files %v", files)
	}
	raw, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	m, text := body(t, raw)
	if got := m.Header.Get("Message-ID"); got != "<pwreset_"+job.ResetID+"@globomantics.example>" {
		t.Errorf("Message-ID %q", got)
	}
	if to, err := m.Header.AddressList("To"); err != nil || len(to) != 1 || to[0].Address != "zoe@example.com" || to[0].Name != "Zoë Ünicode" {
		t.Errorf("To %v, %v", to, err)
	}
	if d, err := m.Header.Date(); err != nil || !d.Equal(resetAt) {
		t.Errorf("Date %v, %v", d, err)
	}
	if got, _ := new(mime.WordDecoder).DecodeHeader(m.Header.Get("Subject")); got != "Reset your Globomantics password" {
		t.Errorf("Subject %q", got)
	}
	link := "https://shop.example/reset-password?token=" + url.QueryEscape(job.Token)
	for _, want := range []string{"Hello Zoë Ünicode,", link, "works once, until 12:30 UTC on 1 March 2025", "If you did not ask for this"} {
		if !strings.Contains(text, want) {
			t.Errorf("the message lacks %q:\n%s", want, text)
		}
	}
	list, err := mailworker.ListMessages(dir)
	if err != nil || len(list) != 1 || list[0].ID != "pwreset_"+job.ResetID || !strings.Contains(list[0].To, "zoe@example.com") {
		t.Errorf("ListMessages = %+v, %v", list, err)
	}
	if strings.Contains(logs.String(), job.Token) || !strings.Contains(logs.String(), "password reset e-mail sent") {
		t.Errorf("log:\n%s", logs.String())
	}
}

// TestPasswordResetRefusals: a job that can never be sent is a dead letter
// (with no token in its reason); an expired link is not sent at all; a
// send that may work later is retried.
func TestPasswordResetRefusals(t *testing.T) {
	rec := &recordingSender{}
	clk := clock.NewFake(resetAt)
	w := mailworker.New(rec, from, slog.New(slog.NewTextHandler(io.Discard, nil)), mailworker.WithClock(clk))
	for name, mutate := range map[string]func(*account.PasswordResetRequested){
		"no recipient":  func(j *account.PasswordResetRequested) { j.To = "" },
		"bad recipient": func(j *account.PasswordResetRequested) { j.To = "not an address" },
		"no token":      func(j *account.PasswordResetRequested) { j.Token = "" },
		"bad id":        func(j *account.PasswordResetRequested) { j.ResetID = "../../etc/passwd" },
	} {
		job := resetJob()
		mutate(&job)
		err := w.HandleAccount(context.Background(), resetEvent(t, job))
		if !bus.IsPermanent(err) {
			t.Errorf("%s: %v, want a permanent error", name, err)
		}
	}
	bad := bus.Event{ID: "x", Type: account.SubjectPasswordResetRequested, Data: []byte(`{"token":"secret-token","to":`)}
	if err := w.HandleAccount(context.Background(), bad); !bus.IsPermanent(err) || strings.Contains(err.Error(), "secret-token") {
		t.Errorf("undecodable job: %v", err)
	}
	if len(rec.msgs) != 0 {
		t.Fatalf("%d messages sent for refused jobs", len(rec.msgs))
	}

	clk.Advance(account.ResetTTL)
	if err := w.HandleAccount(context.Background(), resetEvent(t, resetJob())); err != nil {
		t.Errorf("expired link: %v, want nil (acknowledged, not sent)", err)
	}
	if len(rec.msgs) != 0 {
		t.Errorf("an expired link was sent")
	}

	fresh := clock.NewFake(resetAt)
	flaky := mailworker.New(failingSender{err: errors.New("connection refused")}, from, slog.New(slog.NewTextHandler(io.Discard, nil)), mailworker.WithClock(fresh))
	if err := flaky.HandleAccount(context.Background(), resetEvent(t, resetJob())); err == nil || bus.IsPermanent(err) {
		t.Errorf("a failed send: %v, want a retryable error", err)
	}
}
