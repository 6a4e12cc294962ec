package walproposer

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"strata.dev/libs/lsn"
	"strata.dev/libs/watch"
)

// ErrTrimmed means WAL was asked for below what a WALBuffer still holds.
var ErrTrimmed = errors.New("WAL no longer held by the proposer")

// chunkSize is the unit of WALBuffer storage: appends fill chunks, Trim
// drops whole chunks, so neither ever moves bytes already stored.
const chunkSize = 1 << 20

// WALBuffer holds the WAL the proposer streams: bytes from Start() to End(),
// appended at the end by whoever produces WAL (the primary's stream, a test)
// and read by one sender per safekeeper. Trim drops what every safekeeper has.
//
// Storage is a list of 1 MiB chunks; chunk i holds the bytes from
// base + i*chunkSize. Start() may lie inside the first chunk.
type WALBuffer struct {
	mu     sync.RWMutex
	base   lsn.LSN // LSN of chunks[0][0]
	start  lsn.LSN // lowest LSN still readable
	chunks [][]byte
	end    watch.Value[lsn.LSN]
	free   [][]byte // trimmed chunks kept for reuse
	// onAppend, if set, is called after every Append with where the new
	// bytes start and the bytes themselves (valid during the call).
	onAppend func(old lsn.LSN, data []byte)
}

// NewWALBuffer returns an empty buffer whose first byte will be at start.
func NewWALBuffer(start lsn.LSN) *WALBuffer {
	b := &WALBuffer{base: start, start: start}
	b.end.Set(start)
	return b
}

// Reset moves an empty buffer to start at start: the proposer learns where
// its WAL continues only when it is elected.
func (b *WALBuffer) Reset(start lsn.LSN) error {
	b.mu.Lock()
	if b.endLocked() != b.start {
		b.mu.Unlock()
		return fmt.Errorf("reset of a WAL buffer that holds [%v, %v)", b.start, b.endLocked())
	}
	b.base, b.start, b.chunks = start, start, nil
	b.mu.Unlock()
	b.end.Set(start)
	return nil
}

// Append adds WAL at the end.
func (b *WALBuffer) Append(p []byte) {
	data := p
	b.mu.Lock()
	old := b.endLocked()
	for len(p) > 0 {
		n := len(b.chunks)
		if n == 0 || len(b.chunks[n-1]) == chunkSize {
			b.chunks = append(b.chunks, b.newChunk())
			n++
		}
		last := b.chunks[n-1]
		k := min(len(p), chunkSize-len(last))
		b.chunks[n-1] = append(last, p[:k]...)
		p = p[k:]
	}
	end := b.endLocked()
	hook := b.onAppend
	b.mu.Unlock()
	b.end.Set(end)
	if hook != nil {
		hook(old, data)
	}
}

func (b *WALBuffer) newChunk() []byte {
	if n := len(b.free); n > 0 {
		c := b.free[n-1]
		b.free = b.free[:n-1]
		return c[:0]
	}
	return make([]byte, 0, chunkSize)
}

func (b *WALBuffer) endLocked() lsn.LSN {
	n := len(b.chunks)
	if n == 0 {
		return b.base
	}
	return b.base + lsn.LSN((n-1)*chunkSize+len(b.chunks[n-1]))
}

// Start is the lowest LSN still held.
func (b *WALBuffer) Start() lsn.LSN {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.start
}

// End is the LSN after the last byte held.
func (b *WALBuffer) End() lsn.LSN { return b.end.Get() }

// ReadAt copies WAL starting at pos into dst and returns how much it copied.
func (b *WALBuffer) ReadAt(dst []byte, pos lsn.LSN) (int, error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if pos < b.start {
		return 0, fmt.Errorf("%w: %v is below %v", ErrTrimmed, pos, b.start)
	}
	if end := b.endLocked(); pos > end {
		return 0, fmt.Errorf("WAL at %v is beyond the end %v", pos, end)
	}
	total := 0
	for len(dst) > 0 {
		off := uint64(pos - b.base)
		i, within := int(off/chunkSize), int(off%chunkSize)
		if i >= len(b.chunks) || within >= len(b.chunks[i]) {
			break
		}
		n := copy(dst, b.chunks[i][within:])
		dst, pos, total = dst[n:], pos+lsn.LSN(n), total+n
	}
	return total, nil
}

// WaitBeyond blocks until End() > pos and returns the new end.
func (b *WALBuffer) WaitBeyond(ctx context.Context, pos lsn.LSN) (lsn.LSN, error) {
	return b.end.Wait(ctx, func(e lsn.LSN) bool { return e > pos })
}

// Watch returns the end and a channel closed when it moves.
func (b *WALBuffer) Watch() (lsn.LSN, <-chan struct{}) { return b.end.Watch() }

// Trim forgets WAL below upTo (whole chunks are released as they empty).
func (b *WALBuffer) Trim(upTo lsn.LSN) {
	b.mu.Lock()
	defer b.mu.Unlock()
	upTo = min(upTo, b.endLocked())
	if upTo <= b.start {
		return
	}
	b.start = upTo
	// Release chunks wholly below start, but always keep the last one: it
	// is where appends continue.
	for len(b.chunks) > 1 && b.base+chunkSize <= b.start {
		if len(b.free) < 4 {
			b.free = append(b.free, b.chunks[0])
		}
		b.chunks[0] = nil
		b.chunks = b.chunks[1:]
		b.base += chunkSize
	}
}
