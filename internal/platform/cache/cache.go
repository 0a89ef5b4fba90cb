// Package cache is the look-aside cache used in front of slow reads. The
// embedded default is an in-process LRU with expiry; a Redis implementation
// satisfies the same interface.
package cache

import (
	"container/list"
	"context"
	"sync"
	"time"

	"github.com/globomantics/globomantics/internal/platform/clock"
)

// Cache maps string keys to bytes with a time to live. A miss is (nil, false,
// nil); errors are for an unreachable cache server, and callers treat them as
// misses. Set keeps its own copy of val (the caller may reuse it); a zero or
// negative ttl is never served. The bytes Get returns must not be modified.
// Every implementation passes cachetest.Test.
type Cache interface {
	Get(ctx context.Context, key string) ([]byte, bool, error)
	Set(ctx context.Context, key string, val []byte, ttl time.Duration) error
	Delete(ctx context.Context, key string) error
}

// Memory is an in-process LRU cache holding at most max entries.
type Memory struct {
	clock clock.Clock
	max   int

	mu    sync.Mutex
	ll    *list.List
	items map[string]*list.Element
}

type entry struct {
	key     string
	val     []byte
	expires time.Time
}

var _ Cache = (*Memory)(nil)

// NewMemory returns an LRU cache of at most max entries.
func NewMemory(c clock.Clock, max int) *Memory {
	if max <= 0 {
		max = 10000
	}
	return &Memory{clock: c, max: max, ll: list.New(), items: make(map[string]*list.Element)}
}

// Get returns the value at key if present and not expired.
func (m *Memory) Get(_ context.Context, key string) ([]byte, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	el, ok := m.items[key]
	if !ok {
		return nil, false, nil
	}
	e := el.Value.(*entry)
	if !m.clock.Now().Before(e.expires) {
		m.ll.Remove(el)
		delete(m.items, key)
		return nil, false, nil
	}
	m.ll.MoveToFront(el)
	return e.val, true, nil
}

// Set stores val at key for ttl, evicting the least recently used entry when full.
func (m *Memory) Set(_ context.Context, key string, val []byte, ttl time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	exp := m.clock.Now().Add(ttl)
	val = append([]byte{}, val...) // the caller may reuse its buffer
	if el, ok := m.items[key]; ok {
		e := el.Value.(*entry)
		e.val, e.expires = val, exp
		m.ll.MoveToFront(el)
		return nil
	}
	m.items[key] = m.ll.PushFront(&entry{key: key, val: val, expires: exp})
	for m.ll.Len() > m.max {
		old := m.ll.Back()
		m.ll.Remove(old)
		delete(m.items, old.Value.(*entry).key)
	}
	return nil
}

// Delete removes key.
func (m *Memory) Delete(_ context.Context, key string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if el, ok := m.items[key]; ok {
		m.ll.Remove(el)
		delete(m.items, key)
	}
	return nil
}

// Len is the number of entries held, expired or not.
func (m *Memory) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.ll.Len()
}
