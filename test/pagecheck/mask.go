package pagecheck

import (
	"encoding/binary"

	"strata.dev/pageserver/key"
)

// MaskPage blanks what legitimately differs between a page as the WAL
// describes it and the same page in the primary's data file, in the spirit
// of PostgreSQL's own wal_consistency_checking masks (access/common/bufmask.c):
//
//   - pd_lsn (bytes 0–7): the stored FPI image carries the record's end LSN
//     (as redo would set it) and zero-filled gap pages carry 0, while the
//     primary's page may have been stamped by a later hint-bit FPI or none;
//   - pd_checksum (8–9): the pageserver does not maintain checksums (the
//     test cluster has none anyway);
//   - the hint flags PD_HAS_FREE_LINES and PD_PAGE_FULL of pd_flags (10–11)
//     and pd_prune_xid (20–23), set by PostgreSQL without WAL;
//   - the free space between pd_lower and pd_upper: a full-page image
//     leaves it out (the "hole") and the page rebuilt from it has zeros
//     there, the primary's page can have stale bytes;
//   - on heap pages (main fork, no special space) the tuple hint bits
//     HEAP_XMIN_COMMITTED/INVALID and HEAP_XMAX_COMMITTED/INVALID of
//     t_infomask, which readers set without WAL;
//   - on pages with special space (indexes) line pointers marked LP_DEAD,
//     which index scans set without WAL (kill_prior_tuple), read as
//     LP_NORMAL;
//   - on the SP-GiST metapage the cache of last-used pages, which
//     SpGistUpdateMetaPage writes without WAL ("just a hint").
//
// Pages that are all zeros are left alone. Free-space map pages are not
// compared at all (their updates are never WAL-logged in vanilla
// PostgreSQL). MaskPage returns a masked copy; page is not modified.
func MaskPage(page []byte, fork uint8) []byte {
	p := append([]byte(nil), page...)
	if allZero(p) {
		return p
	}
	le := binary.LittleEndian
	clear(p[0:10])                                     // pd_lsn, pd_checksum
	le.PutUint16(p[10:], le.Uint16(p[10:])&^(0x1|0x2)) // PD_HAS_FREE_LINES, PD_PAGE_FULL
	clear(p[20:24])                                    // pd_prune_xid
	lower, upper, special := int(le.Uint16(p[12:])), int(le.Uint16(p[14:])), int(le.Uint16(p[16:]))
	if lower < 24 || lower > upper || upper > special || special > len(p) {
		return p // not a standard page (e.g. a VM page has pd_lower = 24 too, and is fine)
	}
	clear(p[lower:upper])
	if isSpGistMeta(p) {
		clear(p[28:92]) // SpGistMetaPageData.lastUsedPages, after the magic number
	}
	heap := fork == key.ForkMain && special == len(p)
	for off := 24; off+4 <= lower; off += 4 {
		lp := le.Uint32(p[off:])
		lpOff, lpFlags, lpLen := int(lp&0x7FFF), (lp>>15)&3, int(lp>>17)
		switch {
		case !heap && lpFlags == 3: // LP_DEAD -> LP_NORMAL
			le.PutUint32(p[off:], lp&^(3<<15)|1<<15)
		case heap && lpFlags == 1 && lpLen >= 24 && lpOff+24 <= len(p):
			im := lpOff + 20 // t_infomask
			le.PutUint16(p[im:], le.Uint16(p[im:])&^0x0F00)
		}
	}
	return p
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
