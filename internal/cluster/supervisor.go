package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/globomantics/globomantics/internal/platform/errs"
	"github.com/redis/go-redis/v9"
)

// Backoff is the restart policy of a child that exited: wait Min, doubling
// after each exit up to Max; a run that lasted Reset or longer starts the
// doubling again from Min.
type Backoff struct {
	Min, Max, Reset time.Duration
}

// DefaultBackoff is 0.5 s doubling to 30 s, reset after 60 s up.
func DefaultBackoff() Backoff {
	return Backoff{Min: 500 * time.Millisecond, Max: 30 * time.Second, Reset: time.Minute}
}

// next is the wait before the next start, given the previous wait (0 for
// none yet) and how long the run that just ended lasted.
func (b Backoff) next(prev, ran time.Duration) time.Duration {
	if prev == 0 || ran >= b.Reset {
		return b.Min
	}
	return min(2*prev, b.Max)
}

// ErrUnknown is returned (wrapped) by Kill, Add and Remove for a name or
// group the supervisor does not run; ErrNotScalable for a group Add and
// Remove refuse; ErrLastInstance when Remove would leave a group empty.
var (
	ErrUnknown      = errs.E(errs.NotFound, errs.Msg("no such process or group"))
	ErrNotScalable  = errs.E(errs.Invalid, errs.Msg("this group is not scalable"))
	ErrLastInstance = errs.E(errs.Conflict, errs.Msg("a group keeps at least one instance"))
)

// child is one supervised process and its restart loop.
type child struct {
	spec    Spec
	proc    Proc
	cmd     *exec.Cmd
	stop    chan struct{} // closed: no more restarts
	done    chan struct{} // closed when the loop ended and no process runs
	kick    chan struct{} // a health check now
	stopped bool
}

// Supervisor owns the fleet's child processes: it starts each in a process
// group of its own, restarts one that exits (with Backoff), and polls each
// one's readiness. Its methods are safe for concurrent use.
type Supervisor struct {
	// ControlRoom serves / of the control listener; nil shows a plain
	// list of the processes.
	ControlRoom http.Handler
	// Launcher makes the commands (LocalLauncher when nil).
	Launcher Launcher
	Backoff  Backoff
	// PollInterval is the time between readiness checks (1 s when zero).
	PollInterval time.Duration
	Log          *slog.Logger
	// Exe is this binary, argv[0] of Self specs.
	Exe string
	// Env gives the environment a spec's process gets beyond its Env
	// (secrets and settings known only once the data layer runs).
	Env func(Spec) []string
	// NewSpec makes the spec of a new instance of a scalable group, on
	// new ports, named with index.
	NewSpec func(group string, index int, taken []int) (Spec, error)
	// BeforeStart, when set, is called before each start of a process.
	BeforeStart func(Spec)
	// Changed is called (not under a lock) after processes start, stop,
	// appear or go, to persist them.
	Changed func()

	fleet *fleet // nil outside "cluster run"

	mu       sync.Mutex
	children []*child
	scaling  sync.Mutex // one Add or Remove at a time
}

func (s *Supervisor) log() *slog.Logger {
	if s.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Log
}

func (s *Supervisor) changed() {
	if s.Changed != nil {
		s.Changed()
	}
}

// childProcs returns a copy of every child's state, in start order.
func (s *Supervisor) childProcs() []Proc {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Proc, 0, len(s.children))
	for _, c := range s.children {
		p := c.proc
		p.Services = slices.Clone(p.Services)
		out = append(out, p)
	}
	return out
}

// Count returns how many instances group has (stopping ones excluded).
func (s *Supervisor) Count(group string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.children {
		if c.proc.Group == group && !c.stopped {
			n++
		}
	}
	return n
}

// Specs returns the specs of the running children with their current pids.
func (s *Supervisor) Specs() []Spec {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Spec, 0, len(s.children))
	for _, c := range s.children {
		sp := c.spec
		sp.PID, sp.PGID = c.proc.PID, c.proc.PID
		out = append(out, sp)
	}
	return out
}

func (s *Supervisor) find(name string) *child {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.children {
		if c.proc.Name == name {
			return c
		}
	}
	return nil
}

// Kill sends SIGKILL to the process (and its process group); the
// supervisor then restarts it. It fails with ErrUnknown for a name it does
// not run, and when the process is not running at the moment.
func (s *Supervisor) Kill(name string) error {
	c := s.find(name)
	if c == nil {
		return fmt.Errorf("cluster: kill %s: %w", name, ErrUnknown)
	}
	s.mu.Lock()
	pid := c.proc.PID
	s.mu.Unlock()
	if pid <= 0 {
		return errs.E("cluster: kill "+name, errs.Conflict, errs.Msg("the process is not running"))
	}
	s.log().Info("cluster: kill", "proc", name, "pid", pid)
	if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil {
		return fmt.Errorf("cluster: kill %s: %w", name, err)
	}
	return nil
}

// Start starts a child for spec and returns its first state; the process
// then runs (and is restarted) until Stop.
func (s *Supervisor) Start(spec Spec) Proc {
	c := &child{spec: spec, stop: make(chan struct{}), done: make(chan struct{}), kick: make(chan struct{}, 1)}
	c.proc = Proc{Name: spec.Name, Group: spec.Group, Kind: spec.Kind, Host: spec.Host, State: "starting", PublicURL: spec.PublicURL,
		InternalURL: spec.InternalURL, Services: slices.Clone(spec.Services), Scalable: spec.Scalable}
	started := make(chan struct{})
	s.mu.Lock()
	s.children = append(s.children, c)
	s.mu.Unlock()
	go s.loop(c, started)
	go s.health(c)
	<-started
	s.changed()
	s.mu.Lock()
	defer s.mu.Unlock()
	return c.proc
}

// loop starts c's process, waits for it, and starts it again after the
// backoff until c is stopped.
func (s *Supervisor) loop(c *child, started chan struct{}) {
	defer close(c.done)
	var wait time.Duration
	first := true
	for {
		t0 := time.Now()
		cmd, err := s.launch(c.spec)
		s.mu.Lock()
		if err != nil {
			c.proc.State, c.proc.PID, c.proc.LastExit = "failed", 0, "not started: "+err.Error()
		} else {
			c.cmd = cmd
			c.proc.PID, c.proc.Started = cmd.Process.Pid, t0
			if c.proc.State != "stopping" {
				c.proc.State = "starting"
			}
		}
		s.mu.Unlock()
		if first {
			close(started)
			first = false
		} else {
			s.changed()
		}
		if err != nil {
			s.log().Error("cluster: start failed", "proc", c.spec.Name, "err", err)
		} else {
			err = cmd.Wait()
			exit := "exit status 0"
			if err != nil {
				exit = err.Error()
			}
			s.mu.Lock()
			c.proc.PID, c.proc.LastExit = 0, exit
			stopped := c.stopped
			if !stopped {
				c.proc.State = "restarting"
			}
			s.mu.Unlock()
			if stopped {
				return
			}
			s.log().Warn("cluster: process exited", "proc", c.spec.Name, "exit", exit, "ran", time.Since(t0).Round(time.Millisecond))
		}
		wait = s.backoff().next(wait, time.Since(t0))
		select {
		case <-c.stop:
			return
		case <-time.After(wait):
		}
		s.mu.Lock()
		if c.stopped {
			s.mu.Unlock()
			return
		}
		c.proc.Restarts++
		s.mu.Unlock()
	}
}

func (s *Supervisor) backoff() Backoff {
	if s.Backoff == (Backoff{}) {
		return DefaultBackoff()
	}
	return s.Backoff
}

func (s *Supervisor) launch(spec Spec) (*exec.Cmd, error) {
	l := Launch{Argv: slices.Clone(spec.Argv), Env: slices.Clone(spec.Env), Dir: spec.Dir, Log: spec.Log, Host: spec.Host}
	if spec.Self {
		l.Argv = append([]string{s.Exe}, l.Argv...)
	}
	if s.Env != nil {
		l.Env = append(l.Env, s.Env(spec)...)
	}
	if s.BeforeStart != nil {
		s.BeforeStart(spec)
	}
	launcher := s.Launcher
	if launcher == nil {
		launcher = LocalLauncher
	}
	cmd, err := launcher(l)
	if err != nil {
		return nil, err
	}
	err = cmd.Start()
	closeLog(cmd)
	if err != nil {
		return nil, err
	}
	return cmd, nil
}

// health polls c's readiness until c's loop ends.
func (s *Supervisor) health(c *child) {
	every := s.PollInterval
	if every <= 0 {
		every = time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-t.C:
		case <-c.kick:
		}
		s.mu.Lock()
		pid, state := c.proc.PID, c.proc.State
		s.mu.Unlock()
		if pid == 0 || state == "stopping" || state == "stopped" {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), min(every, 2*time.Second))
		err := checkReady(ctx, c.spec.Ready)
		cancel()
		s.mu.Lock()
		if c.proc.PID == pid && c.proc.State != "stopping" && c.proc.State != "stopped" {
			switch {
			case err == nil:
				c.proc.State = "ready"
			case c.proc.State == "ready" || c.proc.State == "unready":
				c.proc.State = "unready"
			}
		}
		s.mu.Unlock()
	}
}

// checkReady runs one readiness check ("" is ready while running).
func checkReady(ctx context.Context, how string) error {
	kind, target, _ := strings.Cut(how, ":")
	switch kind {
	case "":
		return nil
	case "http":
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("%s: %s", target, resp.Status)
		}
		return nil
	case "redis":
		c := redis.NewClient(&redis.Options{Addr: target, MaxRetries: -1, DialTimeout: time.Second})
		defer c.Close()
		return c.Ping(ctx).Err()
	case "tcp":
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", target)
		if err != nil {
			return err
		}
		return conn.Close()
	}
	return fmt.Errorf("unknown readiness check %q", how)
}

// WaitReady waits until every named process (every process when names is
// empty) is ready, or ctx ends (the error then names those that are not).
func (s *Supervisor) WaitReady(ctx context.Context, names ...string) error {
	for {
		var waiting []string
		for _, p := range s.childProcs() {
			if (len(names) == 0 || slices.Contains(names, p.Name)) && p.State != "ready" {
				waiting = append(waiting, p.Name+" ("+p.State+")")
			}
		}
		if len(waiting) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster: not ready: %s: %w", strings.Join(waiting, ", "), ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// stopChild stops c: SIGTERM to its process group, SIGKILL after grace.
// It returns once the process is gone.
func (s *Supervisor) stopChild(c *child, grace time.Duration) {
	s.mu.Lock()
	if !c.stopped {
		c.stopped = true
		close(c.stop)
	}
	c.proc.State = "stopping"
	pid := c.proc.PID
	s.mu.Unlock()
	if pid > 0 {
		_ = syscall.Kill(-pid, syscall.SIGTERM)
	}
	select {
	case <-c.done:
	case <-time.After(grace):
		s.mu.Lock()
		pid = c.proc.PID
		s.mu.Unlock()
		if pid > 0 {
			s.log().Warn("cluster: still running after SIGTERM: SIGKILL", "proc", c.spec.Name, "pid", pid, "grace", grace)
			_ = syscall.Kill(-pid, syscall.SIGKILL)
		}
		<-c.done
	}
	s.mu.Lock()
	c.proc.State, c.proc.PID = "stopped", 0
	s.mu.Unlock()
}

// StopAll stops every child, the groups in phases (storefronts, then the
// other shop processes, then edge and DNS, NATS, and Redis last), each
// process given grace after SIGTERM.
func (s *Supervisor) StopAll(grace time.Duration) {
	s.mu.Lock()
	all := slices.Clone(s.children)
	s.mu.Unlock()
	phase := func(c *child) int {
		switch {
		case c.spec.Group == GroupStorefront:
			return 0
		case c.spec.Kind == "shop":
			return 1
		case c.spec.Kind == "edge" || c.spec.Kind == "dns":
			return 2
		case c.spec.Kind == "nats":
			return 3
		case c.spec.Kind == "sentinel":
			return 4
		case c.spec.Kind == "redis":
			return 5
		}
		return 6
	}
	sort.SliceStable(all, func(i, j int) bool { return phase(all[i]) < phase(all[j]) })
	for i := 0; i < len(all); {
		j := i
		for j < len(all) && phase(all[j]) == phase(all[i]) {
			j++
		}
		t0 := time.Now()
		var wg sync.WaitGroup
		for _, c := range all[i:j] {
			wg.Go(func() { s.stopChild(c, grace) })
		}
		wg.Wait()
		s.log().Info("cluster: stopped", "phase", phase(all[i]), "procs", j-i, "took", time.Since(t0).Round(time.Millisecond))
		s.changed()
		i = j
	}
}

// Add starts one more instance of a scalable group, on new ports, and
// returns it once it is ready (or, with an error, when ctx ends first; the
// instance keeps running then). Storefronts register with the edge
// themselves; workers join their queue's consumers.
func (s *Supervisor) Add(ctx context.Context, group string) (Proc, error) {
	s.scaling.Lock()
	defer s.scaling.Unlock()
	if err := s.scalable(group); err != nil {
		return Proc{}, err
	}
	if s.NewSpec == nil {
		return Proc{}, errors.New("cluster: add: this supervisor cannot make new instances")
	}
	index := 1
	var taken []int
	s.mu.Lock()
	for _, c := range s.children {
		taken = append(taken, c.spec.Ports...)
		if c.spec.Group == group {
			index = max(index, c.spec.Index+1)
		}
	}
	s.mu.Unlock()
	spec, err := s.NewSpec(group, index, taken)
	if err != nil {
		return Proc{}, fmt.Errorf("cluster: add %s: %w", group, err)
	}
	s.log().Info("cluster: add", "group", group, "proc", spec.Name)
	s.Start(spec)
	err = s.WaitReady(ctx, spec.Name)
	c := s.find(spec.Name)
	s.mu.Lock()
	p := c.proc
	s.mu.Unlock()
	if err != nil {
		return p, fmt.Errorf("cluster: add %s: %w", group, err)
	}
	return p, nil
}

// Remove stops the newest instance of a scalable group (SIGTERM: it turns
// unready, drains, leaves the edge's registry and exits; SIGKILL if it has
// not after the grace) and returns its last state. It never removes a
// group's last instance (ErrLastInstance).
func (s *Supervisor) Remove(ctx context.Context, group string) (Proc, error) {
	s.scaling.Lock()
	defer s.scaling.Unlock()
	if err := s.scalable(group); err != nil {
		return Proc{}, err
	}
	var newest *child
	n := 0
	s.mu.Lock()
	for _, c := range s.children {
		if c.spec.Group == group && !c.stopped {
			n++
			if newest == nil || c.spec.Index > newest.spec.Index {
				newest = c
			}
		}
	}
	s.mu.Unlock()
	if n <= 1 {
		return Proc{}, fmt.Errorf("cluster: remove %s: %w", group, ErrLastInstance)
	}
	grace := 20 * time.Second
	if d, ok := ctx.Deadline(); ok {
		grace = max(time.Until(d), 0)
	}
	s.log().Info("cluster: remove", "group", group, "proc", newest.spec.Name)
	s.stopChild(newest, grace)
	s.mu.Lock()
	s.children = slices.DeleteFunc(s.children, func(c *child) bool { return c == newest })
	p := newest.proc
	s.mu.Unlock()
	s.changed()
	return p, nil
}

func (s *Supervisor) scalable(group string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.children {
		if c.spec.Group == group {
			if !c.spec.Scalable {
				return fmt.Errorf("cluster: %s: %w", group, ErrNotScalable)
			}
			return nil
		}
	}
	return fmt.Errorf("cluster: %s: %w", group, ErrUnknown)
}
