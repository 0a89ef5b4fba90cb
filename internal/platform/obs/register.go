package obs

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// RegisterOnce registers c with reg and returns it, or, when a collector
// of the same type and descriptors is already registered there (a package
// whose metrics are built once per store, relay or cache of a process),
// returns that one, so that every caller counts into the same series. It
// panics on any other registration error: a metric named twice with
// different labels is a programming error.
func RegisterOnce[T prometheus.Collector](reg prometheus.Registerer, c T) T {
	err := reg.Register(c)
	if err == nil {
		return c
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if old, ok := are.ExistingCollector.(T); ok {
			return old
		}
	}
	panic(fmt.Sprintf("obs: registering metrics: %v", err))
}
