package app_test

import (
	"fmt"
	"io"
	"mime/quotedprintable"
	"net/http"
	"net/mail"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/platform/testenv"
	"github.com/globomantics/globomantics/pkg/shopclient"
)

// TestPasswords runs the account basics against the shop in one process,
// through its real services, outbox relay, broker and mail worker: a
// password change ends the customer's other sessions at once; a reset is
// asked for, its e-mail read from the mail directory (and listed on the
// development mail page), its link followed, a new password set, the old
// one refused and the link refused a second time.
func TestPasswords(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test skipped in -short mode")
	}
	tp := allInOne(t)
	tp.start(t)
	here, phone, visitor := newClient(t, tp), newClient(t, tp), newClient(t, tp)

	email := fmt.Sprintf("pw-%d@example.com", time.Now().UnixNano())
	here.must(201, "POST", "/api/v1/accounts", map[string]string{"email": email, "password": "correct horse", "name": "Ada"})
	for _, c := range []*client{here, phone} {
		c.must(200, "POST", "/api/v1/sessions", map[string]string{"email": email, "password": "correct horse"})
		c.must(200, "GET", "/api/v1/me", nil) // cached token→account on the instance
	}

	// Change: the session it is made in stays; the other is refused at
	// once, though its lookup is cached.
	here.must(403, "PUT", "/api/v1/me/password", map[string]string{"current_password": "wrong horse", "new_password": "battery staple"})
	phone.must(200, "GET", "/api/v1/me", nil)
	here.must(204, "PUT", "/api/v1/me/password", map[string]string{"current_password": "correct horse", "new_password": "battery staple"})
	here.must(200, "GET", "/api/v1/me", nil)
	phone.must(401, "GET", "/api/v1/me", nil)
	visitor.must(401, "POST", "/api/v1/sessions", map[string]string{"email": email, "password": "correct horse"})
	phone.must(200, "POST", "/api/v1/sessions", map[string]string{"email": email, "password": "battery staple"})

	// Reset: the same answer for an address with no account, and a
	// message only for the one with.
	var a, b shopclient.PasswordResetAccepted
	visitor.must(202, "POST", "/api/v1/password-resets", map[string]string{"email": "nobody-" + email}).decode(t, &a)
	visitor.must(202, "POST", "/api/v1/password-resets", map[string]string{"email": email}).decode(t, &b)
	if a != b {
		t.Errorf("answers %+v and %+v differ", a, b)
	}
	var file string
	testenv.CheckFor(t, 30*time.Second, func() error {
		files, _ := filepath.Glob(filepath.Join(tp.mailDir, "pwreset_*.eml"))
		if len(files) == 0 {
			return fmt.Errorf("no password reset e-mail in %s yet", tp.mailDir)
		}
		if len(files) > 1 {
			t.Fatalf("%d reset e-mails, want 1: %v", len(files), files)
		}
		file = files[0]
		return nil
	})
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := mail.ReadMessage(strings.NewReader(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	if to, err := msg.Header.AddressList("To"); err != nil || len(to) != 1 || to[0].Address != email {
		t.Errorf("To %v, %v", to, err)
	}
	text, err := io.ReadAll(quotedprintable.NewReader(msg.Body))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`https?://\S+(/reset-password\?token=\S+)`).FindSubmatch(text)
	if m == nil {
		t.Fatalf("no reset link in the message:\n%s", text)
	}
	link := string(m[1])
	token, err := url.ParseQuery(strings.TrimPrefix(link, "/reset-password?"))
	if err != nil || token.Get("token") == "" {
		t.Fatalf("link %q: %v", link, err)
	}
	// The development mail page lists it.
	id := strings.TrimSuffix(filepath.Base(file), ".eml")
	if r := visitor.do("GET", "/dev/mail", nil); r.status != 200 || !strings.Contains(string(r.body), id) {
		t.Errorf("/dev/mail: %d, lists the message: %v", r.status, strings.Contains(string(r.body), id))
	}

	// Following the link shows the form; a mismatch is refused next to the
	// field and changes nothing.
	page := visitor.html(t, "GET", link, nil)
	if page.StatusCode != 200 || !strings.Contains(page.body, `name="token" value="`) || page.Header.Get("Referrer-Policy") != "no-referrer" {
		t.Fatalf("the link's page: %d %s\n%s", page.StatusCode, page.Header, page.body)
	}
	form := url.Values{"token": {token.Get("token")}, "new_password": {"third password"}, "confirm_password": {"third passwort"}}
	if r := visitor.html(t, "POST", "/reset-password", form); r.StatusCode != 422 || !strings.Contains(r.body, `id="confirm-password-error"`) {
		t.Errorf("mismatched passwords: %d", r.StatusCode)
	}
	form.Set("confirm_password", "third password")
	r := visitor.html(t, "POST", "/reset-password", form)
	if r.StatusCode != 303 || r.Header.Get("Location") != "/account" {
		t.Fatalf("setting the password: %d %q\n%s", r.StatusCode, r.Header.Get("Location"), r.body)
	}
	// Logged in with it, with a message.
	if r := visitor.html(t, "GET", "/account", nil); r.StatusCode != 200 || !strings.Contains(r.body, "Your password was changed and you&#39;re logged in.") {
		t.Errorf("account page after the reset: %d\n%s", r.StatusCode, r.body)
	}
	// Every older session ended; the old passwords are refused.
	here.must(401, "GET", "/api/v1/me", nil)
	phone.must(401, "GET", "/api/v1/me", nil)
	for _, old := range []string{"correct horse", "battery staple"} {
		phone.must(401, "POST", "/api/v1/sessions", map[string]string{"email": email, "password": old})
	}
	phone.must(200, "POST", "/api/v1/sessions", map[string]string{"email": email, "password": "third password"})

	// The link a second time: refused, by page and by API.
	if r := visitor.html(t, "GET", link, nil); r.StatusCode != 410 || !strings.Contains(r.body, "This link is no longer valid") {
		t.Errorf("the used link: %d", r.StatusCode)
	}
	if r := visitor.html(t, "POST", "/reset-password", form); r.StatusCode != 410 {
		t.Errorf("the used link posted again: %d", r.StatusCode)
	}
	visitor.must(403, "POST", "/api/v1/password-resets/confirm", map[string]string{"token": token.Get("token"), "new_password": "fourth password"})
	phone.must(200, "POST", "/api/v1/sessions", map[string]string{"email": email, "password": "third password"})

	// The token is in no log line of the process.
	for _, p := range tp.procs {
		if logs := p.logs.String(); strings.Contains(logs, token.Get("token")) || strings.Contains(logs, url.QueryEscape(token.Get("token"))) {
			t.Errorf("%s logged the reset token", p.name)
		}
	}
}

// htmlResponse is an answer of an HTML page, its body read.
type htmlResponse struct {
	*http.Response
	body string
}

// html sends a page request (a form post when form is not nil) through
// c's cookies, to its first storefront, following no redirect.
func (c *client) html(t *testing.T, method, path string, form url.Values) htmlResponse {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, c.bases[0]+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return htmlResponse{Response: resp, body: string(b)}
}
