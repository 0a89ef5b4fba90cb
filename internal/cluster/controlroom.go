package cluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"embed"
	"encoding/base64"
	"html/template"
	"io"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/globomantics/globomantics/internal/platform/bus"
	"github.com/globomantics/globomantics/internal/platform/clock"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/httpx"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
)

// FleetView is what the control room needs of the supervisor: the
// processes it runs, and killing one (the supervisor then restarts it).
// Kill fails for a name the fleet does not hold.
type FleetView interface {
	Procs() []Proc
	Kill(name string) error
}

var (
	_ FleetView    = (*Supervisor)(nil)
	_ http.Handler = (*ControlRoom)(nil)
)

// ControlRoomConfig is what a control room is built from. Fleet is
// required; the zero value of every other field has a working default.
type ControlRoomConfig struct {
	Fleet FleetView
	// Decisions, if set, lists the autoscaler's recent decisions, newest
	// last, one line each.
	Decisions func() []string
	// DeadLetters, if set, lists the broker's dead letters, oldest first
	// (bus.(*Bus).DeadLetters with a filter); the newest 20 are shown.
	DeadLetters func(ctx context.Context) ([]bus.DeadLetter, error)
	// OperatorToken is the operator credential presented as a bearer token
	// to the shop processes' /svc/ operator endpoints (traces, data status,
	// checkout faults).
	OperatorToken string
	// EdgeToken is the bearer token of the edge's internal listener.
	EdgeToken string
	// TracesPath is where a shop process serves its recent spans
	// (default /svc/obs/v1/traces); EdgeTracesPath the same on the edge's
	// internal listener (default /_edge/obs/v1/traces).
	TracesPath     string
	EdgeTracesPath string
	// FaultsPath is the checkout's fault rules endpoint (default
	// /svc/checkout/v1/admin/faults); DataStatusPath a shop process's data
	// status (default /svc/data/status).
	FaultsPath     string
	DataStatusPath string
	// Client makes every request to the fleet (default: a client with no
	// overall timeout; each request is bounded by ScrapeTimeout).
	Client *http.Client
	// Clock stamps the samples that rates are computed from (default the
	// wall clock).
	Clock clock.Clock
	Log   *slog.Logger
	// Interval between scrapes (2 s), ScrapeTimeout for each request to a
	// process (1.5 s), Window of samples kept (10 min).
	Interval      time.Duration
	ScrapeTimeout time.Duration
	Window        time.Duration
}

// ControlRoom is the fleet's operations page: it scrapes every process
// (Run), keeps a window of samples, and serves the overview, traces, the
// fleet's metrics and the fault knobs (ServeHTTP). Safe for concurrent use.
type ControlRoom struct {
	cfg     ControlRoomConfig
	log     *slog.Logger
	ringLen int
	csrf    string
	tmpl    *template.Template
	mux     *http.ServeMux
	cop     *http.CrossOriginProtection

	mu             sync.Mutex
	states         map[string]*crProcState
	fleet          []crFleetPoint
	deadLetterList []deadLetterView
	deadLetterErr  string
	lastScrape     time.Time
	lastDLQ        time.Time     // when the dead letters were last listed
	updated        chan struct{} // closed and replaced after every scrape
	stopped        chan struct{} // closed when Run returns: event streams end
	flashes        map[string]crFlash
	flashOrder     []string
	lastRules      string // the fault rules last set from here
}

type crFlash struct {
	Message string
	Error   bool
}

//go:embed controlroom
var controlRoomFS embed.FS

// NewControlRoom returns a control room over cfg.Fleet. It does not scrape
// until Run (or Scrape) is called.
func NewControlRoom(cfg ControlRoomConfig) *ControlRoom {
	if cfg.Fleet == nil {
		panic("cluster.NewControlRoom: no fleet")
	}
	if cfg.TracesPath == "" {
		cfg.TracesPath = "/svc/obs/v1/traces"
	}
	if cfg.EdgeTracesPath == "" {
		cfg.EdgeTracesPath = "/_edge/obs/v1/traces"
	}
	if cfg.FaultsPath == "" {
		cfg.FaultsPath = "/svc/checkout/v1/admin/faults"
	}
	if cfg.DataStatusPath == "" {
		cfg.DataStatusPath = "/svc/data/status"
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{}
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 2 * time.Second
	}
	if cfg.ScrapeTimeout <= 0 {
		cfg.ScrapeTimeout = 1500 * time.Millisecond
	}
	if cfg.Window <= 0 {
		cfg.Window = 10 * time.Minute
	}
	var tok [24]byte
	_, _ = rand.Read(tok[:])
	c := &ControlRoom{
		cfg: cfg, log: cfg.Log, ringLen: max(int(cfg.Window/cfg.Interval), 2),
		csrf:    base64.RawURLEncoding.EncodeToString(tok[:]),
		states:  map[string]*crProcState{},
		updated: make(chan struct{}),
		stopped: make(chan struct{}),
		flashes: map[string]crFlash{},
		cop:     http.NewCrossOriginProtection(),
	}
	c.tmpl = template.Must(template.New("").Funcs(template.FuncMap{
		"human": humanValue,
		"ms": func(d time.Duration) string {
			return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 1, 64) + " ms"
		},
		"when":  func(t time.Time) string { return t.UTC().Format("15:04:05") },
		"rate":  func(f *float64) string { return crOptional(f, "/s") },
		"secs":  func(f *float64) string { return crOptional(f, "s") },
		"count": func(f *float64) string { return crOptional(f, "") },
		"deref": func(f *float64) float64 { return *f },
	}).ParseFS(controlRoomFS, "controlroom/*.html"))
	c.mux = http.NewServeMux()
	c.mux.HandleFunc("GET /{$}", c.serveOverview)
	c.mux.HandleFunc("GET /live", c.serveLive)
	c.mux.HandleFunc("GET /events", c.serveEvents)
	c.mux.HandleFunc("GET /api/overview", c.serveOverviewJSON)
	c.mux.HandleFunc("GET /traces/{id}", c.serveTrace)
	c.mux.HandleFunc("GET /metrics", c.serveMetrics)
	c.mux.HandleFunc("POST /actions/{action}", c.serveAction)
	return c
}

// ServeHTTP serves the control room:
//
//	GET  /                  the overview page (live by server-sent events, or meta refresh)
//	GET  /live              the overview's live part, as an HTML fragment
//	GET  /events            server-sent events: the live fragment after every scrape
//	GET  /api/overview      the overview as JSON
//	GET  /traces/{id}       one trace's spans from every process, as a waterfall
//	GET  /metrics           every process's metrics, labelled instance and group, and the control room's own
//	POST /actions/kill      kill a process (name)
//	POST /actions/latency   slow a service's calls from checkout (service, delay)
//	POST /actions/step      fail a saga step (when, step, action, times)
//	POST /actions/faults    replace the fault rules (rules)
//	POST /actions/clear     clear every fault rule
//
// POSTs need the form's CSRF token and a same-origin request (403
// otherwise); bad input is a 400 that changes nothing.
func (c *ControlRoom) ServeHTTP(w http.ResponseWriter, r *http.Request) { c.mux.ServeHTTP(w, r) }

// ---- the overview ----

// Overview is what the overview page shows, as /api/overview serves it.
type Overview struct {
	At          time.Time          `json:"at"`
	ScrapedAt   time.Time          `json:"scraped_at"` // the last scrape; zero before the first
	Processes   []ProcView         `json:"processes"`
	Groups      []GroupView        `json:"groups"`
	Consumers   []ConsumerView     `json:"consumers"`
	Outbox      []OutboxView       `json:"outbox"`
	Databases   []DatabaseView     `json:"databases"`
	Shards      []ShardView        `json:"shards"`
	Sagas       map[string]float64 `json:"sagas"`
	CacheHit    *float64           `json:"cache_hit_ratio"`
	Backends    []BackendView      `json:"edge_backends"`
	Traces      []TraceView        `json:"traces"`
	DeadLetters []deadLetterView   `json:"dead_letters"`
	DLError     string             `json:"dead_letters_error,omitempty"`
	Decisions   []string           `json:"autoscaler_decisions"`
	Faults      []FaultView        `json:"faults"`
	Fleet       FleetNow           `json:"fleet"`

	charts overviewCharts
}

// FleetNow is the latest fleet-wide sample.
type FleetNow struct {
	RequestRate float64  `json:"request_rate"`
	ErrorRate   float64  `json:"error_rate"`
	P95Seconds  *float64 `json:"p95_seconds"`
	Queue       float64  `json:"queue_depth"`
	Outbox      float64  `json:"outbox_backlog"`
	ReplicaLag  float64  `json:"replica_lag_seconds"`
}

// ProcView is one process as the overview shows it. Rates and latencies
// are nil until measured.
type ProcView struct {
	Name        string   `json:"name"`
	Group       string   `json:"group"`
	Kind        string   `json:"kind"`
	State       string   `json:"state"`
	PID         int      `json:"pid"`
	Restarts    int      `json:"restarts"`
	Uptime      string   `json:"uptime"`
	LastExit    string   `json:"last_exit,omitempty"`
	PublicURL   string   `json:"public_url,omitempty"`
	InternalURL string   `json:"internal_url,omitempty"`
	Services    []string `json:"services,omitempty"`
	Scraped     bool     `json:"scraped"` // whether the control room reads its metrics
	Up          bool     `json:"up"`      // whether its last scrape worked
	ScrapeError string   `json:"scrape_error,omitempty"`
	RequestRate *float64 `json:"request_rate"`
	ErrorRate   *float64 `json:"error_rate"`
	P50         *float64 `json:"p50_seconds"`
	P95         *float64 `json:"p95_seconds"`
	InFlight    *float64 `json:"in_flight"`

	RateSpark    template.HTML `json:"-"`
	LatencySpark template.HTML `json:"-"`
}

// GroupView counts a group's processes by state.
type GroupView struct {
	Name  string `json:"name"`
	Total int    `json:"total"`
	Ready int    `json:"ready"`
}

// ConsumerView is a durable consumer's backlog, as the processes running it report.
type ConsumerView struct {
	Stream     string  `json:"stream"`
	Consumer   string  `json:"consumer"`
	Pending    float64 `json:"pending"`
	AckPending float64 `json:"ack_pending"`
}

// OutboxView is one store's relay backlog.
type OutboxView struct {
	Store string  `json:"store"`
	Rows  float64 `json:"rows"`
}

// DatabaseView is one database cluster as the processes using it see it.
type DatabaseView struct {
	Name     string     `json:"name"`
	Primary  string     `json:"primary"`
	Nodes    []NodeView `json:"nodes"`
	MaxLag   float64    `json:"max_lag_seconds"`
	Reporter string     `json:"reported_by"`
}

// NodeView is one database node.
type NodeView struct {
	Addr       string  `json:"addr"`
	Role       string  `json:"role"`
	State      string  `json:"state"`
	LagSeconds float64 `json:"lag_seconds"`
	Reads      int64   `json:"reads"`
	InRotation bool    `json:"in_rotation"` // serving reads (a primary: writes too)
}

// ShardView is one node of a sharded service's database.
type ShardView struct {
	Service string `json:"service"`
	Node    string `json:"node"`
	Primary string `json:"primary"`
}

// BackendView is one edge backend's health.
type BackendView struct {
	Edge    string `json:"edge"`
	Pool    string `json:"pool"`
	Backend string `json:"backend"`
	Up      bool   `json:"up"`
}

// TraceView is one recent trace, merged from every process that holds
// spans of it.
type TraceView struct {
	ID       string        `json:"trace_id"`
	Root     string        `json:"root"`
	Start    time.Time     `json:"start"`
	Duration time.Duration `json:"duration_ns"`
	Spans    int           `json:"spans"`
	Services []string      `json:"services"`
	Error    bool          `json:"error"`
}

// FaultView is the fault rules one checkout process reports.
type FaultView struct {
	Instance string `json:"instance"`
	Rules    string `json:"rules"`
	Known    bool   `json:"known"` // false when the control room could not read them
}

type deadLetterView struct {
	ID         uint64    `json:"id"`
	Consumer   string    `json:"consumer"`
	Subject    string    `json:"subject"`
	Deliveries int       `json:"deliveries"`
	Error      string    `json:"error"`
	FailedAt   time.Time `json:"failed_at"`
}

type overviewCharts struct {
	Rate, Latency, Queue, Lag template.HTML
}

func (c *ControlRoom) deadLetters(ctx context.Context) ([]deadLetterView, string) {
	dls, err := c.cfg.DeadLetters(ctx)
	if err != nil {
		return nil, errs.Detail(err)
	}
	if len(dls) > 20 {
		dls = dls[len(dls)-20:]
	}
	out := make([]deadLetterView, 0, len(dls))
	for i := len(dls) - 1; i >= 0; i-- {
		d := dls[i]
		out = append(out, deadLetterView{ID: d.ID, Consumer: d.Consumer, Subject: d.Subject, Deliveries: d.Deliveries, Error: d.Error, FailedAt: d.FailedAt})
	}
	return out, ""
}

// crNoiseRoots are the requests of the control room, the supervisor and the
// load balancers themselves: their traces are not listed.
var crNoiseRoots = map[string]bool{
	"GET /metrics": true, "GET /readyz": true, "GET /healthz": true, "GET /svc/obs/v1/traces": true,
	"GET /svc/data/status": true, "GET /svc/checkout/v1/admin/faults": true, "GET /_edge/obs/v1/traces": true,
	"GET /_edge/metrics": true, "GET /_edge/status": true,
}

func crPtr(f float64) *float64 {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil
	}
	return &f
}

// overview builds the page's data from the latest scrape and the fleet's
// current process list; draw also draws its charts and sparklines (the
// pages show them, the JSON does not).
func (c *ControlRoom) overview(draw bool) *Overview {
	now := c.cfg.Clock.Now()
	procs := c.cfg.Fleet.Procs()
	sort.Slice(procs, func(i, j int) bool {
		if procs[i].Group != procs[j].Group {
			return procs[i].Group < procs[j].Group
		}
		return procs[i].Name < procs[j].Name
	})
	c.mu.Lock()
	defer c.mu.Unlock()
	o := &Overview{At: now, Sagas: map[string]float64{}}
	groups := map[string]*GroupView{}
	var groupOrder []string
	consumers := map[string]*ConsumerView{}
	outbox := map[string]float64{}
	dbs := map[string]*DatabaseView{}
	traces := map[string]*TraceView{}
	traceSvc := map[string]map[string]bool{}
	var hit, miss float64
	for _, p := range procs {
		g := groups[p.Group]
		if g == nil {
			g = &GroupView{Name: p.Group}
			groups[p.Group] = g
			groupOrder = append(groupOrder, p.Group)
		}
		g.Total++
		if p.State == "ready" {
			g.Ready++
		}
		v := ProcView{Name: p.Name, Group: p.Group, Kind: p.Kind, State: p.State, PID: p.PID, Restarts: p.Restarts,
			LastExit: p.LastExit, PublicURL: p.PublicURL, InternalURL: p.InternalURL, Services: p.Services}
		if p.PID != 0 && !p.Started.IsZero() {
			v.Uptime = now.Sub(p.Started).Round(time.Second).String()
		}
		s := c.states[p.Name]
		if s != nil && len(s.ring) > 0 {
			v.Scraped = true
			last := s.ring[len(s.ring)-1]
			v.Up, v.ScrapeError = last.Up, s.err
			v.RequestRate, v.ErrorRate, v.P50, v.P95, v.InFlight = crPtr(last.ReqRate), crPtr(last.ErrRate), crPtr(last.P50), crPtr(last.P95), crPtr(last.InFlight)
			if draw {
				rates := make([]float64, len(s.ring))
				lats := make([]float64, len(s.ring))
				for i, pt := range s.ring {
					rates[i], lats[i] = pt.ReqRate, pt.P95
				}
				v.RateSpark = sparkline(p.Name+" requests per second", crTail(rates, 90), "/s", 120, 24)
				v.LatencySpark = sparkline(p.Name+" p95 latency", crTail(lats, 90), "s", 120, 24)
			}
			if last.Up {
				for _, q := range s.consumers {
					k := q.Stream + "/" + q.Consumer
					cv := consumers[k]
					if cv == nil {
						cv = &ConsumerView{Stream: q.Stream, Consumer: q.Consumer}
						consumers[k] = cv
					}
					cv.Pending, cv.AckPending = math.Max(cv.Pending, q.Pending), math.Max(cv.AckPending, q.AckPending)
				}
				for k, n := range s.outbox {
					outbox[k] = math.Max(outbox[k], n)
				}
				for k, n := range s.sagas {
					o.Sagas[k] += n
				}
				hit, miss = hit+s.cacheHit, miss+s.cacheMiss
				for _, b := range s.backends {
					o.Backends = append(o.Backends, BackendView{Edge: p.Name, Pool: b.Pool, Backend: b.Backend, Up: b.Up})
				}
			}
			for _, d := range s.databases {
				dv := dbs[d.Service]
				if dv == nil {
					dv = &DatabaseView{Name: d.Service, Primary: d.Primary, Reporter: p.Name}
					for _, n := range d.Nodes {
						dv.Nodes = append(dv.Nodes, NodeView{Addr: n.Addr, Role: string(n.Role), State: string(n.State), LagSeconds: n.LagSeconds, Reads: n.Reads,
							InRotation: n.State == sqldb.StateInRotation})
						if dv.Primary == "" && n.Role == sqldb.RolePrimary && n.State == sqldb.StateInRotation {
							dv.Primary = n.Addr // a single node (SQLite) names no primary
						}
					}
					dbs[d.Service] = dv
				}
				for _, n := range d.Nodes {
					dv.MaxLag = math.Max(dv.MaxLag, n.LagSeconds)
				}
			}
			if slices.Contains(p.Services, "checkout") {
				fv := FaultView{Instance: p.Name}
				if s.faults != nil {
					fv.Rules, fv.Known = *s.faults, true
				}
				o.Faults = append(o.Faults, fv)
			}
			for _, t := range s.traces {
				if crNoiseRoots[t.Root] {
					continue
				}
				tv := traces[t.TraceID]
				end := t.Start.Add(t.Duration)
				if tv == nil {
					tv = &TraceView{ID: t.TraceID, Root: t.Root, Start: t.Start, Duration: t.Duration}
					traces[t.TraceID] = tv
					traceSvc[t.TraceID] = map[string]bool{}
				} else {
					if t.Start.Before(tv.Start) {
						tv.Root, tv.Duration, tv.Start = t.Root, tv.Start.Add(tv.Duration).Sub(t.Start), t.Start
					}
					if e := tv.Start.Add(tv.Duration); end.After(e) {
						tv.Duration = end.Sub(tv.Start)
					}
				}
				tv.Spans += t.Spans
				tv.Error = tv.Error || t.Error
				traceSvc[t.TraceID][t.Service] = true
			}
		}
		o.Processes = append(o.Processes, v)
	}
	for _, g := range groupOrder {
		o.Groups = append(o.Groups, *groups[g])
	}
	for _, cv := range consumers {
		o.Consumers = append(o.Consumers, *cv)
	}
	sort.Slice(o.Consumers, func(i, j int) bool {
		return o.Consumers[i].Stream+"/"+o.Consumers[i].Consumer < o.Consumers[j].Stream+"/"+o.Consumers[j].Consumer
	})
	for k, n := range outbox {
		o.Outbox = append(o.Outbox, OutboxView{Store: k, Rows: n})
	}
	sort.Slice(o.Outbox, func(i, j int) bool { return o.Outbox[i].Store < o.Outbox[j].Store })
	for _, dv := range dbs {
		o.Databases = append(o.Databases, *dv)
		if svc, node, ok := strings.Cut(dv.Name, "#"); ok {
			o.Shards = append(o.Shards, ShardView{Service: svc, Node: node, Primary: dv.Primary})
		}
	}
	sort.Slice(o.Databases, func(i, j int) bool { return o.Databases[i].Name < o.Databases[j].Name })
	sort.Slice(o.Shards, func(i, j int) bool {
		return o.Shards[i].Service+"#"+o.Shards[i].Node < o.Shards[j].Service+"#"+o.Shards[j].Node
	})
	if hit+miss > 0 {
		o.CacheHit = crPtr(hit / (hit + miss))
	} else {
		for _, p := range procs { // the catalog's product cache, from its data status
			if s := c.states[p.Name]; s != nil && s.cacheRatio != nil {
				o.CacheHit = crPtr(*s.cacheRatio)
				break
			}
		}
	}
	for id, tv := range traces {
		for svc := range traceSvc[id] {
			tv.Services = append(tv.Services, svc)
		}
		sort.Strings(tv.Services)
		o.Traces = append(o.Traces, *tv)
	}
	sort.Slice(o.Traces, func(i, j int) bool { return o.Traces[i].Start.After(o.Traces[j].Start) })
	if len(o.Traces) > maxTraceSummary {
		o.Traces = o.Traces[:maxTraceSummary]
	}
	o.DeadLetters, o.DLError, o.ScrapedAt = c.deadLetterList, c.deadLetterErr, c.lastScrape
	if c.cfg.Decisions != nil {
		o.Decisions = crTail(c.cfg.Decisions(), 15)
	}
	if n := len(c.fleet); n > 0 {
		f := c.fleet[n-1]
		o.Fleet = FleetNow{RequestRate: f.ReqRate, ErrorRate: f.ErrRate, P95Seconds: crPtr(f.P95), Queue: f.Queue, Outbox: f.Outbox, ReplicaLag: f.ReplicaLag}
	}
	if draw {
		o.charts = c.charts()
	}
	return o
}

func (c *ControlRoom) charts() overviewCharts {
	n := len(c.fleet)
	rate, errRate, p95, queue, outbox, lag := make([]float64, n), make([]float64, n), make([]float64, n), make([]float64, n), make([]float64, n), make([]float64, n)
	for i, f := range c.fleet {
		rate[i], errRate[i], p95[i], queue[i], outbox[i], lag[i] = f.ReqRate, f.ErrRate, f.P95, f.Queue, f.Outbox, f.ReplicaLag
	}
	span := time.Duration(n) * c.cfg.Interval
	return overviewCharts{
		Rate:    lineChart("Requests per second, fleet", "/s", span, crSeries{"all", rate, "#1f5fa8", false}, crSeries{"5xx", errRate, "#b42318", true}),
		Latency: lineChart("p95 latency, worst process", "s", span, crSeries{"p95", p95, "#6e40c9", false}),
		Queue:   lineChart("Backlogs", "", span, crSeries{"queue", queue, "#1f5fa8", false}, crSeries{"outbox", outbox, "#9a6700", true}),
		Lag:     lineChart("Replica lag, worst replica", "s", span, crSeries{"lag", lag, "#6e40c9", false}),
	}
}

// optional formats a measured value, or a dash when there is none.
func crOptional(f *float64, unit string) string {
	if f == nil {
		return "–"
	}
	return humanValue(*f, unit)
}

func crTail[T any](s []T, n int) []T {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// pageData is what the templates get.
type crPage struct {
	*Overview
	Charts overviewCharts
	CSRF   string
	Nonce  string
	Flash  *crFlash
	Procs  []Proc // for the kill form's choices
	Title  string
	Trace  *traceView
}

func (c *ControlRoom) serveOverview(w http.ResponseWriter, r *http.Request) {
	o := c.overview(true)
	d := &crPage{Overview: o, Charts: o.charts, CSRF: c.csrf, Title: "Control room"}
	if id := r.URL.Query().Get("flash"); id != "" {
		c.mu.Lock()
		if f, ok := c.flashes[id]; ok {
			d.Flash = &f
		}
		c.mu.Unlock()
	}
	c.render(w, http.StatusOK, "overview.html", d)
}

func (c *ControlRoom) serveLive(w http.ResponseWriter, r *http.Request) {
	o := c.overview(true)
	var b bytes.Buffer
	if err := c.tmpl.ExecuteTemplate(&b, "live", &crPage{Overview: o, Charts: o.charts}); err != nil {
		c.log.Error("control room: render failed", "template", "live", "err", err)
		errs.WriteProblem(w, r, errs.E(errs.Other, err))
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(b.Bytes())
}

func (c *ControlRoom) serveOverviewJSON(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	httpx.WriteJSON(w, http.StatusOK, c.overview(false))
}

// serveEvents streams the live fragment as a server-sent event after every
// scrape, until the client goes away.
func (c *ControlRoom) serveEvents(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	send := func() bool {
		o := c.overview(true)
		var b bytes.Buffer
		if err := c.tmpl.ExecuteTemplate(&b, "live", &crPage{Overview: o, Charts: o.charts}); err != nil {
			c.log.Error("control room: render failed", "template", "live", "err", err)
			return false
		}
		var ev strings.Builder
		ev.WriteString("event: live\n")
		for line := range strings.SplitSeq(b.String(), "\n") {
			ev.WriteString("data: ")
			ev.WriteString(strings.TrimRight(line, "\r"))
			ev.WriteString("\n")
		}
		ev.WriteString("\n")
		if _, err := io.WriteString(w, ev.String()); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	// The channel of the next update is taken before the client hears
	// anything, and again before each send, so that no scrape between the
	// two goes unsent.
	next := func() <-chan struct{} {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.updated
	}
	ch := next()
	if _, err := io.WriteString(w, "retry: 3000\n\n"); err != nil {
		return
	}
	_ = rc.Flush()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-c.stopped:
			return
		case <-ch:
			ch = next()
			if !send() {
				return
			}
		}
	}
}

// render executes a page template into a buffer first, so that a failure is
// a clean 500, and sets the page's security headers.
func (c *ControlRoom) render(w http.ResponseWriter, status int, name string, d *crPage) {
	var nonce [12]byte
	_, _ = rand.Read(nonce[:])
	d.Nonce = base64.RawStdEncoding.EncodeToString(nonce[:])
	d.Procs = c.cfg.Fleet.Procs()
	sort.Slice(d.Procs, func(i, j int) bool { return d.Procs[i].Name < d.Procs[j].Name })
	var b bytes.Buffer
	if err := c.tmpl.ExecuteTemplate(&b, name, d); err != nil {
		c.log.Error("control room: render failed", "template", name, "err", err)
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'nonce-"+d.Nonce+"'; script-src 'nonce-"+d.Nonce+"'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

// fail shows err on a page with its status: the client-safe message only.
func (c *ControlRoom) fail(w http.ResponseWriter, err error) {
	f := crFlash{Message: errs.Detail(err), Error: true}
	c.render(w, errs.KindOf(err).Status(), "error.html", &crPage{Overview: &Overview{}, Flash: &f, Title: errs.KindOf(err).Title()})
}
