package bus_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/globomantics/globomantics/internal/platform/bus"
	"github.com/globomantics/globomantics/internal/platform/testenv"
)

// nodeEnv, when set, makes the test binary run one cluster node
// (bus.ServeNode) until SIGTERM instead of the tests. The value is
// "name|listen|cluster|routes|dir", routes comma-separated.
const nodeEnv = "GLOBO_BUS_TEST_NODE"

// init runs the node before the tests start: TestMain (durability_test.go)
// runs the single-broker child, this the cluster node.
func init() {
	v := os.Getenv(nodeEnv)
	if v == "" {
		return
	}
	f := strings.SplitN(v, "|", 5)
	if len(f) != 5 {
		fmt.Fprintf(os.Stderr, "bad %s=%q\n", nodeEnv, v)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	err := bus.ServeNode(ctx, bus.NodeOptions{Name: f[0], ListenAddr: f[1], ClusterAddr: f[2], Routes: strings.Split(f[3], ","), StoreDir: f[4], Log: log})
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// clusterNode is one node of a three-node cluster, run as a child process.
type clusterNode struct {
	name, addr, caddr, dir string
	cmd                    *exec.Cmd
	exited                 chan struct{}
}

// cluster is three nodes on free ports, each with its own store directory.
type cluster struct {
	t      *testing.T
	nodes  []*clusterNode
	routes string
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	c := &cluster{t: t}
	var routes []string
	for i := range 3 {
		n := &clusterNode{name: fmt.Sprintf("n%d", i+1), addr: testenv.FreeAddr(t), caddr: testenv.FreeAddr(t), dir: t.TempDir()}
		c.nodes = append(c.nodes, n)
		routes = append(routes, "nats://"+n.caddr)
	}
	c.routes = strings.Join(routes, ",")
	t.Cleanup(func() {
		for _, n := range c.nodes {
			if n.cmd != nil && n.running() {
				_ = n.cmd.Process.Kill()
				<-n.exited
			}
		}
	})
	return c
}

// urls is the comma-separated client URLs of every node, as --nats-url.
func (c *cluster) urls() string {
	var us []string
	for _, n := range c.nodes {
		us = append(us, "nats://"+n.addr)
	}
	return strings.Join(us, ",")
}

func (c *cluster) node(name string) *clusterNode {
	for _, n := range c.nodes {
		if n.name == name {
			return n
		}
	}
	c.t.Fatalf("no node %q", name)
	return nil
}

func (n *clusterNode) running() bool {
	select {
	case <-n.exited:
		return false
	default:
		return true
	}
}

// start runs the node on its store directory and waits until it accepts
// TCP connections.
func (c *cluster) start(n *clusterNode) {
	t := c.t
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, "-test.run=^$")
	cmd.Env = append(os.Environ(), nodeEnv+"="+strings.Join([]string{n.name, n.addr, n.caddr, c.routes, n.dir}, "|"))
	cmd.Stderr = testWriter{t}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	n.cmd, n.exited = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); close(n.exited) }()
	testenv.CheckFor(t, wait, func() error {
		if !n.running() {
			return errors.New("node " + n.name + " exited")
		}
		conn, err := net.DialTimeout("tcp", n.addr, time.Second)
		if err != nil {
			return err
		}
		return conn.Close()
	})
}

// signal sends sig to the node and waits for it to exit.
func (c *cluster) signal(n *clusterNode, sig os.Signal) {
	c.t.Helper()
	if err := n.cmd.Process.Signal(sig); err != nil {
		c.t.Fatal(err)
	}
	select {
	case <-n.exited:
	case <-time.After(wait):
		c.t.Fatalf("node %s still running %v after %v", n.name, wait, sig)
	}
}

// load publishes from several goroutines until stopped, keeping the ids the
// broker acknowledged and the longest time no publish was acknowledged.
type load struct {
	b       *bus.Bus
	mu      sync.Mutex
	acked   []string
	failed  int
	lastAck time.Time
	maxGap  time.Duration
	cancel  context.CancelFunc
	done    sync.WaitGroup
}

func startLoad(b *bus.Bus, workers int) *load {
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{b: b, cancel: cancel, lastAck: time.Now()}
	for w := range workers {
		l.done.Add(1)
		go func() {
			defer l.done.Done()
			for i := 0; ctx.Err() == nil; i++ {
				id := fmt.Sprintf("w%d-%d", w, i)
				pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
				err := b.Publish(pctx, "globo.cluster.test", id, payload{N: i})
				cancel()
				l.mu.Lock()
				if err == nil {
					now := time.Now()
					l.acked = append(l.acked, id)
					l.maxGap = max(l.maxGap, now.Sub(l.lastAck))
					l.lastAck = now
				} else if ctx.Err() == nil {
					l.failed++
				}
				l.mu.Unlock()
				// A steady load (at most 100 a second per worker), not
				// a flood the one consumer could not keep up with.
				time.Sleep(10 * time.Millisecond)
			}
		}()
	}
	return l
}

func (l *load) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked)
}

// stop ends the load and returns the acknowledged ids.
func (l *load) stop() []string {
	l.cancel()
	l.done.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.acked...)
}

// atLeast waits until n more publishes than now have been acknowledged.
func (l *load) atLeast(t *testing.T, n int) {
	t.Helper()
	target := l.count() + n
	testenv.CheckFor(t, wait, func() error {
		if got := l.count(); got < target {
			return fmt.Errorf("%d of %d publishes acknowledged", got, target)
		}
		return nil
	})
}

// gapRecorder records the handled event ids and the longest time between two
// handled events.
type gapRecorder struct {
	mu     sync.Mutex
	seen   map[string]bool
	again  int // deliveries of an id already handled
	last   time.Time
	maxGap time.Duration
}

func (r *gapRecorder) handle(_ context.Context, ev bus.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	if !r.last.IsZero() {
		r.maxGap = max(r.maxGap, now.Sub(r.last))
	}
	r.last = now
	if r.seen[ev.ID] {
		r.again++
	}
	r.seen[ev.ID] = true
	return nil
}

func (r *gapRecorder) missing(ids []string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, id := range ids {
		if !r.seen[id] {
			n++
		}
	}
	return n
}

// storedIDs reads the message ids of every message on subject in the
// stream, through a fresh connection to the cluster.
func storedIDs(ctx context.Context, urls, subject string) (map[string]bool, error) {
	nc, err := nats.Connect(urls)
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	cons, err := js.OrderedConsumer(ctx, bus.StreamName, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		return nil, err
	}
	ids := map[string]bool{}
	for {
		batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return nil, err
		}
		n := 0
		for m := range batch.Messages() {
			n++
			ids[m.Headers().Get(jetstream.MsgIDHeader)] = true
			if md, err := m.Metadata(); err == nil && md.NumPending == 0 {
				return ids, nil // the last one: no need to wait out the fetch
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return nil, err
		}
		if n == 0 {
			return ids, nil
		}
	}
}

// allStored waits until the cluster serves the stream again and checks that
// every acknowledged id is in it.
func allStored(t *testing.T, urls string, acked []string) {
	t.Helper()
	var ids map[string]bool
	testenv.CheckFor(t, wait, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var err error
		ids, err = storedIDs(ctx, urls, "globo.cluster.test")
		return err
	})
	var lost []string
	for _, id := range acked {
		if !ids[id] {
			lost = append(lost, id)
		}
	}
	if len(lost) > 0 {
		t.Fatalf("%d of %d acknowledged messages are not in the stream (%d stored), e.g. %v", len(lost), len(acked), len(ids), lost[:min(len(lost), 5)])
	}
}

// streamInfo is the stream's info as the cluster reports it.
func streamInfo(ctx context.Context, js jetstream.JetStream) (*jetstream.StreamInfo, error) {
	s, err := js.Stream(ctx, bus.StreamName)
	if err != nil {
		return nil, err
	}
	return s.Info(ctx)
}

// TestClusterLosesNoAckedMessage runs three cluster nodes (bus.ServeNode) as
// processes, connects the bus with all three URLs and publishes under load:
// the stream is R3; stopping the stream leader (SIGTERM) and restarting it
// loses no acknowledged message and the consumer gets every one; then
// SIGKILL of all three nodes under load and a restart on the same store
// directories keeps every acknowledged message.
func TestClusterLosesNoAckedMessage(t *testing.T) {
	start := time.Now()
	c := newCluster(t)
	var wg sync.WaitGroup
	for _, n := range c.nodes {
		wg.Add(1)
		go func() { defer wg.Done(); c.start(n) }()
	}
	wg.Wait()
	ctx := context.Background()
	b, err := bus.Open(ctx, bus.Options{URL: c.urls(), Name: "cluster-test", Log: testenv.Logger(t), ConnectTimeout: wait})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	formed := time.Since(start)

	nc, err := nats.Connect(c.urls())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{bus.StreamName, bus.DLQStreamName} {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		info := s.CachedInfo()
		if info.Config.Replicas != bus.ClusterReplicas || info.Cluster == nil || len(info.Cluster.Replicas) != bus.ClusterReplicas-1 {
			t.Fatalf("stream %s on a three-node cluster: replicas %d, cluster %+v; want R3", name, info.Config.Replicas, info.Cluster)
		}
	}

	rec := &gapRecorder{seen: map[string]bool{}}
	// A message the old leader handed to a pull the failover lost is
	// offered again after the ack wait: 60 s by default, 3 s here so that
	// the test sees it come back.
	if err := b.Subscribe(ctx, "cluster-test", []string{"globo.cluster.>"}, rec.handle, bus.AckWait(3*time.Second)); err != nil {
		t.Fatal(err)
	}
	l := startLoad(b, 4)
	l.atLeast(t, 200)

	// Stop the stream's leader: the worst node to lose.
	info, err := streamInfo(ctx, js)
	if err != nil {
		t.Fatal(err)
	}
	leader := c.node(info.Cluster.Leader)
	t.Logf("cluster formed and streams R3 in %v; stopping the GLOBO leader %s", formed.Round(time.Millisecond), leader.name)
	before := l.count()
	stopped := time.Now()
	c.signal(leader, syscall.SIGTERM)
	// Two nodes of three keep acknowledging, for a while.
	l.atLeast(t, 200)
	testenv.CheckFor(t, wait, func() error {
		if d := time.Since(stopped); d < 2*time.Second {
			return fmt.Errorf("node down for %v only", d)
		}
		return nil
	})
	down := time.Since(stopped)
	whileDown := l.count() - before
	c.start(leader)
	restarted := time.Now()
	testenv.CheckFor(t, wait, func() error {
		info, err := streamInfo(ctx, js)
		if err != nil {
			return err
		}
		if info.Cluster == nil || info.Cluster.Leader == "" || len(info.Cluster.Replicas) != 2 {
			return fmt.Errorf("stream cluster %+v", info.Cluster)
		}
		for _, p := range info.Cluster.Replicas {
			if !p.Current || p.Offline {
				return fmt.Errorf("replica %s not current", p.Name)
			}
		}
		return nil
	})
	caughtUp := time.Since(restarted)
	l.atLeast(t, 200)
	acked := l.stop()
	l.mu.Lock()
	pubGap, failed := l.maxGap, l.failed
	l.mu.Unlock()

	allStored(t, c.urls(), acked)
	testenv.CheckFor(t, wait, func() error {
		if m := rec.missing(acked); m > 0 {
			var state string
			if cons, err := js.Consumer(ctx, bus.StreamName, "cluster-test"); err == nil {
				ci := cons.CachedInfo()
				state = fmt.Sprintf("pending %d, ack pending %d, waiting pulls %d, leader %v", ci.NumPending, ci.NumAckPending, ci.NumWaiting, ci.Cluster)
			}
			return fmt.Errorf("the consumer has not handled %d of %d acknowledged messages (%s)", m, len(acked), state)
		}
		return nil
	})
	rec.mu.Lock()
	consGap, again := rec.maxGap, rec.again
	rec.mu.Unlock()
	t.Logf("node %s down %v: %d publishes acknowledged meanwhile; rejoined and current in %v; %d acknowledged in all, %d failed (not acknowledged); longest wait for an ack %v; longest consumer pause %v; %d redeliveries",
		leader.name, down.Round(time.Millisecond), whileDown, caughtUp.Round(time.Millisecond), len(acked), failed, pubGap.Round(time.Millisecond), consGap.Round(time.Millisecond), again)
	// The bound: no consumer stops for longer than the leader
	// election, which takes seconds; the pull's 5 s expiry bounds how late
	// a consumer notices a lost pull.
	if consGap > 10*time.Second {
		t.Errorf("the consumer paused %v while one node of three was lost", consGap)
	}

	// SIGKILL all three under load, restart them on the same stores.
	l = startLoad(b, 4)
	l.atLeast(t, 200)
	for _, n := range c.nodes {
		_ = n.cmd.Process.Signal(syscall.SIGKILL)
	}
	for _, n := range c.nodes {
		<-n.exited
	}
	acked2 := l.stop()
	killed := time.Now()
	for _, n := range c.nodes {
		wg.Add(1)
		go func() { defer wg.Done(); c.start(n) }()
	}
	wg.Wait()
	up := time.Since(killed)
	testenv.CheckFor(t, wait, func() error {
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		info, err := streamInfo(ctx, js)
		if err != nil {
			return err
		}
		if info.Cluster == nil || info.Cluster.Leader == "" {
			return errors.New("no stream leader yet")
		}
		return nil
	})
	t.Logf("after SIGKILL: nodes accept clients %v, stream leader %v after the kill", up.Round(time.Millisecond), time.Since(killed).Round(time.Millisecond))
	allStored(t, c.urls(), append(acked, acked2...))
	t.Logf("SIGKILL of all three nodes after %d more acknowledged publishes: all %d acknowledged messages back %v after the restart; test took %v",
		len(acked2), len(acked)+len(acked2), time.Since(killed).Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
}

// TestStandaloneStreamsAreR1: a broker that is not part of a cluster gets
// single-replica streams.
func TestStandaloneStreamsAreR1(t *testing.T) {
	_, addr := embedded(t, t.TempDir())
	_, js := connectJS(t, addr)
	for _, name := range []string{bus.StreamName, bus.DLQStreamName} {
		s, err := js.Stream(context.Background(), name)
		if err != nil {
			t.Fatal(err)
		}
		if r := s.CachedInfo().Config.Replicas; r != 1 {
			t.Errorf("stream %s on a single server has %d replicas, want 1", name, r)
		}
	}
}
