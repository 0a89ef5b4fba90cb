// Package page implements list pagination with opaque page tokens.
package page

import (
	"encoding/base64"
	"strconv"
	"strings"

	"github.com/globomantics/globomantics/internal/platform/errs"
)

// Default and maximum page sizes.
const (
	DefaultSize = 20
	MaxSize     = 100
)

// Request is a validated page request: Size items after Offset.
type Request struct {
	Size   int
	Offset int
}

// Parse validates a page_size and page_token pair. An empty size means
// DefaultSize; a size outside 1..MaxSize or a token that is not one of ours is a
// BadRequest error.
func Parse(size, token string) (Request, error) {
	const op = "page.Parse"
	r := Request{Size: DefaultSize}
	if size != "" {
		n, err := strconv.Atoi(size)
		if err != nil || n < 1 || n > MaxSize {
			return Request{}, errs.E(op, errs.BadRequest, errs.Msg("page_size must be an integer from 1 to %d", MaxSize))
		}
		r.Size = n
	}
	if token != "" {
		off, err := decode(token)
		if err != nil {
			return Request{}, errs.E(op, errs.BadRequest, errs.Msg("page_token is not valid"))
		}
		r.Offset = off
	}
	return r, nil
}

// Token returns the opaque token of the page starting at offset.
func Token(offset int) string {
	return base64.RawURLEncoding.EncodeToString([]byte("o:" + strconv.Itoa(offset)))
}

// Next returns the token of the page after r, or "" when n (the number of items
// fetched, asked for as r.Size+1) shows there is no next page.
func (r Request) Next(n int) string {
	if n <= r.Size {
		return ""
	}
	return Token(r.Offset + r.Size)
}

func decode(tok string) (int, error) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return 0, err
	}
	s, ok := strings.CutPrefix(string(b), "o:")
	if !ok {
		return 0, strconv.ErrSyntax
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, strconv.ErrSyntax
	}
	return n, nil
}
