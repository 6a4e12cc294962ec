package pagecheck

import (
	"encoding/binary"

	"strata.dev/pageserver/key"
)

// MaskPage blanks what legitimately differs between a page as the WAL
// describes it and the same page in the primary's data file, following
// PostgreSQL's own wal_consistency_checking masks (access/common/bufmask.c
// and each access method's rm_mask):
//
//   - pd_lsn (bytes 0–7): the stored FPI image carries the record's end LSN
//     (as redo would set it) and zero-filled gap pages carry 0, while the
//     primary's page may have been stamped by a later hint-bit FPI or none;
//   - pd_checksum (8–9): the pageserver does not maintain checksums (the
//     test cluster has none anyway);
//   - the hint flags PD_HAS_FREE_LINES, PD_PAGE_FULL and PD_ALL_VISIBLE of
//     pd_flags (10–11) and pd_prune_xid (20–23), set by PostgreSQL without
//     WAL (redo does not set PD_ALL_VISIBLE on a page whose LSN is past
//     the record: mask_page_hint_bits);
//   - the free space between pd_lower and pd_upper: a full-page image
//     leaves it out (the "hole") and the page rebuilt from it has zeros
//     there, the primary's page can have stale bytes;
//   - on heap pages (main fork, no special space), as heap_mask does: the
//     visibility bits of t_infomask (HEAP_XACT_MASK; only the xmax hint
//     bits once xmin is frozen), t_cid (redo writes FirstCommandId) and
//     the padding after each tuple;
//   - on pages with special space (indexes) line pointers marked LP_DEAD,
//     which index scans set without WAL (kill_prior_tuple), read as
//     LP_NORMAL;
//   - on the SP-GiST metapage the cache of last-used pages, which
//     SpGistUpdateMetaPage writes without WAL ("just a hint").
//
// Pages that are all zeros are left alone. Free-space map pages are not
// compared at all (their updates are never WAL-logged in vanilla
// PostgreSQL). Pages with special space also get the masks of their
// access method (maskAccessMethod). MaskPage returns a masked copy; page
// is not modified.
func MaskPage(page []byte, fork uint8) []byte {
	p := append([]byte(nil), page...)
	if allZero(p) {
		return p
	}
	le := binary.LittleEndian
	clear(p[0:10])                                         // pd_lsn, pd_checksum
	le.PutUint16(p[10:], le.Uint16(p[10:])&^(0x1|0x2|0x4)) // PD_HAS_FREE_LINES, PD_PAGE_FULL, PD_ALL_VISIBLE
	clear(p[20:24])                                        // pd_prune_xid
	lower, upper, special := int(le.Uint16(p[12:])), int(le.Uint16(p[14:])), int(le.Uint16(p[16:]))
	if lower < 24 || lower > upper || upper > special || special > len(p) {
		return p // not a standard page (e.g. a VM page has pd_lower = 24 too, and is fine)
	}
	clear(p[lower:upper])
	if isSpGistMeta(p) {
		clear(p[28:92]) // SpGistMetaPageData.lastUsedPages, after the magic number
	}
	if special < len(p) {
		maskAccessMethod(p)
	}
	heap := fork == key.ForkMain && special == len(p)
	for off := 24; off+4 <= lower; off += 4 {
		lp := le.Uint32(p[off:])
		lpOff, lpFlags, lpLen := int(lp&0x7FFF), (lp>>15)&3, int(lp>>17)
		switch {
		case !heap && lpFlags == 3: // LP_DEAD -> LP_NORMAL
			le.PutUint32(p[off:], lp&^(3<<15)|1<<15)
		case heap && lpFlags == 1 && lpLen >= 24 && lpOff+24 <= len(p):
			maskHeapTuple(p[lpOff:])
		}
		if heap && lpLen > 0 && lpOff+maxAlign(lpLen) <= len(p) {
			clear(p[lpOff+lpLen : lpOff+maxAlign(lpLen)]) // padding
		}
	}
	return p
}

// maskHeapTuple masks a heap tuple header as heap_mask does.
func maskHeapTuple(t []byte) {
	le := binary.LittleEndian
	const (
		xactMask   = 0xFFF0 // HEAP_XACT_MASK
		xminFrozen = 0x0300 // HEAP_XMIN_COMMITTED | HEAP_XMIN_INVALID
		xmaxHints  = 0x0C00 // HEAP_XMAX_COMMITTED | HEAP_XMAX_INVALID
	)
	im := le.Uint16(t[20:])
	if im&xminFrozen == xminFrozen {
		im &^= xmaxHints
	} else {
		im &^= xactMask
	}
	le.PutUint16(t[20:], im)
	clear(t[8:12]) // t_cid
}

func maxAlign(n int) int { return (n + 7) &^ 7 }

// maskAccessMethod applies what the rm_mask function of the page's access
// method masks beyond the generic masks, the access method told by the
// page's special space (its size and page id):
//
//   - btree: BTP_HAS_GARBAGE and BTP_SPLIT_END, btpo_cycleid;
//   - hash: LH_PAGE_HAS_DEAD_TUPLES, and everything on an unused page;
//   - gin: everything on a deleted page (redo empties it, the primary only
//     flags it);
//   - gist: the NSN, F_FOLLOW_RIGHT and F_HAS_GARBAGE;
//   - brin: BRIN_EVACUATE_PAGE;
//   - sequence: last_value and log_cnt, which nextval logs ahead of the
//     page (SEQ_LOG_VALS).
func maskAccessMethod(p []byte) {
	le := binary.LittleEndian
	special := int(le.Uint16(p[16:]))
	if special > len(p) || special < 24 {
		return
	}
	o := p[special:]
	maskContent := func() {
		clear(p[24:])
		clear(p[12:16]) // pd_lower, pd_upper
	}
	switch len(o) {
	case 16:
		switch le.Uint16(o[14:]) {
		case 0xFF80: // hash
			flags := le.Uint16(o[12:])
			if flags&0xF == 0 { // LH_UNUSED_PAGE
				maskContent()
				return
			}
			le.PutUint16(o[12:], flags&^(1<<7)) // LH_PAGE_HAS_DEAD_TUPLES
		case 0xFF81: // gist
			clear(o[0:8])                                   // NSN
			le.PutUint16(o[12:], (le.Uint16(o[12:])|8)&^16) // F_FOLLOW_RIGHT set, F_HAS_GARBAGE cleared
		default: // btree: no page id, btpo_cycleid <= MAX_BT_CYCLE_ID
			le.PutUint16(o[12:], le.Uint16(o[12:])&^(1<<6|1<<5)) // BTP_HAS_GARBAGE, BTP_SPLIT_END
			clear(o[14:16])                                      // btpo_cycleid
		}
	case 8:
		id := le.Uint16(o[6:])
		switch {
		case le.Uint32(o) == 0x1717: // sequence (seq_magic)
			lp := le.Uint32(p[24:])
			if off := int(lp & 0x7FFF); off+24 <= len(p) {
				if data := off + int(p[off+22]); data+16 <= len(p) { // t_hoff
					clear(p[data : data+16]) // last_value, log_cnt
				}
			}
		case id == 0xF091 || id == 0xF092 || id == 0xF093: // brin
			le.PutUint16(o[4:], le.Uint16(o[4:])&^1) // BRIN_EVACUATE_PAGE
		case id >= 0xFF00: // spgist, bloom: nothing more
		default: // gin: flags, no page id
			if id&(1<<2) != 0 { // GIN_DELETED
				maskContent()
			}
		}
	}
}

// isSpGistMeta reports whether p is an SP-GiST metapage: the magic
// number after the header, and special space of SpGistPageOpaqueData
// with SPGIST_META and SPGIST_PAGE_ID.
func isSpGistMeta(p []byte) bool {
	le := binary.LittleEndian
	special := int(le.Uint16(p[16:]))
	return special == len(p)-8 && le.Uint32(p[24:]) == 0xBA0BABEE &&
		le.Uint16(p[special:])&1 != 0 && le.Uint16(p[special+6:]) == 0xFF82
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
