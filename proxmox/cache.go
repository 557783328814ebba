package proxmox

import (
	"sync"
	"time"
)

// memo keeps values read from PVE for a bounded time, so that calls in a
// burst share one read. A ttl of zero or less keeps nothing. Expired
// entries are dropped when they are looked up; the keys are few (templates,
// and fixed keys for cluster-wide reads), so nothing else sweeps them.
type memo[K comparable, V any] struct {
	ttl time.Duration

	mu sync.Mutex
	m  map[K]memoEntry[V]
}

type memoEntry[V any] struct {
	v       V
	expires time.Time
}

func newMemo[K comparable, V any](ttl time.Duration) *memo[K, V] {
	return &memo[K, V]{ttl: ttl, m: map[K]memoEntry[V]{}}
}

// get returns the value stored for k unless it has expired.
func (c *memo[K, V]) get(k K) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[k]
	if ok && time.Now().Before(e.expires) {
		return e.v, true
	}
	delete(c.m, k)
	var zero V
	return zero, false
}

// put stores v for k for the memo's ttl.
func (c *memo[K, V]) put(k K, v V) {
	if c.ttl <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m[k] = memoEntry[V]{v: v, expires: time.Now().Add(c.ttl)}
}

// drop forgets k.
func (c *memo[K, V]) drop(k K) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, k)
}
