// The synthetic WAL of a basebackup (PS §7.5.1, §7.6 step 3): the one
// XLOG_CHECKPOINT_SHUTDOWN record at P, laid into its segment with the page
// headers PostgreSQL would have written, and nothing else. The record
// crosses into the next page or segment when P is near its end; then the
// next page gets a continuation header, in a second segment file if need
// be. Every segment file is a whole segment; all other bytes are zero.
package basebackup

import (
	"encoding/binary"
	"fmt"

	"strata.dev/libs/lsn"
	"strata.dev/libs/wal"
	"strata.dev/libs/walrecord"
	"strata.dev/pageserver/ingest/pgrecords"
)

const checkpointRecordLen = wal.RecordHeaderSize + 2 + pgrecords.CheckPointSize

type segment struct {
	name string
	data []byte
}

// checkpointRecord encodes the 114-byte shutdown checkpoint record.
func checkpointRecord(cp checkpoint, prev lsn.LSN) []byte {
	hdr := wal.RecordHeader{
		TotLen: checkpointRecordLen, Prev: prev,
		Info: pgrecords.XLOG_CHECKPOINT_SHUTDOWN, RmID: wal.RM_XLOG_ID,
	}
	rec := hdr.Append(make([]byte, 0, checkpointRecordLen))
	rec = append(rec, walrecord.XLR_BLOCK_ID_DATA_SHORT, pgrecords.CheckPointSize)
	rec = cp.Append(rec)
	binary.LittleEndian.PutUint32(rec[20:], wal.RecordCRC(rec))
	return rec
}

// walSegments lays the checkpoint record at p (a position where a record
// can begin) into one or two segment files.
func walSegments(p, prev lsn.LSN, cp checkpoint, sysID, segSize uint64) ([]segment, error) {
	if prev >= p {
		return nil, fmt.Errorf("previous record %s is not before the checkpoint record at %s", prev, p)
	}
	magic, err := wal.PageMagic(15)
	if err != nil {
		return nil, err
	}
	rec := checkpointRecord(cp, prev)

	var segs []segment
	var cur []byte // the segment being filled
	var curStart lsn.LSN
	openSegment := func(start lsn.LSN, remLen uint32) {
		cur = make([]byte, segSize)
		curStart = start
		h := wal.PageHeader{
			Magic: magic, Info: wal.XLP_LONG_HEADER, TLI: wal.InitialTLI, PageAddr: start,
			SysID: sysID, SegSize: uint32(segSize), XLogBlcksz: lsn.PageSize,
		}
		if remLen > 0 {
			h.Info |= wal.XLP_FIRST_IS_CONTRECORD
			h.RemLen = remLen
		}
		h.Append(cur[:0])
		segs = append(segs, segment{name: wal.SegmentFileName(wal.InitialTLI, start.SegmentNumber(segSize), segSize), data: cur})
	}
	shortHeader := func(page lsn.LSN, remLen uint32) {
		h := wal.PageHeader{Magic: magic, TLI: wal.InitialTLI, PageAddr: page, RemLen: remLen}
		if remLen > 0 {
			h.Info = wal.XLP_FIRST_IS_CONTRECORD
		}
		h.Append(cur[page-curStart:][:0])
	}

	// The page holding p pretends that a record ends exactly at p.
	segStart, page := p.SegmentStart(segSize), p.PageStart()
	hsize := lsn.LSN(wal.ShortPageHeaderSize)
	if page == segStart {
		hsize = wal.LongPageHeaderSize
	}
	if p < page+hsize {
		return nil, fmt.Errorf("checkpoint record at %s would start inside a page header", p)
	}
	rem := uint32(p - page - hsize)
	if page == segStart {
		openSegment(segStart, rem)
	} else {
		openSegment(segStart, 0)
		shortHeader(page, rem)
	}

	pos := p
	for left := rec; len(left) > 0; {
		room := uint64(lsn.PageSize - pos.PageOffset())
		n := min(uint64(len(left)), room)
		copy(cur[pos-curStart:], left[:n])
		left, pos = left[n:], pos+lsn.LSN(n)
		if len(left) == 0 {
			break
		}
		// pos is a page start: the rest continues after its header.
		if pos.IsSegmentStart(segSize) {
			openSegment(pos, uint32(len(left)))
			pos += wal.LongPageHeaderSize
		} else {
			shortHeader(pos, uint32(len(left)))
			pos += wal.ShortPageHeaderSize
		}
	}
	return segs, nil
}
