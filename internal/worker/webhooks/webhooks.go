// Package webhooks is the worker that delivers partner webhooks. It takes
// WebhookRequested jobs (subject globo_jobs.webhook, on the work-queue
// stream GLOBO_JOBS: each job goes to one worker, however many run, and a
// job whose worker died unacknowledged is offered to another), loads the
// delivery from the partner service, POSTs its body, signed, to the
// partner's URL, and records the attempt with the partner service, which
// decides what happens next:
//
//   - 2xx: delivered, the job is done;
//   - 4xx (but 408 and 429): refused, the job is done (not retried, not a
//     dead letter);
//   - no answer within Timeout, a connection error, 408, 429 or 5xx: the
//     handler fails, so the bus offers the job again after its back-off
//     delay, until the partner service's attempt limit makes the delivery
//     failed (then the job is done).
//
// A job whose delivery is no longer pending (a redelivery after the attempt
// was recorded) sends nothing. Delivery is at least once: a worker killed
// after the POST and before recording it sends the delivery again, with the
// same Globo-Webhook-Id, by which receivers de-duplicate.
package webhooks

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"syscall"
	"time"

	"github.com/globomantics/globomantics/internal/partner"
	"github.com/globomantics/globomantics/internal/platform/bus"
	"github.com/globomantics/globomantics/internal/platform/clock"
	"github.com/globomantics/globomantics/internal/platform/errs"
)

// Subjects the worker consumes.
var Subjects = []string{partner.SubjectWebhookJob}

// ConsumerName is the durable consumer every worker shares.
const ConsumerName = partner.WorkerConsumerName

// Timeout bounds one POST of a webhook, from dialling to the answer's
// status; the body of the answer is not waited for.
const Timeout = 10 * time.Second

// UserAgent is sent with every webhook.
const UserAgent = "Globomantics-Webhooks/1"

// Deliveries is what the worker needs of the partner service; partner.API
// (the in-process service and the HTTP client) satisfies it.
type Deliveries interface {
	Dispatch(ctx context.Context, deliveryID string) (partner.Dispatch, error)
	RecordAttempt(ctx context.Context, deliveryID string, a partner.Attempt) (partner.Delivery, error)
}

var _ Deliveries = partner.API(nil)

// Worker delivers webhooks.
type Worker struct {
	api     Deliveries
	hc      *http.Client
	clock   clock.Clock
	log     *slog.Logger
	timeout time.Duration
}

// Option adjusts a Worker.
type Option func(*Worker)

// WithHTTPClient sets the client webhooks are POSTed with (its Timeout is
// replaced by the worker's).
func WithHTTPClient(hc *http.Client) Option { return func(w *Worker) { w.hc = hc } }

// WithTimeout sets how long one POST may take (d > 0; Timeout by default).
func WithTimeout(d time.Duration) Option {
	return func(w *Worker) {
		if d > 0 {
			w.timeout = d
		}
	}
}

// New returns a worker over the partner service api; clk stamps the
// signatures, log may be nil.
func New(api Deliveries, clk clock.Clock, log *slog.Logger, opts ...Option) *Worker {
	if log == nil {
		log = slog.Default()
	}
	w := &Worker{api: api, clock: clk, log: log, timeout: Timeout}
	for _, o := range opts {
		o(w)
	}
	if w.hc == nil {
		// Webhook URLs are the partners': redirects are not followed
		// (a 3xx is a failed attempt), idle connections are kept short,
		// and link-local, multicast and unspecified addresses (a cloud's
		// metadata service at 169.254.169.254, say) are never dialled,
		// whatever the name resolves to.
		d := &net.Dialer{Timeout: 5 * time.Second, Control: refuseSpecial}
		w.hc = &http.Client{
			Transport: &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 4, IdleConnTimeout: 30 * time.Second},
		}
	}
	hc := *w.hc
	hc.Timeout = w.timeout
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	w.hc = &hc
	return w
}

// ErrRetry is returned (wrapped) by Handle when the delivery stays pending:
// the bus offers the job again after its back-off delay.
var ErrRetry = errs.E(errs.Unavailable, errs.Msg("webhook not delivered yet; retrying"))

// Handle is the bus handler of Subjects: it makes one attempt at the job's
// delivery (see the package comment).
func (w *Worker) Handle(ctx context.Context, ev bus.Event) error {
	const op = "webhooks.Handle"
	var job partner.WebhookRequested
	if err := ev.Decode(&job); err != nil || job.DeliveryID == "" {
		return bus.Permanent(errs.E(op, errs.Invalid, errs.Msg("undecodable job %s: %v", ev.ID, err)))
	}
	d, err := w.api.Dispatch(ctx, job.DeliveryID)
	if errs.Is(errs.NotFound, err) {
		return bus.Permanent(errs.E(op, errs.Invalid, errs.Msg("no delivery %s", job.DeliveryID), err))
	}
	if err != nil {
		return errs.E(op, err) // the partner service is unreachable: again later
	}
	if d.Delivery.Status != partner.StatusPending {
		return nil // done by an earlier attempt: nothing twice
	}
	log := w.log.With("delivery", d.Delivery.ID, "partner", d.Delivery.PartnerID, "event", d.Delivery.EventType)
	a := w.attempt(ctx, d)
	rec, err := w.api.RecordAttempt(ctx, d.Delivery.ID, a)
	if err != nil {
		// The attempt was made but not recorded: the job is offered again
		// and the receiver may get the webhook twice (same id).
		return errs.E(op, err)
	}
	switch rec.Status {
	case partner.StatusPending:
		log.Info("webhook not delivered; will retry", "attempt", rec.Attempts, "status", a.StatusCode, "err", a.Error, "next", rec.NextAttemptAt)
		return fmt.Errorf("%w (attempt %d: %s)", ErrRetry, rec.Attempts, outcome(a))
	case partner.StatusFailed:
		log.Warn("webhook failed for good", "attempts", rec.Attempts, "status", a.StatusCode, "err", a.Error)
	case partner.StatusRefused:
		log.Warn("webhook refused by the receiver", "status", a.StatusCode)
	default:
		log.Debug("webhook delivered", "status", a.StatusCode, "took", a.Duration)
	}
	return nil
}

func outcome(a partner.Attempt) string {
	if a.Error != "" {
		return a.Error
	}
	return "HTTP " + strconv.Itoa(a.StatusCode)
}

// attempt POSTs the delivery once, signed, and reports how it went.
func (w *Worker) attempt(ctx context.Context, d partner.Dispatch) partner.Attempt {
	start := time.Now()
	a := w.post(ctx, d)
	a.Duration = time.Since(start)
	return a
}

func (w *Worker) post(ctx context.Context, d partner.Dispatch) partner.Attempt {
	if d.URL == "" {
		return partner.Attempt{Error: "the partner has no webhook URL"}
	}
	body := []byte(d.Delivery.Payload)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.URL, bytes.NewReader(body))
	if err != nil {
		return partner.Attempt{Error: "bad webhook URL: " + err.Error()}
	}
	ts := w.clock.Now().Unix()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", UserAgent)
	req.Header.Set(partner.HeaderID, d.Delivery.ID)
	req.Header.Set(partner.HeaderTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(partner.HeaderSignature, partner.Sign(d.Secret, ts, body))
	resp, err := w.hc.Do(req)
	if err != nil {
		return partner.Attempt{Error: describe(err)}
	}
	// A little of the answer is read so the connection can be reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	return partner.Attempt{StatusCode: resp.StatusCode}
}

// describe is a transport error's message for the delivery log: the kind of
// failure, not the Go error chain.
func describe(err error) string {
	if ue, ok := err.(interface{ Timeout() bool }); ok && ue.Timeout() {
		return "timed out"
	}
	return err.Error()
}

// refuseSpecial is the dialer's check of the address a webhook connects
// to, after name resolution: link-local, multicast and unspecified
// addresses are refused.
func refuseSpecial(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return err
	}
	a := ap.Addr().Unmap()
	if a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() || a.IsInterfaceLocalMulticast() || a.IsMulticast() || a.IsUnspecified() {
		return fmt.Errorf("webhook address %s is not allowed", a)
	}
	return nil
}
