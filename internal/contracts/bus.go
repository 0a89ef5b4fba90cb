package contracts

import (
	"context"

	"github.com/globomantics/globomantics/internal/platform/bus"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/outbox"
)

// Handler returns a bus handler that checks each event's data against the
// contract of its subject (ev.Type) before h sees it. A payload that does
// not conform, or whose subject has no contract, never reaches h: the
// handler returns bus.Permanent of an errs.Invalid error saying why, so the
// bus sets the message aside as a dead letter at once, with the reason, and
// the consumer goes on with the next message.
func (r *Registry) Handler(h bus.Handler) bus.Handler {
	return func(ctx context.Context, ev bus.Event) error {
		if err := r.Validate(ev.Type, ev.Data); err != nil {
			return bus.Permanent(err)
		}
		return h(ctx, ev)
	}
}

// Publisher is an outbox.Publisher that publishes only messages that
// conform to their contracts.
type Publisher struct {
	reg  *Registry
	next outbox.Publisher
}

var _ outbox.Publisher = (*Publisher)(nil)

// Publisher wraps next (the bus) so that every message is checked against
// its subject's contract before it is published.
func (r *Registry) Publisher(next outbox.Publisher) *Publisher {
	return &Publisher{reg: r, next: next}
}

// PublishBatch publishes the messages that conform through the wrapped
// publisher, in their order, and reports for each message of msgs its
// outcome: the wrapped publisher's for those published, and errs.Invalid
// with the reason for those that do not conform (which the outbox relay
// parks at once, without holding back the others).
func (p *Publisher) PublishBatch(ctx context.Context, msgs []bus.Message) []error {
	out := make([]error, len(msgs))
	valid := make([]bus.Message, 0, len(msgs))
	index := make([]int, 0, len(msgs))
	for i, m := range msgs {
		if err := p.reg.Validate(m.Subject, m.Data); err != nil {
			out[i] = errs.E("contracts.PublishBatch", err)
			continue
		}
		valid = append(valid, m)
		index = append(index, i)
	}
	if len(valid) == 0 {
		return out
	}
	res := p.next.PublishBatch(ctx, valid)
	for j, i := range index {
		if j < len(res) {
			out[i] = res[j]
		} else {
			out[i] = errs.E("contracts.PublishBatch", errs.Unavailable, errs.Msg("the publisher gave no result for message %s", msgs[i].ID))
		}
	}
	return out
}
