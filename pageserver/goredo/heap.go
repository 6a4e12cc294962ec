package goredo

// Redo of the heap records that add tuples (INSERT, MULTI_INSERT) and of
// VISIBLE's change to the heap page.

import (
	"fmt"

	"strata.dev/libs/lsn"
	"strata.dev/libs/walrecord"
	"strata.dev/pageserver/ingest/pgrecords"
	"strata.dev/pageserver/pgpage"
)

const (
	// Insert flags (heapam_xlog.h).
	insertAllFrozenSet = 1 << 5

	sizeOfHeapHeader       = 5 // xl_heap_header: t_infomask2, t_infomask u16, t_hoff u8
	sizeOfMultiInsertTuple = 7 // datalen, t_infomask2, t_infomask u16, t_hoff u8
)

// insert is heap_xlog_insert's change to the heap page.
func insert(page []byte, rec *walrecord.Record, blk *walrecord.BlockRef, init bool) error {
	md, err := mainData(rec, pgrecords.SizeOfHeapInsert)
	if err != nil {
		return err
	}
	offnum := le.Uint16(md[0:])
	flags := md[2]
	if init {
		pageInit(page)
	}
	data := blk.Data
	if len(data) <= sizeOfHeapHeader {
		return fmt.Errorf("block data of %d bytes, want more than the %d-byte tuple header", len(data), sizeOfHeapHeader)
	}
	if err := checkNewOffset(page, offnum); err != nil {
		return err
	}
	hdr := tupleHeader{
		infomask2: le.Uint16(data[0:]),
		infomask:  le.Uint16(data[2:]),
		hoff:      data[4],
	}
	if _, err := addTuple(page, rec.Header.XID, blk.Blkno, offnum, hdr, data[sizeOfHeapHeader:]); err != nil {
		return err
	}
	finishInsert(page, rec.EndLSN, flags)
	return nil
}

// multiInsert is heap_xlog_multi_insert's change to the heap page.
func multiInsert(page []byte, rec *walrecord.Record, blk *walrecord.BlockRef, init bool) error {
	md, err := mainData(rec, pgrecords.SizeOfHeapMultiInsert)
	if err != nil {
		return err
	}
	flags := md[0]
	ntuples := int(le.Uint16(md[2:]))
	offsets := md[pgrecords.SizeOfHeapMultiInsert:]
	if !init && len(offsets) < 2*ntuples {
		return fmt.Errorf("main data has %d bytes of offsets for %d tuples", len(offsets), ntuples)
	}
	if init {
		pageInit(page)
	}
	data := blk.Data
	pos := 0
	for i := range ntuples {
		offnum := uint16(1 + i)
		if !init {
			offnum = le.Uint16(offsets[2*i:])
		}
		if err := checkNewOffset(page, offnum); err != nil {
			return fmt.Errorf("tuple %d: %w", i, err)
		}
		pos += pos & 1 // SHORTALIGN: the block data starts MAXALIGNed
		if pos+sizeOfMultiInsertTuple > len(data) {
			return fmt.Errorf("tuple %d of %d: header at %d beyond the %d bytes of block data", i, ntuples, pos, len(data))
		}
		t := data[pos:]
		n := int(le.Uint16(t[0:]))
		hdr := tupleHeader{
			infomask2: le.Uint16(t[2:]),
			infomask:  le.Uint16(t[4:]),
			hoff:      t[6],
		}
		pos += sizeOfMultiInsertTuple
		if pos+n > len(data) {
			return fmt.Errorf("tuple %d of %d: %d bytes at %d beyond the %d bytes of block data", i, ntuples, n, pos, len(data))
		}
		if _, err := addTuple(page, rec.Header.XID, blk.Blkno, offnum, hdr, data[pos:pos+n]); err != nil {
			return err
		}
		pos += n
	}
	if pos != len(data) {
		return fmt.Errorf("total tuple length mismatch: %d of %d bytes of block data used", pos, len(data))
	}
	finishInsert(page, rec.EndLSN, flags)
	return nil
}

// finishInsert is what both insert redo routines do once the tuples are in.
func finishInsert(page []byte, end lsn.LSN, flags uint8) {
	pgpage.SetLSN(page, end)
	if flags&pgrecords.XLH_INSERT_ALL_VISIBLE_CLEARED != 0 {
		setPageFlag(page, pdAllVisible, false)
	}
	if flags&insertAllFrozenSet != 0 {
		setPageFlag(page, pdAllVisible, true)
	}
}

// visible is heap_xlog_visible's change to the heap page: PD_ALL_VISIBLE,
// and no new LSN (see the package comment).
func visible(page []byte, _ *walrecord.Record, _ *walrecord.BlockRef, _ bool) error {
	setPageFlag(page, pdAllVisible, true)
	return nil
}

const sizeOfHeapVisible = 5 // cutoff_xid u32, flags u8

// visibleVM is heap_xlog_visible's change to the visibility-map page:
// visibilitymap_set of the heap block's bits (block 1 of the record) on a
// page that redo initialises if it is new, with the record's LSN when a
// bit changed.
func visibleVM(page []byte, rec *walrecord.Record, blk *walrecord.BlockRef, _ bool) error {
	md, err := mainData(rec, sizeOfHeapVisible)
	if err != nil {
		return err
	}
	heap := rec.Block(1)
	if heap == nil {
		return fmt.Errorf("no heap block reference")
	}
	block, mapByte, shift := pgpage.VMBits(heap.Blkno)
	if block != blk.Blkno {
		return fmt.Errorf("heap block %d is not mapped by visibility-map page %d", heap.Blkno, blk.Blkno)
	}
	if pgpage.IsNew(page) {
		pageInit(page)
	}
	flags := md[4]
	i := pgpage.HeaderSize + mapByte
	if flags != page[i]>>shift&pgrecords.VISIBILITYMAP_VALID_BITS {
		page[i] |= flags << shift
		pgpage.SetLSN(page, rec.EndLSN)
	}
	return nil
}
