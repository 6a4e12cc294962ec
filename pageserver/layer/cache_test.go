package layer

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
)

func TestBlockCache(t *testing.T) {
	c := NewBlockCache(cacheShards * 4 << 10) // 4 KiB per shard
	f := c.fileID()
	block := func(i int) []byte { return bytes.Repeat([]byte{byte(i)}, 1000) }
	for i := range 400 {
		c.put(blockID{f, i}, block(i))
	}
	// Every shard stays within its share, and what is there is right.
	cached := 0
	for i := range c.shards {
		s := &c.shards[i]
		if s.bytes > s.maxSize {
			t.Errorf("shard %d holds %d bytes, more than %d", i, s.bytes, s.maxSize)
		}
		cached += len(s.index)
	}
	for i := range 400 {
		if b, ok := c.get(blockID{f, i}); ok && !bytes.Equal(b, block(i)) {
			t.Fatalf("block %d: wrong bytes", i)
		}
	}
	if cached == 0 || cached > 4*cacheShards {
		t.Errorf("%d blocks cached, want between 1 and %d", cached, 4*cacheShards)
	}
	// Another file's block with the same number is another block.
	g := c.fileID()
	if _, ok := c.get(blockID{g, 399}); ok {
		t.Error("a block of another file was found")
	}
	// A block used since the hand passed survives the next eviction in
	// its shard; one larger than a shard's share is not kept.
	c.put(blockID{g, 1}, block(1))
	c.get(blockID{g, 1})
	s := c.shard(blockID{g, 1})
	s.mu.Lock()
	s.evict()
	s.mu.Unlock()
	if _, ok := c.get(blockID{g, 1}); !ok {
		t.Error("a block read since the hand passed was evicted first")
	}
	c.put(blockID{g, 2}, make([]byte, 5<<10))
	if _, ok := c.get(blockID{g, 2}); ok {
		t.Error("a block larger than a shard was cached")
	}
	if h, m := c.Stats(); h == 0 || m == 0 {
		t.Errorf("stats: %d hits, %d misses", h, m)
	}
}

func TestBlockCacheConcurrent(t *testing.T) {
	c := NewBlockCache(64 << 10)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			f := uint64(w % 2)
			for i := range 5000 {
				id := blockID{f, i % 300}
				want := fmt.Appendf(nil, "%d/%d", f, i%300)
				if b, ok := c.get(id); ok {
					if !bytes.Equal(b, want) {
						t.Errorf("%v: %q", id, b)
						return
					}
					continue
				}
				c.put(id, want)
			}
		})
	}
	wg.Wait()
}
