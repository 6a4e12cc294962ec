package pagecheck_test

import (
	"bytes"
	"encoding/binary"
	"testing"

	"strata.dev/pageserver/ingest/ingesttest"
	"strata.dev/pageserver/key"
	"strata.dev/pageserver/neonredo"
	"strata.dev/pageserver/timeline"
	"strata.dev/test/pagecheck"
)

// Both stores the checks run against.
var (
	_ pagecheck.Store = (*ingesttest.MemStore)(nil)
	_ pagecheck.Store = (*timeline.Timeline)(nil)
)

// What a timeline on disk needs for compaction until the WAL-redo pool
// exists.
var _ timeline.Reconstructor = neonredo.Reconstructor{}

// heapPage is a heap page with one tuple: line pointer at 24, tuple at
// 8000 (infomask at 8020), free space between pd_lower 28 and pd_upper
// 8000 holding stale bytes.
func heapPage() []byte {
	p := make([]byte, pagecheck.BlockSize)
	le := binary.LittleEndian
	le.PutUint64(p[0:], 0xAABB)                      // pd_lsn
	le.PutUint16(p[8:], 0x1234)                      // pd_checksum
	le.PutUint16(p[10:], 0x3)                        // PD_HAS_FREE_LINES | PD_PAGE_FULL
	le.PutUint16(p[12:], 28)                         // pd_lower
	le.PutUint16(p[14:], 8000)                       // pd_upper
	le.PutUint16(p[16:], pagecheck.BlockSize)        // pd_special: none
	le.PutUint32(p[20:], 777)                        // pd_prune_xid
	le.PutUint32(p[24:], 8000|1<<15|uint32(100)<<17) // LP_NORMAL, 100 bytes
	le.PutUint16(p[8020:], 0x0D00|0x0001)            // hint bits (xmin not frozen) + HEAP_HASNULL
	p[500] = 0xEE                                    // stale free space
	return p
}

func TestMaskPage(t *testing.T) {
	page := heapPage()
	orig := bytes.Clone(page)
	m := pagecheck.MaskPage(page, key.ForkMain)
	if !bytes.Equal(page, orig) {
		t.Fatal("MaskPage modified its argument")
	}
	le := binary.LittleEndian
	for _, c := range []struct {
		what      string
		got, want uint64
	}{
		{"pd_lsn", le.Uint64(m[0:]), 0},
		{"pd_checksum", uint64(le.Uint16(m[8:])), 0},
		{"pd_flags", uint64(le.Uint16(m[10:])), 0},
		{"pd_lower", uint64(le.Uint16(m[12:])), 28},
		{"pd_prune_xid", uint64(le.Uint32(m[20:])), 0},
		{"free space", uint64(m[500]), 0},
		{"t_infomask", uint64(le.Uint16(m[8020:])), 1},
	} {
		if c.got != c.want {
			t.Errorf("%s: %#x, want %#x", c.what, c.got, c.want)
		}
	}

	// On a page with special space (an index), an LP_DEAD line pointer
	// reads as LP_NORMAL and the tuple is left alone.
	index := func(lpFlags uint32) []byte {
		p := heapPage()
		le.PutUint16(p[16:], pagecheck.BlockSize-16)
		le.PutUint32(p[24:], 8000|lpFlags<<15|uint32(100)<<17)
		return p
	}
	dead, normal := pagecheck.MaskPage(index(3), key.ForkMain), pagecheck.MaskPage(index(1), key.ForkMain)
	if !bytes.Equal(dead, normal) {
		t.Errorf("LP_DEAD and LP_NORMAL differ at %d", pagecheck.FirstDiff(dead, normal))
	}
	if got := le.Uint16(normal[8020:]); got != 0x0D01 {
		t.Errorf("index tuple masked: %#x", got)
	}

	// Once xmin is frozen only the xmax hint bits are masked (heap_mask).
	frozen := heapPage()
	le.PutUint16(frozen[8020:], 0x0F01)
	if got := le.Uint16(pagecheck.MaskPage(frozen, key.ForkMain)[8020:]); got != 0x0301 {
		t.Errorf("frozen tuple's t_infomask masked to %#x, want 0x301", got)
	}

	zero := make([]byte, pagecheck.BlockSize)
	if !bytes.Equal(pagecheck.MaskPage(zero, key.ForkMain), zero) {
		t.Error("all-zero page changed")
	}
}

func TestFirstDiff(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want int
	}{
		{"", "", 0},
		{"abc", "abc", 3},
		{"abc", "abd", 2},
		{"ab", "abc", 2},
		{"xbc", "abc", 0},
	} {
		if got := pagecheck.FirstDiff([]byte(c.a), []byte(c.b)); got != c.want {
			t.Errorf("FirstDiff(%q, %q) = %d, want %d", c.a, c.b, got, c.want)
		}
	}
}
