// Package goredo applies the simplest and commonest PostgreSQL WAL records
// to a page in Go, byte for byte as PostgreSQL 15's redo routines do in a
// WAL-redo process:
//
//   - heap (heapam.c): XLOG_HEAP_INSERT and XLOG_HEAP2_MULTI_INSERT (with
//     or without XLOG_HEAP_INIT_PAGE), XLOG_HEAP_UPDATE and HOT_UPDATE,
//     DELETE, LOCK, CONFIRM, XLOG_HEAP2_LOCK_UPDATED, XLOG_HEAP2_PRUNE and
//     VACUUM (PageRepairFragmentation), and XLOG_HEAP2_VISIBLE on the heap
//     page and on the visibility-map page (visibilitymap_set);
//   - btree (nbtxlog.c): XLOG_BTREE_INSERT_LEAF, a tuple added to a leaf.
//
// These are most of the records of a bulk load (COPY writes one
// MULTI_INSERT+INIT per page, VACUUM one VISIBLE) and of OLTP (updates,
// inserts, row locks, index inserts), and each one applied here is a
// round trip to a redo process saved. Freezing, in-place updates, index
// page splits and deletions and the rest still go to PostgreSQL (DESIGN.md decision 5: "applies FPIs and the simple records
// natively in Go").
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
package goredo

import (
	"errors"
	"fmt"

	"strata.dev/libs/walrecord"
	"strata.dev/pageserver/ingest/pgrecords"
	"strata.dev/pageserver/key"
	"strata.dev/pageserver/pgpage"
)

// ErrInvalid is wrapped by every error: the record cannot apply to the
// page.
var ErrInvalid = errors.New("invalid WAL redo request")

// Supported reports whether Apply handles rec for its block reference
// blk. Records that carry a full-page image of blk to apply are not: the
// caller restores the image instead.
func Supported(rec *walrecord.Record, blk *walrecord.BlockRef) bool {
	return routineFor(rec, blk) != nil
}

// routine is a redo routine's change to one page; init says the record
// initialises it (see initialises).
type routine func(page []byte, rec *walrecord.Record, blk *walrecord.BlockRef, init bool) error

// routineFor is the routine that applies rec to blk's page, or nil if that
// is not done in Go. It is the one place that says what goredo supports.
func routineFor(rec *walrecord.Record, blk *walrecord.BlockRef) routine {
	if blk.HasImage {
		return nil
	}
	op := rec.RmInfo() & pgrecords.XLOG_HEAP_OPMASK
	switch {
	case blk.Fork == key.ForkVM:
		// Block 0 of XLOG_HEAP2_VISIBLE is the visibility-map page.
		if rec.Header.RmID == walrecord.RmHeap2 && op == pgrecords.XLOG_HEAP2_VISIBLE && blk.ID == 0 {
			return visibleVM
		}
	case blk.Fork != key.ForkMain:
	case rec.Header.RmID == walrecord.RmHeap:
		switch {
		case op == pgrecords.XLOG_HEAP_INSERT && blk.ID == 0:
			return insert
		case op == pgrecords.XLOG_HEAP_DELETE && blk.ID == 0:
			return deleteTuple
		case op == pgrecords.XLOG_HEAP_LOCK && blk.ID == 0:
			return lockTuple
		case op == pgrecords.XLOG_HEAP_CONFIRM && blk.ID == 0:
			return confirm
		case (op == pgrecords.XLOG_HEAP_UPDATE || op == pgrecords.XLOG_HEAP_HOT_UPDATE) && blk.ID <= 1:
			return update // block 0: the new version's page, 1: the old one's
		}
	case rec.Header.RmID == walrecord.RmHeap2:
		switch {
		case op == pgrecords.XLOG_HEAP2_MULTI_INSERT && blk.ID == 0:
			return multiInsert
		case op == pgrecords.XLOG_HEAP2_LOCK_UPDATED && blk.ID == 0:
			return lockUpdated
		case op == pgrecords.XLOG_HEAP2_PRUNE && blk.ID == 0:
			return prune
		case op == pgrecords.XLOG_HEAP2_VACUUM && blk.ID == 0:
			return vacuum
		case op == pgrecords.XLOG_HEAP2_VISIBLE && blk.ID == 1:
			return visible
		}
	case rec.Header.RmID == walrecord.RmBtree:
		if rec.RmInfo() == xlogBtreeInsertLeaf && blk.ID == 0 {
			return btreeInsertLeaf
		}
	}
	return nil
}

// initialises reports whether rec initialises blk's page from scratch
// (XLOG_HEAP_INIT_PAGE: the insert's page, or the new version's page of an
// update across pages).
func initialises(rec *walrecord.Record, blk *walrecord.BlockRef) bool {
	heap := rec.Header.RmID == walrecord.RmHeap || rec.Header.RmID == walrecord.RmHeap2
	if !heap || rec.RmInfo()&pgrecords.XLOG_HEAP_INIT_PAGE == 0 || blk.ID != 0 {
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
	apply := routineFor(rec, blk)
	if apply == nil {
		return invalid(rec, "record type %s/%#x for block id %d is not applied in Go",
			walrecord.RmgrName(rec.Header.RmID), rec.RmInfo(), blk.ID)
	}
	init := initialises(rec, blk)
	if !init && pgpage.LSN(page) >= rec.EndLSN {
		return nil // BLK_DONE
	}
	if err := apply(page, rec, blk, init); err != nil {
		return wrapInvalid(rec, err)
	}
	return nil
}

// mainData is rec's main data, at least size bytes of it.
func mainData(rec *walrecord.Record, size int) ([]byte, error) {
	if len(rec.MainData) < size {
		return nil, fmt.Errorf("main data of %d bytes, want at least %d", len(rec.MainData), size)
	}
	return rec.MainData, nil
}

func invalid(rec *walrecord.Record, format string, args ...any) error {
	return wrapInvalid(rec, fmt.Errorf(format, args...))
}

// wrapInvalid is err as an ErrInvalid naming rec.
func wrapInvalid(rec *walrecord.Record, err error) error {
	return fmt.Errorf("%w: %s/%#x at %s: %w", ErrInvalid, walrecord.RmgrName(rec.Header.RmID), rec.RmInfo(), rec.EndLSN, err)
}
