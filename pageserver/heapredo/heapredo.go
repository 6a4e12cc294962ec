// Package heapredo applies the simplest heap WAL records to a page in Go,
// byte for byte as PostgreSQL 15's heap redo (heapam.c) does in a WAL-redo
// process: XLOG_HEAP_INSERT and XLOG_HEAP2_MULTI_INSERT (with or without
// XLOG_HEAP_INIT_PAGE), XLOG_HEAP_UPDATE and HOT_UPDATE, DELETE, LOCK,
// CONFIRM, XLOG_HEAP2_LOCK_UPDATED, and XLOG_HEAP2_VISIBLE on the heap
// page. These are most of the records of a bulk load (COPY writes one
// MULTI_INSERT+INIT per page, VACUUM one VISIBLE) and of OLTP (updates,
// inserts, row locks), and each one applied here is a round trip to a
// redo process saved; pruning and vacuuming (PageRepairFragmentation) and
// the rare rest still go to PostgreSQL (DESIGN.md decision 5: "applies FPIs and the simple
// records natively in Go").
//
// Only the target page is rebuilt: the FSM and visibility-map updates heap
// redo also makes are other keys, which ingest stores separately (PS §2.6).
// Behaviour follows what a redo process does, which runs without data
// checksums or wal_log_hints: XLOG_HEAP2_VISIBLE leaves the heap page's LSN
// alone, as XLogHintBitIsNeeded() is false there.
//
// Every inconsistency PostgreSQL would PANIC on (a line pointer beyond the
// end, a tuple that does not fit, bad page pointers, a truncated record)
// is an error wrapping ErrInvalid, never a panic.
package heapredo

import (
	"encoding/binary"
	"errors"
	"fmt"

	"strata.dev/libs/lsn"
	"strata.dev/libs/walrecord"
	"strata.dev/pageserver/ingest/pgrecords"
	"strata.dev/pageserver/pgpage"
)

// ErrInvalid is wrapped by every error: the record cannot apply to the
// page.
var ErrInvalid = errors.New("invalid heap WAL redo request")

// Supported reports whether Apply handles rec for its block reference
// blk. Records that carry a full-page image of blk to apply are not: the
// caller restores the image instead.
func Supported(rec *walrecord.Record, blk *walrecord.BlockRef) bool {
	if blk.HasImage || blk.Fork != forkMain {
		return false
	}
	op := rec.RmInfo() & pgrecords.XLOG_HEAP_OPMASK
	switch rec.Header.RmID {
	case walrecord.RmHeap:
		switch op {
		case pgrecords.XLOG_HEAP_INSERT, pgrecords.XLOG_HEAP_DELETE, pgrecords.XLOG_HEAP_LOCK, pgrecords.XLOG_HEAP_CONFIRM:
			return blk.ID == 0
		case pgrecords.XLOG_HEAP_UPDATE, pgrecords.XLOG_HEAP_HOT_UPDATE:
			return blk.ID == 0 || blk.ID == 1 // the new version's page, the old one's
		}
	case walrecord.RmHeap2:
		switch op {
		case pgrecords.XLOG_HEAP2_MULTI_INSERT, pgrecords.XLOG_HEAP2_LOCK_UPDATED:
			return blk.ID == 0
		case pgrecords.XLOG_HEAP2_VISIBLE:
			return blk.ID == 1 // block 0 is the visibility-map page
		}
	}
	return false
}

// initialises reports whether rec initialises blk's page from scratch
// (XLOG_HEAP_INIT_PAGE: the insert's page, or the new version's page of an
// update across pages).
func initialises(rec *walrecord.Record, blk *walrecord.BlockRef) bool {
	if rec.RmInfo()&pgrecords.XLOG_HEAP_INIT_PAGE == 0 || blk.ID != 0 {
		return false
	}
	switch rec.RmInfo() & pgrecords.XLOG_HEAP_OPMASK {
	case pgrecords.XLOG_HEAP_UPDATE, pgrecords.XLOG_HEAP_HOT_UPDATE:
		return rec.Header.RmID == walrecord.RmHeap && rec.Block(1) != nil
	}
	return true
}

// Apply applies rec to page, the BlockSize-byte page of block reference
// blk, in place. For a record that initialises the page, page's old
// contents do not matter. As XLogReadBufferForRedo does, a record the page
// already has (page LSN at or above the record's end) changes nothing.
func Apply(page []byte, rec *walrecord.Record, blk *walrecord.BlockRef) error {
	if len(page) != pgpage.BlockSize {
		return invalid(rec, "page of %d bytes", len(page))
	}
	if !Supported(rec, blk) {
		return invalid(rec, "record type %s/%#x for block id %d is not applied in Go",
			walrecord.RmgrName(rec.Header.RmID), rec.RmInfo(), blk.ID)
	}
	init := initialises(rec, blk)
	if !init && pgpage.LSN(page) >= rec.EndLSN {
		return nil // BLK_DONE
	}
	var err error
	op := rec.RmInfo() & pgrecords.XLOG_HEAP_OPMASK
	if rec.Header.RmID == walrecord.RmHeap {
		switch op {
		case pgrecords.XLOG_HEAP_INSERT:
			err = insert(page, rec, blk, init)
		case pgrecords.XLOG_HEAP_DELETE:
			err = deleteTuple(page, rec, blk)
		case pgrecords.XLOG_HEAP_LOCK:
			err = lock(page, rec, blk, false)
		case pgrecords.XLOG_HEAP_CONFIRM:
			err = confirm(page, rec, blk)
		default:
			err = update(page, rec, blk, init)
		}
	} else {
		switch op {
		case pgrecords.XLOG_HEAP2_MULTI_INSERT:
			err = multiInsert(page, rec, blk, init)
		case pgrecords.XLOG_HEAP2_LOCK_UPDATED:
			err = lock(page, rec, blk, true)
		default:
			err = visible(page)
		}
	}
	if err != nil {
		return fmt.Errorf("%w: %s/%#x at %s: %w", ErrInvalid, walrecord.RmgrName(rec.Header.RmID), rec.RmInfo(), rec.EndLSN, err)
	}
	return nil
}

func invalid(rec *walrecord.Record, format string, args ...any) error {
	return fmt.Errorf("%w: %s/%#x at %s: %s", ErrInvalid, walrecord.RmgrName(rec.Header.RmID), rec.RmInfo(), rec.EndLSN, fmt.Sprintf(format, args...))
}

const (
	forkMain = 0

	// Insert flags (heapam_xlog.h).
	insertAllVisibleCleared = 1 << 0
	insertAllFrozenSet      = 1 << 5

	sizeOfHeapInsert       = 3 // offnum u16, flags u8
	sizeOfHeapHeader       = 5 // xl_heap_header: t_infomask2, t_infomask u16, t_hoff u8
	sizeOfHeapMultiInsert  = 4 // flags u8, pad, ntuples u16, then offsets[]
	sizeOfMultiInsertTuple = 7 // datalen, t_infomask2, t_infomask u16, t_hoff u8
)

// insert is heap_xlog_insert's change to the heap page.
func insert(page []byte, rec *walrecord.Record, blk *walrecord.BlockRef, init bool) error {
	md := rec.MainData
	if len(md) < sizeOfHeapInsert {
		return fmt.Errorf("main data of %d bytes, want %d", len(md), sizeOfHeapInsert)
	}
	offnum := binary.LittleEndian.Uint16(md[0:])
	flags := md[2]
	if init {
		pageInit(page)
	}
	data := blk.Data
	if len(data) <= sizeOfHeapHeader {
		return fmt.Errorf("block data of %d bytes, want more than the %d-byte tuple header", len(data), sizeOfHeapHeader)
	}
	if max := maxOffset(page); int(offnum) > max+1 {
		return fmt.Errorf("invalid max offset number: inserting at %d on a page with %d line pointers", offnum, max)
	}
	hdr := tupleHeader{
		infomask2: binary.LittleEndian.Uint16(data[0:]),
		infomask:  binary.LittleEndian.Uint16(data[2:]),
		hoff:      data[4],
	}
	if err := addTuple(page, rec.Header.XID, blk.Blkno, offnum, hdr, data[sizeOfHeapHeader:]); err != nil {
		return err
	}
	finishInsert(page, rec.EndLSN, flags)
	return nil
}

// multiInsert is heap_xlog_multi_insert's change to the heap page.
func multiInsert(page []byte, rec *walrecord.Record, blk *walrecord.BlockRef, init bool) error {
	md := rec.MainData
	if len(md) < sizeOfHeapMultiInsert {
		return fmt.Errorf("main data of %d bytes, want at least %d", len(md), sizeOfHeapMultiInsert)
	}
	flags := md[0]
	ntuples := int(binary.LittleEndian.Uint16(md[2:]))
	offsets := md[sizeOfHeapMultiInsert:]
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
			offnum = binary.LittleEndian.Uint16(offsets[2*i:])
		}
		if max := maxOffset(page); int(offnum) > max+1 {
			return fmt.Errorf("invalid max offset number: tuple %d at %d on a page with %d line pointers", i, offnum, max)
		}
		pos += pos & 1 // SHORTALIGN: the block data starts MAXALIGNed
		if pos+sizeOfMultiInsertTuple > len(data) {
			return fmt.Errorf("tuple %d of %d: header at %d beyond the %d bytes of block data", i, ntuples, pos, len(data))
		}
		t := data[pos:]
		n := int(binary.LittleEndian.Uint16(t[0:]))
		hdr := tupleHeader{
			infomask2: binary.LittleEndian.Uint16(t[2:]),
			infomask:  binary.LittleEndian.Uint16(t[4:]),
			hoff:      t[6],
		}
		pos += sizeOfMultiInsertTuple
		if pos+n > len(data) {
			return fmt.Errorf("tuple %d of %d: %d bytes at %d beyond the %d bytes of block data", i, ntuples, n, pos, len(data))
		}
		if err := addTuple(page, rec.Header.XID, blk.Blkno, offnum, hdr, data[pos:pos+n]); err != nil {
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
	if flags&insertAllVisibleCleared != 0 {
		setFlags(page, flags16(page)&^pdAllVisible)
	}
	if flags&insertAllFrozenSet != 0 {
		setFlags(page, flags16(page)|pdAllVisible)
	}
}

// visible is heap_xlog_visible's change to the heap page: PD_ALL_VISIBLE,
// and no new LSN (see the package comment).
func visible(page []byte) error {
	setFlags(page, flags16(page)|pdAllVisible)
	return nil
}
