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

// checkOffsets checks that b holds n offset numbers, each naming a line
// pointer of page.
func checkOffsets(page []byte, b []byte, n int, what string) error {
	if len(b) < 2*n {
		return fmt.Errorf("%d bytes for %d %s offsets", len(b), n, what)
	}
	max := maxOffset(page)
	for i := range n {
		if off := le.Uint16(b[2*i:]); off == 0 || int(off) > max {
			return fmt.Errorf("%s offset %d on a page with %d line pointers", what, off, max)
		}
	}
	return nil
}

// prune is heap_xlog_prune's change: redirects, dead and unused line
// pointers, then the page compacted.
func prune(page []byte, rec *walrecord.Record, blk *walrecord.BlockRef, _ bool) error {
	md, err := mainData(rec, sizeOfHeapPrune)
	if err != nil {
		return err
	}
	nredirected, ndead := int(le.Uint16(md[4:])), int(le.Uint16(md[6:]))
	data := blk.Data
	if len(data)%2 != 0 || len(data) < 2*(2*nredirected+ndead) {
		return fmt.Errorf("block data of %d bytes for %d redirects and %d dead line pointers", len(data), nredirected, ndead)
	}
	redirected, dead, unused := data[:4*nredirected], data[4*nredirected:4*nredirected+2*ndead], data[4*nredirected+2*ndead:]
	if err := checkOffsets(page, redirected, 2*nredirected, "redirect"); err != nil {
		return err
	}
	if err := checkOffsets(page, dead, ndead, "dead"); err != nil {
		return err
	}
	if err := checkOffsets(page, unused, len(unused)/2, "unused"); err != nil {
		return err
	}
	for i := 0; i < len(redirected); i += 4 {
		setItemID(page, int(le.Uint16(redirected[i:])), newLineItem(int(le.Uint16(redirected[i+2:])), lpRedirect, 0))
	}
	for i := 0; i < len(dead); i += 2 {
		setItemID(page, int(le.Uint16(dead[i:])), newLineItem(0, lpDead, 0))
	}
	for i := 0; i < len(unused); i += 2 {
		setItemID(page, int(le.Uint16(unused[i:])), 0)
	}
	if err := repairFragmentation(page); err != nil {
		return err
	}
	pgpage.SetLSN(page, rec.EndLSN)
	return nil
}

// vacuum is heap_xlog_vacuum's change.
func vacuum(page []byte, rec *walrecord.Record, blk *walrecord.BlockRef, _ bool) error {
	md, err := mainData(rec, sizeOfHeapVacuum)
	if err != nil {
		return err
	}
	n := int(le.Uint16(md))
	if err := checkOffsets(page, blk.Data, n, "unused"); err != nil {
		return err
	}
	for i := range n {
		setItemID(page, int(le.Uint16(blk.Data[2*i:])), 0)
	}
	truncateLinePointers(page)
	pgpage.SetLSN(page, rec.EndLSN)
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
	lower, upper, special, err := pointers(page, true)
	if err != nil {
		return err
	}
	type item struct{ off, at, alen int } // line pointer, tuple offset, MAXALIGNed length
	var itemsBuf [maxHeapTuplesPerPage]item
	items := itemsBuf[:0]
	nline := maxOffset(page)
	nunused, total, finalUsed := 0, 0, 0
	presorted, last := true, special
	for i := 1; i <= nline; i++ {
		id := itemID(page, i)
		if !id.used() {
			setItemID(page, i, 0) // ItemIdSetUnused: no length left over
			nunused++
			continue
		}
		if n := id.len(); n != 0 {
			at := id.off()
			if at < upper || at >= special {
				return fmt.Errorf("corrupted line pointer: %d", at)
			}
			if at+maxAlign(n) > pgpage.BlockSize {
				return fmt.Errorf("corrupted line pointer: %d bytes at %d", n, at)
			}
			if len(items) == maxHeapTuplesPerPage {
				return fmt.Errorf("more than %d tuples on a heap page", maxHeapTuplesPerPage)
			}
			if at < last {
				last = at
			} else {
				presorted = false
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
		// Presorted (tuples in descending address order, the usual case),
		// every tuple moves up or stays, and in place is safe; otherwise
		// they are copied from a snapshot, as compactify_tuples does.
		src := page
		if !presorted {
			var orig [pgpage.BlockSize]byte
			copy(orig[upper:], page[upper:])
			src = orig[:]
		}
		up := special
		for _, it := range items {
			up -= it.alen
			copy(page[up:up+it.alen], src[it.at:it.at+it.alen])
			setItemID(page, it.off, itemID(page, it.off).withOff(up))
		}
		le.PutUint16(page[pdUpper:], uint16(up))
	}
	if finalUsed != nline {
		trailing := nline - finalUsed
		nunused -= trailing
		le.PutUint16(page[pdLower:], uint16(lower-itemIDSize*trailing))
	}
	setPageFlag(page, pdHasFreeLines, nunused > 0)
	return nil
}

// truncateLinePointers is PageTruncateLinePointerArray: trailing unused
// line pointers cut off, but never the first one.
func truncateLinePointers(page []byte) {
	countDone, hint, trailing := false, false, 0
	for i := maxOffset(page); i >= 1; i-- {
		used := itemID(page, i).used()
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
	setPageFlag(page, pdHasFreeLines, hint)
}
