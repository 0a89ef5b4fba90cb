package obs

import (
	"context"
	"net/url"
	"strings"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
)

// RatioSampler samples the given fraction of new traces (clamped to
// [0, 1]) and follows the caller's decision for the others' spans.
func RatioSampler(ratio float64) sdktrace.Sampler {
	switch {
	case ratio >= 1:
		return sdktrace.ParentBased(sdktrace.AlwaysSample())
	case ratio <= 0:
		return sdktrace.ParentBased(sdktrace.NeverSample())
	}
	return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio))
}

func newTracerProvider(opts Options, store *SpanStore) (*sdktrace.TracerProvider, error) {
	res := resource.NewWithAttributes(semconv.SchemaURL,
		semconv.ServiceName(opts.Service),
		semconv.ServiceInstanceID(opts.InstanceID),
	)
	sampler := opts.Sampler
	if sampler == nil {
		sampler = RatioSampler(1)
	}
	popts := []sdktrace.TracerProviderOption{
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sampler),
		sdktrace.WithSpanProcessor(store),
	}
	if ep := strings.TrimSpace(opts.OTLPEndpoint); ep != "" {
		var eo []otlptracehttp.Option
		if strings.Contains(ep, "://") {
			// A base URL, as OTEL_EXPORTER_OTLP_ENDPOINT is: the traces go
			// to its /v1/traces unless it names a path of its own.
			if u, err := url.Parse(ep); err == nil && (u.Path == "" || u.Path == "/") {
				u.Path = "/v1/traces"
				ep = u.String()
			}
			eo = append(eo, otlptracehttp.WithEndpointURL(ep))
		} else {
			eo = append(eo, otlptracehttp.WithEndpoint(ep), otlptracehttp.WithInsecure())
		}
		exp, err := otlptracehttp.New(context.Background(), eo...)
		if err != nil {
			return nil, err
		}
		popts = append(popts, sdktrace.WithBatcher(exp))
	}
	return sdktrace.NewTracerProvider(popts...), nil
}
