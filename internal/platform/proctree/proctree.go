// Package proctree reads Linux's process table (/proc) for the tools that
// run and stop real servers: which processes a server forked.
package proctree

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// Children lists the pids whose parent is pid (none where /proc is absent).
func Children(pid int) []int {
	var out []int
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	want := strconv.Itoa(pid)
	for _, p := range stats {
		f, ok := StatFields(p)
		if !ok || len(f) < 2 || f[1] != want {
			continue
		}
		child, err := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		if err == nil {
			out = append(out, child)
		}
	}
	return out
}

// StatFields returns the fields of a /proc/<pid>/stat file after the
// command name, which may hold spaces: state is [0], ppid [1], utime [11],
// stime [12].
func StatFields(path string) ([]string, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, false
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, false
	}
	return strings.Fields(string(b[i+1:])), true
}

// Alive reports whether process pid exists and is not a zombie (a process
// that exited and was not yet waited for).
func Alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	path := "/proc/" + strconv.Itoa(pid) + "/stat"
	f, ok := StatFields(path)
	if !ok {
		_, err := os.Stat(path)
		return !errors.Is(err, fs.ErrNotExist) // no /proc: trust kill(0)
	}
	return len(f) == 0 || (f[0] != "Z" && f[0] != "X")
}
