package timeline

// The layer map is an immutable snapshot of a timeline's layers. Readers
// load the current snapshot with one atomic load and search it without
// locks; whoever changes the set of layers (freeze, flush, compaction)
// builds a new snapshot under Timeline.mu and swaps it in. Layers stay
// usable by readers holding an older snapshot: nothing deletes a layer
// file while the timeline is open (GC will need reference counts).
//
// Invariants of a snapshot:
//   - deltas is every delta-like layer (open, frozen, historic deltas),
//     sorted by LSN start descending; their LSN ranges do not overlap
//     (flushes produce consecutive L0 ranges; there is no L0→L1
//     compaction yet), so the first one whose range starts below an LSN
//     is the newest below it;
//   - images is every image layer, sorted by LSN descending.

import (
	"fmt"
	"slices"
	"sync"

	"strata.dev/libs/lsn"
	"strata.dev/pageserver/key"
	"strata.dev/pageserver/layer"
	"strata.dev/pageserver/value"
)

// deltaSource is a layer holding versions of keys over an LSN range.
type deltaSource interface {
	lsnRange() layer.LSNRange
	keyRange() key.Range
	get(k key.Key, r layer.LSNRange, fn func(lsn.LSN, value.Value) bool) error
}

// memRef is an in-memory layer with the LSN range it covers in one
// snapshot: [start, ∞) while open, [start, end) once frozen.
type memRef struct {
	mem  *memLayer
	lsns layer.LSNRange
	prev lsn.LSN // prev_record_lsn at the freeze, for the metadata
}

func (r *memRef) lsnRange() layer.LSNRange { return r.lsns }
func (r *memRef) keyRange() key.Range      { return key.Full }
func (r *memRef) get(k key.Key, rng layer.LSNRange, fn func(lsn.LSN, value.Value) bool) error {
	return r.mem.get(k, rng, fn)
}

// historic is a layer file, opened on first use.
type historic struct {
	name  layer.Name
	path  string
	size  int64
	cache *layer.BlockCache // reads' blocks go through it (nil: none)

	once  sync.Once
	delta *layer.Delta
	image *layer.Image
	err   error
}

func (h *historic) open() error {
	h.once.Do(func() {
		var n layer.Name
		if h.name.Kind == layer.KindDelta {
			if h.delta, h.err = layer.OpenDelta(h.path); h.err == nil {
				n = h.delta.Name()
			}
		} else {
			if h.image, h.err = layer.OpenImage(h.path); h.err == nil {
				n = h.image.Name()
			}
		}
		if h.err == nil && n != h.name {
			h.close()
			h.err = &layer.CorruptError{Path: h.path, Reason: fmt.Sprintf("header says %s", n)}
		}
		if h.err == nil && h.cache != nil {
			if h.delta != nil {
				h.delta.UseCache(h.cache)
			} else {
				h.image.UseCache(h.cache)
			}
		}
	})
	return h.err
}

func (h *historic) close() {
	if h.delta != nil {
		h.delta.Close()
	}
	if h.image != nil {
		h.image.Close()
	}
}

func (h *historic) lsnRange() layer.LSNRange { return h.name.LSNs }
func (h *historic) keyRange() key.Range      { return h.name.Keys }
func (h *historic) get(k key.Key, r layer.LSNRange, fn func(lsn.LSN, value.Value) bool) error {
	if err := h.open(); err != nil {
		return err
	}
	return h.delta.Get(k, r, fn)
}

// getImage returns the image of k; found is false when k does not exist.
func (h *historic) getImage(k key.Key) ([]byte, bool, error) {
	if err := h.open(); err != nil {
		return nil, false, err
	}
	return h.image.Get(k)
}

type layerMap struct {
	open     *memRef
	frozen   []*memRef // newest first
	historic []*historic
	deltas   []deltaSource // open, frozen, historic deltas: LSN start descending
	images   []*historic   // LSN descending
}

// newLayerMap builds a snapshot and its search order.
func newLayerMap(open *memRef, frozen []*memRef, hist []*historic) *layerMap {
	lm := &layerMap{open: open, frozen: frozen, historic: hist}
	lm.deltas = append(lm.deltas, open)
	for _, f := range frozen {
		lm.deltas = append(lm.deltas, f)
	}
	var deltas []*historic
	for _, h := range hist {
		if h.name.Kind == layer.KindDelta {
			deltas = append(deltas, h)
		} else {
			lm.images = append(lm.images, h)
		}
	}
	slices.SortFunc(deltas, func(a, b *historic) int { return -cmpLSN(a.name.LSNs.Start, b.name.LSNs.Start) })
	for _, d := range deltas {
		lm.deltas = append(lm.deltas, d)
	}
	slices.SortFunc(lm.images, func(a, b *historic) int { return -cmpLSN(a.name.LSNs.Start, b.name.LSNs.Start) })
	return lm
}

func cmpLSN(a, b lsn.LSN) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// withFreeze is lm with its open layer frozen at end and a new open layer.
func (lm *layerMap) withFreeze(end, prev lsn.LSN) *layerMap {
	frozen := &memRef{mem: lm.open.mem, lsns: layer.LSNRange{Start: lm.open.lsns.Start, End: end}, prev: prev}
	open := &memRef{mem: newMemLayer(lm.open.mem.pool), lsns: layer.LSNRange{Start: end, End: lsn.Max}}
	return newLayerMap(open, append([]*memRef{frozen}, lm.frozen...), lm.historic)
}

// withFlushed is lm with frozen layer f replaced by h (nil if f was empty).
func (lm *layerMap) withFlushed(f *memRef, h *historic) *layerMap {
	frozen := slices.DeleteFunc(slices.Clone(lm.frozen), func(x *memRef) bool { return x == f })
	hist := slices.Clone(lm.historic)
	if h != nil {
		hist = append(hist, h)
	}
	return newLayerMap(lm.open, frozen, hist)
}

// withHistoric is lm with h added.
func (lm *layerMap) withHistoric(h *historic) *layerMap {
	return newLayerMap(lm.open, lm.frozen, append(slices.Clone(lm.historic), h))
}

// has reports whether a layer file of that name is in the map.
func (lm *layerMap) has(n layer.Name) bool {
	for _, h := range lm.historic {
		if h.name == n {
			return true
		}
	}
	return false
}
