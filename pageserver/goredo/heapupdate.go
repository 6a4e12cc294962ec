package goredo

// Redo of the records that change an existing tuple's header (DELETE,
// LOCK, LOCK_UPDATED, CONFIRM) and of UPDATE and HOT_UPDATE, which also
// insert the new version, possibly rebuilt from a prefix and suffix of the
// old one.

import (
	"fmt"

	"strata.dev/libs/walrecord"
	"strata.dev/pageserver/ingest/pgrecords"
	"strata.dev/pageserver/pgpage"
)

// t_infomask and t_infomask2 bits (access/htup_details.h).
const (
	heapXmaxKeyshrLock = 0x0010
	heapXmaxExclLock   = 0x0040
	heapXmaxLockOnly   = 0x0080
	heapLockMask       = heapXmaxExclLock | heapXmaxKeyshrLock
	heapXmaxCommitted  = 0x0400
	heapXmaxInvalid    = 0x0800
	heapXmaxIsMulti    = 0x1000
	heapXmaxBits       = heapXmaxCommitted | heapXmaxInvalid | heapXmaxIsMulti | heapLockMask | heapXmaxLockOnly
	heapMoved          = 0xC000 // HEAP_MOVED_OFF | HEAP_MOVED_IN

	heapKeysUpdated = 0x2000 // t_infomask2
	heapHotUpdated  = 0x4000 // t_infomask2

	tXmax      = 4
	pdPruneXID = 20

	// xl_heap_*.infobits_set (heapam_xlog.h).
	xlhlXmaxIsMulti    = 0x01
	xlhlXmaxLockOnly   = 0x02
	xlhlXmaxExclLock   = 0x04
	xlhlXmaxKeyshrLock = 0x08
	xlhlKeysUpdated    = 0x10

	deleteIsSuper         = 1 << 3
	deleteIsPartitionMove = 1 << 5

	updatePrefixFromOld = 1 << 5
	updateSuffixFromOld = 1 << 6

	sizeOfHeapConfirm = 2 // offnum u16
)

// tupleAt returns the tuple of the normal line pointer off, as a slice of
// the page (PostgreSQL says elog(PANIC, "invalid lp") for any other).
func tupleAt(page []byte, off uint16) ([]byte, error) {
	if off == 0 || int(off) > maxOffset(page) {
		return nil, fmt.Errorf("invalid lp: offset %d on a page with %d line pointers", off, maxOffset(page))
	}
	id := itemID(page, int(off))
	start, n := id.off(), id.len()
	if id.flags() != lpNormal {
		return nil, fmt.Errorf("invalid lp: line pointer %d is not normal", off)
	}
	if n < tupleHeaderSize || start+n > len(page) {
		return nil, fmt.Errorf("line pointer %d: a tuple of %d bytes at %d", off, n, start)
	}
	return page[start : start+n], nil
}

func infomask(t []byte) uint16        { return le.Uint16(t[tInfomask:]) }
func infomask2(t []byte) uint16       { return le.Uint16(t[tInfomask2:]) }
func setInfomask(t []byte, v uint16)  { le.PutUint16(t[tInfomask:], v) }
func setInfomask2(t []byte, v uint16) { le.PutUint16(t[tInfomask2:], v) }

func setCtid(t []byte, blkno uint32, off uint16) {
	le.PutUint16(t[tCtid:], uint16(blkno>>16))
	le.PutUint16(t[tCtid+2:], uint16(blkno))
	le.PutUint16(t[tCtid+4:], off)
}

// clearXmax is what every redo that sets a new xmax starts with: the old
// xmax bits and HEAP_MOVED cleared, HEAP_KEYS_UPDATED too, then the bits
// of infobits set (fix_infomask_from_infobits).
func clearXmax(t []byte, infobits uint8) {
	m := infomask(t) &^ (heapXmaxBits | heapMoved)
	m2 := infomask2(t) &^ heapKeysUpdated
	if infobits&xlhlXmaxIsMulti != 0 {
		m |= heapXmaxIsMulti
	}
	if infobits&xlhlXmaxLockOnly != 0 {
		m |= heapXmaxLockOnly
	}
	if infobits&xlhlXmaxExclLock != 0 {
		m |= heapXmaxExclLock
	}
	if infobits&xlhlXmaxKeyshrLock != 0 {
		m |= heapXmaxKeyshrLock
	}
	if infobits&xlhlKeysUpdated != 0 {
		m2 |= heapKeysUpdated
	}
	setInfomask(t, m)
	setInfomask2(t, m2)
}

// setXmaxCmax is HeapTupleHeaderSetXmax(xmax) and HeapTupleHeaderSetCmax(
// FirstCommandId, false).
func setXmaxCmax(t []byte, xmax uint32) {
	le.PutUint32(t[tXmax:], xmax)
	setCmax(t)
}

// setCmax is HeapTupleHeaderSetCmax(FirstCommandId, false).
func setCmax(t []byte) {
	le.PutUint32(t[tCid:], 0)
	setInfomask(t, infomask(t)&^heapComboCID)
}

// setPrunable is PageSetPrunable.
func setPrunable(page []byte, xid uint32) {
	if cur := le.Uint32(page[pdPruneXID:]); cur == 0 || xidPrecedes(xid, cur) {
		le.PutUint32(page[pdPruneXID:], xid)
	}
}

// xidPrecedes is TransactionIdPrecedes: modulo-2^32 for normal ids.
func xidPrecedes(a, b uint32) bool {
	if a < 3 || b < 3 {
		return a < b
	}
	return int32(a-b) < 0
}

// lockedOnly is HEAP_XMAX_IS_LOCKED_ONLY.
func lockedOnly(m uint16) bool {
	return m&heapXmaxLockOnly != 0 || m&(heapXmaxIsMulti|heapLockMask) == heapXmaxExclLock
}

// deleteTuple is heap_xlog_delete's change to the page.
func deleteTuple(page []byte, rec *walrecord.Record, blk *walrecord.BlockRef, _ bool) error {
	md, err := mainData(rec, pgrecords.SizeOfHeapDelete)
	if err != nil {
		return err
	}
	xmax, off, infobits, flags := le.Uint32(md[0:]), le.Uint16(md[4:]), md[6], md[7]
	t, err := tupleAt(page, off)
	if err != nil {
		return err
	}
	clearXmax(t, infobits)
	setInfomask2(t, infomask2(t)&^heapHotUpdated)
	if flags&deleteIsSuper == 0 {
		le.PutUint32(t[tXmax:], xmax)
	} else {
		le.PutUint32(t[tXmin:], 0)
	}
	setCmax(t)
	setPrunable(page, rec.Header.XID)
	if flags&pgrecords.XLH_DELETE_ALL_VISIBLE_CLEARED != 0 {
		setPageFlag(page, pdAllVisible, false)
	}
	if flags&deleteIsPartitionMove != 0 {
		setCtid(t, 0xFFFFFFFF, 0xFFFD) // HeapTupleHeaderSetMovedPartitions
	} else {
		setCtid(t, blk.Blkno, off)
	}
	pgpage.SetLSN(page, rec.EndLSN)
	return nil
}

// lockTuple is heap_xlog_lock's change, lockUpdated
// heap_xlog_lock_updated's.
func lockTuple(page []byte, rec *walrecord.Record, blk *walrecord.BlockRef, _ bool) error {
	return lock(page, rec, blk, false)
}

func lockUpdated(page []byte, rec *walrecord.Record, blk *walrecord.BlockRef, _ bool) error {
	return lock(page, rec, blk, true)
}

func lock(page []byte, rec *walrecord.Record, blk *walrecord.BlockRef, updated bool) error {
	md, err := mainData(rec, pgrecords.SizeOfHeapLock)
	if err != nil {
		return err
	}
	xmax, off, infobits := le.Uint32(md[0:]), le.Uint16(md[4:]), md[6]
	t, err := tupleAt(page, off)
	if err != nil {
		return err
	}
	clearXmax(t, infobits)
	if updated {
		le.PutUint32(t[tXmax:], xmax)
	} else {
		if lockedOnly(infomask(t)) {
			setInfomask2(t, infomask2(t)&^heapHotUpdated)
			setCtid(t, blk.Blkno, off)
		}
		setXmaxCmax(t, xmax)
	}
	pgpage.SetLSN(page, rec.EndLSN)
	return nil
}

// confirm is heap_xlog_confirm's change: a speculative insertion made
// real.
func confirm(page []byte, rec *walrecord.Record, blk *walrecord.BlockRef, _ bool) error {
	md, err := mainData(rec, sizeOfHeapConfirm)
	if err != nil {
		return err
	}
	off := le.Uint16(md[0:])
	t, err := tupleAt(page, off)
	if err != nil {
		return err
	}
	setCtid(t, blk.Blkno, off)
	pgpage.SetLSN(page, rec.EndLSN)
	return nil
}

// update is heap_xlog_update's change to one page: the old version's
// (block 1 of a cross-page update), the new version's (block 0 of one), or
// both (an update within a page, HOT or not).
func update(page []byte, rec *walrecord.Record, blk *walrecord.BlockRef, init bool) error {
	// init: the new version goes to a page this record initialises, which
	// is blk (see initialises).
	md, err := mainData(rec, pgrecords.SizeOfHeapUpdate)
	if err != nil {
		return err
	}
	oldXmax, oldOff, oldInfobits, flags := le.Uint32(md[0:]), le.Uint16(md[4:]), md[6], md[7]
	newXmax, newOff := le.Uint32(md[8:]), le.Uint16(md[12:])
	hot := rec.RmInfo()&pgrecords.XLOG_HEAP_OPMASK == pgrecords.XLOG_HEAP_HOT_UPDATE
	newBlock := rec.Block(0)
	if newBlock == nil {
		return fmt.Errorf("no block reference 0")
	}
	samePage := rec.Block(1) == nil
	oldSide, newSide := blk.ID == 1 || samePage, blk.ID == 0

	var old []byte
	if oldSide {
		var err error
		if old, err = tupleAt(page, oldOff); err != nil {
			return err
		}
		clearXmax(old, oldInfobits)
		if hot {
			setInfomask2(old, infomask2(old)|heapHotUpdated)
		} else {
			setInfomask2(old, infomask2(old)&^heapHotUpdated)
		}
		setXmaxCmax(old, oldXmax)
		setCtid(old, newBlock.Blkno, newOff)
		setPrunable(page, rec.Header.XID)
		if flags&pgrecords.XLH_UPDATE_OLD_ALL_VISIBLE_CLEARED != 0 {
			setPageFlag(page, pdAllVisible, false)
		}
		pgpage.SetLSN(page, rec.EndLSN)
	}
	if !newSide {
		return nil
	}
	if init {
		pageInit(page)
	}
	if err := checkNewOffset(page, newOff); err != nil {
		return err
	}
	data := blk.Data
	var prefix, suffix int
	if flags&updatePrefixFromOld != 0 {
		if len(data) < 2 {
			return fmt.Errorf("block data of %d bytes has no prefix length", len(data))
		}
		prefix, data = int(le.Uint16(data)), data[2:]
	}
	if flags&updateSuffixFromOld != 0 {
		if len(data) < 2 {
			return fmt.Errorf("block data of %d bytes has no suffix length", len(data))
		}
		suffix, data = int(le.Uint16(data)), data[2:]
	}
	if len(data) < sizeOfHeapHeader {
		return fmt.Errorf("block data of %d bytes has no tuple header", len(data))
	}
	hdr := tupleHeader{infomask2: le.Uint16(data[0:]), infomask: le.Uint16(data[2:]), hoff: data[4]}
	data = data[sizeOfHeapHeader:]
	if (prefix > 0 || suffix > 0) && old == nil {
		return fmt.Errorf("prefix or suffix from an old tuple on another page")
	}
	// The body: the record's bitmap and padding, the old version's
	// prefix, the record's data, the old version's suffix.
	var bitmap, prefixBytes, suffixBytes []byte
	if prefix > 0 || suffix > 0 {
		oldData := old[min(int(old[tHoff]), len(old)):]
		if prefix > len(oldData) || suffix > len(old) {
			return fmt.Errorf("prefix %d and suffix %d bytes of an old tuple of %d", prefix, suffix, len(old))
		}
		prefixBytes, suffixBytes = oldData[:prefix], old[len(old)-suffix:]
	}
	if prefix > 0 {
		n := int(hdr.hoff) - tupleHeaderSize
		if n < 0 || n > len(data) {
			return fmt.Errorf("t_hoff %d with %d bytes of tuple data", hdr.hoff, len(data))
		}
		bitmap, data = data[:n], data[n:]
	}
	t, err := addTuple(page, rec.Header.XID, newBlock.Blkno, newOff, hdr, bitmap, prefixBytes, data, suffixBytes)
	if err != nil {
		return err
	}
	le.PutUint32(t[tXmax:], newXmax)
	if flags&pgrecords.XLH_UPDATE_NEW_ALL_VISIBLE_CLEARED != 0 {
		setPageFlag(page, pdAllVisible, false)
	}
	pgpage.SetLSN(page, rec.EndLSN)
	return nil
}
