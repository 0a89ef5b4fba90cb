package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/globomantics/globomantics/internal/platform/sqldb"
)

// Metric families the control room derives its series from.
const (
	mHTTPDuration   = "http_server_request_duration_seconds"
	mHTTPActive     = "http_server_active_requests"
	mPending        = "bus_consumer_pending_messages"
	mAckPending     = "bus_consumer_ack_pending_messages"
	mOutboxBacklog  = "outbox_backlog_rows"
	mSagaCompleted  = "saga_completed_total"
	mCacheRequests  = "cache_requests_total"
	mReplicaLag     = "sqldb_replica_lag_seconds"
	mEdgeBackendUp  = "edge_backend_up"
	maxTraceSummary = 40
)

// point is one scrape of one process, reduced to the series the control
// room draws. NaN means "not measured" (the process has no such metric, or
// this is its first scrape and a rate needs two).
type crPoint struct {
	At         time.Time
	Up         bool
	ReqRate    float64 // requests per second
	ErrRate    float64 // 5xx answers per second
	P50, P95   float64 // seconds, over the interval since the previous scrape
	InFlight   float64
	Queue      float64 // messages pending for the consumers it reports
	Outbox     float64 // rows not yet relayed
	ReplicaLag float64 // seconds, the worst replica it sees
}

// cumulative holds the counters of the previous scrape, for deltas.
type crCumulative struct {
	at      time.Time
	reqs    float64
	errs    float64
	buckets map[float64]float64 // upper bound -> cumulative count, every series summed
}

type consumerStat struct {
	Stream, Consumer    string
	Pending, AckPending float64
}

type backendStat struct {
	Pool, Backend string
	Up            bool
}

// dbEntry is one database of a process's /svc/data/status.
type crDBEntry struct {
	Service string `json:"service"`
	sqldb.Status
}

// procState is what the control room knows of one process.
type crProcState struct {
	proc       Proc
	ring       []crPoint
	families   map[string]*dto.MetricFamily
	prev       *crCumulative
	err        string // the last scrape's error, "" when it worked
	errors     int    // scrape errors since the control room started
	consumers  []consumerStat
	outbox     map[string]float64
	sagas      map[string]float64
	cacheHit   float64
	cacheMiss  float64
	backends   []backendStat
	databases  []crDBEntry
	cacheRatio *float64 // from the data status's product_cache, when served
	faults     *string  // the checkout's fault rules, for checkout processes
	traces     []traceSummary
}

// fleetPoint is one scrape cycle of the whole fleet.
type crFleetPoint struct {
	At         time.Time
	ReqRate    float64
	ErrRate    float64
	P95        float64 // the worst process's
	Queue      float64
	Outbox     float64
	ReplicaLag float64
}

// Run scrapes the fleet every interval until ctx ends, then ends the
// open event streams. It returns ctx's error; call it once.
func (c *ControlRoom) Run(ctx context.Context) error {
	t := time.NewTicker(c.cfg.Interval)
	defer t.Stop()
	defer close(c.stopped)
	for {
		c.Scrape(ctx)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Scrape runs one scrape cycle now: every process's metrics, data status,
// recent traces and fault rules, and the dead letters, each bounded by the
// scrape timeout. Subscribers of /events are told when it is done.
func (c *ControlRoom) Scrape(ctx context.Context) {
	now := c.cfg.Clock.Now()
	procs := c.cfg.Fleet.Procs()
	type result struct {
		name string
		st   crProcState
	}
	results := make(chan result, len(procs))
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for _, p := range procs {
		if p.InternalURL == "" || (p.Kind != "shop" && p.Kind != "edge") {
			continue
		}
		wg.Add(1)
		go func(p Proc) {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			results <- result{p.Name, c.scrapeProc(ctx, p)}
		}(p)
	}
	var dls []deadLetterView
	var dlErr string
	c.mu.Lock()
	dlDue := now.Sub(c.lastDLQ) >= 10*time.Second // listing them reads the whole DLQ stream
	c.mu.Unlock()
	if c.cfg.DeadLetters != nil && dlDue {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dctx, cancel := context.WithTimeout(ctx, c.cfg.ScrapeTimeout)
			defer cancel()
			dls, dlErr = c.deadLetters(dctx)
		}()
	}
	wg.Wait()
	close(results)
	scraped := map[string]crProcState{}
	for r := range results {
		scraped[r.name] = r.st
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	live := map[string]bool{}
	var fp = crFleetPoint{At: now, P95: math.NaN()}
	queues := map[string]float64{}
	outbox := map[string]float64{}
	for _, p := range procs {
		live[p.Name] = true
		s, ok := scraped[p.Name]
		if !ok {
			continue
		}
		old := c.states[p.Name]
		if old == nil {
			old = &crProcState{}
			c.states[p.Name] = old
		}
		pt := c.derive(now, old, &s)
		s.ring = append(old.ring, pt)
		if n := len(s.ring) - c.ringLen; n > 0 {
			s.ring = slices.Clone(s.ring[n:])
		}
		s.errors = old.errors
		if s.err != "" {
			s.errors++
			c.log.Debug("control room scrape failed", "instance", p.Name, "err", s.err)
		}
		*old = s
		if pt.Up {
			fp.ReqRate += crNZ(pt.ReqRate)
			fp.ErrRate += crNZ(pt.ErrRate)
			if !math.IsNaN(pt.P95) && (math.IsNaN(fp.P95) || pt.P95 > fp.P95) {
				fp.P95 = pt.P95
			}
			fp.ReplicaLag = math.Max(fp.ReplicaLag, crNZ(pt.ReplicaLag))
			for _, q := range s.consumers {
				k := q.Stream + "/" + q.Consumer
				queues[k] = math.Max(queues[k], q.Pending)
			}
			for k, v := range s.outbox {
				outbox[k] = math.Max(outbox[k], v)
			}
		}
	}
	for name := range c.states {
		if !live[name] {
			delete(c.states, name)
		}
	}
	for _, v := range queues {
		fp.Queue += v
	}
	for _, v := range outbox {
		fp.Outbox += v
	}
	c.fleet = append(c.fleet, fp)
	if n := len(c.fleet) - c.ringLen; n > 0 {
		c.fleet = slices.Clone(c.fleet[n:])
	}
	if c.cfg.DeadLetters != nil && dlDue {
		c.deadLetterList, c.deadLetterErr, c.lastDLQ = dls, dlErr, now
	}
	c.lastScrape = now
	close(c.updated)
	c.updated = make(chan struct{})
}

// derive turns a scrape into a point, using the previous cumulative
// counters for rates and latency quantiles.
func (c *ControlRoom) derive(now time.Time, old, s *crProcState) crPoint {
	nan := math.NaN()
	pt := crPoint{At: now, Up: s.err == "" && s.families != nil, ReqRate: nan, ErrRate: nan, P50: nan, P95: nan,
		InFlight: nan, Queue: nan, Outbox: nan, ReplicaLag: nan}
	if !pt.Up {
		s.prev = old.prev
		return pt
	}
	cur := &crCumulative{at: now, buckets: map[float64]float64{}}
	hasHTTP := false
	if mf := s.families[mHTTPDuration]; mf != nil && mf.GetType() == dto.MetricType_HISTOGRAM {
		hasHTTP = true
		for _, m := range mf.Metric {
			h := m.GetHistogram()
			n := float64(h.GetSampleCount())
			cur.reqs += n
			if strings.HasPrefix(crLabel(m, "http_response_status_code"), "5") {
				cur.errs += n
			}
			hasInf := false
			for _, b := range h.Bucket {
				cur.buckets[b.GetUpperBound()] += float64(b.GetCumulativeCount())
				hasInf = hasInf || math.IsInf(b.GetUpperBound(), 1)
			}
			if !hasInf {
				cur.buckets[math.Inf(1)] += n
			}
		}
	}
	if hasHTTP {
		if p := old.prev; p != nil && now.After(p.at) {
			dt := now.Sub(p.at).Seconds()
			reqs, errs := cur.reqs-p.reqs, cur.errs-p.errs
			delta := map[float64]float64{}
			reset := reqs < 0
			for ub, v := range cur.buckets {
				d := v - p.buckets[ub]
				if d < 0 {
					reset = true
				}
				delta[ub] = d
			}
			if reset { // the process restarted: its counters began again
				reqs, errs, delta = cur.reqs, cur.errs, cur.buckets
			}
			pt.ReqRate, pt.ErrRate = reqs/dt, math.Max(errs, 0)/dt
			pt.P50, pt.P95 = crQuantile(0.5, delta), crQuantile(0.95, delta)
		}
		s.prev = cur
	}
	if v, ok := crSum(s.families[mHTTPActive]); ok {
		pt.InFlight = v
	}
	if len(s.consumers) > 0 {
		pt.Queue = 0
		for _, q := range s.consumers {
			pt.Queue += q.Pending
		}
	}
	if len(s.outbox) > 0 {
		pt.Outbox = 0
		for _, v := range s.outbox {
			pt.Outbox += v
		}
	}
	for _, d := range s.databases {
		for _, n := range d.Nodes {
			if n.Role == sqldb.RoleReplica && (math.IsNaN(pt.ReplicaLag) || n.LagSeconds > pt.ReplicaLag) {
				pt.ReplicaLag = n.LagSeconds
			}
		}
	}
	if mf := s.families[mReplicaLag]; mf != nil {
		for _, m := range mf.Metric {
			if v := crValue(m); math.IsNaN(pt.ReplicaLag) || v > pt.ReplicaLag {
				pt.ReplicaLag = v
			}
		}
	}
	return pt
}

// crQuantile estimates the q-quantile from histogram bucket counts (upper
// bound -> cumulative count) as scaleHist.quantile does (Prometheus's
// histogram_quantile). NaN without observations.
func crQuantile(q float64, buckets map[float64]float64) float64 {
	bounds := slices.Sorted(maps.Keys(buckets))
	if len(bounds) == 0 {
		return math.NaN()
	}
	h := scaleHist{bounds: bounds, counts: make([]float64, len(bounds)), total: buckets[bounds[len(bounds)-1]]}
	for i, ub := range bounds {
		h.counts[i] = buckets[ub]
	}
	v, ok := h.quantile(q)
	if !ok {
		return math.NaN()
	}
	return v
}

// scrapeProc reads one process: its metrics, and for shop processes its
// data status, recent traces and (checkout) fault rules. Each request is
// bounded by the scrape timeout; only a failed metrics scrape marks the
// process down.
func (c *ControlRoom) scrapeProc(ctx context.Context, p Proc) crProcState {
	s := crProcState{proc: p}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		fams, err := c.scrapeMetrics(ctx, p)
		if err != nil {
			s.err = err.Error()
			return
		}
		s.families = fams
	}()
	var traces []traceSummary
	var dbs []crDBEntry
	var ratio *float64
	var faults *string
	wg.Add(1)
	go func() {
		defer wg.Done()
		if b, err := c.get(ctx, p.InternalURL+c.tracesPath(p), c.tokenFor(p)); err == nil {
			if ts, err := decodeTraceList(bytes.NewReader(b)); err == nil {
				for i := range ts {
					if ts[i].Service == "" {
						ts[i].Service = p.Group
					}
				}
				traces = ts
			}
		}
	}()
	if p.Kind == "shop" {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, err := c.get(ctx, p.InternalURL+c.cfg.DataStatusPath, c.cfg.OperatorToken)
			if err != nil {
				return
			}
			var body struct {
				Databases    []crDBEntry `json:"databases"`
				ProductCache *struct {
					HitRatio float64 `json:"hit_ratio"`
				} `json:"product_cache"`
			}
			if json.Unmarshal(b, &body) == nil {
				dbs = body.Databases
				if body.ProductCache != nil {
					ratio = &body.ProductCache.HitRatio
				}
			}
		}()
		if slices.Contains(p.Services, "checkout") {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if b, err := c.get(ctx, p.InternalURL+c.cfg.FaultsPath, c.cfg.OperatorToken); err == nil {
					r := strings.TrimSpace(string(b))
					faults = &r
				}
			}()
		}
	}
	wg.Wait()
	s.traces, s.databases, s.cacheRatio, s.faults = traces, dbs, ratio, faults
	if s.families != nil {
		s.reduce()
	}
	return s
}

// reduce reads the async-layer and edge families into their views.
func (s *crProcState) reduce() {
	byKey := map[string]*consumerStat{}
	for _, name := range []string{mPending, mAckPending} {
		mf := s.families[name]
		if mf == nil {
			continue
		}
		for _, m := range mf.Metric {
			st, co := crLabel(m, "stream"), crLabel(m, "consumer")
			k := st + "/" + co
			cs := byKey[k]
			if cs == nil {
				cs = &consumerStat{Stream: st, Consumer: co}
				byKey[k] = cs
			}
			if name == mPending {
				cs.Pending += crValue(m)
			} else {
				cs.AckPending += crValue(m)
			}
		}
	}
	for _, cs := range byKey {
		s.consumers = append(s.consumers, *cs)
	}
	sort.Slice(s.consumers, func(i, j int) bool {
		return s.consumers[i].Stream+"/"+s.consumers[i].Consumer < s.consumers[j].Stream+"/"+s.consumers[j].Consumer
	})
	if mf := s.families[mOutboxBacklog]; mf != nil {
		s.outbox = map[string]float64{}
		for _, m := range mf.Metric {
			s.outbox[crLabel(m, "store")] += crValue(m)
		}
	}
	if mf := s.families[mSagaCompleted]; mf != nil {
		s.sagas = map[string]float64{}
		for _, m := range mf.Metric {
			s.sagas[crLabel(m, "outcome")] += crValue(m)
		}
	}
	if mf := s.families[mCacheRequests]; mf != nil {
		for _, m := range mf.Metric {
			switch crLabel(m, "result") {
			case "hit":
				s.cacheHit += crValue(m)
			case "miss":
				s.cacheMiss += crValue(m)
			}
		}
	}
	if mf := s.families[mEdgeBackendUp]; mf != nil {
		for _, m := range mf.Metric {
			s.backends = append(s.backends, backendStat{Pool: crLabel(m, "pool"), Backend: crLabel(m, "backend"), Up: crValue(m) >= 1})
		}
		sort.Slice(s.backends, func(i, j int) bool {
			if s.backends[i].Pool != s.backends[j].Pool {
				return s.backends[i].Pool < s.backends[j].Pool
			}
			return s.backends[i].Backend < s.backends[j].Backend
		})
	}
}

// scrapeMetrics fetches and parses one process's Prometheus text.
func (c *ControlRoom) scrapeMetrics(ctx context.Context, p Proc) (map[string]*dto.MetricFamily, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.ScrapeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.InternalURL+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := c.cfg.Client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET /metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return nil, fmt.Errorf("parse /metrics: %w", err)
	}
	return fams, nil
}

// get fetches url with the bearer token, bounded by the scrape timeout;
// an error for any status but 200.
func (c *ControlRoom) get(ctx context.Context, url, token string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.ScrapeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.cfg.Client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, &crHTTPError{Path: req.URL.Path, Status: resp.StatusCode}
	}
	return b, nil
}

// crHTTPError is an answer other than 200 from a process.
type crHTTPError struct {
	Path   string
	Status int
}

func (e *crHTTPError) Error() string {
	return fmt.Sprintf("GET %s: %d %s", e.Path, e.Status, http.StatusText(e.Status))
}

func (c *ControlRoom) tracesPath(p Proc) string {
	if p.Kind == "edge" {
		return c.cfg.EdgeTracesPath
	}
	return c.cfg.TracesPath
}

func (c *ControlRoom) tokenFor(p Proc) string {
	if p.Kind == "edge" {
		return c.cfg.EdgeToken
	}
	return c.cfg.OperatorToken
}

// crLabel is the value of m's label name ("" when it has none).
func crLabel(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// value is a gauge's, counter's or untyped sample's value.
func crValue(m *dto.Metric) float64 {
	switch {
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	}
	return 0
}

// sum adds every series of a gauge or counter family.
func crSum(mf *dto.MetricFamily) (float64, bool) {
	if mf == nil || len(mf.Metric) == 0 {
		return 0, false
	}
	var v float64
	for _, m := range mf.Metric {
		v += crValue(m)
	}
	return v, true
}

func crNZ(f float64) float64 {
	if math.IsNaN(f) {
		return 0
	}
	return f
}
