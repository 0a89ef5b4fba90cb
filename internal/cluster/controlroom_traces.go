package cluster

// The one place that knows the JSON shape of a process's recent spans
// (internal/platform/obs: GET <InternalURL>/svc/obs/v1/traces lists recent
// traces, ?trace_id=X answers one trace's spans). Everything else in the
// control room works on traceSummary and traceSpan.

import (
	"encoding/json"
	"io"
	"time"

	"github.com/globomantics/globomantics/internal/platform/obs"
)

// traceSummary is one process's view of a recent trace.
type traceSummary struct {
	TraceID  string
	Root     string // the root span's name, or the process's earliest span's
	Start    time.Time
	Duration time.Duration
	Spans    int
	Error    bool
	Service  string // the process's group (the list does not say)
}

// traceSpan is one span of a trace as a process recorded it.
type traceSpan struct {
	TraceID  string
	SpanID   string
	ParentID string
	Name     string
	Service  string
	Kind     string
	Start    time.Time
	End      time.Time
	Status   string // "unset", "ok" or "error"
	Message  string // the status description, if any
	Attrs    map[string]string
	Process  string // the fleet process that served it (filled by the caller)
}

// decodeTraceList reads the list of recent traces, {"traces":[...]}.
func decodeTraceList(r io.Reader) ([]traceSummary, error) {
	var body struct {
		Traces []obs.TraceSummary `json:"traces"`
	}
	if err := json.NewDecoder(io.LimitReader(r, 8<<20)).Decode(&body); err != nil {
		return nil, err
	}
	out := make([]traceSummary, 0, len(body.Traces))
	for _, t := range body.Traces {
		if t.TraceID != "" {
			out = append(out, traceSummary{TraceID: t.TraceID, Root: t.Root, Start: t.Start, Duration: t.Duration, Spans: t.Spans, Error: t.Error})
		}
	}
	return out, nil
}

// decodeTrace reads one trace's spans, {"trace_id":ID,"spans":[...]}.
func decodeTrace(r io.Reader) ([]traceSpan, error) {
	var body struct {
		Spans []obs.SpanRecord `json:"spans"`
	}
	if err := json.NewDecoder(io.LimitReader(r, 8<<20)).Decode(&body); err != nil {
		return nil, err
	}
	out := make([]traceSpan, 0, len(body.Spans))
	for _, s := range body.Spans {
		out = append(out, traceSpan{TraceID: s.TraceID, SpanID: s.SpanID, ParentID: s.ParentID, Name: s.Name,
			Service: s.Service, Kind: s.Kind, Start: s.Start, End: s.End, Status: s.Status, Message: s.StatusText, Attrs: s.Attributes})
	}
	return out, nil
}
