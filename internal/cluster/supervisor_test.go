package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/globomantics/globomantics/internal/platform/proctree"
)

// checkFor polls fn until it returns nil, failing the test after timeout.
func checkFor(t *testing.T, timeout time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", timeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func shSpec(dir, name, group, script string) Spec {
	return Spec{Name: name, Group: group, Kind: "shop", Argv: []string{"/bin/sh", "-c", script},
		Dir: filepath.Join(dir, "procs", name), Log: filepath.Join(dir, "logs", name+".log")}
}

func testSupervisor(t *testing.T) *Supervisor {
	t.Helper()
	s := &Supervisor{Backoff: Backoff{Min: 10 * time.Millisecond, Max: 40 * time.Millisecond, Reset: time.Hour}, PollInterval: 20 * time.Millisecond}
	t.Cleanup(func() { s.StopAll(time.Second) })
	return s
}

func proc(s *Supervisor, name string) Proc {
	for _, p := range s.Procs() {
		if p.Name == name {
			return p
		}
	}
	return Proc{}
}

func TestBackoffNext(t *testing.T) {
	b := Backoff{Min: 500 * time.Millisecond, Max: 30 * time.Second, Reset: time.Minute}
	var got []time.Duration
	w := time.Duration(0)
	for range 9 {
		w = b.next(w, time.Second)
		got = append(got, w)
	}
	want := []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 30 * time.Second, 30 * time.Second, 30 * time.Second}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("waits %v, want %v", got, want)
	}
	if w := b.next(30*time.Second, 2*time.Minute); w != b.Min {
		t.Fatalf("after a long run the wait is %v, want %v", w, b.Min)
	}
}

func TestRestartsAChildThatExits(t *testing.T) {
	dir := t.TempDir()
	s := testSupervisor(t)
	s.Start(shSpec(dir, "flaky-1", "flaky", "exit 3"))
	checkFor(t, 10*time.Second, func() error {
		p := proc(s, "flaky-1")
		if p.Restarts < 3 || p.LastExit != "exit status 3" {
			return fmt.Errorf("restarts %d, last exit %q", p.Restarts, p.LastExit)
		}
		return nil
	})
}

func TestKillIsRestarted(t *testing.T) {
	dir := t.TempDir()
	s := testSupervisor(t)
	s.Start(shSpec(dir, "mail-1", "mail", "sleep 60"))
	if err := s.WaitReady(ctxT(t, 5*time.Second), "mail-1"); err != nil {
		t.Fatal(err)
	}
	old := proc(s, "mail-1").PID
	if err := s.Kill("mail-1"); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 10*time.Second, func() error {
		p := proc(s, "mail-1")
		if p.Restarts != 1 || p.PID == 0 || p.PID == old || p.State != "ready" || !strings.Contains(p.LastExit, "killed") {
			return fmt.Errorf("%+v", p)
		}
		return nil
	})
	if proctree.Alive(old) {
		t.Fatalf("killed pid %d still alive", old)
	}
	if err := s.Kill("nope"); !errors.Is(err, ErrUnknown) {
		t.Fatalf("Kill(nope) = %v, want ErrUnknown", err)
	}
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestAddRemove(t *testing.T) {
	dir := t.TempDir()
	s := testSupervisor(t)
	s.NewSpec = func(group string, index int, taken []int) (Spec, error) {
		sp := shSpec(dir, fmt.Sprintf("%s-%d", group, index), group, "trap 'exit 0' TERM; while :; do sleep 0.05; done")
		sp.Index, sp.Scalable = index, true
		return sp, nil
	}
	first, _ := s.NewSpec("mail", 1, nil)
	s.Start(first)
	s.Start(shSpec(dir, "catalog-1", "catalog", "sleep 60"))
	for _, want := range []string{"mail-2", "mail-3"} {
		p, err := s.Add(ctxT(t, 10*time.Second), "mail")
		if err != nil {
			t.Fatal(err)
		}
		if p.Name != want || p.State != "ready" || p.PID == 0 {
			t.Fatalf("Add = %+v, want %s ready", p, want)
		}
	}
	if n := s.Count("mail"); n != 3 {
		t.Fatalf("Count = %d, want 3", n)
	}
	third := proc(s, "mail-3").PID
	p, err := s.Remove(ctxT(t, 10*time.Second), "mail")
	if err != nil {
		t.Fatal(err)
	}
	if p.Name != "mail-3" || p.State != "stopped" || p.LastExit != "exit status 0" {
		t.Fatalf("Remove = %+v, want mail-3 stopped after a clean exit", p)
	}
	if proctree.Alive(third) {
		t.Fatalf("removed pid %d alive", third)
	}
	if _, err := s.Remove(ctxT(t, 10*time.Second), "mail"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Remove(ctxT(t, 10*time.Second), "mail"); !errors.Is(err, ErrLastInstance) {
		t.Fatalf("removing the last = %v, want ErrLastInstance", err)
	}
	if _, err := s.Add(ctxT(t, time.Second), "catalog"); !errors.Is(err, ErrNotScalable) {
		t.Fatalf("Add(catalog) = %v, want ErrNotScalable", err)
	}
	if n := s.Count("mail"); n != 1 {
		t.Fatalf("Count = %d, want 1", n)
	}
}

// TestStopAllLeavesNoPid: a child that ignores SIGTERM and has a child of
// its own is killed, process group and all.
func TestStopAllLeavesNoPid(t *testing.T) {
	dir := t.TempDir()
	s := testSupervisor(t)
	s.Start(shSpec(dir, "storefront-1", GroupStorefront, "sleep 60"))
	s.Start(shSpec(dir, "stubborn-1", "stubborn", "trap '' TERM; sleep 60 & wait; sleep 60"))
	if err := s.WaitReady(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	pgid := proc(s, "stubborn-1").PID
	var pids []int
	for _, p := range s.Procs() {
		pids = append(pids, p.PID)
	}
	s.StopAll(300 * time.Millisecond)
	for _, pid := range pids {
		if proctree.Alive(pid) {
			t.Errorf("pid %d alive after StopAll", pid)
		}
	}
	checkFor(t, 5*time.Second, func() error {
		if err := syscall.Kill(-pgid, 0); err == nil {
			return fmt.Errorf("process group %d still has members", pgid)
		}
		return nil
	})
	for _, p := range s.Procs() {
		if p.State != "stopped" || p.PID != 0 {
			t.Errorf("%+v after StopAll", p)
		}
	}
}

// TestDownWithoutSupervisor: down finds the recorded processes of a fleet
// whose supervisor died, kills them, and is idempotent.
func TestDownWithoutSupervisor(t *testing.T) {
	dir := t.TempDir()
	st := &State{Dir: dir, Supervisor: 999999}
	var cmds []*exec.Cmd
	for i := range 2 {
		sp := shSpec(dir, fmt.Sprintf("mail-%d", i+1), "mail", "sleep 60")
		cmd, err := LocalLauncher(Launch{Argv: sp.Argv, Dir: sp.Dir, Log: sp.Log})
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		closeLog(cmd)
		go cmd.Wait() //nolint:errcheck // reaped so that it does not linger as a zombie
		cmds = append(cmds, cmd)
		sp.PID = cmd.Process.Pid
		st.Specs = append(st.Specs, sp)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := st.write(); err != nil {
		t.Fatal(err)
	}
	if err := down(context.Background(), dir, io.Discard); err != nil {
		t.Fatal(err)
	}
	for _, c := range cmds {
		checkFor(t, 5*time.Second, func() error {
			if proctree.Alive(c.Process.Pid) {
				return fmt.Errorf("pid %d alive after down", c.Process.Pid)
			}
			return nil
		})
	}
	if err := down(context.Background(), dir, io.Discard); err != nil {
		t.Fatalf("second down: %v", err)
	}
	after, err := ReadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, sp := range after.Specs {
		if sp.PID != 0 {
			t.Fatalf("%s still recorded with pid %d", sp.Name, sp.PID)
		}
	}
}

func TestControlAPI(t *testing.T) {
	dir := t.TempDir()
	s := testSupervisor(t)
	s.Start(shSpec(dir, "mail-1", "mail", "sleep 60"))
	if err := s.WaitReady(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	for _, guarded := range []bool{false, true} {
		srv := httptest.NewServer(s.controlHandler(guarded))
		resp, err := http.Get(srv.URL + "/api/procs")
		if err != nil {
			t.Fatal(err)
		}
		var procs []Proc
		if err := json.NewDecoder(resp.Body).Decode(&procs); err != nil || len(procs) != 1 || procs[0].Name != "mail-1" {
			t.Fatalf("GET /api/procs: %v %+v", err, procs)
		}
		resp.Body.Close()
		resp, err = http.Post(srv.URL+"/api/procs/nope/kill", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		want := http.StatusNotFound
		if guarded { // no operator credential here: every POST is refused
			want = http.StatusUnauthorized
		}
		if resp.StatusCode != want {
			t.Errorf("guarded=%v: POST kill of an unknown process: %d, want %d", guarded, resp.StatusCode, want)
		}
		resp, err = http.Get(srv.URL + "/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(body), "mail-1") {
			t.Errorf("the plain page does not list mail-1: %s", body)
		}
		srv.Close()
	}
}
