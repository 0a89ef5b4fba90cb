package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Two ways of consuming, chosen by what the consumer is:
//
//   - Pull (Subscribe): workers sharing a load. The instances of a worker
//     share one durable consumer and each asks the broker for one message
//     when it is free, so the backlog goes to whoever has time and a busy
//     instance holds nothing it cannot work on. The thumbnail, mail and
//     webhooks workers (jobs), the search indexers and the analytics
//     consumer.
//   - Push (React): a service reacting to events. Each instance has a
//     durable consumer of its own, which the broker pushes every event to
//     as it is stored, with flow control and explicit acks: nothing to ask
//     for, and nothing shared. The catalog's cache invalidation (every
//     catalog instance forgets a product on its ProductChanged).
//
// Both get the same handling of failures: redelivery with back-off, dead
// letters, replays (see Handler and dlq.go).

// reactDeliverPrefix prefixes the subject a push consumer's messages are
// delivered on, outside every stream's subjects (nothing delivered is
// stored again): _GLOBO.REACT.<consumer>.
const reactDeliverPrefix = "_GLOBO.REACT."

// reactMaxAckPending bounds the messages the broker pushes to a reacting
// instance before they are acked: the handler runs one at a time, and a
// message waiting behind too many others would pass its ack wait.
const reactMaxAckPending = 64

// reactHeartbeat is how often an idle push consumer tells its subscriber
// that it is still there (flow control needs it).
const reactHeartbeat = 5 * time.Second

// React delivers every message on the subjects to h, pushed by the broker
// through the durable consumer name as soon as it is stored, until Close.
// Unlike Subscribe, the consumer is this instance's own: name must be
// unique per instance (every instance sees every message), and no other
// process may react with it. Failures are handled as Subscribe handles them
// (redelivery with back-off, then the dead letters), and the consumer takes
// replays of its dead letters. Use ForgetAfter so that the broker deletes
// the consumers of instances gone for good, and FromNow when the instance
// has no use for messages stored before its consumer was first made.
// Not for a work-queue stream, whose jobs go to one worker each: Subscribe.
func (b *Bus) React(ctx context.Context, name string, subjects []string, h Handler, opts ...SubOption) error {
	so := b.newSubOptions(opts)
	spec := streamSpecOf(subjects)
	if spec.WorkQueue {
		return fmt.Errorf("bus: consumer %s: stream %s is a work queue: its jobs are taken by workers (Subscribe), not reacted to", name, spec.Name)
	}
	redeliver := redeliveryPrefix(spec)
	cons, err := b.js.CreateOrUpdatePushConsumer(ctx, spec.Name, jetstream.ConsumerConfig{
		Durable:           name,
		DeliverSubject:    reactDeliverPrefix + name,
		InactiveThreshold: so.inactive,
		FilterSubjects:    withRedelivery(redeliver, name, subjects),
		AckPolicy:         jetstream.AckExplicitPolicy,
		DeliverPolicy:     so.deliver,
		AckWait:           so.ackWait,
		// As for Subscribe: the handler's side counts the deliveries.
		MaxDeliver:    -1,
		MaxAckPending: reactMaxAckPending,
		FlowControl:   true,
		IdleHeartbeat: reactHeartbeat,
	})
	if err != nil {
		return fmt.Errorf("bus: push consumer %s: %w", name, err)
	}
	b.obs.track(spec.Name, name, cons)
	log := b.log.With("consumer", name)
	cc, err := cons.Consume(b.handler(log, name, redeliver, so, h), jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		log.Warn("push consumer", "err", err)
	}))
	if err != nil {
		return fmt.Errorf("bus: consume %s: %w", name, err)
	}
	b.mu.Lock()
	b.subs = append(b.subs, cc)
	b.mu.Unlock()
	return nil
}

// FromNow makes a new consumer start with the messages stored after it is
// made, not the stream's oldest: for a consumer that only needs to hear of
// changes from now on (a cache that starts empty). A consumer that exists
// resumes where it was.
func FromNow() SubOption { return func(o *subOptions) { o.deliver = jetstream.DeliverNewPolicy } }

// retireCheckEvery is how often a retiring subscription looks whether its
// consumer has anything left.
const retireCheckEvery = 10 * time.Second

// Retire makes a subscription finish the backlog of a durable consumer that
// an older version used and this one replaced (by jobs, say): Subscribe
// does nothing when the consumer does not exist (a new deployment) and never
// creates it; otherwise it handles the consumer's messages of changes made
// before before (Event.Time), acks later ones unhandled (the newer version
// that made them took care of them otherwise), and deletes the consumer once
// nothing is left in it. Upgrade the producers no later than the consumers.
func Retire(before time.Time) SubOption {
	return func(o *subOptions) { o.retire, o.before = true, before }
}

// retireWhenDone deletes the retiring consumer name once it has nothing
// pending or unacknowledged, and stops cc; or stops cc when another instance
// deleted it first.
func (b *Bus) retireWhenDone(log *slog.Logger, stream, name string, cons jetstream.Consumer, cc jetstream.ConsumeContext, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-cc.Closed():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		info, err := cons.Info(ctx)
		if err == nil && info.NumPending == 0 && info.NumAckPending == 0 {
			err = b.js.DeleteConsumer(ctx, stream, name)
			if err == nil {
				log.Info("old consumer retired: its backlog is done")
			}
		}
		cancel()
		switch {
		case err == nil && info.NumPending+uint64(info.NumAckPending) > 0:
			continue
		case err == nil, errors.Is(err, jetstream.ErrConsumerNotFound):
			cc.Stop()
			return
		default:
			log.Warn("cannot check whether the old consumer is done; trying again", "err", err)
		}
	}
}
