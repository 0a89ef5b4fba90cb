package bus_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/globomantics/globomantics/internal/platform/bus"
	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

// childEnv, when set, makes the test binary run an embedded broker (bus.Open
// with ListenAddr) instead of the tests, so that a test can trace it with
// strace or kill it with SIGKILL. The value is "dir|addr".
const childEnv = "GLOBO_BUS_TEST_CHILD"

func TestMain(m *testing.M) {
	if v := os.Getenv(childEnv); v != "" {
		os.Exit(runChild(v))
	}
	testenv.Main(m)
}

// runChild runs the broker until standard input closes or SIGTERM.
func runChild(v string) int {
	dir, addr, _ := strings.Cut(v, "|")
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	b, err := bus.Open(ctx, bus.Options{StoreDir: dir, ListenAddr: addr, Name: "child", Log: log})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("ready")
	eof := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); close(eof) }()
	select {
	case <-ctx.Done():
	case <-eof:
	}
	_ = b.Close()
	return 0
}

// child is a broker running in a child process.
type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	addr  string
}

// startChild runs the embedded broker in a child process on dir, under the
// command prefix (strace ...) if any, and waits until it accepts clients.
func startChild(t *testing.T, dir string, prefix ...string) *child {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	addr := testenv.FreeAddr(t)
	args := append(append([]string{}, prefix...), self, "-test.run=^$")
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), childEnv+"="+dir+"|"+addr)
	cmd.Stderr = testWriter{t}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, stdin: stdin, addr: addr}
	t.Cleanup(func() {
		if c.cmd.ProcessState == nil {
			_ = c.cmd.Process.Kill()
			_ = c.cmd.Wait()
		}
	})
	// The child prints "ready" once bus.Open has returned.
	ready := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if sc.Text() == "ready" {
				ready <- nil
				_, _ = io.Copy(io.Discard, stdout)
				return
			}
		}
		ready <- fmt.Errorf("child broker exited before it was ready: %v", sc.Err())
	}()
	select {
	case err := <-ready:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(wait):
		t.Fatalf("child broker not ready after %v", wait)
	}
	return c
}

// stop closes the child's standard input and waits for it to exit.
func (c *child) stop(t *testing.T) {
	t.Helper()
	_ = c.stdin.Close()
	if err := c.cmd.Wait(); err != nil {
		t.Fatalf("child broker: %v", err)
	}
}

// kill sends SIGKILL and reaps the child.
func (c *child) kill(t *testing.T) {
	t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = c.cmd.Wait()
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Logf("child: %s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func connectJS(t *testing.T, addr string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect("nats://" + addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// window is when the client sent a publish and when it received the ack, in
// microseconds of CLOCK_REALTIME (the clock of strace -ttt).
type window struct{ sent, acked int64 }

func publishTimed(t *testing.T, js jetstream.JetStream, subject string, n int) []window {
	t.Helper()
	ctx := context.Background()
	ws := make([]window, n)
	for i := range ws {
		id := fmt.Sprintf("%s-%d", subject, i)
		ws[i].sent = time.Now().UnixMicro()
		if _, err := js.Publish(ctx, subject, []byte(`{"n":`+strconv.Itoa(i)+`}`), jetstream.WithMsgID(id)); err != nil {
			t.Fatalf("publish %s: %v", id, err)
		}
		ws[i].acked = time.Now().UnixMicro()
	}
	return ws
}

// ioCall is one write or fsync of a stream's block file seen by strace.
type ioCall struct {
	call       string // pwrite64, write, fsync, fdatasync
	path       string
	start, end int64 // microseconds, CLOCK_REALTIME
}

var (
	// 1234 1732570000.123456 fsync(9</d/.../msgs/1.blk>) = 0 <0.001234>
	straceLine = regexp.MustCompile(`^(\d+)\s+(\d+)\.(\d{6}) (\w+)\((\d+)<([^>]*)>.*?(<unfinished \.\.\.>|= -?\d+.*<(\d+)\.(\d{6})>)$`)
	// 1234 1732570000.125000 <... fsync resumed>) = 0 <0.001234>
	straceResumed = regexp.MustCompile(`^(\d+)\s+(\d+)\.(\d{6}) <\.\.\. (\w+) resumed>.*= -?\d+`)
)

func micros(sec, frac string) int64 {
	s, _ := strconv.ParseInt(sec, 10, 64)
	f, _ := strconv.ParseInt(frac, 10, 64)
	return s*1e6 + f
}

// parseStrace returns the calls on files whose path contains pathPart.
func parseStrace(t *testing.T, file, pathPart string) []ioCall {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pending := map[string]ioCall{} // by pid
	var out []ioCall
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if m := straceLine.FindStringSubmatch(line); m != nil {
			if !strings.Contains(m[6], pathPart) {
				continue
			}
			c := ioCall{call: m[4], path: m[6], start: micros(m[2], m[3])}
			if strings.HasPrefix(m[7], "<unfinished") {
				pending[m[1]] = c
				continue
			}
			c.end = c.start + micros(m[8], m[9])
			out = append(out, c)
			continue
		}
		if m := straceResumed.FindStringSubmatch(line); m != nil {
			if c, ok := pending[m[1]]; ok && c.call == m[4] {
				delete(pending, m[1])
				c.end = micros(m[2], m[3])
				out = append(out, c)
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func isSync(call string) bool { return call == "fsync" || call == "fdatasync" }

// syncedInWindow reports whether, within w, a write to a block file was
// followed by an fsync of that file that returned before the ack arrived.
func syncedInWindow(calls []ioCall, w window) bool {
	for _, wr := range calls {
		if isSync(wr.call) || wr.start < w.sent || wr.end > w.acked {
			continue
		}
		for _, s := range calls {
			if isSync(s.call) && s.path == wr.path && s.start >= wr.end && s.end <= w.acked {
				return true
			}
		}
	}
	return false
}

func needStrace(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("strace")
	if err != nil {
		if testenv.Required() {
			t.Fatalf("strace is required (GLOBO_REQUIRE_SERVICES=1): %v", err)
		}
		t.Skip("strace not installed")
	}
	return p
}

// TestSyncedStreamFsyncsBeforeAck watches the broker's system calls: for
// every publish to the Synced stream GLOBO acknowledged to the client, the
// broker wrote the message to the stream's block file and fsynced that file
// before the acknowledgement reached the client. As a control, a stream
// marked Buffered on the same broker is acknowledged without any fsync,
// which shows the check can tell the two apart.
func TestSyncedStreamFsyncsBeforeAck(t *testing.T) {
	strace := needStrace(t)
	dir := t.TempDir()
	trace := filepath.Join(t.TempDir(), "strace.out")
	c := startChild(t, dir, strace, "-f", "-qq", "-ttt", "-T", "-y", "-o", trace,
		"-e", "trace=write,pwrite64,writev,pwritev,fsync,fdatasync")
	_, js := connectJS(t, c.addr)
	ctx := context.Background()
	// A Buffered stream, configured as the bus would configure one.
	analytics := bus.StreamSpec{Name: "ANALYTICS", Subjects: []string{"analytics.>"}, Persistence: bus.Buffered}
	if _, err := js.CreateStream(ctx, bus.StreamConfigForTest(analytics)); err != nil {
		t.Fatal(err)
	}

	const n = 20
	synced := publishTimed(t, js, "globo.order.placed", n)
	buffered := publishTimed(t, js, "analytics.page_view", n)
	c.stop(t)

	globo := parseStrace(t, trace, "/streams/"+bus.StreamName+"/msgs/")
	for i, w := range synced {
		if !syncedInWindow(globo, w) {
			t.Errorf("publish %d to %s was acknowledged without a write and fsync of its block file in between (window %d..%d µs)", i, bus.StreamName, w.sent, w.acked)
		}
	}
	var fsyncs int
	for _, cl := range globo {
		if isSync(cl.call) {
			fsyncs++
		}
	}
	if fsyncs < n {
		t.Errorf("%d fsyncs of %s block files for %d acknowledged publishes", fsyncs, bus.StreamName, n)
	}

	an := parseStrace(t, trace, "/streams/ANALYTICS/msgs/")
	for _, cl := range an {
		if !isSync(cl.call) {
			continue
		}
		for i, w := range buffered {
			if cl.end >= w.sent && cl.start <= w.acked {
				t.Errorf("buffered publish %d: the broker fsynced %s during the publish; the control expects none", i, cl.path)
			}
		}
	}
	t.Logf("%s: %d block-file calls (%d fsyncs) for %d publishes; ANALYTICS: %d block-file calls", bus.StreamName, len(globo), fsyncs, n, len(an))
}

// TestAckedMessagesSurviveSIGKILL kills the broker process with SIGKILL
// after publishes were acknowledged, restarts it on the same store, and finds
// every acknowledged message.
func TestAckedMessagesSurviveSIGKILL(t *testing.T) {
	dir := t.TempDir()
	c := startChild(t, dir)
	pub, err := bus.Open(context.Background(), bus.Options{URL: "nats://" + c.addr, Name: "pub", Log: testenv.Logger(t), ConnectTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	const n = 50
	for i := range n {
		publish(t, pub, "globo.payment.captured", fmt.Sprintf("p-%d", i), i)
	}
	c.kill(t)
	pub.Close()

	c = startChild(t, dir)
	_, js := connectJS(t, c.addr)
	ctx := context.Background()
	s, err := js.Stream(ctx, bus.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != n {
		t.Fatalf("after SIGKILL and restart the stream holds %d messages, want %d", info.State.Msgs, n)
	}
	for i := range n {
		m, err := s.GetMsg(ctx, uint64(i+1))
		if err != nil {
			t.Fatal(err)
		}
		if id, want := m.Header.Get(jetstream.MsgIDHeader), fmt.Sprintf("p-%d", i); id != want {
			t.Errorf("message %d has id %q, want %q", i+1, id, want)
		}
	}
	c.stop(t)
}

// serverWithSystemAccount starts a NATS server from a configuration file
// whose jetstream block is jsBlock, with a system account (user sys) and an
// application account (user app), and returns its address.
func serverWithSystemAccount(t *testing.T, jsBlock string) string {
	t.Helper()
	addr := testenv.FreeAddr(t)
	conf := fmt.Sprintf(`listen: %q
server_name: ext
store_dir: %q
%s
accounts {
  SYS { users [ {user: sys, password: sys} ] }
  APP { jetstream: enabled, users [ {user: app, password: app} ] }
}
system_account: SYS
`, addr, t.TempDir(), jsBlock)
	file := filepath.Join(t.TempDir(), "nats.conf")
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := server.ProcessConfigFile(file)
	if err != nil {
		t.Fatal(err)
	}
	opts.NoSigs, opts.NoLog = true, true
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server did not start")
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	return addr
}

// TestQueryServerSyncReadsOperatorConfig starts servers from configuration
// files with and without the line the decision record gives operators, and
// checks what QueryServerSync reports and what Open logs.
func TestQueryServerSyncReadsOperatorConfig(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		jsBlock string
		always  bool
	}{
		{"sync_interval always", bus.OperatorSyncConfig, true},
		{"server default", "jetstream: enabled", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := serverWithSystemAccount(t, tc.jsBlock)
			sys, err := nats.Connect("nats://sys:sys@" + addr)
			if err != nil {
				t.Fatal(err)
			}
			defer sys.Close()
			got, err := bus.QueryServerSync(ctx, sys, 500*time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 || got[0].Server != "ext" || got[0].SyncAlways != tc.always {
				t.Fatalf("QueryServerSync = %+v, want one server ext with SyncAlways %v", got, tc.always)
			}
			if !tc.always && got[0].SyncInterval != 2*time.Minute {
				t.Errorf("default sync interval = %v, want 2m", got[0].SyncInterval)
			}

			// The shop's own connection (an ordinary account) cannot see
			// the setting: Open warns.
			app, err := nats.Connect("nats://app:app@" + addr)
			if err != nil {
				t.Fatal(err)
			}
			defer app.Close()
			if _, err := bus.QueryServerSync(ctx, app, 200*time.Millisecond); !errs.Is(errs.Unavailable, err) {
				t.Errorf("QueryServerSync as an ordinary account = %v, want Unavailable", err)
			}
			h := &recordHandler{}
			b, err := bus.Open(ctx, bus.Options{URL: "nats://app:app@" + addr, Name: "shop", Log: slog.New(h), ConnectTimeout: 5 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			if !h.has(slog.LevelWarn, "sync_interval: always") {
				t.Errorf("Open on an external broker logged %v, want a warning naming sync_interval: always", h.messages())
			}
		})
	}
}

// recordHandler is a slog handler that keeps every record's level and
// message with its attributes.
type recordHandler struct {
	mu   sync.Mutex
	recs []string
}

func (h *recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *recordHandler) WithGroup(string) slog.Handler            { return h }
func (h *recordHandler) Handle(_ context.Context, r slog.Record) error {
	s := r.Level.String() + " " + r.Message
	r.Attrs(func(a slog.Attr) bool { s += " " + a.String(); return true })
	h.mu.Lock()
	h.recs = append(h.recs, s)
	h.mu.Unlock()
	return nil
}

func (h *recordHandler) has(level slog.Level, part string) bool {
	for _, r := range h.messages() {
		if strings.HasPrefix(r, level.String()+" ") && strings.Contains(r, part) {
			return true
		}
	}
	return false
}

func (h *recordHandler) messages() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.recs...)
}

// TestEmbeddedBrokerAnswersSyncQuery: processes of a split shop connect by
// URL to the broker another process embeds; that process answers for its
// broker, so they verify the setting and do not warn.
func TestEmbeddedBrokerAnswersSyncQuery(t *testing.T) {
	_, addr := embedded(t, t.TempDir())
	nc, _ := connectJS(t, addr)
	got, err := bus.QueryServerSync(context.Background(), nc, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || !got[0].SyncAlways {
		t.Fatalf("QueryServerSync = %+v, want one server that syncs always", got)
	}
	h := &recordHandler{}
	b, err := bus.Open(context.Background(), bus.Options{URL: "nats://" + addr, Name: "shop", Log: slog.New(h), ConnectTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if h.has(slog.LevelWarn, "sync_interval") || h.has(slog.LevelError, "sync_interval") {
		t.Errorf("Open on the embedded broker by URL complained: %v", h.messages())
	}
	if !h.has(slog.LevelInfo, "syncs every write") {
		t.Errorf("Open on the embedded broker by URL logged %v, want the verified setting", h.messages())
	}
}
