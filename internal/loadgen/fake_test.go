package loadgen

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fakeShop is a storefront with known answers: every route of the public
// API a session uses, each answering as its field says.
type fakeShop struct {
	// home, when set, answers GET / (default: 200 at once).
	home http.HandlerFunc
	// searchStatus and loginStatus answer those routes with a problem
	// when not 0.
	searchStatus, loginStatus int
	noProducts                bool
	homeHits                  atomic.Int64
}

func problem(w http.ResponseWriter, status int) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"type": "about:blank", "title": http.StatusText(status), "status": status, "detail": "fake"})
}

func (f *fakeShop) start(t *testing.T) string {
	t.Helper()
	mux := http.NewServeMux()
	js := func(w http.ResponseWriter, status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(v)
	}
	mux.HandleFunc("GET /api/v1/categories", func(w http.ResponseWriter, r *http.Request) {
		js(w, 200, map[string]any{"items": []map[string]string{{"id": "tools"}}})
	})
	mux.HandleFunc("GET /api/v1/products", func(w http.ResponseWriter, r *http.Request) {
		items := []product{{ID: "p1", Name: "Blue Widget", Category: "tools", Stock: 100}, {ID: "p2", Name: "Red Gadget", Category: "tools", Stock: 50}}
		if f.noProducts {
			items = nil
		}
		js(w, 200, map[string]any{"items": items, "next_page_token": ""})
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		f.homeHits.Add(1)
		if f.home != nil {
			f.home(w, r)
			return
		}
		io.WriteString(w, "<html>Globomantics</html>")
	})
	page := func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "<html>page</html>") }
	mux.HandleFunc("GET /category/{id}", page)
	mux.HandleFunc("GET /products/{id}", page)
	mux.HandleFunc("GET /api/v1/search", func(w http.ResponseWriter, r *http.Request) {
		if f.searchStatus != 0 {
			problem(w, f.searchStatus)
			return
		}
		js(w, 200, map[string]any{"items": []product{{ID: "p1"}}})
	})
	mux.HandleFunc("POST /api/v1/accounts", func(w http.ResponseWriter, r *http.Request) { js(w, 201, map[string]string{"id": "u1"}) })
	mux.HandleFunc("POST /api/v1/sessions", func(w http.ResponseWriter, r *http.Request) {
		if f.loginStatus != 0 {
			problem(w, f.loginStatus)
			return
		}
		js(w, 200, map[string]string{"id": "u1"})
	})
	mux.HandleFunc("GET /api/v1/me", func(w http.ResponseWriter, r *http.Request) { js(w, 200, map[string]string{"id": "u1"}) })
	mux.HandleFunc("POST /api/v1/cart/items", func(w http.ResponseWriter, r *http.Request) { js(w, 200, map[string]any{"items": []any{}}) })
	mux.HandleFunc("GET /api/v1/cart", func(w http.ResponseWriter, r *http.Request) { js(w, 200, map[string]any{"items": []any{}}) })
	mux.HandleFunc("POST /api/v1/checkout", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Idempotency-Key") == "" {
			problem(w, 400)
			return
		}
		var body struct {
			Payment struct {
				Card string `json:"card_number"`
			} `json:"payment"`
		}
		_ = json.NewDecoder(r.Body).Decode(&body)
		switch body.Payment.Card {
		case CardOK:
			js(w, 201, map[string]string{"id": "o1", "status": "confirmed"})
		case CardDeclined:
			problem(w, 402)
		case CardTransient:
			problem(w, 503)
		default:
			problem(w, 422)
		}
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

func config(url string, rate float64, d time.Duration, mix string) Config {
	m, err := ParseMix(mix)
	if err != nil {
		panic(err)
	}
	return Config{URL: url, Rate: rate, Duration: d, Mix: m, MaxInFlight: 1000, Timeout: 10 * time.Second, Seed: 7}
}

func stepOf(r Report, name string) StepStats {
	for _, s := range r.Steps {
		if s.Name == name {
			return s
		}
	}
	return StepStats{}
}

func errorOf(r Report, kind string) ErrorKind {
	for _, e := range r.ErrorKinds {
		if e.Kind == kind {
			return e
		}
	}
	return ErrorKind{}
}

func kinds(r Report) string {
	var s []string
	for _, e := range r.ErrorKinds {
		s = append(s, e.Kind)
	}
	return strings.Join(s, "; ")
}
