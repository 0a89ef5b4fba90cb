package loadgen

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
	"unicode"
)

// The payment service's test cards (README).
const (
	CardOK        = "4242424242424242"
	CardDeclined  = "4000000000000002"
	CardTransient = "4000000000000119"
)

// cardCycle is the card of the n-th checkout session: mostly good cards,
// every test card within the first five checkouts. A transient failure is
// retried by the checkout saga until its 30 s step deadline, holding a
// saga slot, so it is the rarest.
var cardCycle = []string{CardOK, CardDeclined, CardOK, CardOK, CardTransient, CardOK, CardOK, CardDeclined, CardOK, CardOK}

// maxBody is the most of an answer kept; the rest is read and dropped.
const maxBody = 4 << 20

type product struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Category string `json:"category"`
	Stock    int    `json:"stock"`
}

// shop is the target storefront and what the sessions know of it.
type shop struct {
	cfg        Config
	tr         *http.Transport
	runID      string
	products   []product // in stock (the well-stocked ones, when there are some)
	categories []string
	words      []string
	checkouts  atomic.Int64
	// checkoutWait is how long a session follows a checkout answered 202.
	checkoutWait time.Duration
}

func newShop(cfg Config) *shop {
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        cfg.MaxInFlight,
		MaxIdleConnsPerHost: cfg.MaxInFlight,
		IdleConnTimeout:     30 * time.Second,
		ForceAttemptHTTP2:   true,
	}
	b := make([]byte, 4)
	_, _ = crand.Read(b)
	wait := cfg.CheckoutWait
	if wait < 0 {
		wait = 0
	}
	return &shop{cfg: cfg, tr: tr, runID: fmt.Sprintf("%s%s", time.Now().UTC().Format("0102150405"), hex.EncodeToString(b)), checkoutWait: wait}
}

func (sh *shop) close() { sh.tr.CloseIdleConnections() }

func (sh *shop) client() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Transport: sh.tr, Jar: jar, Timeout: sh.cfg.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// loadCatalog reads the categories and up to 1,000 products from the
// shop's public API, and the words of their names to search for.
func (sh *shop) loadCatalog(ctx context.Context) error {
	hc := sh.client()
	get := func(path string, v any) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, sh.cfg.URL+path, nil)
		if err != nil {
			return err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return fmt.Errorf("reading the catalog of %s: %w", sh.cfg.URL, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, maxBody))
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("reading the catalog: GET %s%s answered %d (is this a Globomantics storefront?)", sh.cfg.URL, path, resp.StatusCode)
		}
		if err := json.Unmarshal(b, v); err != nil {
			return fmt.Errorf("reading the catalog: GET %s%s: %w", sh.cfg.URL, path, err)
		}
		return nil
	}
	var cats struct {
		Items []struct{ ID string } `json:"items"`
	}
	if err := get("/api/v1/categories", &cats); err != nil {
		return err
	}
	for _, c := range cats.Items {
		sh.categories = append(sh.categories, c.ID)
	}
	var all []product
	token := ""
	for len(all) < 1000 {
		var pg struct {
			Items []product `json:"items"`
			Next  string    `json:"next_page_token"`
		}
		if err := get("/api/v1/products?page_size=100&page_token="+url.QueryEscape(token), &pg); err != nil {
			return err
		}
		all = append(all, pg.Items...)
		if pg.Next == "" {
			break
		}
		token = pg.Next
	}
	seen := map[string]bool{}
	for _, p := range all {
		if p.Stock > 0 {
			sh.products = append(sh.products, p)
		}
		for _, w := range strings.FieldsFunc(p.Name, func(r rune) bool { return !unicode.IsLetter(r) }) {
			if w = strings.ToLower(w); len(w) >= 4 && !seen[w] && len(sh.words) < 200 {
				seen[w] = true
				sh.words = append(sh.words, w)
			}
		}
		if !slices.Contains(sh.categories, p.Category) && p.Category != "" {
			sh.categories = append(sh.categories, p.Category)
		}
	}
	if len(sh.products) == 0 {
		return fmt.Errorf("the shop at %s has no products in stock (GET /api/v1/products listed %d): nothing to shop for", sh.cfg.URL, len(all))
	}
	if len(sh.words) == 0 {
		sh.words = []string{strings.ToLower(sh.products[0].Name)}
	}
	// Prefer well-stocked products, so that long runs do not empty the shelves.
	if len(sh.products) > 4 {
		well := sh.products[:0:0]
		for _, p := range sh.products {
			if p.Stock >= 20 {
				well = append(well, p)
			}
		}
		if len(well) > 0 {
			sh.products = well
		}
	}
	return nil
}

// sess is one shopper: a cookie jar, its own random choices, and the time
// its next request is due.
type sess struct {
	sh        *shop
	rec       *recorder
	ctx       context.Context
	hc        *http.Client
	rnd       *rand.Rand
	due       time.Time // when the next request was due; zero: now
	failed    bool
	cancelled bool
}

// session runs arrival i, due at at, as scenario name.
func (sh *shop) session(ctx context.Context, rec *recorder, name string, i int, at time.Time) {
	rec.arrival(name, at)
	s := &sess{sh: sh, rec: rec, ctx: ctx, hc: sh.client(), rnd: rand.New(rand.NewPCG(uint64(sh.cfg.Seed), uint64(i))), due: at}
	switch name {
	case "browse":
		s.browse()
	case "search":
		s.search()
	case "register":
		s.register(i)
	case "cart":
		s.cart(i)
	case "checkout":
		s.checkout(i)
	}
	end := sh.cfg.Now()
	rec.sessionDone(name, end, end.Sub(at), s.failed, s.cancelled)
}

func (s *sess) product() product   { return s.sh.products[s.rnd.IntN(len(s.sh.products))] }
func (s *sess) word() string       { return s.sh.words[s.rnd.IntN(len(s.sh.words))] }
func (s *sess) alive() bool        { return !s.failed && !s.cancelled }
func (s *sess) email(i int) string { return fmt.Sprintf("load-%s-%d@example.com", s.sh.runID, i) }

func (s *sess) browse() {
	s.get("home", "/", 200)
	if len(s.sh.categories) > 0 && s.alive() {
		s.get("category", "/category/"+url.PathEscape(s.sh.categories[s.rnd.IntN(len(s.sh.categories))]), 200)
	}
	if s.alive() {
		s.get("product", "/products/"+url.PathEscape(s.product().ID), 200)
	}
}

func (s *sess) search() {
	var hits struct {
		Items []product `json:"items"`
	}
	for n := 1 + s.rnd.IntN(2); n > 0 && s.alive(); n-- {
		if r, ok := s.do("search", http.MethodGet, "/api/v1/search?q="+url.QueryEscape(s.word()), nil, nil, 200); ok {
			_ = json.Unmarshal(r.body, &hits)
		}
	}
	if s.alive() && len(hits.Items) > 0 {
		s.get("product", "/products/"+url.PathEscape(hits.Items[s.rnd.IntN(len(hits.Items))].ID), 200)
	}
}

// register creates an account with a unique address and logs in.
func (s *sess) register(i int) {
	email := s.email(i)
	const password = "load-test-password"
	s.do("register", http.MethodPost, "/api/v1/accounts", map[string]string{"email": email, "password": password, "name": "Load Shopper"}, nil, 201)
	if s.alive() {
		s.do("login", http.MethodPost, "/api/v1/sessions", map[string]string{"email": email, "password": password}, nil, 200)
	}
	if s.alive() {
		s.get("me", "/api/v1/me", 200)
	}
}

// fillCart adds 1 to max products and views the cart.
func (s *sess) fillCart(most int) {
	for n := 1 + s.rnd.IntN(most); n > 0 && s.alive(); n-- {
		// 409: the product sold out (the cart refuses what is not in stock).
		s.do("add_to_cart", http.MethodPost, "/api/v1/cart/items", map[string]any{"product_id": s.product().ID, "quantity": 1}, nil, 200, 409)
	}
	if s.alive() {
		s.get("view_cart", "/api/v1/cart", 200)
	}
}

func (s *sess) cart(i int) {
	if s.rnd.IntN(2) == 0 {
		s.register(i)
	}
	if s.alive() {
		s.fillCart(3)
	}
}

func (s *sess) checkout(i int) {
	card := cardCycle[int(s.sh.checkouts.Add(1)-1)%len(cardCycle)]
	s.register(i)
	if s.alive() {
		s.fillCart(2)
	}
	if !s.alive() {
		return
	}
	step, want := "checkout_ok", "confirmed"
	expect := []int{201, 202}
	switch card {
	case CardDeclined:
		step, want, expect = "checkout_declined", "declined", []int{402, 202}
	case CardTransient:
		step, want, expect = "checkout_transient", "transient", []int{503, 202}
	}
	body := map[string]any{
		"shipping_address": map[string]string{"name": "Load Shopper", "line1": "1 Test Street", "city": "London", "postal_code": "N1 9GU", "country": "GB"},
		"payment":          map[string]any{"card_number": card, "exp_month": 12, "exp_year": time.Now().Year() + 2, "cvc": "123"},
	}
	r, ok := s.do(step, http.MethodPost, "/api/v1/checkout", body, map[string]string{"Idempotency-Key": fmt.Sprintf("load-%s-%d", s.sh.runID, i)}, expect...)
	if !ok {
		return
	}
	switch r.status {
	case 201:
		s.rec.checkout("confirmed")
		return
	case 402:
		s.rec.checkout("declined")
		return
	case 503:
		s.rec.checkout("transient")
		return
	}
	s.follow(r.header.Get("Location"), want)
}

// follow polls a checkout answered 202 at loc until it ends or the
// checkout wait is over (then it counts as pending).
func (s *sess) follow(loc, want string) {
	if loc == "" || s.sh.checkoutWait == 0 {
		s.rec.checkout("pending")
		return
	}
	until := s.sh.cfg.Now().Add(s.sh.checkoutWait)
	for {
		t := time.NewTimer(500 * time.Millisecond)
		select {
		case <-s.ctx.Done():
			t.Stop()
			s.cancelled = true
			return
		case <-t.C:
		}
		r, ok := s.do("checkout_status", http.MethodGet, loc, nil, nil, 200)
		if !ok {
			return
		}
		var v struct {
			State string `json:"state"`
			Done  bool   `json:"done"`
			Error *struct {
				Status int    `json:"status"`
				Title  string `json:"title"`
			} `json:"error"`
		}
		if err := json.Unmarshal(r.body, &v); err != nil {
			s.fail("checkout_outcome", "unreadable checkout [2xx]", err.Error())
			return
		}
		if v.Done {
			got := v.State
			if v.State == "cancelled" && v.Error != nil {
				switch v.Error.Status {
				case 402:
					got = "declined"
				case 503:
					got = "transient"
				default:
					got = fmt.Sprintf("cancelled %d %s", v.Error.Status, v.Error.Title)
				}
			}
			if got != want {
				s.fail("checkout_outcome", "checkout "+got+", expected "+want, "")
				return
			}
			s.rec.checkout(got)
			return
		}
		if !s.sh.cfg.Now().Before(until) {
			s.rec.checkout("pending")
			return
		}
	}
}

// fail records a failure found in an answer that had the right status.
func (s *sess) fail(step, kind, example string) {
	s.failed = true
	s.rec.request(outcome{step: step, end: s.sh.cfg.Now(), kind: kind, example: example})
}

type answer struct {
	status int
	header http.Header
	body   []byte
}

func (s *sess) get(step, path string, expect ...int) {
	s.do(step, http.MethodGet, path, nil, nil, expect...)
}

// do sends one request and records it under step: ok when its status is
// one of expect. Latency counts from when the request was due: the
// session's intended start for its first request, the end of the previous
// one afterwards.
func (s *sess) do(step, method, path string, body any, hdr map[string]string, expect ...int) (answer, bool) {
	start := s.due
	if start.IsZero() {
		start = s.sh.cfg.Now()
	}
	s.due = time.Time{}
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(s.ctx, method, s.sh.cfg.URL+path, rd)
	if err != nil {
		s.fail(step, KindConnError, err.Error())
		return answer{}, false
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("User-Agent", "globomantics-load")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := s.hc.Do(req)
	var a answer
	if err == nil {
		a = answer{status: resp.StatusCode, header: resp.Header}
		a.body, err = io.ReadAll(io.LimitReader(resp.Body, maxBody))
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil {
			a.status = 0
		}
	}
	end := s.sh.cfg.Now()
	o := outcome{step: step, end: end, latency: end.Sub(start), status: a.status}
	if err != nil {
		if s.ctx.Err() != nil {
			s.cancelled = true
			return a, false
		}
		o.kind, o.example = errorKind(err)
		s.failed = true
		s.rec.request(o)
		return a, false
	}
	if slices.Contains(expect, a.status) {
		o.ok = true
		s.rec.request(o)
		return a, true
	}
	o.kind = statusKind(a.status, a.header.Get("Content-Type"), a.body)
	o.example = fmt.Sprintf("%s %s", method, path)
	s.failed = true
	s.rec.request(o)
	return a, false
}

// errorKind names a request that got no answer.
func errorKind(err error) (kind, example string) {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return KindTimeout, ""
	case errors.Is(err, syscall.ECONNREFUSED):
		return KindRefused, ""
	}
	msg := err.Error()
	if len(msg) > 160 {
		msg = msg[:160]
	}
	return KindConnError, msg
}

// statusKind names an unexpected answer by status, its title (the
// problem+json title when the answer is a problem) and its class.
func statusKind(status int, ctype string, body []byte) string {
	title := http.StatusText(status)
	if strings.HasPrefix(ctype, "application/problem+json") {
		var p struct {
			Title string `json:"title"`
		}
		if json.Unmarshal(body, &p) == nil && p.Title != "" {
			title = p.Title
		}
	}
	prefix := ""
	if status < 400 {
		prefix = "unexpected "
	}
	return fmt.Sprintf("%s%d %s [%dxx]", prefix, status, title, status/100)
}
