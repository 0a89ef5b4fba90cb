package loadgen

import (
	"context"
	"encoding/json"
	"math"
	"net"
	"strings"
	"testing"
	"time"
)

// TestHistogramPercentiles: percentiles of 1..1000 ms are within the
// histogram's 1 % of the exact ones; min and max are exact.
func TestHistogramPercentiles(t *testing.T) {
	var h histogram
	for i := 1000; i >= 1; i-- {
		h.record(time.Duration(i) * time.Millisecond)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Millisecond}, {0.9, 900 * time.Millisecond}, {0.99, 990 * time.Millisecond}, {1, time.Second}} {
		got := h.quantile(c.q)
		if rel := math.Abs(float64(got-c.want)) / float64(c.want); rel > 0.011 {
			t.Errorf("p%v = %v, want %v within 1%%", c.q*100, got, c.want)
		}
	}
	if h.max != time.Second || h.min != time.Millisecond || h.quantile(0) != time.Millisecond {
		t.Errorf("min %v max %v q0 %v", h.min, h.max, h.quantile(0))
	}
	var empty histogram
	if empty.quantile(0.5) != 0 {
		t.Error("empty histogram has a median")
	}
	var m histogram
	m.merge(&h)
	m.merge(&h)
	if m.n != 2000 || m.quantile(0.5) != h.quantile(0.5) {
		t.Errorf("merged: n %d p50 %v", m.n, m.quantile(0.5))
	}
}

// TestReportKnownAnswers runs every scenario against a shop whose answers
// are known: searches are rate-limited (429) and logins fail (503), so the
// report must count them by kind and step; checkouts go through the card
// cycle: 7 confirmed, 2 declined, 1 transient failure of 10.
func TestReportKnownAnswers(t *testing.T) {
	f := &fakeShop{searchStatus: 429}
	url := f.start(t)
	rep, err := Run(context.Background(), config(url, 20, time.Second, "search=1,browse=1"))
	if err != nil {
		t.Fatal(err)
	}
	search := stepOf(rep, "search")
	if rep.Sent != 20 || search.Requests != 10 || search.Errors != 10 || search.OK != 0 {
		t.Fatalf("sent %d, search %+v: want 20 sessions, 10 searches all failed", rep.Sent, search)
	}
	e := errorOf(rep, "429 Too Many Requests [4xx]")
	if e.Count != 10 || e.Steps["search"] != 10 || rep.Status429 != 10 {
		t.Errorf("errors by kind %+v, 429s %d: want 10 on search (%s)", e, rep.Status429, kinds(rep))
	}
	if home := stepOf(rep, "home"); home.Requests != 10 || home.OK != 10 || home.Count != 10 {
		t.Errorf("home %+v, want 10 ok", home)
	}
	if rep.Overall.Requests != 10+10+10+10 || rep.Errors != 10 || rep.OK != 30 {
		t.Errorf("overall: %d requests, %d ok, %d errors; want 40, 30, 10", rep.Overall.Requests, rep.OK, rep.Errors)
	}
	var text strings.Builder
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"10 answers were 429", "--rate-limits=false", "429 Too Many Requests [4xx] (search 10)", "achieved of 20.0/s target"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, text.String())
		}
	}

	f = &fakeShop{loginStatus: 503}
	url = f.start(t)
	rep, err = Run(context.Background(), config(url, 10, time.Second, "register=1"))
	if err != nil {
		t.Fatal(err)
	}
	if e := errorOf(rep, "503 Service Unavailable [5xx]"); e.Count != 10 || e.Steps["login"] != 10 {
		t.Errorf("errors by kind %+v, want 10 503s on login (%s)", e, kinds(rep))
	}
	if me := stepOf(rep, "me"); me.Requests != 0 {
		t.Errorf("a session went on after its login failed: %+v", me)
	}
	if s := rep.Scenarios; len(s) != 1 || s[0].Failed != 10 || s[0].Succeeded != 0 {
		t.Errorf("scenarios %+v, want 10 failed register sessions", s)
	}

	f = &fakeShop{}
	url = f.start(t)
	rep, err = Run(context.Background(), config(url, 10, time.Second, "checkout=1"))
	if err != nil {
		t.Fatal(err)
	}
	if o := rep.Orders; o.Confirmed != 7 || o.Declined != 2 || o.TransientFailed != 1 || rep.Errors != 0 {
		t.Errorf("orders %+v errors %d (%s), want 7 confirmed, 2 declined, 1 transient, no error", o, rep.Errors, kinds(rep))
	}
	for step, n := range map[string]int{"checkout_ok": 7, "checkout_declined": 2, "checkout_transient": 1, "register": 10, "login": 10} {
		if s := stepOf(rep, step); s.OK != n {
			t.Errorf("%s: %+v, want %d ok", step, s, n)
		}
	}
}

// TestReportHTMLAndJSON: the HTML page holds its three charts inline and
// nothing external; the JSON parses back to the same report.
func TestReportHTMLAndJSON(t *testing.T) {
	f := &fakeShop{searchStatus: 500}
	url := f.start(t)
	rep, err := Run(context.Background(), config(url, 20, time.Second, DefaultMix))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := rep.WriteHTML(&b); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	if n := strings.Count(page, "<svg"); n != 3 {
		t.Errorf("%d charts, want 3", n)
	}
	for _, want := range []string{"Throughput per second", "Latency per second", "Latency per step", "<polyline", "<rect class=\"bar\"", "checkout_ok", "500 Internal Server Error [5xx]"} {
		if !strings.Contains(page, want) {
			t.Errorf("HTML lacks %q", want)
		}
	}
	for _, bad := range []string{"<script", "src=", "href=", "@import"} {
		if strings.Contains(page, bad) {
			t.Errorf("HTML has %q: not self-contained", bad)
		}
	}
	js, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js, &back); err != nil {
		t.Fatal(err)
	}
	if back.Sent != rep.Sent || len(back.Steps) != len(rep.Steps) || back.Overall.P99 != rep.Overall.P99 || len(back.Timeline) == 0 {
		t.Errorf("JSON round trip: %+v", back)
	}
	var generic map[string]any
	_ = json.Unmarshal(js, &generic)
	for _, k := range []string{"target_rate", "achieved_rate", "steps", "error_kinds", "orders", "timeline", "status_429"} {
		if _, ok := generic[k]; !ok {
			t.Errorf("JSON lacks %q", k)
		}
	}
}

// TestShopWithoutProductsRefused: no load is sent to a shop with nothing
// to buy, nor to one that does not answer.
func TestShopWithoutProductsRefused(t *testing.T) {
	f := &fakeShop{noProducts: true}
	url := f.start(t)
	if _, err := Run(context.Background(), config(url, 10, time.Second, DefaultMix)); err == nil || !strings.Contains(err.Error(), "no products") {
		t.Errorf("Run against an empty shop = %v, want a clear error", err)
	}
	if f.homeHits.Load() != 0 {
		t.Error("load was sent")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, err = Run(context.Background(), config("http://"+addr, 10, time.Second, DefaultMix))
	if err == nil {
		t.Fatal("Run against a closed port succeeded")
	}
	if kind, _ := errorKind(err); kind != KindRefused {
		t.Errorf("kind of %v = %q, want %q", err, kind, KindRefused)
	}
}
