package obs

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.40.0"
	"go.opentelemetry.io/otel/trace"
)

// DefaultSpanLimit is how many ended spans a SpanStore keeps by default.
const DefaultSpanLimit = 4096

// SpanStore keeps the most recent ended spans of the process, at most its
// limit (the oldest are overwritten), and answers queries over them. It
// is an sdktrace.SpanProcessor: recording a span costs a lock and a slot.
type SpanStore struct {
	mu   sync.Mutex
	ring []sdktrace.ReadOnlySpan
	next int // slot of the next span
	full bool
}

var _ sdktrace.SpanProcessor = (*SpanStore)(nil)

// NewSpanStore returns a store of at most limit spans (DefaultSpanLimit
// when limit <= 0).
func NewSpanStore(limit int) *SpanStore {
	if limit <= 0 {
		limit = DefaultSpanLimit
	}
	return &SpanStore{ring: make([]sdktrace.ReadOnlySpan, limit)}
}

// OnStart does nothing: only ended spans are kept.
func (s *SpanStore) OnStart(context.Context, sdktrace.ReadWriteSpan) {}

// OnEnd keeps span, overwriting the oldest when the store is full.
func (s *SpanStore) OnEnd(span sdktrace.ReadOnlySpan) {
	if !span.SpanContext().IsSampled() {
		return
	}
	s.mu.Lock()
	s.ring[s.next] = span
	s.next++
	if s.next == len(s.ring) {
		s.next, s.full = 0, true
	}
	s.mu.Unlock()
}

// Shutdown does nothing; the spans stay queryable.
func (s *SpanStore) Shutdown(context.Context) error { return nil }

// ForceFlush does nothing: spans are stored when they end.
func (s *SpanStore) ForceFlush(context.Context) error { return nil }

// snapshot returns the stored spans, oldest first.
func (s *SpanStore) snapshot() []sdktrace.ReadOnlySpan {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.full {
		return slices.Clone(s.ring[:s.next])
	}
	return slices.Concat(s.ring[s.next:], s.ring[:s.next])
}

// Len is the number of spans stored.
func (s *SpanStore) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.full {
		return len(s.ring)
	}
	return s.next
}

// TraceSummary is one trace as the store knows it: its spans here only
// (other processes keep their own).
type TraceSummary struct {
	TraceID  string        `json:"trace_id"`
	Root     string        `json:"root"` // the name of the root span, or of the earliest span here
	Start    time.Time     `json:"start"`
	Duration time.Duration `json:"duration_ns"`
	Spans    int           `json:"spans"`
	Error    bool          `json:"error"` // some span ended with status Error
}

// Recent returns up to limit traces, the most recently started first.
func (s *SpanStore) Recent(limit int) []TraceSummary {
	byID := map[trace.TraceID]*TraceSummary{}
	ends := map[trace.TraceID]time.Time{}
	rootFound := map[trace.TraceID]bool{}
	var order []trace.TraceID
	for _, sp := range s.snapshot() {
		id := sp.SpanContext().TraceID()
		t := byID[id]
		if t == nil {
			t = &TraceSummary{TraceID: id.String(), Root: sp.Name(), Start: sp.StartTime()}
			byID[id] = t
			order = append(order, id)
		}
		t.Spans++
		if sp.Status().Code == codes.Error {
			t.Error = true
		}
		isRoot := !sp.Parent().IsValid()
		if (isRoot && !rootFound[id]) || (!rootFound[id] && sp.StartTime().Before(t.Start)) {
			t.Root = sp.Name()
			rootFound[id] = isRoot
		}
		if sp.StartTime().Before(t.Start) {
			t.Start = sp.StartTime()
		}
		if sp.EndTime().After(ends[id]) {
			ends[id] = sp.EndTime()
		}
	}
	out := make([]TraceSummary, 0, len(order))
	for _, id := range order {
		t := byID[id]
		t.Duration = ends[id].Sub(t.Start)
		out = append(out, *t)
	}
	slices.SortFunc(out, func(a, b TraceSummary) int { return b.Start.Compare(a.Start) })
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out
}

// SpanRecord is one stored span, as the traces handler shows it.
type SpanRecord struct {
	TraceID    string            `json:"trace_id"`
	SpanID     string            `json:"span_id"`
	ParentID   string            `json:"parent_id,omitempty"`
	Name       string            `json:"name"`
	Kind       string            `json:"kind"`
	Service    string            `json:"service"`
	Start      time.Time         `json:"start"`
	End        time.Time         `json:"end"`
	Status     string            `json:"status"` // "unset", "ok" or "error"
	StatusText string            `json:"status_text,omitempty"`
	Attributes map[string]string `json:"attributes,omitempty"`
}

// Trace returns the stored spans of the trace with the given id (32 hex
// digits), by start time; none for an unknown or malformed id.
func (s *SpanStore) Trace(id string) []SpanRecord {
	tid, err := trace.TraceIDFromHex(id)
	if err != nil {
		return nil
	}
	var out []SpanRecord
	for _, sp := range s.snapshot() {
		if sp.SpanContext().TraceID() == tid {
			out = append(out, record(sp))
		}
	}
	slices.SortStableFunc(out, func(a, b SpanRecord) int { return a.Start.Compare(b.Start) })
	return out
}

func record(sp sdktrace.ReadOnlySpan) SpanRecord {
	r := SpanRecord{
		TraceID: sp.SpanContext().TraceID().String(),
		SpanID:  sp.SpanContext().SpanID().String(),
		Name:    sp.Name(),
		Kind:    sp.SpanKind().String(),
		Start:   sp.StartTime(),
		End:     sp.EndTime(),
	}
	if p := sp.Parent(); p.IsValid() {
		r.ParentID = p.SpanID().String()
	}
	if res := sp.Resource(); res != nil {
		if v, ok := res.Set().Value(semconv.ServiceNameKey); ok {
			r.Service = v.AsString()
		}
	}
	switch st := sp.Status(); st.Code {
	case codes.Error:
		r.Status, r.StatusText = "error", st.Description
	case codes.Ok:
		r.Status = "ok"
	default:
		r.Status = "unset"
	}
	if attrs := sp.Attributes(); len(attrs) > 0 {
		r.Attributes = make(map[string]string, len(attrs))
		for _, kv := range attrs {
			r.Attributes[string(kv.Key)] = attrString(kv.Value)
		}
	}
	return r
}

func attrString(v attribute.Value) string { return v.String() }

// Handler serves the store as JSON: GET lists recent traces
// ({"traces":[TraceSummary...]}, at most ?limit=, 100 by default);
// GET ?trace_id=ID lists one trace's spans ({"trace_id":ID,"spans":[...]},
// 404 when none is stored).
func (s *SpanStore) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "method not allowed"})
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		if id := r.URL.Query().Get("trace_id"); id != "" {
			spans := s.Trace(id)
			if len(spans) == 0 {
				writeJSON(w, http.StatusNotFound, map[string]string{"error": "no span of this trace is stored here"})
				return
			}
			writeJSON(w, http.StatusOK, map[string]any{"trace_id": id, "spans": spans})
			return
		}
		limit := 100
		if v := r.URL.Query().Get("limit"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				writeJSON(w, http.StatusBadRequest, map[string]string{"error": "limit must be a positive integer"})
				return
			}
			limit = min(n, 1000)
		}
		writeJSON(w, http.StatusOK, map[string]any{"traces": s.Recent(limit)})
	})
}
