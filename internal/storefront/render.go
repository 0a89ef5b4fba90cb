package storefront

import (
	"bytes"
	"embed"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/globomantics/globomantics/internal/account"
	"github.com/globomantics/globomantics/internal/catalog"
	"github.com/globomantics/globomantics/internal/order"
	"github.com/globomantics/globomantics/internal/payment"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/httpx"
	"github.com/globomantics/globomantics/internal/platform/money"
)

//go:embed templates
var templateFS embed.FS

// pageNames are the page templates; each is parsed together with the layout.
var pageNames = []string{
	"home", "category", "product", "search", "cart", "login", "register",
	"checkout", "checkout-status", "order", "orders", "account", "mail", "error",
	"password", "forgot-password", "reset-password", "reset-invalid", // password.go
}

// layoutData is what the layout needs on every page; Page is the page's own
// data.
type layoutData struct {
	Title      string
	Account    *account.Account
	CartCount  int
	Categories []catalog.Category
	Query      string
	Flash      *flash          // the one-time message left by the last action, if any
	Current    currentCategory // the category the page belongs to, if any (nav.go)
	Page       any
}

func (s *Server) parseTemplates() map[string]*template.Template {
	funcs := template.FuncMap{
		"static":      s.static.url,
		"money":       func(m money.Money) string { return m.String() },
		"image":       productImage,
		"srcset":      productSrcset,
		"date":        func(t time.Time) string { return t.UTC().Format("2 Jan 2006, 15:04 UTC") },
		"title":       capitalize,
		"orderStatus": orderStatus,
		// The order's words for its customer and its address (checkoutview.go).
		"paymentWords":  paymentWords,
		"shipmentWords": shipmentWords,
		"regionName":    regionName,
		"countryName":   countryName,
	}
	pages := make(map[string]*template.Template, len(pageNames))
	for _, name := range pageNames {
		t := template.Must(template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html"))
		pages[name] = t
	}
	return pages
}

// capitalize upper-cases the first letter of a status word ("confirmed").
func capitalize(s string) string {
	r, n := utf8.DecodeRuneInString(s)
	if n == 0 {
		return s
	}
	return string(unicode.ToUpper(r)) + s[n:]
}

// orderStatus is how an order's status reads to its customer. A cancelled
// order never reads like a purchase: it says whether the customer was
// refunded or never charged (payment voided, declined or never taken).
func orderStatus(o Order) string {
	switch o.Status {
	case order.StatusPending:
		return "Being placed"
	case order.StatusConfirmed:
		if shipmentWords(o) == shipmentPreparing {
			return "Confirmed — preparing to ship"
		}
		return "Confirmed"
	case order.StatusCancelled:
	default:
		return capitalize(o.Status)
	}
	switch o.Payment.Status {
	case payment.StatusRefunded:
		return "Refunded"
	case payment.StatusCaptured:
		return "Cancelled"
	}
	return "Cancelled — not charged"
}

// productImage picks the best image URL of p for a size ("small" or
// "medium"): that thumbnail, another thumbnail, or the original.
func productImage(p catalog.Product, size string) string {
	if u := p.Thumbnails[size]; u != "" {
		return u
	}
	for _, alt := range []string{"medium", "small"} {
		if u := p.Thumbnails[alt]; u != "" {
			return u
		}
	}
	return p.ImageURL
}

// productSrcset is the srcset of p's thumbnails, smallest first ("<url>
// 160w, <url> 480w, <url> 1024w"), or "" when p has none (the img then shows
// its src, the original or the one thumbnail there is). The widths are those
// of the thumbnail worker's sizes (thumbnail.Sizes): each thumbnail is that
// wide unless the original is narrower (thumbnails are never enlarged), in
// which case it is announced wider than it is and shown no worse than the
// original.
func productSrcset(p catalog.Product) string {
	var b strings.Builder
	for _, sz := range []struct {
		name  string
		width int
	}{{"small", 160}, {"medium", 480}, {"large", 1024}} {
		u := p.Thumbnails[sz.name]
		if u == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteString(", ")
		}
		b.WriteString(u + " " + strconv.Itoa(sz.width) + "w")
	}
	return b.String()
}

// render writes the page called name with the layout around it. The page is
// rendered into a buffer first so that a template error gives a clean error
// page rather than half a page.
func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, name, title string, data any) error {
	t, ok := s.pages[name]
	if !ok {
		return errs.E("storefront.render", errs.Msg("no page template %q", name))
	}
	ld := s.layout(r, title, data)
	if status < 300 {
		ld.Flash = s.takeFlash(w, r)
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout.html", ld); err != nil {
		return errs.E("storefront.render", err)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = buf.WriteTo(w)
	return nil
}

// layout gathers the header's data. None of it is essential: a failing
// service leaves its part of the header out rather than failing the page.
func (s *Server) layout(r *http.Request, title string, data any) layoutData {
	ctx := r.Context()
	ld := layoutData{Title: title, Page: data, Query: r.URL.Query().Get("q")}
	if c, ok := data.(inCategory); ok {
		ld.Current = c.currentCategory()
	}
	if cats, err := s.categories(ctx); err == nil {
		ld.Categories = cats
	} else {
		s.log.Warn("header: categories unavailable", "err", err)
	}
	a, err := s.account(r)
	if err != nil {
		s.log.Warn("header: account unavailable", "err", err)
		return ld
	}
	ld.Account = a
	owner, _ := s.cartOwner(r)
	if owner != "" {
		c, err := s.d.Carts.GetCart(ctx, owner)
		if err != nil {
			s.log.Warn("header: cart unavailable", "err", err)
		}
		for _, it := range c.Items {
			ld.CartCount += it.Quantity
		}
	}
	return ld
}

// pageHandler adapts an HTML page handler: pages are private by default,
// refuse cross-origin form posts, and turn errors into friendly error pages
// (or, for errs.Unauthorized, a trip to /login). The security headers are
// set for every answer by withSecurityHeaders.
func (s *Server) pageHandler(h func(w http.ResponseWriter, r *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", privateCacheControl)
		if err := s.checkOrigin(r); err != nil {
			s.htmlError(w, r, err)
			return
		}
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		}
		if err := h(w, r); err != nil {
			s.htmlError(w, r, err)
		}
	})
}

// publicPage marks a catalog page as cacheable by shared caches for a short
// while, but only for a visitor without cookies: for anyone else the header
// (cart count, account name) is personal.
func (s *Server) publicPage(w http.ResponseWriter, r *http.Request) {
	w.Header().Add("Vary", "Cookie")
	if !s.personal(r) {
		w.Header().Set("Cache-Control", catalogCacheControl)
	}
}

// personal reports whether the pages r's visitor sees are theirs alone: a
// session or a cart shows in the header, or a one-time message waits.
func (s *Server) personal(r *http.Request) bool {
	return s.sessionToken(r) != "" || s.cartToken(r) != "" || s.hasFlash(r)
}

// errorPage is the data of the error page.
type errorPage struct {
	Status  int
	Heading string
	Message string
}

// htmlError shows err as a friendly page. Client-safe details are shown for
// client errors; internal errors only say that something went wrong.
func (s *Server) htmlError(w http.ResponseWriter, r *http.Request, err error) {
	if tm := asTooMany(err); tm != nil {
		httpx.Logger(r.Context()).Debug("request limited", "method", r.Method, "path", r.URL.Path, "err", err)
		tm.setHeaders(w)
		s.errorPage(w, r, errorPage{Status: http.StatusTooManyRequests, Heading: "Too many requests", Message: tm.message()})
		return
	}
	httpx.LogError(r, err)
	k := errs.KindOf(err)
	if k == errs.Unauthorized {
		s.redirectToLogin(w, r)
		return
	}
	p := errorPage{Status: k.Status(), Heading: k.Title(), Message: errs.Detail(err)}
	switch k {
	case errs.NotFound:
		p.Heading = "Page not found"
		p.Message = "We couldn't find what you were looking for. It may have moved, or the link may be wrong."
	case errs.Forbidden:
		p.Heading = "Not allowed"
		p.Message = "This request was refused. If you submitted a form, reload the page and try again."
	case errs.Unavailable:
		p.Heading = "We'll be right back"
		p.Message = "Part of the shop is temporarily unavailable. Please try again in a moment."
	case errs.Other:
		p.Heading = "Something went wrong"
		p.Message = "An unexpected error occurred on our side. Please try again."
	}
	s.errorPage(w, r, p)
}

func (s *Server) errorPage(w http.ResponseWriter, r *http.Request, p errorPage) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Del("Vary")
	if err := s.render(w, r, p.Status, "error", p.Heading, p); err != nil {
		s.log.Error("rendering the error page failed", "err", err)
		http.Error(w, p.Heading, p.Status)
	}
}

// htmlNoRoute answers paths no page matches (404) and wrong methods (405).
func (s *Server) htmlNoRoute(w http.ResponseWriter, r *http.Request, allow []string) {
	if len(allow) == 0 {
		s.errorPage(w, r, errorPage{Status: http.StatusNotFound, Heading: "Page not found",
			Message: "We couldn't find what you were looking for. It may have moved, or the link may be wrong."})
		return
	}
	w.Header().Set("Allow", strings.Join(allow, ", "))
	s.errorPage(w, r, errorPage{Status: http.StatusMethodNotAllowed, Heading: "Method not allowed",
		Message: "This page can't be used that way."})
}

// redirectToLogin sends the visitor to the login page, to come back to the
// page they asked for (for a form post, the page it belongs to).
func (s *Server) redirectToLogin(w http.ResponseWriter, r *http.Request) {
	next := "/"
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		next = r.URL.RequestURI()
	} else {
		probe := r.Clone(r.Context())
		probe.Method = http.MethodGet
		if _, pattern := s.html.Handler(probe); pattern != "" {
			next = r.URL.Path
		}
	}
	if guestOffered(next) { // on the way to checkout
		s.setFlash(w, FlashInfo, "Log in or create an account to check out. Your cart is kept.")
	} else {
		s.setFlash(w, FlashInfo, "Please log in to continue.")
	}
	http.Redirect(w, r, "/login?next="+url.QueryEscape(next), http.StatusSeeOther)
}

// localPath returns next if it is a path on this site, "/" otherwise, so
// that ?next= cannot send a visitor to another site (open redirect).
func localPath(next string) string {
	if next == "" || next[0] != '/' || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n\t") {
		return "/"
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil {
		return "/"
	}
	return next
}
