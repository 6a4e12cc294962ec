package walrecord

import (
	"bytes"
	"encoding/binary"
	"testing"

	"strata.dev/libs/lsn"
)

// FuzzDecode: any bytes (with xl_tot_len made to match, so the body is
// reached) decode without panicking; what decodes satisfies the invariants
// and every image either rebuilds into a page or fails cleanly.
func FuzzDecode(f *testing.F) {
	for _, rr := range loadRealRecords(f) {
		f.Add(rr.raw)
	}
	page := testPage(11, 300, 5000)
	for _, rec := range []tRecord{
		{rmid: RmXLOG},
		{rmid: RmHeap, origin: u16p(7), toplevel: 9, main: bytes.Repeat([]byte{1}, 300)},
		{rmid: RmHeap, blocks: []tBlock{
			{id: 0, rel: relA, blkno: 1, data: []byte("d"), img: imageOf(f, page, CompressionPGLZ, true)},
			{id: 1, flags: BKPBLOCK_SAME_REL, blkno: 2, img: imageOf(f, page, CompressionLZ4, true)},
			{id: 5, rel: relB, blkno: 3, img: imageOf(f, page, CompressionZstd, false)},
			{id: 32, rel: relB, blkno: 4, img: imageOf(f, page, CompressionNone, true)},
		}, main: []byte{1, 2}},
	} {
		f.Add(rec.build())
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if len(raw) >= 4 {
			binary.LittleEndian.PutUint32(raw, uint32(len(raw)))
		}
		var r Record
		if err := DecodeInto(&r, raw, 0x1000028, 0x2000000); err != nil {
			return
		}
		checkInvariants(t, &r, raw)
		buf := make([]byte, 0, BlockSize)
		for i := range r.Blocks {
			if !r.Blocks[i].HasImage {
				continue
			}
			p, err := r.Blocks[i].Image.Page(buf)
			if err == nil && len(p) != BlockSize {
				t.Fatalf("page of %d bytes", len(p))
			}
		}
	})
}

// FuzzPGLZ: decompressing any input into any size never panics or writes
// outside the output, and the test compressor's output always round-trips.
func FuzzPGLZ(f *testing.F) {
	f.Add([]byte{0x02, 'a', 0x0f, 0x01, 0xff}, uint16(274))
	f.Add(pglzCompress(testPage(12, 200, 6000)), uint16(BlockSize))
	f.Add([]byte("plain text, plain text, plain text"), uint16(40))
	for _, rr := range loadRealRecords(f) {
		var r Record
		if DecodeInto(&r, rr.raw, rr.start, rr.end) != nil {
			continue
		}
		for _, b := range r.Blocks {
			if b.HasImage && b.Image.Compression() == CompressionPGLZ {
				f.Add(b.Image.Bytes, uint16(BlockSize-int(b.Image.HoleLength)))
			}
		}
	}
	f.Fuzz(func(t *testing.T, src []byte, n uint16) {
		// Guard bytes around the output catch writes outside it.
		buf := make([]byte, int(n)+32)
		for i := range buf {
			buf[i] = 0xA5
		}
		dst := buf[16 : 16+int(n)]
		_ = pglzDecompress(src, dst)
		for i := range 16 {
			if buf[i] != 0xA5 || buf[len(buf)-1-i] != 0xA5 {
				t.Fatal("write outside the output")
			}
		}
		c := pglzCompress(src)
		out := make([]byte, len(src))
		if err := pglzDecompress(c, out); err != nil || !bytes.Equal(out, src) {
			t.Fatalf("round trip of %d bytes: %v", len(src), err)
		}
	})
}

// Make sure the fuzz seeds stay decodable: a seed that stops decoding
// explores nothing.
func TestFuzzSeedsDecode(t *testing.T) {
	for _, rr := range loadRealRecords(t) {
		if _, err := Decode(rr.raw, lsn.LSN(0), lsn.LSN(0)); err != nil {
			t.Fatal(err)
		}
	}
}
