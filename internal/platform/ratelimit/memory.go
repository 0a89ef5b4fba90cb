package ratelimit

import (
	"context"
	"sync"
	"time"

	"github.com/globomantics/globomantics/internal/platform/clock"
)

// DefaultMaxKeys is the number of keys a Memory limiter tracks at most
// when NewMemory is given no bound.
const DefaultMaxKeys = 100_000

// sweepEvery is how often, at most, Memory scans all its keys to forget
// those whose budget is full again.
const sweepEvery = time.Minute

// evictSample is how many keys Memory looks at to choose one to evict
// when it is full of keys that are still limited.
const evictSample = 16

// Memory is a Limiter in this process's memory: each process limits on its
// own, so N storefront instances allow up to N times a limit between them.
// It keeps one timestamp per key that is not back to its full budget, and
// at most maxKeys of them: idle keys are swept once a minute, and when it
// is full of keys that are all still limited, a new key evicts the most
// nearly recovered of a sample of them (which then gets its full budget
// back early). Safe for concurrent use.
type Memory struct {
	clock   clock.Clock
	maxKeys int

	mu        sync.Mutex
	tat       map[string]time.Time // theoretical arrival time per key
	lastSweep time.Time
}

var _ Limiter = (*Memory)(nil)

// NewMemory returns an empty in-memory limiter reading time from clk (the
// real clock when nil) and tracking at most maxKeys keys (DefaultMaxKeys
// when maxKeys is not positive).
func NewMemory(clk clock.Clock, maxKeys int) *Memory {
	if clk == nil {
		clk = clock.Real{}
	}
	if maxKeys <= 0 {
		maxKeys = DefaultMaxKeys
	}
	return &Memory{clock: clk, maxKeys: maxKeys, tat: make(map[string]time.Time), lastSweep: clk.Now()}
}

// Allow implements Limiter; it never fails.
func (m *Memory) Allow(_ context.Context, key string, l Limit) (bool, time.Duration, error) {
	if !l.Enabled() {
		return true, 0, nil
	}
	now := m.clock.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if now.Sub(m.lastSweep) >= sweepEvery {
		m.sweep(now)
	}
	tat, known := m.tat[key]
	ok, newTAT, retry := Decide(l, tat, now)
	if !ok {
		return false, retry, nil
	}
	if !known && len(m.tat) >= m.maxKeys {
		m.makeRoom(now)
	}
	m.tat[key] = newTAT
	return true, 0, nil
}

// Reset implements Limiter; it never fails.
func (m *Memory) Reset(_ context.Context, key string) error {
	m.mu.Lock()
	delete(m.tat, key)
	m.mu.Unlock()
	return nil
}

// Len is the number of keys tracked: those not back to their full budget
// (until the next sweep forgets them).
func (m *Memory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.tat)
}

// sweep forgets every key whose budget is full again.
func (m *Memory) sweep(now time.Time) {
	for k, tat := range m.tat {
		if !tat.After(now) {
			delete(m.tat, k)
		}
	}
	m.lastSweep = now
}

// makeRoom frees one slot: a key that is back to its full budget if one is
// among a sample, or else the sampled key closest to it. Map iteration
// starts at a random place, so the sample is spread over the keys.
func (m *Memory) makeRoom(now time.Time) {
	var victim string
	var oldest time.Time
	n := 0
	for k, tat := range m.tat {
		if !tat.After(now) {
			victim = k
			break
		}
		if n == 0 || tat.Before(oldest) {
			victim, oldest = k, tat
		}
		if n++; n >= evictSample {
			break
		}
	}
	delete(m.tat, victim)
}
