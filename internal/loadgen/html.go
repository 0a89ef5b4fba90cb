package loadgen

import (
	"fmt"
	"html/template"
	"io"
	"math"
	"strings"
)

// series is one line of a chart.
type series struct {
	name   string
	color  string
	values []float64
}

const (
	chartW, chartH = 760.0, 240.0
	padL, padR     = 56.0, 12.0
	padT, padB     = 28.0, 34.0
)

// niceMax rounds v up to 1, 2 or 5 times a power of ten.
func niceMax(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func esc(s string) string { return template.HTMLEscapeString(s) }

// lineChart draws series over the run's seconds as an inline SVG.
func lineChart(title, unit string, ss []series) string {
	var b strings.Builder
	n, top := 0, 0.0
	for _, s := range ss {
		n = max(n, len(s.values))
		for _, v := range s.values {
			top = max(top, v)
		}
	}
	top = niceMax(top)
	plotW, plotH := chartW-padL-padR, chartH-padT-padB
	x := func(i int) float64 {
		if n <= 1 {
			return padL
		}
		return padL + plotW*float64(i)/float64(n-1)
	}
	y := func(v float64) float64 { return padT + plotH*(1-v/top) }
	fmt.Fprintf(&b, `<svg class="chart" role="img" aria-label="%s" viewBox="0 0 %.0f %.0f" width="%.0f" height="%.0f" xmlns="http://www.w3.org/2000/svg">`, esc(title), chartW, chartH, chartW, chartH)
	fmt.Fprintf(&b, `<text x="%.0f" y="16" class="title">%s</text>`, padL, esc(title))
	for k := 0; k <= 4; k++ {
		v := top * float64(k) / 4
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" class="grid"/><text x="%.1f" y="%.1f" class="tick" text-anchor="end">%s</text>`,
			padL, chartW-padR, y(v), y(v), padL-6, y(v)+4, esc(fmtNum(v)+unit))
	}
	for _, t := range ticks(n) {
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" class="tick" text-anchor="middle">%ds</text>`, x(t), chartH-padB+16, t)
	}
	for si, s := range ss {
		if len(s.values) == 0 {
			continue
		}
		pts := make([]string, len(s.values))
		for i, v := range s.values {
			pts[i] = fmt.Sprintf("%.1f,%.1f", x(i), y(v))
		}
		fmt.Fprintf(&b, `<polyline class="series" fill="none" stroke="%s" stroke-width="2" points="%s"><title>%s</title></polyline>`, s.color, strings.Join(pts, " "), esc(s.name))
		lx := padL + float64(si)*150
		fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="10" height="10" fill="%s"/><text x="%.0f" y="%.0f" class="tick">%s</text>`, lx, chartH-12, s.color, lx+14, chartH-3, esc(s.name))
	}
	b.WriteString(`</svg>`)
	return b.String()
}

// ticks are up to 10 evenly spaced seconds of n.
func ticks(n int) []int {
	if n <= 0 {
		return nil
	}
	step := max(1, int(niceMax(float64(n)/10)))
	var out []int
	for t := 0; t < n; t += step {
		out = append(out, t)
	}
	return out
}

func fmtNum(v float64) string {
	if v == math.Trunc(v) {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.3g", v)
}

// barChart draws p50, p90 and p99 of each step as horizontal bars.
func barChart(title string, steps []StepStats) string {
	var b strings.Builder
	top := 0.0
	for _, s := range steps {
		top = max(top, s.P99)
	}
	top = niceMax(top)
	const rowH, labelW = 30.0, 150.0
	h := padT + rowH*float64(len(steps)) + padB
	plotW := chartW - labelW - padR - 60
	fmt.Fprintf(&b, `<svg class="chart" role="img" aria-label="%s" viewBox="0 0 %.0f %.0f" width="%.0f" height="%.0f" xmlns="http://www.w3.org/2000/svg">`, esc(title), chartW, h, chartW, h)
	fmt.Fprintf(&b, `<text x="%.0f" y="16" class="title">%s</text>`, padL, esc(title))
	bars := []struct {
		name, color string
		get         func(StepStats) float64
	}{
		{"p50", "#2b8a3e", func(s StepStats) float64 { return s.P50 }},
		{"p90", "#e67700", func(s StepStats) float64 { return s.P90 }},
		{"p99", "#c92a2a", func(s StepStats) float64 { return s.P99 }},
	}
	for i, s := range steps {
		y0 := padT + rowH*float64(i)
		fmt.Fprintf(&b, `<text x="%.0f" y="%.1f" class="tick" text-anchor="end">%s</text>`, labelW-8, y0+rowH/2+4, esc(s.Name))
		for j, bar := range bars {
			v := bar.get(s)
			fmt.Fprintf(&b, `<rect class="bar" x="%.0f" y="%.1f" width="%.1f" height="7" fill="%s"><title>%s %s: %.1f ms</title></rect>`,
				labelW, y0+4+float64(j)*8, math.Max(1, plotW*v/top), bar.color, esc(s.Name), bar.name, v)
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" class="tick">%.1f ms</text>`, labelW+plotW*s.P99/top+6, y0+rowH/2+4, s.P99)
	}
	for j, bar := range bars {
		lx := labelW + float64(j)*80
		fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="10" height="10" fill="%s"/><text x="%.0f" y="%.0f" class="tick">%s</text>`, lx, h-12, bar.color, lx+14, h-3, bar.name)
	}
	b.WriteString(`</svg>`)
	return b.String()
}

var page = template.Must(template.New("report").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Load report: {{.R.URL}}</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:2em auto;max-width:820px;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{padding:2px 10px;text-align:right;border-bottom:1px solid #ddd}
td:first-child,th:first-child{text-align:left}.chart{display:block;margin:1em 0}
.title{font-weight:bold;font-size:13px}.tick{font-size:11px;fill:#555}.grid{stroke:#e5e5e5}
.warn{background:#fff3bf;padding:.5em}
</style></head><body>
<h1>Load report</h1>
<p>{{.R.URL}}: {{if .R.Interrupted}}interrupted{{else}}completed{{end}} after {{.R.Elapsed}} of {{.R.Duration}};
{{printf "%.1f" .R.AchievedRate}} sessions/s achieved of {{printf "%.1f" .R.TargetRate}}/s target
({{.R.Arrivals}} arrivals: {{.R.Sent}} sent, {{.R.Dropped}} dropped over capacity, {{.R.Cancelled}} cut short);
{{.R.Requests}} requests ({{printf "%.1f" .R.RequestRate}}/s), {{.R.Errors}} errors.</p>
<p>Orders: {{.R.Orders.Confirmed}} confirmed, {{.R.Orders.Declined}} declined (as expected),
{{.R.Orders.TransientFailed}} rolled back after a transient failure (as expected), {{.R.Orders.Pending}} still pending.</p>
{{if .R.Status429}}<p class="warn">{{.R.Status429}} answers were 429: the shop rate-limits login, registration and checkout per client address; start it with --rate-limits=false for a load test from one machine.</p>{{end}}
{{.Throughput}}
{{.Latency}}
{{.Bars}}
<h2>Latency per step (ms, from the intended start)</h2>
<table><tr><th>step</th><th>requests</th><th>ok</th><th>errors</th><th>p50</th><th>p90</th><th>p99</th><th>max</th></tr>
{{range .R.Steps}}<tr><td>{{.Name}}</td><td>{{.Requests}}</td><td>{{.OK}}</td><td>{{.Errors}}</td><td>{{printf "%.1f" .P50}}</td><td>{{printf "%.1f" .P90}}</td><td>{{printf "%.1f" .P99}}</td><td>{{printf "%.1f" .Max}}</td></tr>
{{end}}{{with .R.Overall}}<tr><th>{{.Name}}</th><th>{{.Requests}}</th><th>{{.OK}}</th><th>{{.Errors}}</th><th>{{printf "%.1f" .P50}}</th><th>{{printf "%.1f" .P90}}</th><th>{{printf "%.1f" .P99}}</th><th>{{printf "%.1f" .Max}}</th></tr>{{end}}
</table>
<h2>Sessions</h2>
<table><tr><th>scenario</th><th>started</th><th>succeeded</th><th>failed</th><th>p50</th><th>p99</th></tr>
{{range .R.Scenarios}}<tr><td>{{.Name}}</td><td>{{.Started}}</td><td>{{.Succeeded}}</td><td>{{.Failed}}</td><td>{{printf "%.1f" .P50}}</td><td>{{printf "%.1f" .P99}}</td></tr>
{{end}}</table>
<h2>Errors by kind</h2>
{{if .R.ErrorKinds}}<table><tr><th>kind</th><th>count</th><th>steps</th></tr>
{{range .R.ErrorKinds}}<tr><td>{{.Kind}}</td><td>{{.Count}}</td><td>{{range $k, $v := .Steps}}{{$k}} {{$v}} {{end}}</td></tr>
{{end}}</table>{{else}}<p>None.</p>{{end}}
</body></html>
`))

// WriteHTML writes the report as one self-contained HTML page: inline
// SVG charts of throughput and latency over time and of each step's
// percentiles, and the report's tables; no script, no external asset.
func (r Report) WriteHTML(w io.Writer) error {
	var sent, ok, errs, dropped, p50, p99 []float64
	for _, s := range r.Timeline {
		sent = append(sent, float64(s.Sent))
		ok = append(ok, float64(s.OK))
		errs = append(errs, float64(s.Errors))
		dropped = append(dropped, float64(s.Dropped))
		p50 = append(p50, s.P50)
		p99 = append(p99, s.P99)
	}
	steps := append(append([]StepStats(nil), r.Steps...), r.Overall)
	return page.Execute(w, struct {
		R                   Report
		Throughput, Latency template.HTML
		Bars                template.HTML
	}{
		R: r,
		// #nosec: the charts escape every name they draw.
		Throughput: template.HTML(lineChart("Throughput per second", "/s", []series{
			{"sessions started", "#1c7ed6", sent}, {"ok answers", "#2b8a3e", ok}, {"errors", "#c92a2a", errs}, {"dropped", "#868e96", dropped}})),
		Latency: template.HTML(lineChart("Latency per second", " ms", []series{{"p50", "#2b8a3e", p50}, {"p99", "#c92a2a", p99}})),
		Bars:    template.HTML(barChart("Latency per step (ms)", steps)),
	})
}
