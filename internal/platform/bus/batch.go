package bus

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/globomantics/globomantics/internal/platform/errs"
)

// Message headers the outbox sets on every message it publishes, besides
// Nats-Msg-Id (the event id, the broker's de-duplication key).
const (
	// HeaderOccurredAt is when the change the event records happened
	// (RFC 3339 with nanoseconds, UTC), not when it was published.
	HeaderOccurredAt = "Globo-Occurred-At"
	// HeaderTraceparent is the W3C trace context of the change, when known.
	HeaderTraceparent = "traceparent"
)

// Message is one event for PublishBatch: data already marshalled to JSON.
type Message struct {
	Subject     string
	ID          string // the de-duplication key (Nats-Msg-Id)
	Data        json.RawMessage
	OccurredAt  time.Time // zero: now
	Traceparent string    // W3C traceparent, or ""
}

// batchWait bounds PublishBatch's wait for acks when ctx has no deadline.
const batchWait = 10 * time.Second

// PublishBatch publishes msgs without waiting between them (JetStream
// asynchronous publish) and then waits for the broker's ack of every one,
// until ctx ends (10 s when ctx has no deadline). It returns one error per
// message, nil for a message the broker acknowledged (or dropped as a
// duplicate of one it already holds). A message that can never be published
// (data that is not JSON, larger than the broker accepts) fails with
// errs.Invalid; a broker that is unreachable or slow fails messages with
// errs.Unavailable.
func (b *Bus) PublishBatch(ctx context.Context, msgs []Message) []error {
	const op = "bus.PublishBatch"
	out := make([]error, len(msgs))
	if len(msgs) == 0 {
		return out
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, batchWait)
		defer cancel()
	}
	futures := make([]jetstream.PubAckFuture, len(msgs))
	ends := make([]func(error), len(msgs))
	for i, m := range msgs {
		at := m.OccurredAt
		if at.IsZero() {
			at = time.Now()
		}
		at = at.UTC()
		nm := nats.NewMsg(m.Subject)
		// The message's own trace context (the change's, from the outbox)
		// is the parent of its publish; ctx's span when it has none.
		parent := ctx
		if m.Traceparent != "" {
			parent = ContextWithTraceparent(ctx, m.Traceparent)
		}
		end := b.obs.startPublish(ctx, parent, m.Subject, m.ID, nm.Header)
		tp := nm.Header.Get(HeaderTraceparent)
		if tp == "" && m.Traceparent != "" {
			tp = m.Traceparent
			nm.Header.Set(HeaderTraceparent, tp)
		}
		env, err := json.Marshal(Event{ID: m.ID, Type: m.Subject, Time: at, Data: m.Data, Traceparent: tp})
		if err != nil {
			out[i] = errs.E(op, errs.Invalid, err)
			end(out[i])
			continue
		}
		nm.Data = env
		nm.Header.Set(HeaderOccurredAt, at.Format(time.RFC3339Nano))
		f, err := b.js.PublishMsgAsync(nm, jetstream.WithMsgID(m.ID))
		if err != nil {
			out[i] = publishErr(op, err)
			end(out[i])
			continue
		}
		futures[i], ends[i] = f, end
	}
	for i, f := range futures {
		if f == nil {
			continue
		}
		select {
		case <-f.Ok():
		case err := <-f.Err():
			out[i] = publishErr(op, err)
		case <-ctx.Done():
			out[i] = errs.E(op, errs.Unavailable, ctx.Err())
		}
		ends[i](out[i])
	}
	return out
}

// publishErr classifies a publish error: what the broker or the client
// refuses for the message itself is Invalid, anything else Unavailable.
func publishErr(op string, err error) error {
	if errors.Is(err, nats.ErrMaxPayload) || errors.Is(err, nats.ErrBadSubject) {
		return errs.E(op, errs.Invalid, err)
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.Code == 400 {
		return errs.E(op, errs.Invalid, err)
	}
	return errs.E(op, errs.Unavailable, err)
}

type traceparentKey struct{}

// WithTraceparent returns ctx carrying the W3C traceparent tp (the trace of
// the work that ctx belongs to), for the outbox to store with the events
// written under it and the bus to send as a header. An invalid tp is ignored.
func WithTraceparent(ctx context.Context, tp string) context.Context {
	if !ValidTraceparent(tp) {
		return ctx
	}
	return context.WithValue(ctx, traceparentKey{}, tp)
}

// TraceparentFrom is the traceparent WithTraceparent put in ctx, or "".
func TraceparentFrom(ctx context.Context) string {
	tp, _ := ctx.Value(traceparentKey{}).(string)
	return tp
}

// ValidTraceparent reports whether tp has the W3C traceparent form
// version-traceid-parentid-flags (2, 32, 16 and 2 lower-case hex digits),
// with non-zero trace and parent ids.
func ValidTraceparent(tp string) bool {
	parts := strings.Split(tp, "-")
	if len(parts) != 4 || len(parts[0]) != 2 || len(parts[1]) != 32 || len(parts[2]) != 16 || len(parts[3]) != 2 {
		return false
	}
	for _, p := range parts {
		for _, c := range p {
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
				return false
			}
		}
	}
	return parts[0] != "ff" && strings.Trim(parts[1], "0") != "" && strings.Trim(parts[2], "0") != ""
}
