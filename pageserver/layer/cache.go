package layer

// BlockCache keeps layer-file blocks that reads (Image.Get, Delta.Get)
// fetched, checksum-verified, so that a hot page costs a map lookup rather
// than a pread(2), a checksum and an allocation (Neon's pageserver has a
// page cache for the same reason). Scans (compaction) bypass it. Blocks
// are immutable, like the files: values handed out from a cached block are
// shared and must not be modified, as values always had to be treated.
//
// Eviction is CLOCK per shard: a block read since the hand last passed
// gets a second chance.

import (
	"sync"
	"sync/atomic"
)

const cacheShards = 16

// BlockCache is safe for concurrent use. The zero value is not usable:
// NewBlockCache makes one.
type BlockCache struct {
	shards       [cacheShards]cacheShard
	nextFile     atomic.Uint64
	hits, misses atomic.Uint64
}

type blockID struct {
	file  uint64
	block int
}

type cacheShard struct {
	mu      sync.Mutex
	index   map[blockID]int // slot of each cached block
	slots   []cacheSlot
	free    []int // empty slots
	hand    int
	bytes   int64
	maxSize int64
}

type cacheSlot struct {
	id   blockID
	buf  []byte // nil: empty
	used bool   // read since the hand last passed
}

// NewBlockCache makes a cache of at most about size bytes of blocks.
func NewBlockCache(size int64) *BlockCache {
	c := &BlockCache{}
	for i := range c.shards {
		c.shards[i] = cacheShard{index: map[blockID]int{}, maxSize: max(size/cacheShards, 1)}
	}
	return c
}

// Stats reports how many block reads the cache answered and how many went
// to the file.
func (c *BlockCache) Stats() (hits, misses uint64) { return c.hits.Load(), c.misses.Load() }

// fileID names a newly opened file's blocks.
func (c *BlockCache) fileID() uint64 { return c.nextFile.Add(1) }

func (c *BlockCache) shard(id blockID) *cacheShard {
	h := id.file*0x9E3779B97F4A7C15 + uint64(id.block)*0xBF58476D1CE4E5B9
	return &c.shards[h>>60]
}

func (c *BlockCache) get(id blockID) ([]byte, bool) {
	s := c.shard(id)
	s.mu.Lock()
	i, ok := s.index[id]
	var buf []byte
	if ok {
		s.slots[i].used = true
		buf = s.slots[i].buf
	}
	s.mu.Unlock()
	if ok {
		c.hits.Add(1)
	} else {
		c.misses.Add(1)
	}
	return buf, ok
}

func (c *BlockCache) put(id blockID, buf []byte) {
	s := c.shard(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.index[id]; ok || int64(len(buf)) > s.maxSize {
		return
	}
	for s.bytes+int64(len(buf)) > s.maxSize {
		s.evict()
	}
	var i int
	if n := len(s.free); n > 0 {
		i, s.free = s.free[n-1], s.free[:n-1]
	} else {
		i = len(s.slots)
		s.slots = append(s.slots, cacheSlot{})
	}
	s.slots[i] = cacheSlot{id: id, buf: buf}
	s.index[id] = i
	s.bytes += int64(len(buf))
}

// evict empties the first slot the hand finds not used since it last
// passed. The caller holds s.mu and s has blocks.
func (s *cacheShard) evict() {
	for {
		if s.hand >= len(s.slots) {
			s.hand = 0
		}
		sl := &s.slots[s.hand]
		s.hand++
		switch {
		case sl.buf == nil:
		case sl.used:
			sl.used = false
		default:
			delete(s.index, sl.id)
			s.bytes -= int64(len(sl.buf))
			*sl = cacheSlot{}
			s.free = append(s.free, s.hand-1)
			return
		}
	}
}
