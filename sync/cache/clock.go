package cache

import (
	"sync"
	"sync/atomic"

	"github.com/dvfs-project/dvfs/blockstore"
)

// clock is the CLOCK approximation of LRU: a hit only sets a bit (under a
// read lock), and eviction sweeps a hand over the entries, sparing those
// whose bit is set once. Hits are the hot path; evictions are rare.
type clock struct {
	mu      sync.RWMutex
	index   map[blockstore.ID]int
	entries []clockEntry
	hand    int
	total   int64
	evicted atomic.Int64
}

type clockEntry struct {
	id   blockstore.ID
	size int64
	ref  atomic.Bool
}

func newClock() *clock { return &clock{index: make(map[blockstore.ID]int)} }

func (c *clock) add(id blockstore.ID, size int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if i, ok := c.index[id]; ok {
		c.entries[i].ref.Store(true)
		return
	}
	c.index[id] = len(c.entries)
	c.entries = append(c.entries, clockEntry{id: id, size: size})
	c.total += size
}

func (c *clock) touch(id blockstore.ID) {
	c.mu.RLock()
	if i, ok := c.index[id]; ok {
		c.entries[i].ref.Store(true)
	}
	c.mu.RUnlock()
}

func (c *clock) has(id blockstore.ID) bool {
	c.mu.RLock()
	_, ok := c.index[id]
	c.mu.RUnlock()
	return ok
}

func (c *clock) remove(id blockstore.ID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.removeLocked(id)
}

func (c *clock) removeLocked(id blockstore.ID) {
	i, ok := c.index[id]
	if !ok {
		return
	}
	c.total -= c.entries[i].size
	delete(c.index, id)
	// Move the last entry into the hole.
	last := len(c.entries) - 1
	if i != last {
		c.entries[i].id, c.entries[i].size = c.entries[last].id, c.entries[last].size
		c.entries[i].ref.Store(c.entries[last].ref.Load())
		c.index[c.entries[i].id] = i
	}
	c.entries = c.entries[:last]
	if c.hand >= len(c.entries) {
		c.hand = 0
	}
}

// evict removes entries until at most target bytes remain and returns
// their IDs.
func (c *clock) evict(target int64) []blockstore.ID {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []blockstore.ID
	for c.total > target && len(c.entries) > 0 {
		if c.hand >= len(c.entries) {
			c.hand = 0
		}
		e := &c.entries[c.hand]
		if e.ref.Swap(false) {
			c.hand++
			continue
		}
		out = append(out, e.id)
		c.removeLocked(e.id)
	}
	c.evicted.Add(int64(len(out)))
	return out
}

func (c *clock) bytes() int64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.total
}

func (c *clock) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.entries)
}
