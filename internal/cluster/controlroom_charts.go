package cluster

import (
	"fmt"
	"html/template"
	"math"
	"strings"
	"time"
)

// Charts are drawn on the server as inline SVG from the sample rings: no
// script, no external asset. Every chart carries a text alternative (role
// img and a title naming the latest and the largest value) so that nothing
// is told by the drawing alone.

// sparkline draws values as a small polyline, w by h pixels. Gaps (NaN)
// break the line.
func sparkline(label string, values []float64, unit string, w, h int) template.HTML {
	last, peak, ok := lastAndPeak(values)
	alt := label + ": no data"
	if ok {
		alt = fmt.Sprintf("%s: now %s, peak %s", label, humanValue(last, unit), humanValue(peak, unit))
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="spark" width="%d" height="%d" viewBox="0 0 %d %d" role="img" aria-label="%s"><title>%s</title>`,
		w, h, w, h, template.HTMLEscapeString(alt), template.HTMLEscapeString(alt))
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="#f4f6f8"/>`, w, h)
	writePolylines(&b, values, peak, float64(w), float64(h), 1, "#1f5fa8")
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// series is one line of a lineChart.
type crSeries struct {
	Name   string
	Values []float64
	Color  string
	Dash   bool // drawn dashed, so lines differ by more than colour
}

// lineChart draws one or more series over the same time axis with a y-axis
// scale, a time span label and a legend that names each line and its
// latest value.
func lineChart(title, unit string, span time.Duration, ss ...crSeries) template.HTML {
	const w, h, left, bottom = 420.0, 120.0, 48.0, 16.0
	peak := 0.0
	for _, s := range ss {
		if _, p, ok := lastAndPeak(s.Values); ok {
			peak = math.Max(peak, p)
		}
	}
	top := niceCeil(peak)
	var alt []string
	for _, s := range ss {
		if l, _, ok := lastAndPeak(s.Values); ok {
			alt = append(alt, s.Name+" now "+humanValue(l, unit))
		} else {
			alt = append(alt, s.Name+" no data")
		}
	}
	desc := title + ": " + strings.Join(alt, "; ")
	var b strings.Builder
	fmt.Fprintf(&b, `<figure class="chart"><svg width="%g" height="%g" viewBox="0 0 %g %g" role="img" aria-label="%s"><title>%s</title>`,
		w, h+4, w, h+4, template.HTMLEscapeString(desc), template.HTMLEscapeString(desc))
	fmt.Fprintf(&b, `<rect x="%g" y="0" width="%g" height="%g" fill="#f4f6f8"/>`, left, w-left, h-bottom)
	for i := 0; i <= 2; i++ {
		y := (h - bottom) * float64(i) / 2
		v := top * float64(2-i) / 2
		fmt.Fprintf(&b, `<line x1="%g" x2="%g" y1="%.1f" y2="%.1f" stroke="#c9d1d9" stroke-width="1"/>`, left, w, y, y)
		fmt.Fprintf(&b, `<text x="%g" y="%.1f" font-size="10" text-anchor="end" fill="#24292f">%s</text>`, left-4, y+4+float64(i)*-2, template.HTMLEscapeString(humanValue(v, unit)))
	}
	fmt.Fprintf(&b, `<text x="%g" y="%g" font-size="10" fill="#24292f">-%s</text>`, left, h, span.Round(time.Second))
	fmt.Fprintf(&b, `<text x="%g" y="%g" font-size="10" text-anchor="end" fill="#24292f">now</text>`, w, h)
	fmt.Fprintf(&b, `<g transform="translate(%g,0)">`, left)
	for _, s := range ss {
		var sb strings.Builder
		writePolylines(&sb, s.Values, top, w-left, h-bottom, 1.5, s.Color)
		line := sb.String()
		if s.Dash {
			line = strings.ReplaceAll(line, "<polyline ", `<polyline stroke-dasharray="4 3" `)
		}
		b.WriteString(line)
	}
	b.WriteString(`</g></svg><figcaption>`)
	fmt.Fprintf(&b, `<strong>%s</strong>`, template.HTMLEscapeString(title))
	for i, s := range ss {
		style := "solid"
		if s.Dash {
			style = "dashed"
		}
		fmt.Fprintf(&b, ` <span class="legend"><svg width="18" height="6" aria-hidden="true"><line x1="0" x2="18" y1="3" y2="3" stroke="%s" stroke-width="2"%s/></svg> %s (%s): %s</span>`,
			s.Color, map[bool]string{true: ` stroke-dasharray="4 3"`}[s.Dash], template.HTMLEscapeString(s.Name), style,
			template.HTMLEscapeString(strings.TrimPrefix(alt[i], s.Name+" ")))
	}
	b.WriteString(`</figcaption></figure>`)
	return template.HTML(b.String())
}

// writePolylines draws values scaled to [0, top] into a w by h box, one
// polyline per run of known values.
func writePolylines(b *strings.Builder, values []float64, top, w, h, width float64, color string) {
	if top <= 0 {
		top = 1
	}
	n := len(values)
	if n == 0 {
		return
	}
	step := w
	if n > 1 {
		step = w / float64(n-1)
	}
	var pts []string
	flush := func() {
		if len(pts) == 1 { // a lone point: a dot
			pts = append(pts, pts[0])
		}
		if len(pts) > 0 {
			fmt.Fprintf(b, `<polyline fill="none" stroke="%s" stroke-width="%g" points="%s"/>`, color, width, strings.Join(pts, " "))
		}
		pts = pts[:0]
	}
	for i, v := range values {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			flush()
			continue
		}
		y := h - math.Min(v/top, 1)*(h-2) - 1
		pts = append(pts, fmt.Sprintf("%.1f,%.1f", float64(i)*step, y))
	}
	flush()
}

func lastAndPeak(values []float64) (last, peak float64, ok bool) {
	for _, v := range values {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			continue
		}
		if !ok || v > peak {
			peak = v
		}
		last, ok = v, true
	}
	return last, peak, ok
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten, for axis scales.
func niceCeil(v float64) float64 {
	if v <= 0 || math.IsNaN(v) {
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

// humanValue formats v in unit: "s" as ms or s, "/s" as a rate, "" as a
// plain count.
func humanValue(v float64, unit string) string {
	if math.IsNaN(v) {
		return "–"
	}
	switch unit {
	case "s":
		if v < 1 {
			return fmt.Sprintf("%.1f ms", v*1000)
		}
		return fmt.Sprintf("%.2f s", v)
	case "/s":
		return fmt.Sprintf("%.1f/s", v)
	case "%":
		return fmt.Sprintf("%.1f%%", v*100)
	}
	if v == math.Trunc(v) {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

// waterfallBar is the bar of one span on a trace's time axis, as an SVG
// scaled to the row's width (the text columns beside it carry the numbers).
func waterfallBar(offset, length, total time.Duration, failed bool) template.HTML {
	if total <= 0 {
		total = 1
	}
	x := 1000 * float64(offset) / float64(total)
	wd := math.Max(1000*float64(length)/float64(total), 2)
	color := "#1f5fa8"
	if failed {
		color = "#b42318"
	}
	return template.HTML(fmt.Sprintf(`<svg class="bar" viewBox="0 0 1000 10" preserveAspectRatio="none" aria-hidden="true"><rect x="%.1f" y="0" width="%.1f" height="10" fill="%s"/></svg>`, x, wd, color))
}
