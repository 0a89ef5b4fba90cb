package httpx_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/httpx"
)

type item struct {
	Name  string `json:"name"`
	Qty   int    `json:"qty"`
	Inner struct {
		Price int64 `json:"price"`
	} `json:"inner"`
}

// jsonRequest is a POST of body with contentType: "" stands for
// application/json, "-" for no Content-Type at all.
func jsonRequest(body, contentType string) *http.Request {
	r := httptest.NewRequest("POST", "/x", strings.NewReader(body))
	switch contentType {
	case "-":
	case "":
		r.Header.Set("Content-Type", "application/json")
	default:
		r.Header.Set("Content-Type", contentType)
	}
	return r
}

func TestDecodeAccepts(t *testing.T) {
	for _, ct := range []string{"application/json", "application/json; charset=utf-8", "application/merge-patch+json"} {
		var v item
		err := httpx.Decode(jsonRequest(`{"name":"mug","qty":2,"inner":{"price":350}}`+"\n  \n", ct), &v)
		if err != nil {
			t.Fatalf("Content-Type %q: %v", ct, err)
		}
		if v.Name != "mug" || v.Qty != 2 || v.Inner.Price != 350 {
			t.Fatalf("decoded %+v", v)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	big := `{"name":"` + strings.Repeat("x", httpx.MaxBodyBytes) + `"}`
	tests := []struct {
		name   string
		body   string
		ct     string
		kind   errs.Kind
		detail string // substring of the client-visible detail
	}{
		{"unknown field", `{"name":"mug","colour":"red"}`, "application/json", errs.BadRequest, `unknown field "colour"`},
		{"unknown nested field", `{"inner":{"price":1,"tax":2}}`, "", errs.BadRequest, `unknown field "tax"`},
		{"trailing object", `{"name":"a"}{"name":"b"}`, "", errs.BadRequest, "single JSON object"},
		{"trailing garbage", `{"name":"a"} x`, "", errs.BadRequest, "single JSON object"},
		{"empty body", ``, "application/json", errs.BadRequest, "request body is empty"},
		{"whitespace body", "  \n", "application/json", errs.BadRequest, "request body is empty"},
		{"truncated", `{"name":"a"`, "", errs.BadRequest, "not valid JSON"},
		{"syntax", `{name:"a"}`, "", errs.BadRequest, "not valid JSON"},
		{"wrong content type", `{"name":"a"}`, "text/plain", errs.UnsupportedMediaType, "Content-Type must be application/json"},
		{"form content type", `name=a`, "application/x-www-form-urlencoded", errs.UnsupportedMediaType, "Content-Type"},
		{"bad content type", `{"name":"a"}`, "application/json; =;", errs.UnsupportedMediaType, "Content-Type"},
		{"no content type", `{"name":"a"}`, "-", errs.UnsupportedMediaType, "Content-Type must be application/json"},
		{"not UTF-8", "{\"name\":\"Ad\xffa\"}", "", errs.BadRequest, "must be UTF-8 text"},
		{"type error", `{"name":"a","qty":"two"}`, "", errs.BadRequest, `field "qty" must be of type int`},
		{"nested type error", `{"inner":{"price":"free"}}`, "", errs.BadRequest, `"inner.price" must be of type int64`},
		{"oversized", big, "application/json", errs.TooLarge, "larger than 1048576 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var v item
			err := httpx.Decode(jsonRequest(tt.body, tt.ct), &v)
			if err == nil {
				t.Fatalf("Decode accepted %q", tt.body)
			}
			if k := errs.KindOf(err); k != tt.kind {
				t.Errorf("kind = %v, want %v (%v)", k, tt.kind, err)
			}
			if d := errs.Detail(err); !strings.Contains(d, tt.detail) {
				t.Errorf("detail = %q, want it to contain %q", d, tt.detail)
			}
		})
	}
}

func TestDecodeLimit(t *testing.T) {
	var v item
	err := httpx.DecodeLimit(jsonRequest(`{"name":"a very long name indeed"}`, ""), &v, 10)
	if !errs.Is(errs.TooLarge, err) || !strings.Contains(errs.Detail(err), "larger than 10 bytes") {
		t.Fatalf("DecodeLimit(10) = %v (%q)", err, errs.Detail(err))
	}
	if err := httpx.DecodeLimit(jsonRequest(`{"qty":1}`, ""), &v, 10); err != nil || v.Qty != 1 {
		t.Fatalf("DecodeLimit within the limit = %v, %+v", err, v)
	}
}

func TestHandlerWritesProblem(t *testing.T) {
	h := httpx.Handler(func(w http.ResponseWriter, r *http.Request) error {
		switch r.URL.Path {
		case "/conflict":
			return errs.E("svc.Op", errs.Conflict, errs.Msg("email taken"), errors.New("pq: duplicate key"))
		case "/internal":
			return errors.New("pq: connection to 10.0.0.9 refused")
		}
		httpx.WriteJSON(w, http.StatusCreated, map[string]string{"ok": "yes"})
		return nil
	})
	srv := httptest.NewServer(h)
	defer srv.Close()

	get := func(path string) (*http.Response, []byte) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}

	resp, body := get("/conflict")
	if resp.StatusCode != 409 || resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("conflict: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var p errs.Problem
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatal(err)
	}
	if p.Status != 409 || p.Detail != "email taken" || p.Instance != "/conflict" || strings.Contains(string(body), "duplicate") {
		t.Errorf("conflict problem: %s", body)
	}

	resp, body = get("/internal")
	if resp.StatusCode != 500 || strings.Contains(string(body), "10.0.0.9") {
		t.Errorf("internal: %d %s", resp.StatusCode, body)
	}

	resp, body = get("/ok")
	if resp.StatusCode != 201 || resp.Header.Get("Content-Type") != "application/json" || strings.TrimSpace(string(body)) != `{"ok":"yes"}` {
		t.Errorf("ok: %d %q %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
}

func TestNotFound(t *testing.T) {
	rec := httptest.NewRecorder()
	httpx.NotFound(rec, httptest.NewRequest("DELETE", "/nope", nil))
	var p errs.Problem
	_ = json.Unmarshal(rec.Body.Bytes(), &p)
	if rec.Code != 404 || p.Detail != "no such resource: DELETE /nope" {
		t.Errorf("NotFound: %d %+v", rec.Code, p)
	}
}

func TestMiddlewareRecoversPanic(t *testing.T) {
	var logBuf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logBuf, nil))
	mux := http.NewServeMux()
	mux.HandleFunc("GET /boom", func(w http.ResponseWriter, r *http.Request) { panic("secret state 0xdeadbeef") })
	mux.HandleFunc("GET /fine", func(w http.ResponseWriter, r *http.Request) {
		if httpx.Logger(r.Context()) != log {
			t.Error("Logger(ctx) is not the middleware's logger")
		}
		httpx.WriteJSON(w, 200, "fine")
	})
	srv := httptest.NewServer(httpx.Middleware(log, mux))
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/boom")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 500 || resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("panic answered %d %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	var p errs.Problem
	if err := json.Unmarshal(body, &p); err != nil || p.Status != 500 || strings.Contains(string(body), "deadbeef") {
		t.Fatalf("panic problem: %s (%v)", body, err)
	}
	if !strings.Contains(logBuf.String(), "deadbeef") {
		t.Errorf("the panic value was not logged: %s", logBuf.String())
	}

	// The server survives the panic.
	resp, err = http.Get(srv.URL + "/fine")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("after panic: %d", resp.StatusCode)
	}
}

func TestMiddlewarePanicAfterWriteKeepsStatus(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	h := httpx.Middleware(log, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusAccepted)
		panic("late")
	}))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	if rec.Code != http.StatusAccepted || rec.Body.Len() != 0 {
		t.Errorf("a problem was written over a started response: %d %q", rec.Code, rec.Body.String())
	}
}

func TestRequired(t *testing.T) {
	if err := httpx.Required("op", map[string]string{"a": "x", "b": "y"}); err != nil {
		t.Fatalf("Required with all fields: %v", err)
	}
	err := httpx.Required("op", map[string]string{"zip": " ", "city": "", "name": "Ann"})
	if !errs.Is(errs.Invalid, err) || errs.Detail(err) != "missing required field(s): city, zip" {
		t.Fatalf("Required = %v / %q", err, errs.Detail(err))
	}
}
