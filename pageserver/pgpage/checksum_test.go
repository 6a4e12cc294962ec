package pgpage

import (
	"encoding/binary"
	"math/rand/v2"
	"strings"
	"testing"
)

// Pages whose checksums real PostgreSQL 15 computed: each was written into
// a relation file of a stopped cluster with pd_checksum 0, and
// pg_checksums --check reported "calculated checksum %X". Real pages are
// checked in strata.dev/test/pgpage.
func TestChecksumKnownAnswers(t *testing.T) {
	pattern := make([]byte, BlockSize)
	for i := range pattern {
		pattern[i] = byte(i*31 + 7)
	}
	ones := make([]byte, BlockSize)
	for i := range ones {
		ones[i] = 0xff
	}
	// An initialised empty page (PageInit): pd_lower = pd_upper - header
	// size, pd_upper = pd_special = BlockSize, pd_pagesize_version 8192|4.
	empty := make([]byte, BlockSize)
	binary.LittleEndian.PutUint16(empty[12:], 24)
	binary.LittleEndian.PutUint16(empty[14:], 8192)
	binary.LittleEndian.PutUint16(empty[16:], 8192)
	binary.LittleEndian.PutUint16(empty[18:], 8196)

	for _, tc := range []struct {
		name  string
		page  []byte
		blkno uint32
		want  uint16
	}{
		{"pattern", pattern, 0, 0xC7E8},
		{"pattern", pattern, 5, 0xC7ED},
		{"pattern", pattern, 3*131072 + 1, 0xC7E7}, // block 1 of segment file .3
		{"ones", ones, 0, 0x0E1C},
		{"empty", empty, 7, 0x655D},
	} {
		if got := Checksum(tc.page, tc.blkno); got != tc.want {
			t.Errorf("%s page, block %d: Checksum = %#04x, PostgreSQL computed %#04x", tc.name, tc.blkno, got, tc.want)
		}
	}
}

// referenceChecksum is pg_checksum_page written as PostgreSQL writes it:
// a copy of the page with pd_checksum zeroed, as a 64×32 array of words
// summed row by row.
func referenceChecksum(page []byte, blkno uint32) uint16 {
	p := append([]byte(nil), page...)
	p[8], p[9] = 0, 0
	sums := checksumBaseOffsets
	for i := 0; i < BlockSize/rowBytes; i++ {
		for j := 0; j < nSums; j++ {
			sums[j] = mix(sums[j], binary.LittleEndian.Uint32(p[i*rowBytes+4*j:]))
		}
	}
	var result uint32
	for i := 0; i < 2; i++ {
		for j := range sums {
			sums[j] = mix(sums[j], 0)
		}
	}
	for _, s := range sums {
		result ^= s
	}
	result ^= blkno
	return uint16(result%65535 + 1)
}

func randomPage(r *rand.Rand) []byte {
	page := make([]byte, BlockSize)
	for i := 0; i < BlockSize; i += 8 {
		binary.LittleEndian.PutUint64(page[i:], r.Uint64())
	}
	return page
}

// The eight-columns-at-a-time loop computes the same as the plain one.
func TestChecksumMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 200; i++ {
		page := randomPage(r)
		blkno := r.Uint32()
		if got, want := Checksum(page, blkno), referenceChecksum(page, blkno); got != want {
			t.Fatalf("page %d, block %d: Checksum = %#04x, reference %#04x", i, blkno, got, want)
		}
	}
}

func TestChecksumIgnoresStoredChecksum(t *testing.T) {
	page := randomPage(rand.New(rand.NewPCG(3, 4)))
	before := append([]byte(nil), page...)
	want := Checksum(page, 9)
	for _, stored := range []uint16{0, 1, 0xabcd, 0xffff} {
		binary.LittleEndian.PutUint16(page[8:], stored)
		if got := Checksum(page, 9); got != want {
			t.Fatalf("with pd_checksum %#04x: Checksum = %#04x, want %#04x", stored, got, want)
		}
	}
	binary.LittleEndian.PutUint16(page[8:], binary.LittleEndian.Uint16(before[8:]))
	if string(page) != string(before) {
		t.Fatal("Checksum modified the page")
	}
	// pd_flags shares a word with pd_checksum but is summed.
	page[10] ^= 1
	if Checksum(page, 9) == want {
		t.Fatal("Checksum ignores pd_flags")
	}
}

func TestSetChecksum(t *testing.T) {
	page := randomPage(rand.New(rand.NewPCG(5, 6)))
	binary.LittleEndian.PutUint16(page[upperOffset:], 4096) // not new
	const blkno = 42
	if err := SetChecksum(page, blkno); err != nil {
		t.Fatal(err)
	}
	first := StoredChecksum(page)
	if first != Checksum(page, blkno) || first != referenceChecksum(page, blkno) {
		t.Fatalf("stored %#04x, Checksum %#04x", first, Checksum(page, blkno))
	}

	// A changed byte anywhere, even the last, changes the checksum, and
	// SetChecksum stores the new one.
	page[BlockSize-1] ^= 0x80
	if Checksum(page, blkno) == first {
		t.Fatal("checksum unchanged after a byte changed")
	}
	if err := SetChecksum(page, blkno); err != nil {
		t.Fatal(err)
	}
	if second := StoredChecksum(page); second == first || second != Checksum(page, blkno) {
		t.Fatalf("after the change: stored %#04x, first %#04x, Checksum %#04x", second, first, Checksum(page, blkno))
	}

	// The same page as another block has another checksum.
	if Checksum(page, blkno) == Checksum(page, blkno+1) {
		t.Fatal("checksum does not depend on the block number")
	}
}

func TestSetChecksumLeavesNewPagesAlone(t *testing.T) {
	zero := make([]byte, BlockSize)
	if !IsNew(zero) {
		t.Fatal("an all-zero page is not new")
	}
	if err := SetChecksum(zero, 3); err != nil {
		t.Fatal(err)
	}
	for i, b := range zero {
		if b != 0 {
			t.Fatalf("SetChecksum wrote byte %d of a new page", i)
		}
	}
}

func TestWrongPageSize(t *testing.T) {
	for _, n := range []int{0, 16, BlockSize - 1, BlockSize + 1, 2 * BlockSize} {
		page := make([]byte, n)
		for i := range page {
			page[i] = 0x11
		}
		if got := Checksum(page, 0); got != 0 {
			t.Errorf("Checksum of %d bytes = %#04x, want 0", n, got)
		}
		err := SetChecksum(page, 0)
		if err == nil || !strings.Contains(err.Error(), "want 8192") {
			t.Errorf("SetChecksum of %d bytes: err = %v", n, err)
		}
		for i, b := range page {
			if b != 0x11 {
				t.Fatalf("SetChecksum of %d bytes wrote byte %d", n, i)
			}
		}
	}
}

var sink uint16

func BenchmarkChecksum(b *testing.B) {
	page := randomPage(rand.New(rand.NewPCG(7, 8)))
	b.SetBytes(BlockSize)
	for b.Loop() {
		sink ^= Checksum(page, 1)
	}
}
