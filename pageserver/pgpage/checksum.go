package pgpage

// The data page checksum of PostgreSQL 15 (src/include/storage/
// checksum_impl.h). The page is read as a 64-row × 32-column array of
// 32-bit words; each column is folded into its own FNV-1a-like sum
//
//	tmp = sum ^ word; sum = tmp*fnvPrime ^ tmp>>17
//
// starting from that column's base offset, then every sum gets two more
// rounds with the word 0, and the 32 sums are XORed together. The result
// is XORed with the block number (so a page written at the wrong place
// fails) and reduced to 1..65535. The word holding pd_checksum counts as if
// pd_checksum were 0.
//
// Speed: this runs on every page the pageserver hands out. PostgreSQL relies
// on the C compiler to vectorise the 32 columns; Go does not vectorise, so
// the columns are processed eight at a time, each group's sums held in
// locals: eight independent multiply chains keep the multiplier busy, which
// is the bound for a scalar loop. The column order changes nothing in the
// result, since the columns never mix before the final XOR.

import (
	"encoding/binary"
	"fmt"
)

const (
	nSums    = 32        // N_SUMS: columns summed in parallel; part of the algorithm
	fnvPrime = 16777619  // FNV_PRIME
	rowBytes = nSums * 4 // one row of 32 words
	groupLen = 8         // columns per pass, see the file comment
)

// checksumBaseOffsets are the sums' starting values (read only), PostgreSQL's
// checksumBaseOffsets.
var checksumBaseOffsets = [nSums]uint32{
	0x5B1F36E9, 0xB8525960, 0x02AB50AA, 0x1DE66D2A,
	0x79FF467A, 0x9BB9F8A3, 0x217E7CD2, 0x83E13D2C,
	0xF8D4474F, 0xE39EB970, 0x42C6AE16, 0x993216FA,
	0x7B093B5D, 0x98DAFF3C, 0xF718902A, 0x0B1C9CDB,
	0xE58F764B, 0x187636BC, 0x5D7B3BB1, 0xE73DE7DE,
	0x92BEC979, 0xCCA6C0B2, 0x304A0979, 0x85AA43D4,
	0x783125BB, 0x6CA8EAA2, 0xE407EAC6, 0x4B5CFC3E,
	0x9FBF8C76, 0x15CA20BE, 0xF2CA9FD3, 0x959BD756,
}

// Checksum returns pd_checksum for an 8192-byte page stored as block blkno
// of its relation fork (PostgreSQL's pg_checksum_page). The page's own
// pd_checksum field (bytes 8-9) is ignored and page is not modified.
//
// Callers pass BlockSize pages. For a page of any other length Checksum
// returns 0, which is never a valid checksum (they are 1..65535), so a
// comparison with a stored checksum fails instead of passing. A new page
// (IsNew) has no checksum; Checksum computes one anyway, as PostgreSQL's
// function would.
func Checksum(page []byte, blkno uint32) uint16 {
	if len(page) != BlockSize {
		return 0
	}
	sum := checksumBlock(page) ^ blkno
	return uint16(sum%65535 + 1)
}

// SetChecksum computes and stores pd_checksum (little endian, bytes 8-9) in
// page, unless the page is new (pd_upper == 0), which PostgreSQL leaves
// without a checksum (PageSetChecksumInplace). It fails only if page is not
// BlockSize bytes long, and then leaves it alone.
func SetChecksum(page []byte, blkno uint32) error {
	if len(page) != BlockSize {
		return fmt.Errorf("pgpage: set checksum of block %d: page is %d bytes, want %d", blkno, len(page), BlockSize)
	}
	if IsNew(page) {
		return nil
	}
	binary.LittleEndian.PutUint16(page[checksumOffset:], Checksum(page, blkno))
	return nil
}

// mix is CHECKSUM_COMP: one round of a column's sum.
func mix(sum, word uint32) uint32 {
	tmp := sum ^ word
	return tmp*fnvPrime ^ tmp>>17
}

// finish is the two closing rounds with the word 0.
func finish(sum uint32) uint32 {
	return mix(mix(sum, 0), 0)
}

// checksumBlock is pg_checksum_block on a page whose pd_checksum reads as
// 0. page is BlockSize bytes long.
func checksumBlock(page []byte) uint32 {
	page = page[:BlockSize]
	var result uint32
	for g := 0; g < nSums; g += groupLen {
		b := checksumBaseOffsets[g : g+groupLen : g+groupLen]
		s0, s1, s2, s3, s4, s5, s6, s7 := b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]
		for off := 4 * g; off < BlockSize; off += rowBytes {
			w := page[off : off+4*groupLen : off+4*groupLen]
			w2 := binary.LittleEndian.Uint32(w[8:])
			if off == 0 {
				// Bytes 8-11 of the page: pd_checksum (low half on a
				// little-endian page) and pd_flags.
				w2 &^= 0xffff
			}
			s0 = mix(s0, binary.LittleEndian.Uint32(w[0:]))
			s1 = mix(s1, binary.LittleEndian.Uint32(w[4:]))
			s2 = mix(s2, w2)
			s3 = mix(s3, binary.LittleEndian.Uint32(w[12:]))
			s4 = mix(s4, binary.LittleEndian.Uint32(w[16:]))
			s5 = mix(s5, binary.LittleEndian.Uint32(w[20:]))
			s6 = mix(s6, binary.LittleEndian.Uint32(w[24:]))
			s7 = mix(s7, binary.LittleEndian.Uint32(w[28:]))
		}
		result ^= finish(s0) ^ finish(s1) ^ finish(s2) ^ finish(s3) ^
			finish(s4) ^ finish(s5) ^ finish(s6) ^ finish(s7)
	}
	return result
}
