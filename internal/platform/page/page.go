// Package page implements keyset pagination with opaque page tokens.
//
// A token names the list it belongs to (the list, its order and its scope,
// such as "orders/newest/usr_1") and holds the sort key of the last item of
// the page before, so the next page starts right after that item however many
// rows were inserted or deleted meanwhile, and however the rows are spread
// over shards. Tokens are versioned JSON in unpadded base64url; they are
// opaque to clients, who must not build or edit them.
package page

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strconv"

	"github.com/globomantics/globomantics/internal/platform/errs"
)

// Default and maximum page sizes.
const (
	DefaultSize = 20
	MaxSize     = 100
)

// version is the format of the tokens this code writes and reads.
const version = 1

// Request is a page request: at most Size items after the position that
// Token encodes ("" for the first page). A zero Size means DefaultSize.
type Request struct {
	Size  int
	Token string
}

// token is what a page token encodes.
type token struct {
	V int      `json:"v"`
	L string   `json:"l"`
	K []string `json:"k"`
}

// Parse validates a page_size and page_token pair from a query string. An
// empty size means DefaultSize; a size outside 1..MaxSize, or a token that is
// not one of ours (not base64url, another version, no key), is an
// errs.BadRequest error. Whether the token belongs to the list asked for is
// checked by After.
func Parse(size, tok string) (Request, error) {
	const op = "page.Parse"
	r := Request{Size: DefaultSize}
	if size != "" {
		n, err := strconv.Atoi(size)
		if err != nil || n < 1 || n > MaxSize {
			return Request{}, errs.E(op, errs.BadRequest, errs.Msg("page_size must be an integer from 1 to %d", MaxSize))
		}
		r.Size = n
	}
	if tok != "" {
		if _, err := decode(tok); err != nil {
			return Request{}, BadToken(op)
		}
		r.Token = tok
	}
	return r, nil
}

// CheckSize returns r with a zero Size made DefaultSize; errs.BadRequest for
// a size below zero or over MaxSize.
func (r Request) CheckSize(op string) (Request, error) {
	switch {
	case r.Size == 0:
		r.Size = DefaultSize
	case r.Size < 0 || r.Size > MaxSize:
		return Request{}, errs.E(op, errs.BadRequest, errs.Msg("page_size must be an integer from 1 to %d", MaxSize))
	}
	return r, nil
}

// After returns the sort key that r.Token holds for list, of n parts; nil for
// the first page. A token that is malformed, of another version, of another
// list (or order or scope) or whose key has not n parts is an errs.BadRequest
// error whose detail says so.
func (r Request) After(list string, n int) ([]string, error) {
	const op = "page.After"
	if r.Token == "" {
		return nil, nil
	}
	t, err := decode(r.Token)
	if err != nil {
		return nil, BadToken(op)
	}
	if t.L != list {
		return nil, errs.E(op, errs.BadRequest, errs.Msg("page_token belongs to another list; start again from the first page"))
	}
	if len(t.K) != n {
		return nil, BadToken(op)
	}
	return t.K, nil
}

// Token returns the opaque token of the page of list that starts after the
// item whose sort key is key.
func Token(list string, key ...string) string {
	b, err := json.Marshal(token{V: version, L: list, K: key})
	if err != nil {
		panic(err) // strings always marshal
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// Next returns the token of the page after a page of r.Size items of list
// when n items were fetched (asked for as r.Size+1), "" when n shows there is
// no next page. key is called, only if there is one, for the sort key of the
// page's last item.
func (r Request) Next(list string, n int, key func() []string) string {
	if n <= r.Size {
		return ""
	}
	return Token(list, key()...)
}

// BadToken is the errs.BadRequest error of a page token that is not valid.
func BadToken(op string) error {
	return errs.E(op, errs.BadRequest, errs.Msg("page_token is not valid"))
}

func decode(s string) (token, error) {
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil {
		return token{}, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var t token
	if err := dec.Decode(&t); err != nil {
		return token{}, err
	}
	if dec.More() || t.V != version || t.L == "" || len(t.K) == 0 {
		return token{}, strconv.ErrSyntax
	}
	return t, nil
}
