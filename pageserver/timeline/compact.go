package timeline

// Image compaction (PS §5.3, image part): where image_threshold delta
// layers lie above the newest image layer of a part of the live key space,
// materialise every live key of that part at last_record_lsn into a new
// image layer. Reads then stop at the image instead of walking the deltas.
//
// Later work: L0→L1 compaction (merging L0 deltas into key-partitioned L1
// deltas), GC of layers covered by newer images, sparse key ranges.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"

	"strata.dev/libs/lsn"
	"strata.dev/pageserver/key"
	"strata.dev/pageserver/layer"
	"strata.dev/pageserver/pgpage"
)

// sparseRange is the part of the key space (PS §1.2) whose keys are not
// dense; image layers never cover it yet.
var sparseRange = key.Range{Start: key.Key{Field1: 0x60}, End: key.Key{Field1: 0x7F}}

// maxPartitions bounds the work of one Compact: a key space this large is
// a caller bug (a range that is not dense).
const maxPartitions = 1 << 20

// Compact writes image layers at last_record_lsn for the parts of the live
// key space (from keyspace) that have at least ImageThreshold delta layers
// above their newest image. It runs one at a time per timeline.
func (t *Timeline) Compact(ctx context.Context, keyspace KeySpaceFunc) error {
	if t.opts.Reconstructor == nil {
		return fmt.Errorf("compact timeline %s: no Reconstructor", t.id)
	}
	t.compactMu.Lock()
	defer t.compactMu.Unlock()
	if t.closed.Load() {
		return fmt.Errorf("compact timeline %s: %w", t.id, ErrClosed)
	}
	if err := t.Broken(); err != nil {
		return err
	}
	t.mu.Lock()
	at, importing := t.last, t.importingLocked()
	t.mu.Unlock()
	// The pass is decided on the layers as they are now: a layer that
	// comes while it runs gets the next pass.
	start := t.layers.Load()
	if start == t.compacted {
		// Nothing frozen, flushed or compacted since the last pass: skip
		// computing the key space, which reads every relation directory,
		// on each tick of an idle timeline.
		return nil
	}
	if importing {
		// More values may still arrive at InitDBLSN: an image now would
		// hide them.
		return nil
	}
	ranges, err := keyspace(ctx, at)
	if err != nil {
		return fmt.Errorf("compact timeline %s: key space at %s: %w", t.id, at, err)
	}
	parts, err := partitionKeySpace(normalizeKeySpace(ranges), max(t.opts.CompactionTargetSize/pgpage.BlockSize, 1))
	if err != nil {
		return fmt.Errorf("compact timeline %s: %w", t.id, err)
	}
	for _, p := range parts {
		lm := t.layers.Load()
		if !needsImage(lm, p.keys, at, t.opts.ImageThreshold) || lm.has(layer.ImageName(p.keys, at)) {
			continue
		}
		h, err := t.writeImage(ctx, p, at)
		if err != nil {
			return fmt.Errorf("compact timeline %s: %w", t.id, err)
		}
		t.mu.Lock()
		t.layers.Store(t.layers.Load().withHistoric(h))
		t.mu.Unlock()
		t.log.Info().Str("layer", h.name.String()).Int64("bytes", h.size).Msg("created image layer")
	}
	// An image made here changed the map since start: the next pass looks
	// again, finds nothing to do and then skips.
	t.compacted = start
	return nil
}

// needsImage reports whether threshold delta layers overlapping r lie
// above the newest image layer covering all of r.
func needsImage(lm *layerMap, r key.Range, at lsn.LSN, threshold int) bool {
	has, imgLSN := false, lsn.LSN(0)
	for _, im := range lm.images { // newest first
		if !r.Start.Less(im.name.Keys.Start) && !im.name.Keys.End.Less(r.End) {
			has, imgLSN = true, im.name.ImageLSN()
			break
		}
	}
	if has && imgLSN >= at {
		return false
	}
	n := 0
	for _, h := range lm.historic {
		if h.name.Kind == layer.KindDelta && h.name.Keys.Overlaps(r) && (!has || h.name.LSNs.End-1 > imgLSN) {
			n++
		}
	}
	return n >= threshold
}

// writeImage materialises every key of p at at.
func (t *Timeline) writeImage(ctx context.Context, p partition, at lsn.LSN) (*historic, error) {
	w, err := layer.NewImageWriter(t.dir, t.id, p.keys, at, layer.WriterOptions{CreateFile: t.opts.createFile})
	if err != nil {
		return nil, err
	}
	page := make([]byte, pgpage.BlockSize) // where redo builds each page; Add copies it
	for _, r := range p.ranges {
		for k := r.Start; k.Less(r.End); k = k.Next() {
			img, err := t.materialise(ctx, k, at, page)
			if errors.Is(err, ErrMissingKey) {
				// Omitted from the image layer, the key stays missing.
				t.log.Warn().Err(err).Msg("key of the live key space has no value")
				continue
			}
			if err == nil {
				err = w.Add(k, img)
			}
			if err != nil {
				w.Abort()
				return nil, err
			}
		}
	}
	path, err := w.Finish()
	if err != nil {
		return nil, err
	}
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("stat new layer: %w", err)
	}
	return &historic{name: layer.ImageName(p.keys, at), path: path, size: st.Size(), cache: t.opts.BlockCache}, nil
}

// materialise returns k's value at at, rebuilt in into if it needs redo.
func (t *Timeline) materialise(ctx context.Context, k key.Key, at lsn.LSN, into []byte) ([]byte, error) {
	rec, err := t.Get(ctx, k, at)
	if err != nil {
		return nil, err
	}
	if rec.ImageOnly() {
		return rec.Image, nil
	}
	rec.Into = into
	img, err := t.opts.Reconstructor.Reconstruct(ctx, rec)
	if err != nil {
		return nil, fmt.Errorf("reconstruct %s at %s: %w", k, at, err)
	}
	return img, nil
}

// normalizeKeySpace sorts and merges ranges and cuts the sparse part out.
func normalizeKeySpace(ranges []key.Range) []key.Range {
	var rs []key.Range
	for _, r := range ranges {
		// Split around the sparse range.
		if r.Start.Less(sparseRange.Start) {
			rs = append(rs, key.Range{Start: r.Start, End: minKey(r.End, sparseRange.Start)})
		}
		if sparseRange.End.Less(r.End) {
			rs = append(rs, key.Range{Start: maxKey(r.Start, sparseRange.End), End: r.End})
		}
	}
	rs = slices.DeleteFunc(rs, key.Range.IsEmpty)
	slices.SortFunc(rs, func(a, b key.Range) int { return a.Start.Compare(b.Start) })
	var out []key.Range
	for _, r := range rs {
		if n := len(out); n > 0 && !out[n-1].End.Less(r.Start) {
			out[n-1].End = maxKey(out[n-1].End, r.End)
			continue
		}
		out = append(out, r)
	}
	return out
}

func minKey(a, b key.Key) key.Key {
	if a.Less(b) {
		return a
	}
	return b
}

func maxKey(a, b key.Key) key.Key {
	if a.Less(b) {
		return b
	}
	return a
}

// partition is a part of the live key space that gets one image layer
// covering keys; ranges are its live keys.
type partition struct {
	keys   key.Range
	ranges []key.Range
}

// partitionKeySpace cuts sorted, merged, dense ranges into partitions of
// at most target keys. A partition never spans the sparse range, so its
// image layer never claims sparse keys do not exist.
func partitionKeySpace(ranges []key.Range, target uint64) ([]partition, error) {
	var parts []partition
	var cur partition
	var n uint64
	emit := func() {
		if len(cur.ranges) > 0 {
			cur.keys = key.Range{Start: cur.ranges[0].Start, End: cur.ranges[len(cur.ranges)-1].End}
			parts = append(parts, cur)
		}
		cur, n = partition{}, 0
	}
	for _, r := range ranges {
		if !r.Start.Less(sparseRange.Start) && len(cur.ranges) > 0 && cur.ranges[0].Start.Less(sparseRange.Start) {
			emit()
		}
		for !r.IsEmpty() {
			end, taken := advanceKeys(r.Start, r.End, target-n)
			cur.ranges = append(cur.ranges, key.Range{Start: r.Start, End: end})
			n += taken
			r.Start = end
			if n == target {
				emit()
				if len(parts) > maxPartitions {
					return nil, fmt.Errorf("live key space has over %d×%d keys: a range is not dense?", maxPartitions, target)
				}
			}
		}
	}
	emit()
	return parts, nil
}

// advanceKeys returns the key n keys after start, or end if that comes
// first, and how many keys it moved over. Keys are counted in rows of
// 2^32 (Field6), so this is quick however far apart start and end are.
func advanceKeys(start, end key.Key, n uint64) (key.Key, uint64) {
	var moved uint64
	for n > 0 && start.Less(end) {
		rowEnd := start
		rowEnd.Field6 = 0xFFFFFFFF
		if sameRow(start, end) {
			d := min(uint64(end.Field6-start.Field6), n)
			start.Field6 += uint32(d)
			return start, moved + d
		}
		left := uint64(rowEnd.Field6-start.Field6) + 1 // keys to the end of the row
		if n < left {
			start.Field6 += uint32(n)
			return start, moved + n
		}
		n -= left
		moved += left
		start = rowEnd.Next()
		if start == key.Min { // wrapped past Max
			return end, moved
		}
	}
	return start, moved
}

func sameRow(a, b key.Key) bool {
	a.Field6, b.Field6 = 0, 0
	return a == b
}
