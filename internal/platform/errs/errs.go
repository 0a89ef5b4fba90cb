// Package errs is the one error type of Globomantics. An error carries the
// operation that failed, a Kind that decides the HTTP status, a message safe to
// show a client, and the underlying cause, which never reaches a client.
package errs

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Kind classifies an error; each kind maps to exactly one HTTP status.
type Kind uint8

// The kinds of error. Other (the zero value) is an internal error.
const (
	Other                Kind = iota // internal error: 500
	BadRequest                       // malformed request: 400
	Unauthorized                     // not logged in or bad credentials: 401
	Declined                         // payment declined: 402
	Forbidden                        // logged in, but not allowed: 403
	NotFound                         // no such thing: 404
	Conflict                         // state conflict (email taken, out of stock): 409
	TooLarge                         // body too large: 413
	Invalid                          // well-formed but invalid input: 422
	Unavailable                      // dependency down or transient failure, may be retried: 503
	UnsupportedMediaType             // a body of a type the endpoint does not take: 415
)

var kindInfo = map[Kind]struct {
	status int
	title  string
}{
	Other:                {http.StatusInternalServerError, "Internal Server Error"},
	BadRequest:           {http.StatusBadRequest, "Bad Request"},
	Unauthorized:         {http.StatusUnauthorized, "Unauthorized"},
	Declined:             {http.StatusPaymentRequired, "Payment Declined"},
	Forbidden:            {http.StatusForbidden, "Forbidden"},
	NotFound:             {http.StatusNotFound, "Not Found"},
	Conflict:             {http.StatusConflict, "Conflict"},
	TooLarge:             {http.StatusRequestEntityTooLarge, "Request Entity Too Large"},
	Invalid:              {http.StatusUnprocessableEntity, "Unprocessable Entity"},
	Unavailable:          {http.StatusServiceUnavailable, "Service Unavailable"},
	UnsupportedMediaType: {http.StatusUnsupportedMediaType, "Unsupported Media Type"},
}

// Status is the HTTP status code for the kind.
func (k Kind) Status() int { return kindInfo[k].status }

// Title is the short human-readable summary of the kind.
func (k Kind) Title() string { return kindInfo[k].title }

func (k Kind) String() string { return k.Title() }

// KindForStatus maps an HTTP status back to a Kind, so that errors survive a
// trip through a service's REST API.
func KindForStatus(status int) Kind {
	for k, info := range kindInfo {
		if info.status == status {
			return k
		}
	}
	switch {
	case status >= 500:
		return Unavailable
	case status >= 400:
		return BadRequest
	}
	return Other
}

// Error is the error type. Msg is shown to clients; Err is not.
type Error struct {
	Op   string // operation, e.g. "catalog.GetProduct"
	Kind Kind
	Msg  string // client-safe detail
	Err  error  // underlying cause, never shown to clients
	// Retry, when positive, is how long a client should wait before
	// retrying; WriteProblem sends it as the Retry-After header.
	Retry time.Duration
}

// E builds an *Error from its arguments: a string is the op, a Kind the kind,
// an error the cause. Use Msg for client-visible detail. With a cause of type
// *Error and no kind, the cause's kind and message are kept.
func E(args ...any) error {
	e := &Error{}
	for _, a := range args {
		switch a := a.(type) {
		case string:
			e.Op = a
		case Kind:
			e.Kind = a
		case message:
			e.Msg = string(a)
		case retryAfter:
			e.Retry = time.Duration(a)
		case error:
			e.Err = a
		case nil:
		default:
			panic(fmt.Sprintf("errs.E: bad argument %T", a))
		}
	}
	var inner *Error
	if errors.As(e.Err, &inner) {
		if e.Kind == Other {
			e.Kind = inner.Kind
		}
		if e.Msg == "" {
			e.Msg = inner.Msg
		}
	}
	return e
}

type message string

type retryAfter time.Duration

// RetryAfter marks, for E, how long a client should wait before retrying
// (sent as the Retry-After header by WriteProblem). It is meant for
// Unavailable errors; a zero or negative duration is no hint.
func RetryAfter(d time.Duration) retryAfter { return retryAfter(d) }

// RetryAfterOf is the retry hint of the outermost *Error in err's chain that
// carries one, or 0 when none does.
func RetryAfterOf(err error) time.Duration {
	for err != nil {
		var e *Error
		if !errors.As(err, &e) {
			return 0
		}
		if e.Retry > 0 {
			return e.Retry
		}
		err = e.Err
	}
	return 0
}

// Msg marks a client-visible detail message for E.
func Msg(format string, args ...any) message { return message(fmt.Sprintf(format, args...)) }

func (e *Error) Error() string {
	var b strings.Builder
	if e.Op != "" {
		b.WriteString(e.Op)
		b.WriteString(": ")
	}
	if e.Msg != "" {
		b.WriteString(e.Msg)
	} else {
		b.WriteString(e.Kind.Title())
	}
	if e.Err != nil {
		var inner *Error
		if !errors.As(e.Err, &inner) || inner.Msg != e.Msg || inner.Op != "" {
			b.WriteString(": ")
			b.WriteString(e.Err.Error())
		}
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// KindOf reports the kind of err: the kind of the outermost *Error that has one.
// An error with no kind of its own is Unavailable when it is a timeout or a
// cancellation (context deadline, a net timeout) or a database error of SQL
// state class 08 (connection exception) or 57 (operator intervention: query
// cancelled by statement_timeout, server shutting down), and Other otherwise.
func KindOf(err error) Kind {
	for err != nil {
		var e *Error
		if !errors.As(err, &e) {
			return classify(err)
		}
		if e.Kind != Other {
			return e.Kind
		}
		err = e.Err
	}
	return Other
}

// classify is the kind of an error that carries none.
func classify(err error) Kind {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return Unavailable
	}
	var st interface{ SQLState() string }
	if errors.As(err, &st) {
		if c := st.SQLState(); strings.HasPrefix(c, "08") || strings.HasPrefix(c, "57") {
			return Unavailable
		}
	}
	var to interface{ Timeout() bool }
	if errors.As(err, &to) && to.Timeout() {
		return Unavailable
	}
	return Other
}

// Is reports whether err is of kind k.
func Is(k Kind, err error) bool { return err != nil && KindOf(err) == k }

// Detail is the client-safe message of err: the first Msg found, or the kind's
// title. Internal causes are never included.
func Detail(err error) string {
	k := KindOf(err)
	for err != nil {
		var e *Error
		if !errors.As(err, &e) {
			break
		}
		if e.Msg != "" {
			return e.Msg
		}
		err = e.Err
	}
	return k.Title()
}

// Temporary reports whether the operation may succeed if retried.
func Temporary(err error) bool { return KindOf(err) == Unavailable }
