package ingest

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"slices"
	"testing"
	"testing/fstest"

	"strata.dev/libs/lsn"
	"strata.dev/libs/wal"
	"strata.dev/libs/walrecord"
	"strata.dev/pageserver/datadir"
	"strata.dev/pageserver/ingest/ingesttest"
	"strata.dev/pageserver/ingest/pgrecords"
	"strata.dev/pageserver/key"
	"strata.dev/pageserver/pgcontrol"
	"strata.dev/pageserver/value"
)

// The synthetic cluster the unit tests start from: the shutdown
// checkpoint at ckptLSN, nextXid 745, database 5 in the default tablespace
// with relation 1259 (2 pages), the global catalog with 1260 (1 page), and
// one page in each SLRU.
const (
	ckptLSN = lsn.LSN(0x16B9188)
	db      = 5
	dflt    = key.DefaultTablespace
)

var (
	pgClass = key.Rel{Spc: dflt, DB: db, Rel: 1259}
	tblA    = key.Rel{Spc: dflt, DB: db, Rel: 16384}
)

func relmapFile(tag byte) []byte {
	b := make([]byte, pgrecords.RelMapFileSize)
	b[0], b[1] = 0x17, tag
	return b
}

// page is an initialised page (pd_upper set) whose bytes after the header
// are fill.
func page(fill byte) []byte {
	p := bytes.Repeat([]byte{fill}, walrecord.BlockSize)
	clear(p[:24])
	binary.LittleEndian.PutUint16(p[12:], 24)   // pd_lower
	binary.LittleEndian.PutUint16(p[14:], 8192) // pd_upper
	binary.LittleEndian.PutUint16(p[16:], 8192) // pd_special
	return p
}

func initialCheckpoint() pgrecords.CheckPoint {
	return pgrecords.CheckPoint{Redo: ckptLSN, ThisTimeLineID: 1, PrevTimeLineID: 1, FullPageWrites: true,
		NextXid: 745, NextOid: 13000, NextMulti: 1, NextMultiOffset: 0, OldestXid: 716, OldestXidDB: 1,
		OldestMulti: 1, OldestMultiDB: 1, Time: 1700000000}
}

func controlFile(cp pgrecords.CheckPoint, state uint32) []byte {
	b := make([]byte, pgcontrol.FileSize)
	le := binary.LittleEndian
	le.PutUint64(b[pgcontrol.OffSystemID:], 7000000000000000001)
	le.PutUint32(b[pgcontrol.OffVersion:], pgcontrol.Version)
	le.PutUint32(b[pgcontrol.OffCatalogVersion:], pgcontrol.CatalogVersion)
	le.PutUint32(b[pgcontrol.OffState:], state)
	le.PutUint64(b[pgcontrol.OffCheckPoint:], uint64(cp.Redo))
	cp.Append(b[pgcontrol.OffCheckPointCopy:pgcontrol.OffCheckPointCopy])
	le.PutUint32(b[pgcontrol.OffBlcksz:], pgcontrol.BlockSize)
	le.PutUint32(b[pgcontrol.OffXLogBlcksz:], 8192)
	le.PutUint32(b[pgcontrol.OffXLogSegSize:], 16<<20)
	return b
}

func dataDir() fstest.MapFS {
	return fstest.MapFS{
		"global/pg_control":               {Data: controlFile(initialCheckpoint(), 1)},
		"global/pg_filenode.map":          {Data: relmapFile(1)},
		"global/1260":                     {Data: page(0x60)},
		"global/PG_VERSION":               {Data: []byte("15\n")},
		"base/5/pg_filenode.map":          {Data: relmapFile(5)},
		"base/5/1259":                     {Data: append(page(0x59), page(0x5A)...)},
		"base/5/1259_fsm":                 {Data: page(0xF5)},
		"base/5/PG_VERSION":               {Data: []byte("15\n")},
		"base/5/pg_internal.init":         {Data: []byte("ignored")},
		"pg_xact/0000":                    {Data: make([]byte, 8192)},
		"pg_multixact/offsets/0000":       {Data: make([]byte, 8192)},
		"pg_multixact/members/0000":       {Data: make([]byte, 8192)},
		"pg_wal/000000010000000000000001": {Data: []byte("not imported")},
		"postgresql.conf":                 {Data: []byte("ignored")},
	}
}

// harness is an in-memory store with the synthetic cluster imported, an
// Ingester on it, and a WAL position for the records it builds.
type harness struct {
	t     *testing.T
	ctx   context.Context
	store *ingesttest.MemStore
	in    *Ingester
	end   lsn.LSN // end of the last record built
}

func newHarness(t *testing.T, opts Options) *harness {
	t.Helper()
	ctx := context.Background()
	store := ingesttest.NewMemStore()
	at, err := Import(ctx, store, dataDir())
	if err != nil {
		t.Fatal(err)
	}
	if at != ckptLSN {
		t.Fatalf("imported at %s, want %s", at, ckptLSN)
	}
	in, err := New(ctx, store, store, opts)
	if err != nil {
		t.Fatal(err)
	}
	return &harness{t: t, ctx: ctx, store: store, in: in, end: ckptLSN}
}

// record builds a record that follows the previous one; its raw bytes are
// a header and the main data (the ingest never parses Raw).
func (h *harness) record(rmid, info uint8, xid uint32, main []byte, blocks ...walrecord.BlockRef) *walrecord.Record {
	hdr := wal.RecordHeader{TotLen: uint32(wal.RecordHeaderSize + len(main)), XID: xid, Info: info, RmID: rmid}
	start := h.end
	end := (start + lsn.LSN(hdr.TotLen) + 7) &^ 7
	raw := append(hdr.Append(nil), main...)
	h.end = end
	return &walrecord.Record{StartLSN: start, EndLSN: end, Header: hdr, Blocks: blocks, MainData: main, Raw: raw}
}

func (h *harness) ingest(r *walrecord.Record) {
	h.t.Helper()
	if err := h.in.Ingest(h.ctx, r); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) flush() {
	h.t.Helper()
	if err := h.in.Flush(h.ctx); err != nil {
		h.t.Fatal(err)
	}
}

// do builds, ingests and flushes one record, returning it.
func (h *harness) do(rmid, info uint8, xid uint32, main []byte, blocks ...walrecord.BlockRef) *walrecord.Record {
	h.t.Helper()
	r := h.record(rmid, info, xid, main, blocks...)
	h.ingest(r)
	h.flush()
	return r
}

func (h *harness) last() lsn.LSN { l, _ := h.store.LastRecordLSN(); return l }

func (h *harness) relSize(rel key.Rel) uint32 {
	h.t.Helper()
	n, err := datadir.RelSize(h.ctx, h.store, rel, h.last())
	if err != nil {
		h.t.Fatal(err)
	}
	return n
}

func (h *harness) relExists(rel key.Rel) bool {
	h.t.Helper()
	ok, err := datadir.RelExists(h.ctx, h.store, rel, h.last())
	if err != nil {
		h.t.Fatal(err)
	}
	return ok
}

func (h *harness) checkpoint() pgrecords.CheckPoint {
	h.t.Helper()
	cp, err := datadir.Checkpoint(h.ctx, h.store, h.last())
	if err != nil {
		h.t.Fatal(err)
	}
	return cp
}

// latest is the newest value of k, which must exist.
func (h *harness) latest(k key.Key) (value.Value, lsn.LSN) {
	h.t.Helper()
	v, at, ok := h.store.Latest(k)
	if !ok {
		h.t.Fatalf("no value for %s", k)
	}
	return v, at
}

// wantRecord checks that k's newest value is a record of kind at at.
func (h *harness) wantRecord(k key.Key, at lsn.LSN, kind value.RecordKind) value.Record {
	h.t.Helper()
	v, got := h.latest(k)
	if v.IsImage || v.Record.Kind != kind || got != at {
		h.t.Fatalf("%s: newest is %+v at %s, want a %s record at %s", k, v, got, kind, at)
	}
	return v.Record
}

func block(id uint8, rel key.Rel, blk uint32) walrecord.BlockRef {
	return walrecord.BlockRef{ID: id, Rel: walrecord.RelFileNode{Spc: rel.Spc, DB: rel.DB, Rel: rel.Rel}, Fork: rel.Fork, Blkno: blk}
}

func fpiBlock(id uint8, rel key.Rel, blk uint32, p []byte) walrecord.BlockRef {
	b := block(id, rel, blk)
	b.HasImage = true
	b.Image = walrecord.BlockImage{Bytes: p, Info: walrecord.BKPIMAGE_APPLY}
	return b
}

func fork(r key.Rel, f uint8) key.Rel { r.Fork = f; return r }

func rfn(r key.Rel) []byte { return ingesttest.LE(r.Spc, r.DB, r.Rel) }

var (
	_ = errors.Is
	_ = slices.Equal[[]int]
)

var fstestFile = fstest.MapFile{Data: []byte("x")}

func newStore() *ingesttest.MemStore { return ingesttest.NewMemStore() }
