package config_test

import (
	"io"
	"strings"
	"testing"

	"github.com/globomantics/globomantics/internal/config"
)

// TestObservabilitySettings reads the OTLP endpoint (ours over the
// standard variable, the flag over both) and the trace sample, and
// refuses bad ones.
func TestObservabilitySettings(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	c, err := config.Load(nil, env(nil), io.Discard)
	if err != nil || c.OTLPEndpoint != "" || c.TraceSample != 1 {
		t.Fatalf("defaults: %q %v %v", c.OTLPEndpoint, c.TraceSample, err)
	}
	c, err = config.Load(nil, env(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel:4318"}), io.Discard)
	if err != nil || c.OTLPEndpoint != "http://otel:4318" {
		t.Errorf("standard variable: %q %v", c.OTLPEndpoint, err)
	}
	c, err = config.Load(nil, env(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel:4318", "GLOBO_OTLP_ENDPOINT": "collector:4318", "GLOBO_TRACE_SAMPLE": "0.25"}), io.Discard)
	if err != nil || c.OTLPEndpoint != "collector:4318" || c.TraceSample != 0.25 {
		t.Errorf("ours: %q %v %v", c.OTLPEndpoint, c.TraceSample, err)
	}
	c, err = config.Load([]string{"--otlp-endpoint", "https://x.example/v1/traces", "--trace-sample", "0"}, env(map[string]string{"GLOBO_OTLP_ENDPOINT": "collector:4318"}), io.Discard)
	if err != nil || c.OTLPEndpoint != "https://x.example/v1/traces" || c.TraceSample != 0 {
		t.Errorf("flags: %q %v %v", c.OTLPEndpoint, c.TraceSample, err)
	}
	for _, args := range [][]string{
		{"--trace-sample", "1.5"},
		{"--trace-sample", "-0.1"},
		{"--otlp-endpoint", "ftp://x:1"},
		{"--otlp-endpoint", "nohostport"},
	} {
		if _, err := config.Load(args, env(nil), io.Discard); err == nil {
			t.Errorf("%v accepted", args)
		} else if !strings.Contains(err.Error(), "trace sample") && !strings.Contains(err.Error(), "OTLP endpoint") {
			t.Errorf("%v: %v", args, err)
		}
	}
	if _, err := config.Load(nil, env(map[string]string{"GLOBO_TRACE_SAMPLE": "lots"}), io.Discard); err == nil {
		t.Error("GLOBO_TRACE_SAMPLE=lots accepted")
	}
}
