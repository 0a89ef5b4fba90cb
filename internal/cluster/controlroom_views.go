package cluster

// The trace page and the fleet's metrics.

import (
	"bytes"
	"context"
	"errors"
	"html/template"
	"log/slog"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"google.golang.org/protobuf/proto"

	"github.com/globomantics/globomantics/internal/platform/bus"
	"github.com/globomantics/globomantics/internal/platform/errs"
)

type traceView struct {
	ID       string
	Start    time.Time
	Duration time.Duration
	Rows     []spanRow
	Services []string
	Missing  []string // processes that could not be asked
}

type spanRow struct {
	traceSpan
	Depth    int
	Duration time.Duration
	Bar      template.HTML
	Failed   bool
}

var crTraceIDPattern = regexp.MustCompile(`^[0-9a-f]{32}$`)

func (c *ControlRoom) serveTrace(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !crTraceIDPattern.MatchString(id) {
		c.fail(w, errs.E(errs.BadRequest, errs.Msg("a trace id is 32 lowercase hex digits")))
		return
	}
	tv := c.trace(r.Context(), id)
	if len(tv.Rows) == 0 {
		c.fail(w, errs.E(errs.NotFound, errs.Msg("no process holds spans of trace %s (they keep only recent ones)", id)))
		return
	}
	c.render(w, http.StatusOK, "trace.html", &crPage{Overview: &Overview{}, Trace: tv, Title: "Trace " + id})
}

// trace gathers one trace's spans from every process and lays them out as
// a tree in time order.
func (c *ControlRoom) trace(ctx context.Context, id string) *traceView {
	var procs []Proc
	for _, p := range c.cfg.Fleet.Procs() {
		if p.InternalURL != "" && (p.Kind == "shop" || p.Kind == "edge") {
			procs = append(procs, p)
		}
	}
	spans := make([][]traceSpan, len(procs))
	failed := make([]bool, len(procs))
	var wg sync.WaitGroup
	for i, p := range procs {
		wg.Go(func() {
			b, err := c.get(ctx, p.InternalURL+c.tracesPath(p)+"?trace_id="+id, c.tokenFor(p))
			var he *crHTTPError
			if errors.As(err, &he) && he.Status == http.StatusNotFound {
				return // it holds no span of the trace
			}
			if err != nil {
				failed[i] = true
				return
			}
			ss, err := decodeTrace(bytes.NewReader(b))
			if err != nil {
				failed[i] = true
				return
			}
			for j := range ss {
				ss[j].Process = p.Name
				if ss[j].Service == "" {
					ss[j].Service = p.Group
				}
			}
			spans[i] = ss
		})
	}
	wg.Wait()
	tv := &traceView{ID: id}
	var all []traceSpan
	seen := map[string]bool{}
	svcs := map[string]bool{}
	for i, ss := range spans {
		if failed[i] {
			tv.Missing = append(tv.Missing, procs[i].Name)
		}
		for _, s := range ss {
			if s.TraceID != "" && s.TraceID != id || seen[s.SpanID] {
				continue
			}
			seen[s.SpanID] = true
			all = append(all, s)
			svcs[s.Service] = true
		}
	}
	if len(all) == 0 {
		return tv
	}
	for s := range svcs {
		tv.Services = append(tv.Services, s)
	}
	sort.Strings(tv.Services)
	sort.Slice(all, func(i, j int) bool { return all[i].Start.Before(all[j].Start) })
	tv.Start = all[0].Start
	end := all[0].End
	children := map[string][]traceSpan{}
	var roots []traceSpan
	for _, s := range all {
		if s.End.After(end) {
			end = s.End
		}
		if s.ParentID == "" || !seen[s.ParentID] {
			roots = append(roots, s)
		} else {
			children[s.ParentID] = append(children[s.ParentID], s)
		}
	}
	tv.Duration = end.Sub(tv.Start)
	var walk func(s traceSpan, depth int)
	walk = func(s traceSpan, depth int) {
		failed := strings.EqualFold(s.Status, "error")
		tv.Rows = append(tv.Rows, spanRow{traceSpan: s, Depth: min(depth, 9), Duration: s.End.Sub(s.Start), Failed: failed,
			Bar: waterfallBar(s.Start.Sub(tv.Start), s.End.Sub(s.Start), tv.Duration, failed)})
		for _, ch := range children[s.SpanID] {
			walk(ch, depth+1)
		}
	}
	for _, s := range roots {
		walk(s, 0)
	}
	return tv
}

// serveMetrics writes every process's last scraped families in the
// Prometheus text format with instance and group labels added, followed by
// the control room's own: up{instance,group} and
// controlroom_scrape_errors_total{instance}.
func (c *ControlRoom) serveMetrics(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	merged := map[string]*dto.MetricFamily{}
	up := &dto.MetricFamily{Name: proto.String("up"), Help: proto.String("1 if the control room's last scrape of the instance worked, else 0."), Type: dto.MetricType_GAUGE.Enum()}
	scrapeErrs := &dto.MetricFamily{Name: proto.String("controlroom_scrape_errors_total"), Help: proto.String("Failed scrapes of the instance since the control room started."), Type: dto.MetricType_COUNTER.Enum()}
	names := make([]string, 0, len(c.states))
	for n := range c.states {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		s := c.states[n]
		extra := []*dto.LabelPair{{Name: proto.String("instance"), Value: proto.String(n)}, {Name: proto.String("group"), Value: proto.String(s.proc.Group)}}
		upv := 0.0
		if len(s.ring) > 0 && s.ring[len(s.ring)-1].Up {
			upv = 1
		}
		up.Metric = append(up.Metric, &dto.Metric{Label: extra, Gauge: &dto.Gauge{Value: proto.Float64(upv)}})
		scrapeErrs.Metric = append(scrapeErrs.Metric, &dto.Metric{Label: extra[:1], Counter: &dto.Counter{Value: proto.Float64(float64(s.errors))}})
		if upv == 0 {
			continue
		}
		for name, mf := range s.families {
			if name == "up" || strings.HasPrefix(name, "controlroom_") {
				continue
			}
			m := merged[name]
			if m == nil {
				m = &dto.MetricFamily{Name: mf.Name, Help: mf.Help, Type: mf.Type, Unit: mf.Unit}
				merged[name] = m
			} else if m.GetType() != mf.GetType() {
				continue // two processes disagree on the type: keep the first's
			}
			for _, x := range mf.Metric {
				y := proto.Clone(x).(*dto.Metric)
				y.Label = slices.DeleteFunc(y.Label, func(l *dto.LabelPair) bool {
					return l.GetName() == "instance" || l.GetName() == "group"
				})
				y.Label = append(y.Label, extra...)
				m.Metric = append(m.Metric, y)
			}
		}
	}
	c.mu.Unlock()
	fams := make([]string, 0, len(merged))
	for n := range merged {
		fams = append(fams, n)
	}
	sort.Strings(fams)
	var b, one bytes.Buffer
	for _, n := range fams {
		one.Reset()
		if _, err := expfmt.MetricFamilyToText(&one, merged[n]); err != nil {
			c.log.Warn("control room: a scraped family could not be written", "family", n, "err", err)
			continue
		}
		b.Write(one.Bytes())
	}
	for _, mf := range []*dto.MetricFamily{up, scrapeErrs} {
		if len(mf.Metric) > 0 {
			_, _ = expfmt.MetricFamilyToText(&b, mf)
		}
	}
	w.Header().Set("Content-Type", string(expfmt.NewFormat(expfmt.TypeTextPlain)))
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(b.Bytes())
}

// DeadLettersFromNATS returns a DeadLetters func for ControlRoomConfig that
// connects to the fleet's brokers (urls, a cluster's nodes) on first use
// and again after a failure, so that it can be made before the brokers
// run; and a close func for the connection. It lists nothing, with an
// error, while no broker answers.
func DeadLettersFromNATS(urls []string, log *slog.Logger) (list func(context.Context) ([]bus.DeadLetter, error), closeFn func()) {
	var mu sync.Mutex
	var b *bus.Bus
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	list = func(ctx context.Context) ([]bus.DeadLetter, error) {
		if len(urls) == 0 {
			return nil, errs.E(errs.Unavailable, errs.Msg("no broker URL to read dead letters from"))
		}
		mu.Lock()
		defer mu.Unlock()
		if b == nil {
			nb, err := bus.Open(ctx, bus.Options{URL: strings.Join(urls, ","), Name: "globomantics-controlroom", Log: log, ConnectTimeout: time.Second})
			if err != nil {
				return nil, errs.E(errs.Unavailable, errs.Msg("the broker does not answer"), err)
			}
			b = nb
		}
		dls, err := b.DeadLetters(ctx, bus.DeadLetterFilter{})
		if err != nil && errs.Is(errs.Unavailable, err) && ctx.Err() == nil {
			_ = b.Close()
			b = nil
		}
		return dls, err
	}
	closeFn = func() {
		mu.Lock()
		defer mu.Unlock()
		if b != nil {
			_ = b.Close()
			b = nil
		}
	}
	return list, closeFn
}
