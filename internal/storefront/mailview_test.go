package storefront

import (
	"html"
	"net/http"
	"net/mail"
	"strings"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/order"
	"github.com/globomantics/globomantics/internal/platform/money"
	"github.com/globomantics/globomantics/internal/shipping"
	mailworker "github.com/globomantics/globomantics/internal/worker/mail"
)

// TestDecodeMail decodes the encodings mail programs send: RFC 2047 words
// in Q and B form and in UTF-8 and Latin-1, quoted-printable and base64
// bodies, multipart/alternative with an attachment, and a message whose
// charset the mailbox does not know.
func TestDecodeMail(t *testing.T) {
	for _, tc := range []struct {
		name, raw    string
		subject, to  string
		texts        []string
		problem      string
		attachment   string
		wantNoAttach bool
	}{
		{
			name: "quoted-printable UTF-8",
			raw: "From: Shop <s@example.com>\r\nTo: =?utf-8?q?Zo=C3=AB?= <z@example.com>\r\n" +
				"Subject: =?utf-8?q?Cr=C3=A8me_br=C3=BBl=C3=A9e?=\r\nDate: Sat, 01 Mar 2025 12:30:15 +0000\r\n" +
				"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" +
				"2 =C3=97 torch =E2=80=94 a very long line that was soft=\r\n-wrapped\r\n",
			subject: "Crème brûlée", to: "Zoë <z@example.com>",
			texts: []string{"2 × torch — a very long line that was soft-wrapped\n"},
		},
		{
			name: "base64 with a B-encoded Latin-1 subject",
			raw: "From: s@example.com\r\nTo: z@example.com\r\nSubject: =?iso-8859-1?b?Q2Fm6Q==?=\r\n" +
				"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n" +
				"SGVsbG8gWm/DqywK\r\ndGhhbmsgeW91Lgo=\r\n",
			subject: "Café", to: "z@example.com",
			texts: []string{"Hello Zoë,\nthank you.\n"},
		},
		{
			name: "multipart alternative with an attachment",
			raw: "From: s@example.com\r\nTo: z@example.com\r\nSubject: parts\r\nMIME-Version: 1.0\r\n" +
				"Content-Type: multipart/mixed; boundary=OUT\r\n\r\n" +
				"--OUT\r\nContent-Type: multipart/alternative; boundary=IN\r\n\r\n" +
				"--IN\r\nContent-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nna=EFve\r\n" +
				"--IN\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p onclick=x>hi</p>\r\n--IN--\r\n" +
				"--OUT\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=\"invoice.pdf\"\r\n" +
				"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n--OUT--\r\n",
			subject: "parts", to: "z@example.com",
			texts:      []string{"naïve", "<p onclick=x>hi</p>"}, // the CRLF before a boundary is the boundary's
			attachment: "invoice.pdf",
		},
		{
			name:    "unknown charset",
			raw:     "Subject: x\r\nContent-Type: text/plain; charset=koi8-r\r\n\r\nabc\r\n",
			subject: "x", texts: []string{"abc\n"}, problem: "koi8-r",
		},
		{
			name:    "no headers at all",
			raw:     "just text, no header block",
			texts:   []string{"just text, no header block"},
			problem: "cannot be parsed",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := decodeMail("m", []byte(tc.raw))
			if v.Subject != tc.subject || v.To != tc.to {
				t.Errorf("Subject %q To %q; want %q, %q", v.Subject, v.To, tc.subject, tc.to)
			}
			var texts []string
			attach := ""
			for _, p := range v.Parts {
				if p.Text != "" {
					texts = append(texts, p.Text)
				} else {
					attach = p.Filename
					if p.Size != 5 {
						t.Errorf("attachment size %d, want 5 decoded bytes", p.Size)
					}
				}
			}
			if strings.Join(texts, "|") != strings.Join(tc.texts, "|") {
				t.Errorf("texts = %q, want %q", texts, tc.texts)
			}
			if attach != tc.attachment {
				t.Errorf("attachment %q, want %q", attach, tc.attachment)
			}
			if (tc.problem == "") != (v.Problem == "") || !strings.Contains(v.Problem, tc.problem) {
				t.Errorf("problem %q, want one naming %q", v.Problem, tc.problem)
			}
		})
	}
}

// TestMailboxShowsWorkerMessagesDecoded renders the confirmation and the
// cancellation notice the mail worker composes (quoted-printable UTF-8
// bodies, RFC 2047 subjects) on /dev/mail/{id}: the page shows the
// decoded subject, addresses and text, not their encoded source.
func TestMailboxShowsWorkerMessagesDecoded(t *testing.T) {
	e := newEnv(t)
	from, _ := mail.ParseAddress("Globomantics <orders@globomantics.example>")
	at := time.Date(2025, 3, 1, 12, 30, 0, 0, time.UTC)
	o := order.Order{
		ID: "ord_9", UserID: "usr_1", Email: "zoe@example.com", Status: order.StatusConfirmed,
		Items:    []order.Item{{ProductID: "prd_1", Name: "Crème brûlée torch", Quantity: 2, UnitPrice: money.USD(999), LineTotal: money.USD(1998)}},
		Subtotal: money.USD(1998), ShippingCost: money.USD(0), Total: money.USD(1998),
		ShippingAddress: shipping.Address{Name: "Zoë Ünicode", Line1: "1 Rue", City: "Paris", PostalCode: "75001", Country: "FR"},
		CreatedAt:       at, UpdatedAt: at,
	}
	conf, err := mailworker.Compose(from, o)
	if err != nil {
		t.Fatal(err)
	}
	o.Status, o.CancelReason, o.Payment = order.StatusCancelled, "payment declined", order.PaymentInfo{Status: "declined"}
	canc, err := mailworker.ComposeCancellation(from, o)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(conf.Data), "=C3=") {
		t.Fatal("the worker's message is not quoted-printable: the test would prove nothing")
	}
	e.mail.msgs[conf.ID] = string(conf.Data)
	e.mail.msgs[canc.ID] = string(canc.Data)
	b := e.browser()

	r := b.do("GET", "/dev/mail/"+conf.ID, nil)
	wantStatus(t, r, http.StatusOK)
	body := html.UnescapeString(r.body)
	wantContains(t, body, "<h1>Your Globomantics order ord_9</h1>", "Zoë Ünicode <zoe@example.com>",
		"Globomantics <orders@globomantics.example>", "Sat, 01 Mar 2025 12:30:00 UTC", "<order-ord_9@globomantics.example>",
		"Hello Zoë Ünicode,", "2 × Crème brûlée torch — $9.99 each: $19.98", "Total:    $19.98")
	if strings.Contains(r.body, "=C3=") || strings.Contains(r.body, "=?utf-8?") {
		t.Errorf("the page shows encoded source:\n%s", r.body)
	}

	r = b.do("GET", "/dev/mail/"+canc.ID, nil)
	wantStatus(t, r, http.StatusOK)
	wantContains(t, html.UnescapeString(r.body), "<h1>Your Globomantics order ord_9 was cancelled</h1>",
		"Reason: payment declined", "You were not charged.", "2 × Crème brûlée torch: $19.98")

	r = b.do("GET", "/dev/mail/"+canc.ID+"?raw=1", nil)
	wantStatus(t, r, http.StatusOK)
	if r.Header.Get("Content-Type") != "text/plain; charset=utf-8" || r.body != string(canc.Data) {
		t.Errorf("raw = %q %q", r.Header.Get("Content-Type"), r.body)
	}
}
