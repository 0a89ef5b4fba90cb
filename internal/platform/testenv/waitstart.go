package testenv

import (
	"fmt"
	"os"
	"strings"
	"time"
)

// waitStarted polls ready every interval until it succeeds (nil), the
// server exits (inUse reports whether its log says its port was taken,
// so the caller may try another), or timeout passes (stop is called).
// name and logPath are for the error, which quotes the server's log.
func waitStarted(name, logPath string, exited <-chan struct{}, timeout, interval time.Duration, ready func() error, stop func()) (inUse bool, err error) {
	deadline := time.Now().Add(timeout)
	for {
		err := ready()
		if err == nil {
			return false, nil
		}
		select {
		case <-exited:
			b, _ := os.ReadFile(logPath)
			return strings.Contains(string(b), "in use"), fmt.Errorf("%s exited: %s", name, b)
		default:
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logPath)
			stop()
			return false, fmt.Errorf("%s did not start: %v: %s", name, err, b)
		}
		time.Sleep(interval)
	}
}

// launchRetrying calls launch until it succeeds, fails for another reason
// than a port taken between choosing it and binding it, or has tried three
// times.
func launchRetrying[T any](launch func(try int) (T, bool, error)) (T, error) {
	var srv T
	var err error
	for try := range 3 {
		var inUse bool
		srv, inUse, err = launch(try)
		if err == nil || !inUse {
			return srv, err
		}
	}
	return srv, err
}
