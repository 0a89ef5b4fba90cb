package pgauto

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/globomantics/globomantics/internal/platform/freeport"
	"github.com/globomantics/globomantics/internal/platform/proctree"
)

// ErrNotInstalled is returned by Start, StartMonitor and Attach when
// pg_autoctl or the PostgreSQL server binaries with the pgautofailover
// extension are not installed.
var ErrNotInstalled = errors.New("pgauto: pg_autoctl or PostgreSQL with the pgautofailover extension not installed")

// runner runs pg_autoctl with the PostgreSQL binaries on PATH, as the
// postgres user when the caller is root, with every piece of pg_autoctl's
// per-node state (XDG config, data and runtime directories) under one base
// directory so that removing it leaves nothing behind.
type runner struct {
	autoctl string
	bin     string
	cred    *syscall.Credential
	base    string
	env     []string
	// starter starts a prepared command that creates or runs the server
	// on addr (see MonitorOptions.Start); nil: cmd.Start.
	starter func(addr string, cmd *exec.Cmd) error
}

// startOn starts cmd with r.starter for a server on addr ("" or no
// starter: here).
func (r *runner) startOn(addr string, cmd *exec.Cmd) error {
	if r.starter == nil || addr == "" {
		return cmd.Start()
	}
	return r.starter(addr, cmd)
}

// binaries finds pg_autoctl and, unless binDir names it, the PostgreSQL
// bin directory whose lib directory holds the pgautofailover extension.
func binaries(binDir string) (autoctl, bin string, err error) {
	autoctl, err = exec.LookPath("pg_autoctl")
	if err != nil {
		return "", "", ErrNotInstalled
	}
	if binDir != "" {
		if _, err := os.Stat(filepath.Join(binDir, "pg_ctl")); err != nil {
			return "", "", fmt.Errorf("%w: %v", ErrNotInstalled, err)
		}
		return autoctl, binDir, nil
	}
	ctls, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pg_ctl")
	sort.Slice(ctls, func(i, j int) bool { return pgVersion(ctls[i]) > pgVersion(ctls[j]) })
	for _, c := range ctls {
		b := filepath.Dir(c)
		if _, err := os.Stat(filepath.Join(filepath.Dir(b), "lib", "pgautofailover.so")); err == nil {
			return autoctl, b, nil
		}
	}
	if c, err := exec.LookPath("pg_ctl"); err == nil {
		return autoctl, filepath.Dir(c), nil
	}
	return "", "", ErrNotInstalled
}

func pgVersion(pgctl string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(pgctl))))
	return v
}

// newRunner prepares base (creating it and pg_autoctl's XDG directories)
// for pg_autoctl processes using the PostgreSQL binaries in binDir (empty:
// found).
func newRunner(base, binDir string) (*runner, error) {
	autoctl, bin, err := binaries(binDir)
	if err != nil {
		return nil, err
	}
	base, err = filepath.Abs(base)
	if err != nil {
		return nil, fmt.Errorf("pgauto: base dir: %w", err)
	}
	r := &runner{autoctl: autoctl, bin: bin, base: base}
	if os.Geteuid() == 0 { // PostgreSQL refuses to run as root
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("pgauto: running as root and no postgres user: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		r.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	xdg := filepath.Join(base, "xdg")
	for _, d := range []string{base, xdg, filepath.Join(xdg, "config"), filepath.Join(xdg, "data"), filepath.Join(xdg, "run")} {
		if err := r.mkdir(d); err != nil {
			return nil, err
		}
	}
	if err := os.Chmod(filepath.Join(xdg, "run"), 0o700); err != nil {
		return nil, fmt.Errorf("pgauto: %w", err)
	}
	if err := r.checkTraversable(base); err != nil {
		return nil, err
	}
	r.env = []string{
		"PATH=" + bin + ":/usr/local/bin:/usr/bin:/bin",
		"HOME=" + xdg,
		"XDG_CONFIG_HOME=" + filepath.Join(xdg, "config"),
		"XDG_DATA_HOME=" + filepath.Join(xdg, "data"),
		"XDG_RUNTIME_DIR=" + filepath.Join(xdg, "run"),
		"LANG=C.UTF-8",
		"LC_ALL=C.UTF-8",
	}
	return r, nil
}

// mkdir creates dir (mode 0755) owned by the user pg_autoctl runs as.
func (r *runner) mkdir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("pgauto: %w", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return fmt.Errorf("pgauto: %w", err)
	}
	if r.cred != nil {
		if err := os.Chown(dir, int(r.cred.Uid), int(r.cred.Gid)); err != nil {
			return fmt.Errorf("pgauto: %w", err)
		}
	}
	return nil
}

// checkTraversable reports an error naming the first ancestor of dir that
// the postgres user cannot enter (a root-made mktemp directory is 0700).
func (r *runner) checkTraversable(dir string) error {
	if r.cred == nil {
		return nil
	}
	for d := filepath.Dir(dir); ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("pgauto: %w", err)
		}
		st, _ := fi.Sys().(*syscall.Stat_t)
		ok := fi.Mode().Perm()&0o001 != 0 ||
			(st != nil && st.Uid == r.cred.Uid && fi.Mode().Perm()&0o100 != 0) ||
			(st != nil && st.Gid == r.cred.Gid && fi.Mode().Perm()&0o010 != 0)
		if !ok {
			return fmt.Errorf("pgauto: directory %s (mode %v) is not traversable by the postgres user; use a base dir under a world-searchable directory", d, fi.Mode().Perm())
		}
		if d == "/" || d == "." {
			return nil
		}
	}
}

func (r *runner) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, r.autoctl, args...)
	cmd.Env = r.env
	cmd.Dir = r.base
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: r.cred, Setpgid: true}
	// On cancellation, SIGTERM the group: pg_autoctl then stops a
	// PostgreSQL it started (create does); SIGKILL after WaitDelay.
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// run runs a short pg_autoctl command and returns its standard output; the
// error carries its standard error.
func (r *runner) run(ctx context.Context, args ...string) ([]byte, error) {
	return r.runOn(ctx, "", args...)
}

// runOn is run for a command that creates the server on addr (started
// through r.starter).
func (r *runner) runOn(ctx context.Context, addr string, args ...string) ([]byte, error) {
	cmd := r.command(ctx, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := r.startOn(addr, cmd)
	if err == nil {
		err = cmd.Wait()
	}
	if err != nil {
		return stdout.Bytes(), fmt.Errorf("pg_autoctl %s: %w: %s", strings.Join(args[:min(3, len(args))], " "), err, lastLines(stderr.String(), 8))
	}
	return stdout.Bytes(), nil
}

// proc is a long-running pg_autoctl process: the leader of its own session
// and process group, so the group can be signalled as a whole.
type proc struct {
	pid  int
	done chan struct{} // closed once reaped; nil when not our child (Attach)
}

// start runs pg_autoctl in the background with its output appended to
// logPath, for the server on addr (see runOn). Unless detach, it gets
// SIGTERM (a fast shutdown of its PostgreSQL) if this process dies.
func (r *runner) start(addr, logPath string, detach bool, args ...string) (*proc, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("pgauto: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(r.autoctl, args...)
	cmd.Env = r.env
	cmd.Dir = r.base
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: r.cred, Setsid: true}
	if !detach {
		cmd.SysProcAttr.Pdeathsig = syscall.SIGTERM
	}
	if err := r.startOn(addr, cmd); err != nil {
		return nil, fmt.Errorf("pgauto: start pg_autoctl %s: %w", args[0], err)
	}
	p := &proc{pid: cmd.Process.Pid, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }() // reap, whether detached or not
	return p, nil
}

// alive reports whether the process still runs (a zombie does not count).
func (p *proc) alive() bool {
	if p == nil || p.pid <= 0 {
		return false
	}
	if p.done != nil {
		select {
		case <-p.done:
			return false
		default:
			return true
		}
	}
	return proctree.Alive(p.pid)
}

// waitGone waits until the process is gone or timeout passes.
func (p *proc) waitGone(timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for wait := 10 * time.Millisecond; p.alive(); wait = min(2*wait, 200*time.Millisecond) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(wait)
	}
	return true
}

// postmaster returns the pid of the PostgreSQL server running on pgdata,
// or 0 when none runs.
func postmaster(pgdata string) int {
	b, err := os.ReadFile(filepath.Join(pgdata, "postmaster.pid"))
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, _ := strconv.Atoi(strings.TrimSpace(line))
	if pid <= 0 || !proctree.Alive(pid) {
		return 0
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err == nil && !bytes.Contains(cmdline, []byte(pgdata)) {
		return 0 // a stale file and a reused pid
	}
	return pid
}

// killServer SIGKILLs the PostgreSQL server on pgdata and its children.
func killServer(pgdata string) {
	pm := postmaster(pgdata)
	if pm == 0 {
		return
	}
	kids := proctree.Children(pm)
	_ = syscall.Kill(pm, syscall.SIGKILL)
	for _, k := range kids {
		_ = syscall.Kill(k, syscall.SIGKILL)
	}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) { return freeport.Get() }

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// tailFile returns the last n lines of a file, for error messages.
func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return lastLines(string(b), n)
}
