package timeline

// The read path (PS §5.5, §5.1): collect the versions of a key at an LSN
// from the newest layer down, stopping at an image or an initializing
// record, and fall through to the ancestor at the branch point for what is
// still missing.

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"strata.dev/libs/lsn"
	"strata.dev/pageserver/key"
	"strata.dev/pageserver/layer"
	"strata.dev/pageserver/value"
)

// collector gathers versions newest first.
type collector struct {
	records  []value.Versioned
	hasImage bool
	image    []byte
	imageLSN lsn.LSN
	complete bool // an image or a will_init record was reached
}

func (c *collector) visit(l lsn.LSN, v value.Value) bool {
	if v.IsImage {
		c.hasImage, c.image, c.imageLSN, c.complete = true, v.Image, l, true
		return false
	}
	c.records = append(c.records, value.Versioned{LSN: l, Record: v.Record})
	if v.WillInit() {
		c.complete = true
		return false
	}
	return true
}

// Get finds the versions of k needed to reconstruct it at at: the newest
// image at or below at (if needed) and the records above it. A key with no
// value gives an error wrapping ErrMissingKey.
func (t *Timeline) Get(ctx context.Context, k key.Key, at lsn.LSN) (value.Reconstruction, error) {
	rec := value.Reconstruction{Key: k, LSN: at}
	if t.closed.Load() {
		return rec, fmt.Errorf("read %s at %s on timeline %s: %w", k, at, t.id, ErrClosed)
	}
	if cutoff := lsn.LSN(t.gcCutoff.Load()); at < cutoff {
		return rec, fmt.Errorf("%w: key %s at LSN %s on timeline %s, GC cutoff is %s", ErrGarbageCollected, k, at, t.id, cutoff)
	}
	cached := cacheable(k)
	var commits uint64
	if cached {
		if e, ok := t.meta.get(k, at); ok {
			rec.HasImage, rec.Image, rec.ImageLSN = true, e.image, e.lsn
			return rec, nil
		}
		commits = t.commits.Load()
	}
	var c collector
	tl, l := t, at
	absent, absentAt := false, lsn.Invalid
	for {
		if tl.closed.Load() {
			return rec, fmt.Errorf("read %s at %s on ancestor %s: %w", k, l, tl.id, ErrClosed)
		}
		var err error
		absent, absentAt, err = tl.search(ctx, k, l, &c)
		if errors.Is(err, errReleased) {
			// An in-memory layer went to disk under this read: start over
			// with the current layer maps, which have its file instead.
			c, tl, l = collector{}, t, at
			continue
		}
		if err != nil {
			return rec, fmt.Errorf("read %s at %s on timeline %s: %w", k, l, tl.id, err)
		}
		if c.complete || absent || tl.ancestor == nil || !k.IsInherited() {
			break
		}
		l = min(l, tl.ancestorLSN)
		tl = tl.ancestor
	}
	if !c.complete {
		e := &MissingKeyError{Timeline: t.id, Key: k, LSN: at}
		switch {
		case absent:
			e.Detail = fmt.Sprintf("not in the image layer at %s covering it", absentAt)
		case len(c.records) > 0:
			e.Detail = fmt.Sprintf("%d records but no image or initializing record below them", len(c.records))
		}
		return rec, e
	}
	rec.HasImage, rec.Image, rec.ImageLSN = c.hasImage, c.image, c.imageLSN
	slices.Reverse(c.records)
	rec.Records = c.records
	if cached && rec.ImageOnly() {
		t.mu.Lock()
		if at >= t.last && t.commits.Load() == commits {
			t.meta.found(k, rec.Image, rec.ImageLSN)
		}
		t.mu.Unlock()
	}
	return rec, nil
}

// search collects versions of k at l from this timeline's own layers. When
// it reaches an image layer whose range holds k but that has no image of
// k, k does not exist (PS §5.1): absent is true and at is the layer's LSN.
func (t *Timeline) search(ctx context.Context, k key.Key, l lsn.LSN, c *collector) (absent bool, at lsn.LSN, err error) {
	lm := t.layers.Load()
	cont := l + 1 // versions below cont are still to be read
	if l == lsn.Max {
		cont = lsn.Max
	}
	// cont only decreases, so layers skipped once (starting at or above
	// cont, or not holding k) never need a second look.
	di, ii := 0, 0
	for {
		if err := ctx.Err(); err != nil {
			return false, 0, err
		}
		for ii < len(lm.images) && (lm.images[ii].name.ImageLSN() >= cont || !lm.images[ii].name.Keys.Contains(k)) {
			ii++
		}
		for di < len(lm.deltas) && (lm.deltas[di].lsnRange().Start >= cont || !lm.deltas[di].keyRange().Contains(k)) {
			di++
		}
		var img *historic
		floor := lsn.LSN(0)
		if ii < len(lm.images) {
			img = lm.images[ii]
			floor = img.name.ImageLSN() + 1
		}
		if di < len(lm.deltas) {
			d := lm.deltas[di]
			r := layer.LSNRange{Start: max(d.lsnRange().Start, floor), End: min(d.lsnRange().End, cont)}
			if !r.IsEmpty() {
				// The delta has versions above the image (if any): read
				// them first.
				if err := d.get(k, r, c.visit); err != nil {
					return false, 0, err
				}
				if c.complete {
					return false, 0, nil
				}
				cont = r.Start
				continue
			}
		}
		if img == nil {
			return false, 0, nil
		}
		b, found, err := img.getImage(k)
		if err != nil {
			return false, 0, err
		}
		if !found {
			return true, img.name.ImageLSN(), nil
		}
		c.visit(img.name.ImageLSN(), value.NewImage(b))
		return false, 0, nil
	}
}
