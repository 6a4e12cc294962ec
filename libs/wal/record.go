// The XLogRecord header (PS §2.4) and the record CRC.
//
// Guarantees: RecordCRC is exactly PostgreSQL's COMP_CRC32C over the record
// body followed by the header up to xl_crc, so a record that passes
// ValidateRecord is one PostgreSQL's reader would accept byte for byte.
package wal

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"

	"strata.dev/libs/lsn"
)

// Resource manager and info values the framing layer must recognise.
const (
	// RM_XLOG_ID is the resource manager of XLOG_SWITCH, checkpoints, FPIs.
	RM_XLOG_ID = 0
	// XLOG_SWITCH ends a segment early: the rest of it is padding.
	XLOG_SWITCH = 0x40
	// XLR_INFO_MASK is the low half of xl_info, reserved for XLogInsert's
	// flags; the resource manager's own info lives in the high half.
	XLR_INFO_MASK = 0x0F
)

// crcOffset is offsetof(XLogRecord, xl_crc): the CRC covers the header
// only up to here.
const crcOffset = 20

// castagnoli is the CRC-32C table. It is computed once and only read (the
// crc32 package recognises it and uses the SSE4.2/ARMv8 instructions).
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// RecordHeader is a decoded XLogRecord header.
type RecordHeader struct {
	TotLen uint32  // xl_tot_len: the whole record, header included
	XID    uint32  // xl_xid
	Prev   lsn.LSN // xl_prev: start of the previous record
	Info   uint8   // xl_info
	RmID   uint8   // xl_rmid
	CRC    uint32  // xl_crc
}

// IsSwitch reports whether the record is XLOG_SWITCH, the way PostgreSQL's
// reader tests it (the low info bits are XLogInsert flags and are ignored).
func (h RecordHeader) IsSwitch() bool {
	return h.RmID == RM_XLOG_ID && h.Info&^XLR_INFO_MASK == XLOG_SWITCH
}

// Append appends the 24-byte encoding of h (padding bytes zero).
func (h RecordHeader) Append(dst []byte) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, h.TotLen)
	dst = binary.LittleEndian.AppendUint32(dst, h.XID)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(h.Prev))
	dst = append(dst, h.Info, h.RmID, 0, 0)
	return binary.LittleEndian.AppendUint32(dst, h.CRC)
}

// DecodeRecordHeader decodes the first 24 bytes of b.
func DecodeRecordHeader(b []byte) (RecordHeader, error) {
	if len(b) < RecordHeaderSize {
		return RecordHeader{}, fmt.Errorf("record header: %d bytes, want %d", len(b), RecordHeaderSize)
	}
	return decodeRecordHeader(b), nil
}

func decodeRecordHeader(b []byte) RecordHeader {
	_ = b[RecordHeaderSize-1]
	return RecordHeader{
		TotLen: binary.LittleEndian.Uint32(b[0:]),
		XID:    binary.LittleEndian.Uint32(b[4:]),
		Prev:   lsn.LSN(binary.LittleEndian.Uint64(b[8:])),
		Info:   b[16],
		RmID:   b[17],
		CRC:    binary.LittleEndian.Uint32(b[20:]),
	}
}

// RecordCRC computes xl_crc for a whole record: CRC-32C over rec[24:] and
// then rec[0:20], the order PostgreSQL uses so that the header (with xl_crc
// itself excluded) can be filled in last. It returns 0 when rec is shorter
// than a header.
func RecordCRC(rec []byte) uint32 {
	if len(rec) < RecordHeaderSize {
		return 0
	}
	return finishCRC(crc32.Update(0, castagnoli, rec[RecordHeaderSize:]), rec)
}

// finishCRC folds the header into a CRC already computed over the body.
func finishCRC(bodyCRC uint32, hdr []byte) uint32 {
	return crc32.Update(bodyCRC, castagnoli, hdr[:crcOffset])
}

// ValidateRecord checks that rec is exactly one whole record: its length
// matches xl_tot_len and its CRC is right. Errors wrap ErrCorrupt.
func ValidateRecord(rec []byte) error {
	if len(rec) < RecordHeaderSize {
		return fmt.Errorf("record of %d bytes is shorter than its header: %w", len(rec), ErrCorrupt)
	}
	h := decodeRecordHeader(rec)
	if uint64(len(rec)) > MaxRecordSize || h.TotLen != uint32(len(rec)) {
		return fmt.Errorf("record of %d bytes has xl_tot_len %d: %w", len(rec), h.TotLen, ErrCorrupt)
	}
	if got := RecordCRC(rec); got != h.CRC {
		return fmt.Errorf("record CRC %08X, stored %08X: %w", got, h.CRC, ErrCorrupt)
	}
	return nil
}
