package timeline

import (
	"fmt"

	"strata.dev/libs/lsn"
	"strata.dev/pageserver/value"
)

// Commit adds entries to the open layer and moves last_record_lsn to
// lastRecord (and prev_record_lsn to prevRecord). Every entry's LSN must be
// above the current last_record_lsn (or at InitDBLSN during the initial
// import, see Create) and at most lastRecord. Invalid arguments change
// nothing; a timeline that stopped flushing refuses every Commit with the
// error that stopped it. Commit waits while too many frozen layers wait
// for the flusher.
func (t *Timeline) Commit(entries []value.Entry, lastRecord, prevRecord lsn.LSN) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	var lm *layerMap
	for {
		switch {
		case t.closed.Load():
			return fmt.Errorf("commit to timeline %s: %w", t.id, ErrClosed)
		case t.broken != nil:
			return t.broken
		}
		lm = t.layers.Load()
		if len(lm.frozen) < maxFrozen {
			break
		}
		ch := t.changed
		t.mu.Unlock()
		<-ch // a flush, Close or failure changes something
		t.mu.Lock()
	}
	if lastRecord < t.last {
		return fmt.Errorf("commit to timeline %s: last record LSN %s is below the current %s", t.id, lastRecord, t.last)
	}
	floor := t.last + 1
	if t.importingLocked() {
		floor = t.initDBLSN
	}
	for _, e := range entries {
		if e.LSN < floor || e.LSN > lastRecord {
			return fmt.Errorf("commit to timeline %s: %s@%s outside [%s, %s]", t.id, e.Key, e.LSN, floor, lastRecord)
		}
	}
	open := lm.open.mem
	open.mu.Lock()
	for _, e := range entries {
		open.put(e)
	}
	size := open.size
	open.mu.Unlock()
	t.meta.committed(entries)
	t.commits.Add(1)
	t.last, t.prev = lastRecord, prevRecord
	// The import may take many Commits at one LSN: a freeze would end it.
	full := size >= t.opts.CheckpointDistance || t.last.Sub(t.lastFreezeAt) >= t.opts.CheckpointDistance
	if full && !t.importingLocked() {
		t.freezeLocked()
	}
	t.notifyLocked()
	return nil
}

// Freeze freezes the open layer at last_record_lsn, for the background
// flusher to write out. It does nothing when nothing was committed since
// the last freeze, or when the timeline is broken or closed.
func (t *Timeline) Freeze() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.freezeLocked()
}

func (t *Timeline) freezeLocked() {
	lm := t.layers.Load()
	if t.broken != nil || t.closed.Load() || lm.open.lsns.Start > t.last {
		return
	}
	t.layers.Store(lm.withFreeze(t.last+1, t.prev))
	t.lastFreezeAt = t.last
	t.notifyLocked()
	select {
	case t.flushWake <- struct{}{}:
	default:
	}
}

// importingLocked reports whether the initial import of a root timeline
// is still open: values at InitDBLSN are accepted. t.mu is held.
func (t *Timeline) importingLocked() bool {
	return t.ancestor == nil && t.last == t.initDBLSN && t.layers.Load().open.lsns.Start == t.initDBLSN
}
