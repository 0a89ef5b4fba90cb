package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/globomantics/globomantics/internal/config"
	"github.com/globomantics/globomantics/internal/platform/bus"
	"github.com/globomantics/globomantics/internal/platform/clock"
	"github.com/globomantics/globomantics/internal/worker/mail"
	"github.com/globomantics/globomantics/internal/worker/thumbnail"
	"github.com/globomantics/globomantics/internal/worker/webhooks"
)

// Queue names the JetStream consumer whose backlog is a worker group's load.
type Queue struct {
	Stream   string // GLOBO_JOBS
	Consumer string // the durable consumer the group's instances share
	// Subject is the job subject, to find the oldest waiting message; ""
	// leaves OldestAge unmeasured.
	Subject string
}

// WorkerQueues are the queues of the shop's worker groups, by group name
// (the --services name the supervisor uses as group).
func WorkerQueues() map[string]Queue {
	return map[string]Queue{
		config.Thumbnails: {Stream: bus.JobsStreamName, Consumer: thumbnail.ConsumerName, Subject: thumbnail.Subjects[0]},
		config.Mail:       {Stream: bus.JobsStreamName, Consumer: mail.ConsumerName, Subject: mail.Subjects[0]},
		config.Webhooks:   {Stream: bus.JobsStreamName, Consumer: webhooks.ConsumerName, Subject: webhooks.Subjects[0]},
	}
}

// NewNATSQueueSignal is a QueueSignal over its own connection to the NATS
// servers urls() names (asked at each attempt to connect), made at the
// first measurement and kept, reconnecting, until Close; so it can be built
// before the broker runs. clk nil is the wall clock.
func NewNATSQueueSignal(urls func() []string, queues map[string]Queue, clk clock.Clock) *QueueSignal {
	s := NewQueueSignal(nil, queues, clk)
	s.urls = urls
	return s
}

// QueueSignal measures worker groups from their JetStream consumers: the
// backlog (NumPending + NumAckPending), the rate at which it is acknowledged
// (the ack floor's progress between two measurements) and the age of the
// oldest waiting message. Safe for concurrent use.
type QueueSignal struct {
	queues map[string]Queue
	clock  clock.Clock
	urls   func() []string // NewNATSQueueSignal's servers

	dial sync.Mutex // held while connecting
	js   jetstream.JetStream
	nc   *nats.Conn // the connection NewNATSQueueSignal made

	mu      sync.Mutex
	last    map[string]scaleAckSample
	streams map[string]jetstream.Stream
}

type scaleAckSample struct {
	at    time.Time
	floor uint64 // the consumer's ack floor (consumer sequence)
}

var _ Signal = (*QueueSignal)(nil)

// NewQueueSignal measures the groups of queues (group name -> queue)
// through js. clk nil is the wall clock.
func NewQueueSignal(js jetstream.JetStream, queues map[string]Queue, clk clock.Clock) *QueueSignal {
	if clk == nil {
		clk = clock.Real{}
	}
	return &QueueSignal{js: js, queues: queues, clock: clk, last: map[string]scaleAckSample{}, streams: map[string]jetstream.Stream{}}
}

// Measure reads the consumer of group. A consumer that does not exist yet
// (no worker has subscribed) is an empty queue. Errors: an unknown group,
// or the broker's.
func (s *QueueSignal) Measure(ctx context.Context, group string, _ []Proc) (Load, error) {
	q, ok := s.queues[group]
	if !ok {
		return Load{}, fmt.Errorf("no queue known for group %q", group)
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	js, err := s.jetStream()
	if err != nil {
		return Load{}, err
	}
	c, err := js.Consumer(ctx, q.Stream, q.Consumer)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return Load{Queue: true}, nil
	}
	if err != nil {
		return Load{}, fmt.Errorf("consumer %s/%s: %w", q.Stream, q.Consumer, err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		return Load{}, fmt.Errorf("consumer %s/%s info: %w", q.Stream, q.Consumer, err)
	}
	now := s.clock.Now()
	l := Load{Queue: true, Backlog: int64(info.NumPending) + int64(info.NumAckPending)}

	s.mu.Lock()
	prev, had := s.last[group]
	s.last[group] = scaleAckSample{at: now, floor: info.AckFloor.Consumer}
	s.mu.Unlock()
	if had && now.After(prev.at) && info.AckFloor.Consumer >= prev.floor {
		l.DrainRate = float64(info.AckFloor.Consumer-prev.floor) / now.Sub(prev.at).Seconds()
		l.RateKnown = true
	}
	if l.Backlog > 0 && q.Subject != "" {
		l.OldestAge = s.oldest(ctx, js, q, now)
	}
	return l, nil
}

// jetStream returns the JetStream client, connecting first if it is
// NewNATSQueueSignal's and not connected yet.
func (s *QueueSignal) jetStream() (jetstream.JetStream, error) {
	s.dial.Lock()
	defer s.dial.Unlock()
	if s.js != nil {
		return s.js, nil
	}
	if s.urls == nil {
		return nil, errors.New("queue signal: no JetStream client")
	}
	urls := s.urls()
	if len(urls) == 0 {
		return nil, errors.New("queue signal: no NATS server known yet")
	}
	nc, err := nats.Connect(strings.Join(urls, ","), nats.Name("globomantics autoscaler"), nats.Timeout(2*time.Second),
		nats.RetryOnFailedConnect(false), nats.MaxReconnects(-1))
	if err != nil {
		return nil, fmt.Errorf("queue signal: connect to NATS: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("queue signal: %w", err)
	}
	s.nc, s.js = nc, js
	return js, nil
}

// Close closes the connection NewNATSQueueSignal made, if any.
func (s *QueueSignal) Close() error {
	s.dial.Lock()
	defer s.dial.Unlock()
	if s.nc != nil {
		s.nc.Close()
		s.nc, s.js = nil, nil
	}
	return nil
}

// oldest is the age of the first message of q's subject in its stream: on
// a work-queue stream acknowledged jobs are deleted, so the first one left
// is the oldest not done. 0 when it cannot be read.
func (s *QueueSignal) oldest(ctx context.Context, js jetstream.JetStream, q Queue, now time.Time) time.Duration {
	s.mu.Lock()
	st := s.streams[q.Stream]
	s.mu.Unlock()
	if st == nil {
		var err error
		if st, err = js.Stream(ctx, q.Stream); err != nil {
			return 0
		}
		s.mu.Lock()
		s.streams[q.Stream] = st
		s.mu.Unlock()
	}
	m, err := st.GetMsg(ctx, 1, jetstream.WithGetMsgSubject(q.Subject))
	if err != nil || m.Time.IsZero() || !now.After(m.Time) {
		return 0
	}
	return now.Sub(m.Time)
}

// HTTPSignal measures storefront groups from each instance's Prometheus
// text at <InternalURL>/metrics: the requests in flight
// (http_server_active_requests, summed) and the p95 of
// http_server_request_duration_seconds over the interval since the previous
// measurement, from the histogram's bucket deltas summed over instances and
// routes (health, readiness and metrics routes left out). Safe for
// concurrent use; one HTTPSignal per group (it forgets the instances that
// are not among the procs it is given).
type HTTPSignal struct {
	hc *http.Client
	// SelfInFlight is subtracted from each instance's in-flight gauge: the
	// scrape itself, when the metrics endpoint is behind the instrumented
	// middleware (1 by default).
	selfInFlight float64

	mu   sync.Mutex
	prev map[string]scaleHist // by process name
}

var _ Signal = (*HTTPSignal)(nil)

// NewHTTPSignal scrapes with hc (nil: a client with a 2 s timeout).
// selfInFlight is how many of each instance's in-flight requests are the
// scrape itself: 1 when /metrics is served through the instrumented
// middleware, else 0.
func NewHTTPSignal(hc *http.Client, selfInFlight float64) *HTTPSignal {
	if hc == nil {
		hc = &http.Client{Timeout: 2 * time.Second}
	}
	return &HTTPSignal{hc: hc, selfInFlight: selfInFlight, prev: map[string]scaleHist{}}
}

// scaleHist is a cumulative histogram: counts by upper bound.
type scaleHist struct {
	bounds []float64 // sorted, +Inf last
	counts []float64 // cumulative, parallel to bounds
	total  float64
}

// Measure scrapes every running instance of procs that has an internal URL.
// Instances that fail to answer are left out; an error only when none
// answered (or there were none to ask while some are running).
func (s *HTTPSignal) Measure(ctx context.Context, group string, procs []Proc) (Load, error) {
	l := Load{HTTP: true}
	var sum scaleHist
	var errList []error
	asked, answered := 0, 0
	seen := map[string]bool{}
	for _, p := range procs {
		if p.InternalURL == "" || p.PID == 0 || p.State == "stopping" || p.State == "stopped" || p.State == "failed" {
			continue
		}
		asked++
		inflight, h, err := s.scrape(ctx, p.InternalURL)
		if err != nil {
			errList = append(errList, fmt.Errorf("%s: %w", p.Name, err))
			continue
		}
		answered++
		seen[p.Name] = true
		l.InFlight += max(inflight-s.selfInFlight, 0)
		s.mu.Lock()
		prev, had := s.prev[p.Name]
		s.prev[p.Name] = h
		s.mu.Unlock()
		if !had {
			continue // the first look gives no interval
		}
		sum = sum.add(h.sub(prev))
	}
	s.mu.Lock()
	for name := range s.prev {
		if !seen[name] && !slices.ContainsFunc(procs, func(p Proc) bool { return p.Name == name }) {
			delete(s.prev, name) // gone from the fleet
		}
	}
	s.mu.Unlock()
	if asked > 0 && answered == 0 {
		return Load{}, errors.Join(errList...)
	}
	l.Requests = int64(math.Round(sum.total))
	if q, ok := sum.quantile(0.95); ok {
		l.P95 = time.Duration(q * float64(time.Second))
	}
	return l, nil
}

// scaleIgnoredRoute reports routes that are no shopper's request: probes and
// scrapes.
func scaleIgnoredRoute(route string) bool {
	for _, s := range []string{"/healthz", "/readyz", "/metrics"} {
		if strings.Contains(route, s) {
			return true
		}
	}
	return false
}

// scrape reads one instance's in-flight requests and request-duration
// histogram (summed over label sets, ignored routes left out).
func (s *HTTPSignal) scrape(ctx context.Context, base string) (float64, scaleHist, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(base, "/")+"/metrics", nil)
	if err != nil {
		return 0, scaleHist{}, err
	}
	req.Header.Set("Accept", string(expfmt.NewFormat(expfmt.TypeTextPlain)))
	resp, err := s.hc.Do(req)
	if err != nil {
		return 0, scaleHist{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
		return 0, scaleHist{}, fmt.Errorf("metrics: %s", resp.Status)
	}
	return scaleParseHTTP(io.LimitReader(resp.Body, 16<<20))
}

// scaleParseHTTP reads the in-flight gauge and the duration histogram
// from Prometheus text.
func scaleParseHTTP(r io.Reader) (float64, scaleHist, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return 0, scaleHist{}, fmt.Errorf("metrics: %w", err)
	}
	var inflight float64
	if f := fams[mHTTPActive]; f != nil {
		for _, m := range f.GetMetric() {
			switch {
			case m.GetGauge() != nil:
				inflight += m.GetGauge().GetValue()
			case m.GetUntyped() != nil:
				inflight += m.GetUntyped().GetValue()
			}
		}
	}
	var h scaleHist
	if f := fams[mHTTPDuration]; f != nil {
		for _, m := range f.GetMetric() {
			if m.GetHistogram() == nil || scaleIgnoredRoute(crLabel(m, "http_route")) {
				continue
			}
			h = h.add(scaleHistFromDTO(m.GetHistogram()))
		}
	}
	return inflight, h, nil
}

func scaleHistFromDTO(d *dto.Histogram) scaleHist {
	var h scaleHist
	for _, b := range d.GetBucket() {
		h.bounds = append(h.bounds, b.GetUpperBound())
		h.counts = append(h.counts, float64(b.GetCumulativeCount()))
	}
	if len(h.bounds) == 0 || !math.IsInf(h.bounds[len(h.bounds)-1], 1) {
		h.bounds = append(h.bounds, math.Inf(1))
		h.counts = append(h.counts, float64(d.GetSampleCount()))
	}
	h.total = float64(d.GetSampleCount())
	return h
}

// at is the cumulative count at upper bound b (the largest bound <= b).
func (h scaleHist) at(b float64) float64 {
	c := 0.0
	for i, ub := range h.bounds {
		if ub > b {
			break
		}
		c = h.counts[i]
	}
	return c
}

// add sums two histograms over the union of their bounds.
func (h scaleHist) add(o scaleHist) scaleHist {
	if len(h.bounds) == 0 {
		return o
	}
	if len(o.bounds) == 0 {
		return h
	}
	bounds := slices.Compact(slices.Sorted(slices.Values(slices.Concat(h.bounds, o.bounds))))
	out := scaleHist{bounds: bounds, counts: make([]float64, len(bounds)), total: h.total + o.total}
	for i, b := range bounds {
		out.counts[i] = h.at(b) + o.at(b)
	}
	return out
}

// sub is h minus an earlier snapshot prev of the same counter; a counter
// that went down (the process restarted) counts from zero.
func (h scaleHist) sub(prev scaleHist) scaleHist {
	if h.total < prev.total {
		return h
	}
	out := scaleHist{bounds: h.bounds, counts: make([]float64, len(h.bounds)), total: h.total - prev.total}
	for i, b := range h.bounds {
		out.counts[i] = max(h.counts[i]-prev.at(b), 0)
	}
	return out
}

// quantile estimates the q-quantile by linear interpolation inside the
// bucket that holds it, as Prometheus's histogram_quantile does; in the
// +Inf bucket it answers the largest finite bound. ok false with no samples.
func (h scaleHist) quantile(q float64) (float64, bool) {
	if h.total <= 0 || len(h.bounds) == 0 {
		return 0, false
	}
	rank := q * h.total
	lower, below := 0.0, 0.0
	for i, ub := range h.bounds {
		c := h.counts[i]
		if c >= rank {
			if math.IsInf(ub, 1) {
				return lower, true
			}
			if c == below {
				return ub, true
			}
			return lower + (ub-lower)*(rank-below)/(c-below), true
		}
		lower, below = ub, c
	}
	return lower, true
}

// FleetAutoscaler returns the autoscaler of a running fleet ("cluster run")
// acting through s: the worker groups (thumbnails, mail, webhooks) on their
// JetStream consumers' backlog, through a connection to the fleet's NATS
// servers made at the first step (closed when Run returns), with
// WorkerPolicy(4); the storefronts on their requests in flight and p95
// latency, with StorefrontPolicy from the fleet's storefront count to twice
// it. Nothing happens until Run.
func FleetAutoscaler(s *Supervisor, log *slog.Logger) *Autoscaler {
	storefronts := 1
	if s.fleet != nil && s.fleet.state != nil {
		storefronts = max(s.fleet.state.Storefronts, 1)
	}
	queues := NewNATSQueueSignal(s.NATSURLs, WorkerQueues(), nil)
	groups := map[string]Group{GroupStorefront: {Policy: StorefrontPolicy(storefronts, 2*storefronts), Signal: NewHTTPSignal(nil, 1)}}
	for g := range WorkerQueues() {
		groups[g] = Group{Policy: WorkerPolicy(4), Signal: queues}
	}
	return NewAutoscaler(AutoscalerConfig{Scaler: s, Groups: groups, Log: log})
}
