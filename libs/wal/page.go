// Page headers: XLogPageHeaderData (24 bytes) at the start of every 8 KiB
// page and XLogLongPageHeaderData (40 bytes) at the start of every segment.
//
// Guarantees: Append followed by DecodePageHeader returns the same header;
// the padding after xlp_rem_len is always written as zeros.
package wal

import (
	"encoding/binary"
	"fmt"

	"strata.dev/libs/lsn"
)

// xlp_info flags of PostgreSQL 14 to 17.
const (
	// XLP_FIRST_IS_CONTRECORD: the page starts with the rest of a record
	// begun on an earlier page; xlp_rem_len says how many bytes of it remain.
	XLP_FIRST_IS_CONTRECORD = 0x0001
	// XLP_LONG_HEADER: the header is the 40-byte long form.
	XLP_LONG_HEADER = 0x0002
	// XLP_BKP_REMOVABLE: full-page images on this page are only for
	// crash safety (no backup was running); archivers may compress them out.
	XLP_BKP_REMOVABLE = 0x0004
	// XLP_FIRST_IS_OVERWRITE_CONTRECORD: the record that should continue here
	// was lost at a crash and is replaced (XLOG_OVERWRITE_CONTRECORD).
	XLP_FIRST_IS_OVERWRITE_CONTRECORD = 0x0008
	// XLP_ALL_FLAGS is every defined bit; others make a header invalid.
	XLP_ALL_FLAGS = 0x000F
)

// PageHeader is a decoded page header. The last three fields exist only in
// the long form (Info has XLP_LONG_HEADER) and are zero otherwise.
type PageHeader struct {
	Magic    uint16  // xlp_magic: PageMagic of the server version
	Info     uint16  // xlp_info: XLP_* flags
	TLI      uint32  // xlp_tli: timeline of the first record on the page
	PageAddr lsn.LSN // xlp_pageaddr: LSN of the page's first byte
	RemLen   uint32  // xlp_rem_len: bytes of a continued record on this and later pages

	SysID      uint64 // xlp_sysid: system identifier from pg_control
	SegSize    uint32 // xlp_seg_size: wal_segment_size, as a cross-check
	XLogBlcksz uint32 // xlp_xlog_blcksz: XLOG_BLCKSZ, as a cross-check
}

// IsLong reports whether h is the 40-byte long form.
func (h PageHeader) IsLong() bool { return h.Info&XLP_LONG_HEADER != 0 }

// Size is the number of bytes h occupies on the page: 24 or 40.
func (h PageHeader) Size() int {
	if h.IsLong() {
		return LongPageHeaderSize
	}
	return ShortPageHeaderSize
}

// Append appends h's encoding, 24 or 40 bytes depending on XLP_LONG_HEADER.
func (h PageHeader) Append(dst []byte) []byte {
	dst = binary.LittleEndian.AppendUint16(dst, h.Magic)
	dst = binary.LittleEndian.AppendUint16(dst, h.Info)
	dst = binary.LittleEndian.AppendUint32(dst, h.TLI)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(h.PageAddr))
	dst = binary.LittleEndian.AppendUint32(dst, h.RemLen)
	dst = append(dst, 0, 0, 0, 0)
	if h.IsLong() {
		dst = binary.LittleEndian.AppendUint64(dst, h.SysID)
		dst = binary.LittleEndian.AppendUint32(dst, h.SegSize)
		dst = binary.LittleEndian.AppendUint32(dst, h.XLogBlcksz)
	}
	return dst
}

// DecodePageHeader decodes the header at the start of b: the long form when
// xlp_info says so (then b must hold 40 bytes), else the short form. It
// checks lengths only; validation against a position is the decoder's job.
func DecodePageHeader(b []byte) (PageHeader, error) {
	if len(b) < ShortPageHeaderSize {
		return PageHeader{}, fmt.Errorf("page header: %d bytes, want %d", len(b), ShortPageHeaderSize)
	}
	long := binary.LittleEndian.Uint16(b[2:])&XLP_LONG_HEADER != 0
	if long && len(b) < LongPageHeaderSize {
		return PageHeader{}, fmt.Errorf("long page header: %d bytes, want %d", len(b), LongPageHeaderSize)
	}
	return decodePageHeader(b, long), nil
}

// decodePageHeader reads the short fields of b and, when long, the long
// ones too; b must be 24 or (when long) 40 bytes long.
func decodePageHeader(b []byte, long bool) PageHeader {
	h := PageHeader{
		Magic:    binary.LittleEndian.Uint16(b[0:]),
		Info:     binary.LittleEndian.Uint16(b[2:]),
		TLI:      binary.LittleEndian.Uint32(b[4:]),
		PageAddr: lsn.LSN(binary.LittleEndian.Uint64(b[8:])),
		RemLen:   binary.LittleEndian.Uint32(b[16:]),
	}
	if long {
		h.SysID = binary.LittleEndian.Uint64(b[24:])
		h.SegSize = binary.LittleEndian.Uint32(b[32:])
		h.XLogBlcksz = binary.LittleEndian.Uint32(b[36:])
	}
	return h
}

// SkipPageHeader is where a record at l would begin in a WAL of segSize
// segments: l itself, or past the page header when l is the first byte
// of a page (a long header on a segment's first page).
func SkipPageHeader(l lsn.LSN, segSize uint64) lsn.LSN {
	switch {
	case l.IsSegmentStart(segSize):
		return l + LongPageHeaderSize
	case l.IsPageStart():
		return l + ShortPageHeaderSize
	}
	return l
}
