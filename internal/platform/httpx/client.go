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
	"github.com/globomantics/globomantics/internal/platform/retry"
)

// Client calls one service's REST API on any of its instances, under the
// shop's one call policy:
//
//   - Calls are spread round-robin over the instances; a call sent again
//     goes to another instance than the one that just failed.
//   - Each try has its own timeout (WithTryTimeout, 5 s by default),
//     bounded by ctx's deadline, and sends the time it has left in the
//     DeadlineHeader, so that the callee (see Middleware) never works
//     longer than its caller waits.
//   - A retryable call (GET, HEAD, PUT, DELETE, or one marked Retryable or
//     sent with an IdempotencyKey) that failed in transport, timed out, or
//     was answered 502, 503 or 504 is tried again, up to the policy's Tries
//     (WithPolicy, retry.Default by default), after a jittered backoff
//     stretched by the peer's Retry-After up to the policy's Max.
//   - Retries are paid from the client's retry budget (WithRetryBudget):
//     when it is spent the call fails with its last error instead, so that
//     retries never multiply the load on a failing service.
//   - A call whose connection was refused (or not made within DialTimeout)
//     never left, so it is sent to the next instance at once, retryable or
//     not, free of budget and waits; each instance refuses it at most once.
//   - An instance whose connection failed, or that did not answer within
//     the try timeout, is skipped by later calls for a second, doubling
//     with each failure in a row up to 30 s, while another instance is
//     left; its next answer ends that.
type Client struct {
	service    string
	res        Resolver
	hc         *http.Client
	token      string
	next       atomic.Uint64
	policy     retry.Policy
	tryTimeout time.Duration
	budget     *retry.Budget
	eject      ejector
	ob         *clientObs // WithObs: spans and metrics of tries; nil without
}

// DefaultTryTimeout is how long one try of a call may take when the client
// is not given WithTryTimeout: long enough for any request a service
// answers at once, short enough that a hung instance costs a call well
// under the 15 s its caller's HTTP client would wait.
const DefaultTryTimeout = 5 * time.Second

// NewClient returns a client of service on the given base URLs
// (e.g. "http://10.0.0.5:8080"). It panics if bases is empty: configuration
// validation must catch that first.
func NewClient(service string, bases []string, hc *http.Client, opts ...ClientOption) *Client {
	if len(bases) == 0 {
		panic("httpx.NewClient: no base URLs for " + service)
	}
	return NewClientFor(service, Static(bases), hc, opts...)
}

// NewClientFor returns a client of service on the instances res gives at
// the time of each call (a call finding none fails with errs.Unavailable).
// hc nil is a client with tuned keep-alives and a 15 s overall timeout.
func NewClientFor(service string, res Resolver, hc *http.Client, opts ...ClientOption) *Client {
	if hc == nil {
		hc = &http.Client{Timeout: 15 * time.Second, Transport: NewTransport()}
	}
	c := &Client{service: service, res: res, hc: hc, policy: retry.Default, tryTimeout: DefaultTryTimeout}
	for _, o := range opts {
		o(c)
	}
	if c.budget == nil {
		c.budget = retry.NewBudget(retry.DefaultRatio, retry.DefaultPerSecond)
	}
	return c
}

// endpoints returns the instances to call now, without trailing slashes.
func (c *Client) endpoints() []string {
	eps := c.res.Endpoints()
	out := make([]string, 0, len(eps))
	for _, b := range eps {
		if b = strings.TrimRight(b, "/"); b != "" {
			out = append(out, b)
		}
	}
	return out
}

// ClientOption adjusts a Client.
type ClientOption func(*Client)

// WithToken makes the client present token as a bearer credential, which
// services check with RequireToken.
func WithToken(token string) ClientOption {
	return func(c *Client) { c.token = token }
}

// WithPolicy sets how often and how patiently a retryable call is tried
// (retry.Default when not given). Tries below 1 count as retry.Default's.
func WithPolicy(p retry.Policy) ClientOption {
	return func(c *Client) {
		if p.Tries < 1 {
			p.Tries = retry.Default.Tries
		}
		c.policy = p
	}
}

// WithTryTimeout sets how long one try of a call may take (DefaultTryTimeout
// when not given); the caller's ctx deadline still bounds it. Zero or less
// leaves only the ctx deadline (and the http.Client's Timeout).
func WithTryTimeout(d time.Duration) ClientOption {
	return func(c *Client) { c.tryTimeout = d }
}

// WithRetryBudget sets the client's retry budget: ratio retries per call
// made plus perSecond retries a second (see retry.Budget; by default
// retry.DefaultRatio and retry.DefaultPerSecond).
func WithRetryBudget(ratio, perSecond float64) ClientOption {
	return func(c *Client) { c.budget = retry.NewBudget(ratio, perSecond) }
}

// CallOption adjusts one call: whether it may be sent again, and its
// headers.
type CallOption func(*call)

type call struct {
	retryable bool
	hdr       http.Header
}

// Retryable marks a call that may be sent again after a failure that leaves
// its outcome unknown: the server applies it at most once (it is keyed by an
// id it has seen before) or it changes nothing. GET, HEAD, PUT and DELETE
// are retryable by their HTTP semantics; a POST is retried only when marked.
func Retryable() CallOption { return func(c *call) { c.retryable = true } }

// WithHeader adds a request header to the call.
func WithHeader(key, value string) CallOption {
	return func(c *call) {
		if c.hdr == nil {
			c.hdr = http.Header{}
		}
		c.hdr.Set(key, value)
	}
}

// IdempotencyKey sends key as the Idempotency-Key header, by which the
// server applies the call at most once, and so marks the call Retryable.
func IdempotencyKey(key string) CallOption {
	return func(c *call) {
		WithHeader("Idempotency-Key", key)(c)
		c.retryable = true
	}
}

// DeadlineHeader carries, from a Client to the Middleware of the service
// it calls, how many milliseconds the caller still waits for the answer.
const DeadlineHeader = "Globo-Deadline-Ms"

// Call sends in as JSON (unless nil) to path and decodes a 2xx JSON answer
// into out (unless nil). Non-2xx answers become errors of the matching kind
// (a peer's Retry-After hint kept, see errs.RetryAfterOf); transport
// failures, timeouts and a cancelled ctx are errs.Unavailable. Whether and
// where a failed call is sent again is the client's one call policy (see
// Client), and only calls that are retryable (see Retryable) are sent again
// after they may have reached the server.
func (c *Client) Call(ctx context.Context, method, path string, in, out any, opts ...CallOption) error {
	var cl call
	for _, o := range opts {
		o(&cl)
	}
	op := c.service + " " + method + " " + path
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return errs.E(op, err)
		}
	}
	retryable := cl.retryable || method == http.MethodGet || method == http.MethodHead || method == http.MethodPut || method == http.MethodDelete
	tries := 1
	if retryable {
		tries = max(c.policy.Tries, 1)
	}
	bases := c.endpoints()
	if len(bases) == 0 {
		return errs.E(op, errs.Unavailable, errs.Msg("%s service has no instance", c.service))
	}
	c.budget.Deposit()
	n := uint64(len(bases))
	idx := c.eject.pick(bases, c.next.Add(1)%n, nil)
	var refused []bool // instances that refused this call's connection
	var lastErr error
	for try := 1; ; try++ {
		status, respBody, retryAfter, err := c.try(ctx, method, bases[idx]+path, cl.hdr, body)
		again := false // a failure after which the call may be sent again
		if err != nil {
			if ctx.Err() != nil {
				return errs.E(op, errs.Unavailable, ctx.Err())
			}
			lastErr = errs.E(op, errs.Unavailable, errs.Msg("%s service is unavailable", c.service), err)
			dial := isDialError(err)
			if dial || errors.Is(err, errTryTimeout) {
				c.eject.failed(bases[idx])
			}
			if dial {
				// A refused connection never delivered the request, so even
				// a non-retryable call is safe to send to the next instance,
				// and doing so costs the peers nothing: no budget, no wait.
				if refused == nil {
					refused = make([]bool, n)
				}
				first := !refused[idx]
				refused[idx] = true
				if j, ok := nextUnrefused(refused, idx); ok && first {
					idx = j
					try--
					continue
				}
			}
			again = true
		} else {
			c.eject.answered(bases[idx])
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
			again = status == http.StatusBadGateway || status == http.StatusServiceUnavailable || status == http.StatusGatewayTimeout
		}
		if !again || !retryable || try >= tries {
			return lastErr
		}
		wait := c.policy.Delay(try, lastErr)
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			return lastErr // the caller would be gone before the retry
		}
		if !c.budget.Withdraw() || !retry.Sleep(ctx, wait) {
			return lastErr
		}
		c.ob.retried()
		// Round robin on from the instance that failed, skipping those
		// that refused the call when others are left.
		failed := idx
		from, skip := (failed+1)%n, func(j uint64) bool { return j == failed && n > 1 }
		if refused != nil {
			if j, ok := nextUnrefused(refused, failed); ok {
				from, skip = j, func(j uint64) bool { return refused[j] || (j == failed && n > 1) }
			}
		}
		idx = c.eject.pick(bases, from, skip)
	}
}

// nextUnrefused returns the first instance after i that has not refused
// the call, and false when every other instance has.
func nextUnrefused(refused []bool, i uint64) (uint64, bool) {
	n := uint64(len(refused))
	for k := uint64(1); k < n; k++ {
		if j := (i + k) % n; !refused[j] {
			return j, true
		}
	}
	return 0, false
}

// try sends one try of a call under the client's try timeout, telling the
// callee how long it has in the DeadlineHeader.
func (c *Client) try(ctx context.Context, method, u string, hdr http.Header, body []byte) (int, []byte, time.Duration, error) {
	tctx := ctx
	if c.tryTimeout > 0 {
		var cancel context.CancelFunc
		tctx, cancel = context.WithTimeout(ctx, c.tryTimeout)
		defer cancel()
	}
	tctx, end := c.ob.startTry(tctx, method, u)
	status, b, ra, err := c.do(tctx, method, u, hdr, body)
	end(status, err)
	if err != nil && ctx.Err() == nil && tctx.Err() != nil {
		err = fmt.Errorf("%w of %v: %w", errTryTimeout, c.tryTimeout, err)
	}
	return status, b, ra, err
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
	injectHeaders(ctx, req.Header) // request id, traceparent (observe.go)
	if dl, ok := ctx.Deadline(); ok {
		req.Header.Set(DeadlineHeader, strconv.FormatInt(max(time.Until(dl).Milliseconds(), 1), 10))
	}
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

// errTryTimeout marks a try that got no answer within the try timeout.
var errTryTimeout = errors.New("no answer within the try timeout")

// isDialError reports whether err happened while connecting, before any of
// the request was sent.
func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}
