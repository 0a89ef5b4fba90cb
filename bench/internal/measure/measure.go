// Package measure holds the small helpers the bench programs share:
// waiting for a window to start, percentiles of latencies, the machine's
// load and CPUs, a process's CPU time, free ports and log tails.
package measure

import (
	"context"
	"fmt"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/globomantics/globomantics/internal/platform/freeport"
	"github.com/globomantics/globomantics/internal/platform/proctree"
)

// SleepUntil waits until t and reports true, or false if ctx ends first.
func SleepUntil(ctx context.Context, t time.Time) bool {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}

// Pct returns the p-th percentile (0-100) of sorted latencies, 0 for none.
func Pct(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[int(float64(len(sorted)-1)*p/100)]
}

// Ms is d in milliseconds, to the microsecond.
func Ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// LoadAvg returns the 1, 5 and 15-minute load averages ("?" when unknown).
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// TailBuffer keeps the last Max bytes written to it (a process's log, for
// an error message). Safe for concurrent use.
type TailBuffer struct {
	Max int
	mu  sync.Mutex
	b   []byte
}

func (t *TailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.Max {
		t.b = t.b[len(t.b)-t.Max:]
	}
	return len(p), nil
}

func (t *TailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

// LoopbackAddr is a free port on 127.0.0.1 as host:port, "" if none.
func LoopbackAddr() string {
	p, err := freeport.Get()
	if err != nil {
		return ""
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
}

// Machine names the CPUs and the Go version, for a result's heading.
func Machine() string {
	model := "?"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	return fmt.Sprintf("%d CPUs (%s), %s", runtime.NumCPU(), model, runtime.Version())
}

// ProcCPU is the user+system CPU seconds of process pid (all its threads)
// so far; 0 for pid 0 or a process gone.
func ProcCPU(pid int) float64 {
	if pid <= 0 {
		return 0
	}
	f, ok := proctree.StatFields("/proc/" + strconv.Itoa(pid) + "/stat")
	if !ok || len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (u + st) / 100 // USER_HZ
}
