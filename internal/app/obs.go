package app

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/globomantics/globomantics/internal/platform/obs"
)

// obsShutdownTimeout bounds the flush of buffered spans to the OTLP
// collector at exit.
const obsShutdownTimeout = 2 * time.Second

// startObs builds the process's metrics registry and tracer provider
// (service.name: the services it runs), flushed and shut down when the
// process closes, last of all.
func (a *app) startObs() error {
	o, err := obs.New(obs.Options{
		Service:      strings.Join(a.cfg.Services, ","),
		OTLPEndpoint: a.cfg.OTLPEndpoint,
		Sampler:      obs.RatioSampler(a.cfg.TraceSample),
	})
	if err != nil {
		return err
	}
	a.obs = o
	a.onClose(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), obsShutdownTimeout)
		defer cancel()
		return o.Shutdown(ctx)
	})
	return nil
}

// mountObs serves, on the internal listener, GET /metrics to anyone (a
// scraper has no credential; nothing in it is secret) and the recent
// traces of this process at GET /svc/obs/v1/traces to the operator's
// credential only, like /svc/data/status.
func (a *app) mountObs() {
	a.imux.Handle("GET /metrics", a.obs.Metrics())
	a.imux.Handle("GET /svc/obs/v1/traces", a.keys.Require("obs", nil, a.obs.Traces()))
	a.imux.Handle("/svc/obs/", a.keys.Require("obs", nil, http.NotFoundHandler()))
}

// edgeOTLPDefault is the edge's default --otlp-endpoint: GLOBO_OTLP_ENDPOINT,
// else OTEL_EXPORTER_OTLP_ENDPOINT.
func edgeOTLPDefault(getenv func(string) string) string {
	if v := strings.TrimSpace(getenv("GLOBO_OTLP_ENDPOINT")); v != "" {
		return v
	}
	return strings.TrimSpace(getenv("OTEL_EXPORTER_OTLP_ENDPOINT"))
}

// newEdgeObs is the edge process's Obs (service.name "edge").
func newEdgeObs(otlp string, sample float64) (*obs.Obs, error) {
	if !(sample >= 0 && sample <= 1) {
		return nil, fmt.Errorf("edge: --trace-sample %v: want a fraction from 0 to 1", sample)
	}
	return obs.New(obs.Options{Service: "edge", OTLPEndpoint: otlp, Sampler: obs.RatioSampler(sample)})
}

// shutdownObs flushes o's spans within obsShutdownTimeout.
func shutdownObs(o *obs.Obs) {
	ctx, cancel := context.WithTimeout(context.Background(), obsShutdownTimeout)
	defer cancel()
	_ = o.Shutdown(ctx)
}
