package timeline

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"strata.dev/libs/lsn"
	"strata.dev/libs/wal"
)

// removalState remembers what WAL removal already did (in memory only, as in
// Neon: after a restart the first pass looks at the directory again).
type removalState struct {
	mu               sync.Mutex // one removal pass at a time
	lastRemovedSegno uint64
	removedSegments  atomic.Uint64

	// byNode is the last remote-consistent LSN each pageserver reported.
	reportsMu sync.Mutex
	byNode    map[uint64]nodeReport
}

type nodeReport struct {
	lsn lsn.LSN
	at  time.Time
}

// reportTTL is how long a pageserver's report holds WAL back after the
// pageserver went quiet (it reports every second while it follows the
// timeline): long enough for a restart, not forever for one that is gone.
const reportTTL = 10 * time.Minute

func (r *removalState) reported(node uint64, l lsn.LSN, now time.Time) {
	r.reportsMu.Lock()
	defer r.reportsMu.Unlock()
	if r.byNode == nil {
		r.byNode = map[uint64]nodeReport{}
	}
	r.byNode[node] = nodeReport{lsn: l, at: now}
}

// lowestReport is the lowest remote-consistent LSN among pageservers that
// reported within reportTTL, and false if none did.
func (r *removalState) lowestReport(now time.Time) (lsn.LSN, bool) {
	r.reportsMu.Lock()
	defer r.reportsMu.Unlock()
	low, ok := lsn.LSN(0), false
	for node, rep := range r.byNode {
		if now.Sub(rep.at) > reportTTL {
			delete(r.byNode, node)
			continue
		}
		if !ok || rep.lsn < low {
			low, ok = rep.lsn, true
		}
	}
	return low, ok
}

// RemovalHorizon is the LSN below which no consumer needs this timeline's WAL
// (SK §4.6): every position that bounds it is one a consumer has passed.
//
//   - the pageserver's remote-consistent LSN (persisted), so the pageserver
//     can always re-ingest from its durable point; with several pageservers
//     on the timeline (a replacement being built, tests), the lowest one any
//     of them reported in the last reportTTL, so a pageserver that restarts
//     finds the WAL after its durable point even though another one is ahead;
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
	if l, ok := t.removal.lowestReport(time.Now()); ok {
		h = min(h, l)
	}
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
