package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/globomantics/globomantics/internal/platform/errs"
)

// Persistence says when a message a stream has acknowledged is on disk.
// See docs/decisions/0009-broker-durability.md for the rule.
type Persistence int

const (
	// Synced: the broker writes and fsyncs the message before it
	// acknowledges the publish, so an acknowledged message survives a power
	// failure. For every stream whose loss would lose money or an order:
	// the outbox deletes its row once the broker acknowledges.
	Synced Persistence = iota
	// Buffered: the broker may acknowledge before the fsync, which happens
	// within the server's sync interval (two minutes by default). Only for
	// fire-and-forget data that may be lost (page views, searches), and only
	// on single-replica file streams.
	Buffered
)

// String names the persistence for logs.
func (p Persistence) String() string {
	if p == Buffered {
		return "buffered"
	}
	return "synced"
}

// StreamSpec is one stream the bus creates and the durability it is given.
type StreamSpec struct {
	Name        string
	Subjects    []string
	Persistence Persistence
	// MaxAge is how long the stream keeps a message; 0 means 7 days.
	MaxAge time.Duration
	// WorkQueue makes the stream a work queue (jetstream.WorkQueuePolicy):
	// each message goes to the one consumer whose filter takes its subject
	// and is deleted once that consumer acks it. The broker refuses a
	// second consumer whose filter overlaps another's.
	WorkQueue bool
}

// Streams are the streams Open creates. GLOBO carries orders, payments and
// every other event the outbox relays, so it is Synced.
func Streams() []StreamSpec {
	return []StreamSpec{
		{Name: StreamName, Subjects: []string{SubjectPrefix + ">"}, Persistence: Synced},
		// GLOBO_DLQ holds the messages consumers gave up on (see dlq.go):
		// the consumer acks the original once the dead letter is
		// acknowledged, so a dead letter lost before its fsync would be an
		// order event gone for good: Synced. Kept 30 days for an operator
		// to inspect and replay.
		{Name: DLQStreamName, Subjects: []string{DLQSubjectPrefix + ">"}, Persistence: Synced, MaxAge: DLQMaxAge},
		// GLOBO_ANALYTICS carries the storefront's fire-and-forget page
		// views and searches (analytics.Subjects): many small publishes
		// whose loss in a power failure costs a few counts, never money or
		// an order, and whose publisher already drops events under load.
		// So Buffered: the broker does not fsync each one. One replica
		// (a buffered stream must stay R1), kept a week.
		{Name: AnalyticsStreamName, Subjects: []string{"globo_analytics.>"}, Persistence: Buffered, MaxAge: 7 * 24 * time.Hour},
		// GLOBO_JOBS holds the jobs services hand to workers (a thumbnail
		// to render, a mail to send): each goes to exactly one worker of
		// the one consumer of its subject, and is gone once done. A job is
		// written in the same transaction as the change that asks for it
		// and relayed by the outbox, which forgets it once the broker
		// acknowledges: Synced, like GLOBO. Kept 7 days when nobody takes it.
		{Name: JobsStreamName, Subjects: []string{JobSubjectPrefix + ">"}, Persistence: Synced, WorkQueue: true},
	}
}

// streamConfig is the JetStream configuration of a stream in Streams.
func streamConfig(s StreamSpec) jetstream.StreamConfig {
	cfg := jetstream.StreamConfig{
		Name:       s.Name,
		Subjects:   s.Subjects,
		Storage:    jetstream.FileStorage,
		Retention:  jetstream.LimitsPolicy,
		MaxAge:     7 * 24 * time.Hour,
		Duplicates: 10 * time.Minute,
	}
	if s.MaxAge > 0 {
		cfg.MaxAge = s.MaxAge
	}
	if s.WorkQueue {
		cfg.Retention = jetstream.WorkQueuePolicy
	}
	if s.Persistence == Buffered {
		// Opts this stream out of the server's sync_interval: always.
		cfg.PersistMode = jetstream.AsyncPersistMode
	}
	return cfg
}

// durableServer makes the embedded server fsync every write to a stream
// before acknowledging it (nats-server's `sync_interval: always`). Streams
// marked Buffered opt out one by one through their persist mode.
func durableServer(opts *server.Options) {
	opts.SyncAlways = true
}

// OperatorSyncConfig is the line an operator must put in the jetstream
// block of every external NATS server's configuration.
const OperatorSyncConfig = "jetstream { sync_interval: always }"

// ServerSync is what one NATS server reports about its disk syncing.
type ServerSync struct {
	Server       string        // server name
	SyncAlways   bool          // fsync before acknowledging each write
	SyncInterval time.Duration // background fsync period otherwise
}

// errSyncUnknown means no server answered the sync query: the connection's
// account is not the system account, or the servers are too old.
var errSyncUnknown = errs.Msg("the broker does not tell this connection how it syncs to disk")

// BrokerSyncSubject is where a shop process running the embedded broker
// answers, for the broker's clients, how the broker syncs to disk (in the
// format of the servers' own JSZ answer), since ordinary accounts cannot ask
// the server itself.
const BrokerSyncSubject = "_GLOBO.BROKER.SYNC"

// syncAnswer is the part of a JSZ answer ($SYS.REQ.SERVER.PING.JSZ) that
// says how a server syncs; the embedded broker answers in the same shape.
type syncAnswer struct {
	Server struct {
		Name string `json:"name"`
	} `json:"server"`
	Data *struct {
		Config struct {
			SyncInterval time.Duration `json:"sync_interval"`
			SyncAlways   bool          `json:"sync_always"`
		} `json:"config"`
	} `json:"data"`
}

func (a syncAnswer) sync() (ServerSync, bool) {
	if a.Data == nil {
		return ServerSync{}, false
	}
	return ServerSync{Server: a.Server.Name, SyncAlways: a.Data.Config.SyncAlways, SyncInterval: a.Data.Config.SyncInterval}, true
}

// QueryServerSync asks the NATS servers reachable through nc how they sync
// JetStream writes to disk, collecting answers for up to wait. The servers
// themselves answer only a connection of the system account; any other
// connection gets the answer of a shop process that runs the embedded
// broker, if there is one. It returns an error of kind Unavailable when
// nobody answers.
func QueryServerSync(ctx context.Context, nc *nats.Conn, wait time.Duration) ([]ServerSync, error) {
	const op = "bus.QueryServerSync"
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	if out, err := querySystemSync(ctx, nc); err == nil {
		return out, nil
	}
	m, err := nc.RequestWithContext(ctx, BrokerSyncSubject, nil)
	if err != nil {
		return nil, errs.E(op, errs.Unavailable, errSyncUnknown)
	}
	var a syncAnswer
	if json.Unmarshal(m.Data, &a) != nil {
		return nil, errs.E(op, errs.Unavailable, errSyncUnknown)
	}
	s, ok := a.sync()
	if !ok {
		return nil, errs.E(op, errs.Unavailable, errSyncUnknown)
	}
	return []ServerSync{s}, nil
}

// querySystemSync asks every server through the system account's JSZ
// request and gathers the answers until ctx is done.
func querySystemSync(ctx context.Context, nc *nats.Conn) ([]ServerSync, error) {
	inbox := nats.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return nil, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	req, _ := json.Marshal(map[string]bool{"config": true})
	if err := nc.PublishRequest("$SYS.REQ.SERVER.PING.JSZ", inbox, req); err != nil {
		return nil, err
	}
	var out []ServerSync
	for {
		m, err := sub.NextMsg(time.Until(deadlineOf(ctx)))
		if err != nil {
			if errors.Is(err, nats.ErrTimeout) || ctx.Err() != nil {
				break
			}
			return nil, err // no responders: not the system account
		}
		var a syncAnswer
		if json.Unmarshal(m.Data, &a) != nil {
			continue
		}
		if s, ok := a.sync(); ok {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no server answered")
	}
	return out, nil
}

// answerSyncQueries makes the embedded broker's process answer
// BrokerSyncSubject with the server's real JetStream configuration.
func (b *Bus) answerSyncQueries() error {
	_, err := b.nc.Subscribe(BrokerSyncSubject, func(m *nats.Msg) {
		var a syncAnswer
		a.Server.Name = b.ns.Name()
		a.Data = &struct {
			Config struct {
				SyncInterval time.Duration `json:"sync_interval"`
				SyncAlways   bool          `json:"sync_always"`
			} `json:"config"`
		}{}
		if cfg := b.ns.JetStreamConfig(); cfg != nil {
			a.Data.Config.SyncAlways, a.Data.Config.SyncInterval = cfg.SyncAlways, cfg.SyncInterval
		}
		raw, _ := json.Marshal(a)
		_ = m.Respond(raw)
	})
	if err != nil {
		return fmt.Errorf("bus: answer sync queries: %w", err)
	}
	return nil
}

func deadlineOf(ctx context.Context) time.Time {
	d, _ := ctx.Deadline()
	return d
}

// syncQueryWait bounds how long Open waits for servers to report their sync
// setting; a connection of an ordinary account gets no answer at all.
const syncQueryWait = 500 * time.Millisecond

// checkExternalSync logs, at start, whether an external broker syncs before
// it acknowledges: an error for a server known not to, a warning when it
// cannot be verified (the usual case for a NATS server run by an operator:
// only the system account may ask).
func checkExternalSync(ctx context.Context, nc *nats.Conn, log *slog.Logger) {
	servers, err := QueryServerSync(ctx, nc, syncQueryWait)
	if err != nil {
		log.Warn("cannot verify that the external broker syncs every write before acknowledging; the operator must set sync_interval: always on every server, or acknowledged events may be lost in a power failure",
			"config", OperatorSyncConfig, "err", err)
		return
	}
	for _, s := range servers {
		if s.SyncAlways {
			log.Info("external broker syncs every write before acknowledging", "server", s.Server)
			continue
		}
		log.Error("external broker acknowledges writes before they reach the disk; acknowledged events may be lost in a power failure; set sync_interval: always",
			"server", s.Server, "sync_interval", s.SyncInterval, "config", OperatorSyncConfig)
	}
}
