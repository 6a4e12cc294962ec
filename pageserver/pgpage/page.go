// Package pgpage knows the parts of a PostgreSQL 15 data page that the
// pageserver must maintain itself: the page header fields it reads and the
// data checksum (pd_checksum) that a cluster initialised with
// --data-checksums expects on every page it reads.
//
// Pages are BlockSize bytes in PostgreSQL's on-disk byte order, which is the
// byte order of the machine that wrote them; Strata supports little-endian
// servers only (amd64, arm64), so multi-byte fields are read little endian.
package pgpage

import (
	"encoding/binary"

	"strata.dev/libs/lsn"
	"strata.dev/libs/walrecord"
)

// BlockSize is PostgreSQL's BLCKSZ, the size of every relation page.
const BlockSize = 8192

// Offsets of PageHeaderData fields (src/include/storage/bufpage.h): pd_lsn
// (8 bytes), pd_checksum, pd_flags, pd_lower, pd_upper (2 bytes each), ...
const (
	checksumOffset = 8
	upperOffset    = 14
)

// IsNew reports whether page is a new, never initialised page (PageIsNew:
// pd_upper is zero), such as the all-zero pages a relation is extended
// with. New pages carry no checksum. page must be at least 16 bytes long.
func IsNew(page []byte) bool {
	return binary.LittleEndian.Uint16(page[upperOffset:]) == 0
}

// StoredChecksum returns the page's pd_checksum field as it is, whether or
// not it is right. page must be at least 10 bytes long.
func StoredChecksum(page []byte) uint16 {
	return binary.LittleEndian.Uint16(page[checksumOffset:])
}

// LSN reads pd_lsn, stored as {xlogid, xrecoff}: the high half first.
func LSN(page []byte) lsn.LSN {
	le := binary.LittleEndian
	return lsn.LSN(uint64(le.Uint32(page[0:]))<<32 | uint64(le.Uint32(page[4:])))
}

// SetLSN writes pd_lsn.
func SetLSN(page []byte, l lsn.LSN) {
	binary.LittleEndian.PutUint32(page[0:], uint32(l>>32))
	binary.LittleEndian.PutUint32(page[4:], uint32(l))
}

// Restore is the page redo makes of a full-page image in a record ending
// at end: decompressed, its hole zero-filled, and, unless the page is new,
// stamped with end (XLogReadBufferForRedoExtended). It is built in dst[:0]
// if dst has the capacity.
func Restore(im *walrecord.BlockImage, end lsn.LSN, dst []byte) ([]byte, error) {
	page, err := im.Page(dst)
	if err != nil {
		return nil, err
	}
	if !IsNew(page) {
		SetLSN(page, end)
	}
	return page, nil
}
