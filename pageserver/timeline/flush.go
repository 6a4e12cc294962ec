package timeline

// The flusher: one goroutine per timeline writes frozen in-memory layers,
// oldest first, to layer files, then advances disk_consistent_lsn. A
// failure stops it for good (the timeline is broken: reads go on, commits
// stop); nothing half-written is ever visible because layer files and the
// metadata are written under temporary names and renamed when complete.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"strata.dev/libs/lsn"
	"strata.dev/pageserver/key"
	"strata.dev/pageserver/layer"
	"strata.dev/pageserver/value"
)

func (t *Timeline) flushLoop() {
	defer close(t.done)
	var tick <-chan time.Time
	if t.opts.CheckpointTimeout > 0 {
		tk := time.NewTicker(min(t.opts.CheckpointTimeout/4+time.Millisecond, 10*time.Second))
		defer tk.Stop()
		tick = tk.C
	}
	for {
		select {
		case <-t.stop:
			return
		case <-t.flushWake:
		case <-tick:
			t.freezeIfOld()
		}
		t.flushFrozen()
	}
}

// freezeIfOld freezes an open layer with data older than the timeout.
func (t *Timeline) freezeIfOld() {
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.layers.Load().open.mem
	m.mu.RLock()
	old := m.entries > 0 && time.Since(m.firstPut) >= t.opts.CheckpointTimeout
	m.mu.RUnlock()
	if old && !t.importingLocked() {
		t.freezeLocked()
	}
}

func (t *Timeline) flushFrozen() {
	for {
		t.mu.Lock()
		lm, broken := t.layers.Load(), t.broken
		t.mu.Unlock()
		if broken != nil || len(lm.frozen) == 0 {
			return
		}
		f := lm.frozen[len(lm.frozen)-1]
		err := t.flushOne(f)
		if errors.Is(err, errStopped) {
			return
		}
		if err != nil {
			t.mu.Lock()
			if t.broken == nil {
				t.broken = fmt.Errorf("%w: timeline %s: flush of %s: %w", ErrBroken, t.id, f.lsns, err)
				t.notifyLocked()
			}
			t.mu.Unlock()
			t.log.Error().Err(err).Stringer("lsns", f.lsns).
				Msg("flushing stopped: the timeline keeps serving reads from memory and disk but refuses commits")
			return
		}
	}
}

// flushOne writes frozen layer f to a file, then the metadata, then
// replaces f by the file in the layer map.
func (t *Timeline) flushOne(f *memRef) error {
	began := time.Now()
	var h *historic
	size, entries := f.mem.info()
	if entries > 0 {
		path, err := t.writeFrozen(f)
		if err != nil {
			return err
		}
		st, err := os.Stat(path)
		if err != nil {
			return fmt.Errorf("stat new layer: %w", err)
		}
		n, err := layer.ParseName(filepath.Base(path))
		if err != nil {
			return err
		}
		h = &historic{name: n, path: path, size: st.Size(), cache: t.opts.BlockCache}
	}
	end := f.lsns.End - 1
	m := t.metadata()
	m.diskConsistentLSN, m.prevRecordLSN = end, f.prev
	if err := writeMetadata(t.dir, m, t.opts.createFile); err != nil {
		return err
	}
	t.mu.Lock()
	t.layers.Store(t.layers.Load().withFlushed(f, h))
	t.dcl, t.dclPrev = end, f.prev
	t.notifyLocked()
	t.mu.Unlock()
	f.mem.release()
	ev := t.log.Debug().Stringer("lsns", f.lsns).Uint64("bytes", size).Int("entries", entries).Dur("took", time.Since(began))
	if h != nil {
		ev = ev.Str("layer", filepath.Base(h.path))
	}
	ev.Msg("flushed in-memory layer")
	return nil
}

// metadata is what the metadata file says now.
func (t *Timeline) metadata() metadata {
	t.mu.Lock()
	defer t.mu.Unlock()
	m := metadata{
		diskConsistentLSN: t.dcl,
		prevRecordLSN:     t.dclPrev,
		ancestorLSN:       t.ancestorLSN,
		initDBLSN:         t.initDBLSN,
		pgVersion:         t.pgVersion,
		gcCutoff:          lsn.LSN(t.gcCutoff.Load()),
	}
	if t.ancestor != nil {
		m.ancestor = t.ancestor.id.Timeline
	}
	return m
}

// writeFrozen writes f as an L0 delta layer, or, for the initial import of
// a root timeline made only of images, as an image layer (PS §5.2).
func (t *Timeline) writeFrozen(f *memRef) (string, error) {
	wopts := layer.WriterOptions{CreateFile: t.opts.createFile}
	keys := f.mem.sortedKeys()
	f.mem.mu.RLock()
	allImages := f.mem.allImages
	f.mem.mu.RUnlock()
	var w interface {
		Finish() (string, error)
		Abort()
	}
	var add func(k key.Key, vs []memVersion) error // vs oldest first
	if t.ancestor == nil && f.lsns == (layer.LSNRange{Start: t.initDBLSN, End: t.initDBLSN + 1}) && allImages {
		iw, err := layer.NewImageWriter(t.dir, t.id, key.Full, t.initDBLSN, wopts)
		if err != nil {
			return "", err
		}
		w, add = iw, func(k key.Key, vs []memVersion) error {
			val, err := value.Decode(f.mem.bytes(vs[0])) // one version: the import's
			if err != nil {
				return err
			}
			return iw.Add(k, val.Image)
		}
	} else {
		dw, err := layer.NewDeltaWriter(t.dir, t.id, key.Full, f.lsns, wopts)
		if err != nil {
			return "", err
		}
		w, add = dw, func(k key.Key, vs []memVersion) error {
			for _, v := range vs {
				if err := dw.AddEncoded(k, v.lsn, f.mem.bytes(v)); err != nil {
					return err
				}
			}
			return nil
		}
	}
	var vs []memVersion
	for i, k := range keys {
		if i%1024 == 0 && t.stopping() {
			w.Abort()
			return "", errStopped
		}
		vs = f.mem.versions(vs[:0], k)
		if err := add(k, vs); err != nil {
			w.Abort()
			return "", err
		}
	}
	return w.Finish()
}

func (t *Timeline) stopping() bool {
	select {
	case <-t.stop:
		return true
	default:
		return false
	}
}

// Flush freezes the open layer and waits until everything committed so far
// is in layer files and disk_consistent_lsn covers it.
func (t *Timeline) Flush(ctx context.Context) error {
	t.mu.Lock()
	target := t.last
	t.freezeLocked()
	t.mu.Unlock()
	for {
		t.mu.Lock()
		lm, broken, ch := t.layers.Load(), t.broken, t.changed
		t.mu.Unlock()
		pending := lm.open.lsns.Start <= target
		for _, f := range lm.frozen {
			pending = pending || f.lsns.Start <= target
		}
		switch {
		case !pending:
			return nil
		case broken != nil:
			return broken
		case t.closed.Load():
			return fmt.Errorf("flush timeline %s: %w", t.id, ErrClosed)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("flush timeline %s: %w", t.id, ctx.Err())
		}
	}
}
