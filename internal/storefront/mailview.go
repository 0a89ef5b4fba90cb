package storefront

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"strings"
	"time"
	"unicode/utf8"
)

// mailView is a message of the development mailbox decoded for reading:
// RFC 2047 header words decoded, the body's transfer encoding
// (quoted-printable, base64) undone and its charset turned into UTF-8.
// Everything in it is text: the page escapes it, and an HTML body is shown
// as its source, never rendered.
type mailView struct {
	ID        string
	From      string
	To        string
	Cc        string
	Subject   string
	Date      string
	MessageID string
	Parts     []mailPart
	// Problem says what could not be decoded ("" when all was): the page
	// then shows the raw message too.
	Problem string
}

// mailPart is one part of a message's body.
type mailPart struct {
	Type     string // media type, e.g. text/plain
	Filename string // for an attachment
	Text     string // decoded text; empty for a part that is not text
	Size     int    // decoded bytes
}

// maxMailParts bounds the parts shown of one message (nested multiparts
// included), so that a hostile message cannot make the page huge.
const maxMailParts = 20

// decodeMail decodes raw for reading. It never fails: what cannot be decoded
// is described in Problem and shown as it is.
func decodeMail(id string, raw []byte) mailView {
	v := mailView{ID: id}
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		v.Problem = "the message's headers cannot be parsed: " + err.Error()
		v.Parts = []mailPart{{Type: "text/plain", Text: validUTF8(raw), Size: len(raw)}}
		return v
	}
	h := m.Header
	v.From = decodeAddresses(h.Get("From"))
	v.To = decodeAddresses(h.Get("To"))
	v.Cc = decodeAddresses(h.Get("Cc"))
	v.Subject = decodeHeader(h.Get("Subject"))
	v.MessageID = decodeHeader(h.Get("Message-Id"))
	if d, err := h.Date(); err == nil {
		v.Date = d.UTC().Format(time.RFC1123)
	} else {
		v.Date = h.Get("Date")
	}
	var problems []string
	v.Parts = decodeEntity(textHeader(h), m.Body, 0, &problems)
	v.Problem = strings.Join(problems, "; ")
	return v
}

// textHeader adapts a message's header to the fields decodeEntity reads.
func textHeader(h mail.Header) func(string) string {
	return func(k string) string { return h.Get(k) }
}

// decodeEntity decodes one MIME entity (the message, or a part of a
// multipart) whose header is get and whose body is body.
func decodeEntity(get func(string) string, body io.Reader, depth int, problems *[]string) []mailPart {
	ctype := get("Content-Type")
	if ctype == "" {
		ctype = "text/plain; charset=us-ascii"
	}
	media, params, err := mime.ParseMediaType(ctype)
	if err != nil {
		*problems = append(*problems, fmt.Sprintf("Content-Type %q: %v", ctype, err))
		media, params = "text/plain", map[string]string{}
	}
	if strings.HasPrefix(media, "multipart/") && depth < 5 {
		mr := multipart.NewReader(body, params["boundary"])
		var out []mailPart
		for len(out) < maxMailParts {
			p, err := mr.NextRawPart() // the transfer encoding is undone below
			if err == io.EOF {
				break
			}
			if err != nil {
				*problems = append(*problems, "multipart body: "+err.Error())
				break
			}
			out = append(out, decodeEntity(p.Header.Get, p, depth+1, problems)...)
		}
		return out
	}
	data, err := io.ReadAll(io.LimitReader(transferDecoder(get("Content-Transfer-Encoding"), body), 10<<20))
	if err != nil {
		*problems = append(*problems, fmt.Sprintf("%s body (%s): %v", media, get("Content-Transfer-Encoding"), err))
	}
	part := mailPart{Type: media, Size: len(data)}
	if _, dp, err := mime.ParseMediaType(get("Content-Disposition")); err == nil {
		part.Filename = decodeHeader(dp["filename"])
	}
	if part.Filename == "" {
		part.Filename = decodeHeader(params["name"])
	}
	if strings.HasPrefix(media, "text/") || media == "message/rfc822" {
		text, ok := toUTF8(params["charset"], data)
		if !ok {
			*problems = append(*problems, fmt.Sprintf("charset %q is not one the mailbox can decode; shown as sent", params["charset"]))
		}
		part.Text = strings.ReplaceAll(text, "\r\n", "\n")
	}
	return []mailPart{part}
}

// transferDecoder undoes a Content-Transfer-Encoding.
func transferDecoder(cte string, r io.Reader) io.Reader {
	switch strings.ToLower(strings.TrimSpace(cte)) {
	case "quoted-printable":
		return quotedprintable.NewReader(r)
	case "base64":
		return base64.NewDecoder(base64.StdEncoding, r) // ignores the CRLFs it is wrapped with
	}
	return r // 7bit, 8bit, binary, or none
}

// mailWordDecoder decodes RFC 2047 words in UTF-8, US-ASCII and ISO-8859-1
// (what mime.WordDecoder knows) and in Windows-1252.
var mailWordDecoder = &mime.WordDecoder{CharsetReader: func(charset string, input io.Reader) (io.Reader, error) {
	b, err := io.ReadAll(input)
	if err != nil {
		return nil, err
	}
	s, ok := toUTF8(charset, b)
	if !ok {
		return nil, fmt.Errorf("unhandled charset %q", charset)
	}
	return strings.NewReader(s), nil
}}

// decodeHeader decodes the RFC 2047 encoded words of a header value, or
// returns it unchanged when it has none or they cannot be decoded.
func decodeHeader(v string) string {
	d, err := mailWordDecoder.DecodeHeader(v)
	if err != nil {
		return validUTF8([]byte(v))
	}
	return validUTF8([]byte(d))
}

// decodeAddresses shows an address list as people read it: "Name
// <address>" with the name decoded and unquoted, comma-separated; a value
// that does not parse as addresses is decoded as plain text.
func decodeAddresses(v string) string {
	if strings.TrimSpace(v) == "" {
		return ""
	}
	p := mail.AddressParser{WordDecoder: mailWordDecoder}
	list, err := p.ParseList(v)
	if err != nil {
		return decodeHeader(v)
	}
	out := make([]string, len(list))
	for i, a := range list {
		if a.Name == "" {
			out[i] = a.Address
		} else {
			out[i] = validUTF8([]byte(a.Name)) + " <" + a.Address + ">"
		}
	}
	return strings.Join(out, ", ")
}

// toUTF8 converts b from charset to UTF-8; ok is false (and b is returned
// with invalid bytes replaced) for a charset it does not know.
func toUTF8(charset string, b []byte) (string, bool) {
	switch strings.ToLower(strings.TrimSpace(charset)) {
	case "", "utf-8", "utf8", "us-ascii", "ascii":
		return validUTF8(b), true
	case "iso-8859-1", "latin1", "iso_8859-1", "windows-1252", "cp1252":
		// Latin-1 maps each byte to the code point of its value
		// (Windows-1252 differs only in 0x80–0x9F, rare in mail text).
		var sb strings.Builder
		for _, c := range b {
			sb.WriteRune(rune(c))
		}
		return sb.String(), true
	}
	return validUTF8(b), false
}

// validUTF8 is b as a string with invalid UTF-8 replaced by U+FFFD.
func validUTF8(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}
