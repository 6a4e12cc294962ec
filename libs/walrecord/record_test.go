package walrecord

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"strata.dev/libs/lsn"
	"strata.dev/libs/wal"
)

var (
	relA = RelFileNode{1663, 5, 16384}
	relB = RelFileNode{1664, 0, 1262}
)

const testLSN = lsn.LSN(0x1_0200_0028)

func u16p(v uint16) *uint16 { return &v }

func TestDecode(t *testing.T) {
	page := testPage(1, 200, 7000)
	full := testPage(2, 8192, 8192) // no hole: pd_upper == BLCKSZ
	long := bytes.Repeat([]byte("main"), 100)

	tests := []struct {
		name string
		rec  tRecord
	}{
		{"no body", tRecord{xid: 0, rmid: RmXLOG, info: 0x10}},
		{"short main data", tRecord{xid: 7, rmid: RmTransaction, main: []byte("commit")}},
		{"short main data of 255", tRecord{rmid: RmHeap, main: bytes.Repeat([]byte{9}, 255)}},
		{"long main data", tRecord{rmid: RmStandby, main: long}},
		{"long header for short data", tRecord{rmid: RmStandby, main: []byte{1, 2, 3}, longMain: true}},
		{"origin", tRecord{rmid: RmTransaction, origin: u16p(42), main: []byte{1}}},
		{"origin zero", tRecord{rmid: RmTransaction, origin: u16p(0), main: []byte{1}}},
		{"toplevel xid", tRecord{rmid: RmHeap, xid: 901, toplevel: 900, main: []byte{1, 2}}},
		{"origin and toplevel xid", tRecord{rmid: RmHeap, origin: u16p(3), toplevel: 77, main: []byte{1}}},
		{"block with data", tRecord{rmid: RmHeap, blocks: []tBlock{
			{id: 0, rel: relA, blkno: 7, data: []byte("tuple")},
		}, main: []byte{0, 1}}},
		{"block without data or main", tRecord{rmid: RmHeap2, blocks: []tBlock{{id: 0, rel: relA, blkno: 1}}}},
		{"will init, fsm fork", tRecord{rmid: RmHeap, blocks: []tBlock{
			{id: 0, fork: ForkFSM, flags: BKPBLOCK_WILL_INIT, rel: relA, blkno: 2, data: []byte{5}},
		}}},
		{"same rel", tRecord{rmid: RmHeap, blocks: []tBlock{
			{id: 0, rel: relA, blkno: 1, data: []byte("new")},
			{id: 1, flags: BKPBLOCK_SAME_REL, blkno: 2, data: []byte("old")},
		}, main: []byte("upd")}},
		{"same rel after a different rel", tRecord{rmid: RmBtree, blocks: []tBlock{
			{id: 0, rel: relA, blkno: 1},
			{id: 1, rel: relB, fork: ForkVM, blkno: 9},
			{id: 2, flags: BKPBLOCK_SAME_REL, fork: ForkVM, blkno: 10},
		}}},
		{"sparse block ids", tRecord{rmid: RmBtree, blocks: []tBlock{
			{id: 0, rel: relA, blkno: 1, data: []byte{1}},
			{id: 3, rel: relA, blkno: 4, data: []byte{4}},
			{id: 32, rel: relB, blkno: 33, data: []byte{33}},
		}}},
		{"image with hole", tRecord{rmid: RmXLOG, info: 0xB0, blocks: []tBlock{
			{id: 0, rel: relA, blkno: 3, img: imageOf(t, page, CompressionNone, true)},
		}}},
		{"image without hole", tRecord{rmid: RmXLOG, info: 0xB0, blocks: []tBlock{
			{id: 0, rel: relA, blkno: 3, img: imageOf(t, full, CompressionNone, true)},
		}}},
		{"image not applied", tRecord{rmid: RmHeap, blocks: []tBlock{
			{id: 0, rel: relA, blkno: 3, img: imageOf(t, page, CompressionNone, false), data: []byte("x")},
		}, main: []byte{1}}},
		{"pglz image with hole", tRecord{rmid: RmXLOG, info: 0xB0, blocks: []tBlock{
			{id: 0, rel: relA, blkno: 3, img: imageOf(t, page, CompressionPGLZ, true)},
		}}},
		{"pglz image without hole", tRecord{rmid: RmXLOG, info: 0xB0, blocks: []tBlock{
			{id: 0, rel: relA, blkno: 3, img: imageOf(t, full, CompressionPGLZ, true)},
		}}},
		{"lz4 image with hole", tRecord{rmid: RmXLOG, info: 0xB0, blocks: []tBlock{
			{id: 0, rel: relA, blkno: 3, img: imageOf(t, page, CompressionLZ4, true)},
		}}},
		{"zstd image with hole", tRecord{rmid: RmXLOG, info: 0xB0, blocks: []tBlock{
			{id: 0, rel: relA, blkno: 3, img: imageOf(t, page, CompressionZstd, true)},
		}}},
		{"zstd image without hole, not applied", tRecord{rmid: RmXLOG, info: 0xB0, blocks: []tBlock{
			{id: 0, rel: relA, blkno: 3, img: imageOf(t, full, CompressionZstd, false)},
		}}},
		{"everything", tRecord{xid: 1234, rmid: RmHeap, info: 0x20, prev: 0x1_0100_0000, blocks: []tBlock{
			{id: 0, flags: BKPBLOCK_WILL_INIT, rel: relA, blkno: 11, img: imageOf(t, page, CompressionLZ4, true), data: []byte("d0")},
			{id: 1, flags: BKPBLOCK_SAME_REL, blkno: 12, img: imageOf(t, full, CompressionNone, true)},
			{id: 2, fork: ForkInit, rel: relB, blkno: 0, data: bytes.Repeat([]byte{2}, 3000)},
		}, origin: u16p(65535), toplevel: 1200, main: long}},
	}
	var reused Record
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			raw := tc.rec.build()
			end := (testLSN + lsn.LSN(len(raw))).Align8()
			r, err := Decode(raw, testLSN, end)
			if err != nil {
				t.Fatal(err)
			}
			checkDecoded(t, tc.rec, raw, &r)
			if r.StartLSN != testLSN || r.EndLSN != end || !bytes.Equal(r.Raw, raw) {
				t.Fatalf("LSNs %s..%s, raw %d bytes", r.StartLSN, r.EndLSN, len(r.Raw))
			}
			// The same through DecodeInto, reusing one Record across cases.
			if err := DecodeInto(&reused, raw, testLSN, end); err != nil {
				t.Fatal(err)
			}
			checkDecoded(t, tc.rec, raw, &reused)
		})
	}
}

// checkDecoded compares r with what the builder wrote.
func checkDecoded(t *testing.T, want tRecord, raw []byte, r *Record) {
	t.Helper()
	h := r.Header
	if h.TotLen != uint32(len(raw)) || h.XID != want.xid || h.RmID != want.rmid || h.Info != want.info || h.Prev != want.prev {
		t.Fatalf("header %+v, want %+v", h, want)
	}
	if !bytes.Equal(r.MainData, want.main) || (len(want.main) == 0) != (r.MainData == nil) {
		t.Fatalf("main data %q, want %q", r.MainData, want.main)
	}
	if len(r.MainData) > 0 && &r.MainData[0] != &raw[len(raw)-len(r.MainData)] {
		t.Fatal("main data does not alias the end of the record")
	}
	if r.HasOrigin != (want.origin != nil) || (want.origin != nil && r.Origin != *want.origin) {
		t.Fatalf("origin %v %d, want %v", r.HasOrigin, r.Origin, want.origin)
	}
	if r.ToplevelXID != want.toplevel {
		t.Fatalf("toplevel xid %d, want %d", r.ToplevelXID, want.toplevel)
	}
	if len(r.Blocks) != len(want.blocks) {
		t.Fatalf("%d blocks, want %d", len(r.Blocks), len(want.blocks))
	}
	var rel RelFileNode
	var fpi uint32
	for i, wb := range want.blocks {
		b := r.Blocks[i]
		if wb.flags&BKPBLOCK_SAME_REL == 0 {
			rel = wb.rel
		}
		if b.ID != wb.id || b.Rel != rel || b.Fork != wb.fork || b.Blkno != wb.blkno ||
			b.WillInit != (wb.flags&BKPBLOCK_WILL_INIT != 0) || b.HasImage != (wb.img != nil) ||
			b.HasData != (len(wb.data) > 0) || !bytes.Equal(b.Data, wb.data) {
			t.Fatalf("block %d: %+v, want %+v (rel %v)", i, b, wb, rel)
		}
		if got := r.Block(wb.id); got != &r.Blocks[i] {
			t.Fatalf("Block(%d) = %p, want %p", wb.id, got, &r.Blocks[i])
		}
		if wb.img == nil {
			continue
		}
		im := b.Image
		fpi += uint32(len(im.Bytes))
		holeLen := wb.img.holeLen
		if im.Compression() == CompressionNone {
			holeLen = uint16(BlockSize - len(wb.img.bytes))
		}
		if !bytes.Equal(im.Bytes, wb.img.bytes) || im.HoleOffset != wb.img.holeOff || im.HoleLength != holeLen ||
			im.Info != wb.img.info || im.Apply() != (wb.img.info&BKPIMAGE_APPLY != 0) {
			t.Fatalf("block %d image: off %d len %d info %#x, want off %d len %d info %#x",
				i, im.HoleOffset, im.HoleLength, im.Info, wb.img.holeOff, holeLen, wb.img.info)
		}
		// imageOf images come from pages whose hole is zero, so
		// reconstruction must give back exactly that page.
		pg, err := im.Page(nil)
		if err != nil {
			t.Fatalf("block %d: %v", i, err)
		}
		if len(pg) != BlockSize {
			t.Fatalf("block %d: page of %d bytes", i, len(pg))
		}
		if wb.img.page != nil && !bytes.Equal(pg, wb.img.page) {
			t.Fatalf("block %d: reconstructed page differs from the original", i)
		}
	}
	if r.FPILen() != fpi {
		t.Fatalf("FPILen %d, want %d", r.FPILen(), fpi)
	}
}

func TestDecodeErrors(t *testing.T) {
	page := testPage(1, 200, 7000)
	good := tRecord{rmid: RmHeap, blocks: []tBlock{{id: 0, rel: relA, blkno: 1, data: []byte("abc")}}, main: []byte("m")}
	withBlocks := func(bs ...tBlock) tRecord { return tRecord{rmid: RmHeap, blocks: bs} }
	img := func(info uint8, off, holeLen uint16, n int) *tImage {
		return &tImage{bytes: make([]byte, n), info: info, holeOff: off, holeLen: holeLen}
	}
	setTotLen := func(raw []byte, n uint32) []byte {
		raw[0], raw[1], raw[2], raw[3] = byte(n), byte(n>>8), byte(n>>16), byte(n>>24)
		return raw
	}

	tests := []struct {
		name string
		raw  []byte
		want string
	}{
		{"empty", nil, "0 bytes, shorter than a record header"},
		{"header cut", good.build()[:20], "20 bytes, shorter than a record header"},
		{"tot_len too big", setTotLen(good.build(), 1000), "xl_tot_len 1000, but the record has"},
		{"tot_len too small", setTotLen(good.build(), 30), "xl_tot_len 30, but the record has"},
		{"trailing byte", tRecord{rmid: RmHeap, main: []byte("m"), trailing: []byte{0}}.build(),
			"headers announce 1 bytes of data, 2 follow"},
		{"data missing", good.build()[:len(good.build())-1], ""}, // tot_len mismatch first
		{"invalid block id", tRecord{rmid: RmHeap, headerEnd: []byte{33, 0, 0, 0}}.build(), "invalid block_id 33"},
		{"id 251", tRecord{rmid: RmHeap, headerEnd: []byte{251}}.build(), "invalid block_id 251"},
		{"out of order", withBlocks(
			tBlock{id: 2, rel: relA, blkno: 1}, tBlock{id: 1, rel: relA, blkno: 2}).build(),
			"out-of-order block_id 1 (after 2)"},
		{"repeated id", withBlocks(
			tBlock{id: 0, rel: relA, blkno: 1}, tBlock{id: 0, rel: relA, blkno: 2}).build(),
			"out-of-order block_id 0 (after 0)"},
		{"same rel first", withBlocks(tBlock{id: 0, flags: BKPBLOCK_SAME_REL, blkno: 1}).build(),
			"block 0: BKPBLOCK_SAME_REL set but no previous rel"},
		{"has data without data", withBlocks(tBlock{id: 0, flags: BKPBLOCK_HAS_DATA, rel: relA}).build(),
			"block 0: BKPBLOCK_HAS_DATA set, but no data included"},
		{"data without has data", tRecord{rmid: RmHeap, headerEnd: []byte{0, 0, 5, 0}}.build(),
			"block 0: BKPBLOCK_HAS_DATA not set, but data length is 5"},
		{"block header cut", tRecord{rmid: RmHeap, headerEnd: []byte{0, 0}}.build(),
			"record with invalid length: block 0 header cut short"},
		{"relation cut", tRecord{rmid: RmHeap, headerEnd: []byte{0, 0, 0, 0, 1, 2, 3}}.build(),
			"record with invalid length: block 0 relation cut short"},
		{"block number cut", tRecord{rmid: RmHeap, headerEnd: append([]byte{0, 0, 0, 0}, make([]byte, 14)...)}.build(),
			"record with invalid length: block 0 block number cut short"},
		{"image header cut", tRecord{rmid: RmHeap, headerEnd: []byte{0, BKPBLOCK_HAS_IMAGE, 0, 0, 1, 2}}.build(),
			"block 0: record with invalid length: image header cut short"},
		{"hole length cut", tRecord{rmid: RmHeap, headerEnd: []byte{0, BKPBLOCK_HAS_IMAGE, 0, 0, 1, 2, 1, 0,
			BKPIMAGE_HAS_HOLE | BKPIMAGE_COMPRESS_LZ4, 7}}.build(),
			"block 0: record with invalid length: image hole length cut short"},
		{"main data header cut", tRecord{rmid: RmHeap, headerEnd: []byte{XLR_BLOCK_ID_DATA_SHORT}}.build(),
			"record with invalid length: main data header cut short"},
		{"long main data header cut", tRecord{rmid: RmHeap, headerEnd: []byte{XLR_BLOCK_ID_DATA_LONG, 1, 0}}.build(),
			"record with invalid length: main data header cut short"},
		{"origin cut", tRecord{rmid: RmHeap, headerEnd: []byte{XLR_BLOCK_ID_ORIGIN, 1}}.build(),
			"record with invalid length: origin header cut short"},
		{"toplevel cut", tRecord{rmid: RmHeap, headerEnd: []byte{XLR_BLOCK_ID_TOPLEVEL_XID, 1, 2, 3}}.build(),
			"record with invalid length: top-level xid header cut short"},
		{"main data longer than record", tRecord{rmid: RmHeap,
			headerEnd: []byte{XLR_BLOCK_ID_DATA_LONG, 0xff, 0xff, 0xff, 0xff}}.build(),
			"headers announce 4294967295 bytes of data, 0 follow"},
		{"hole flag, zero offset", withBlocks(tBlock{id: 0, rel: relA, img: img(BKPIMAGE_HAS_HOLE, 0, 0, 8000)}).build(),
			"block 0: BKPIMAGE_HAS_HOLE set, but hole offset 0 length 192 block image length 8000"},
		{"hole flag, full length", withBlocks(tBlock{id: 0, rel: relA, img: img(BKPIMAGE_HAS_HOLE, 100, 0, 8192)}).build(),
			"block 0: BKPIMAGE_HAS_HOLE set, but hole offset 100 length 0 block image length 8192"},
		{"hole flag, compressed, zero hole", withBlocks(tBlock{id: 0, rel: relA,
			img: img(BKPIMAGE_HAS_HOLE|BKPIMAGE_COMPRESS_PGLZ, 100, 0, 50)}).build(),
			"block 0: BKPIMAGE_HAS_HOLE set, but hole offset 100 length 0 block image length 50"},
		{"no hole flag, offset", withBlocks(tBlock{id: 0, rel: relA, img: img(0, 100, 0, 8192)}).build(),
			"block 0: BKPIMAGE_HAS_HOLE not set, but hole offset 100 length 0"},
		{"no hole flag, short", withBlocks(tBlock{id: 0, rel: relA, img: img(0, 0, 0, 8000)}).build(),
			"block 0: BKPIMAGE_HAS_HOLE not set, but hole offset 0 length 192"},
		{"compressed full length", withBlocks(tBlock{id: 0, rel: relA, img: img(BKPIMAGE_COMPRESS_ZSTD, 0, 0, 8192)}).build(),
			"block 0: BKPIMAGE_COMPRESSED set, but block image length 8192"},
		{"image shorter than announced", withBlocks(tBlock{id: 0, rel: relA,
			img: &tImage{bytes: imageOf(t, page, CompressionNone, true).bytes, writeLen: 8000, info: BKPIMAGE_HAS_HOLE, holeOff: 200}}).build(),
			"record with invalid length: headers announce 8000 bytes of data, 1392 follow"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode(tc.raw, testLSN, testLSN+lsn.LSN(len(tc.raw)))
			if err == nil {
				t.Fatal("decoded")
			}
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("%v does not match ErrMalformed", err)
			}
			var de *DecodeError
			if !errors.As(err, &de) || de.LSN != testLSN {
				t.Fatalf("%v: not a *DecodeError at %s", err, testLSN)
			}
			prefix := fmt.Sprintf("WAL record at %s: ", testLSN)
			if !strings.HasPrefix(err.Error(), prefix) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q, want %q%s", err, prefix, tc.want)
			}
		})
	}
}

// TestDecodeIntoReuses: the hot path does not allocate once Blocks has grown.
func TestDecodeIntoReuses(t *testing.T) {
	raw := tRecord{rmid: RmHeap, blocks: []tBlock{
		{id: 0, rel: relA, blkno: 1, data: []byte("new")},
		{id: 1, flags: BKPBLOCK_SAME_REL, blkno: 2, data: []byte("old")},
	}, origin: u16p(1), main: []byte("upd")}.build()
	var r Record
	if err := DecodeInto(&r, raw, testLSN, testLSN+0x100); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(100, func() {
		if err := DecodeInto(&r, raw, testLSN, testLSN+0x100); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per DecodeInto", allocs)
	}
	// A record with fewer blocks leaves no stale ones behind.
	if err := DecodeInto(&r, tRecord{rmid: RmXLOG}.build(), testLSN, testLSN+0x100); err != nil || len(r.Blocks) != 0 || r.HasOrigin {
		t.Fatalf("%v, %d blocks, origin %v", err, len(r.Blocks), r.HasOrigin)
	}
}

func TestRmgrName(t *testing.T) {
	for id, want := range map[uint8]string{
		0: "XLOG", 1: "Transaction", 2: "Storage", 3: "CLOG", 4: "Database", 5: "Tablespace",
		6: "MultiXact", 7: "RelMap", 8: "Standby", 9: "Heap2", 10: "Heap", 11: "Btree", 12: "Hash",
		13: "Gin", 14: "Gist", 15: "Sequence", 16: "SPGist", 17: "BRIN", 18: "CommitTs",
		19: "ReplicationOrigin", 20: "Generic", 21: "LogicalMessage",
		22: "unknown022", 127: "unknown127", 128: "custom128", 255: "custom255",
	} {
		if got := RmgrName(id); got != want {
			t.Errorf("RmgrName(%d) = %q, want %q", id, got, want)
		}
	}
	if RmgrName(RmMaxBuiltin) != "LogicalMessage" || RmHeap != 10 || RmBtree != 11 {
		t.Fatal("constants out of line with rmgrlist.h")
	}
}

func TestRecordHelpers(t *testing.T) {
	r, err := Decode(tRecord{rmid: RmHeap, info: 0x80 | 0x01, main: []byte{1}}.build(), testLSN, testLSN+48)
	if err != nil {
		t.Fatal(err)
	}
	if r.RmInfo() != 0x80 || r.Block(0) != nil || r.Header.Info&wal.XLR_INFO_MASK != 1 {
		t.Fatalf("RmInfo %#x, Block(0) %v", r.RmInfo(), r.Block(0))
	}
}
