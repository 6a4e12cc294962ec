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

// WALBuffer holds the WAL the proposer streams: bytes from Start() to End(),
// appended at the end by whoever produces WAL (the primary's stream, a test)
// and read by one sender per safekeeper. Trim drops what every safekeeper has.
type WALBuffer struct {
	mu    sync.RWMutex
	start lsn.LSN
	data  []byte
	end   watch.Value[lsn.LSN]
}

// NewWALBuffer returns an empty buffer whose first byte will be at start.
func NewWALBuffer(start lsn.LSN) *WALBuffer {
	b := &WALBuffer{start: start}
	b.end.Set(start)
	return b
}

// Append adds WAL at the end.
func (b *WALBuffer) Append(p []byte) {
	b.mu.Lock()
	b.data = append(b.data, p...)
	end := b.start + lsn.LSN(len(b.data))
	b.mu.Unlock()
	b.end.Set(end)
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
	off := uint64(pos - b.start)
	if off > uint64(len(b.data)) {
		return 0, fmt.Errorf("WAL at %v is beyond the end %v", pos, b.start+lsn.LSN(len(b.data)))
	}
	return copy(dst, b.data[off:]), nil
}

// WaitBeyond blocks until End() > pos and returns the new end.
func (b *WALBuffer) WaitBeyond(ctx context.Context, pos lsn.LSN) (lsn.LSN, error) {
	return b.end.Wait(ctx, func(e lsn.LSN) bool { return e > pos })
}

// Watch returns the end and a channel closed when it moves.
func (b *WALBuffer) Watch() (lsn.LSN, <-chan struct{}) { return b.end.Watch() }

// Trim forgets WAL below upTo.
func (b *WALBuffer) Trim(upTo lsn.LSN) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if upTo <= b.start {
		return
	}
	n := min(uint64(upTo-b.start), uint64(len(b.data)))
	// Copy down instead of reslicing so the memory can be reused.
	b.data = append(b.data[:0], b.data[n:]...)
	b.start += lsn.LSN(n)
}
