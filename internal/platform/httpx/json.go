// Package httpx holds the HTTP plumbing shared by every service: strict JSON
// decoding, problem responses, middleware, and a client that spreads calls over
// a service's instances.
package httpx

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/globomantics/globomantics/internal/platform/errs"
)

// MaxBodyBytes is the largest request body any JSON endpoint accepts.
const MaxBodyBytes = 1 << 20

// Decode reads one JSON object from r's body into v. Bodies over MaxBodyBytes
// (413), bodies that are not UTF-8, unknown fields and trailing data (400), and a body whose
// Content-Type is not JSON or is missing (415) are client errors with a
// useful detail.
func Decode(r *http.Request, v any) error {
	return DecodeLimit(r, v, MaxBodyBytes)
}

// DecodeLimit is Decode with a body limit of max bytes.
func DecodeLimit(r *http.Request, v any, max int64) error {
	const op = "httpx.Decode"
	switch ct := r.Header.Get("Content-Type"); {
	case ct != "":
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return errs.E(op, errs.UnsupportedMediaType, errs.Msg("Content-Type must be application/json"))
		}
	case r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody:
		// A body that does not say what it is is not taken for JSON.
		return errs.E(op, errs.UnsupportedMediaType, errs.Msg("Content-Type must be application/json"))
	}
	b, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, max))
	if err != nil {
		return decodeError(op, err)
	}
	if !utf8.Valid(b) {
		// encoding/json would quietly turn the bad bytes into U+FFFD and
		// store them so: JSON text is UTF-8 (RFC 8259), so refuse it.
		return errs.E(op, errs.BadRequest, errs.Msg("request body must be UTF-8 text"))
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeError(op, err)
	}
	if err := dec.Decode(&struct{}{}); !errors.Is(err, io.EOF) {
		return errs.E(op, errs.BadRequest, errs.Msg("request body must hold a single JSON object"))
	}
	return nil
}

func decodeError(op string, err error) error {
	var (
		syntax  *json.SyntaxError
		typeErr *json.UnmarshalTypeError
		maxErr  *http.MaxBytesError
	)
	switch {
	case errors.As(err, &maxErr):
		return errs.E(op, errs.TooLarge, errs.Msg("request body is larger than %d bytes", maxErr.Limit), err)
	case errors.Is(err, io.EOF):
		return errs.E(op, errs.BadRequest, errs.Msg("request body is empty"), err)
	case errors.As(err, &syntax), errors.Is(err, io.ErrUnexpectedEOF):
		return errs.E(op, errs.BadRequest, errs.Msg("request body is not valid JSON"), err)
	case errors.As(err, &typeErr):
		return errs.E(op, errs.BadRequest, errs.Msg("field %q must be of type %s", typeErr.Field, typeErr.Type), err)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return errs.E(op, errs.BadRequest, errs.Msg("unknown field %s", strings.TrimPrefix(err.Error(), "json: unknown field ")), err)
	}
	return errs.E(op, errs.BadRequest, errs.Msg("request body could not be read"), err)
}

// WriteJSON writes v as JSON with the given status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if v != nil {
		_ = json.NewEncoder(w).Encode(v)
	}
}

// Handler is an http handler that returns an error; a non-nil error is
// written as problem+json.
type Handler func(w http.ResponseWriter, r *http.Request) error

// ServeHTTP runs h and writes its error, if any, as a problem.
func (h Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	NoteRoute(r) // the pattern that chose h, for Middleware's metrics
	if err := h(w, r); err != nil {
		LogError(r, err)
		errs.WriteProblem(w, r, err)
	}
}

// NotFound answers every request with a 404 problem.
func NotFound(w http.ResponseWriter, r *http.Request) {
	errs.WriteProblem(w, r, errs.E(errs.NotFound, errs.Msg("no such resource: %s %s", r.Method, r.URL.Path)))
}

// Required returns an Invalid error naming the missing fields, or nil.
func Required(op string, fields map[string]string) error {
	var missing []string
	for name, v := range fields {
		if strings.TrimSpace(v) == "" {
			missing = append(missing, name)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	sortStrings(missing)
	return errs.E(op, errs.Invalid, errs.Msg("missing required field(s): %s", strings.Join(missing, ", ")))
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}
