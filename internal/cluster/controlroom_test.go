package cluster

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/globomantics/globomantics/internal/platform/bus"
	"github.com/globomantics/globomantics/internal/platform/clock"
	"github.com/globomantics/globomantics/internal/platform/freeport"
	"github.com/globomantics/globomantics/internal/platform/obs"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

const crToken = "operator.secret"

// fakeFleet is a supervisor with fixed processes; Kill records the name.
type fakeFleet struct {
	mu     sync.Mutex
	procs  []Proc
	killed []string
}

func (f *fakeFleet) Procs() []Proc {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Proc(nil), f.procs...)
}

func (f *fakeFleet) Kill(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.killed = append(f.killed, name)
	return nil
}

func (f *fakeFleet) kills() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.killed...)
}

// fakeProc is one shop process: /metrics, the traces JSON, the data status
// and the checkout's fault rules, each guarded by the operator token like
// the real ones.
type fakeProc struct {
	t        *testing.T
	mu       sync.Mutex
	ok, fail int // requests answered 200 and 500 so far
	active   int
	extra    string             // more metric text
	traces   []obs.TraceSummary // the list
	spans    []obs.SpanRecord   // every span it holds
	puts     []string           // fault rule bodies PUT
	faults   string             // rules in force
	srv      *httptest.Server
}

func newFakeProc(t *testing.T) *fakeProc {
	t.Helper()
	p := &fakeProc{t: t}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		defer p.mu.Unlock()
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprintf(w, "# HELP http_server_request_duration_seconds Duration of HTTP server requests.\n# TYPE http_server_request_duration_seconds histogram\n")
		for _, s := range []struct {
			code string
			n    int
			le   float64 // every request of this code took up to le, over the previous bound
		}{{"200", p.ok, 0.01}, {"500", p.fail, 0.1}} {
			for _, b := range []float64{0.005, 0.01, 0.05, 0.1} {
				c := 0
				if b >= s.le {
					c = s.n
				}
				fmt.Fprintf(w, "http_server_request_duration_seconds_bucket{http_request_method=\"GET\",http_route=\"GET /\",http_response_status_code=%q,le=\"%g\"} %d\n", s.code, b, c)
			}
			fmt.Fprintf(w, "http_server_request_duration_seconds_bucket{http_request_method=\"GET\",http_route=\"GET /\",http_response_status_code=%q,le=\"+Inf\"} %d\n", s.code, s.n)
			fmt.Fprintf(w, "http_server_request_duration_seconds_sum{http_request_method=\"GET\",http_route=\"GET /\",http_response_status_code=%q} %g\n", s.code, float64(s.n)*s.le)
			fmt.Fprintf(w, "http_server_request_duration_seconds_count{http_request_method=\"GET\",http_route=\"GET /\",http_response_status_code=%q} %d\n", s.code, s.n)
		}
		fmt.Fprintf(w, "# TYPE http_server_active_requests gauge\nhttp_server_active_requests %d\n", p.active)
		fmt.Fprint(w, p.extra)
	})
	guard := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != "Bearer "+crToken {
				http.Error(w, "forbidden", http.StatusForbidden)
				return
			}
			h(w, r)
		}
	}
	mux.HandleFunc("GET /svc/obs/v1/traces", guard(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		defer p.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if id := r.URL.Query().Get("trace_id"); id != "" {
			var out []obs.SpanRecord
			for _, s := range p.spans {
				if s.TraceID == id {
					out = append(out, s)
				}
			}
			if len(out) == 0 {
				w.WriteHeader(http.StatusNotFound)
				_ = json.NewEncoder(w).Encode(map[string]string{"error": "no span of this trace is stored here"})
				return
			}
			_ = json.NewEncoder(w).Encode(map[string]any{"trace_id": id, "spans": out})
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"traces": p.traces})
	}))
	mux.HandleFunc("GET /svc/data/status", guard(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"databases":[{"service":"catalog","name":"catalog","source":"catalog","dialect":"postgres","primary":"10.0.0.1:5432","max_lag_seconds":1,
			"nodes":[{"addr":"10.0.0.1:5432","role":"primary","state":"in-rotation","lsn":"0/1","lag_bytes":0,"lag_seconds":0,"reads":10,"since":"2026-01-01T00:00:00Z"},
			{"addr":"10.0.0.2:5432","role":"replica","state":"in-rotation","lsn":"0/1","lag_bytes":10,"lag_seconds":0.25,"reads":90,"since":"2026-01-01T00:00:00Z"}]},
			{"service":"order#shard1","name":"order","source":"order","dialect":"postgres","primary":"10.0.1.1:5432","max_lag_seconds":1,"nodes":[]}]}`)
	}))
	mux.HandleFunc("GET /svc/checkout/v1/admin/faults", guard(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		defer p.mu.Unlock()
		fmt.Fprintln(w, p.faults)
	}))
	mux.HandleFunc("PUT /svc/checkout/v1/admin/faults", guard(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		p.mu.Lock()
		defer p.mu.Unlock()
		p.puts = append(p.puts, string(b))
		p.faults = string(b)
		w.WriteHeader(http.StatusNoContent)
	}))
	p.srv = httptest.NewServer(mux)
	t.Cleanup(p.srv.Close)
	return p
}

func (p *fakeProc) set(fn func(p *fakeProc)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fn(p)
}

func (p *fakeProc) gotPuts() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.puts...)
}

var crEpoch = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

// crSetup is a fleet of a storefront, two checkout processes and a NATS
// node (not scraped), with a control room over it on a fake clock.
func crSetup(t *testing.T) (*ControlRoom, *fakeFleet, *clock.Fake, map[string]*fakeProc) {
	t.Helper()
	fp := map[string]*fakeProc{"storefront-1": newFakeProc(t), "checkout-1": newFakeProc(t), "checkout-2": newFakeProc(t)}
	fl := &fakeFleet{procs: []Proc{
		{Name: "storefront-1", Group: "storefront", Kind: "shop", PID: 101, State: "ready", Started: crEpoch.Add(-time.Minute), InternalURL: fp["storefront-1"].srv.URL, PublicURL: "http://127.0.0.1:9", Services: nil, Scalable: true},
		{Name: "checkout-1", Group: "checkout", Kind: "shop", PID: 102, State: "ready", Started: crEpoch, InternalURL: fp["checkout-1"].srv.URL, Services: []string{"checkout"}},
		{Name: "checkout-2", Group: "checkout", Kind: "shop", PID: 103, State: "restarting", Restarts: 2, InternalURL: fp["checkout-2"].srv.URL, Services: []string{"checkout"}},
		{Name: "nats-1", Group: "nats", Kind: "nats", PID: 104, State: "ready"},
	}}
	clk := clock.NewFake(crEpoch)
	cr := NewControlRoom(ControlRoomConfig{Fleet: fl, OperatorToken: crToken, Clock: clk, ScrapeTimeout: 5 * time.Second,
		Decisions: func() []string { return []string{"mail 1->2: 120 pending per worker"} },
		DeadLetters: func(context.Context) ([]bus.DeadLetter, error) {
			return []bus.DeadLetter{{ID: 17, Consumer: "mail-jobs", Subject: "globo_jobs.email", Deliveries: 30, Error: "smtp: 554 rejected", FailedAt: crEpoch}}, nil
		}})
	return cr, fl, clk, fp
}

func crGet(t *testing.T, h http.Handler, path string) *httptest.ResponseRecorder {
	t.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
	return w
}

func crPost(t *testing.T, h http.Handler, path string, form url.Values, hdr ...string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestControlRoomOverviewShowsProcessesAndRates(t *testing.T) {
	cr, _, clk, fp := crSetup(t)
	ctx := context.Background()
	sf := fp["storefront-1"]
	sf.set(func(p *fakeProc) {
		p.ok, p.active = 100, 3
		p.extra = "# TYPE bus_consumer_pending_messages gauge\nbus_consumer_pending_messages{stream=\"GLOBO_JOBS\",consumer=\"mail-jobs\"} 42\n" +
			"# TYPE outbox_backlog_rows gauge\noutbox_backlog_rows{store=\"order\"} 5\n" +
			"# TYPE saga_completed_total counter\nsaga_completed_total{outcome=\"completed\"} 7\n" +
			"# TYPE cache_requests_total counter\ncache_requests_total{cache=\"product\",result=\"hit\"} 3\ncache_requests_total{cache=\"product\",result=\"miss\"} 1\n"
	})
	cr.Scrape(ctx)
	clk.Advance(2 * time.Second)
	sf.set(func(p *fakeProc) { p.ok, p.fail = 118, 2 }) // 20 requests in 2 s, 2 of them 5xx
	cr.Scrape(ctx)

	var o Overview
	w := crGet(t, cr, "/api/overview")
	if w.Code != http.StatusOK {
		t.Fatalf("GET /api/overview: %d %s", w.Code, w.Body)
	}
	if err := json.Unmarshal(w.Body.Bytes(), &o); err != nil {
		t.Fatal(err)
	}
	var sfv *ProcView
	for i := range o.Processes {
		if o.Processes[i].Name == "storefront-1" {
			sfv = &o.Processes[i]
		}
	}
	if sfv == nil || len(o.Processes) != 4 {
		t.Fatalf("processes: %+v", o.Processes)
	}
	if sfv.RequestRate == nil || *sfv.RequestRate != 10 || sfv.ErrorRate == nil || *sfv.ErrorRate != 1 {
		t.Errorf("storefront-1 rates = %v, %v; want 10/s and 1/s", sfv.RequestRate, sfv.ErrorRate)
	}
	// 18 requests in (0.005, 0.01], 2 in (0.05, 0.1]: p50 interpolates in the first, p95 in the second.
	if sfv.P50 == nil || *sfv.P50 < 0.005 || *sfv.P50 > 0.01 || sfv.P95 == nil || *sfv.P95 < 0.05 || *sfv.P95 > 0.1 {
		t.Errorf("storefront-1 p50, p95 = %v, %v", deref(sfv.P50), deref(sfv.P95))
	}
	if sfv.InFlight == nil || *sfv.InFlight != 3 {
		t.Errorf("in flight = %v, want 3", sfv.InFlight)
	}
	if len(o.Consumers) != 1 || o.Consumers[0].Consumer != "mail-jobs" || o.Consumers[0].Pending != 42 {
		t.Errorf("consumers = %+v", o.Consumers)
	}
	if len(o.Outbox) != 1 || o.Outbox[0].Rows != 5 || o.Sagas["completed"] != 7 || o.CacheHit == nil || *o.CacheHit != 0.75 {
		t.Errorf("outbox %+v, sagas %v, cache hit %v", o.Outbox, o.Sagas, o.CacheHit)
	}
	if len(o.Databases) != 2 || o.Databases[0].Name != "catalog" || o.Databases[0].MaxLag != 0.25 {
		t.Errorf("databases = %+v", o.Databases)
	}
	if len(o.Shards) != 1 || o.Shards[0].Service != "order" || o.Shards[0].Node != "shard1" {
		t.Errorf("shards = %+v", o.Shards)
	}
	if o.Fleet.RequestRate != 10 || o.Fleet.Queue != 42 {
		t.Errorf("fleet = %+v", o.Fleet)
	}

	start := time.Now()
	w = crGet(t, cr, "/")
	t.Logf("overview rendered in %v, %d bytes", time.Since(start), w.Body.Len())
	page := w.Body.String()
	if w.Code != http.StatusOK {
		t.Fatalf("GET /: %d", w.Code)
	}
	for _, want := range []string{"storefront-1", "checkout-2", "nats-1", "10.0/s", "✔ ready", "… restarting", "mail-jobs",
		"10.0.0.2:5432", "✔ in-rotation", "shard1", "smtp: 554 rejected", "globo_jobs.email", "mail 1-&gt;2", `<svg class="spark"`, `name="csrf" value="` + cr.csrf + `"`,
		`<label for="kill-name">`, `http-equiv="refresh"`, `new EventSource("events")`} {
		if !strings.Contains(page, want) {
			t.Errorf("the overview lacks %q", want)
		}
	}
	if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "script-src 'nonce-") {
		t.Errorf("CSP = %q", csp)
	}
}

func deref(f *float64) any {
	if f == nil {
		return nil
	}
	return *f
}

func TestControlRoomFleetMetricsCarryInstanceLabels(t *testing.T) {
	cr, _, _, fp := crSetup(t)
	fp["storefront-1"].set(func(p *fakeProc) { p.ok = 5 })
	fp["checkout-1"].set(func(p *fakeProc) { p.ok = 7 })
	fp["checkout-2"].srv.Close() // down
	cr.Scrape(context.Background())

	w := crGet(t, cr, "/metrics")
	if w.Code != http.StatusOK {
		t.Fatalf("GET /metrics: %d", w.Code)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(w.Body.Bytes()))
	if err != nil {
		t.Fatalf("the fleet's metrics do not parse: %v\n%s", err, w.Body)
	}
	counts := map[string]uint64{}
	for _, m := range fams["http_server_request_duration_seconds"].GetMetric() {
		if label := crLabel(m, "http_response_status_code"); label == "200" {
			counts[crLabel(m, "instance")+"/"+crLabel(m, "group")] = m.GetHistogram().GetSampleCount()
		}
	}
	if counts["storefront-1/storefront"] != 5 || counts["checkout-1/checkout"] != 7 || len(counts) != 2 {
		t.Errorf("request counts by instance/group = %v", counts)
	}
	up := map[string]float64{}
	for _, m := range fams["up"].GetMetric() {
		up[crLabel(m, "instance")] = m.GetGauge().GetValue()
	}
	if up["storefront-1"] != 1 || up["checkout-1"] != 1 || up["checkout-2"] != 0 {
		t.Errorf("up = %v", up)
	}
	var errsDown float64
	for _, m := range fams["controlroom_scrape_errors_total"].GetMetric() {
		if crLabel(m, "instance") == "checkout-2" {
			errsDown = m.GetCounter().GetValue()
		}
	}
	if errsDown != 1 {
		t.Errorf("scrape errors of checkout-2 = %v, want 1", errsDown)
	}
}

func TestControlRoomMergesATraceFromTwoProcesses(t *testing.T) {
	cr, _, _, fp := crSetup(t)
	const id = "4bf92f3577b34da6a3ce929d0e0e4736"
	t0 := crEpoch.Add(-time.Second)
	fp["storefront-1"].set(func(p *fakeProc) {
		p.traces = []obs.TraceSummary{{TraceID: id, Root: "POST /checkout", Start: t0, Duration: 80 * time.Millisecond, Spans: 2},
			{TraceID: "5bf92f3577b34da6a3ce929d0e0e4736", Root: "GET /metrics", Start: t0, Duration: time.Millisecond, Spans: 1}} // the scrape's own: not listed
		p.spans = []obs.SpanRecord{
			{TraceID: id, SpanID: "00f067aa0ba902b7", Name: "POST /checkout", Kind: "server", Service: "storefront", Start: t0, End: t0.Add(80 * time.Millisecond), Status: "unset"},
			{TraceID: id, SpanID: "00f067aa0ba902b8", ParentID: "00f067aa0ba902b7", Name: "POST checkout", Kind: "client", Service: "storefront", Start: t0.Add(5 * time.Millisecond), End: t0.Add(75 * time.Millisecond), Status: "unset"},
		}
	})
	fp["checkout-1"].set(func(p *fakeProc) {
		p.traces = []obs.TraceSummary{{TraceID: id, Root: "POST /svc/checkout/v1/checkouts", Start: t0.Add(6 * time.Millisecond), Duration: 90 * time.Millisecond, Spans: 2, Error: true}}
		p.spans = []obs.SpanRecord{
			{TraceID: id, SpanID: "10f067aa0ba902b7", ParentID: "00f067aa0ba902b8", Name: "POST /svc/checkout/v1/checkouts", Kind: "server", Service: "checkout", Start: t0.Add(6 * time.Millisecond), End: t0.Add(70 * time.Millisecond), Status: "unset"},
			{TraceID: id, SpanID: "10f067aa0ba902b8", ParentID: "10f067aa0ba902b7", Name: "saga capture_payment", Kind: "internal", Service: "checkout", Start: t0.Add(20 * time.Millisecond), End: t0.Add(96 * time.Millisecond), Status: "error", StatusText: "declined"},
		}
	})
	cr.Scrape(context.Background())

	var o Overview
	if err := json.Unmarshal(crGet(t, cr, "/api/overview").Body.Bytes(), &o); err != nil {
		t.Fatal(err)
	}
	if len(o.Traces) != 1 {
		t.Fatalf("traces = %+v", o.Traces)
	}
	tr := o.Traces[0]
	if tr.Root != "POST /checkout" || tr.Spans != 4 || !tr.Error || tr.Duration != 96*time.Millisecond ||
		strings.Join(tr.Services, ",") != "checkout,storefront" {
		t.Errorf("merged trace = %+v", tr)
	}
	if page := crGet(t, cr, "/").Body.String(); !strings.Contains(page, `href="traces/`+id+`"`) {
		t.Errorf("the overview does not link the trace")
	}

	w := crGet(t, cr, "/traces/"+id)
	if w.Code != http.StatusOK {
		t.Fatalf("GET /traces/%s: %d %s", id, w.Code, w.Body)
	}
	page := w.Body.String()
	// One waterfall, in tree order: each span after its parent, indented by depth.
	order := []string{`<span class="d0">POST /checkout</span>`, `<span class="d1">POST checkout</span>`,
		`<span class="d2">POST /svc/checkout/v1/checkouts</span>`, `<span class="d3">saga capture_payment</span>`}
	last := -1
	for _, s := range order {
		i := strings.Index(page, s)
		if i < 0 || i < last {
			t.Errorf("the waterfall lacks %q in order", s)
		}
		last = i
	}
	for _, want := range []string{"✖ error: declined", "checkout-1", "storefront-1", `<svg class="bar"`, "96.0 ms"} {
		if !strings.Contains(page, want) {
			t.Errorf("the trace page lacks %q", want)
		}
	}
	if w := crGet(t, cr, "/traces/not-a-trace"); w.Code != http.StatusBadRequest {
		t.Errorf("a malformed trace id: %d, want 400", w.Code)
	}
	if w := crGet(t, cr, "/traces/00000000000000000000000000000001"); w.Code != http.StatusNotFound {
		t.Errorf("an unknown trace: %d, want 404", w.Code)
	}
}

func TestControlRoomKillButton(t *testing.T) {
	cr, fl, _, _ := crSetup(t)
	w := crPost(t, cr, "/actions/kill", url.Values{"csrf": {cr.csrf}, "name": {"checkout-1"}})
	if w.Code != http.StatusSeeOther {
		t.Fatalf("kill: %d %s", w.Code, w.Body)
	}
	if got := fl.kills(); len(got) != 1 || got[0] != "checkout-1" {
		t.Errorf("killed %v, want [checkout-1]", got)
	}
	loc := w.Header().Get("Location")
	if !strings.HasPrefix(loc, "../?flash=") {
		t.Fatalf("Location = %q", loc)
	}
	if page := crGet(t, cr, strings.TrimSuffix(strings.TrimPrefix(loc, ".."), "#result")).Body.String(); !strings.Contains(page, "Killed checkout-1; the supervisor restarts it.") {
		t.Errorf("the page after the kill shows no result: %s", page)
	}

	w = crPost(t, cr, "/actions/kill", url.Values{"csrf": {cr.csrf}, "name": {"checkout-9"}})
	if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), `no process named &#34;checkout-9&#34;`) {
		t.Errorf("kill of an unknown name: %d %s", w.Code, w.Body)
	}
	if got := fl.kills(); len(got) != 1 {
		t.Errorf("a bad name killed something: %v", got)
	}
}

func TestControlRoomFaultFormsPutRulesToEveryCheckout(t *testing.T) {
	cr, _, _, fp := crSetup(t)
	steps := []struct {
		path string
		form url.Values
		want string
	}{
		{"/actions/step", url.Values{"when": {"after"}, "step": {"create_shipment"}, "action": {"refuse"}}, "after:create_shipment=refuse"},
		{"/actions/latency", url.Values{"service": {"payment"}, "delay": {"250ms"}}, "after:create_shipment=refuse,service:payment=250ms"},
		{"/actions/step", url.Values{"when": {"before"}, "step": {"capture_payment"}, "action": {"fail"}, "times": {"2"}}, "after:create_shipment=refuse,service:payment=250ms,before:capture_payment=fail*2"},
		{"/actions/faults", url.Values{"rules": {"before:reserve_stock=hang"}}, "before:reserve_stock=hang"},
		{"/actions/clear", url.Values{}, ""},
	}
	for i, s := range steps {
		s.form.Set("csrf", cr.csrf)
		w := crPost(t, cr, s.path, s.form)
		if w.Code != http.StatusSeeOther {
			t.Fatalf("%s: %d %s", s.path, w.Code, w.Body)
		}
		for _, name := range []string{"checkout-1", "checkout-2"} {
			puts := fp[name].gotPuts()
			if len(puts) != i+1 || puts[i] != s.want {
				t.Fatalf("after %s, %s got PUTs %q, want the last %q", s.path, name, puts, s.want)
			}
		}
		if puts := fp["storefront-1"].gotPuts(); len(puts) != 0 {
			t.Errorf("a process without checkout got fault rules: %q", puts)
		}
	}

	for _, bad := range []struct {
		path string
		form url.Values
		msg  string
	}{
		{"/actions/latency", url.Values{"service": {"payment"}, "delay": {"soon"}}, "want a duration"},
		{"/actions/latency", url.Values{"service": {"pay ment"}, "delay": {"1s"}}, "want a service name"},
		{"/actions/step", url.Values{"when": {"during"}, "step": {"create_order"}, "action": {"fail"}}, "want before, after or mid"},
		{"/actions/step", url.Values{"when": {"after"}, "step": {"create_order"}, "action": {"explode"}}, "the action must be"},
		{"/actions/step", url.Values{"when": {"after"}, "step": {"create_order"}, "action": {"fail"}, "times": {"0"}}, "positive number"},
		{"/actions/faults", url.Values{"rules": {"capture_payment"}}, "want &lt;point&gt;=&lt;action&gt;"},
	} {
		bad.form.Set("csrf", cr.csrf)
		w := crPost(t, cr, bad.path, bad.form)
		if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), bad.msg) {
			t.Errorf("%s %v: %d, want 400 saying %q:\n%s", bad.path, bad.form, w.Code, bad.msg, w.Body)
		}
	}
	if puts := fp["checkout-1"].gotPuts(); len(puts) != len(steps) {
		t.Errorf("bad input reached a checkout: %q", puts)
	}

	// The rules each checkout reports show on the overview.
	fp["checkout-1"].set(func(p *fakeProc) { p.faults = "service:payment=250ms" })
	cr.Scrape(context.Background())
	if page := crGet(t, cr, "/").Body.String(); !strings.Contains(page, "checkout-1: <span class=\"mono warn\">service:payment=250ms</span>") {
		t.Errorf("the overview does not show checkout-1's rules")
	}
}

func TestControlRoomRefusesForgedPosts(t *testing.T) {
	cr, fl, _, fp := crSetup(t)
	cases := []struct {
		name string
		form url.Values
		hdr  []string
	}{
		{"no token", url.Values{"name": {"checkout-1"}}, nil},
		{"wrong token", url.Values{"name": {"checkout-1"}, "csrf": {"x" + cr.csrf}}, nil},
		{"cross-site", url.Values{"name": {"checkout-1"}, "csrf": {cr.csrf}}, []string{"Sec-Fetch-Site", "cross-site"}},
		{"other origin", url.Values{"name": {"checkout-1"}, "csrf": {cr.csrf}}, []string{"Origin", "http://evil.example"}},
	}
	for _, c := range cases {
		w := crPost(t, cr, "/actions/kill", c.form, c.hdr...)
		if w.Code != http.StatusForbidden {
			t.Errorf("%s: %d, want 403", c.name, w.Code)
		}
	}
	if w := crPost(t, cr, "/actions/clear", url.Values{}); w.Code != http.StatusForbidden {
		t.Errorf("clear without a token: %d, want 403", w.Code)
	}
	if len(fl.kills()) != 0 || len(fp["checkout-1"].gotPuts()) != 0 {
		t.Errorf("a forged post changed something: kills %v, puts %q", fl.kills(), fp["checkout-1"].gotPuts())
	}
	// A same-origin browser post is fine.
	w := crPost(t, cr, "/actions/kill", url.Values{"name": {"checkout-1"}, "csrf": {cr.csrf}}, "Origin", "http://example.com", "Sec-Fetch-Site", "same-origin")
	if w.Code != http.StatusSeeOther {
		t.Errorf("same-origin post: %d %s", w.Code, w.Body)
	}
}

func TestControlRoomEventsSendAnUpdateAfterAScrape(t *testing.T) {
	cr, _, _, fp := crSetup(t)
	srv := httptest.NewServer(cr)
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type = %q", ct)
	}
	rd := bufio.NewReader(resp.Body)
	if line, _ := rd.ReadString('\n'); line != "retry: 3000\n" { // the stream is open before the scrape
		t.Fatalf("first line %q", line)
	}
	fp["storefront-1"].set(func(p *fakeProc) { p.ok = 1 })
	cr.Scrape(ctx)
	var event, data strings.Builder
	for {
		line, err := rd.ReadString('\n')
		if err != nil {
			t.Fatalf("stream ended: %v (event %q)", err, event.String())
		}
		if line == "\n" && event.Len() > 0 {
			break
		}
		if v, ok := strings.CutPrefix(line, "event: "); ok {
			event.WriteString(strings.TrimSpace(v))
		}
		if v, ok := strings.CutPrefix(line, "data: "); ok {
			data.WriteString(v)
		}
	}
	if event.String() != "live" || !strings.Contains(data.String(), "storefront-1") || !strings.Contains(data.String(), `id="topo-h"`) {
		t.Errorf("event %q carries %q", event.String(), data.String())
	}

	// Without script, the same fragment by polling.
	if w := crGet(t, cr, "/live"); w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "checkout-2") {
		t.Errorf("GET /live: %d", w.Code)
	}
}

func TestControlRoomDecodesTheObsTraceJSON(t *testing.T) {
	t0 := crEpoch
	list, _ := json.Marshal(map[string]any{"traces": []obs.TraceSummary{{TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", Root: "GET /", Start: t0, Duration: 3 * time.Millisecond, Spans: 2, Error: true}}})
	ts, err := decodeTraceList(bytes.NewReader(list))
	if err != nil || len(ts) != 1 || ts[0].Root != "GET /" || ts[0].Duration != 3*time.Millisecond || ts[0].Spans != 2 || !ts[0].Error || !ts[0].Start.Equal(t0) {
		t.Errorf("decoded %+v, %v from %s", ts, err, list)
	}
	one, _ := json.Marshal(map[string]any{"trace_id": "x", "spans": []obs.SpanRecord{{TraceID: "x", SpanID: "a", ParentID: "b", Name: "GET /", Kind: "server",
		Service: "storefront", Start: t0, End: t0.Add(time.Millisecond), Status: "error", StatusText: "boom", Attributes: map[string]string{"http.route": "/"}}}})
	ss, err := decodeTrace(bytes.NewReader(one))
	if err != nil || len(ss) != 1 || ss[0].ParentID != "b" || ss[0].Service != "storefront" || ss[0].Status != "error" || ss[0].Message != "boom" || ss[0].Attrs["http.route"] != "/" || !ss[0].End.Equal(t0.Add(time.Millisecond)) {
		t.Errorf("decoded %+v, %v from %s", ss, err, one)
	}
}

func TestQuantileFromBucketDeltas(t *testing.T) {
	b := map[float64]float64{0.1: 50, 0.2: 100, math.Inf(1): 100}
	if q := crQuantile(0.5, b); q != 0.1 {
		t.Errorf("p50 = %v, want 0.1", q)
	}
	if q := crQuantile(0.75, b); math.Abs(q-0.15) > 1e-9 {
		t.Errorf("p75 = %v, want 0.15", q)
	}
	if q := crQuantile(0.5, map[float64]float64{math.Inf(1): 0}); !math.IsNaN(q) {
		t.Errorf("no observations: %v, want NaN", q)
	}
}

func TestDeadLettersFromNATSConnectsWhenTheBrokerIsThere(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := (func() ([]bus.DeadLetter, error) { l, _ := DeadLettersFromNATS(nil, nil); return l(ctx) })(); err == nil {
		t.Error("no URL: no error")
	}
	port, err := freeport.Get()
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	list, closeFn := DeadLettersFromNATS([]string{"nats://" + addr}, nil)
	defer closeFn()
	if _, err := list(ctx); err == nil { // no broker yet
		t.Fatal("no broker: no error")
	}
	b, err := bus.Open(ctx, bus.Options{StoreDir: t.TempDir(), ListenAddr: addr, Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	dls, err := list(ctx)
	if err != nil || len(dls) != 0 {
		t.Errorf("a broker without dead letters: %v, %v", dls, err)
	}
}

func TestControlRoomRunScrapesUntilCancelledAndEndsEventStreams(t *testing.T) {
	_, fl, _, _ := crSetup(t)
	cr := NewControlRoom(ControlRoomConfig{Fleet: fl, OperatorToken: crToken, Interval: 20 * time.Millisecond})
	srv := httptest.NewServer(cr)
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cr.Run(ctx) }()
	testenv.CheckFor(t, 10*time.Second, func() error {
		var o Overview
		if err := json.Unmarshal(crGet(t, cr, "/api/overview").Body.Bytes(), &o); err != nil {
			return err
		}
		if o.ScrapedAt.IsZero() || !o.Processes[0].Scraped {
			return fmt.Errorf("not scraped yet")
		}
		return nil
	})
	resp, err := http.Get(srv.URL + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	cancel()
	if err := <-done; err != context.Canceled {
		t.Errorf("Run returned %v, want context.Canceled", err)
	}
	if _, err := io.Copy(io.Discard, resp.Body); err != nil { // ends, rather than hanging
		t.Errorf("reading the event stream: %v", err)
	}
}
