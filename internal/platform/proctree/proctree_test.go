package proctree

import (
	"os"
	"os/exec"
	"slices"
	"testing"
)

func TestChildren(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	cmd := exec.Command("sleep", "5")
	if err := cmd.Start(); err != nil {
		t.Skip("no sleep command:", err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	if got := Children(os.Getpid()); !slices.Contains(got, cmd.Process.Pid) {
		t.Errorf("Children(self) = %v, want it to hold %d", got, cmd.Process.Pid)
	}
	f, ok := StatFields("/proc/self/stat")
	if !ok || len(f) < 13 || f[1] == "0" { // self has a parent
		t.Errorf("StatFields(self) = %v, %v", f, ok)
	}
}
