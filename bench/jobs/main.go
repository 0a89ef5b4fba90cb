// Command jobs measures jobs per second end to end, from a job written in a
// SQL transaction to its effect recorded by a consumer, beside a raw
// JetStream publish-and-consume loop measured in the same run on the same
// broker, so that the ratio means something on a busy machine:
//
//	go run ./bench/jobs                        # 2000 jobs per measurement, SQLite (+ PostgreSQL if installed)
//	go run ./bench/jobs -n 5000 -rounds 3      # medians of 3 interleaved rounds
//	go run ./bench/jobs -pg=false -subs 1,2,4  # SQLite only, 1, 2 and 4 consumer instances
//	go run ./bench/jobs -rate 100              # an open load of 100 per second: the lag below capacity
//
// Without -rate everything is sent at once (a burst): the rate is the
// throughput, and the lags include the time waiting in the queue behind the
// burst. With -rate messages and jobs are sent evenly at that rate, and the
// lags are those of a system keeping up (if it does: the rate then equals
// -rate).
//
// One embedded NATS server (bus.Open, as the shop embeds it: every write
// fsynced before it is acknowledged) listens on a free loopback port in a
// temporary directory; every client connects to it over TCP.
//
// Raw JetStream, per stream persistence: a stream of its own (file storage),
// Synced (the server's sync_interval: always, as GLOBO) or Buffered (the
// stream's PersistMode async, as GLOBO_ANALYTICS); one publisher sends -n
// messages of -size bytes with asynchronous publishes (256 in flight), one
// pull consumer (the client's default pull batch, and once with batches of
// one message, as bus.Subscribe pulls) acks each. Lag is from the publish
// call to the consumer's callback.
//
// End to end, per database: -w writers each commit jobs, one transaction per
// job (a row in a table and the job in the outbox, outbox.Add), and kick the
// relay, as a service does; the real outbox relay (outbox.Relay, default
// batches of 100) publishes to the real bus (bus.PublishBatch, Nats-Msg-Id =
// job id, stream GLOBO: Synced); -subs consumer instances (each its own bus
// connection, one durable consumer shared: bus.Subscribe) handle each job in
// one transaction that records its id in the inbox (inbox.Apply) and its
// effect in a table. Lag is from the start of the job's transaction to the
// commit of its effect. SQLite: a file opened with sqldb.OpenSQLite (the
// shop's pragmas). PostgreSQL: a private server (pgnode: fsync and
// synchronous_commit on) in the temporary directory, when its binaries are
// installed (or -pg=true to require them).
//
// A measurement ends when all -n messages or jobs have arrived, or after -d
// (then the rate is of those that arrived, and the row says so). The result
// is a Markdown table with each row's rate as a fraction of the raw Synced
// loop's. Other programs sharing the machine make the numbers noisy: the
// load average is printed, and -rounds interleaves the measurements and
// reports medians.
package main

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing/fstest"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/globomantics/globomantics/bench/internal/measure"
	"github.com/globomantics/globomantics/internal/platform/bus"
	"github.com/globomantics/globomantics/internal/platform/inbox"
	"github.com/globomantics/globomantics/internal/platform/outbox"
	"github.com/globomantics/globomantics/internal/platform/pgnode"
	"github.com/globomantics/globomantics/internal/platform/sqldb"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "jobs bench:", err)
		os.Exit(1)
	}
}

type config struct {
	rounds  int
	dur     time.Duration
	n       int
	writers int
	size    int
	subs    []int
	conc    int
	pg      string  // auto, true, false
	rate    float64 // messages or jobs sent per second; 0: as fast as possible
}

// due is when message or job i (from 0) is to be sent: at once without a
// rate, else spread evenly from start.
func (c config) due(start time.Time, i int64) time.Time {
	if c.rate <= 0 {
		return start
	}
	return start.Add(time.Duration(float64(i) * float64(time.Second) / c.rate))
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	c := config{}
	fs := flag.NewFlagSet("jobs", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&c.rounds, "rounds", 1, "measure everything this many times, interleaved, and report the medians")
	fs.DurationVar(&c.dur, "d", 30*time.Second, "longest a measurement may take (at most 5m)")
	fs.IntVar(&c.n, "n", 2000, "messages or jobs per measurement")
	fs.IntVar(&c.writers, "w", 4, "goroutines writing jobs, one transaction per job")
	fs.IntVar(&c.size, "size", 64, "bytes of payload per message or job")
	subs := fs.String("subs", "1,4", "comma-separated numbers of consumer instances to measure end to end")
	fs.IntVar(&c.conc, "conc", 8, "also measure one consumer instance handling this many jobs at once (bus.Concurrency); 1 to skip")
	fs.StringVar(&c.pg, "pg", "auto", "measure PostgreSQL too: true, false, or auto (when its binaries are installed)")
	fs.Float64Var(&c.rate, "rate", 0, "send at this many messages or jobs per second (an open load, for the lag below capacity); 0: as fast as possible (a burst, for the throughput)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	for _, s := range strings.Split(*subs, ",") {
		k, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || k < 1 || k > 64 {
			return c, fmt.Errorf("-subs: %q is not a number from 1 to 64", s)
		}
		c.subs = append(c.subs, k)
	}
	switch {
	case c.rounds < 1 || c.rounds > 20:
		return c, errors.New("-rounds must be from 1 to 20")
	case c.n < 10 || c.n > 1_000_000:
		return c, errors.New("-n must be from 10 to 1000000")
	case c.writers < 1 || c.writers > 256:
		return c, errors.New("-w must be from 1 to 256")
	case c.size < 16 || c.size > 1<<20:
		return c, errors.New("-size must be from 16 bytes to 1 MiB")
	case c.dur < time.Second || c.dur > 5*time.Minute:
		return c, errors.New("-d must be from 1s to 5m")
	case c.rate < 0 || c.rate > 1e6:
		return c, errors.New("-rate must be from 0 to 1000000")
	case c.pg != "auto" && c.pg != "true" && c.pg != "false":
		return c, errors.New("-pg must be true, false or auto")
	}
	return c, nil
}

// sample is one measurement.
type sample struct {
	rate     float64 // per second
	p50, p99 time.Duration
	got, n   int // arrived of sent
}

// target is one row of the table: a measurement and its samples by round.
type target struct {
	name    string
	measure func(ctx context.Context, round int) (sample, error)
	samples []sample
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	c, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	root, err := os.MkdirTemp("", "globo-bench-jobs-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(root)
	// PostgreSQL runs as the postgres user when this runs as root: it must
	// reach its directory under root.
	if err := os.Chmod(root, 0o755); err != nil {
		return err
	}
	quiet := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	b, err := bus.Open(ctx, bus.Options{StoreDir: filepath.Join(root, "nats"), ListenAddr: measure.LoopbackAddr(), Name: "bench relay", Log: quiet})
	if err != nil {
		return err
	}
	defer b.Close()
	url := b.ClientURL()

	dbs := map[string]*sqldb.DB{}
	sqlite, err := sqldb.OpenSQLite(ctx, filepath.Join(root, "jobs.db"))
	if err != nil {
		return err
	}
	defer sqlite.Close()
	dbs["sqlite"] = sqlite
	backends := []string{"sqlite"}
	if c.pg != "false" {
		if pgnode.BinDir() == "" {
			if c.pg == "true" {
				return pgnode.ErrNoBinaries
			}
			fmt.Fprintln(stderr, "PostgreSQL binaries not found: SQLite only")
		} else {
			fmt.Fprintln(stderr, "starting a private PostgreSQL server ...")
			node, err := pgnode.StartPrimary(ctx, pgnode.Options{Dir: filepath.Join(root, "pg")})
			if err != nil {
				return err
			}
			defer node.Close()
			if err := node.CreateDatabase(ctx, "jobs"); err != nil {
				return err
			}
			pg, err := sqldb.OpenPostgres(ctx, node.DSN("jobs"))
			if err != nil {
				return err
			}
			defer pg.Close()
			dbs["postgres"] = pg
			backends = append(backends, "postgres")
		}
	}
	for _, name := range backends {
		if err := dbs[name].Migrate(ctx, "benchjobs", migrations()); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}

	targets := []*target{
		{name: "raw JetStream, Synced stream", measure: func(ctx context.Context, r int) (sample, error) {
			return raw(ctx, url, c, fmt.Sprintf("S%d", r), jetstream.DefaultPersistMode, 0)
		}},
		{name: "raw JetStream, Synced stream, pull batches of 1", measure: func(ctx context.Context, r int) (sample, error) {
			return raw(ctx, url, c, fmt.Sprintf("S1%d", r), jetstream.DefaultPersistMode, 1)
		}},
		{name: "raw JetStream, Buffered stream", measure: func(ctx context.Context, r int) (sample, error) {
			return raw(ctx, url, c, fmt.Sprintf("B%d", r), jetstream.AsyncPersistMode, 0)
		}},
	}
	for _, name := range backends {
		db := dbs[name]
		for _, k := range c.subs {
			targets = append(targets, &target{name: fmt.Sprintf("end to end, %s, %d consumer instance(s)", name, k),
				measure: func(ctx context.Context, r int) (sample, error) {
					return endToEnd(ctx, db, b, url, c, k, 1, fmt.Sprintf("%s%dr%d", name[:2], k, r), quiet)
				}})
		}
		if c.conc > 1 {
			targets = append(targets, &target{name: fmt.Sprintf("end to end, %s, 1 consumer instance, %d at once", name, c.conc),
				measure: func(ctx context.Context, r int) (sample, error) {
					return endToEnd(ctx, db, b, url, c, 1, c.conc, fmt.Sprintf("%sc%dr%d", name[:2], c.conc, r), quiet)
				}})
		}
	}

	fmt.Fprintf(stderr, "%s, load average %s\n", measure.Machine(), measure.LoadAvg())
	for r := range c.rounds {
		for _, t := range targets {
			mctx, cancel := context.WithTimeout(ctx, c.dur+30*time.Second)
			s, err := t.measure(mctx, r)
			cancel()
			if err != nil {
				return fmt.Errorf("%s: %w", t.name, err)
			}
			fmt.Fprintf(stderr, "round %d  %-52s %8.0f /s  p50 %7.1f ms  p99 %7.1f ms  (%d of %d)\n",
				r+1, t.name, s.rate, measure.Ms(s.p50), measure.Ms(s.p99), s.got, s.n)
			t.samples = append(t.samples, s)
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
	}
	report(stdout, c, targets)
	return nil
}

// report prints the medians as a Markdown table.
func report(w io.Writer, c config, targets []*target) {
	load := "as fast as possible (a burst: lags include the queue)"
	if c.rate > 0 {
		load = fmt.Sprintf("sent at %.0f per second", c.rate)
	}
	fmt.Fprintf(w, "\n%d messages or jobs of %d bytes per measurement, %s, %d round(s) (medians), %d writers; %s; load average %s at the end\n\n",
		c.n, c.size, load, c.rounds, c.writers, measure.Machine(), measure.LoadAvg())
	fmt.Fprintln(w, "| measurement | per second | lag p50 | lag p99 | of raw Synced |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|")
	ref := median(targets[0].samples, func(s sample) float64 { return s.rate })
	for _, t := range targets {
		rate := median(t.samples, func(s sample) float64 { return s.rate })
		p50 := median(t.samples, func(s sample) float64 { return float64(s.p50) })
		p99 := median(t.samples, func(s sample) float64 { return float64(s.p99) })
		note := ""
		for _, s := range t.samples {
			if s.got < s.n {
				note = fmt.Sprintf(" (only %d of %d arrived within -d)", s.got, s.n)
			}
		}
		fmt.Fprintf(w, "| %s%s | %.0f | %.1f ms | %.1f ms | %.2f |\n", t.name, note, rate,
			measure.Ms(time.Duration(p50)), measure.Ms(time.Duration(p99)), rate/ref)
	}
}

func median(ss []sample, f func(sample) float64) float64 {
	v := make([]float64, len(ss))
	for i, s := range ss {
		v[i] = f(s)
	}
	slices.Sort(v)
	if len(v) == 0 {
		return 0
	}
	return v[len(v)/2]
}

// lags collects latencies from concurrent callbacks and tells when n came.
type lags struct {
	mu    sync.Mutex
	d     []time.Duration
	n     int
	last  time.Time
	done  chan struct{}
	extra atomic.Int64 // arrivals beyond n or repeated (must stay 0)
}

func newLags(n int) *lags {
	return &lags{d: make([]time.Duration, 0, n), n: n, done: make(chan struct{})}
}

func (l *lags) add(d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.d) >= l.n {
		l.extra.Add(1)
		return
	}
	l.d = append(l.d, d)
	l.last = time.Now()
	if len(l.d) == l.n {
		close(l.done)
	}
}

// wait waits until n arrived or ctx or the deadline ends, and returns the
// sample measured from start.
func (l *lags) wait(ctx context.Context, start time.Time, dur time.Duration) sample {
	t := time.NewTimer(dur)
	defer t.Stop()
	select {
	case <-l.done:
	case <-t.C:
	case <-ctx.Done():
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	d := slices.Clone(l.d)
	slices.Sort(d)
	s := sample{got: len(d), n: l.n, p50: measure.Pct(d, 50), p99: measure.Pct(d, 99)}
	if len(d) > 0 {
		s.rate = float64(len(d)) / l.last.Sub(start).Seconds()
	}
	return s
}

// raw publishes c.n messages to a stream of its own and consumes them with
// one pull consumer, acking each; pullMax > 0 sets the pull batch.
func raw(ctx context.Context, url string, c config, tag string, persist jetstream.PersistModeType, pullMax int) (sample, error) {
	nc, err := nats.Connect(url, nats.Name("bench raw "+tag))
	if err != nil {
		return sample{}, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(256))
	if err != nil {
		return sample{}, err
	}
	name := "BENCH_RAW_" + tag
	subject := "bench_raw_" + strings.ToLower(tag)
	st, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{subject}, Storage: jetstream.FileStorage,
		PersistMode: persist})
	if err != nil {
		return sample{}, err
	}
	defer func() { _ = js.DeleteStream(context.Background(), name) }()
	cons, err := st.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "bench", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		return sample{}, err
	}
	l := newLags(c.n)
	var opts []jetstream.PullConsumeOpt
	if pullMax > 0 {
		opts = append(opts, jetstream.PullMaxMessages(pullMax))
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		sent := int64(binary.BigEndian.Uint64(m.Data()))
		_ = m.Ack()
		l.add(time.Since(time.Unix(0, sent)))
	}, opts...)
	if err != nil {
		return sample{}, err
	}
	defer cc.Stop()
	start := time.Now()
	payload := make([]byte, c.size)
	for i := 0; i < c.n && ctx.Err() == nil; i++ {
		measure.SleepUntil(ctx, c.due(start, int64(i)))
		data := slices.Clone(payload)
		binary.BigEndian.PutUint64(data, uint64(time.Now().UnixNano()))
		// A full window (256 in flight) waits for acks rather than failing.
		if _, err := js.PublishAsync(subject, data, jetstream.WithStallWait(10*time.Second)); err != nil {
			return sample{}, err
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
	}
	s := l.wait(ctx, start, c.dur-time.Since(start))
	if n := l.extra.Load(); n > 0 {
		return s, fmt.Errorf("%d messages arrived twice", n)
	}
	return s, nil
}

// job is the payload of a benchmark job.
type job struct {
	At  int64  `json:"at"` // unix nanoseconds when its transaction began
	Pad string `json:"pad"`
}

// migrations are the benchmark store's: the jobs written, the effects
// recorded, and the outbox and inbox tables of the shop's packages.
func migrations() fstest.MapFS {
	return fstest.MapFS{
		"00001_jobs.sql": {Data: []byte(`-- +goose Up
CREATE TABLE bench_jobs (id TEXT PRIMARY KEY, created_ns BIGINT NOT NULL);
CREATE TABLE bench_effects (id TEXT PRIMARY KEY, done_ns BIGINT NOT NULL);
`)},
		"00002_outbox.sql":    {Data: []byte(outbox.Migration)},
		"00003_outbox_v2.sql": {Data: []byte(outbox.MigrationV2)},
		"00004_inbox.sql":     {Data: []byte(inbox.Migration)},
	}
}

// endToEnd writes c.n jobs into db's outbox from c.writers goroutines,
// relays them with a real relay through pub, and has subs consumer
// instances (each its own connection to url) record each job's effect.
func endToEnd(ctx context.Context, db *sqldb.DB, pub *bus.Bus, url string, c config, subs, conc int, tag string, log *slog.Logger) (sample, error) {
	subject := "globo.bench.job_" + strings.ToLower(tag)
	l := newLags(c.n)
	var seen sync.Map // job ids whose effect was recorded, to catch doubles
	handle := func(ctx context.Context, ev bus.Event) error {
		var j job
		if err := ev.Decode(&j); err != nil {
			return bus.Permanent(err)
		}
		fresh := false
		err := db.InTx(ctx, func(tx *sqldb.Tx) error {
			now := time.Now()
			var err error
			if fresh, err = inbox.Apply(ctx, tx, "bench", ev.ID, now); err != nil || !fresh {
				return err
			}
			_, err = tx.ExecContext(ctx, `INSERT INTO bench_effects (id, done_ns) VALUES (?, ?)`, ev.ID, now.UnixNano())
			return err
		})
		if err != nil {
			return err
		}
		if fresh {
			if _, dup := seen.LoadOrStore(ev.ID, true); dup {
				l.extra.Add(1)
			}
			l.add(time.Since(time.Unix(0, j.At)))
		}
		return nil
	}
	var consumers []*bus.Bus
	defer func() {
		for _, cb := range consumers {
			cb.Close()
		}
	}()
	for i := range subs {
		cb, err := bus.Open(ctx, bus.Options{URL: url, Name: fmt.Sprintf("bench consumer %d", i), Log: log})
		if err != nil {
			return sample{}, err
		}
		consumers = append(consumers, cb)
		if err := cb.Subscribe(ctx, "bench-"+strings.ToLower(tag), []string{subject}, handle, bus.Concurrency(conc)); err != nil {
			return sample{}, err
		}
	}
	relay := outbox.NewRelay(db, pub, log)
	rctx, stopRelay := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); relay.Run(rctx) }()
	defer func() { stopRelay(); wg.Wait() }()

	pad := strings.Repeat("x", max(c.size-40, 1)) // the JSON envelope around it makes up the size
	var next atomic.Int64
	errc := make(chan error, c.writers)
	start := time.Now()
	var wwg sync.WaitGroup
	for range c.writers {
		wwg.Add(1)
		go func() {
			defer wwg.Done()
			for ctx.Err() == nil {
				i := next.Add(1)
				if i > int64(c.n) {
					return
				}
				measure.SleepUntil(ctx, c.due(start, i-1))
				id := tag + "-" + strconv.FormatInt(i, 10)
				now := time.Now()
				err := db.InTx(ctx, func(tx *sqldb.Tx) error {
					if _, err := tx.ExecContext(ctx, `INSERT INTO bench_jobs (id, created_ns) VALUES (?, ?)`, id, now.UnixNano()); err != nil {
						return err
					}
					return outbox.Add(ctx, tx, subject, id, job{At: now.UnixNano(), Pad: pad}, now)
				})
				if err != nil {
					errc <- err
					return
				}
				relay.Kick()
			}
		}()
	}
	wwg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return sample{}, err
	}
	s := l.wait(ctx, start, c.dur-time.Since(start))
	if n := l.extra.Load(); n > 0 {
		return s, fmt.Errorf("%d jobs had their effect recorded twice", n)
	}
	return s, nil
}
