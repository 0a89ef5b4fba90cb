// Package clustertest gives tests a fleet directory for the globomantics
// binary's "cluster" command: made where PostgreSQL (running as the
// postgres user) can reach it, taken down at clean-up whatever the test
// did, and kept for a look when the test failed.
package clustertest

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"testing"
	"time"
)

// Fleet is a fleet directory and the binary that runs it.
type Fleet struct {
	Bin string
	Dir string
	t   testing.TB
	// down is set once "cluster down" succeeded, so clean-up need not.
	down bool
}

// New makes a fresh fleet directory named after pattern (as os.MkdirTemp)
// for bin. At the test's clean-up it runs "cluster down" unless the test
// did, and removes the directory unless the test failed (then it logs
// where it is).
func New(t testing.TB, bin, pattern string) *Fleet {
	t.Helper()
	// Not t.TempDir: its parent is 0700, and PostgreSQL runs as postgres.
	dir, err := os.MkdirTemp("", pattern)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	f := &Fleet{Bin: bin, Dir: dir, t: t}
	t.Cleanup(func() {
		if !f.down {
			if _, e, err := f.Cluster(5*time.Minute, "down"); err != nil {
				t.Errorf("clean-up: cluster down: %v\n%s", err, e)
			}
		}
		if t.Failed() {
			t.Logf("fleet directory kept: %s", dir)
			return
		}
		os.RemoveAll(dir)
	})
	return f
}

// Run runs the binary with args, bounded by timeout, and returns what it
// wrote to standard output and standard error.
func (f *Fleet) Run(timeout time.Duration, args ...string) (stdout, stderr string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, f.Bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	return out.String(), errb.String(), err
}

// Cluster runs "cluster <command> --dir <Dir> args...". A successful down
// is remembered, so that clean-up does not run it again.
func (f *Fleet) Cluster(timeout time.Duration, command string, args ...string) (stdout, stderr string, err error) {
	stdout, stderr, err = f.Run(timeout, append([]string{"cluster", command, "--dir", f.Dir}, args...)...)
	if command == "down" && err == nil {
		f.down = true
	}
	return stdout, stderr, err
}
