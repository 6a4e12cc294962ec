package ingest

import (
	"encoding/binary"
	"testing"

	"strata.dev/libs/lsn"
	"strata.dev/libs/wal"
	"strata.dev/libs/walrecord"
	"strata.dev/pageserver/ingest/ingesttest"
	"strata.dev/pageserver/ingest/pgrecords"
	"strata.dev/pageserver/key"
)

// seedBlock is a block reference of a raw seed record.
type seedBlock struct {
	rel   key.Rel
	blk   uint32
	flags uint8 // WILL_INIT etc.
	image []byte
}

// rawRecord encodes a record as XLogRecordAssemble lays it out (the CRC is
// left zero: walrecord.Decode does not check it).
func rawRecord(rmid, info uint8, xid uint32, main []byte, blocks ...seedBlock) []byte {
	var hdrs, data []byte
	for i, b := range blocks {
		flags := b.rel.Fork | b.flags
		if b.image != nil {
			flags |= walrecord.BKPBLOCK_HAS_IMAGE
		}
		hdrs = append(hdrs, uint8(i), flags, 0, 0)
		if b.image != nil {
			hdrs = binary.LittleEndian.AppendUint16(hdrs, uint16(len(b.image)))
			hdrs = append(hdrs, 0, 0, walrecord.BKPIMAGE_APPLY)
			data = append(data, b.image...)
		}
		hdrs = append(hdrs, rfn(b.rel)...)
		hdrs = binary.LittleEndian.AppendUint32(hdrs, b.blk)
	}
	if len(main) > 0 {
		hdrs = append(hdrs, walrecord.XLR_BLOCK_ID_DATA_LONG)
		hdrs = binary.LittleEndian.AppendUint32(hdrs, uint32(len(main)))
	}
	body := append(append(hdrs, data...), main...)
	h := wal.RecordHeader{TotLen: uint32(wal.RecordHeaderSize + len(body)), XID: xid, Info: info, RmID: rmid}
	return append(h.Append(nil), body...)
}

// FuzzIngest ingests sequences of arbitrary records into the synthetic
// cluster: errors are fine, panics are not. `go test` runs the seeds.
func FuzzIngest(f *testing.F) {
	cat := func(rs ...[]byte) []byte {
		var b []byte
		for _, r := range rs {
			b = append(b, r...)
		}
		return b
	}
	f.Add(cat(
		rawRecord(walrecord.RmStorage, pgrecords.XLOG_SMGR_CREATE, 0, ingesttest.LE(rfn(tblA), int32(0))),
		rawRecord(walrecord.RmXLOG, pgrecords.XLOG_FPI, 0, nil, seedBlock{rel: tblA, blk: 3, image: page(1)}),
		rawRecord(walrecord.RmHeap, pgrecords.XLOG_HEAP_INSERT, 800, ingesttest.LE(uint16(1), uint8(1)), seedBlock{rel: tblA, blk: 3}),
		rawRecord(walrecord.RmTransaction, pgrecords.XLOG_XACT_COMMIT|pgrecords.XLOG_XACT_HAS_INFO, 800,
			ingesttest.LE(int64(1), uint32(pgrecords.XACT_XINFO_HAS_RELFILENODES), int32(1), rfn(tblA))),
	))
	f.Add(cat(
		rawRecord(walrecord.RmMultiXact, pgrecords.XLOG_MULTIXACT_CREATE_ID, 0, ingesttest.LE(uint32(2047), uint32(5), int32(1), uint32(800), uint32(0))),
		rawRecord(walrecord.RmMultiXact, pgrecords.XLOG_MULTIXACT_TRUNCATE_ID, 0, ingesttest.LE(uint32(5), uint32(1), uint32(3), uint32(0), uint32(70000))),
		rawRecord(walrecord.RmCLOG, pgrecords.CLOG_ZEROPAGE, 0, ingesttest.LE(int32(40))),
		rawRecord(walrecord.RmCLOG, pgrecords.CLOG_TRUNCATE, 0, ingesttest.LE(int32(40), uint32(1), uint32(1))),
	))
	f.Add(cat(
		rawRecord(walrecord.RmStorage, pgrecords.XLOG_SMGR_TRUNCATE, 0, ingesttest.LE(uint32(1), rfn(pgClass), uint32(7))),
		rawRecord(walrecord.RmDatabase, pgrecords.XLOG_DBASE_CREATE_FILE_COPY, 0, ingesttest.LE(uint32(16500), uint32(dflt), uint32(db), uint32(dflt))),
		rawRecord(walrecord.RmDatabase, pgrecords.XLOG_DBASE_DROP, 0, ingesttest.LE(uint32(db), int32(1), uint32(dflt))),
		rawRecord(walrecord.RmRelMap, pgrecords.XLOG_RELMAP_UPDATE, 0, ingesttest.LE(uint32(db), uint32(dflt), int32(512), relmapFile(1))),
	))
	f.Add(cat(
		rawRecord(walrecord.RmTransaction, pgrecords.XLOG_XACT_PREPARE, 801, ingesttest.LE(uint32(1), uint32(2), uint32(801), uint32(5), int64(0), uint32(10))),
		rawRecord(walrecord.RmXLOG, pgrecords.XLOG_CHECKPOINT_SHUTDOWN, 0, initialCheckpoint().Encode()),
		rawRecord(walrecord.RmTransaction, pgrecords.XLOG_XACT_ABORT_PREPARED|pgrecords.XLOG_XACT_HAS_INFO, 0,
			ingesttest.LE(int64(1), uint32(pgrecords.XACT_XINFO_HAS_TWOPHASE), uint32(801))),
	))
	f.Fuzz(func(t *testing.T, raws []byte) {
		h := newHarness(t, Options{MaxBatchRecords: 2})
		for len(raws) >= wal.RecordHeaderSize {
			n := int(binary.LittleEndian.Uint32(raws))
			if n < wal.RecordHeaderSize || n > len(raws) {
				return
			}
			start := h.end
			end := (start + lsn.LSN(n) + 7) &^ 7
			h.end = end
			rec, err := walrecord.Decode(raws[:n], start, end)
			raws = raws[n:]
			if err != nil {
				return
			}
			if err := h.in.Ingest(h.ctx, &rec); err != nil {
				return
			}
		}
		_ = h.in.Flush(h.ctx)
	})
}
