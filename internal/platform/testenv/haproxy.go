package testenv

import (
	"context"
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

// ErrNoHAProxy is returned by LaunchHAProxy when no haproxy binary is installed.
var ErrNoHAProxy = errors.New("haproxy not found")

// HAProxyBinary returns the path of the haproxy binary: on PATH, or where
// Debian installs it (/usr/sbin, often not on a user's PATH); "" if none.
func HAProxyBinary() string {
	if p, err := exec.LookPath("haproxy"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/haproxy", "/usr/local/sbin/haproxy"} {
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p
		}
	}
	return ""
}

// HAProxyProcess is a haproxy running in the foreground (-db) as a child
// of this process, from a configuration file in its own directory.
type HAProxyProcess struct {
	// Addr is the address waited for at start: the listener the caller
	// named, host:port.
	Addr string

	bin, dir string
	mu       sync.Mutex
	cur      *haproxyProc
	gen      int
}

type haproxyProc struct {
	cmd     *exec.Cmd
	exited  chan struct{}
	logPath string
}

// HAProxy starts haproxy with the configuration text cfg (whose listeners
// the caller chose, e.g. on testenv.FreeAddr ports) and waits until addr
// accepts connections; it is stopped when the test ends. It skips the test
// when haproxy is not installed, unless Required.
func HAProxy(tb testing.TB, cfg []byte, addr string) *HAProxyProcess {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	p, err := LaunchHAProxy(ctx, tb.TempDir(), cfg, addr)
	if err != nil {
		if errors.Is(err, ErrNoHAProxy) && !Required() {
			tb.Skip("haproxy not installed")
		}
		tb.Fatalf("haproxy: %v", err)
	}
	tb.Cleanup(func() {
		if err := p.Stop(); err != nil {
			tb.Logf("stopping haproxy: %v", err)
		}
	})
	return p
}

// LaunchHAProxy writes cfg to a file in dir (created if missing), starts haproxy -db on it
// and returns once addr accepts TCP connections, or with an error carrying
// haproxy's output if it exits or ctx ends first. The process dies with
// this one (parent-death signal); call Stop to end it earlier.
func LaunchHAProxy(ctx context.Context, dir string, cfg []byte, addr string) (*HAProxyProcess, error) {
	bin := HAProxyBinary()
	if bin == "" {
		return nil, ErrNoHAProxy
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	p := &HAProxyProcess{Addr: addr, bin: bin, dir: dir}
	proc, err := p.start(ctx, cfg, 0)
	if err != nil {
		return nil, err
	}
	p.cur = proc
	return p, nil
}

// start runs generation p.gen+1 of the configuration; with oldPID > 0 the
// new process tells that one to finish its connections and exit (-sf).
func (p *HAProxyProcess) start(ctx context.Context, cfg []byte, oldPID int) (*haproxyProc, error) {
	p.gen++
	name := "haproxy-" + strconv.Itoa(p.gen)
	cfgPath := filepath.Join(p.dir, name+".cfg")
	if err := os.WriteFile(cfgPath, cfg, 0o600); err != nil {
		return nil, err
	}
	logPath := filepath.Join(p.dir, name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child has its own copy
	args := []string{"-db", "-f", cfgPath}
	if oldPID > 0 {
		args = append(args, "-sf", strconv.Itoa(oldPID))
	}
	cmd := exec.Command(p.bin, args...)
	cmd.Dir = p.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start haproxy: %w", err)
	}
	proc := &haproxyProc{cmd: cmd, exited: make(chan struct{}), logPath: logPath}
	go func() { _ = cmd.Wait(); close(proc.exited) }()
	if oldPID > 0 {
		// The old process accepts too until told to go: Reload waits for it.
		return proc, nil
	}
	for {
		c, err := net.DialTimeout("tcp", p.Addr, time.Second)
		if err == nil {
			c.Close()
			return proc, nil
		}
		select {
		case <-proc.exited:
			return nil, fmt.Errorf("haproxy exited: %s", proc.log())
		case <-ctx.Done():
			proc.stop()
			return nil, fmt.Errorf("haproxy: %s did not accept: %w: %s", p.Addr, ctx.Err(), proc.log())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func (h *haproxyProc) log() string {
	b, _ := os.ReadFile(h.logPath)
	return strings.TrimSpace(string(b))
}

// stop ends the process (SIGTERM, then SIGKILL after 10 s) and waits.
func (h *haproxyProc) stop() {
	_ = h.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-h.exited:
	case <-time.After(10 * time.Second):
		_ = h.cmd.Process.Kill()
		<-h.exited
	}
}

// PID is the current haproxy process's id.
func (p *HAProxyProcess) PID() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cur.cmd.Process.Pid
}

// Log returns what the current haproxy process wrote to stdout and stderr.
func (p *HAProxyProcess) Log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cur.log()
}

// Reload replaces the running configuration with cfg without refusing a
// connection: a new haproxy starts on cfg and tells the old one (-sf) to
// stop listening and exit once its requests in flight are done. It returns
// when the old process has exited; if the new one fails to start, the old
// one keeps running and the error carries the new one's output.
func (p *HAProxyProcess) Reload(ctx context.Context, cfg []byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	old := p.cur
	proc, err := p.start(ctx, cfg, old.cmd.Process.Pid)
	if err != nil {
		return err
	}
	select {
	case <-old.exited:
		p.cur = proc
		return nil
	case <-proc.exited:
		return fmt.Errorf("haproxy reload: the new process exited: %s", proc.log())
	case <-ctx.Done():
		proc.stop()
		return fmt.Errorf("haproxy reload: the old process did not exit: %w", ctx.Err())
	}
}

// Stop ends haproxy and waits for it to exit; stopping twice does nothing.
func (p *HAProxyProcess) Stop() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	select {
	case <-p.cur.exited:
		return nil
	default:
	}
	p.cur.stop()
	return nil
}
