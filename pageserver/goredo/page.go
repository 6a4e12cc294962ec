package goredo

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
	pageHeaderSize    = pgpage.HeaderSize
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

func maxAlign(n int) int { return (n + 7) &^ 7 }

// setPageFlag sets (on) or clears one pd_flags bit.
func setPageFlag(page []byte, flag uint16, on bool) {
	f := le.Uint16(page[pdFlags:]) &^ flag
	if on {
		f |= flag
	}
	le.PutUint16(page[pdFlags:], f)
}

// checkNewOffset is the check the insert and update redo routines make
// before PageAddItem: the tuple goes at most one past the last line
// pointer.
func checkNewOffset(page []byte, off uint16) error {
	if max := maxOffset(page); int(off) > max+1 {
		return fmt.Errorf("invalid max offset number: a tuple at %d on a page with %d line pointers", off, max)
	}
	return nil
}

// maxOffset is PageGetMaxOffsetNumber, but never beyond the line pointers
// that fit in the page: a corrupt pd_lower must not make a read leave it.
func maxOffset(page []byte) int {
	lower := min(int(le.Uint16(page[pdLower:])), len(page))
	return max(0, lower-pageHeaderSize) / itemIDSize
}

// lineItem is an ItemIdData (storage/itemid.h): lp_off:15, lp_flags:2,
// lp_len:15, in that bit order.
type lineItem uint32

func newLineItem(off int, flags uint32, n int) lineItem {
	return lineItem(uint32(off) | flags<<15 | uint32(n)<<17)
}

func (l lineItem) off() int                 { return int(l & 0x7fff) }
func (l lineItem) flags() uint32            { return uint32(l) >> 15 & 3 }
func (l lineItem) len() int                 { return int(l >> 17) }
func (l lineItem) used() bool               { return l.flags() != lpUnused } // ItemIdIsUsed
func (l lineItem) storage() bool            { return l.len() != 0 }          // ItemIdHasStorage
func (l lineItem) withOff(off int) lineItem { return l&^0x7fff | lineItem(off) }

// itemID is line pointer off (1-based); setItemID sets it.
func itemID(page []byte, off int) lineItem {
	return lineItem(le.Uint32(page[pageHeaderSize+(off-1)*itemIDSize:]))
}

func setItemID(page []byte, off int, l lineItem) {
	le.PutUint32(page[pageHeaderSize+(off-1)*itemIDSize:], uint32(l))
}

// pageInit is PageInit(page, BLCKSZ, 0).
func pageInit(page []byte) {
	clear(page)
	le.PutUint16(page[pdLower:], pageHeaderSize)
	le.PutUint16(page[pdUpper:], pgpage.BlockSize)
	le.PutUint16(page[pdSpecial:], pgpage.BlockSize)
	le.PutUint16(page[pdPageSizeVersion:], pgpage.BlockSize|pageLayoutVersion)
}

// pointers reads pd_lower, pd_upper and pd_special and makes the check
// PageAddItemExtended makes before using them ("corrupted page pointers");
// PageRepairFragmentation also wants pd_special MAXALIGNed (aligned).
func pointers(page []byte, aligned bool) (lower, upper, special int, err error) {
	lower, upper, special = int(le.Uint16(page[pdLower:])), int(le.Uint16(page[pdUpper:])), int(le.Uint16(page[pdSpecial:]))
	if lower < pageHeaderSize || lower > upper || upper > special || special > pgpage.BlockSize || aligned && special != maxAlign(special) {
		return 0, 0, 0, fmt.Errorf("corrupted page pointers: lower = %d, upper = %d, special = %d", lower, upper, special)
	}
	return lower, upper, special, nil
}

// placeItem is PageAddItemExtended(page, item, size, offnum, flags) up to
// the copy: it checks the page and the offset, makes room for a line
// pointer at offnum (moving the ones from offnum on up, unless overwrite),
// sets it and the page's bounds, and returns the size bytes the caller
// copies the item into. offnum must be given (not InvalidOffsetNumber).
func placeItem(page []byte, offnum uint16, size int, overwrite, isHeap bool) ([]byte, error) {
	lower, upper, _, err := pointers(page, false)
	if err != nil {
		return nil, err
	}
	if offnum == 0 {
		return nil, fmt.Errorf("invalid offset number 0")
	}
	limit := maxOffset(page) + 1
	shuffle := false
	if int(offnum) < limit {
		if overwrite {
			if id := itemID(page, int(offnum)); id.used() || id.storage() {
				return nil, fmt.Errorf("will not overwrite used line pointer %d", offnum)
			}
		} else {
			shuffle = true
		}
	}
	if int(offnum) > limit {
		return nil, fmt.Errorf("offset %d is beyond the first unused line pointer %d", offnum, limit)
	}
	if isHeap && offnum > maxHeapTuplesPerPage {
		return nil, fmt.Errorf("offset %d is beyond MaxHeapTuplesPerPage", offnum)
	}
	if int(offnum) == limit || shuffle {
		lower += itemIDSize
	}
	upper -= maxAlign(size)
	if lower > upper {
		return nil, fmt.Errorf("failed to add item: %d bytes at %d do not fit (lower %d, upper %d)", size, offnum, lower, upper+maxAlign(size))
	}
	at := pageHeaderSize + (int(offnum)-1)*itemIDSize
	if shuffle {
		copy(page[at+itemIDSize:], page[at:pageHeaderSize+(limit-1)*itemIDSize])
	}
	setItemID(page, int(offnum), newLineItem(upper, lpNormal, size))
	le.PutUint16(page[pdLower:], uint16(lower))
	le.PutUint16(page[pdUpper:], uint16(upper))
	return page[upper : upper+size], nil
}

// addTuple builds the heap tuple the insert and update redo routines
// make (the header from the record, xmin = xid, cmin = FirstCommandId,
// t_ctid = (blkno, offnum), then the body: null bitmap, padding and data,
// given in parts) and puts it at offnum with PageAddItem(page, tuple, len,
// offnum, overwrite = true, is_heap = true). It returns the tuple.
func addTuple(page []byte, xid, blkno uint32, offnum uint16, h tupleHeader, body ...[]byte) ([]byte, error) {
	size := tupleHeaderSize
	for _, b := range body {
		size += len(b)
	}
	t, err := placeItem(page, offnum, size, true, true)
	if err != nil {
		return nil, err
	}
	clear(t[:tupleHeaderSize])
	le.PutUint32(t[tXmin:], xid)
	le.PutUint32(t[tCid:], 0) // FirstCommandId
	setCtid(t, blkno, offnum)
	le.PutUint16(t[tInfomask2:], h.infomask2)
	le.PutUint16(t[tInfomask:], h.infomask&^heapComboCID)
	t[tHoff] = h.hoff
	at := tupleHeaderSize
	for _, b := range body {
		at += copy(t[at:], b)
	}
	return t, nil
}
