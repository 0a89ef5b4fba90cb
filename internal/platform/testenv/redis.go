package testenv

import (
	"bufio"
	"errors"
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
)

// redisDatabases is how many logical databases the shared redis-server
// has: each Redis call takes the next one, so a test binary may call Redis
// this many times.
const redisDatabases = 4096

// Redis returns the redis:// URL of a fresh, empty logical database on the
// package's private redis-server, starting the server on first use. Every
// call gets its own database (as PostgresDSN gets its own PostgreSQL
// database), so tests sharing the server do not see each other's keys.
//
// The server runs from a temporary directory on a free port, keeps nothing
// on disk, and lives as long as the test process: it is started with a
// parent-death signal (as the PostgreSQL server is), so it dies with the
// test binary however that ends. Tests that need to stop or pause a
// server use StartRedis.
//
// It skips the test when redis-server is not installed, unless Required.
func Redis(tb testing.TB) string {
	tb.Helper()
	srv, err := startSharedRedis()
	if err != nil {
		skipOrFailRedis(tb, err)
	}
	redisShared.mu.Lock()
	db := redisShared.nextDB
	redisShared.nextDB++
	redisShared.mu.Unlock()
	if db >= redisDatabases {
		tb.Fatalf("testenv.Redis: more than %d Redis databases asked for in one test binary", redisDatabases)
	}
	return srv.url(db)
}

// StartRedis starts a redis-server of the test's own, which the test may
// stop or pause to see how its code copes with Redis failing. It is
// stopped when the test ends. It skips the test when redis-server is not
// installed, unless Required.
func StartRedis(tb testing.TB) *RedisServer {
	tb.Helper()
	srv, err := launchRedis(tb.TempDir(), 16)
	if err != nil {
		skipOrFailRedis(tb, err)
	}
	tb.Cleanup(srv.Stop)
	return srv
}

func skipOrFailRedis(tb testing.TB, err error) {
	tb.Helper()
	if errors.Is(err, errNoRedis) && !Required() {
		tb.Skip("redis-server not installed")
	}
	tb.Fatalf("redis: %v", err)
}

// RedisServer is a running redis-server.
type RedisServer struct {
	Addr string // host:port it listens on

	cmd    *exec.Cmd
	exited chan struct{} // closed when the process has exited
	once   sync.Once
}

// URL is the redis:// URL of the server's database 0.
func (s *RedisServer) URL() string { return s.url(0) }

func (s *RedisServer) url(db int) string { return fmt.Sprintf("redis://%s/%d", s.Addr, db) }

// Stop stops the server (a paused one too) and waits for it to exit;
// stopping a stopped server does nothing.
func (s *RedisServer) Stop() {
	s.once.Do(func() {
		_ = s.cmd.Process.Signal(syscall.SIGCONT) // a paused server cannot act on SIGTERM
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.exited:
		case <-time.After(10 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.exited
		}
	})
}

// Pause freezes the server (SIGSTOP): connections stay open but nothing
// answers, as with a server that hangs or a network that drops packets.
func (s *RedisServer) Pause() { _ = s.cmd.Process.Signal(syscall.SIGSTOP) }

// Resume lets a paused server run again.
func (s *RedisServer) Resume() { _ = s.cmd.Process.Signal(syscall.SIGCONT) }

var (
	redisShared struct {
		mu     sync.Mutex
		done   bool
		srv    *RedisServer
		err    error
		nextDB int
	}

	errNoRedis = errors.New("redis-server not found")
)

func startSharedRedis() (*RedisServer, error) {
	redisShared.mu.Lock()
	defer redisShared.mu.Unlock()
	if redisShared.done {
		return redisShared.srv, redisShared.err
	}
	redisShared.done = true
	dir, err := os.MkdirTemp("", "globo-redis-")
	if err != nil {
		redisShared.err = err
		return nil, err
	}
	redisShared.srv, redisShared.err = launchRedis(dir, redisDatabases)
	// testenv.Main has no hook to stop this server: it dies with the test
	// process (its parent-death signal) and keeps nothing on disk, so its
	// directory can go now rather than be left behind.
	os.RemoveAll(dir)
	return redisShared.srv, redisShared.err
}

// redisBinary is the path of redis-server: on PATH, or where Debian puts it.
func redisBinary() string {
	if p, err := exec.LookPath("redis-server"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/bin/redis-server", "/usr/local/bin/redis-server"} {
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p
		}
	}
	return ""
}

// launchRedis starts redis-server in dir with the given number of logical
// databases and waits until it answers PING. A port taken between being
// picked and bound is retried with another.
func launchRedis(dir string, databases int) (*RedisServer, error) {
	bin := redisBinary()
	if bin == "" {
		return nil, errNoRedis
	}
	return launchRetrying(func(int) (*RedisServer, bool, error) { return launchRedisOnce(bin, dir, databases) })
}

func launchRedisOnce(bin, dir string, databases int) (srv *RedisServer, portInUse bool, err error) {
	port, err := FreePort()
	if err != nil {
		return nil, false, err
	}
	logPath := filepath.Join(dir, "redis-"+strconv.Itoa(port)+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, false, err
	}
	defer logf.Close() // the child has its own copy
	cmd := exec.Command(bin,
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--dir", dir,
		"--databases", strconv.Itoa(databases),
		"--save", "", // no snapshots
		"--appendonly", "no",
		"--daemonize", "no",
		"--logfile", "", // standard output, which is logf
		"--loglevel", "warning",
	)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	// Die with the test process, however it ends (as PostgreSQL does).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, false, fmt.Errorf("start redis-server: %w", err)
	}
	s := &RedisServer{Addr: "127.0.0.1:" + strconv.Itoa(port), cmd: cmd, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(s.exited) }()

	inUse, err := waitStarted("redis-server", logPath, s.exited, 20*time.Second, 20*time.Millisecond, func() error { return pingRedis(s.Addr) }, s.Stop)
	if err != nil {
		return nil, inUse, err
	}
	return s, false, nil
}

// pingRedis sends PING to the server at addr and expects PONG.
func pingRedis(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "+PONG\r\n" {
		return fmt.Errorf("PING answered %q", strings.TrimSpace(line))
	}
	return nil
}
