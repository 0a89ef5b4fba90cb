package httpx

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/globomantics/globomantics/internal/platform/consistency"
	"github.com/globomantics/globomantics/internal/platform/errs"
)

// Client calls one service's REST API on any of its instances. Calls are
// spread round-robin. Any call whose connection is refused is sent to the
// next instance (the request never left); an idempotent call (GET, PUT,
// DELETE, or any call made with an Idempotency-Key) is also retried on the
// next instance after any other transport failure or a 502/503/504. Each
// instance is tried at most once per call.
type Client struct {
	service string
	bases   []string
	hc      *http.Client
	token   string
	next    atomic.Uint64
}

// NewClient returns a client of service on the given base URLs
// (e.g. "http://10.0.0.5:8080"). It panics if bases is empty: configuration
// validation must catch that first.
func NewClient(service string, bases []string, hc *http.Client, opts ...ClientOption) *Client {
	if len(bases) == 0 {
		panic("httpx.NewClient: no base URLs for " + service)
	}
	if hc == nil {
		hc = &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     90 * time.Second,
		}}
	}
	cl := make([]string, len(bases))
	for i, b := range bases {
		cl[i] = strings.TrimRight(b, "/")
	}
	c := &Client{service: service, bases: cl, hc: hc}
	for _, o := range opts {
		o(c)
	}
	return c
}

// ClientOption adjusts a Client.
type ClientOption func(*Client)

// WithToken makes the client present token as a bearer credential, which
// services check with RequireToken.
func WithToken(token string) ClientOption {
	return func(c *Client) { c.token = token }
}

// Call sends in as JSON (unless nil) to path and decodes a 2xx JSON answer
// into out (unless nil). Non-2xx answers become errors of the matching kind.
func (c *Client) Call(ctx context.Context, method, path string, in, out any) error {
	return c.CallHeader(ctx, method, path, nil, in, out)
}

// CallHeader is Call with extra request headers.
func (c *Client) CallHeader(ctx context.Context, method, path string, hdr http.Header, in, out any) error {
	op := c.service + " " + method + " " + path
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return errs.E(op, err)
		}
	}
	idempotent := method == http.MethodGet || method == http.MethodPut || method == http.MethodDelete || hdr.Get("Idempotency-Key") != ""
	start := c.next.Add(1)
	var lastErr error
	for i := 0; i < len(c.bases); i++ {
		base := c.bases[(start+uint64(i))%uint64(len(c.bases))]
		status, respBody, retryAfter, err := c.do(ctx, method, base+path, hdr, body)
		if err != nil {
			if ctx.Err() != nil {
				return errs.E(op, errs.Unavailable, ctx.Err())
			}
			lastErr = errs.E(op, errs.Unavailable, errs.Msg("%s service is unavailable", c.service), err)
			// A refused connection never delivered the request, so even a
			// non-idempotent call is safe to send to the next instance.
			if idempotent || isDialError(err) {
				continue
			}
			return lastErr
		}
		if status >= 200 && status < 300 {
			if out != nil && len(respBody) > 0 {
				if err := json.Unmarshal(respBody, out); err != nil {
					return errs.E(op, fmt.Errorf("decoding response: %w", err))
				}
			}
			return nil
		}
		lastErr = errs.FromProblem(op, status, respBody)
		if retryAfter > 0 {
			// The peer's hint travels on to our caller (a service with no
			// primary says when to try again).
			lastErr = errs.E(op, errs.KindOf(lastErr), errs.RetryAfter(retryAfter), lastErr)
		}
		if idempotent && (status == http.StatusBadGateway || status == http.StatusServiceUnavailable || status == http.StatusGatewayTimeout) {
			continue
		}
		return lastErr
	}
	return lastErr
}

// do sends one request and returns the status, the body and the
// Retry-After hint of the answer (0 when absent or not in seconds).
func (c *Client) do(ctx context.Context, method, u string, hdr http.Header, body []byte) (int, []byte, time.Duration, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return 0, nil, 0, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	tok := consistency.TokenFrom(ctx)
	if tok.Empty() {
		req.Header.Set(consistency.Header, emptyToken)
	} else {
		req.Header.Set(consistency.Header, tok.String())
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, nil, 0, err
	}
	defer resp.Body.Close()
	if v := resp.Header.Get(consistency.Header); v != "" && tok != nil {
		// The positions of the writes the call made: later reads by this
		// caller, here or at another service, must see them.
		if got, err := consistency.Parse(v); err == nil {
			tok.Merge(got)
		}
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return 0, nil, 0, err
	}
	var ra time.Duration
	if v := resp.Header.Get("Retry-After"); v != "" {
		if n, err := strconv.Atoi(v); err == nil && n > 0 && n < 3600 {
			ra = time.Duration(n) * time.Second
		}
	}
	return resp.StatusCode, b, ra, nil
}

// Path joins escaped path segments onto a prefix: Path("/v1/products", id).
func Path(prefix string, segs ...string) string {
	var b strings.Builder
	b.WriteString(prefix)
	for _, s := range segs {
		b.WriteByte('/')
		b.WriteString(url.PathEscape(s))
	}
	return b.String()
}

// isDialError reports whether err happened while connecting, before any of
// the request was sent.
func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}
