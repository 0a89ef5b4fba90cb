package app

import (
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/globomantics/globomantics/internal/platform/bus"
	"github.com/globomantics/globomantics/internal/platform/obs"
	"github.com/globomantics/globomantics/internal/platform/outbox"
)

// The registry and tracer provider the layers below HTTP (bus, outbox
// relays, SQL layer, cache, checkout sagas) report to: the process's obs,
// or none (nil) in a command that runs without one.

// obsRegisterer is the process's metrics registry, or nil.
func (a *app) obsRegisterer() prometheus.Registerer {
	if a.obs == nil {
		return nil
	}
	return a.obs.Registry()
}

// obsTracerProvider is the process's tracer provider, or nil.
func (a *app) obsTracerProvider() trace.TracerProvider {
	if a.obs == nil {
		return nil
	}
	return a.obs.TracerProvider()
}

// observeBus adds the process's metrics, tracing and request ids to o.
func (a *app) observeBus(o bus.Options) bus.Options {
	o.Registerer, o.TracerProvider = a.obsRegisterer(), a.obsTracerProvider()
	if a.obs != nil {
		o.Propagator = a.obs.Propagator()
	}
	o.RequestID, o.WithRequestID = obs.RequestID, obs.WithRequestID
	return o
}

// relayObsOptions make outbox relays report to the process's obs.
func (a *app) relayObsOptions() []outbox.Option {
	return []outbox.Option{outbox.WithRegisterer(a.obsRegisterer()), outbox.WithTracerProvider(a.obsTracerProvider())}
}
