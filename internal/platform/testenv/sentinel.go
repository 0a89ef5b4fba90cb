package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// SentinelMaster is the name the sentinels of a SentinelGroup know their
// master by.
const SentinelMaster = "globo"

// Failure detection of a SentinelGroup: a master silent for this long is
// taken to be down, and a failover that has not finished in
// sentinelFailoverTimeout is tried again.
const (
	sentinelDownAfter       = 1000 * time.Millisecond
	sentinelFailoverTimeout = 3000 * time.Millisecond
)

// SentinelGroup is a private Redis master with one replica, watched by
// three sentinels (quorum 2) that promote the replica about a second after
// the master stops answering. Every process runs from a temporary directory
// on free ports, keeps nothing on disk and dies with the test process.
type SentinelGroup struct {
	dir       string
	servers   []*RedisServer // the master and the replica, in start order
	sentinels []*RedisServer
	once      sync.Once
}

// StartSentinel starts a SentinelGroup of the test's own, ready (the replica
// in sync, each sentinel knowing the replica and the two other sentinels),
// and stops it when the test ends. Use it to kill the master. It skips the
// test when redis-server is not installed, unless Required.
func StartSentinel(tb testing.TB) *SentinelGroup {
	tb.Helper()
	g, err := launchSentinelGroup(tb.TempDir(), 16)
	if err != nil {
		skipOrFailRedis(tb, err)
	}
	tb.Cleanup(g.Stop)
	return g
}

var sentinelShared struct {
	mu     sync.Mutex
	done   bool
	g      *SentinelGroup
	err    error
	nextDB int
}

// Sentinel returns the redis+sentinel:// URL of a fresh, empty logical
// database behind the package's shared SentinelGroup, starting the group on
// first use (as Redis does for a single server). Tests that kill the master
// use StartSentinel instead. It skips the test when redis-server is not
// installed, unless Required.
func Sentinel(tb testing.TB) string {
	tb.Helper()
	sentinelShared.mu.Lock()
	if !sentinelShared.done {
		sentinelShared.done = true
		dir, err := os.MkdirTemp("", "globo-sentinel-")
		if err != nil {
			sentinelShared.err = err
		} else {
			sentinelShared.g, sentinelShared.err = launchSentinelGroup(dir, redisDatabases)
			// Nothing on disk is needed once the processes run (they die
			// with the test process, by their parent-death signal).
			os.RemoveAll(dir)
		}
	}
	g, err := sentinelShared.g, sentinelShared.err
	db := sentinelShared.nextDB
	sentinelShared.nextDB++
	sentinelShared.mu.Unlock()
	if err != nil {
		skipOrFailRedis(tb, err)
	}
	if db >= redisDatabases {
		tb.Fatalf("testenv.Sentinel: more than %d databases asked for in one test binary", redisDatabases)
	}
	return g.URL() + "?db=" + strconv.Itoa(db)
}

// SentinelAddrs are the host:port addresses of the three sentinels.
func (g *SentinelGroup) SentinelAddrs() []string {
	out := make([]string, len(g.sentinels))
	for i, s := range g.sentinels {
		out[i] = s.Addr
	}
	return out
}

// URL is the redis+sentinel:// URL of the group's master, database 0.
func (g *SentinelGroup) URL() string {
	return "redis+sentinel://" + strings.Join(g.SentinelAddrs(), ",") + "/" + SentinelMaster
}

// Master returns the address of the master as a majority of the sentinels
// name it, or an error when they do not agree.
func (g *SentinelGroup) Master(ctx context.Context) (string, error) {
	votes := map[string]int{}
	var lastErr error
	for _, s := range g.sentinels {
		c := redis.NewSentinelClient(&redis.Options{Addr: s.Addr, DialTimeout: 200 * time.Millisecond, ReadTimeout: 500 * time.Millisecond, MaxRetries: -1})
		addr, err := c.GetMasterAddrByName(ctx, SentinelMaster).Result()
		c.Close()
		if err != nil {
			lastErr = err
			continue
		}
		votes[net.JoinHostPort(addr[0], addr[1])]++
	}
	for a, n := range votes {
		if n >= 2 {
			return a, nil
		}
	}
	return "", fmt.Errorf("sentinels do not agree on a master: %v (last error %v)", votes, lastErr)
}

// KillMaster kills the current master with SIGKILL, as a crash or a pulled
// plug would, waits for it to exit and returns its address.
func (g *SentinelGroup) KillMaster(tb testing.TB) string {
	tb.Helper()
	addr, err := g.Master(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	for _, s := range g.servers {
		if s.Addr == addr {
			_ = s.cmd.Process.Signal(syscall.SIGKILL)
			<-s.exited
			return addr
		}
	}
	tb.Fatalf("the master %s is none of the group's servers", addr)
	return ""
}

// WaitNewMaster waits until the sentinels name a master other than old and
// that server says it is a master, and returns its address; it fails the
// test after timeout.
func (g *SentinelGroup) WaitNewMaster(tb testing.TB, old string, timeout time.Duration) string {
	tb.Helper()
	var addr string
	CheckFor(tb, timeout, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		a, err := g.Master(ctx)
		if err != nil {
			return err
		}
		if a == old {
			return fmt.Errorf("the sentinels still name %s", old)
		}
		c := redis.NewClient(&redis.Options{Addr: a, DialTimeout: 200 * time.Millisecond, ReadTimeout: 500 * time.Millisecond, MaxRetries: -1})
		defer c.Close()
		role, err := c.Do(ctx, "ROLE").Slice()
		if err != nil {
			return err
		}
		if len(role) == 0 || role[0] != "master" {
			return fmt.Errorf("%s is a %v, not yet a master", a, role)
		}
		addr = a
		return nil
	})
	return addr
}

// Stop stops every process of the group.
func (g *SentinelGroup) Stop() {
	g.once.Do(func() {
		for _, s := range append(append([]*RedisServer{}, g.sentinels...), g.servers...) {
			s.Stop()
		}
	})
}

// launchSentinelGroup starts the master, the replica and the sentinels in
// dir and waits until the group can fail over.
func launchSentinelGroup(dir string, databases int) (g *SentinelGroup, err error) {
	bin := redisBinary()
	if bin == "" {
		return nil, errNoRedis
	}
	g = &SentinelGroup{dir: dir}
	defer func() {
		if err != nil {
			g.Stop()
		}
	}()
	common := []string{
		"--bind", "127.0.0.1",
		"--databases", strconv.Itoa(databases),
		"--save", "",
		"--appendonly", "no",
		"--daemonize", "no",
		"--loglevel", "warning",
		// A replica syncs at once, over the socket, without waiting for
		// more replicas to join (Redis 7 waits 5 s by default).
		"--repl-diskless-sync", "yes",
		"--repl-diskless-sync-delay", "0",
	}
	master, err := launchRedisProc(bin, dir, "master", nil, common)
	if err != nil {
		return nil, err
	}
	g.servers = append(g.servers, master)
	replica, err := launchRedisProc(bin, dir, "replica", nil, append(common, "--replicaof", "127.0.0.1", portOf(master.Addr)))
	if err != nil {
		return nil, err
	}
	g.servers = append(g.servers, replica)
	for i := range 3 {
		conf := func(port int) ([]string, error) {
			path := filepath.Join(dir, fmt.Sprintf("sentinel-%d.conf", i))
			cfg := fmt.Sprintf(`port %d
bind 127.0.0.1
daemonize no
dir %s
loglevel warning
sentinel resolve-hostnames no
sentinel monitor %s 127.0.0.1 %s 2
sentinel down-after-milliseconds %s %d
sentinel failover-timeout %s %d
sentinel parallel-syncs %s 1
`, port, dir, SentinelMaster, portOf(master.Addr), SentinelMaster, sentinelDownAfter.Milliseconds(),
				SentinelMaster, sentinelFailoverTimeout.Milliseconds(), SentinelMaster)
			if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
				return nil, err
			}
			return []string{path, "--sentinel"}, nil
		}
		s, err := launchRedisProc(bin, dir, fmt.Sprintf("sentinel-%d", i), conf, nil)
		if err != nil {
			return nil, err
		}
		g.sentinels = append(g.sentinels, s)
	}
	return g, g.waitReady(20 * time.Second)
}

// waitReady waits until the replica is in sync with the master and every
// sentinel knows the replica and the two other sentinels: before that, a
// dead master would not be replaced.
func (g *SentinelGroup) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	ctx := context.Background()
	var last error
	for time.Now().Before(deadline) {
		last = g.ready(ctx)
		if last == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("sentinel group not ready after %v: %v", timeout, last)
}

func (g *SentinelGroup) ready(ctx context.Context) error {
	rc := redis.NewClient(&redis.Options{Addr: g.servers[1].Addr, MaxRetries: -1})
	info, err := rc.Info(ctx, "replication").Result()
	rc.Close()
	if err != nil {
		return err
	}
	if !strings.Contains(info, "master_link_status:up") {
		return fmt.Errorf("replica not in sync")
	}
	for _, s := range g.sentinels {
		c := redis.NewSentinelClient(&redis.Options{Addr: s.Addr, MaxRetries: -1})
		m, err := c.Master(ctx, SentinelMaster).Result()
		c.Close()
		if err != nil {
			return err
		}
		if m["num-slaves"] != "1" || m["num-other-sentinels"] != "2" {
			return fmt.Errorf("sentinel %s knows %s replicas and %s other sentinels", s.Addr, m["num-slaves"], m["num-other-sentinels"])
		}
	}
	return nil
}

func portOf(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

// launchRedisProc starts redis-server (a server, or a sentinel when head
// gives a configuration file and --sentinel) on a free port in dir and
// waits until it answers PING; a port taken meanwhile is retried. head,
// when not nil, makes the arguments that come before the port's.
func launchRedisProc(bin, dir, name string, head func(port int) ([]string, error), args []string) (*RedisServer, error) {
	var lastErr error
	for range 3 {
		port, err := FreePort()
		if err != nil {
			return nil, err
		}
		var argv []string
		if head != nil {
			h, err := head(port)
			if err != nil {
				return nil, err
			}
			argv = append(argv, h...)
		} else {
			argv = append(argv, "--port", strconv.Itoa(port), "--dir", dir)
		}
		argv = append(argv, args...)
		logPath := filepath.Join(dir, name+"-"+strconv.Itoa(port)+".log")
		logf, err := os.Create(logPath)
		if err != nil {
			return nil, err
		}
		cmd := exec.Command(bin, argv...)
		cmd.Dir = dir
		cmd.Stdout, cmd.Stderr = logf, logf
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		err = cmd.Start()
		logf.Close() // the child has its own copy
		if err != nil {
			return nil, fmt.Errorf("start %s: %w", name, err)
		}
		s := &RedisServer{Addr: "127.0.0.1:" + strconv.Itoa(port), cmd: cmd, exited: make(chan struct{})}
		go func() { _ = cmd.Wait(); close(s.exited) }()
		srv, inUse, err := waitRedisProc(s, name, logPath)
		if err == nil {
			return srv, nil
		}
		lastErr = err
		if !inUse {
			return nil, err
		}
	}
	return nil, lastErr
}

// waitRedisProc waits until s answers PING; inUse reports a process that
// exited because its port was taken.
func waitRedisProc(s *RedisServer, name, logPath string) (srv *RedisServer, inUse bool, err error) {
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := pingRedis(s.Addr)
		if err == nil {
			return s, false, nil
		}
		select {
		case <-s.exited:
			b, _ := os.ReadFile(logPath)
			return nil, strings.Contains(string(b), "in use"), fmt.Errorf("%s exited: %s", name, b)
		default:
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logPath)
			s.Stop()
			return nil, false, fmt.Errorf("%s did not start: %v: %s", name, err, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
