package errs_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/platform/errs"
)

// allKinds lists every kind, so that a new one cannot be added without a status.
var allKinds = []errs.Kind{
	errs.Other, errs.BadRequest, errs.Unauthorized, errs.Declined, errs.Forbidden,
	errs.NotFound, errs.Conflict, errs.TooLarge, errs.Invalid, errs.Unavailable,
}

func TestEArguments(t *testing.T) {
	cause := errors.New("disk on fire")
	err := errs.E("catalog.Get", errs.NotFound, errs.Msg("no product %q", "p_1"), cause, nil)
	var e *errs.Error
	if !errors.As(err, &e) {
		t.Fatalf("E returned %T, want *errs.Error", err)
	}
	if e.Op != "catalog.Get" || e.Kind != errs.NotFound || e.Msg != `no product "p_1"` || e.Err != cause {
		t.Fatalf("E = %+v", *e)
	}
	if !errors.Is(err, cause) {
		t.Error("errors.Is(err, cause) = false: Unwrap must expose the cause")
	}
	if got, want := err.Error(), `catalog.Get: no product "p_1": disk on fire`; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}

	// The last argument of a type wins; a nil argument is ignored.
	err = errs.E("a", "b", errs.Conflict, errs.Invalid, nil)
	if !errors.As(err, &e) || e.Op != "b" || e.Kind != errs.Invalid || e.Err != nil {
		t.Fatalf("E(a, b, Conflict, Invalid, nil) = %+v", e)
	}
	if got, want := err.Error(), "b: Unprocessable Entity"; got != want {
		t.Errorf("Error() with no message = %q, want %q", got, want)
	}
	if got := errs.E().Error(); got != "Internal Server Error" {
		t.Errorf("E().Error() = %q", got)
	}
}

func TestEPanicsOnBadArgument(t *testing.T) {
	defer func() {
		v := recover()
		if v == nil {
			t.Fatal("E(42) did not panic")
		}
		if !strings.Contains(fmt.Sprint(v), "int") {
			t.Errorf("panic %q does not name the bad type", v)
		}
	}()
	_ = errs.E("op", 42)
}

func TestEKeepsInnerKindAndMessage(t *testing.T) {
	inner := errs.E("store.Get", errs.NotFound, errs.Msg("no such cart"))
	outer := errs.E("cart.Get", inner)
	var e *errs.Error
	errors.As(outer, &e)
	if e.Kind != errs.NotFound || e.Msg != "no such cart" {
		t.Fatalf("outer = %+v, want inner kind and message kept", *e)
	}
	// An outer kind and message override the inner ones.
	outer = errs.E("cart.Get", errs.Conflict, errs.Msg("cart is closed"), inner)
	if errs.KindOf(outer) != errs.Conflict || errs.Detail(outer) != "cart is closed" {
		t.Fatalf("KindOf/Detail = %v/%q, want Conflict/cart is closed", errs.KindOf(outer), errs.Detail(outer))
	}
	// The message is not repeated when the wrapper inherited it.
	if got, want := errs.E("cart.Get", inner).Error(), "cart.Get: no such cart: store.Get: no such cart"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	// An inner error found through a non-*Error wrapper is still used.
	wrapped := errs.E("svc", fmt.Errorf("loading: %w", errs.E(errs.Forbidden, errs.Msg("not yours"))))
	if errs.KindOf(wrapped) != errs.Forbidden || errs.Detail(wrapped) != "not yours" {
		t.Fatalf("through fmt wrapper: %v/%q", errs.KindOf(wrapped), errs.Detail(wrapped))
	}
}

func TestKindOf(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want errs.Kind
	}{
		{"nil", nil, errs.Other},
		{"plain", errors.New("x"), errs.Other},
		{"direct", errs.E(errs.Conflict), errs.Conflict},
		{"fmt wrapped", fmt.Errorf("ctx: %w", errs.E(errs.NotFound)), errs.NotFound},
		{"twice fmt wrapped", fmt.Errorf("a: %w", fmt.Errorf("b: %w", errs.E(errs.Declined))), errs.Declined},
		{"outer without kind", &errs.Error{Op: "x", Err: errs.E(errs.Invalid)}, errs.Invalid},
		{"outer without kind over fmt", &errs.Error{Op: "x", Err: fmt.Errorf("y: %w", errs.E(errs.TooLarge))}, errs.TooLarge},
		{"outermost kind wins", errs.E(errs.Unavailable, errs.E(errs.NotFound)), errs.Unavailable},
		{"E over plain", errs.E("op", errors.New("boom")), errs.Other},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := errs.KindOf(tt.err); got != tt.want {
				t.Errorf("KindOf = %v, want %v", got, tt.want)
			}
			if tt.err != nil && !errs.Is(tt.want, tt.err) {
				t.Errorf("Is(%v) = false", tt.want)
			}
		})
	}
	if errs.Is(errs.Other, nil) {
		t.Error("Is(Other, nil) = true; a nil error has no kind")
	}
	if !errs.Temporary(errs.E(errs.Unavailable)) || errs.Temporary(errs.E(errs.NotFound)) || errs.Temporary(nil) {
		t.Error("Temporary must be true only for Unavailable")
	}
}

func TestDetail(t *testing.T) {
	secret := errors.New("pq: password authentication failed for user admin")
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"message", errs.E(errs.Invalid, errs.Msg("price must be positive")), "price must be positive"},
		{"fmt wrapped", fmt.Errorf("x: %w", errs.E(errs.Invalid, errs.Msg("bad sku"))), "bad sku"},
		{"nested message", errs.E("outer", &errs.Error{Op: "inner", Kind: errs.Conflict, Msg: "email taken"}), "email taken"},
		{"message below a message-less wrapper", &errs.Error{Op: "o", Err: fmt.Errorf("w: %w", errs.E(errs.Invalid, errs.Msg("deep")))}, "deep"},
		{"no message: kind title", errs.E("op", errs.NotFound), "Not Found"},
		{"no message over internal cause: kind title", errs.E("op", errs.Conflict, secret), "Conflict"},
		{"no message, kind in inner error", &errs.Error{Op: "o", Err: errs.E(errs.Forbidden)}, "Forbidden"},
		{"plain error", secret, "Internal Server Error"},
		{"nil", nil, "Internal Server Error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := errs.Detail(tt.err)
			if got != tt.want {
				t.Errorf("Detail = %q, want %q", got, tt.want)
			}
			if strings.Contains(got, "password") {
				t.Errorf("Detail leaks the internal cause: %q", got)
			}
		})
	}
}

func TestProblemForNeverLeaksInternalCauses(t *testing.T) {
	secret := "dial tcp 10.1.2.3:5432: connection refused"
	for _, err := range []error{
		errors.New(secret),
		fmt.Errorf("wrapped: %w", errors.New(secret)),
		errs.E("store.Get", errors.New(secret)),
		// Even a message set on an internal error is not shown: only
		// client errors have client-safe details.
		errs.E("store.Get", errs.Msg("query %s failed", secret), errors.New(secret)),
	} {
		p := errs.ProblemFor(err)
		b, _ := json.Marshal(p)
		if strings.Contains(string(b), "10.1.2.3") || strings.Contains(string(b), "store.Get") {
			t.Errorf("ProblemFor(%v) leaks: %s", err, b)
		}
		if p.Status != 500 || p.Title != "Internal Server Error" || p.Detail != "An internal error occurred." {
			t.Errorf("ProblemFor(%v) = %+v", err, p)
		}
	}
	// A client error shows its message but never its cause.
	p := errs.ProblemFor(errs.E("account.Login", errs.Unauthorized, errs.Msg("wrong email or password"), errors.New(secret)))
	if p.Status != 401 || p.Detail != "wrong email or password" || p.Type != "about:blank" {
		t.Errorf("ProblemFor(Unauthorized) = %+v", p)
	}
	// A client error without a message gets its kind's title as detail.
	p = errs.ProblemFor(errs.E("catalog.Get", errs.NotFound, errors.New(secret)))
	if p.Status != 404 || p.Title != "Not Found" || p.Detail != "Not Found" {
		t.Errorf("ProblemFor(NotFound without message) = %+v", p)
	}
}

func TestKindStatusRoundTrip(t *testing.T) {
	seen := map[int]errs.Kind{}
	for _, k := range allKinds {
		st := k.Status()
		if st < 400 || st > 599 {
			t.Errorf("%v.Status() = %d, not an error status", k, st)
		}
		if other, dup := seen[st]; dup {
			t.Errorf("%v and %v share status %d", k, other, st)
		}
		seen[st] = k
		if k.Title() == "" || k.String() != k.Title() {
			t.Errorf("kind %d: Title %q, String %q", k, k.Title(), k.String())
		}
		if got := errs.KindForStatus(st); got != k {
			t.Errorf("KindForStatus(%d) = %v, want %v", st, got, k)
		}
	}
	for st, want := range map[int]errs.Kind{
		http.StatusTeapot:              errs.BadRequest,
		http.StatusMethodNotAllowed:    errs.BadRequest,
		http.StatusBadGateway:          errs.Unavailable,
		http.StatusGatewayTimeout:      errs.Unavailable,
		http.StatusNotImplemented:      errs.Unavailable,
		http.StatusOK:                  errs.Other,
		http.StatusMovedPermanently:    errs.Other,
		http.StatusInternalServerError: errs.Other,
	} {
		if got := errs.KindForStatus(st); got != want {
			t.Errorf("KindForStatus(%d) = %v, want %v", st, got, want)
		}
	}
}

func TestWriteProblem(t *testing.T) {
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/svc/catalog/v1/products/p_9", nil)
	errs.WriteProblem(rec, req, errs.E("catalog.Get", errs.NotFound, errs.Msg("no product p_9")))
	if rec.Code != 404 {
		t.Fatalf("status %d", rec.Code)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("Content-Type %q", ct)
	}
	if cc := rec.Header().Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q", cc)
	}
	var p errs.Problem
	if err := json.NewDecoder(rec.Body).Decode(&p); err != nil {
		t.Fatal(err)
	}
	want := errs.Problem{Type: "about:blank", Title: "Not Found", Status: 404, Detail: "no product p_9", Instance: "/svc/catalog/v1/products/p_9"}
	if p != want {
		t.Errorf("problem = %+v, want %+v", p, want)
	}
}

func TestFromProblem(t *testing.T) {
	// Every kind survives WriteProblem then FromProblem, with its detail.
	for _, k := range allKinds {
		rec := httptest.NewRecorder()
		errs.WriteProblem(rec, nil, errs.E("svc.Op", k, errs.Msg("detail for %v", k), errors.New("internal")))
		body, _ := io.ReadAll(rec.Body)
		err := errs.FromProblem("client op", rec.Code, body)
		if got := errs.KindOf(err); got != k {
			t.Errorf("kind %v came back as %v", k, got)
		}
		wantDetail := fmt.Sprintf("detail for %v", k)
		if k == errs.Other {
			wantDetail = "Internal Server Error"
		}
		if got := errs.Detail(err); got != wantDetail {
			t.Errorf("kind %v: detail %q, want %q", k, got, wantDetail)
		}
		var e *errs.Error
		if !errors.As(err, &e) || e.Op != "client op" {
			t.Errorf("kind %v: op not kept: %v", k, err)
		}
	}

	// A body that is not a problem falls back to the HTTP status.
	err := errs.FromProblem("op", 503, []byte("<html>Service Unavailable</html>"))
	if errs.KindOf(err) != errs.Unavailable || errs.Detail(err) != "Service Unavailable" {
		t.Errorf("HTML 503: %v / %q", errs.KindOf(err), errs.Detail(err))
	}
	err = errs.FromProblem("op", 404, nil)
	if errs.KindOf(err) != errs.NotFound {
		t.Errorf("empty 404: %v", errs.KindOf(err))
	}
	// The problem's status wins over the transport status (e.g. a proxy rewrote it).
	err = errs.FromProblem("op", 400, []byte(`{"status":409,"title":"Conflict","detail":"email taken"}`))
	if errs.KindOf(err) != errs.Conflict || errs.Detail(err) != "email taken" {
		t.Errorf("problem status: %v / %q", errs.KindOf(err), errs.Detail(err))
	}
}

func TestRetryAfter(t *testing.T) {
	cause := errs.E("sqldb.Exec", errs.Unavailable, errs.RetryAfter(1500*time.Millisecond), errors.New("no primary"))
	wrapped := errs.E("order.Place", fmt.Errorf("store: %w", cause))
	if got := errs.RetryAfterOf(wrapped); got != 1500*time.Millisecond {
		t.Errorf("RetryAfterOf(wrapped) = %v, want 1.5s", got)
	}
	if !errs.Is(errs.Unavailable, wrapped) {
		t.Errorf("kind %v, want Unavailable", errs.KindOf(wrapped))
	}
	if got := errs.RetryAfterOf(errs.E(errs.Unavailable)); got != 0 {
		t.Errorf("RetryAfterOf(no hint) = %v", got)
	}
	if got := errs.RetryAfterOf(errors.New("plain")); got != 0 {
		t.Errorf("RetryAfterOf(plain) = %v", got)
	}
	// The outer hint wins.
	if got := errs.RetryAfterOf(errs.E(errs.RetryAfter(5*time.Second), cause)); got != 5*time.Second {
		t.Errorf("outer hint = %v, want 5s", got)
	}

	rec := httptest.NewRecorder()
	errs.WriteProblem(rec, httptest.NewRequest("POST", "/orders", nil), wrapped)
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != "2" {
		t.Errorf("status %d, Retry-After %q; want 503 and 2 (seconds, rounded up)", rec.Code, rec.Header().Get("Retry-After"))
	}
	rec = httptest.NewRecorder()
	errs.WriteProblem(rec, nil, errs.E(errs.Unavailable))
	if _, ok := rec.Header()["Retry-After"]; ok {
		t.Error("Retry-After set for an error without a hint")
	}
}

type sqlStateErr string

func (e sqlStateErr) Error() string    { return "sqlstate " + string(e) }
func (e sqlStateErr) SQLState() string { return string(e) }

func TestKindOfUnclassifiedCauses(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want errs.Kind
	}{
		{context.DeadlineExceeded, errs.Unavailable},
		{fmt.Errorf("query: %w", context.Canceled), errs.Unavailable},
		{errs.E("store.Get", fmt.Errorf("scan: %w", context.DeadlineExceeded)), errs.Unavailable},
		{errs.E("store.Get", sqlStateErr("57014")), errs.Unavailable}, // statement_timeout
		{sqlStateErr("08006"), errs.Unavailable},
		{sqlStateErr("23505"), errs.Other},
		{errs.E(errs.NotFound, context.DeadlineExceeded), errs.NotFound}, // an explicit kind wins
	} {
		if got := errs.KindOf(tt.err); got != tt.want {
			t.Errorf("KindOf(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}
