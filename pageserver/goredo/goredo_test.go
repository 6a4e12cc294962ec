package goredo

// Byte-for-byte agreement with PostgreSQL's own redo is tested against
// real redo processes on real WAL in test/walredo (TestGoRedo); these
// tests pin the page layout and the errors.

import (
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"strata.dev/libs/lsn"
	"strata.dev/libs/wal"
	"strata.dev/libs/walrecord"
	"strata.dev/pageserver/ingest/pgrecords"
	"strata.dev/pageserver/key"
	"strata.dev/pageserver/pgpage"
)

const testXID = 745

func heapRecord(rm, info uint8, end lsn.LSN, main []byte, blk walrecord.BlockRef) (*walrecord.Record, *walrecord.BlockRef) {
	rec := &walrecord.Record{
		EndLSN:   end,
		Header:   wal.RecordHeader{RmID: rm, Info: info, XID: testXID},
		MainData: main,
		Blocks:   []walrecord.BlockRef{blk},
	}
	return rec, &rec.Blocks[0]
}

// multiInsertData is the block data of a MULTI_INSERT of bodies.
func multiInsertData(bodies ...[]byte) []byte {
	var d []byte
	for _, b := range bodies {
		if len(d)%2 == 1 {
			d = append(d, 0)
		}
		d = binary.LittleEndian.AppendUint16(d, uint16(len(b)))
		d = binary.LittleEndian.AppendUint16(d, 3)    // t_infomask2: 3 attributes
		d = binary.LittleEndian.AppendUint16(d, 0x20) // t_infomask: HEAP_COMBOCID, which redo clears
		d = append(d, 24)                             // t_hoff
		d = append(d, b...)
	}
	return d
}

func TestMultiInsertInitLayout(t *testing.T) {
	page := make([]byte, pgpage.BlockSize)
	for i := range page {
		page[i] = 0xAA // redo of an initialising record ignores the old page
	}
	bodies := [][]byte{[]byte("\x00abc"), []byte("\x00defgh")} // one byte of padding to t_hoff, then data
	main := []byte{1 << 5, 0, 2, 0}                            // ALL_FROZEN_SET, 2 tuples
	rec, blk := heapRecord(walrecord.RmHeap2, pgrecords.XLOG_HEAP2_MULTI_INSERT|pgrecords.XLOG_HEAP_INIT_PAGE, 0x1234_5678,
		main, walrecord.BlockRef{Blkno: 70000, WillInit: true, HasData: true, Data: multiInsertData(bodies...)})
	if err := Apply(page, rec, blk); err != nil {
		t.Fatal(err)
	}
	if got := pgpage.LSN(page); got != 0x1234_5678 {
		t.Errorf("page LSN %s", got)
	}
	if f := pageFlags(page); f != pdAllVisible {
		t.Errorf("pd_flags %#x, want PD_ALL_VISIBLE", f)
	}
	if maxOffset(page) != 2 {
		t.Fatalf("%d line pointers", maxOffset(page))
	}
	wantUpper := pgpage.BlockSize - maxAlign(23+4) - maxAlign(23+6)
	if u := int(le.Uint16(page[pdUpper:])); u != wantUpper {
		t.Errorf("pd_upper %d, want %d", u, wantUpper)
	}
	for i, body := range bodies {
		id := itemID(page, i+1)
		off, flags, n := id.off(), id.flags(), id.len()
		if flags != lpNormal || n != 23+len(body) {
			t.Fatalf("line pointer %d: flags %d len %d", i+1, flags, n)
		}
		tup := page[off : off+n]
		if le.Uint32(tup[tXmin:]) != testXID || le.Uint32(tup[tCid:]) != 0 || le.Uint16(tup[tInfomask:]) != 0 || tup[tHoff] != 24 {
			t.Errorf("tuple %d header % x", i+1, tup[:23])
		}
		if blkno := uint32(le.Uint16(tup[tCtid:]))<<16 | uint32(le.Uint16(tup[tCtid+2:])); blkno != 70000 || le.Uint16(tup[tCtid+4:]) != uint16(i+1) {
			t.Errorf("tuple %d t_ctid (%d,%d)", i+1, blkno, le.Uint16(tup[tCtid+4:]))
		}
		if string(tup[23:]) != string(body) {
			t.Errorf("tuple %d body %q", i+1, tup[23:])
		}
	}
	if page[pageHeaderSize+8] != 0 || page[wantUpper-1] != 0 {
		t.Error("free space is not zero")
	}
}

func TestInsertAndVisible(t *testing.T) {
	page := make([]byte, pgpage.BlockSize)
	pageInit(page)
	pgpage.SetLSN(page, 100)
	data := append([]byte{1, 0, 0, 0, 24}, []byte("\x00row")...)
	rec, blk := heapRecord(walrecord.RmHeap, pgrecords.XLOG_HEAP_INSERT, 200, []byte{1, 0, 0}, walrecord.BlockRef{Blkno: 3, HasData: true, Data: data})
	if err := Apply(page, rec, blk); err != nil {
		t.Fatal(err)
	}
	if maxOffset(page) != 1 || pgpage.LSN(page) != 200 {
		t.Fatalf("%d line pointers, LSN %s", maxOffset(page), pgpage.LSN(page))
	}
	// The same record again: the page has it (LSN), nothing changes.
	before := string(page)
	if err := Apply(page, rec, blk); err != nil || string(page) != before {
		t.Fatalf("a record the page has changed it (err %v)", err)
	}
	// VISIBLE sets PD_ALL_VISIBLE and leaves the LSN.
	vis, vblk := heapRecord(walrecord.RmHeap2, pgrecords.XLOG_HEAP2_VISIBLE, 300, []byte{0, 0, 0, 0, 1}, walrecord.BlockRef{ID: 1, Blkno: 3})
	if err := Apply(page, vis, vblk); err != nil {
		t.Fatal(err)
	}
	if pageFlags(page) != pdAllVisible || pgpage.LSN(page) != 200 {
		t.Errorf("after VISIBLE: flags %#x, LSN %s", pageFlags(page), pgpage.LSN(page))
	}
	// An insert with ALL_VISIBLE_CLEARED clears it.
	rec2, blk2 := heapRecord(walrecord.RmHeap, pgrecords.XLOG_HEAP_INSERT, 400, []byte{2, 0, 1}, walrecord.BlockRef{Blkno: 3, HasData: true, Data: data})
	if err := Apply(page, rec2, blk2); err != nil {
		t.Fatal(err)
	}
	if pageFlags(page) != 0 || maxOffset(page) != 2 {
		t.Errorf("flags %#x, %d line pointers", pageFlags(page), maxOffset(page))
	}
}

func TestHotUpdateWithPrefixAndSuffix(t *testing.T) {
	page := make([]byte, pgpage.BlockSize)
	pageInit(page)
	// The old version: no null bitmap (t_hoff 24: one byte of padding),
	// data "AAAAmiddleZZZ".
	old := []byte("\x00AAAAmiddleZZZ")
	ins, iblk := heapRecord(walrecord.RmHeap, pgrecords.XLOG_HEAP_INSERT, 100, []byte{1, 0, 0},
		walrecord.BlockRef{Blkno: 9, HasData: true, Data: append([]byte{2, 0, 0, 0, 24}, old...)})
	if err := Apply(page, ins, iblk); err != nil {
		t.Fatal(err)
	}
	// HOT update within the page: prefix 4 ("AAAA") and suffix 3 ("ZZZ")
	// from the old version; the record carries the padding byte (t_hoff -
	// 23 bytes) and the new middle.
	main := []byte{
		0x55, 0, 0, 0, // old_xmax
		1, 0, // old_offnum
		0, // old_infobits_set
		updatePrefixFromOld | updateSuffixFromOld, // flags
		0, 0, 0, 0, // new_xmax
		2, 0, // new_offnum
	}
	data := []byte{4, 0, 3, 0, 2, 0, 0, 0, 24, 0}
	data = append(data, "NEW"...)
	upd, ublk := heapRecord(walrecord.RmHeap, pgrecords.XLOG_HEAP_HOT_UPDATE, 200, main, walrecord.BlockRef{Blkno: 9, HasData: true, Data: data})
	if err := Apply(page, upd, ublk); err != nil {
		t.Fatal(err)
	}
	oldT, err := tupleAt(page, 1)
	if err != nil {
		t.Fatal(err)
	}
	if le.Uint32(oldT[tXmax:]) != 0x55 || infomask2(oldT)&heapHotUpdated == 0 || le.Uint16(oldT[tCtid+4:]) != 2 {
		t.Errorf("old version: xmax %#x, infomask2 %#x, ctid offset %d", le.Uint32(oldT[tXmax:]), infomask2(oldT), le.Uint16(oldT[tCtid+4:]))
	}
	if got := le.Uint32(page[pdPruneXID:]); got != testXID {
		t.Errorf("pd_prune_xid %d, want the updating transaction %d", got, testXID)
	}
	newT, err := tupleAt(page, 2)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(newT[tupleHeaderSize:]), "\x00AAAANEWZZZ"; got != want {
		t.Errorf("new version body %q, want %q", got, want)
	}
	if pgpage.LSN(page) != 200 {
		t.Errorf("page LSN %s", pgpage.LSN(page))
	}
}

func TestErrors(t *testing.T) {
	data := append([]byte{1, 0, 0, 0, 24}, []byte("\x00row")...)
	fresh := func() []byte {
		p := make([]byte, pgpage.BlockSize)
		pageInit(p)
		return p
	}
	cases := []struct {
		name string
		page func() []byte
		main []byte
		data []byte
		want string
	}{
		{"offset beyond the end", fresh, []byte{2, 0, 0}, data, "invalid max offset number"},
		{"offset zero", fresh, []byte{0, 0, 0}, data, "invalid offset number 0"},
		{"short main data", fresh, []byte{1, 0}, data, "main data of 2 bytes"},
		{"no tuple", fresh, []byte{1, 0, 0}, data[:5], "block data of 5 bytes"},
		{"corrupt pointers", func() []byte { return make([]byte, pgpage.BlockSize) }, []byte{1, 0, 0}, data, "corrupted page pointers"},
		{"does not fit", func() []byte {
			p := fresh()
			le.PutUint16(p[pdUpper:], pageHeaderSize+8)
			return p
		}, []byte{1, 0, 0}, data, "do not fit"},
		{"used line pointer", func() []byte {
			p := fresh()
			le.PutUint16(p[pdLower:], pageHeaderSize+4)
			setItemID(p, 1, newLineItem(8000, lpNormal, 27))
			return p
		}, []byte{1, 0, 0}, data, "will not overwrite"},
	}
	for _, c := range cases {
		rec, blk := heapRecord(walrecord.RmHeap, pgrecords.XLOG_HEAP_INSERT, 500, c.main, walrecord.BlockRef{HasData: true, Data: c.data})
		err := Apply(c.page(), rec, blk)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want ErrInvalid with %q", c.name, err, c.want)
		}
	}

	// A MULTI_INSERT whose tuples do not add up to its block data.
	rec, blk := heapRecord(walrecord.RmHeap2, pgrecords.XLOG_HEAP2_MULTI_INSERT|pgrecords.XLOG_HEAP_INIT_PAGE, 500, []byte{0, 0, 1, 0},
		walrecord.BlockRef{HasData: true, Data: append(multiInsertData([]byte("ab")), 9)})
	if err := Apply(make([]byte, pgpage.BlockSize), rec, blk); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "length mismatch") {
		t.Errorf("trailing block data: %v", err)
	}
	// Unsupported: a full-page image, another fork, an INPLACE.
	for _, b := range []walrecord.BlockRef{{HasImage: true}, {Fork: 2}} {
		rec, blk := heapRecord(walrecord.RmHeap, pgrecords.XLOG_HEAP_INSERT, 500, []byte{1, 0, 0}, b)
		if Supported(rec, blk) {
			t.Errorf("%+v is supported", b)
		}
	}
	rec, blk = heapRecord(walrecord.RmHeap, pgrecords.XLOG_HEAP_INPLACE, 500, []byte{1, 0}, walrecord.BlockRef{})
	if err := Apply(fresh(), rec, blk); !errors.Is(err, ErrInvalid) || Supported(rec, blk) {
		t.Errorf("INPLACE: %v", err)
	}
}

// FuzzApply: no input panics, and every failure wraps ErrInvalid.
func FuzzApply(f *testing.F) {
	f.Add(uint8(walrecord.RmHeap), uint8(0), []byte{1, 0, 0}, append([]byte{1, 0, 0, 0, 24}, "\x00row"...), false, uint16(0), uint16(0), uint16(0))
	f.Add(uint8(walrecord.RmHeap2), uint8(0xd0), []byte{0, 0, 2, 0}, multiInsertData([]byte("\x00a"), []byte("\x00bc")), false, uint16(0), uint16(0), uint16(0))
	f.Add(uint8(walrecord.RmHeap2), uint8(0x50), []byte{0, 0, 1, 0, 3, 0}, multiInsertData([]byte("x")), true, uint16(0), uint16(0), uint16(0))
	f.Add(uint8(walrecord.RmHeap2), uint8(0x40), []byte{0, 0, 0, 0, 1}, []byte(nil), true, uint16(0), uint16(0), uint16(0))
	// UPDATE within the page, prefix 2 and suffix 1 from the old tuple.
	f.Add(uint8(walrecord.RmHeap), uint8(0x40), []byte{9, 0, 0, 0, 1, 0, 0, 0x60, 0, 0, 0, 0, 2, 0}, append([]byte{2, 0, 1, 0, 3, 0, 0, 0, 24}, "\x00z"...), true, uint16(0), uint16(0), uint16(0))
	f.Add(uint8(walrecord.RmHeap), uint8(0x10), []byte{9, 0, 0, 0, 1, 0, 0x10, 0}, []byte(nil), true, uint16(0), uint16(0), uint16(0))
	f.Add(uint8(walrecord.RmHeap), uint8(0x60), []byte{9, 0, 0, 0, 1, 0, 0x02, 0}, []byte(nil), true, uint16(0), uint16(0), uint16(0))
	f.Add(uint8(walrecord.RmHeap2), uint8(0x10), []byte{9, 0, 0, 0, 1, 0, 0, 0}, []byte{1, 0, 2, 0}, true, uint16(0), uint16(0), uint16(0))
	f.Add(uint8(walrecord.RmHeap2), uint8(0x10), []byte{9, 0, 0, 0, 0, 0, 1, 0}, []byte{1, 0, 2, 0}, true, uint16(0), uint16(0), uint16(0))
	f.Add(uint8(walrecord.RmHeap2), uint8(0x20), []byte{1, 0}, []byte{2, 0}, true, uint16(0), uint16(0), uint16(0))
	f.Add(uint8(walrecord.RmBtree), uint8(0), []byte{1, 0}, []byte("0123456789abcdef"), true, uint16(0), uint16(0), uint16(0))
	f.Add(uint8(walrecord.RmHeap2), uint8(0x40), []byte{9, 0, 0, 0, 3}, []byte(nil), false, uint16(0), uint16(0), uint16(0)) // fuzzed below as a VM page too
	f.Add(uint8(walrecord.RmHeap2), uint8(0x20), []byte{1, 0}, []byte{0xb8, 0x0b}, true, uint16(0xFFFF), uint16(0), uint16(0x2000))
	f.Fuzz(func(t *testing.T, rm, info uint8, main, data []byte, used bool, lower, upper, special uint16) {
		page := make([]byte, pgpage.BlockSize)
		pageInit(page)
		if used {
			// Two line pointers, the second unused: room to reuse.
			le.PutUint16(page[pdLower:], pageHeaderSize+8)
			le.PutUint16(page[pdUpper:], 8000)
			setItemID(page, 1, newLineItem(8000, lpNormal, 100))
		}
		// A page whose header says anything at all (corrupt).
		if lower != 0 || upper != 0 || special != 0 {
			le.PutUint16(page[pdLower:], lower)
			le.PutUint16(page[pdUpper:], upper)
			le.PutUint16(page[pdSpecial:], special)
		}
		id := uint8(0)
		if info&0x70 == pgrecords.XLOG_HEAP2_VISIBLE {
			id = 1
		}
		rec, blk := heapRecord(rm, info, 1000, main, walrecord.BlockRef{ID: id, HasData: data != nil, Data: data})
		if err := Apply(page, rec, blk); err != nil && !errors.Is(err, ErrInvalid) {
			t.Fatalf("error not wrapping ErrInvalid: %v", err)
		}
		// The same record as if to a visibility-map page, the heap block
		// as its second reference.
		rec.Blocks = []walrecord.BlockRef{{ID: 0, Fork: key.ForkVM, Blkno: uint32(len(data) % 3)}, {ID: 1, Blkno: uint32(len(main)) * 20000}}
		if err := Apply(make([]byte, pgpage.BlockSize), rec, &rec.Blocks[0]); err != nil && !errors.Is(err, ErrInvalid) {
			t.Fatalf("error not wrapping ErrInvalid: %v", err)
		}
	})
}

// pageFlags is the page's pd_flags.
func pageFlags(page []byte) uint16 { return le.Uint16(page[pdFlags:]) }
