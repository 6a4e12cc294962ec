package timeline

import (
	"context"
	"encoding/binary"
	"sync"
	"testing"

	"strata.dev/libs/lsn"
	"strata.dev/pageserver/key"
	"strata.dev/pageserver/value"
)

// Reads of a metadata key answer from the cache only when that is right:
// at the newest version or above, never for an older LSN, and a record on
// top of the cached image makes the key uncached again.
func TestMetaCache(t *testing.T) {
	tl, err := Create(tlDir(t.TempDir(), 1), testOptions(t, 1))
	if err != nil {
		t.Fatal(err)
	}
	defer tl.Close()
	size := key.RelSize(rel(7))
	mustCommit(t, tl, 0x100, ent(size, 0x100, img("a")))
	mustFlush(t, tl) // "a" only in a layer file: the first read searches
	mustRead(t, tl, size, 0x100, "a")
	if _, ok := tl.meta.get(size, 0x100); !ok {
		t.Error("a read at the last record did not fill the cache")
	}
	// Two versions in one Commit, out of LSN order: the newer wins.
	mustCommit(t, tl, 0x200, ent(size, 0x1F0, img("c")), ent(size, 0x180, img("b")))
	mustRead(t, tl, size, 0x200, "c")
	mustRead(t, tl, size, 0x1F0, "c")
	mustRead(t, tl, size, 0x1EF, "b")
	mustRead(t, tl, size, 0x17F, "a")
	// A historical read does not replace the newest entry.
	mustRead(t, tl, size, 0x200, "c")
	// A record on top: the value is rebuilt, not the stale image.
	mustCommit(t, tl, 0x300, ent(size, 0x280, rec("+")))
	mustRead(t, tl, size, 0x300, "c+")
	if _, ok := tl.meta.get(size, 0x300); ok {
		t.Error("a key with a record on top is still cached")
	}
	// Data keys never go through the cache.
	mustCommit(t, tl, 0x400, ent(blk(7, 0), 0x400, img("page")))
	mustRead(t, tl, blk(7, 0), 0x400, "page")
	if _, ok := tl.meta.m.Load(blk(7, 0)); ok {
		t.Error("a page was cached")
	}
}

// Under concurrent Commits, a read at the last record LSN it saw always
// gets the version committed at that LSN, and reads at older LSNs theirs.
func TestMetaCacheConcurrent(t *testing.T) {
	tl, err := Create(tlDir(t.TempDir(), 1), testOptions(t, 1))
	if err != nil {
		t.Fatal(err)
	}
	defer tl.Close()
	k := key.RelSize(rel(9))
	enc := func(l lsn.LSN) value.Value { return value.NewImage(binary.LittleEndian.AppendUint64(nil, uint64(l))) }
	mustCommit(t, tl, 0x100, ent(k, 0x100, enc(0x100)))
	const commits = 3000
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 1; i <= commits; i++ {
			l := lsn.LSN(0x100 + 8*i)
			if err := tl.Commit([]value.Entry{ent(k, l, enc(l))}, l, l-8); err != nil {
				t.Error(err)
				return
			}
			if i%500 == 0 {
				tl.Freeze() // some versions move to layer files
			}
		}
	})
	ctx := context.Background()
	for range 4 {
		wg.Go(func() {
			for i := 0; i < 4000; i++ {
				last, _ := tl.LastRecordLSN()
				at := last
				if i%3 == 0 {
					at = last - min(lsn.LSN(8*(i%50)), last-0x100) // an older version
				}
				r, err := tl.Get(ctx, k, at)
				if err != nil {
					t.Error(err)
					return
				}
				if got := lsn.LSN(binary.LittleEndian.Uint64(r.Image)); got != at {
					t.Errorf("read at %s (last %s): the version of %s", at, last, got)
					return
				}
			}
		})
	}
	wg.Wait()
}
