package timeline

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"strata.dev/libs/lsn"
	"strata.dev/libs/wal"
)

// removalState remembers what WAL removal already did (in memory only, as in
// Neon: after a restart the first pass looks at the directory again).
type removalState struct {
	mu               sync.Mutex // one removal pass at a time
	lastRemovedSegno uint64
	removedSegments  atomic.Uint64
}

// RemovalHorizon is the LSN below which no consumer needs this timeline's WAL
// (SK §4.6): every position that bounds it is one a consumer has passed.
//
//   - the pageserver's remote-consistent LSN (persisted), so the pageserver
//     can always re-ingest from its durable point;
//   - the persisted commit LSN and the flush LSN, so nothing uncommitted or
//     unflushed goes;
//   - the persisted peer horizon, so a lagging safekeeper can still be caught
//     up from this one;
//   - the lowest position of any connected WAL reader (standby, pg_receivewal).
//
// Unlike Neon, the backup LSN does not bound it: Strata has no remote WAL
// backup yet, and the pageserver's durable LSN is what makes WAL redundant.
// A timeline no pageserver has reported on keeps all its WAL.
func (t *Timeline) RemovalHorizon() lsn.LSN {
	p := t.ControlState()
	s := t.Status()
	h := min(p.RemoteConsistentLSN, p.CommitLSN, s.FlushLSN, p.PeerHorizonLSN)
	if r := t.minReaderLSN(); r != 0 {
		h = min(h, r)
	}
	return h
}

// RemoveOldWAL deletes segments that lie entirely below the removal horizon
// and returns how many it removed.
func (t *Timeline) RemoveOldWAL() (int, error) {
	t.removal.mu.Lock()
	defer t.removal.mu.Unlock()
	h := t.RemovalHorizon()
	s := t.Status()
	segSize := uint64(s.Server.WalSegSize)
	seg := h.SegmentNumber(segSize)
	if seg == 0 {
		return 0, nil
	}
	removeUpTo := seg - 1
	if removeUpTo < t.removal.lastRemovedSegno {
		return 0, nil
	}
	entries, err := os.ReadDir(t.dir)
	if err != nil {
		return 0, fmt.Errorf("WAL removal: list %s: %w", t.dir, err)
	}
	n := 0
	for _, e := range entries {
		tli, segno, _, err := wal.ParseSegmentFileName(e.Name(), segSize)
		if err != nil || tli != 1 || segno > removeUpTo {
			continue
		}
		if err := os.Remove(filepath.Join(t.dir, e.Name())); err != nil && !os.IsNotExist(err) {
			return n, fmt.Errorf("WAL removal: remove %s: %w", e.Name(), err)
		}
		n++
	}
	t.removal.lastRemovedSegno = removeUpTo
	t.removal.removedSegments.Add(uint64(n))
	return n, nil
}

// RemovedSegments is how many segment files WAL removal deleted since start.
func (t *Timeline) RemovedSegments() uint64 { return t.removal.removedSegments.Load() }
