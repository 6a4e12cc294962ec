package pagecheck

import (
	"bytes"
	"encoding/binary"
	"slices"
	"testing"

	"strata.dev/pageserver/key"
)

func TestSampleBlocks(t *testing.T) {
	for _, c := range []struct {
		n    uint32
		per  int
		want []uint32
	}{
		{0, 20, []uint32{}},
		{3, 0, []uint32{0, 1, 2}},
		{3, 20, []uint32{0, 1, 2}},
		{5, 5, []uint32{0, 1, 2, 3, 4}},
		{6, 5, []uint32{0, 1, 2, 3, 5}},
		{100, 1, []uint32{0}},
		{100, 2, []uint32{0, 99}},
		{101, 5, []uint32{0, 25, 50, 75, 100}},
	} {
		if got := sampleBlocks(c.n, c.per); !slices.Equal(got, c.want) {
			t.Errorf("sampleBlocks(%d, %d) = %v, want %v", c.n, c.per, got, c.want)
		}
	}
}

// An SP-GiST metapage's last-used-pages cache is masked; the same bytes
// of another page are not.
func TestMaskSpGistMeta(t *testing.T) {
	le := binary.LittleEndian
	meta := func(cache byte) []byte {
		p := make([]byte, BlockSize)
		le.PutUint16(p[12:], 92)          // pd_lower: after SpGistMetaPageData
		le.PutUint16(p[14:], BlockSize-8) // pd_upper
		le.PutUint16(p[16:], BlockSize-8) // pd_special
		le.PutUint32(p[24:], 0xBA0BABEE)  // SPGIST_MAGIC_NUMBER
		p[28], p[91] = cache, cache       // lastUsedPages
		le.PutUint16(p[BlockSize-8:], 1)  // SPGIST_META
		le.PutUint16(p[BlockSize-2:], 0xFF82)
		return p
	}
	a, b := MaskPage(meta(1), key.ForkMain), MaskPage(meta(2), key.ForkMain)
	if !bytes.Equal(a, b) {
		t.Errorf("metapages differing in their cache differ at byte %d after masking", FirstDiff(a, b))
	}
	other := meta(1)
	le.PutUint16(other[BlockSize-2:], 0xFF81) // not SP-GiST
	if m := MaskPage(other, key.ForkMain); m[28] != 1 {
		t.Error("non-SP-GiST page masked as a metapage")
	}
}
