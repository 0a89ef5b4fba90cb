// Package measure holds the small helpers the bench programs share:
// waiting for a window to start, percentiles of latencies and the machine's
// load.
package measure

import (
	"context"
	"os"
	"strings"
	"time"
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
