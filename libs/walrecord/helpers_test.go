package walrecord

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"

	"strata.dev/libs/lsn"
	"strata.dev/libs/wal"
)

// Records built by hand, in the layout XLogRecordAssemble writes: block
// headers, origin, top-level xid, main data header; then each block's image
// and data; then the main data.

type tImage struct {
	bytes    []byte
	holeOff  uint16
	holeLen  uint16 // written only when compressed and HAS_HOLE
	info     uint8
	writeLen int    // if nonzero, the bimg_len written instead of len(bytes)
	page     []byte // the page it was made from, if any
}

type tBlock struct {
	id    uint8
	fork  uint8
	flags uint8 // extra fork_flags: WILL_INIT, SAME_REL, or lies about HAS_*
	rel   RelFileNode
	blkno uint32
	img   *tImage
	data  []byte
}

type tRecord struct {
	xid       uint32
	info      uint8
	rmid      uint8
	prev      lsn.LSN
	blocks    []tBlock
	origin    *uint16
	toplevel  uint32
	main      []byte
	longMain  bool // use the 4-byte main data header even for short data
	trailing  []byte
	headerEnd []byte // raw bytes appended after the headers (before the data)
}

func (r tRecord) build() []byte {
	var h []byte
	for _, b := range r.blocks {
		flags := b.fork | b.flags
		if b.img != nil {
			flags |= BKPBLOCK_HAS_IMAGE
		}
		if len(b.data) > 0 {
			flags |= BKPBLOCK_HAS_DATA
		}
		h = append(h, b.id, flags)
		h = binary.LittleEndian.AppendUint16(h, uint16(len(b.data)))
		if im := b.img; im != nil {
			n := len(im.bytes)
			if im.writeLen != 0 {
				n = im.writeLen
			}
			h = binary.LittleEndian.AppendUint16(h, uint16(n))
			h = binary.LittleEndian.AppendUint16(h, im.holeOff)
			h = append(h, im.info)
			if im.info&bkpimageCompressed != 0 && im.info&BKPIMAGE_HAS_HOLE != 0 {
				h = binary.LittleEndian.AppendUint16(h, im.holeLen)
			}
		}
		if flags&BKPBLOCK_SAME_REL == 0 {
			h = binary.LittleEndian.AppendUint32(h, b.rel.Spc)
			h = binary.LittleEndian.AppendUint32(h, b.rel.DB)
			h = binary.LittleEndian.AppendUint32(h, b.rel.Rel)
		}
		h = binary.LittleEndian.AppendUint32(h, b.blkno)
	}
	if r.origin != nil {
		h = append(h, XLR_BLOCK_ID_ORIGIN)
		h = binary.LittleEndian.AppendUint16(h, *r.origin)
	}
	if r.toplevel != 0 {
		h = append(h, XLR_BLOCK_ID_TOPLEVEL_XID)
		h = binary.LittleEndian.AppendUint32(h, r.toplevel)
	}
	if len(r.main) > 0 {
		if len(r.main) < 256 && !r.longMain {
			h = append(h, XLR_BLOCK_ID_DATA_SHORT, uint8(len(r.main)))
		} else {
			h = append(h, XLR_BLOCK_ID_DATA_LONG)
			h = binary.LittleEndian.AppendUint32(h, uint32(len(r.main)))
		}
	}
	h = append(h, r.headerEnd...)
	for _, b := range r.blocks {
		if b.img != nil {
			h = append(h, b.img.bytes...)
		}
		h = append(h, b.data...)
	}
	h = append(h, r.main...)
	h = append(h, r.trailing...)

	hdr := wal.RecordHeader{
		TotLen: uint32(wal.RecordHeaderSize + len(h)),
		XID:    r.xid, Prev: r.prev, Info: r.info, RmID: r.rmid,
	}
	rec := append(hdr.Append(nil), h...)
	hdr.CRC = wal.RecordCRC(rec)
	return hdr.Append(rec[:0])[:len(rec)]
}

// testPage is a plausible heap page: a header with pd_lower/pd_upper, line
// pointers, tuples at the end, and zeros in between (the hole).
func testPage(seed uint64, lower, upper int) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	p := make([]byte, BlockSize)
	for i := range p[:lower] {
		p[i] = byte(r.IntN(4)) // compressible but not trivial
	}
	for i := upper; i < BlockSize; i++ {
		p[i] = byte('a' + r.IntN(6))
	}
	binary.LittleEndian.PutUint16(p[12:], uint16(lower))
	binary.LittleEndian.PutUint16(p[14:], uint16(upper))
	return p
}

// imageOf makes the image XLogRecordAssemble would store for page: hole
// from pd_lower to pd_upper if the header says so, compressed with c.
func imageOf(t testing.TB, page []byte, c Compression, apply bool) *tImage {
	t.Helper()
	lower := int(binary.LittleEndian.Uint16(page[12:]))
	upper := int(binary.LittleEndian.Uint16(page[14:]))
	im := &tImage{page: page}
	body := page
	if lower >= 24 && upper > lower && upper <= BlockSize {
		im.holeOff, im.holeLen = uint16(lower), uint16(upper-lower)
		im.info |= BKPIMAGE_HAS_HOLE
		body = append(append([]byte{}, page[:lower]...), page[upper:]...)
	}
	if apply {
		im.info |= BKPIMAGE_APPLY
	}
	switch c {
	case CompressionNone:
		im.bytes = body
	case CompressionPGLZ:
		im.bytes = pglzCompress(body)
		im.info |= BKPIMAGE_COMPRESS_PGLZ
	case CompressionLZ4:
		buf := make([]byte, lz4.CompressBlockBound(len(body)))
		n, err := lz4.CompressBlock(body, buf, nil)
		if err != nil || n == 0 {
			t.Fatalf("lz4: %d, %v", n, err)
		}
		im.bytes = buf[:n]
		im.info |= BKPIMAGE_COMPRESS_LZ4
	case CompressionZstd:
		enc, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
		if err != nil {
			t.Fatal(err)
		}
		im.bytes = enc.EncodeAll(body, nil)
		enc.Close()
		im.info |= BKPIMAGE_COMPRESS_ZSTD
	}
	if c == CompressionNone {
		im.holeLen = 0 // not written: implied by the length
	}
	return im
}

// pglzCompress is a simple greedy pglz compressor (not PostgreSQL's
// strategy, but the same format), for tests.
func pglzCompress(src []byte) []byte {
	var out []byte
	ctrlPos, bit := -1, 8
	head := map[uint32]int{}
	item := func(tag bool) {
		if bit == 8 {
			out = append(out, 0)
			ctrlPos, bit = len(out)-1, 0
		}
		if tag {
			out[ctrlPos] |= 1 << bit
		}
		bit++
	}
	key := func(i int) uint32 { return uint32(src[i]) | uint32(src[i+1])<<8 | uint32(src[i+2])<<16 }
	for i := 0; i < len(src); {
		bestLen, bestOff := 0, 0
		if i+3 <= len(src) {
			if j, ok := head[key(i)]; ok && i-j < 4096 {
				n := 0
				for i+n < len(src) && n < 273 && src[j+n] == src[i+n] {
					n++
				}
				bestLen, bestOff = n, i-j
			}
			head[key(i)] = i
		}
		if bestLen < 3 {
			item(false)
			out = append(out, src[i])
			i++
			continue
		}
		item(true)
		if bestLen > 17 {
			out = append(out, byte(bestOff>>4&0xf0|0x0f), byte(bestOff), byte(bestLen-18))
		} else {
			out = append(out, byte(bestOff>>4&0xf0|(bestLen-3)), byte(bestOff))
		}
		for k := i + 1; k < i+bestLen && k+3 <= len(src); k++ {
			head[key(k)] = k
		}
		i += bestLen
	}
	return out
}
