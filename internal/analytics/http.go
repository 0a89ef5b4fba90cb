package analytics

import (
	"html/template"
	"net/http"
	"strconv"
	"time"

	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/httpx"
)

// Prefix is where the analytics service's internal API is mounted.
const Prefix = "/svc/analytics/v1/"

// PopularResponse is the answer of GET /svc/analytics/v1/popular.
type PopularResponse struct {
	Window   string         `json:"window"`
	Products []ProductViews `json:"products"`
}

// NewHandler serves api's REST API on the internal listener:
//
//	GET /svc/analytics/v1/popular?window=24h&limit=8    → PopularResponse
//	GET /svc/analytics/v1/searches?window=24h&limit=10  → SearchReport
//	GET /svc/analytics/v1/revenue?window=24h            → RevenueReport
//	GET /svc/analytics/v1/report?window=24h             → the operator's HTML page
//
// window is a Go duration (1h to 720h, default 24h); limit 1 to 100.
func NewHandler(api API) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET "+Prefix+"popular", httpx.Handler(func(w http.ResponseWriter, r *http.Request) error {
		window, limit, err := readParams(r, 8)
		if err != nil {
			return err
		}
		pv, err := api.Popular(r.Context(), window, limit)
		if err != nil {
			return err
		}
		httpx.WriteJSON(w, http.StatusOK, PopularResponse{Window: window.String(), Products: nonNil(pv)})
		return nil
	}))
	mux.Handle("GET "+Prefix+"searches", httpx.Handler(func(w http.ResponseWriter, r *http.Request) error {
		window, limit, err := readParams(r, 10)
		if err != nil {
			return err
		}
		rep, err := api.Searches(r.Context(), window, limit)
		if err != nil {
			return err
		}
		rep.Top, rep.NoResult = nonNil(rep.Top), nonNil(rep.NoResult)
		httpx.WriteJSON(w, http.StatusOK, rep)
		return nil
	}))
	mux.Handle("GET "+Prefix+"revenue", httpx.Handler(func(w http.ResponseWriter, r *http.Request) error {
		window, _, err := readParams(r, 1)
		if err != nil {
			return err
		}
		rep, err := api.Revenue(r.Context(), window)
		if err != nil {
			return err
		}
		rep.Hours = nonNil(rep.Hours)
		httpx.WriteJSON(w, http.StatusOK, rep)
		return nil
	}))
	mux.Handle("GET "+Prefix+"report", httpx.Handler(func(w http.ResponseWriter, r *http.Request) error {
		window, limit, err := readParams(r, 20)
		if err != nil {
			return err
		}
		pv, err := api.Popular(r.Context(), window, limit)
		if err != nil {
			return err
		}
		rep, err := api.Searches(r.Context(), window, limit)
		if err != nil {
			return err
		}
		rev, err := api.Revenue(r.Context(), window)
		if err != nil {
			return err
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		return reportPage.Execute(w, reportData{Window: window.String(), Products: pv, Searches: rep, Revenue: rev.Hours})
	}))
	mux.HandleFunc("/", httpx.NotFound)
	return mux
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func readParams(r *http.Request, defLimit int) (time.Duration, int, error) {
	const op = "analytics.params"
	v, err := httpx.Query(r)
	if err != nil {
		return 0, 0, err
	}
	window, limit := DefaultWindow, defLimit
	if s := v.Get("window"); s != "" {
		if window, err = time.ParseDuration(s); err != nil {
			return 0, 0, errs.E(op, errs.BadRequest, errs.Msg("window must be a duration such as 24h"))
		}
	}
	if s := v.Get("limit"); s != "" {
		if limit, err = strconv.Atoi(s); err != nil {
			return 0, 0, errs.E(op, errs.BadRequest, errs.Msg("limit must be a whole number"))
		}
	}
	return window, limit, nil
}

type reportData struct {
	Window   string
	Products []ProductViews
	Searches SearchReport
	Revenue  []HourlyRevenue
}

var reportPage = template.Must(template.New("report").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Analytics: last {{.Window}}</title>
<style>body{font-family:system-ui,sans-serif;margin:2rem}table{border-collapse:collapse;margin-bottom:2rem}td,th{padding:.25rem .75rem;border-bottom:1px solid #ddd;text-align:left}td.n{text-align:right}</style>
</head><body>
<h1>Analytics: last {{.Window}}</h1>
<p>Counts of fire-and-forget events: a guide, not a ledger (events may be dropped under load).</p>
<h2>Most viewed products</h2>
{{if .Products}}<table><tr><th>product</th><th>views</th></tr>
{{range .Products}}<tr><td>{{.ProductID}}</td><td class="n">{{.Views}}</td></tr>
{{end}}</table>{{else}}<p>No page views.</p>{{end}}
<h2>Top searches</h2>
{{if .Searches.Top}}<table><tr><th>query</th><th>searches</th></tr>
{{range .Searches.Top}}<tr><td>{{.Query}}</td><td class="n">{{.Searches}}</td></tr>
{{end}}</table>{{else}}<p>No searches.</p>{{end}}
<h2>Searches with no result</h2>
{{if .Searches.NoResult}}<table><tr><th>query</th><th>searches</th></tr>
{{range .Searches.NoResult}}<tr><td>{{.Query}}</td><td class="n">{{.Searches}}</td></tr>
{{end}}</table>{{else}}<p>None.</p>{{end}}
<h2>Revenue per hour</h2>
<p>Payments captured (PaymentCaptured events, each counted once), before refunds.</p>
{{if .Revenue}}<table><tr><th>hour (UTC)</th><th>payments captured</th><th>revenue</th></tr>
{{range .Revenue}}<tr><td>{{.Hour.Format "2006-01-02 15:04"}}</td><td class="n">{{.Payments}}</td><td class="n">{{.Captured}} {{.Captured.Currency}}</td></tr>
{{end}}</table>{{else}}<p>No payments captured.</p>{{end}}
</body></html>
`))
