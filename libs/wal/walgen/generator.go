// Package walgen generates synthetic PostgreSQL WAL for tests and benchmarks:
// records laid out on pages and segments the way XLogInsert does it, with
// valid CRCs, an unbroken xl_prev chain and the page headers PostgreSQL 15
// writes, so that wal.Decoder, the safekeeper's store and pg_waldump all
// accept the output.
//
// The generator is a producer of a byte stream. Each record method appends
// the record's bytes to an internal buffer; Take, Bytes and Stream hand them
// out. Nothing but the bytes not yet handed out is kept, so a benchmark can
// push gigabytes through in constant memory (one record plus one chunk).
//
// Guarantees:
//   - The stream is what a PostgreSQL primary would send from the start
//     position: every page that holds a byte of a record starts with its
//     header (long on a segment's first page), XLP_FIRST_IS_CONTRECORD and
//     xlp_rem_len are set on pages that continue a record, and each record
//     is followed by the zeros that pad it to 8 bytes (after XLOG_SWITCH, to
//     the segment end).
//   - After any record method returns, LSN() is that record's End and the
//     bytes produced so far end exactly there. A page header is written only
//     when a record needs the page, as PostgreSQL does.
//   - Record.End equals wal.Record.EndLSN of the decoded record.
//
// A Generator is not safe for concurrent use.
package walgen

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"

	"strata.dev/libs/lsn"
	"strata.dev/libs/wal"
)

// DefaultSystemID is the xlp_sysid written when Options.SystemID is zero.
const DefaultSystemID = 7000000000000000001

// Options describe the cluster whose WAL is generated. Zero values take the
// defaults of a PostgreSQL 15 initdb.
type Options struct {
	// SegSize is wal_segment_size; 0 means 16 MiB.
	SegSize uint64
	// PgVersion is the major version or PG_VERSION_NUM (page magic); 0 means 15.
	PgVersion uint32
	// SystemID is xlp_sysid of long page headers; 0 means DefaultSystemID.
	SystemID uint64
	// TLI is xlp_tli of every page header; 0 means 1.
	TLI uint32
	// Prev is xl_prev of the first record. Readers cannot check the first
	// record's link (PostgreSQL only checks it is below the record), so the
	// default 0 is accepted everywhere.
	Prev lsn.LSN
}

// Record is a record the generator produced.
type Record struct {
	// Start is where the record's XLogRecord header begins.
	Start lsn.LSN
	// End is where the next record begins: the record's last byte + 1
	// aligned up to 8, or the next segment start after XLOG_SWITCH.
	End lsn.LSN
	// TotLen is xl_tot_len: the record's size without page headers.
	TotLen uint32
}

// Generator produces a WAL stream; see the package comment.
type Generator struct {
	segSize uint64
	magic   uint16
	sysID   uint64
	tli     uint32
	crcTab  *crc32.Table

	end  lsn.LSN // LSN after the last byte produced
	prev lsn.LSN // xl_prev of the next record
	seq  uint64  // records produced, to vary payloads

	// buf[off:] are the produced bytes not yet handed out; buf[off] is at
	// LSN end - (len(buf) - off).
	buf []byte
	off int

	parts   [][]byte // pieces of the record being built, reused
	hdr     [wal.RecordHeaderSize]byte
	scratch []byte // small record headers, reused
	pattern []byte // payload filler, see fillPattern
}

// New returns a generator whose stream starts at start, which must be a
// record boundary: a record's start or end, a page start, or a segment start.
// At a page start the first record is preceded by the page header; inside a
// page the stream just continues (an unaligned start is first padded with
// zeros to 8, as after a record whose length is not a multiple of 8).
func New(start lsn.LSN, opts Options) (*Generator, error) {
	if opts.SegSize == 0 {
		opts.SegSize = lsn.DefaultSegmentSize
	}
	if opts.PgVersion == 0 {
		opts.PgVersion = 15
	}
	if opts.SystemID == 0 {
		opts.SystemID = DefaultSystemID
	}
	if opts.TLI == 0 {
		opts.TLI = 1
	}
	if err := wal.ValidateSegmentSize(opts.SegSize); err != nil {
		return nil, fmt.Errorf("walgen: %w", err)
	}
	magic, err := wal.PageMagic(opts.PgVersion)
	if err != nil {
		return nil, fmt.Errorf("walgen: %w", err)
	}
	hdr := uint64(wal.ShortPageHeaderSize)
	if start.PageStart().IsSegmentStart(opts.SegSize) {
		hdr = wal.LongPageHeaderSize
	}
	if off := start.PageOffset(); off != 0 && off < hdr {
		return nil, fmt.Errorf("walgen: start %s is inside a page header", start)
	}
	g := &Generator{
		segSize: opts.SegSize, magic: magic, sysID: opts.SystemID, tli: opts.TLI,
		crcTab: crc32.MakeTable(crc32.Castagnoli),
		end:    start, prev: opts.Prev,
		pattern: fillPattern(),
	}
	g.zeros(start.Align8().Sub(start))
	return g, nil
}

// LSN is the end of the stream produced so far: where the next record goes.
func (g *Generator) LSN() lsn.LSN { return g.end }

// SegSize is the segment size of the stream.
func (g *Generator) SegSize() uint64 { return g.segSize }

// Prev is the start of the last record produced (xl_prev of the next one).
func (g *Generator) Prev() lsn.LSN { return g.prev }

// add lays out a record whose body (everything after the 24-byte header) is
// the concatenation of parts, and pads after it.
func (g *Generator) add(rmid, info uint8, xid uint32, parts [][]byte) Record {
	g.compact()
	if g.end.IsPageStart() {
		g.pageHeader(0)
	}
	totLen := uint64(wal.RecordHeaderSize)
	var crc uint32
	for _, p := range parts {
		totLen += uint64(len(p))
		crc = crc32.Update(crc, g.crcTab, p)
	}
	h := wal.RecordHeader{TotLen: uint32(totLen), XID: xid, Prev: g.prev, Info: info, RmID: rmid}
	hb := h.Append(g.hdr[:0])
	// xl_crc covers the body and then the header up to xl_crc itself.
	crc = crc32.Update(crc, g.crcTab, hb[:20])
	binary.LittleEndian.PutUint32(hb[20:], crc)

	start := g.end
	rem := totLen
	rem = g.recordBytes(hb, rem)
	for _, p := range parts {
		rem = g.recordBytes(p, rem)
	}
	end := g.end.Align8()
	if rmid == wal.RM_XLOG_ID && info&^wal.XLR_INFO_MASK == wal.XLOG_SWITCH {
		end = (g.end + lsn.LSN(g.segSize-1)).SegmentStart(g.segSize)
	}
	g.zeros(end.Sub(g.end))
	clear(parts) // do not keep callers' bodies reachable
	g.prev = start
	g.seq++
	return Record{Start: start, End: end, TotLen: uint32(totLen)}
}

// recordBytes appends p, part of a record of which rem bytes are still to
// come (p included), starting a continuation page wherever a page ends.
func (g *Generator) recordBytes(p []byte, rem uint64) uint64 {
	for len(p) > 0 {
		if g.end.IsPageStart() {
			g.pageHeader(uint32(rem))
		}
		n := min(uint64(len(p)), lsn.PageSize-g.end.PageOffset())
		g.buf = append(g.buf, p[:n]...)
		g.end += lsn.LSN(n)
		rem -= n
		p = p[n:]
	}
	return rem
}

// pageHeader appends the header of the page starting at g.end. remLen is
// the part of a record continued from the previous page, 0 if none.
func (g *Generator) pageHeader(remLen uint32) {
	// XLP_BKP_REMOVABLE is what a primary with no backup running sets.
	h := wal.PageHeader{Magic: g.magic, Info: wal.XLP_BKP_REMOVABLE, TLI: g.tli, PageAddr: g.end, RemLen: remLen}
	if remLen > 0 {
		h.Info |= wal.XLP_FIRST_IS_CONTRECORD
	}
	if g.end.IsSegmentStart(g.segSize) {
		h.Info |= wal.XLP_LONG_HEADER
		h.SysID, h.SegSize, h.XLogBlcksz = g.sysID, uint32(g.segSize), lsn.PageSize
	}
	before := len(g.buf)
	g.buf = h.Append(g.buf)
	g.end += lsn.LSN(len(g.buf) - before)
}

// zeros appends n zero bytes (padding; no page headers inside).
func (g *Generator) zeros(n uint64) {
	if n == 0 {
		return
	}
	g.buf = append(g.buf, make([]byte, n)...)
	g.end += lsn.LSN(n)
}

// compact drops handed-out bytes from the buffer once they are the larger
// part of it, so the buffer stays about one record plus one chunk long.
func (g *Generator) compact() {
	switch {
	case g.off == 0:
	case g.off == len(g.buf):
		g.buf, g.off = g.buf[:0], 0
	case g.off >= len(g.buf)/2:
		n := copy(g.buf, g.buf[g.off:])
		g.buf, g.off = g.buf[:n], 0
	}
}

// patternSize is the period of the payload filler; payloads take windows of
// it at varying offsets, so records differ without generating bytes one by
// one.
const patternSize = 64 << 10

// fillPattern returns 2*patternSize bytes of an xorshift sequence, so that
// any patternSize-long window starting in the first half is contiguous.
func fillPattern() []byte {
	p := make([]byte, 2*patternSize)
	x := uint64(0x9E3779B97F4A7C15)
	for i := 0; i < patternSize; i += 8 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		binary.LittleEndian.PutUint64(p[i:], x)
	}
	copy(p[patternSize:], p[:patternSize])
	return p
}

// appendPayload appends to parts n bytes of filler for the current record:
// a window of the pattern that starts at an offset depending on the record's
// sequence number. Callers put the sequence number itself in front of it, so
// no two records of a stream are alike.
func (g *Generator) appendPayload(parts [][]byte, n int) [][]byte {
	off := int(g.seq*4099) % patternSize
	for n > 0 {
		k := min(n, patternSize)
		parts = append(parts, g.pattern[off:off+k])
		n -= k
	}
	return parts
}
