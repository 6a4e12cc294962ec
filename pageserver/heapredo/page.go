package heapredo

// The parts of bufpage.c and htup_details.h heap redo needs, on a page in
// the server's (little-endian) byte order.

import (
	"encoding/binary"
	"fmt"

	"strata.dev/pageserver/pgpage"
)

// PageHeaderData offsets and flags (storage/bufpage.h).
const (
	pdFlags           = 10
	pdLower           = 12
	pdUpper           = 14
	pdSpecial         = 16
	pdPageSizeVersion = 18
	pageHeaderSize    = 24 // SizeOfPageHeaderData
	pageLayoutVersion = 4

	pdAllVisible = 0x0004

	itemIDSize = 4
	lpNormal   = 1

	maxHeapTuplesPerPage = 291 // MaxHeapTuplesPerPage for 8 KiB pages
)

// HeapTupleHeaderData (access/htup_details.h): 23 bytes before the null
// bitmap.
const (
	tupleHeaderSize = 23 // SizeofHeapTupleHeader
	tXmin           = 0
	tCid            = 8 // t_field3: t_cid
	tCtid           = 12
	tInfomask2      = 18
	tInfomask       = 20
	tHoff           = 22

	heapComboCID = 0x0020
)

type tupleHeader struct {
	infomask2, infomask uint16
	hoff                uint8
}

var le = binary.LittleEndian

func flags16(page []byte) uint16     { return le.Uint16(page[pdFlags:]) }
func setFlags(page []byte, f uint16) { le.PutUint16(page[pdFlags:], f) }
func maxAlign(n int) int             { return (n + 7) &^ 7 }
func maxOffset(page []byte) int {
	return max(0, int(le.Uint16(page[pdLower:]))-pageHeaderSize) / itemIDSize
}
func itemID(page []byte, off int) uint32 { return le.Uint32(page[pageHeaderSize+(off-1)*itemIDSize:]) }

// pageInit is PageInit(page, BLCKSZ, 0).
func pageInit(page []byte) {
	clear(page)
	le.PutUint16(page[pdLower:], pageHeaderSize)
	le.PutUint16(page[pdUpper:], pgpage.BlockSize)
	le.PutUint16(page[pdSpecial:], pgpage.BlockSize)
	le.PutUint16(page[pdPageSizeVersion:], pgpage.BlockSize|pageLayoutVersion)
}

// checkPointers is the check PageAddItemExtended makes before using the
// page header ("corrupted page pointers").
func checkPointers(page []byte) error {
	lower, upper, special := int(le.Uint16(page[pdLower:])), int(le.Uint16(page[pdUpper:])), int(le.Uint16(page[pdSpecial:]))
	if lower < pageHeaderSize || lower > upper || upper > special || special > pgpage.BlockSize {
		return fmt.Errorf("corrupted page pointers: lower = %d, upper = %d, special = %d", lower, upper, special)
	}
	return nil
}

// addTuple builds the heap tuple the insert redo routines make (the
// header from the record, xmin = xid, cmin = FirstCommandId, t_ctid =
// (blkno, offnum), then body: null bitmap, padding and data) and puts it
// at offnum with PageAddItem(page, tuple, len, offnum, overwrite = true,
// is_heap = true).
func addTuple(page []byte, xid, blkno uint32, offnum uint16, h tupleHeader, body []byte) error {
	if err := checkPointers(page); err != nil {
		return err
	}
	size := tupleHeaderSize + len(body)
	limit := maxOffset(page) + 1
	if offnum == 0 {
		return fmt.Errorf("invalid offset number 0")
	}
	if int(offnum) < limit {
		if id := itemID(page, int(offnum)); id>>15&3 != 0 || id>>17 != 0 {
			return fmt.Errorf("will not overwrite used line pointer %d", offnum)
		}
	}
	if int(offnum) > limit {
		return fmt.Errorf("offset %d is beyond the first unused line pointer %d", offnum, limit)
	}
	if offnum > maxHeapTuplesPerPage {
		return fmt.Errorf("offset %d is beyond MaxHeapTuplesPerPage", offnum)
	}
	lower := int(le.Uint16(page[pdLower:]))
	if int(offnum) == limit {
		lower += itemIDSize
	}
	upper := int(le.Uint16(page[pdUpper:])) - maxAlign(size)
	if lower > upper {
		return fmt.Errorf("failed to add tuple: %d bytes at %d do not fit (lower %d, upper %d)", size, offnum, lower, upper+maxAlign(size))
	}
	le.PutUint32(page[pageHeaderSize+(int(offnum)-1)*itemIDSize:], uint32(upper)|lpNormal<<15|uint32(size)<<17)

	t := page[upper : upper+size]
	clear(t[:tupleHeaderSize])
	le.PutUint32(t[tXmin:], xid)
	le.PutUint32(t[tCid:], 0) // FirstCommandId
	le.PutUint16(t[tCtid:], uint16(blkno>>16))
	le.PutUint16(t[tCtid+2:], uint16(blkno))
	le.PutUint16(t[tCtid+4:], offnum)
	le.PutUint16(t[tInfomask2:], h.infomask2)
	le.PutUint16(t[tInfomask:], h.infomask&^heapComboCID)
	t[tHoff] = h.hoff
	copy(t[tupleHeaderSize:], body)

	le.PutUint16(page[pdLower:], uint16(lower))
	le.PutUint16(page[pdUpper:], uint16(upper))
	return nil
}
