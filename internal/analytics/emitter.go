package analytics

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/globomantics/globomantics/internal/platform/bus"
	"github.com/globomantics/globomantics/internal/platform/clock"
	"github.com/globomantics/globomantics/internal/platform/ids"
)

// Emitter publishes analytics events fire-and-forget: PageViewed and
// SearchMade put the event in a bounded queue and return at once, and one
// goroutine (Run) publishes the queue in order. When the queue is full (the
// broker is slow or down) the event is dropped and counted: analytics never
// adds latency to a page. It is safe for concurrent use.
type Emitter struct {
	pub     bus.Publisher
	clock   clock.Clock
	log     *slog.Logger
	queue   chan emitted
	timeout time.Duration

	queued, sent, dropped, failed atomic.Int64
}

type emitted struct {
	subject, id string
	data        any
}

// EmitterOptions tune an Emitter; zero values get the defaults.
type EmitterOptions struct {
	// Queue is how many events wait at most; 0 means 4096.
	Queue int
	// PublishTimeout bounds one publish (the broker's acknowledgement);
	// 0 means 2 s. An event whose publish fails is counted and dropped.
	PublishTimeout time.Duration
}

// NewEmitter returns an emitter publishing through pub (the bus); log may be
// nil. Nothing is published until Run runs.
func NewEmitter(pub bus.Publisher, clk clock.Clock, log *slog.Logger, o EmitterOptions) *Emitter {
	if o.Queue <= 0 {
		o.Queue = 4096
	}
	if o.PublishTimeout <= 0 {
		o.PublishTimeout = 2 * time.Second
	}
	if log == nil {
		log = slog.Default()
	}
	return &Emitter{pub: pub, clock: clk, log: log, queue: make(chan emitted, o.Queue), timeout: o.PublishTimeout}
}

// PageViewed records, without waiting, that the page of product productID
// was served.
func (e *Emitter) PageViewed(productID string) {
	if productID == "" {
		return
	}
	now := e.clock.Now()
	e.offer(emitted{SubjectPageViewed, ids.New("pv", now), PageViewed{ProductID: productID, ViewedAt: now}})
}

// SearchMade records, without waiting, a search for query (normalised here)
// whose first page showed results products.
func (e *Emitter) SearchMade(query string, results int) {
	q := NormalizeQuery(query)
	if q == "" {
		return
	}
	now := e.clock.Now()
	e.offer(emitted{SubjectSearchMade, ids.New("sm", now), SearchMade{Query: q, Results: max(results, 0), SearchedAt: now}})
}

func (e *Emitter) offer(m emitted) {
	select {
	case e.queue <- m:
		e.queued.Add(1)
	default:
		if n := e.dropped.Add(1); n == 1 || n%10000 == 0 {
			e.log.Warn("analytics queue full: events dropped", "dropped", n)
		}
	}
}

// batchPublisher publishes many messages at once, waiting for all their
// acknowledgements together (bus.Bus's PublishBatch).
type batchPublisher interface {
	PublishBatch(ctx context.Context, msgs []bus.Message) []error
}

// emitBatch is the most events Run publishes in one batch.
const emitBatch = 256

// Run publishes queued events until ctx ends; the events still queued then
// are not published. With a publisher that takes batches, every event
// waiting in the queue goes out in one batch (up to emitBatch), whose
// acknowledgements are awaited together: under load one wait serves many
// events instead of one each.
func (e *Emitter) Run(ctx context.Context) {
	bp, batches := e.pub.(batchPublisher)
	batch := make([]emitted, 0, emitBatch)
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-e.queue:
			batch = append(batch[:0], m)
		drain:
			for len(batch) < emitBatch {
				select {
				case m := <-e.queue:
					batch = append(batch, m)
				default:
					break drain
				}
			}
			pctx, cancel := context.WithTimeout(ctx, e.timeout)
			if batches && len(batch) > 1 {
				e.publishBatch(pctx, bp, batch)
			} else {
				for _, m := range batch {
					e.done(m, e.pub.Publish(pctx, m.subject, m.id, m.data))
				}
			}
			cancel()
		}
	}
}

// publishBatch publishes batch through bp, counting each event's outcome.
func (e *Emitter) publishBatch(ctx context.Context, bp batchPublisher, batch []emitted) {
	msgs := make([]bus.Message, 0, len(batch))
	kept := make([]emitted, 0, len(batch))
	for _, m := range batch {
		b, err := json.Marshal(m.data)
		if err != nil {
			e.done(m, err)
			continue
		}
		msgs = append(msgs, bus.Message{Subject: m.subject, ID: m.id, Data: b})
		kept = append(kept, m)
	}
	errs := bp.PublishBatch(ctx, msgs)
	for i, m := range kept {
		var err error
		if i < len(errs) {
			err = errs[i]
		}
		e.done(m, err)
	}
}

// done counts one event's publish outcome.
func (e *Emitter) done(m emitted, err error) {
	if err != nil {
		if n := e.failed.Add(1); n == 1 || n%1000 == 0 {
			e.log.Warn("analytics event not published: dropped", "subject", m.subject, "failed", n, "err", err)
		}
		return
	}
	e.sent.Add(1)
}

// EmitterStats counts an emitter's events since it was made.
type EmitterStats struct {
	Queued  int64 `json:"queued"`  // accepted into the queue
	Sent    int64 `json:"sent"`    // acknowledged by the broker
	Dropped int64 `json:"dropped"` // refused: the queue was full
	Failed  int64 `json:"failed"`  // taken from the queue, publish failed
	Waiting int   `json:"waiting"` // in the queue now
}

// Stats reports the emitter's counts.
func (e *Emitter) Stats() EmitterStats {
	return EmitterStats{Queued: e.queued.Load(), Sent: e.sent.Load(), Dropped: e.dropped.Load(), Failed: e.failed.Load(), Waiting: len(e.queue)}
}
