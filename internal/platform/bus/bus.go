// Package bus is the message broker: durable events and work queues on NATS
// JetStream. The embedded default runs a NATS server with JetStream inside the
// process, storing messages under the data directory; the same code connects
// to an external NATS cluster by URL.
//
// Every message lands in one stream (persistence), chosen by its subject
// (Streams): events on GLOBO, jobs on the work-queue stream GLOBO_JOBS (each
// job goes to the one consumer of its subject and is deleted once acked),
// page views and searches on GLOBO_ANALYTICS. A subscription is a durable
// consumer: instances that subscribe with the same name share the work,
// subscriptions with different names each get every event. Workers pull
// (Subscribe); services reacting to events are pushed to (React, react.go).
// A handler's error makes the message be redelivered with back-off; after the
// subscription's allowed deliveries (MaxDeliver unless MaxDeliveries says
// otherwise), or at once for a Permanent error, the message is moved to the
// dead-letter stream (dlq.go), where an operator lists, inspects and replays
// it.
package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/globomantics/globomantics/internal/platform/clock"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/retry"
)

// StreamName is the JetStream stream that holds every Globomantics message.
const StreamName = "GLOBO"

// SubjectPrefix prefixes every subject in the stream.
const SubjectPrefix = "globo."

// AnalyticsStreamName is the buffered stream of the storefront's page views
// and searches (subjects globo_analytics.>).
const AnalyticsStreamName = "GLOBO_ANALYTICS"

// JobsStreamName is the work-queue stream of the jobs services hand to
// workers: each job goes to one worker and is deleted once acked.
const JobsStreamName = "GLOBO_JOBS"

// JobSubjectPrefix prefixes every job's subject (globo_jobs.thumbnail,
// globo_jobs.email, ...). One consumer takes each job subject.
const JobSubjectPrefix = "globo_jobs."

// MaxDeliver is how many times a message is offered, by default, before it
// is moved to the dead letters.
const MaxDeliver = 30

// Event is the envelope of every message. Time is when the change it
// records happened (for events from an outbox, the time given to outbox.Add),
// or when it was published for events published directly.
type Event struct {
	ID   string          `json:"id"`
	Type string          `json:"type"` // the subject
	Time time.Time       `json:"time"`
	Data json.RawMessage `json:"data"`
	// Traceparent is the W3C trace context of the change, when known.
	Traceparent string `json:"traceparent,omitempty"`
}

// Decode unmarshals the event's data into v.
func (e Event) Decode(v any) error { return json.Unmarshal(e.Data, v) }

// Publisher publishes events; a consumer-side interface for services.
type Publisher interface {
	Publish(ctx context.Context, subject, id string, data any) error
}

// Handler handles one event. Returning an error asks for redelivery (until
// the subscription's deliveries run out, then the message becomes a dead
// letter); return Permanent(err), or an error of kind errs.Invalid, for a
// message that can never succeed, to make it a dead letter at once.
type Handler func(ctx context.Context, ev Event) error

// Options configure a Bus.
type Options struct {
	// URL of an external NATS server, or a comma-separated list of the
	// URLs of a cluster's nodes. Empty runs an embedded server.
	URL string
	// StoreDir is where the embedded server keeps JetStream data.
	StoreDir string
	// ListenAddr, when set, makes the embedded server accept clients on this
	// host:port so other processes can share it; otherwise it accepts only
	// in-process connections.
	ListenAddr string
	// Name identifies this connection in server logs.
	Name string
	Log  *slog.Logger
	// ConnectTimeout bounds how long Open keeps trying to reach an external
	// broker; 0 means 30 s.
	ConnectTimeout time.Duration
	// Clock stamps dead letters with their time of failure; nil is the
	// wall clock.
	Clock clock.Clock
	// AckWait is how long the broker waits for a consumer's ack before it
	// offers the message again (to another instance, when the one that had
	// it died); 0 means DefaultAckWait. A handler gets five sixths of it.
	AckWait time.Duration
	// Registerer receives the bus's metrics (observe.go); nil: none.
	Registerer prometheus.Registerer
	// TracerProvider makes a producer span per publish and a consumer span
	// per handled message; nil: no spans (trace context still travels).
	TracerProvider trace.TracerProvider
	// Propagator writes and reads the trace context in message headers;
	// nil is W3C Trace Context.
	Propagator propagation.TextMapPropagator
	// RequestID, when set, is the request id of a publisher's context, sent
	// as the X-Request-Id header.
	RequestID func(context.Context) string
	// WithRequestID, when set, puts a message's X-Request-Id into its
	// handler's context.
	WithRequestID func(ctx context.Context, id string) context.Context
}

// Bus is a connection to the broker.
type Bus struct {
	log   *slog.Logger
	clock clock.Clock
	ns    *server.Server // nil when external
	nc    *nats.Conn
	js    jetstream.JetStream

	ackWait time.Duration // Options.AckWait or DefaultAckWait
	obs     *observer     // tracing and metrics (observe.go)

	mu   sync.Mutex
	subs []jetstream.ConsumeContext
}

var _ Publisher = (*Bus)(nil)

// Open starts or connects to the broker and makes sure the stream exists.
func Open(ctx context.Context, o Options) (*Bus, error) {
	b := &Bus{log: o.Log, clock: o.Clock, ackWait: o.AckWait, obs: newObserver(o)}
	if b.ackWait <= 0 {
		b.ackWait = DefaultAckWait
	}
	if b.log == nil {
		b.log = slog.Default()
	}
	if b.clock == nil {
		b.clock = clock.Real{}
	}
	copts := []nats.Option{nats.Name(o.Name), nats.MaxReconnects(-1), nats.ReconnectWait(500 * time.Millisecond)}
	url := o.URL
	if url == "" {
		ns, err := startEmbedded(o)
		if err != nil {
			return nil, err
		}
		b.ns = ns
		url = ns.ClientURL()
		copts = append(copts, nats.InProcessServer(ns))
	}
	// An external broker may still be starting (processes of a split shop
	// start in any order): keep trying until ConnectTimeout passes (or the
	// next wait would pass it). The embedded one is there or not.
	wait := o.ConnectTimeout
	if wait == 0 {
		wait = 30 * time.Second
	}
	cctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	attempt := 0
	external := func(error) bool { return b.ns == nil }
	err := retry.DoIf(cctx, connectPolicy, external, func(context.Context) error {
		attempt++
		err := b.connect(ctx, url, copts)
		if err != nil && b.ns == nil {
			b.log.Warn("broker not reachable yet, retrying", "url", url, "attempt", attempt, "err", err)
		}
		return err
	})
	if err != nil {
		b.Close()
		return nil, err
	}
	if b.ns == nil {
		checkExternalSync(ctx, b.nc, b.log)
	} else if err := b.answerSyncQueries(); err != nil {
		b.Close()
		return nil, err
	}
	if b.obs.m != nil {
		b.obs.m.add(b)
	}
	return b, nil
}

// connectPolicy is how Open retries an external broker that is not
// reachable yet: waits growing to 2 s, for as long as ConnectTimeout allows.
var connectPolicy = retry.Policy{Base: 200 * time.Millisecond, Max: 2 * time.Second}

func (b *Bus) connect(ctx context.Context, url string, copts []nats.Option) error {
	nc, err := nats.Connect(url, copts...)
	if err != nil {
		return fmt.Errorf("bus: connect %s: %w", url, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return err
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	// Each stream's durability is decided in durability.go.
	// Its replicas (R3 on a cluster of three or more) in cluster.go.
	for _, s := range Streams() {
		if err := b.ensureStream(sctx, nc, js, s); err != nil {
			nc.Close()
			return err
		}
	}
	b.nc, b.js = nc, js
	return nil
}

func startEmbedded(o Options) (*server.Server, error) {
	opts := serverOptions("globomantics", o.StoreDir) // shared with cluster nodes (cluster.go)
	if o.ListenAddr != "" {
		host, port, err := splitHostPort(o.ListenAddr)
		if err != nil {
			return nil, err
		}
		opts.Host, opts.Port = host, port
	} else {
		opts.DontListen = true
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("bus: embedded nats: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		return nil, errors.New("bus: embedded nats did not start in 10s")
	}
	return ns, nil
}

// ClientURL is the URL other processes use to reach the embedded server, or
// "" when there is none that listens.
func (b *Bus) ClientURL() string {
	if b.ns == nil || b.ns.Addr() == nil {
		return ""
	}
	return b.ns.ClientURL()
}

// Publish sends data (marshalled to JSON) as an event on subject. The id makes
// the publish idempotent: the broker drops a second message with the same id
// within ten minutes.
func (b *Bus) Publish(ctx context.Context, subject, id string, data any) error {
	const op = "bus.Publish"
	raw, err := json.Marshal(data)
	if err != nil {
		return errs.E(op, err)
	}
	msg := nats.NewMsg(subject)
	end := b.obs.startPublish(ctx, ctx, subject, id, msg.Header)
	env, err := json.Marshal(Event{ID: id, Type: subject, Time: time.Now().UTC(), Data: raw, Traceparent: msg.Header.Get(HeaderTraceparent)})
	if err != nil {
		end(err)
		return errs.E(op, err)
	}
	msg.Data = env
	_, err = b.js.PublishMsg(ctx, msg, jetstream.WithMsgID(id))
	end(err)
	if err != nil {
		return errs.E(op, errs.Unavailable, err)
	}
	return nil
}

// Subscribe delivers every message on the subjects to h through the durable
// consumer name, until Close. Instances using the same name share the
// messages between them. The consumer also receives the dead letters an
// operator replays to it (RedeliverySubject), with their original subject.
// On the work-queue stream (job subjects, JobSubjectPrefix) a job subject has
// one consumer: a consumer whose subjects overlap another's is refused with
// errs.Conflict.
func (b *Bus) Subscribe(ctx context.Context, name string, subjects []string, h Handler, opts ...SubOption) error {
	so := b.newSubOptions(opts)
	spec := streamSpecOf(subjects)
	redeliver := redeliveryPrefix(spec)
	if so.retire {
		// Finishing an old consumer's backlog: never create it.
		switch _, err := b.js.Consumer(ctx, spec.Name, name); {
		case errors.Is(err, jetstream.ErrConsumerNotFound):
			return nil
		case err != nil:
			return fmt.Errorf("bus: consumer %s: %w", name, err)
		}
	}
	cons, err := b.js.CreateOrUpdateConsumer(ctx, spec.Name, jetstream.ConsumerConfig{
		InactiveThreshold: so.inactive,
		Durable:           name,
		FilterSubjects:    withRedelivery(redeliver, name, subjects),
		AckPolicy:         jetstream.AckExplicitPolicy,
		DeliverPolicy:     so.deliver,
		// No BackOff here: the server would take its first step as the
		// AckWait and redeliver a message whose handler is still running.
		// Failed messages are delayed with NakWithDelay instead.
		AckWait: so.ackWait,
		// The broker never gives a message up: the handler's side counts
		// the deliveries and moves the message to the dead letters once
		// the dead letter is safely stored (a broker-side limit would drop
		// a message whose dead-lettering failed).
		MaxDeliver:    -1,
		MaxAckPending: 256,
	})
	if err != nil {
		return consumerError(spec, name, subjects, err)
	}
	b.obs.track(spec.Name, name, cons)
	log := b.log.With("consumer", name)
	handle := b.handler(log, name, redeliver, so, h)
	// One message at a time per pull loop: a loop's handler calls run one
	// after another, so a buffered message's ack wait would run out while it
	// waits behind others, and the broker would offer it again. This also
	// leaves the backlog to the other instances sharing the consumer.
	// Concurrency(n) runs n such loops on the consumer, each with one
	// message in flight, rather than buffering more in one.
	// Pull requests expire after 5 s (heartbeats every second) rather than
	// the client's 30 s: a pull lost while the process was starved of CPU
	// is noticed and sent again within seconds, not half a minute, and one
	// lost in a cluster's leader election as soon as its heartbeats stop.
	if so.retire {
		so.concurrency = 1 // retireWhenDone stops the one loop
	}
	var cc jetstream.ConsumeContext
	for i := range so.concurrency {
		c, err := cons.Consume(handle, jetstream.PullMaxMessages(1), jetstream.PullExpiry(5*time.Second), jetstream.PullHeartbeat(time.Second))
		if err != nil {
			return fmt.Errorf("bus: consume %s: %w", name, err)
		}
		if i == 0 {
			cc = c
		}
		b.mu.Lock()
		b.subs = append(b.subs, c)
		b.mu.Unlock()
	}
	if so.retire {
		go b.retireWhenDone(log, spec.Name, name, cons, cc, so.retireCheck)
	}
	return nil
}

// handler is the message handler of consumer name (on a stream whose
// redelivery prefix is redeliver): it decodes the envelope, runs h, and
// acks, delays the redelivery of, or dead-letters the message.
func (b *Bus) handler(log *slog.Logger, name, redeliver string, so subOptions, h Handler) func(jetstream.Msg) {
	return func(m jetstream.Msg) {
		subject, ours := originalSubject(redeliver, name, m.Subject())
		if !ours { // another consumer's replayed dead letter
			_ = m.Ack()
			return
		}
		md, _ := m.Metadata()
		attempt := uint64(0)
		if md != nil {
			attempt = md.NumDelivered
		}
		var ev Event
		if err := json.Unmarshal(m.Data(), &ev); err != nil {
			_, done := b.obs.startProcess(m, name, subject, ev, attempt)
			err = Permanent(fmt.Errorf("undecodable message: %w", err))
			done(OutcomeDeadLetter, err)
			b.deadLetter(log, m, name, subject, attempt, err)
			return
		}
		if so.retire && !ev.Time.Before(so.before) {
			// A newer version made it, with a job that does its work.
			_ = m.Ack()
			return
		}
		// The handler must end before the broker offers the message again.
		octx, done := b.obs.startProcess(m, name, subject, ev, attempt)
		hctx, cancel := context.WithTimeout(octx, so.ackWait*5/6)
		err := safeHandle(hctx, h, ev)
		cancel()
		if err != nil {
			if IsPermanent(err) || attempt >= uint64(so.maxDeliver) {
				done(OutcomeDeadLetter, err)
				b.deadLetter(log, m, name, subject, attempt, err)
				return
			}
			done(OutcomeRetry, err)
			log.Warn("handler failed, will retry", "subject", ev.Type, "id", ev.ID, "attempt", attempt, "err", err)
			_ = m.NakWithDelay(retryDelay(attempt))
			return
		}
		done(OutcomeAck, nil)
		_ = m.Ack()
	}
}

// safeHandle runs h, turning a panic into an error: a poison message must not
// crash the process (and every other instance it is redelivered to).
func safeHandle(ctx context.Context, h Handler, ev Event) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("handler panicked: %v\n%s", p, debug.Stack())
		}
	}()
	return h(ctx, ev)
}

// retryDelays are the waits before a message whose handler failed is offered
// again, by attempt; the last one repeats.
// With MaxDeliver attempts they ride out about two hours of a dependency's
// outage (an SMTP server, the catalog) before a message is given up.
var retryDelays = []time.Duration{200 * time.Millisecond, time.Second, 2 * time.Second, 5 * time.Second,
	10 * time.Second, 30 * time.Second, time.Minute, 2 * time.Minute, 5 * time.Minute}

func retryDelay(attempt uint64) time.Duration {
	i := min(max(attempt, 1), uint64(len(retryDelays))) - 1
	return retryDelays[i]
}

// SubOption adjusts a subscription.
type SubOption func(*subOptions)

type subOptions struct {
	inactive    time.Duration
	ackWait     time.Duration // the consumer's AckWait
	maxDeliver  int           // deliveries before the dead letters
	deliver     jetstream.DeliverPolicy
	retire      bool          // Retire: finish an old consumer's backlog
	before      time.Time     // Retire: messages of changes before this only
	retireCheck time.Duration // Retire: how often to look for the end of the backlog
	concurrency int           // Concurrency: pull loops, each one message at a time
}

// MaxConcurrency bounds Concurrency.
const MaxConcurrency = 64

// Concurrency lets one instance of a pulling subscription (Subscribe)
// handle up to n messages at once, each on its own pull loop with one
// message in flight: for handlers that mostly wait (an HTTP call, a
// database commit), so that one slow message does not hold the others
// back. n is clamped to 1..MaxConcurrency; a killed instance leaves up to n
// messages to be redelivered. React ignores it.
func Concurrency(n int) SubOption {
	return func(o *subOptions) { o.concurrency = min(max(n, 1), MaxConcurrency) }
}

func (b *Bus) newSubOptions(opts []SubOption) subOptions {
	so := subOptions{concurrency: 1, ackWait: b.ackWait, maxDeliver: MaxDeliver, deliver: jetstream.DeliverAllPolicy, retireCheck: retireCheckEvery}
	for _, o := range opts {
		o(&so)
	}
	return so
}

// DefaultAckWait is how long the broker waits for a message's ack before it
// offers the message again; longer than a handler may run.
const DefaultAckWait = 60 * time.Second

// ForgetAfter makes the broker delete the durable consumer once nobody has
// consumed from it for d: for consumers named per instance (each search
// instance's), so that instances gone for good leave nothing behind. An
// instance that comes back later starts from the first stored message.
func ForgetAfter(d time.Duration) SubOption { return func(o *subOptions) { o.inactive = d } }

// Ping reports whether the broker connection is up.
func (b *Bus) Ping(ctx context.Context) error {
	if b.nc == nil || !b.nc.IsConnected() {
		return errs.E("bus.Ping", errs.Unavailable, errs.Msg("message broker not connected"))
	}
	return nil
}

// Close stops the subscriptions (see Drain, with its default wait), closes
// the connection and stops the embedded server.
func (b *Bus) Close() error {
	if b.obs.m != nil {
		b.obs.m.remove(b)
	}
	b.Drain(context.Background())
	if b.nc != nil {
		b.nc.Close()
	}
	b.shutdownServer()
	return nil
}

// drainWait bounds Drain when its context has no deadline.
const drainWait = 8 * time.Second

// Drain stops every subscription from taking new messages and waits for the
// handlers in flight to finish, until ctx is done (one budget for all
// subscriptions together; 8 s when ctx has no deadline). A message whose
// handler is cut short is redelivered later. The connection stays open for
// publishing.
func (b *Bus) Drain(ctx context.Context) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, drainWait)
		defer cancel()
	}
	b.mu.Lock()
	subs := b.subs
	b.subs = nil
	b.mu.Unlock()
	if len(subs) > 0 && (b.nc == nil || !b.nc.IsConnected()) {
		// The broker is gone (a process sharing another's embedded broker
		// that stopped first): a drain needs it and would wait out the whole
		// budget; nothing in flight can be acked anyway, and the broker
		// redelivers it.
		for _, s := range subs {
			s.Stop()
		}
		b.log.Warn("broker not connected at the drain: subscriptions stopped; unacked messages will be redelivered")
		return
	}
	for _, s := range subs {
		s.Drain()
	}
	for _, s := range subs {
		select {
		case <-s.Closed():
			continue
		default:
		}
		select {
		case <-s.Closed():
		case <-ctx.Done():
			b.log.Warn("handlers still running at the end of the drain; their messages will be redelivered")
			return
		}
	}
}

func (b *Bus) shutdownServer() {
	if b.ns != nil {
		b.ns.Shutdown()
		b.ns.WaitForShutdown()
	}
}

func splitHostPort(addr string) (string, int, error) {
	var host string
	var port int
	i := len(addr) - 1
	for i >= 0 && addr[i] != ':' {
		i--
	}
	if i < 0 {
		return "", 0, fmt.Errorf("bus: listen address %q has no port", addr)
	}
	host = addr[:i]
	if _, err := fmt.Sscanf(addr[i+1:], "%d", &port); err != nil {
		return "", 0, fmt.Errorf("bus: listen address %q: bad port", addr)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	return host, port, nil
}

// streamSpecOf is the stream (of Streams) that holds subjects: the first
// whose subjects cover subjects[0]; GLOBO when none does. A subscription's
// subjects must all be in one stream.
func streamSpecOf(subjects []string) StreamSpec {
	all := Streams()
	if len(subjects) > 0 {
		for _, s := range all {
			for _, f := range s.Subjects {
				if subjectCovers(f, subjects[0]) {
					return s
				}
			}
		}
	}
	return all[0]
}

// streamOf is the name of streamSpecOf(subjects).
func streamOf(subjects []string) string { return streamSpecOf(subjects).Name }

// StreamOf is the name of the stream that holds messages published on
// subject (StreamName when no stream's subjects cover it).
func StreamOf(subject string) string { return streamOf([]string{subject}) }

// jsErrWQConsumerNotUnique is the broker's error code for a consumer whose
// filter overlaps another consumer's on a work-queue stream.
const jsErrWQConsumerNotUnique jetstream.ErrorCode = 10100

// consumerError explains the broker's refusal of consumer name. On a work
// queue the usual cause is a second consumer of the same job subjects: each
// job subject has exactly one consumer (whose instances share its jobs), so
// that is a conflict, not a broker failure.
func consumerError(spec StreamSpec, name string, subjects []string, err error) error {
	var apiErr *jetstream.APIError
	if spec.WorkQueue && errors.As(err, &apiErr) && apiErr.ErrorCode == jsErrWQConsumerNotUnique {
		return errs.E("bus.Subscribe", errs.Conflict,
			errs.Msg("consumer %s: another consumer of work-queue stream %s already takes some of %v; each job subject has exactly one consumer (subscribe with its name to share its jobs)", name, spec.Name, subjects), err)
	}
	return fmt.Errorf("bus: consumer %s: %w", name, err)
}
