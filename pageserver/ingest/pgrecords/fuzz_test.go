package pgrecords

import (
	"bytes"
	"testing"

	"strata.dev/pageserver/ingest/ingesttest"
)

// FuzzParse feeds every parser the same bytes: none may panic, and what
// parses must be consistent with the input (re-encodable where an encoder
// exists). `go test` runs the seeds; `go test -fuzz FuzzParse` explores.
func FuzzParse(f *testing.F) {
	rel := ingesttest.LE(uint32(1663), uint32(5), uint32(16384))
	f.Add(uint8(XLOG_XACT_COMMIT|XLOG_XACT_HAS_INFO), ingesttest.LE(int64(8), uint32(0x1FF), uint32(5), uint32(1663),
		int32(1), uint32(801), int32(1), rel, int32(1), int32(1), uint32(5), uint32(16384),
		int32(1), make([]byte, 16), uint32(777), "gid\x00", uint64(1), int64(2)))
	f.Add(uint8(XLOG_XACT_ABORT_PREPARED|XLOG_XACT_HAS_INFO), ingesttest.LE(int64(9), uint32(XACT_XINFO_HAS_TWOPHASE), uint32(5)))
	f.Add(uint8(XLOG_HEAP_UPDATE), ingesttest.LE(uint32(9), uint16(1), uint8(0), uint8(3), uint32(0), uint16(2)))
	f.Add(uint8(XLOG_HEAP2_MULTI_INSERT), ingesttest.LE(uint8(1), uint8(0), uint16(2), uint16(1), uint16(2)))
	f.Add(uint8(0), (&CheckPoint{NextXid: 745, NextOid: 1}).Encode())
	f.Add(uint8(0), ingesttest.LE(uint32(5), uint32(1663), int32(512), make([]byte, 512)))
	f.Add(uint8(0), ingesttest.LE(uint32(7), uint32(20), int32(1), uint32(800), uint32(0)))
	f.Add(uint8(0), ingesttest.LE(uint32(5), uint8(1), make([]byte, 3), uint64(4), uint64(3), "pfx\x00", "abc"))
	f.Add(uint8(0), ingesttest.LE(int32(1), int32(0), uint8(0), make([]byte, 3), uint32(750), uint32(745), uint32(749), uint32(745)))
	f.Fuzz(func(t *testing.T, info uint8, data []byte) {
		if x, err := ParseXact(info, data); err == nil {
			if len(x.Subxacts)*4 > len(data) || len(x.Rels)*12 > len(data) || len(x.GID) > len(data) {
				t.Fatalf("parsed more than the input holds: %+v", x)
			}
		}
		if c, err := DecodeCheckPoint(data); err == nil {
			// Padding is not kept, so compare the re-encoding of the decode.
			again, err := DecodeCheckPoint(c.Encode())
			if err != nil || again != c {
				t.Fatalf("checkpoint does not round-trip: %+v %+v %v", c, again, err)
			}
		}
		ParseTwoPhaseHeader(data)
		ParseHeapVMClear(info, data)
		ParseHeap2VMClear(info, data)
		ParseSmgrCreate(data)
		ParseSmgrTruncate(data)
		ParseClogZeroPage(data)
		ParseClogTruncate(data)
		ParseDbaseCreateFileCopy(data)
		ParseDbaseCreateWalLog(data)
		if d, err := ParseDbaseDrop(data); err == nil && 8+4*len(d.Tablespaces) != len(data) {
			t.Fatalf("dbase drop of %d bytes gave %d tablespaces", len(data), len(d.Tablespaces))
		}
		ParseMultiXactZeroPage(data)
		if m, err := ParseMultiXactCreate(data); err == nil && 12+8*len(m.Members) != len(data) {
			t.Fatalf("multixact create of %d bytes gave %d members", len(data), len(m.Members))
		}
		ParseMultiXactTruncate(data)
		if u, err := ParseRelmapUpdate(data); err == nil && !bytes.Equal(u.Data, data[12:]) {
			t.Fatal("relmap data is not the rest of the payload")
		}
		ParseRunningXacts(data)
		ParseReplOriginSet(data)
		ParseReplOriginDrop(data)
		if m, err := ParseLogicalMessage(data); err == nil && 24+len(m.Prefix)+1+len(m.Message) != len(data) {
			t.Fatal("logical message does not account for every byte")
		}
		ParseNextOid(data)
	})
}
