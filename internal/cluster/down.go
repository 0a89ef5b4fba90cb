package cluster

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/globomantics/globomantics/internal/devpg"
	"github.com/globomantics/globomantics/internal/platform/proctree"
)

// dataDirs are removed by down: what the fleet's databases, broker and
// caches held (a new up starts empty, as devpg down leaves PostgreSQL).
var dataDirs = []string{"procs", "nats", "redis", "blobs", "mail"}

// down stops the fleet in dir: the supervisor by SIGTERM (it stops its
// children in order and PostgreSQL), then whatever is left by SIGKILL; it
// checks that no recorded pid lives and no recorded port listens. It is
// idempotent and works without a supervisor.
func down(ctx context.Context, dir string, stderr io.Writer) error {
	say := func(format string, args ...any) { fmt.Fprintf(stderr, "cluster down: "+format+"\n", args...) }
	st, err := ReadState(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if st == nil {
		st = &State{Dir: dir}
	}
	t0 := time.Now()
	if ownedBy(st.Supervisor, dir) {
		say("stopping the supervisor (pid %d)", st.Supervisor)
		_ = syscall.Kill(st.Supervisor, syscall.SIGTERM)
		deadline := time.Now().Add(3 * time.Minute)
		for proctree.Alive(st.Supervisor) && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		if proctree.Alive(st.Supervisor) {
			say("the supervisor did not stop in 3 minutes: SIGKILL")
			_ = syscall.Kill(st.Supervisor, syscall.SIGKILL)
		}
		if again, err := ReadState(dir); err == nil {
			again.Supervisor = st.Supervisor // checked below
			st = again
		}
	}
	var ports []int
	if st.ControlPort > 0 {
		ports = append(ports, st.ControlPort)
	}
	// Processes left by a supervisor that died get SIGTERM (they drain and
	// exit), then SIGKILL after 10 s.
	var orphans []Spec
	for _, sp := range st.Specs {
		ports = append(ports, sp.Ports...)
		if sp.PID > 0 && ownedBy(sp.PID, dir) {
			orphans = append(orphans, sp)
			_ = syscall.Kill(-sp.PID, syscall.SIGTERM)
		}
	}
	if len(orphans) > 0 {
		say("%d processes run without a supervisor: SIGTERM", len(orphans))
		grace := time.Now().Add(10 * time.Second)
		for _, sp := range orphans {
			for ownedBy(sp.PID, dir) && time.Now().Before(grace) {
				time.Sleep(50 * time.Millisecond)
			}
			if ownedBy(sp.PID, dir) {
				say("%s (pid %d) still runs 10 s after SIGTERM: SIGKILL to its process group", sp.Name, sp.PID)
				_ = syscall.Kill(-sp.PID, syscall.SIGKILL)
				_ = syscall.Kill(sp.PID, syscall.SIGKILL)
			}
		}
	}
	// The hosts' namespaces (up --hosts): whatever still runs there is
	// killed, then they are deleted.
	if err := removeNet(ctx, st); err != nil {
		return fmt.Errorf("cluster down: hosts: %w", err)
	}
	pgDir := filepath.Join(dir, "pg")
	if ps, err := devpg.ReadState(pgDir); err == nil {
		ports = append(ports, ps.Monitor.Port)
		for _, f := range append([]devpg.FormationInfo{ps.Main}, ps.Shards...) {
			for _, n := range f.Nodes {
				ports = append(ports, n.Port)
			}
		}
	}
	if _, err := os.Stat(pgDir); err == nil {
		var out bytes.Buffer
		log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		if err := devpg.Main(ctx, []string{"down", "--dir", pgDir}, &out, logWriter{log}); err != nil {
			return fmt.Errorf("cluster down: postgres: %w", err)
		}
	}
	// Whatever still listens on a recorded port and belongs to the fleet
	// is killed; anything else there is reported.
	var problems []string
	deadline := time.Now().Add(10 * time.Second)
	for {
		problems = problems[:0]
		for _, p := range ports {
			for _, pid := range listeners(p) {
				if ownedBy(pid, dir) {
					say("pid %d still listens on port %d: SIGKILL", pid, p)
					_ = syscall.Kill(pid, syscall.SIGKILL)
					problems = append(problems, fmt.Sprintf("pid %d on port %d", pid, p))
				} else {
					problems = append(problems, fmt.Sprintf("port %d is held by pid %d, not this fleet's", p, pid))
				}
			}
		}
		for _, sp := range st.Specs {
			if sp.PID > 0 && ownedBy(sp.PID, dir) {
				problems = append(problems, fmt.Sprintf("%s (pid %d) still runs", sp.Name, sp.PID))
			}
		}
		if ownedBy(st.Supervisor, dir) {
			problems = append(problems, fmt.Sprintf("the supervisor (pid %d) still runs", st.Supervisor))
		}
		if len(problems) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, d := range dataDirs {
		if err := os.RemoveAll(filepath.Join(dir, d)); err != nil {
			problems = append(problems, err.Error())
		}
	}
	if st.Specs != nil || st.Supervisor != 0 {
		st.Supervisor, st.NetPrefix = 0, ""
		for i := range st.Specs {
			st.Specs[i].PID, st.Specs[i].PGID = 0, 0
		}
		if err := st.write(); err != nil {
			problems = append(problems, err.Error())
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("cluster down: %s", strings.Join(problems, "; "))
	}
	say("stopped everything in %s (%s)", dir, time.Since(t0).Round(100*time.Millisecond))
	return nil
}

// listeners returns the pids with a TCP socket listening on port (any
// address), from /proc/net/tcp{,6} and the processes' descriptors.
func listeners(port int) []int {
	inodes := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 10 || fields[3] != "0A" { // 0A: LISTEN
				continue
			}
			_, hexPort, ok := strings.Cut(fields[1], ":")
			if !ok {
				continue
			}
			if p, err := strconv.ParseInt(hexPort, 16, 32); err == nil && int(p) == port {
				inodes[fields[9]] = true
			}
		}
		fh.Close()
	}
	if len(inodes) == 0 {
		return nil
	}
	var pids []int
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, pd := range procs {
		pid, err := strconv.Atoi(filepath.Base(pd))
		if err != nil {
			continue
		}
		fds, _ := os.ReadDir(filepath.Join(pd, "fd"))
		for _, fd := range fds {
			link, err := os.Readlink(filepath.Join(pd, "fd", fd.Name()))
			if err != nil {
				continue
			}
			if ino, ok := strings.CutPrefix(link, "socket:["); ok && inodes[strings.TrimSuffix(ino, "]")] {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}
