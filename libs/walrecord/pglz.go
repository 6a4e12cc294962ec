// pglz decompression, PostgreSQL's own LZ format (src/common/pg_lzcompress.c).
//
// The stream is a sequence of control bytes, each followed by up to eight
// items: a clear bit is one literal byte; a set bit is a 2- or 3-byte tag
// copying length 3..273 bytes from offset 1..4095 back in the output.
//
// Guarantees: pglzDecompress reads only src and writes only dst, for any
// input; it succeeds only if src is consumed exactly and dst filled exactly
// (pglz_decompress with check_complete, as RestoreBlockImage calls it).
package walrecord

import "fmt"

func pglzDecompress(src, dst []byte) error {
	sp, dp := 0, 0
	for sp < len(src) && dp < len(dst) {
		ctrl := src[sp]
		sp++
		for range 8 {
			if sp >= len(src) || dp >= len(dst) {
				break
			}
			if ctrl&1 == 0 {
				dst[dp] = src[sp]
				dp++
				sp++
				ctrl >>= 1
				continue
			}
			// A tag: length-3 in the low nibble of the first byte, offset in
			// its high nibble and the second byte; length nibble 0xF means a
			// third byte adds to 18.
			if sp+1 >= len(src) {
				return fmt.Errorf("tag at input byte %d runs past the end of %d bytes", sp, len(src))
			}
			n := int(src[sp]&0x0f) + 3
			off := int(src[sp]&0xf0)<<4 | int(src[sp+1])
			sp += 2
			if n == 18 {
				if sp >= len(src) {
					return fmt.Errorf("tag at input byte %d runs past the end of %d bytes", sp-2, len(src))
				}
				n += int(src[sp])
				sp++
			}
			if off == 0 || off > dp {
				return fmt.Errorf("tag at input byte %d copies from offset %d back, at output byte %d", sp, off, dp)
			}
			n = min(n, len(dst)-dp)
			// The source may overlap what is being written (a run): copy
			// the pattern in growing chunks, each a whole number of periods.
			from := dp - off
			for n > 0 {
				c := copy(dst[dp:dp+n], dst[from:dp])
				dp += c
				n -= c
			}
			ctrl >>= 1
		}
	}
	if dp != len(dst) || sp != len(src) {
		return fmt.Errorf("decompressed %d of %d input bytes to %d bytes, want %d", sp, len(src), dp, len(dst))
	}
	return nil
}
