package timeline

// An in-memory layer holds the versions committed since the last freeze:
// encoded values in an append-only arena of chunks and an index key →
// versions sorted by LSN. The open layer is appended to under its write
// lock by Commit (which also holds Timeline.mu, so it cannot be frozen
// meanwhile); once frozen it never changes again. Readers copy values out
// under the read lock, so no returned slice aliases the arena.
//
// Once a frozen layer is in a layer file, release gives its chunks back
// to the timeline's chunkPool for the next open layer: fresh memory costs
// a page fault per 4 KiB, which was the largest cost of ingest. A reader
// that still holds an older layer map and reaches a released layer gets
// errReleased and starts over with the current map.

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"strata.dev/libs/lsn"
	"strata.dev/pageserver/key"
	"strata.dev/pageserver/layer"
	"strata.dev/pageserver/value"
)

const arenaChunk = 1 << 20

// errReleased: the in-memory layer was written out and its memory reused.
var errReleased = errors.New("in-memory layer released")

// chunkPool keeps arena chunks of released layers, at most max of them.
// Until layers are released (a new or restarted pageserver catching up),
// every chunk is fresh memory, and its first touch, a page fault per
// 4 KiB, fell on the goroutine that ingests WAL: ~20% of its CPU
// re-ingesting FPI-heavy WAL. So while the pool has no free chunk, a
// short-lived goroutine touches fresh chunks ahead of need (readyAhead of
// them), on whatever CPU is idle.
type chunkPool struct {
	mu      sync.Mutex
	free    [][]byte
	max     int
	ready   [][]byte // fresh chunks, their pages touched
	filling bool     // a filler goroutine runs
}

// readyAhead is how many fresh chunks the filler keeps touched ahead: 4 MiB,
// several milliseconds of ingest, against ~0.3 ms to touch one.
const readyAhead = 4

func newChunkPool(checkpointDistance uint64) *chunkPool {
	return &chunkPool{max: int(checkpointDistance/arenaChunk) + 8}
}

func (p *chunkPool) get(n int) []byte {
	if n <= arenaChunk {
		p.mu.Lock()
		if k := len(p.free); k > 0 {
			c := p.free[k-1]
			p.free = p.free[:k-1]
			p.mu.Unlock()
			return c[:0]
		}
		var c []byte
		if k := len(p.ready); k > 0 {
			c = p.ready[k-1]
			p.ready = p.ready[:k-1]
		}
		if !p.filling {
			p.filling = true
			go p.fill()
		}
		p.mu.Unlock()
		if c != nil {
			return c[:0]
		}
	}
	return make([]byte, 0, max(arenaChunk, n))
}

// fill touches fresh chunks until readyAhead of them wait, or until layers
// are released and chunks come back (then fresh ones are not needed).
func (p *chunkPool) fill() {
	for {
		p.mu.Lock()
		if len(p.ready) >= readyAhead || len(p.free) > 0 {
			p.filling = false
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
		c := make([]byte, arenaChunk)
		for i := 0; i < len(c); i += 4096 {
			c[i] = 0
		}
		p.mu.Lock()
		p.ready = append(p.ready, c)
		p.mu.Unlock()
	}
}

func (p *chunkPool) put(cs [][]byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		if cap(c) == arenaChunk && len(p.free) < p.max {
			p.free = append(p.free, c[:0])
		}
	}
}

type memVersion struct {
	lsn      lsn.LSN
	chunk    uint32
	off      uint32
	len      uint32
	willInit bool
	older    int32 // index in memLayer.chain of the key's next older version; -1: none
}

type memLayer struct {
	mu sync.RWMutex
	// index maps each key to its newest version in chain, which links
	// to older ones.
	index     keyIndex
	keys      int
	chain     versionLog
	chunks    [][]byte
	size      uint64 // bytes of encoded values, including overwritten ones
	entries   int
	allImages bool      // every value is an image (the initdb-as-images rule)
	firstPut  time.Time // when the first value arrived (checkpoint timeout)
	pool      *chunkPool
	released  bool
}

// newMemLayer makes an empty layer whose arena comes from pool.
func newMemLayer(pool *chunkPool) *memLayer {
	return &memLayer{index: newKeyIndex(), allImages: true, pool: pool}
}

// release hands the arena back to the pool; the layer must be out of the
// layer map and not being written.
func (m *memLayer) release() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.released = true
	m.pool.put(m.chunks)
	m.chunks, m.index, m.chain = nil, keyIndex{}, versionLog{}
}

// put stores one version; the caller holds m.mu for writing. A second
// value at the same (key, LSN) replaces the first, as in Neon.
func (m *memLayer) put(e value.Entry) {
	// Encode straight into the arena: the chunk has room for the bound.
	bound := e.Value.MaxEncodedLen()
	last := len(m.chunks) - 1
	if last < 0 || cap(m.chunks[last])-len(m.chunks[last]) < bound {
		m.chunks = append(m.chunks, m.pool.get(bound))
		last++
	}
	c := m.chunks[last]
	off := len(c)
	c = e.Value.Append(c)
	n := len(c) - off
	m.chunks[last] = c
	v := memVersion{lsn: e.LSN, chunk: uint32(last), off: uint32(off), len: uint32(n), willInit: e.Value.WillInit()}
	m.size += uint64(n)
	if m.entries == 0 {
		m.firstPut = time.Now()
	}
	m.allImages = m.allImages && e.Value.IsImage

	slot := m.index.slot(e.Key)
	head := *slot - 1
	if head < 0 || m.chain.at(head).lsn < e.LSN {
		// The usual case: a newer version.
		if head < 0 {
			m.keys++
		}
		v.older = head
		*slot = m.chain.append(v) + 1
		m.entries++
		return
	}
	// Rare: at or below the newest LSN. Find the place in the chain.
	newer, cur := int32(-1), head
	for cur >= 0 && m.chain.at(cur).lsn > e.LSN {
		newer, cur = cur, m.chain.at(cur).older
	}
	if cur >= 0 && m.chain.at(cur).lsn == e.LSN {
		v.older = m.chain.at(cur).older
		*m.chain.at(cur) = v
		return
	}
	v.older = cur
	m.chain.at(newer).older = m.chain.append(v)
	m.entries++
}

// versionLog is an append-only list of versions in blocks of
// versionBlock: appending never moves what is there. (A flat slice grew by
// a quarter at a time once large, copying and clearing its whole content
// each time: a quarter of the pageserver's CPU ingesting FPI-heavy WAL.)
type versionLog struct{ blocks [][]memVersion }

const (
	versionBlockBits = 15
	versionBlock     = 1 << versionBlockBits // 32768 versions, 1 MiB
)

func (l *versionLog) at(i int32) *memVersion {
	return &l.blocks[i>>versionBlockBits][i&(versionBlock-1)]
}

func (l *versionLog) append(v memVersion) int32 {
	n := len(l.blocks)
	if n == 0 || len(l.blocks[n-1]) == versionBlock {
		l.blocks = append(l.blocks, make([]memVersion, 0, versionBlock))
		n++
	}
	l.blocks[n-1] = append(l.blocks[n-1], v)
	return int32((n-1)*versionBlock + len(l.blocks[n-1]) - 1)
}

func (m *memLayer) bytes(v memVersion) []byte {
	return m.chunks[v.chunk][v.off : v.off+v.len]
}

// get visits the versions of k in r newest first until fn returns false.
func (m *memLayer) get(k key.Key, r layer.LSNRange, fn func(lsn.LSN, value.Value) bool) error {
	type found struct {
		lsn lsn.LSN
		b   []byte
	}
	// Copy what is needed under the lock; decode and call fn outside it.
	var out []found
	m.mu.RLock()
	if m.released {
		m.mu.RUnlock()
		return errReleased
	}
	for i := m.index.lookup(k) - 1; i >= 0; i = m.chain.at(i).older {
		v := *m.chain.at(i)
		if v.lsn >= r.End {
			continue
		}
		if v.lsn < r.Start {
			break
		}
		out = append(out, found{v.lsn, slices.Clone(m.bytes(v))})
		if v.willInit {
			break
		}
	}
	m.mu.RUnlock()
	for _, f := range out {
		v, err := value.Decode(f.b)
		if err != nil {
			// Only values this process encoded are here: a bug, not damage.
			return fmt.Errorf("in-memory layer: value of %s@%s: %w", k, f.lsn, err)
		}
		if !fn(f.lsn, v) {
			break
		}
	}
	return nil
}

// info is what Layers reports.
func (m *memLayer) info() (size uint64, entries int) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.size, m.entries
}

// sortedKeys lists the keys in order; for a frozen layer.
func (m *memLayer) sortedKeys() []key.Key {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.index.sortedKeys(make([]key.Key, 0, m.keys))
}

// versions appends the versions of k to dst, oldest first.
func (m *memLayer) versions(dst []memVersion, k key.Key) []memVersion {
	m.mu.RLock()
	defer m.mu.RUnlock()
	first := len(dst)
	for i := m.index.lookup(k) - 1; i >= 0; i = m.chain.at(i).older {
		dst = append(dst, *m.chain.at(i))
	}
	slices.Reverse(dst[first:])
	return dst
}
