package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/globomantics/globomantics/internal/platform/proctree"
)

// Launch is what the supervisor runs: a command line, the environment
// added to its own (less any GLOBO_* variables it inherited), a working
// directory and the log file both outputs are appended to.
type Launch struct {
	Argv []string
	Env  []string
	Dir  string
	Log  string
	Host string // the network-namespace host; "" for this machine
}

// Launcher turns a Launch into a command ready to start, in a process group
// of its own. It is the one place a process is made, so that a later
// launcher can wrap argv (ip netns exec HOST ...) for hosts.
type Launcher func(l Launch) (*exec.Cmd, error)

// LocalLauncher runs the process on this machine. The returned command's
// Stdout and Stderr are an open log file the caller closes after Start.
func LocalLauncher(l Launch) (*exec.Cmd, error) {
	if len(l.Argv) == 0 {
		return nil, errors.New("cluster: empty command line")
	}
	if l.Dir != "" {
		if err := os.MkdirAll(l.Dir, 0o755); err != nil {
			return nil, err
		}
	}
	var logf *os.File
	if l.Log != "" {
		if err := os.MkdirAll(filepath.Dir(l.Log), 0o755); err != nil {
			return nil, err
		}
		f, err := os.OpenFile(l.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, err
		}
		logf = f
	}
	cmd := exec.Command(l.Argv[0], l.Argv[1:]...)
	cmd.Dir = l.Dir
	cmd.Env = append(filteredEnv(), l.Env...)
	if logf != nil {
		cmd.Stdout, cmd.Stderr = logf, logf
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd, nil
}

// filteredEnv is this process's environment without GLOBO_* settings, which
// would otherwise configure every child the same way.
func filteredEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GLOBO_") {
			out = append(out, kv)
		}
	}
	return out
}

// closeLog closes the log file a launcher gave the command.
func closeLog(cmd *exec.Cmd) {
	if f, ok := cmd.Stdout.(*os.File); ok {
		f.Close()
	}
}

// ownedBy reports whether a live pid belongs to the fleet in dir: its
// working directory or its command line is under dir (so a recycled pid
// is never killed).
func ownedBy(pid int, dir string) bool {
	if !proctree.Alive(pid) {
		return false
	}
	if cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid)); err == nil && (cwd == dir || strings.HasPrefix(cwd, dir+"/")) {
		return true
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return err == nil && bytes.Contains(b, []byte(dir))
}
