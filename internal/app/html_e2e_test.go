package app_test

import (
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/platform/testenv"
)

// TestHTMLShopping shops through the server-rendered pages the way a person
// with a browser does: it follows links, reads forms out of the HTML, fills
// them in and posts them back (same-origin, url-encoded), and follows the
// POST-redirect-GET, in every topology.
func TestHTMLShopping(t *testing.T) {
	eachTopology(t, htmlShopSuite)
}

// browser is a person's web browser without the rendering: a cookie jar, and
// the storefront instances it may reach (it alternates between them on every
// navigation, as a load balancer would send it).
type browser struct {
	t     *testing.T
	hc    *http.Client
	jar   *cookiejar.Jar
	bases []string
	n     int
}

func newBrowser(t *testing.T, tp *topology) *browser {
	jar, _ := cookiejar.New(nil)
	var bases []string
	for _, p := range tp.storefronts {
		bases = append(bases, p.url())
	}
	return &browser{
		t:     t,
		jar:   jar,
		bases: bases,
		hc: &http.Client{Jar: jar, Timeout: 30 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
	}
}

// webPage is a response as the browser saw it after following redirects.
type webPage struct {
	url    *url.URL // where the browser ended up
	status int
	header http.Header
	body   string
	via    []string // the redirects followed, as "303 /location"
}

func (p *webPage) String() string {
	return fmt.Sprintf("%d %s (via %v)", p.status, p.url, p.via)
}

// navigate types path into the address bar: a GET on the next storefront
// instance, following redirects.
func (b *browser) navigate(path string) *webPage {
	b.t.Helper()
	b.n++
	u, err := url.Parse(b.bases[b.n%len(b.bases)] + path)
	if err != nil {
		b.t.Fatal(err)
	}
	return b.follow(b.send("GET", u, nil, nil))
}

// send makes one request, without following redirects.
func (b *browser) send(method string, u *url.URL, form url.Values, hdr http.Header) *webPage {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, u.String(), body)
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Accept", "text/html,application/xhtml+xml,*/*;q=0.8")
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := b.hc.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		b.t.Fatalf("%s %s: reading body: %v", method, u, err)
	}
	return &webPage{url: u, status: resp.StatusCode, header: resp.Header, body: string(raw)}
}

// follow follows p's redirects with GETs, as a browser does after a 301,
// 302 or 303.
func (b *browser) follow(p *webPage) *webPage {
	b.t.Helper()
	via := p.via
	for hops := 0; p.status >= 300 && p.status < 400; hops++ {
		if hops == 10 {
			b.t.Fatalf("too many redirects: %v", via)
		}
		loc, err := p.url.Parse(p.header.Get("Location"))
		if err != nil || p.header.Get("Location") == "" {
			b.t.Fatalf("%s: bad Location %q", p, p.header.Get("Location"))
		}
		via = append(via, fmt.Sprintf("%d %s", p.status, loc.RequestURI()))
		p = b.send("GET", loc, nil, nil)
	}
	p.via = via
	return p
}

// origin is the Origin header a browser sends for a form on p.
func origin(u *url.URL) string { return u.Scheme + "://" + u.Host }

// htmlForm is a form read out of a page.
type htmlForm struct {
	action   string
	method   string
	fields   url.Values // names and values of the inputs, as rendered
	required map[string]bool
}

var (
	formRe  = regexp.MustCompile(`(?s)<form\b([^>]*)>(.*?)</form>`)
	inputRe = regexp.MustCompile(`<input\b([^>]*)>`)
	attrRe  = regexp.MustCompile(`([a-zA-Z][a-zA-Z0-9_:-]*)(?:="([^"]*)")?`)

	// A select's value is its selected option's, or its first option's.
	selectRe = regexp.MustCompile(`(?s)<select\b([^>]*)>(.*?)</select>`)
	optionRe = regexp.MustCompile(`<option\b([^>]*)>`)
)

// attrs parses the attributes of a tag written by html/template (always
// double-quoted).
func attrs(s string) map[string]string {
	m := map[string]string{}
	for _, a := range attrRe.FindAllStringSubmatch(s, -1) {
		m[strings.ToLower(a[1])] = html.UnescapeString(a[2])
	}
	return m
}

// forms returns the forms of a page.
func (p *webPage) forms() []htmlForm {
	var out []htmlForm
	for _, f := range formRe.FindAllStringSubmatch(p.body, -1) {
		fa := attrs(f[1])
		form := htmlForm{action: fa["action"], method: strings.ToUpper(fa["method"]), fields: url.Values{}, required: map[string]bool{}}
		if form.method == "" {
			form.method = "GET"
		}
		for _, in := range inputRe.FindAllStringSubmatch(f[2], -1) {
			ia := attrs(in[1])
			name := ia["name"]
			if name == "" {
				continue
			}
			form.fields.Add(name, ia["value"])
			if _, ok := ia["required"]; ok {
				form.required[name] = true
			}
		}
		for _, sel := range selectRe.FindAllStringSubmatch(f[2], -1) {
			sa := attrs(sel[1])
			if sa["name"] == "" {
				continue
			}
			value, first := "", true
			for _, o := range optionRe.FindAllStringSubmatch(sel[2], -1) {
				oa := attrs(o[1])
				if _, selected := oa["selected"]; selected || first {
					value, first = oa["value"], false
				}
			}
			form.fields.Add(sa["name"], value)
			if _, ok := sa["required"]; ok {
				form.required[sa["name"]] = true
			}
		}
		out = append(out, form)
	}
	return out
}

// form finds the form of p that posts to action.
func (b *browser) form(p *webPage, action string) htmlForm {
	b.t.Helper()
	var actions []string
	for _, f := range p.forms() {
		if f.action == action {
			return f
		}
		actions = append(actions, f.action)
	}
	b.t.Fatalf("%s: no form with action %q (forms: %q)", p, action, actions)
	return htmlForm{}
}

// submitFrom fills in the form of p that posts to action and submits it the
// way a browser on p's page would: the rendered values (hidden fields
// included) plus what the person typed, url-encoded, with p's origin. Only
// fields the form has can be typed into, and the browser will not submit a
// form with an empty required field. The response is returned without
// following its redirect.
func (b *browser) submitFrom(p *webPage, action string, typed map[string]string) *webPage {
	b.t.Helper()
	target, vals := b.fill(p, action, typed)
	return b.send("POST", target, vals, http.Header{"Origin": {origin(p.url)}})
}

// fill is what submitFrom posts: the form's target and its values.
func (b *browser) fill(p *webPage, action string, typed map[string]string) (*url.URL, url.Values) {
	b.t.Helper()
	f := b.form(p, action)
	vals := url.Values{}
	for k, v := range f.fields {
		vals[k] = append([]string(nil), v...)
	}
	for k, v := range typed {
		if _, ok := f.fields[k]; !ok {
			b.t.Fatalf("%s: form %s has no field %q (has %v)", p, action, k, f.fields)
		}
		vals.Set(k, v)
	}
	for k := range f.required {
		if vals.Get(k) == "" {
			b.t.Fatalf("%s: form %s: required field %q left empty", p, action, k)
		}
	}
	if f.method != "POST" {
		b.t.Fatalf("%s: form %s has method %s", p, action, f.method)
	}
	target, err := p.url.Parse(f.action)
	if err != nil {
		b.t.Fatal(err)
	}
	return target, vals
}

// doubleClick submits the form twice at the same time, the second time to
// another storefront instance when there are several, and returns both
// answers without following them.
func (b *browser) doubleClick(p *webPage, action string, typed map[string]string) [2]*webPage {
	b.t.Helper()
	target, vals := b.fill(p, action, typed)
	var out [2]*webPage
	var errs [2]error
	var wg sync.WaitGroup
	for i := range out {
		u := *target
		if i == 1 {
			other, _ := url.Parse(b.bases[(b.n+1)%len(b.bases)])
			u.Host = other.Host
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, err := http.NewRequest("POST", u.String(), strings.NewReader(vals.Encode()))
			if err != nil {
				errs[i] = err
				return
			}
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Origin", origin(&u))
			resp, err := b.hc.Do(req)
			if err != nil {
				errs[i] = err
				return
			}
			defer resp.Body.Close()
			raw, err := io.ReadAll(resp.Body)
			out[i], errs[i] = &webPage{url: &u, status: resp.StatusCode, header: resp.Header, body: string(raw)}, err
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			b.t.Fatalf("double click on %s: %v", action, err)
		}
	}
	return out
}

// submit is submitFrom followed by the redirect, if any (POST-redirect-GET).
func (b *browser) submit(p *webPage, action string, typed map[string]string) *webPage {
	b.t.Helper()
	return b.follow(b.submitFrom(p, action, typed))
}

// cookie returns the value of a cookie the browser holds for the shop.
func (b *browser) cookie(name string) string {
	u, _ := url.Parse(b.bases[0])
	for _, c := range b.jar.Cookies(u) {
		if c.Name == name {
			return c.Value
		}
	}
	return ""
}

func expectStatus(t *testing.T, p *webPage, status int) {
	t.Helper()
	if p.status != status {
		t.Fatalf("%s: status %d, want %d\n%s", p, p.status, status, excerpt(p.body))
	}
}

// expectRedirectedTo checks that the browser was sent on with a 303 (the
// POST-redirect-GET) and ended on path, with the page loading.
func expectRedirectedTo(t *testing.T, p *webPage, path string) {
	t.Helper()
	expectStatus(t, p, 200)
	if len(p.via) == 0 || !strings.HasPrefix(p.via[0], "303 ") {
		t.Fatalf("%s: want a 303 redirect to %s", p, path)
	}
	if p.url.RequestURI() != path {
		t.Fatalf("%s: ended at %s, want %s", p, p.url.RequestURI(), path)
	}
}

// excerpt is the <main> of a page, for failure messages.
func excerpt(body string) string {
	if i := strings.Index(body, "<main"); i >= 0 {
		body = body[i:]
	}
	if len(body) > 2000 {
		body = body[:2000] + "…"
	}
	return body
}

// text is the text of the first match of re's first group in p, unescaped.
func (p *webPage) text(re *regexp.Regexp) string {
	m := re.FindStringSubmatch(p.body)
	if m == nil {
		return ""
	}
	return strings.TrimSpace(html.UnescapeString(m[1]))
}

func (p *webPage) has(s string) bool { return strings.Contains(p.body, s) }

var (
	cardRe         = regexp.MustCompile(`(?s)<a class="card" href="/products/([^"]+)">(.*?)</a>`)
	imgRe          = regexp.MustCompile(`<img src="([^"]+)"`)
	categoryRe     = regexp.MustCompile(`<a href="/category/([^"?]+)">([^<]+)</a>`)
	h1Re           = regexp.MustCompile(`(?s)<h1>(.*?)</h1>`)
	bigPriceRe     = regexp.MustCompile(`<p class="price big">([^<]+)</p>`)
	stockRe        = regexp.MustCompile(`In stock</span> \((\d+) left\)`)
	cartCountRe    = regexp.MustCompile(`<span class="count">(\d+)</span>`)
	cartTotalRe    = regexp.MustCompile(`<td class="num total">([^<]+)</td>`)
	stylesheetRe   = regexp.MustCompile(`<link rel="stylesheet" href="([^"]+)">`)
	nextPageRe     = regexp.MustCompile(`<a href="([^"]+)"(?: rel="next")?>Next page →</a>`)
	registerLinkRe = regexp.MustCompile(`<a href="(/register[^"]*)">Create an account</a>`)
	alertRe        = regexp.MustCompile(`(?s)<p class="error" role="alert">(.*?)</p>`)
	statusRe       = regexp.MustCompile(`<span class="status status-([a-z]+)">`)
	trackingRe     = regexp.MustCompile(`Tracking number: <strong>([^<]+)</strong>`)
	paymentRe      = regexp.MustCompile(`<p>Payment: ([^<]+)</p>`)
	orderRowRe     = regexp.MustCompile(`<tr><td data-label="Order"><a href="/orders/([^"]+)">[^<]*</a></td><td data-label="Placed">[^<]*</td><td data-label="Status"><span class="status status-([a-z]+)">`)
	mailRowRe      = regexp.MustCompile(`<td data-label="To">([^<]*)</td><td data-label="Subject"><a href="/dev/mail/([^"]+)">([^<]*)</a>`)
)

// dollars formats cents the way the pages show money.
func dollars(cents int64) string { return fmt.Sprintf("$%d.%02d", cents/100, cents%100) }

// cents parses money as the pages show it ("$12.34").
func cents(t *testing.T, s string) int64 {
	t.Helper()
	d, c, ok := strings.Cut(strings.TrimPrefix(s, "$"), ".")
	whole, err1 := strconv.ParseInt(d, 10, 64)
	frac, err2 := strconv.ParseInt(c, 10, 64)
	if !ok || !strings.HasPrefix(s, "$") || err1 != nil || err2 != nil || len(c) != 2 {
		t.Fatalf("cannot read the price %q", s)
	}
	return whole*100 + frac
}

// orderRows reads the order history page: order id → status.
func orderRows(p *webPage) map[string]string {
	rows := map[string]string{}
	for _, m := range orderRowRe.FindAllStringSubmatch(p.body, -1) {
		rows[m[1]] = m[2]
	}
	return rows
}

func htmlShopSuite(t *testing.T, tp *topology) {
	b := newBrowser(t, tp)

	// Home: the shop's products, each with an image that loads.
	home := b.navigate("/")
	expectStatus(t, home, 200)
	if ct := home.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Fatalf("home page content type %q", ct)
	}
	cards := cardRe.FindAllStringSubmatch(home.body, -1)
	if len(cards) == 0 {
		t.Fatalf("home page lists no products:\n%s", excerpt(home.body))
	}
	for _, c := range cards {
		m := imgRe.FindStringSubmatch(c[2])
		if m == nil {
			t.Errorf("home page card of %s has no image", c[1])
			continue
		}
		src := html.UnescapeString(m[1])
		img := b.navigate(src)
		if img.status != 200 || !strings.HasPrefix(img.header.Get("Content-Type"), "image/") || len(img.body) == 0 {
			t.Errorf("image %s of %s: %s, content type %q, %d bytes", src, c[1], img, img.header.Get("Content-Type"), len(img.body))
		}
	}

	if css := home.text(stylesheetRe); css == "" {
		t.Errorf("home page links no stylesheet")
	} else if r := b.navigate(css); r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "text/css") {
		t.Errorf("stylesheet %s: %s, content type %q", css, r, r.header.Get("Content-Type"))
	}

	// A category page, reached from the header's category links.
	cats := categoryRe.FindAllStringSubmatch(home.body, -1)
	if len(cats) == 0 {
		t.Fatalf("home page has no category links")
	}
	catPage := b.navigate("/category/" + cats[0][1])
	expectStatus(t, catPage, 200)
	if got, want := catPage.text(h1Re), html.UnescapeString(cats[0][2]); got != want {
		t.Errorf("category page heading %q, want %q", got, want)
	}
	catCards := cardRe.FindAllStringSubmatch(catPage.body, -1)
	if len(catCards) == 0 {
		t.Fatalf("category %s lists no products", cats[0][1])
	}

	// A product page, for a product with enough stock for this suite.
	var prod *webPage
	var productID string
	for _, c := range catCards {
		p := b.navigate("/products/" + c[1])
		expectStatus(t, p, 200)
		if n, _ := strconv.Atoi(p.text(stockRe)); n >= 10 {
			prod, productID = p, c[1]
			break
		}
	}
	if prod == nil {
		t.Fatalf("no product of category %s has 10 in stock", cats[0][1])
	}
	name := prod.text(h1Re)
	price := cents(t, prod.text(bigPriceRe))
	if name == "" || price <= 0 {
		t.Fatalf("product page of %s: name %q, price %d", productID, name, price)
	}
	if !prod.has(`<a href="/category/` + cats[0][1] + `">`) {
		t.Errorf("product page of %s does not link back to its category", productID)
	}
	if nf := b.navigate("/products/no-such-product"); nf.status != 404 || !nf.has("Page not found") {
		t.Errorf("unknown product: %s", nf)
	}

	// Search for a word of its name; the index is fed asynchronously.
	word := ""
	for _, w := range strings.FieldsFunc(name, func(r rune) bool { return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z') }) {
		if len(w) > len(word) {
			word = w
		}
	}
	if f := b.form(prod, "/search"); f.method != "GET" || len(f.fields["q"]) != 1 {
		t.Fatalf("header search form: method %s, fields %v", f.method, f.fields)
	}
	testenv.CheckFor(t, 30*time.Second, func() error {
		res := b.navigate("/search?" + url.Values{"q": {word}}.Encode())
		if res.status != 200 {
			return fmt.Errorf("search %q: %s", word, res)
		}
		if !res.has(" for “" + html.EscapeString(word) + "”</h1>") {
			return fmt.Errorf("search %q: no results heading", word)
		}
		if got := b.form(res, "/search").fields.Get("q"); got != word {
			return fmt.Errorf("search %q: the search box shows %q", word, got)
		}
		for pages := 0; pages < 5; pages++ {
			if res.has(`href="/products/` + productID + `"`) {
				return nil
			}
			next := res.text(nextPageRe)
			if next == "" {
				break
			}
			res = b.navigate(next)
		}
		return fmt.Errorf("search %q: %s not among the results", word, productID)
	})

	// Add to the cart from the product page, anonymously.
	added := b.submit(prod, "/cart/add", map[string]string{"quantity": "1"})
	expectRedirectedTo(t, added, "/cart")
	if !added.has(`<a href="/products/`+productID+`">`) || added.text(cartTotalRe) != dollars(price) {
		t.Fatalf("cart after adding %s: total %q, want %s\n%s", productID, added.text(cartTotalRe), dollars(price), excerpt(added.body))
	}
	if got := added.text(cartCountRe); got != "1" {
		t.Errorf("header cart count %q, want 1", got)
	}
	if b.cookie("globo_cart") == "" {
		t.Errorf("no anonymous cart cookie after adding to the cart")
	}

	// Change the quantity on the cart page; a bad quantity changes nothing.
	cartPage := b.navigate("/cart")
	expectStatus(t, cartPage, 200)
	bad := b.submit(cartPage, "/cart/items/"+productID, map[string]string{"quantity": "lots"})
	expectStatus(t, bad, 422)
	if bad.text(alertRe) == "" {
		t.Errorf("a bad quantity shows no error")
	}
	if got := b.navigate("/cart").text(cartTotalRe); got != dollars(price) {
		t.Errorf("cart total after a bad quantity %q, want %s", got, dollars(price))
	}
	updated := b.submit(cartPage, "/cart/items/"+productID, map[string]string{"quantity": "2"})
	expectRedirectedTo(t, updated, "/cart")
	if got := updated.text(cartTotalRe); got != dollars(2*price) {
		t.Fatalf("cart total after setting 2: %q, want %s", got, dollars(2*price))
	}
	if f := b.form(updated, "/cart/items/"+productID); f.fields.Get("quantity") != "2" {
		t.Errorf("cart quantity field shows %q, want 2", f.fields.Get("quantity"))
	}

	// Pages that need an account send an anonymous visitor to log in, and back.
	for _, path := range []string{"/checkout", "/orders"} {
		u, _ := url.Parse(b.bases[0] + path)
		p := b.send("GET", u, nil, nil)
		if p.status != http.StatusSeeOther || p.header.Get("Location") != "/login?next="+url.QueryEscape(path) {
			t.Errorf("anonymous GET %s: %d to %q, want 303 to /login?next=%s", path, p.status, p.header.Get("Location"), url.QueryEscape(path))
		}
	}
	if f := b.form(b.navigate("/login?next=//evil.example/x"), "/login"); f.fields.Get("next") != "/" {
		t.Errorf("login page keeps an off-site next %q", f.fields.Get("next"))
	}

	// The cart's Checkout button leads an anonymous visitor to the login
	// page, whose "Create an account" link keeps where they were going.
	// Registering there logs them in with their anonymous cart kept, and
	// lands them on the checkout page.
	if !updated.has(`<a class="button" href="/checkout">Checkout</a>`) {
		t.Fatalf("cart page has no Checkout button")
	}
	login := b.navigate("/checkout")
	if login.url.Path != "/login" || len(login.via) != 1 || login.via[0] != "303 /login?next=%2Fcheckout" {
		t.Fatalf("anonymous checkout: %s, want the login page", login)
	}
	regLink := login.text(registerLinkRe)
	if regLink == "" {
		t.Fatalf("login page has no link to register")
	}
	email := fmt.Sprintf("ada-html-%d@example.com", time.Now().UnixNano())
	const password = "correct horse battery"
	reg := b.navigate(regLink)
	expectStatus(t, reg, 200)
	if next := b.form(reg, "/register").fields.Get("next"); next != "/checkout" {
		t.Errorf("register page reached from the checkout's login has next %q, want /checkout", next)
	}
	weak := b.submit(reg, "/register", map[string]string{"name": "Ada Lovelace", "email": "not-an-email", "password": password})
	expectStatus(t, weak, 422)
	if weak.text(alertRe) == "" || b.form(weak, "/register").fields.Get("name") != "Ada Lovelace" {
		t.Errorf("a bad registration shows no error or loses the name:\n%s", excerpt(weak.body))
	}
	co := b.submit(reg, "/register", map[string]string{"name": "Ada Lovelace", "email": email, "password": password})
	expectRedirectedTo(t, co, "/checkout")
	if !co.has(">Ada Lovelace</a>") || !co.has(`action="/logout"`) {
		t.Fatalf("after registering the header does not show the account:\n%s", co.body)
	}
	if b.cookie("globo_cart") != "" {
		t.Errorf("anonymous cart cookie kept after its cart was merged")
	}
	if got := co.text(cartCountRe); got != "2" {
		t.Errorf("header cart count after registering %q, want 2", got)
	}
	if got := b.navigate("/cart").text(cartTotalRe); got != dollars(2*price) {
		t.Fatalf("cart after registering: total %q, want %s (the anonymous cart was not kept)", got, dollars(2*price))
	}
	dup := b.submit(reg, "/register", map[string]string{"name": "Someone", "email": email, "password": password})
	expectStatus(t, dup, 409)
	if dup.text(alertRe) == "" {
		t.Errorf("a second registration with the same email shows no error")
	}

	// Checkout: the address and card, then the order's page.
	coForm := b.form(co, "/checkout")
	key := coForm.fields.Get("idempotency_key")
	if key == "" {
		t.Fatalf("checkout form has no idempotency key")
	}
	if got := coForm.fields.Get("name"); got != "Ada Lovelace" {
		t.Errorf("checkout name prefilled with %q, want the account's name", got)
	}
	if !co.has(dollars(2 * price)) {
		t.Errorf("checkout summary does not show the items' total %s", dollars(2*price))
	}
	year := strconv.Itoa(time.Now().Year() + 2)
	typed := func(card string) map[string]string {
		return map[string]string{
			"line1": "12 Analytical Row", "city": "London", "postal_code": "N1 9GU", "country": "gb",
			"card_number": card, "exp_month": "12", "exp_year": year, "cvc": "123",
		}
	}
	// A double click: the form posted twice at once (through the load
	// balancer, so to both instances) places one order; both answers send
	// the browser to it.
	clicks := b.doubleClick(co, "/checkout", typed("4242 4242 4242 4242"))
	for _, c := range clicks {
		if c.status != http.StatusSeeOther || c.header.Get("Location") != clicks[0].header.Get("Location") {
			t.Fatalf("double-clicked checkout: %d to %q and %d to %q, want both 303 to the same order\n%s",
				clicks[0].status, clicks[0].header.Get("Location"), clicks[1].status, clicks[1].header.Get("Location"), excerpt(c.body))
		}
	}
	placed := b.follow(clicks[1])
	expectStatus(t, placed, 200)
	orderPath := placed.url.Path
	orderID := strings.TrimPrefix(orderPath, "/orders/")
	if len(placed.via) != 1 || !strings.HasPrefix(placed.via[0], "303 /orders/") || orderID == "" {
		t.Fatalf("placing the order: %s\n%s", placed, excerpt(placed.body))
	}
	if got := placed.text(statusRe); got != "confirmed" {
		t.Fatalf("order page status %q, want confirmed\n%s", got, excerpt(placed.body))
	}
	if !placed.has("Thank you! Your order is confirmed.") || !placed.has(orderID) {
		t.Errorf("order page does not thank the customer or name order %s", orderID)
	}
	tracking := placed.text(trackingRe)
	if tracking == "" {
		t.Errorf("order page shows no tracking number")
	}
	if got := placed.text(paymentRe); got != "Paid" {
		t.Errorf("order page payment %q, want Paid", got)
	}
	if !strings.HasPrefix(orderID, "GM-") || placed.has("ord_") {
		t.Errorf("order page %s: want the order known by its number, no internal id", orderPath)
	}
	if !placed.has("London") || !placed.has(`href="/products/`+productID+`"`) {
		t.Errorf("order page does not show the address and the product")
	}
	if got := placed.text(cartCountRe); got != "0" {
		t.Errorf("header cart count after the order %q, want 0", got)
	}

	// The same form submitted again (a double click, a reload) finds the
	// same order instead of placing another.
	again := b.submit(co, "/checkout", typed("4242 4242 4242 4242"))
	expectStatus(t, again, 200)
	if again.url.Path != orderPath {
		t.Fatalf("submitting the checkout form again went to %s, want %s\n%s", again, orderPath, excerpt(again.body))
	}
	history := b.navigate("/orders")
	expectStatus(t, history, 200)
	if rows := orderRows(history); len(rows) != 1 || rows[orderID] != "confirmed" {
		t.Fatalf("order history after the double submit = %v, want only %s confirmed", rows, orderID)
	}

	// A declined card: a friendly error on the checkout page, a fresh form
	// keeping the address, the cart kept, nothing charged.
	prod = b.navigate("/products/" + productID)
	expectRedirectedTo(t, b.submit(prod, "/cart/add", map[string]string{"quantity": "1"}), "/cart")
	co2 := b.navigate("/checkout")
	declined := b.submit(co2, "/checkout", typed("4000000000000002"))
	expectStatus(t, declined, http.StatusPaymentRequired)
	if msg := declined.text(alertRe); !strings.Contains(msg, "declined") || !strings.Contains(msg, "nothing was charged") {
		t.Errorf("declined card: error %q", msg)
	}
	df := b.form(declined, "/checkout")
	if df.fields.Get("line1") != "12 Analytical Row" || df.fields.Get("card_number") != "" {
		t.Errorf("declined form: address %q kept, card %q (want the address kept, the card not echoed)", df.fields.Get("line1"), df.fields.Get("card_number"))
	}
	if k := df.fields.Get("idempotency_key"); k == "" || k == b.form(co2, "/checkout").fields.Get("idempotency_key") {
		t.Errorf("declined form key %q: want a fresh key for the next attempt", k)
	}
	if got := b.navigate("/cart").text(cartTotalRe); got != dollars(price) {
		t.Errorf("cart after a declined payment: total %q, want %s", got, dollars(price))
	}
	history = b.navigate("/orders")
	rows := orderRows(history)
	for id, status := range rows {
		if id == orderID {
			continue
		}
		if status == "confirmed" {
			t.Errorf("order %s with the declined card is confirmed", id)
		}
		op := b.navigate("/orders/" + id)
		expectStatus(t, op, 200)
		if pay := op.text(paymentRe); pay == "Paid" {
			t.Errorf("order %s with the declined card: payment %s", id, pay)
		}
	}
	if rows[orderID] != "confirmed" || len(rows) > 2 {
		t.Errorf("order history after the decline = %v", rows)
	}

	// The order e-mail, in the development mailbox.
	var mailRow []string
	testenv.CheckFor(t, 30*time.Second, func() error {
		mb := b.navigate("/dev/mail")
		if mb.status != 200 {
			return fmt.Errorf("mailbox: %s", mb)
		}
		for _, m := range mailRowRe.FindAllStringSubmatch(mb.body, -1) {
			if strings.Contains(html.UnescapeString(m[3]), orderID) { // the subject names the order's number
				mailRow = m
				return nil
			}
		}
		return fmt.Errorf("no mail for order %s yet", orderID)
	})
	if !strings.Contains(html.UnescapeString(mailRow[1]), email) || !strings.Contains(html.UnescapeString(mailRow[3]), orderID) {
		t.Errorf("mailbox row = to %q, subject %q", mailRow[1], mailRow[3])
	}
	// The message decoded for reading, and its source.
	msg := b.navigate("/dev/mail/" + mailRow[2])
	expectStatus(t, msg, 200)
	body := html.UnescapeString(msg.body)
	if ct := msg.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("mail message content type %q, want text/html (decoded view)", ct)
	}
	if !strings.Contains(body, email) || !strings.Contains(body, orderID) || !strings.Contains(body, "confirmed") || strings.Contains(body, "=C3=") {
		t.Errorf("mail message is not decoded or does not name the customer and the order:\n%s", msg.body)
	}
	raw := b.navigate("/dev/mail/" + mailRow[2] + "?raw=1")
	expectStatus(t, raw, 200)
	if ct := raw.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") || !raw.has("To: ") {
		t.Errorf("raw mail: %q\n%s", ct, raw.body)
	}

	// A form posted from another site is refused and changes nothing: not
	// the cart, not the session.
	cartPage = b.navigate("/cart")
	for _, hdr := range []http.Header{
		{"Origin": {"http://evil.example"}},
		{"Origin": {"http://evil.example"}, "Sec-Fetch-Site": {"cross-site"}},
	} {
		for _, action := range []string{"/cart/items/" + productID, "/logout"} {
			f := b.form(cartPage, action)
			vals := f.fields
			if action != "/logout" {
				vals = url.Values{"quantity": {"9"}}
			}
			target, _ := cartPage.url.Parse(action)
			p := b.send("POST", target, vals, hdr)
			if p.status != http.StatusForbidden || !p.has("Not allowed") {
				t.Errorf("cross-origin POST %s with %v: %s, want 403", action, hdr, p)
			}
		}
	}
	after := b.navigate("/cart")
	if got := after.text(cartTotalRe); got != dollars(price) || !after.has(`action="/logout"`) {
		t.Errorf("after refused cross-origin posts: cart total %q (want %s), logged in %v", got, dollars(price), after.has(`action="/logout"`))
	}

	// Log out from the header's form: the account pages need a login again.
	out := b.submit(after, "/logout", nil)
	expectRedirectedTo(t, out, "/")
	if out.has(`action="/logout"`) || !out.has(`href="/login"`) {
		t.Errorf("the header still shows an account after logging out")
	}
	if b.cookie("globo_session") != "" {
		t.Errorf("session cookie kept after logging out")
	}

	// Log back in by following the redirect from a page that needs it: an
	// anonymous cart made meanwhile is merged, and the person lands where
	// they were going.
	prod = b.navigate("/products/" + productID)
	expectRedirectedTo(t, b.submit(prod, "/cart/add", map[string]string{"quantity": "1"}), "/cart")
	login = b.navigate("/orders")
	expectStatus(t, login, 200)
	if login.url.Path != "/login" || len(login.via) != 1 || login.via[0] != "303 /login?next=%2Forders" {
		t.Fatalf("GET /orders logged out: %s", login)
	}
	wrong := b.submit(login, "/login", map[string]string{"email": email, "password": "not my password"})
	expectStatus(t, wrong, http.StatusUnauthorized)
	if wrong.text(alertRe) == "" || b.form(wrong, "/login").fields.Get("next") != "/orders" {
		t.Errorf("a wrong password shows no error or forgets where to go next")
	}
	back := b.submit(login, "/login", map[string]string{"email": email, "password": password})
	expectRedirectedTo(t, back, "/orders")
	if rows := orderRows(back); rows[orderID] != "confirmed" {
		t.Errorf("order history after logging in again = %v", rows)
	}
	if got := b.navigate("/cart").text(cartTotalRe); got != dollars(2*price) {
		t.Errorf("cart after logging in with an anonymous cart: total %q, want %s (merged)", got, dollars(2*price))
	}
	if b.cookie("globo_cart") != "" {
		t.Errorf("anonymous cart cookie kept after logging in")
	}

	// Removing the line empties the cart; there is then nothing to check out.
	emptied := b.submit(b.navigate("/cart"), "/cart/items/"+productID+"/remove", nil)
	expectRedirectedTo(t, emptied, "/cart")
	if !emptied.has("Your cart is empty.") || emptied.text(cartCountRe) != "0" {
		t.Errorf("cart after removing its only line:\n%s", excerpt(emptied.body))
	}
	if co := b.navigate("/checkout"); co.status != 200 || len(co.forms()) != 2 || !co.has("nothing to check out") {
		t.Errorf("checkout with an empty cart: %s, %d forms (want only the header's search and logout)", co, len(co.forms()))
	}

	// Another person cannot see the order.
	other := newBrowser(t, tp)
	if p := other.navigate("/orders/" + orderID); p.url.Path != "/login" {
		t.Errorf("anonymous visit of an order: %s, want the login page", p)
	}
	oreg := other.navigate("/register")
	expectRedirectedTo(t, other.submit(oreg, "/register", map[string]string{"name": "Grace", "email": "grace-" + email, "password": password}), "/")
	if p := other.navigate("/orders/" + orderID); p.status != 404 {
		t.Errorf("another customer's order: %s, want 404", p)
	}
}

// TestHTMLDoubleClickLandsOnOrder double-clicks "Place order" and follows
// each answer at once, as a browser does with the page of the last click:
// neither may end on "Page not found". The race it looks for is narrow, so
// it tries many times; a failure is a bug, a pass is no proof.
func TestHTMLDoubleClickLandsOnOrder(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end suite skipped in -short mode")
	}
	tp := split(t)
	tp.start(t)
	b := newBrowser(t, tp)
	productID := cardRe.FindStringSubmatch(b.navigate("/").body)[1]
	reg := b.navigate("/register")
	expectRedirectedTo(t, b.submit(reg, "/register", map[string]string{
		"name": "Ada", "email": fmt.Sprintf("ada-dbl-%d@example.com", time.Now().UnixNano()), "password": "correct horse battery",
	}), "/")
	typed := map[string]string{
		"line1": "12 Analytical Row", "city": "London", "postal_code": "N1 9GU", "country": "GB",
		"card_number": "4242424242424242", "exp_month": "12", "exp_year": strconv.Itoa(time.Now().Year() + 2), "cvc": "123",
	}
	// 8 double clicks: 16 posts, within the 20 checkouts an account may
	// post at once before the storefront's limit answers 429.
	for i := 0; i < 8; i++ {
		expectRedirectedTo(t, b.submit(b.navigate("/products/"+productID), "/cart/add", nil), "/cart")
		target, vals := b.fill(b.navigate("/checkout"), "/checkout", typed)
		var wg sync.WaitGroup
		var mu sync.Mutex
		var problems []string
		for click := 0; click < 2; click++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				problem := func() string {
					req, _ := http.NewRequest("POST", target.String(), strings.NewReader(vals.Encode()))
					req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
					req.Header.Set("Origin", origin(target))
					resp, err := b.hc.Do(req)
					if err != nil {
						return err.Error()
					}
					resp.Body.Close()
					loc, err := target.Parse(resp.Header.Get("Location"))
					if resp.StatusCode != http.StatusSeeOther || err != nil {
						return fmt.Sprintf("checkout answered %d to %q", resp.StatusCode, resp.Header.Get("Location"))
					}
					page, err := b.hc.Get(loc.String())
					if err != nil {
						return err.Error()
					}
					page.Body.Close()
					if page.StatusCode != 200 {
						return fmt.Sprintf("redirected to %s, which answered %d", loc.Path, page.StatusCode)
					}
					return ""
				}()
				if problem != "" {
					mu.Lock()
					problems = append(problems, problem)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if len(problems) > 0 {
			t.Fatalf("double click %d: %v", i, problems)
		}
	}
}
