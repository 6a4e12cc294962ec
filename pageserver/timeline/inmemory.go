package timeline

// An in-memory layer holds the versions committed since the last freeze:
// encoded values in an append-only arena of chunks and an index key →
// versions sorted by LSN. The open layer is appended to under its write
// lock by Commit (which also holds Timeline.mu, so it cannot be frozen
// meanwhile); once frozen it never changes again. Readers copy values out
// under the read lock, so no returned slice aliases the arena.

import (
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"strata.dev/libs/lsn"
	"strata.dev/pageserver/key"
	"strata.dev/pageserver/layer"
	"strata.dev/pageserver/value"
)

const arenaChunk = 1 << 20

type memVersion struct {
	lsn      lsn.LSN
	chunk    uint32
	off      uint32
	len      uint32
	willInit bool
}

type memLayer struct {
	mu        sync.RWMutex
	index     map[key.Key][]memVersion
	chunks    [][]byte
	size      uint64 // bytes of encoded values, including overwritten ones
	entries   int
	allImages bool      // every value is an image (the initdb-as-images rule)
	firstPut  time.Time // when the first value arrived (checkpoint timeout)
	scratch   []byte
}

func newMemLayer() *memLayer {
	return &memLayer{index: make(map[key.Key][]memVersion), allImages: true}
}

// put stores one version; the caller holds m.mu for writing. A second
// value at the same (key, LSN) replaces the first, as in Neon.
func (m *memLayer) put(e value.Entry) {
	m.scratch = e.Value.Append(m.scratch[:0])
	n := len(m.scratch)
	last := len(m.chunks) - 1
	if last < 0 || cap(m.chunks[last])-len(m.chunks[last]) < n {
		m.chunks = append(m.chunks, make([]byte, 0, max(arenaChunk, n)))
		last++
	}
	c := m.chunks[last]
	v := memVersion{lsn: e.LSN, chunk: uint32(last), off: uint32(len(c)), len: uint32(n), willInit: e.Value.WillInit()}
	m.chunks[last] = append(c, m.scratch...)
	m.size += uint64(n)
	if m.entries == 0 {
		m.firstPut = time.Now()
	}
	m.allImages = m.allImages && e.Value.IsImage

	vs := m.index[e.Key]
	i := len(vs)
	if i > 0 && vs[i-1].lsn >= e.LSN {
		i = sort.Search(len(vs), func(j int) bool { return vs[j].lsn >= e.LSN })
	}
	if i < len(vs) && vs[i].lsn == e.LSN {
		vs[i] = v
		return
	}
	m.entries++
	m.index[e.Key] = slices.Insert(vs, i, v)
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
	vs := m.index[k]
	for i := len(vs) - 1; i >= 0; i-- {
		v := vs[i]
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
	keys := make([]key.Key, 0, len(m.index))
	for k := range m.index {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, key.Key.Compare)
	return keys
}

// versions of k, oldest first; for a frozen layer.
func (m *memLayer) versions(k key.Key) []memVersion {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.index[k]
}
