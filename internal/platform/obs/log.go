package obs

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"

	"go.opentelemetry.io/otel/trace"
)

type ctxKey int

const requestIDKey ctxKey = iota

// WithRequestID returns ctx carrying the request id id.
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey, id)
}

// RequestID is the request id ctx carries, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}

// The attribute keys LogHandler adds.
const (
	LogRequestID = "request_id"
	LogTraceID   = "trace_id"
	LogSpanID    = "span_id"
)

// LogHandler wraps a slog.Handler so that every record logged with a
// context (slog's *Context methods, Logger.Log) carries request_id,
// trace_id and span_id from that context, unless the record has them
// already. Records logged without a context are passed on unchanged.
type LogHandler struct{ next slog.Handler }

// NewLogHandler returns next wrapped in a LogHandler.
func NewLogHandler(next slog.Handler) *LogHandler { return &LogHandler{next: next} }

// Enabled reports whether next handles level.
func (h *LogHandler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

// Handle adds the context's ids to r and passes it on.
func (h *LogHandler) Handle(ctx context.Context, r slog.Record) error {
	if ctx == nil {
		return h.next.Handle(ctx, r)
	}
	id := RequestID(ctx)
	sc := trace.SpanContextFromContext(ctx)
	if id == "" && !sc.IsValid() {
		return h.next.Handle(ctx, r)
	}
	var hasID, hasTrace, hasSpan bool
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case LogRequestID:
			hasID = true
		case LogTraceID:
			hasTrace = true
		case LogSpanID:
			hasSpan = true
		}
		return true
	})
	if id != "" && !hasID {
		r.AddAttrs(slog.String(LogRequestID, id))
	}
	if sc.IsValid() {
		if !hasTrace {
			r.AddAttrs(slog.String(LogTraceID, sc.TraceID().String()))
		}
		if !hasSpan {
			r.AddAttrs(slog.String(LogSpanID, sc.SpanID().String()))
		}
	}
	return h.next.Handle(ctx, r)
}

// WithAttrs returns the handler with attrs on every record.
func (h *LogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &LogHandler{next: h.next.WithAttrs(attrs)}
}

// WithGroup returns the handler with later attributes in group name (the
// ids then land in that group too).
func (h *LogHandler) WithGroup(name string) slog.Handler {
	return &LogHandler{next: h.next.WithGroup(name)}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
