package goredo

// Redo of XLOG_HEAP2_PRUNE (heap_page_prune_execute, then
// PageRepairFragmentation) and XLOG_HEAP2_VACUUM (line pointers set unused,
// then PageTruncateLinePointerArray), from bufpage.c and pruneheap.c.

import (
	"fmt"

	"strata.dev/libs/walrecord"
	"strata.dev/pageserver/pgpage"
)

const (
	lpUnused   = 0
	lpRedirect = 2
	lpDead     = 3

	pdHasFreeLines = 0x0001

	sizeOfHeapPrune  = 8 // latestRemovedXid u32, nredirected u16, ndead u16
	sizeOfHeapVacuum = 2 // nunused u16
)

// lineOffsets reads n offset numbers from b, each naming a line pointer of
// page.
func lineOffsets(page []byte, b []byte, n int, what string) ([]uint16, error) {
	if len(b) < 2*n {
		return nil, fmt.Errorf("%d bytes for %d %s offsets", len(b), n, what)
	}
	offs := make([]uint16, n)
	max := maxOffset(page)
	for i := range offs {
		offs[i] = le.Uint16(b[2*i:])
		if offs[i] == 0 || int(offs[i]) > max {
			return nil, fmt.Errorf("%s offset %d on a page with %d line pointers", what, offs[i], max)
		}
	}
	return offs, nil
}

func setItemID(page []byte, off uint16, lpOff, flags, n uint32) {
	le.PutUint32(page[pageHeaderSize+(int(off)-1)*itemIDSize:], lpOff|flags<<15|n<<17)
}

// prune is heap_xlog_prune's change: redirects, dead and unused line
// pointers, then the page compacted.
func prune(page []byte, rec *walrecord.Record, blk *walrecord.BlockRef) error {
	md := rec.MainData
	if len(md) < sizeOfHeapPrune {
		return fmt.Errorf("main data of %d bytes, want %d", len(md), sizeOfHeapPrune)
	}
	nredirected, ndead := int(le.Uint16(md[4:])), int(le.Uint16(md[6:]))
	data := blk.Data
	if len(data)%2 != 0 || len(data) < 2*(2*nredirected+ndead) {
		return fmt.Errorf("block data of %d bytes for %d redirects and %d dead line pointers", len(data), nredirected, ndead)
	}
	redirected, err := lineOffsets(page, data, 2*nredirected, "redirect")
	if err != nil {
		return err
	}
	data = data[4*nredirected:]
	dead, err := lineOffsets(page, data, ndead, "dead")
	if err != nil {
		return err
	}
	data = data[2*ndead:]
	unused, err := lineOffsets(page, data, len(data)/2, "unused")
	if err != nil {
		return err
	}
	for i := 0; i < len(redirected); i += 2 {
		setItemID(page, redirected[i], uint32(redirected[i+1]), lpRedirect, 0)
	}
	for _, off := range dead {
		setItemID(page, off, 0, lpDead, 0)
	}
	for _, off := range unused {
		setItemID(page, off, 0, lpUnused, 0)
	}
	if err := repairFragmentation(page); err != nil {
		return err
	}
	setPageLSN(page, rec)
	return nil
}

// vacuum is heap_xlog_vacuum's change.
func vacuum(page []byte, rec *walrecord.Record, blk *walrecord.BlockRef) error {
	md := rec.MainData
	if len(md) < sizeOfHeapVacuum {
		return fmt.Errorf("main data of %d bytes, want %d", len(md), sizeOfHeapVacuum)
	}
	unused, err := lineOffsets(page, blk.Data, int(le.Uint16(md)), "unused")
	if err != nil {
		return err
	}
	for _, off := range unused {
		setItemID(page, off, 0, lpUnused, 0)
	}
	truncateLinePointers(page)
	setPageLSN(page, rec)
	return nil
}

// repairFragmentation is PageRepairFragmentation: unused line pointers
// zeroed, the tuples with storage packed against pd_special in line
// pointer order (compactify_tuples: whatever path it takes, that is the
// result, each tuple's MAXALIGNed extent copied with its padding; bytes
// below the new pd_upper keep what they had), trailing unused line
// pointers cut off and PD_HAS_FREE_LINES set to whether unused ones
// remain.
func repairFragmentation(page []byte) error {
	lower, upper, special := int(le.Uint16(page[pdLower:])), int(le.Uint16(page[pdUpper:])), int(le.Uint16(page[pdSpecial:]))
	if lower < pageHeaderSize || lower > upper || upper > special || special > pgpage.BlockSize || special != maxAlign(special) {
		return fmt.Errorf("corrupted page pointers: lower = %d, upper = %d, special = %d", lower, upper, special)
	}
	type item struct{ off, at, alen int } // line pointer, tuple offset, MAXALIGNed length
	var items []item
	nline := maxOffset(page)
	nunused, total, finalUsed := 0, 0, 0
	for i := 1; i <= nline; i++ {
		id := itemID(page, i)
		if id>>15&3 == lpUnused {
			setItemID(page, uint16(i), 0, lpUnused, 0)
			nunused++
			continue
		}
		if n := int(id >> 17); n != 0 {
			at := int(id & 0x7fff)
			if at < upper || at >= special {
				return fmt.Errorf("corrupted line pointer: %d", at)
			}
			if at+maxAlign(n) > pgpage.BlockSize {
				return fmt.Errorf("corrupted line pointer: %d bytes at %d", n, at)
			}
			items = append(items, item{off: i, at: at, alen: maxAlign(n)})
			total += maxAlign(n)
		}
		finalUsed = i
	}
	if len(items) == 0 {
		le.PutUint16(page[pdUpper:], uint16(special))
	} else {
		if total > special-lower {
			return fmt.Errorf("corrupted item lengths: total %d, available space %d", total, special-lower)
		}
		var orig [pgpage.BlockSize]byte
		copy(orig[upper:], page[upper:])
		up := special
		for _, it := range items {
			up -= it.alen
			copy(page[up:up+it.alen], orig[it.at:it.at+it.alen])
			id := itemID(page, it.off)
			le.PutUint32(page[pageHeaderSize+(it.off-1)*itemIDSize:], id&^0x7fff|uint32(up))
		}
		le.PutUint16(page[pdUpper:], uint16(up))
	}
	if finalUsed != nline {
		trailing := nline - finalUsed
		nunused -= trailing
		le.PutUint16(page[pdLower:], uint16(lower-itemIDSize*trailing))
	}
	setHasFreeLines(page, nunused > 0)
	return nil
}

// truncateLinePointers is PageTruncateLinePointerArray: trailing unused
// line pointers cut off, but never the first one.
func truncateLinePointers(page []byte) {
	countDone, hint, trailing := false, false, 0
	for i := maxOffset(page); i >= 1; i-- {
		used := itemID(page, i)>>15&3 != lpUnused
		if !countDone && i > 1 {
			if !used {
				trailing++
			} else {
				countDone = true
			}
		} else if !used {
			hint = true
			break
		}
	}
	if trailing > 0 {
		le.PutUint16(page[pdLower:], le.Uint16(page[pdLower:])-uint16(itemIDSize*trailing))
	}
	setHasFreeLines(page, hint)
}

func setHasFreeLines(page []byte, on bool) {
	if on {
		setFlags(page, flags16(page)|pdHasFreeLines)
	} else {
		setFlags(page, flags16(page)&^pdHasFreeLines)
	}
}
