package timeline

// The metadata cache: the newest committed value of every metadata key
// (relation sizes, directories, SLRU segment sizes ...: everything but
// page and SLRU blocks), so that the reads every GetPage and basebackup
// make first — a relation's size above all — cost a map lookup instead of
// a layer search and a block read (Neon keeps a relation-size cache for
// the same reason).
//
// An entry (L, v) says: v was committed at L, and nothing newer has been.
// Commit stores every metadata image it adds (and drops the key when a
// record lands on it), under t.mu, so an entry answers every read at LSN
// ≥ L (reads never go past last_record_lsn). A read at a lower LSN
// searches the layers as before. A read that had to search stores what it
// found only if it read at last_record_lsn or above and no Commit ran
// during its search (t.commits unchanged): only then is the version known
// to be the newest. The cache holds this timeline's values, found in its
// own layers or its ancestor's; it is never written to disk.

import (
	"bytes"
	"sync"

	"strata.dev/libs/lsn"
	"strata.dev/pageserver/key"
	"strata.dev/pageserver/value"
)

type metaEntry struct {
	lsn   lsn.LSN
	image []byte // shared with readers: never modified
}

type metaCache struct {
	m sync.Map // key.Key → *metaEntry
}

// cacheable reports whether k's values go through the cache.
func cacheable(k key.Key) bool { return !k.IsData() }

// get returns the newest value of k if it answers a read at at.
func (c *metaCache) get(k key.Key, at lsn.LSN) (*metaEntry, bool) {
	v, ok := c.m.Load(k)
	if !ok {
		return nil, false
	}
	e := v.(*metaEntry)
	return e, e.lsn <= at
}

// committed records a Commit's metadata values: an image becomes its
// key's entry unless the entry is newer (a Commit's entries need not be in
// LSN order); a record on top makes the key uncached. Called under t.mu.
func (c *metaCache) committed(entries []value.Entry) {
	for _, e := range entries {
		if !cacheable(e.Key) {
			continue
		}
		if !e.Value.IsImage {
			c.m.Delete(e.Key)
			continue
		}
		if old, ok := c.m.Load(e.Key); ok && old.(*metaEntry).lsn > e.LSN {
			continue
		}
		c.m.Store(e.Key, &metaEntry{lsn: e.LSN, image: bytes.Clone(e.Value.Image)})
	}
}

// found records the version set at `at` that a read found, when that read
// searched at or above last_record_lsn and no Commit ran meanwhile: the
// version is then the newest. Called under t.mu.
func (c *metaCache) found(k key.Key, image []byte, at lsn.LSN) {
	c.m.Store(k, &metaEntry{lsn: at, image: bytes.Clone(image)})
}
