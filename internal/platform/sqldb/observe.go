package sqldb

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/globomantics/globomantics/internal/platform/obs"
)

// Observability of the SQL layer: RED metrics of every call a store makes
// through a DB (its statements outside transactions, and each transaction
// as one TX operation), where reads were routed, the replicas' lag, and
// optionally one span per transaction. Off unless Options.Registerer or
// Options.TracerProvider are set.

// Operations (db_operation label) and outcomes (outcome label).
const (
	OpSelect = "SELECT"
	OpInsert = "INSERT"
	OpUpdate = "UPDATE"
	OpDelete = "DELETE"
	OpTx     = "TX"
	OpOther  = "OTHER"

	OutcomeOK    = "ok"
	OutcomeError = "error"
)

// Metrics are the SQL layer's Prometheus metrics in one registry, shared by
// every DB opened with it (NewMetrics returns the one already registered).
// sqldb_replica_lag_seconds is read from the DBs' last probes on scrape.
type Metrics struct {
	duration *prometheus.HistogramVec
	reads    *prometheus.CounterVec
	lag      *prometheus.Desc

	mu  sync.Mutex
	dbs map[*DB]string // the DBs whose replicas' lag is reported, by db_name
}

// NewMetrics registers the SQL layer's metrics in reg, or returns those
// already registered there; nil reg returns nil (no metrics). It panics
// when reg holds other metrics of the same names, as
// prometheus.MustRegister does.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	if reg == nil {
		return nil
	}
	m := &Metrics{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "db_client_operation_duration_seconds",
			Help:    "Time of a store's database call (a statement, or a whole transaction as TX), by database, operation, node role and outcome.",
			Buckets: []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10},
		}, []string{"db_name", "db_operation", "node_role", "outcome"}),
		reads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sqldb_reads_total",
			Help: "Reads (queries outside transactions) by the role of the node they were routed to.",
		}, []string{"db_name", "node_role"}),
		lag: prometheus.NewDesc("sqldb_replica_lag_seconds",
			"How far a replica is behind its primary, as of its last probe.", []string{"db_name", "node"}, nil),
		dbs: map[*DB]string{},
	}
	return obs.RegisterOnce(reg, m)
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	m.duration.Describe(ch)
	m.reads.Describe(ch)
	ch <- m.lag
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.duration.Collect(ch)
	m.reads.Collect(ch)
	m.mu.Lock()
	dbs := make(map[*DB]string, len(m.dbs))
	for db, name := range m.dbs {
		dbs[db] = name
	}
	m.mu.Unlock()
	seen := map[string]bool{}
	for db, name := range dbs {
		if db.c == nil {
			continue
		}
		for _, n := range db.c.status().Nodes {
			if n.Role != RoleReplica || seen[name+"\x00"+n.Addr] {
				continue
			}
			seen[name+"\x00"+n.Addr] = true
			ch <- prometheus.MustNewConstMetric(m.lag, prometheus.GaugeValue, n.LagSeconds, name, n.Addr)
		}
	}
}

// observer instruments one DB; nil observes nothing.
type observer struct {
	name   string // db_name
	system string // db.system.name of spans
	m      *Metrics
	tracer trace.Tracer
}

func newObserver(o Options, fallbackName string, d Dialect) *observer {
	m := NewMetrics(o.Registerer)
	if m == nil && o.TracerProvider == nil {
		return nil
	}
	ob := &observer{name: o.DBName, m: m, system: "sqlite"}
	if d == Postgres {
		ob.system = "postgresql"
	}
	if ob.name == "" {
		ob.name = o.Source
	}
	if ob.name == "" {
		ob.name = fallbackName
	}
	if o.TracerProvider != nil {
		ob.tracer = o.TracerProvider.Tracer("github.com/globomantics/globomantics/internal/platform/sqldb")
	}
	return ob
}

// instrument sets up db's observer from o and reports db's replicas' lag.
func (db *DB) instrument(o Options) *DB {
	db.obs = newObserver(o, db.name, db.Dialect)
	if db.c != nil {
		db.c.obs = db.obs
	}
	if db.obs != nil && db.obs.m != nil && db.c != nil {
		db.obs.m.mu.Lock()
		db.obs.m.dbs[db] = db.obs.name
		db.obs.m.mu.Unlock()
	}
	return db
}

// forget stops reporting db's replicas (at Close).
func (db *DB) forget() {
	if db.obs != nil && db.obs.m != nil {
		db.obs.m.mu.Lock()
		delete(db.obs.m.dbs, db)
		db.obs.m.mu.Unlock()
	}
}

// DBName is the db_name of db's metrics: Options.DBName, else its Source.
func (db *DB) DBName() string {
	if db.obs != nil {
		return db.obs.name
	}
	return db.source
}

// roleOf is the node_role label of a reader: its node's, or primary.
func roleOf(n *node) string {
	if n == nil {
		return string(RolePrimary)
	}
	return string(RoleReplica)
}

// done records a call of operation op (SQL text q, or OpTx) on a node of
// role, started at start, that ended with err.
func (o *observer) done(q, op, role string, start time.Time, err error) {
	if o == nil || o.m == nil {
		return
	}
	if op == "" {
		op = operationOf(q)
	}
	outcome := OutcomeOK
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		outcome = OutcomeError
	}
	o.m.duration.WithLabelValues(o.name, op, role, outcome).Observe(time.Since(start).Seconds())
}

// read records a query (Query, QueryRow) as done does, and counts it as a
// read of a node of role.
func (o *observer) read(q, role string, start time.Time, err error) {
	if o == nil || o.m == nil {
		return
	}
	op := operationOf(q)
	outcome := OutcomeOK
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		outcome = OutcomeError
	}
	o.m.duration.WithLabelValues(o.name, op, role, outcome).Observe(time.Since(start).Seconds())
	o.m.reads.WithLabelValues(o.name, role).Inc()
}

// startTx starts the span of a transaction, if tracing and ctx is part of
// a trace already (a request's, a saga's, a message's): background work
// such as the outbox relays' polls makes no root spans.
func (o *observer) startTx(ctx context.Context) (context.Context, trace.Span) {
	if o == nil || o.tracer == nil || !trace.SpanContextFromContext(ctx).IsValid() {
		return ctx, nil
	}
	return o.tracer.Start(ctx, "TX "+o.name, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(
		attribute.String("db.system.name", o.system),
		attribute.String("db.namespace", o.name),
		attribute.String("db.operation.name", OpTx)))
}

// endTx ends a transaction's span and records its metrics.
func (o *observer) endTx(span trace.Span, start time.Time, err error) {
	if o == nil {
		return
	}
	o.done("", OpTx, string(RolePrimary), start, err)
	if span != nil {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, "transaction failed")
		}
		span.End()
	}
}

// operationOf is the db_operation of SQL text q: its first keyword when it
// is SELECT, INSERT, UPDATE or DELETE (WITH counts as SELECT), else OTHER.
func operationOf(q string) string {
	q = strings.TrimLeft(q, " \t\r\n(")
	for strings.HasPrefix(q, "--") { // leading comment lines
		i := strings.IndexByte(q, '\n')
		if i < 0 {
			return OpOther
		}
		q = strings.TrimLeft(q[i+1:], " \t\r\n(")
	}
	end := 0
	for end < len(q) && end <= 6 && (q[end]|0x20 >= 'a' && q[end]|0x20 <= 'z') {
		end++
	}
	switch kw := strings.ToUpper(q[:end]); kw {
	case OpSelect, OpInsert, OpUpdate, OpDelete:
		return kw
	case "WITH":
		return OpSelect
	}
	return OpOther
}
