package obs

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// DurationBuckets are the histogram buckets of request durations, in
// seconds: 1 ms to 10 s.
var DurationBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// HTTPServerMetrics are OpenTelemetry's HTTP server metrics under their
// Prometheus names.
type HTTPServerMetrics struct {
	// Duration is http.server.request.duration: labels
	// http_request_method, http_route (the mux pattern, never the raw
	// path) and http_response_status_code.
	Duration *prometheus.HistogramVec
	// Active is http.server.active_requests: requests being served now.
	Active prometheus.Gauge
}

func newHTTPServerMetrics(reg prometheus.Registerer) *HTTPServerMetrics {
	m := &HTTPServerMetrics{
		Duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "http_server_request_duration_seconds",
			Help:    "Duration of HTTP server requests (OpenTelemetry http.server.request.duration).",
			Buckets: DurationBuckets,
		}, []string{"http_request_method", "http_route", "http_response_status_code"}),
		Active: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "http_server_active_requests",
			Help: "HTTP server requests in flight (OpenTelemetry http.server.active_requests).",
		}),
	}
	reg.MustRegister(m.Duration, m.Active)
	return m
}

// HTTPClientMetrics are the metrics of calls to other services.
type HTTPClientMetrics struct {
	// Duration is http.client.request.duration, one observation per try:
	// labels server (the service called), http_request_method, and
	// http_response_status_code or, for a try with no answer, error_type.
	Duration *prometheus.HistogramVec
	// Retries counts tries sent again under the call policy, by server.
	Retries *prometheus.CounterVec
}

func newHTTPClientMetrics(reg prometheus.Registerer) *HTTPClientMetrics {
	m := &HTTPClientMetrics{
		Duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "http_client_request_duration_seconds",
			Help:    "Duration of HTTP client requests, per try (OpenTelemetry http.client.request.duration).",
			Buckets: DurationBuckets,
		}, []string{"server", "http_request_method", "http_response_status_code", "error_type"}),
		Retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "http_client_retries_total",
			Help: "Calls sent again after a failed try, by the service called.",
		}, []string{"server"}),
	}
	reg.MustRegister(m.Duration, m.Retries)
	return m
}

// Metrics serves the registry in the Prometheus text format, or
// OpenMetrics when the scraper asks for it.
// Every call returns the same handler.
func (o *Obs) Metrics() http.Handler { return o.metrics }

func newMetricsHandler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{EnableOpenMetrics: true, Registry: reg})
}
