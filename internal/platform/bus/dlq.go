package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/globomantics/globomantics/internal/platform/errs"
)

// Dead letters: a message whose handler failed on its last allowed delivery,
// or failed with a Permanent error, is copied to the GLOBO_DLQ stream under
// globo_dlq.<consumer>.<original subject>, with headers saying why, and only
// then acked, so it is neither lost nor offered again. An operator lists,
// inspects and replays dead letters (globomantics dlq). A replay goes to the
// one consumer that gave up, on its redelivery subject
// <stream root>._redeliver.<consumer>.<original subject> (globo._redeliver.
// for GLOBO, globo_analytics._redeliver. for GLOBO_ANALYTICS: inside the
// consumer's own stream, so that the replay lands where it reads), which
// every subscription also consumes; the other consumers of the original
// subject do not see it again. On the work-queue stream GLOBO_JOBS exactly
// one consumer takes each job subject, and consumers there must not have
// overlapping filters, so a job's consumer has no redelivery subject: a
// replayed job goes back to its own subject.

// DLQStreamName is the stream that keeps the dead letters.
const DLQStreamName = "GLOBO_DLQ"

// DLQSubjectPrefix prefixes every dead letter's subject:
// globo_dlq.<consumer>.<original subject>.
const DLQSubjectPrefix = "globo_dlq."

// DLQMaxAge is how long a dead letter is kept before the broker deletes it.
const DLQMaxAge = 30 * 24 * time.Hour

// RedeliveryPrefix prefixes the subjects on which a replayed dead letter of
// GLOBO is offered to the one consumer that gave it up:
// globo._redeliver.<consumer>.<original subject>. Other streams have their
// own (see RedeliverySubject).
const RedeliveryPrefix = SubjectPrefix + "_redeliver."

// redeliveryToken follows a stream's root subject token in the redelivery
// subjects of its consumers.
const redeliveryToken = "_redeliver."

// Headers of a dead letter, besides the original message's own headers.
const (
	HeaderDLQSubject    = "Globo-Dlq-Subject"    // the original subject
	HeaderDLQMsgID      = "Globo-Dlq-Msg-Id"     // the original Nats-Msg-Id
	HeaderDLQConsumer   = "Globo-Dlq-Consumer"   // the durable consumer that gave up
	HeaderDLQDeliveries = "Globo-Dlq-Deliveries" // deliveries to that consumer
	HeaderDLQError      = "Globo-Dlq-Error"      // the last error, on one line
	HeaderDLQFailedAt   = "Globo-Dlq-Failed-At"  // RFC 3339, UTC
	HeaderDLQStreamSeq  = "Globo-Dlq-Stream-Seq" // the original's sequence in its stream
	HeaderDLQPermanent  = "Globo-Dlq-Permanent"  // "true" when not retried at all
)

const (
	headerDLQ        = "Globo-Dlq-"          // prefix of the above
	headerMsgID      = jetstream.MsgIDHeader // Nats-Msg-Id
	maxDLQErrorLen   = 2000                  // bytes of error text kept
	dlqPublishWait   = 10 * time.Second      // bound on storing a dead letter
	natsHeaderPrefix = "Nats-"               // headers the broker interprets
	replaySuffix     = "/replay-"            // new msg id: original + suffix + dead letter's ID
	dlqMsgIDPrefix   = "dlq/"                // a dead letter's own msg id
	maxErrorInLog    = 500                   // bytes of error text logged
)

// MaxDeliveries sets how many deliveries a message gets before it becomes a
// dead letter (MaxDeliver by default); n < 1 counts as 1.
func MaxDeliveries(n int) SubOption {
	return func(o *subOptions) { o.maxDeliver = max(n, 1) }
}

// permanentError marks a handler's error as one that no retry can fix.
type permanentError struct{ err error }

func (p permanentError) Error() string { return "permanent: " + p.err.Error() }
func (p permanentError) Unwrap() error { return p.err }

// Permanent marks err (a handler's error) as one that no retry can fix: the
// message becomes a dead letter at once. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

// IsPermanent reports whether err was marked with Permanent or has the kind
// errs.Invalid (input that fails validation will fail again).
func IsPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p) || errs.Is(errs.Invalid, err)
}

// RedeliverySubject is the subject on which a replayed dead letter of
// subject reaches only the consumer named consumer: in the stream of
// subject, and subject itself for a job (the one consumer of a job subject
// on the work-queue stream takes it).
func RedeliverySubject(consumer, subject string) string {
	p := redeliveryPrefix(streamSpecOf([]string{subject}))
	if p == "" {
		return subject
	}
	return p + consumer + "." + subject
}

// redeliveryPrefix prefixes the redelivery subjects of the consumers of
// stream s: its root subject token and "_redeliver." (RedeliveryPrefix for
// GLOBO), or "" for a work queue, whose consumers take replays on the job
// subjects themselves.
func redeliveryPrefix(s StreamSpec) string {
	if s.WorkQueue || len(s.Subjects) == 0 {
		return ""
	}
	root, _, _ := strings.Cut(s.Subjects[0], ".")
	return root + "." + redeliveryToken
}

// withRedelivery adds the consumer's redelivery subjects (prefix, of its
// stream) to its filter, unless a filter already covers them (a consumer of
// "globo.>") or the stream has none.
func withRedelivery(prefix, name string, subjects []string) []string {
	if prefix == "" {
		return subjects
	}
	r := prefix + name + ".>"
	for _, s := range subjects {
		if subjectCovers(s, r) {
			return subjects
		}
	}
	return append(append([]string(nil), subjects...), r)
}

// subjectCovers reports whether the filter matches every subject the
// (possibly wildcard) subject sub matches.
func subjectCovers(filter, sub string) bool {
	f, s := strings.Split(filter, "."), strings.Split(sub, ".")
	for i, tok := range f {
		if tok == ">" {
			return i < len(s)
		}
		if i >= len(s) || s[i] == ">" || (tok != "*" && tok != s[i]) || (tok == "*" && s[i] == ">") {
			return false
		}
	}
	return len(f) == len(s)
}

// originalSubject is the subject a message delivered to consumer name on
// subject was first published on, and whether the message is for this
// consumer at all (a replay to another consumer is not, when a wildcard
// filter lets it through); prefix is the redelivery prefix of the
// consumer's stream.
func originalSubject(prefix, name, subject string) (string, bool) {
	if prefix == "" {
		return subject, true
	}
	rest, ok := strings.CutPrefix(subject, prefix)
	if !ok {
		return subject, true
	}
	return strings.CutPrefix(rest, name+".")
}

// deadLetter stores m as a dead letter of consumer name, then acks it for
// good. When the dead letter cannot be stored the message is offered again
// later (and dead-lettered on that delivery), never dropped.
func (b *Bus) deadLetter(log *slog.Logger, m jetstream.Msg, name, subject string, deliveries uint64, cause error) {
	dl := nats.NewMsg(DLQSubjectPrefix + name + "." + subject)
	dl.Data = m.Data()
	for k, vs := range m.Headers() {
		if strings.HasPrefix(k, natsHeaderPrefix) || strings.HasPrefix(k, headerDLQ) {
			continue
		}
		for _, v := range vs {
			dl.Header.Add(k, v)
		}
	}
	var streamSeq uint64
	if md, err := m.Metadata(); err == nil {
		streamSeq = md.Sequence.Stream
	}
	origID := m.Headers().Get(headerMsgID)
	dl.Header.Set(HeaderDLQSubject, subject)
	dl.Header.Set(HeaderDLQMsgID, origID)
	dl.Header.Set(HeaderDLQConsumer, name)
	dl.Header.Set(HeaderDLQDeliveries, strconv.FormatUint(deliveries, 10))
	dl.Header.Set(HeaderDLQError, oneLine(cause.Error(), maxDLQErrorLen))
	dl.Header.Set(HeaderDLQFailedAt, b.clock.Now().UTC().Format(time.RFC3339Nano))
	dl.Header.Set(HeaderDLQStreamSeq, strconv.FormatUint(streamSeq, 10))
	permanent := IsPermanent(cause)
	if permanent {
		dl.Header.Set(HeaderDLQPermanent, "true")
	}
	ctx, cancel := context.WithTimeout(context.Background(), dlqPublishWait)
	defer cancel()
	// The id makes a second dead-lettering of the same delivery (stored,
	// but the ack below lost) a duplicate the broker drops.
	ack, err := b.js.PublishMsg(ctx, dl, jetstream.WithMsgID(fmt.Sprintf("%s%s/%d", dlqMsgIDPrefix, name, streamSeq)))
	if err != nil {
		log.Error("cannot store dead letter; message will be offered again", "subject", subject, "msg_id", origID, "deliveries", deliveries, "err", err)
		_ = m.NakWithDelay(retryDelay(deliveries))
		return
	}
	b.obs.deadLettered(name)
	log.Error("message moved to the dead letters", "subject", subject, "msg_id", origID, "deliveries", deliveries,
		"permanent", permanent, "dlq_id", ack.Sequence, "err", oneLine(cause.Error(), maxErrorInLog))
	_ = m.Term()
}

// oneLine makes s fit a header value: no line breaks, at most n bytes.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(strings.NewReplacer("\r\n", " | ", "\n", " | ", "\r", " | ").Replace(s)), " ")
	if len(s) > n {
		s = s[:n] + "..."
	}
	return s
}

// DeadLetter is one message a consumer gave up on.
type DeadLetter struct {
	ID         uint64 // its sequence in GLOBO_DLQ, the operator's handle
	Consumer   string
	Subject    string // the original subject
	Stream     string // the stream of the original subject (GLOBO, GLOBO_JOBS, ...)
	MsgID      string // the original Nats-Msg-Id
	Deliveries int
	Error      string
	Permanent  bool
	FailedAt   time.Time
	StreamSeq  uint64      // the original's sequence in Stream
	Header     nats.Header // every header, the Globo-Dlq-* ones included
	Data       []byte      // the original message, unchanged
}

func deadLetterOf(m *jetstream.RawStreamMsg) DeadLetter {
	h := m.Header
	if h == nil {
		h = nats.Header{}
	}
	d := DeadLetter{
		ID:        m.Sequence,
		Consumer:  h.Get(HeaderDLQConsumer),
		Subject:   h.Get(HeaderDLQSubject),
		MsgID:     h.Get(HeaderDLQMsgID),
		Error:     h.Get(HeaderDLQError),
		Permanent: h.Get(HeaderDLQPermanent) == "true",
		Header:    h,
		Data:      m.Data,
	}
	if d.Subject != "" {
		d.Stream = StreamOf(d.Subject)
	}
	d.Deliveries, _ = strconv.Atoi(h.Get(HeaderDLQDeliveries))
	d.StreamSeq, _ = strconv.ParseUint(h.Get(HeaderDLQStreamSeq), 10, 64)
	if t, err := time.Parse(time.RFC3339Nano, h.Get(HeaderDLQFailedAt)); err == nil {
		d.FailedAt = t
	} else {
		d.FailedAt = m.Time.UTC()
	}
	return d
}

// DeadLetterFilter selects dead letters; zero values select all.
type DeadLetterFilter struct {
	Consumer string // durable consumer name
	Subject  string // original subject; NATS wildcards allowed
	Limit    int    // at most this many, oldest first; 0: no limit
}

func (f DeadLetterFilter) subject() string {
	c, s := f.Consumer, f.Subject
	if c == "" {
		c = "*"
	}
	if s == "" {
		s = ">"
	}
	return DLQSubjectPrefix + c + "." + s
}

// DeadLetters lists the dead letters f selects, oldest first. It fails with
// errs.Unavailable when the broker cannot be asked.
func (b *Bus) DeadLetters(ctx context.Context, f DeadLetterFilter) ([]DeadLetter, error) {
	const op = "bus.DeadLetters"
	st, err := b.js.Stream(ctx, DLQStreamName)
	if err != nil {
		return nil, errs.E(op, errs.Unavailable, err)
	}
	var out []DeadLetter
	for seq := uint64(1); f.Limit <= 0 || len(out) < f.Limit; {
		m, err := st.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(f.subject()))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			return out, errs.E(op, errs.Unavailable, err)
		}
		out = append(out, deadLetterOf(m))
		seq = m.Sequence + 1
	}
	return out, nil
}

// GetDeadLetter returns the dead letter with the given ID, or an error of kind
// errs.NotFound.
func (b *Bus) GetDeadLetter(ctx context.Context, id uint64) (DeadLetter, error) {
	const op = "bus.GetDeadLetter"
	st, err := b.js.Stream(ctx, DLQStreamName)
	if err != nil {
		return DeadLetter{}, errs.E(op, errs.Unavailable, err)
	}
	m, err := st.GetMsg(ctx, id)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return DeadLetter{}, errs.E(op, errs.NotFound, errs.Msg("no dead letter %d", id), err)
	}
	if err != nil {
		return DeadLetter{}, errs.E(op, errs.Unavailable, err)
	}
	if !strings.HasPrefix(m.Subject, DLQSubjectPrefix) {
		return DeadLetter{}, errs.E(op, errs.NotFound, errs.Msg("no dead letter %d", id))
	}
	return deadLetterOf(m), nil
}

// ReplayOptions choose where a replayed dead letter goes.
type ReplayOptions struct {
	// ToOriginal republishes to the original subject, so that every
	// consumer of it gets the message again (they are idempotent), instead
	// of to the one consumer that gave it up. Needed when that consumer no
	// longer exists.
	ToOriginal bool
}

// Replayed says where a dead letter was republished.
type Replayed struct {
	ID      uint64 // the dead letter's ID, now deleted
	Subject string // where it was published
	MsgID   string // its new Nats-Msg-Id
}

// Replay republishes dead letter id, with its original headers and data and
// a new message id (the original's plus "/replay-<id>", so the broker's
// de-duplication does not drop it), to the consumer that gave it up (see
// ReplayOptions), with a fresh count of deliveries, and then deletes the dead
// letter. It fails with errs.NotFound for an unknown id or a consumer that no
// longer exists (replay ToOriginal then), errs.Conflict when the consumer's
// processes are too old to take replays, and errs.Unavailable when the
// broker fails. Replaying the same id twice within the broker's ten-minute
// de-duplication window publishes once.
func (b *Bus) Replay(ctx context.Context, id uint64, o ReplayOptions) (Replayed, error) {
	const op = "bus.Replay"
	d, err := b.GetDeadLetter(ctx, id)
	if err != nil {
		return Replayed{}, errs.E(op, err)
	}
	if d.Subject == "" || d.Consumer == "" {
		return Replayed{}, errs.E(op, errs.Invalid, errs.Msg("dead letter %d has no original subject or consumer", id))
	}
	target := d.Subject
	if !o.ToOriginal {
		target = RedeliverySubject(d.Consumer, d.Subject)
		if err := b.checkTakesReplays(ctx, StreamOf(d.Subject), d.Consumer, target); err != nil {
			return Replayed{}, errs.E(op, err)
		}
	}
	msg := nats.NewMsg(target)
	msg.Data = d.Data
	for k, vs := range d.Header {
		if strings.HasPrefix(k, natsHeaderPrefix) || strings.HasPrefix(k, headerDLQ) {
			continue
		}
		for _, v := range vs {
			msg.Header.Add(k, v)
		}
	}
	base := d.MsgID
	if base == "" {
		base = "dlq"
	}
	newID := base + replaySuffix + strconv.FormatUint(id, 10)
	if _, err := b.js.PublishMsg(ctx, msg, jetstream.WithMsgID(newID)); err != nil {
		return Replayed{}, errs.E(op, errs.Unavailable, err)
	}
	st, err := b.js.Stream(ctx, DLQStreamName)
	if err == nil {
		err = st.DeleteMsg(ctx, id)
	}
	if err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return Replayed{}, errs.E(op, errs.Unavailable, fmt.Errorf("republished as %s but not deleted: %w", newID, err))
	}
	return Replayed{ID: id, Subject: target, MsgID: newID}, nil
}

// checkTakesReplays makes sure the durable consumer exists on stream (the
// stream of the dead letter's original subject, where the consumer read it)
// and consumes its redelivery subject.
func (b *Bus) checkTakesReplays(ctx context.Context, stream, consumer, subject string) error {
	cfg, err := b.consumerConfig(ctx, stream, consumer)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return errs.E(errs.NotFound, errs.Msg("consumer %s no longer exists: replay to the original subject for every consumer instead (--original)", consumer), err)
	}
	if err != nil {
		return errs.E(errs.Unavailable, err)
	}
	filters := append([]string{cfg.FilterSubject}, cfg.FilterSubjects...)
	for _, f := range filters {
		if f != "" && subjectCovers(f, subject) {
			return nil
		}
	}
	return errs.E(errs.Conflict, errs.Msg("consumer %s does not take replays (its processes run an older version): upgrade them, or replay to the original subject (--original)", consumer))
}

// consumerConfig is the configuration of the durable consumer name on
// stream, a pull consumer (Subscribe) or a push one (React).
func (b *Bus) consumerConfig(ctx context.Context, stream, name string) (jetstream.ConsumerConfig, error) {
	c, err := b.js.Consumer(ctx, stream, name)
	if err == nil {
		return c.CachedInfo().Config, nil
	}
	if !errors.Is(err, jetstream.ErrNotPullConsumer) {
		return jetstream.ConsumerConfig{}, err
	}
	p, err := b.js.PushConsumer(ctx, stream, name)
	if err != nil {
		return jetstream.ConsumerConfig{}, err
	}
	return p.CachedInfo().Config, nil
}
