// A test-only WAL writer: it lays records out on pages the way XLogInsert
// does, so synthetic streams (any record sizes, segment sizes, positions)
// can be decoded and compared with what was written. It is written from the
// PostgreSQL layout rules, independently of the decoder.
package wal

import (
	"encoding/binary"
	"hash/crc32"
	"testing"

	"strata.dev/libs/lsn"
)

type writtenRecord struct {
	start, end lsn.LSN // end: where the next record starts (aligned / segment end)
	data       []byte
}

type walWriter struct {
	tb      testing.TB
	segSize uint64
	magic   uint16
	base    lsn.LSN // LSN of buf[0]
	buf     []byte
	prev    lsn.LSN
	recs    []writtenRecord
}

func newWALWriter(tb testing.TB, base lsn.LSN, segSize uint64) *walWriter {
	magic, err := PageMagic(15)
	if err != nil {
		tb.Fatal(err)
	}
	return &walWriter{tb: tb, segSize: segSize, magic: magic, base: base}
}

func (w *walWriter) pos() lsn.LSN { return w.base + lsn.LSN(len(w.buf)) }

// header writes the page header at the current page start.
func (w *walWriter) header(remLen uint32) {
	p := w.pos()
	h := PageHeader{Magic: w.magic, TLI: 1, PageAddr: p, RemLen: remLen}
	if remLen > 0 {
		h.Info |= XLP_FIRST_IS_CONTRECORD
	}
	if p.IsSegmentStart(w.segSize) {
		h.Info |= XLP_LONG_HEADER
		h.SysID, h.SegSize, h.XLogBlcksz = 7000000000000000001, uint32(w.segSize), lsn.PageSize
	}
	w.buf = h.Append(w.buf)
}

// zeros appends n zero bytes, without page headers (padding or end of WAL).
func (w *walWriter) zeros(n uint64) { w.buf = append(w.buf, make([]byte, n)...) }

// add writes a record with the given payload after the header and returns it.
func (w *walWriter) add(rmid, info uint8, payload []byte) writtenRecord {
	if p := w.pos(); p.Align8() != p {
		w.zeros(p.Align8().Sub(p))
	}
	if w.pos().IsPageStart() {
		w.header(0)
	}
	rec := makeRecord(rmid, info, 0, w.prev, payload)
	start := w.pos()
	for rest := rec; len(rest) > 0; {
		n := min(lsn.PageSize-w.pos().PageOffset(), uint64(len(rest)))
		w.buf = append(w.buf, rest[:n]...)
		rest = rest[n:]
		if len(rest) > 0 {
			w.header(uint32(len(rest)))
		}
	}
	end := w.pos().Align8()
	if rmid == RM_XLOG_ID && info&0xF0 == XLOG_SWITCH {
		end = (w.pos() + lsn.LSN(w.segSize) - 1).SegmentStart(w.segSize)
		w.zeros(end.Sub(w.pos())) // PostgreSQL writes empty pages here; the decoder skips them unread
	}
	w.prev = start
	r := writtenRecord{start: start, end: end, data: rec}
	w.recs = append(w.recs, r)
	return r
}

// noop adds an XLOG_NOOP record whose main data is n bytes, formatted so
// that pg_waldump can decode it.
func (w *walWriter) noop(n int) writtenRecord { return w.add(RM_XLOG_ID, 0x20, noopPayload(n)) }

// noopPayload is a record body with n bytes of main data (XLR_BLOCK_ID_DATA_SHORT
// or _LONG header, then the data).
func noopPayload(n int) []byte {
	var p []byte
	if n < 256 {
		p = append(p, 255, byte(n))
	} else {
		p = binary.LittleEndian.AppendUint32(append(p, 254), uint32(n))
	}
	for i := range n {
		p = append(p, byte(i*7+n))
	}
	return p
}

// makeRecord builds a whole record and fills in its CRC with the standard
// library directly (not RecordCRC), so RecordCRC is checked against it.
func makeRecord(rmid, info uint8, xid uint32, prev lsn.LSN, payload []byte) []byte {
	h := RecordHeader{TotLen: uint32(RecordHeaderSize + len(payload)), XID: xid, Prev: prev, Info: info, RmID: rmid}
	rec := append(h.Append(nil), payload...)
	tab := crc32.MakeTable(crc32.Castagnoli)
	crc := crc32.Update(crc32.Checksum(rec[RecordHeaderSize:], tab), tab, rec[:20])
	binary.LittleEndian.PutUint32(rec[20:], crc)
	return rec
}
