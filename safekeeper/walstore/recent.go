package walstore

import (
	"sync"
	"sync/atomic"
	"time"

	"strata.dev/libs/lsn"
)

// Recent holds the last WAL a Store wrote, for its readers. The store
// writes segments around the page cache (pagebuf.go), so a WAL sender that
// follows the commit LSN (a pageserver tailing the timeline) read every byte
// back from the disk right after it was written: under pgbench, ~900 small
// reads a second on the disk that the commits' fdatasyncs wait for. A
// reader finds that WAL here instead; older WAL (a catch-up) still comes
// from the files.
//
// It is a ring of size bytes: the WAL at LSN x is at buf[x % size]. Store
// writes into it after each successful Write and cuts it at a truncation,
// so it never holds bytes the files do not hold at the same LSNs. It is
// filled only while readers look at it (recentIdle): a safekeeper no WAL
// sender follows (normally two of three) copies nothing and holds no
// memory. Readers may run on other goroutines.
type Recent struct {
	size int
	// looked is when a reader last looked here (Unix nanoseconds).
	looked atomic.Int64
	mu     sync.RWMutex
	buf    []byte // allocated when WAL comes and a reader looks, freed by ReleaseIdle
	// start and end bound the WAL held: [start, end), end-start ≤ size.
	start, end lsn.LSN
}

// DefaultRecentSize is how much recent WAL a timeline keeps in memory by
// default: at ~10 MB/s of WAL, a reader up to ~0.4 s behind the writer.
const DefaultRecentSize = 4 << 20

// recentIdle is how long after a reader last looked the ring is still
// filled and kept.
const recentIdle = time.Minute

// newRecent returns an empty ring of size bytes; nil for size 0 (disabled).
func newRecent(size int) *Recent {
	if size <= 0 {
		return nil
	}
	return &Recent{size: size}
}

// idle reports whether no reader looked since recentIdle before now.
func (r *Recent) idle(now time.Time) bool {
	return now.Sub(time.Unix(0, r.looked.Load())) > recentIdle
}

// append adds the WAL p at at, if a reader looks. WAL that does not
// continue what is held (after an idle spell, a failed write, a truncation
// or an open) starts the ring over.
func (r *Recent) append(at lsn.LSN, p []byte) {
	if r == nil || len(p) == 0 || r.idle(time.Now()) {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.buf == nil {
		r.buf = make([]byte, r.size)
	}
	if at != r.end {
		r.start, r.end = at, at
	}
	if len(p) > r.size {
		at += lsn.LSN(len(p) - r.size)
		p = p[len(p)-r.size:]
		r.start, r.end = at, at
	}
	off := int(uint64(at) % uint64(r.size))
	n := copy(r.buf[off:], p)
	copy(r.buf, p[n:])
	r.end = at + lsn.LSN(len(p))
	if r.end-r.start > lsn.LSN(r.size) { // (not end-size: LSNs below size would wrap)
		r.start = r.end - lsn.LSN(r.size)
	}
}

// ReleaseIdle frees the memory once no reader looked for recentIdle
// before now, and reports whether it did.
func (r *Recent) ReleaseIdle(now time.Time) bool {
	if r == nil || !r.idle(now) {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.buf == nil {
		return false
	}
	r.buf, r.start, r.end = nil, 0, 0
	return true
}

// truncate forgets the WAL from end on.
func (r *Recent) truncate(end lsn.LSN) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if end < r.end {
		r.end = max(end, r.start)
		r.start = min(r.start, r.end)
	}
}

// readAt copies WAL from pos on into p, as much as the ring holds
// contiguously from pos; 0 if it does not hold pos. It counts as a reader
// looking, so the ring fills from the next write on.
func (r *Recent) readAt(p []byte, pos lsn.LSN) int {
	if r == nil {
		return 0
	}
	r.looked.Store(time.Now().UnixNano())
	r.mu.RLock()
	defer r.mu.RUnlock()
	if pos < r.start || pos >= r.end {
		return 0
	}
	p = p[:min(uint64(len(p)), uint64(r.end-pos))]
	off := int(uint64(pos) % uint64(r.size))
	n := copy(p, r.buf[off:])
	n += copy(p[n:], r.buf)
	return n
}

// heldFrom is the first LSN the ring holds, and false if it holds none.
func (r *Recent) heldFrom() (lsn.LSN, bool) {
	if r == nil {
		return 0, false
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.start, r.end > r.start
}
