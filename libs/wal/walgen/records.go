// The records the generator can make. Their bodies follow xlogrecord.h
// (main data after an XLR_BLOCK_ID_DATA_SHORT or _LONG header, no block
// references) so that pg_waldump decodes and describes them.
package walgen

import (
	"encoding/binary"

	"strata.dev/libs/wal"
)

// Resource manager ids and info values of PostgreSQL 15 used here.
const (
	// RM_LOGICALMSG_ID is the resource manager of pg_logical_emit_message.
	RM_LOGICALMSG_ID = 21
	// XLOG_LOGICAL_MESSAGE is its only record type.
	XLOG_LOGICAL_MESSAGE = 0x00
	// XLOG_NOOP is an RM_XLOG_ID record that does nothing on replay.
	XLOG_NOOP = 0x20

	// XLR_BLOCK_ID_DATA_SHORT introduces main data of up to 255 bytes.
	XLR_BLOCK_ID_DATA_SHORT = 255
	// XLR_BLOCK_ID_DATA_LONG introduces main data with a 4-byte length.
	XLR_BLOCK_ID_DATA_LONG = 254
)

// MessagePrefix is the prefix of LogicalMessage records.
const MessagePrefix = "walgen"

// sizeOfLogicalMessage is offsetof(xl_logical_message, message) on a 64-bit
// server: dbId (4), transactional (1), 3 padding bytes, prefix_size (8),
// message_size (8).
const sizeOfLogicalMessage = 24

// messageDBOid is the dbId of messages: the "postgres" database of a fresh
// initdb.
const messageDBOid = 5

// maxPayload keeps a LogicalMessage within wal.MaxRecordSize.
const maxPayload = wal.MaxRecordSize - wal.RecordHeaderSize - 5 - sizeOfLogicalMessage - len(MessagePrefix) - 1

// LogicalMessageSize is xl_tot_len of LogicalMessage(payload).
func LogicalMessageSize(payload int) int {
	main := sizeOfLogicalMessage + len(MessagePrefix) + 1 + min(max(payload, 0), maxPayload)
	return wal.RecordHeaderSize + mainDataHeaderSize(main) + main
}

// LogicalMessage appends the record pg_logical_emit_message(false,
// MessagePrefix, <payload bytes>) writes: a non-transactional logical
// decoding message with payload bytes of content, LogicalMessageSize(payload)
// bytes in all (payload is capped so that this stays within
// wal.MaxRecordSize). The content starts with the record's sequence number in the
// stream, so records are all different.
func (g *Generator) LogicalMessage(payload int) Record {
	payload = min(max(payload, 0), maxPayload)
	main := sizeOfLogicalMessage + len(MessagePrefix) + 1 + payload
	sc := appendMainDataHeader(g.scratch[:0], main, false)
	sc = binary.LittleEndian.AppendUint32(sc, messageDBOid)
	sc = append(sc, 0, 0, 0, 0) // transactional = false, padding
	sc = binary.LittleEndian.AppendUint64(sc, uint64(len(MessagePrefix)+1))
	sc = binary.LittleEndian.AppendUint64(sc, uint64(payload))
	sc = append(sc, MessagePrefix...)
	sc = append(sc, 0)
	var seq [8]byte
	binary.LittleEndian.PutUint64(seq[:], g.seq)
	k := min(payload, len(seq))
	sc = append(sc, seq[:k]...)
	g.scratch = sc
	g.parts = g.appendPayload(append(g.parts[:0], sc), payload-k)
	return g.add(RM_LOGICALMSG_ID, XLOG_LOGICAL_MESSAGE, 0, g.parts)
}

// Noop appends an XLOG_NOOP record of exactly totLen bytes (xl_tot_len),
// for tests that need a record to end at a precise place. totLen is raised
// to 26, the smallest such record, and capped at wal.MaxRecordSize.
func (g *Generator) Noop(totLen int) Record {
	const short = wal.RecordHeaderSize + 2
	totLen = min(max(totLen, short), wal.MaxRecordSize)
	main := totLen - short
	long := main > 255
	if long {
		main = totLen - wal.RecordHeaderSize - 5
	}
	sc := appendMainDataHeader(g.scratch[:0], main, long)
	var seq [8]byte
	binary.LittleEndian.PutUint64(seq[:], g.seq)
	k := min(main, len(seq))
	sc = append(sc, seq[:k]...)
	g.scratch = sc
	g.parts = g.appendPayload(append(g.parts[:0], sc), main-k)
	return g.add(wal.RM_XLOG_ID, XLOG_NOOP, 0, g.parts)
}

// Record appends a record of resource manager rmid with xl_info info whose
// body, everything after the 24-byte header, is body (see MainData). body
// is not retained. A body longer than wal.MaxRecordSize-24 is cut there.
func (g *Generator) Record(rmid, info uint8, body []byte) Record {
	g.parts = append(g.parts[:0], body[:min(len(body), wal.MaxRecordSize-wal.RecordHeaderSize)])
	return g.add(rmid, info, 0, g.parts)
}

// Switch appends an XLOG_SWITCH record and the zeros that fill the rest of
// its segment, as PostgreSQL 15 writes and streams them (the pages after the
// record are zeroed, headers included). The stream then continues at the
// next segment start. Unlike PostgreSQL, which skips a switch when nothing
// has been written in the segment, the record is always made.
func (g *Generator) Switch() Record {
	return g.add(wal.RM_XLOG_ID, wal.XLOG_SWITCH, 0, nil)
}

// MainData returns a record body holding data as its main data only, the
// form of records without block references.
func MainData(data []byte) []byte {
	return append(appendMainDataHeader(nil, len(data), false), data...)
}

func mainDataHeaderSize(n int) int {
	if n <= 255 {
		return 2
	}
	return 5
}

// appendMainDataHeader appends the header of n bytes of main data, the long
// form when n needs it or long is set (PostgreSQL's reader accepts the long
// form for any length).
func appendMainDataHeader(dst []byte, n int, long bool) []byte {
	if n <= 255 && !long {
		return append(dst, XLR_BLOCK_ID_DATA_SHORT, byte(n))
	}
	dst = append(dst, XLR_BLOCK_ID_DATA_LONG)
	return binary.LittleEndian.AppendUint32(dst, uint32(n))
}
