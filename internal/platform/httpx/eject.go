package httpx

import (
	"net"
	"net/http"
	"sync"
	"time"
)

// DialTimeout bounds the connection of a call to one instance. A peer on
// this machine or its network answers a connect in well under a
// millisecond, or refuses it; one that does neither (a host cut off by a
// partition, a full accept queue) is treated as refusing, so the call goes
// to the next instance instead of waiting out its try timeout.
const DialTimeout = time.Second

// NewTransport is the transport of the shop's service clients: tuned
// keep-alives and connections bounded by DialTimeout.
func NewTransport() *http.Transport {
	return &http.Transport{
		DialContext:         (&net.Dialer{Timeout: DialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
	}
}

// Ejection bounds: an instance that failed in transport is skipped for
// ejectMin, doubling with each failure in a row up to ejectMax.
const (
	ejectMin = time.Second
	ejectMax = 30 * time.Second
)

// ejector remembers the instances whose connection failed or that did not
// answer within the try timeout, and skips them while another instance is
// left (passive health checking, as a load balancer ejects a backend): a
// call then pays the failure of a dead or cut-off instance once per
// ejection period, not once per call. An answer, whatever its status,
// ends the ejection.
type ejector struct {
	mu    sync.Mutex
	state map[string]ejection
}

type ejection struct {
	until time.Time
	fails int
}

// failed ejects base: for ejectMin, doubled per failure in a row.
func (e *ejector) failed(base string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.state == nil {
		e.state = map[string]ejection{}
	}
	s := e.state[base]
	d := ejectMin << min(s.fails, 5)
	s.fails++
	s.until = time.Now().Add(min(d, ejectMax))
	e.state[base] = s
}

// answered ends base's ejection.
func (e *ejector) answered(base string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.state, base)
}

// ejected reports whether base is being skipped now.
func (e *ejector) ejected(base string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	s, ok := e.state[base]
	return ok && time.Now().Before(s.until)
}

// pick returns the first instance from i on (i included) that is neither
// ejected nor excluded by skip; when every one is, i itself when skip
// allows it (an ejected instance is tried rather than none), else the first
// that skip allows.
func (e *ejector) pick(bases []string, i uint64, skip func(uint64) bool) uint64 {
	n := uint64(len(bases))
	for k := uint64(0); k < n; k++ {
		j := (i + k) % n
		if (skip == nil || !skip(j)) && !e.ejected(bases[j]) {
			return j
		}
	}
	for k := uint64(0); k < n; k++ {
		j := (i + k) % n
		if skip == nil || !skip(j) {
			return j
		}
	}
	return i
}
