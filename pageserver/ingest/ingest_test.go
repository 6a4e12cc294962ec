package ingest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"slices"
	"strings"
	"testing"

	"strata.dev/libs/lsn"
	"strata.dev/libs/walrecord"
	"strata.dev/pageserver/datadir"
	"strata.dev/pageserver/ingest/ingesttest"
	"strata.dev/pageserver/ingest/pgrecords"
	"strata.dev/pageserver/key"
	"strata.dev/pageserver/pgpage"
	"strata.dev/pageserver/value"
)

func TestImport(t *testing.T) {
	h := newHarness(t, Options{})
	at := h.last()
	dbs, err := datadir.ListDatabases(h.ctx, h.store, at)
	if err != nil {
		t.Fatal(err)
	}
	if want := []value.DBKey{{Spc: dflt, DB: db}, {Spc: key.GlobalTablespace, DB: 0}}; !slices.Equal(dbs, want) {
		t.Errorf("databases %v, want %v", dbs, want)
	}
	rels, _ := datadir.ListRels(h.ctx, h.store, dflt, db, at)
	if want := []key.Rel{pgClass, fork(pgClass, key.ForkFSM)}; !slices.Equal(rels, want) {
		t.Errorf("rels %v, want %v", rels, want)
	}
	if n := h.relSize(pgClass); n != 2 {
		t.Errorf("pg_class size %d", n)
	}
	if v, _ := h.latest(key.RelBlock(pgClass, 1)); !bytes.Equal(v.Image, page(0x5A)) {
		t.Error("pg_class block 1 differs")
	}
	if cp := h.checkpoint(); cp != initialCheckpoint() {
		t.Errorf("checkpoint %+v", cp)
	}
	for _, kind := range key.SlruKinds {
		segs, err := datadir.SlruSegments(h.ctx, h.store, kind, at)
		if err != nil || !slices.Equal(segs, []uint32{0}) {
			t.Errorf("%s segments %v %v", kind, segs, err)
		}
	}
	if m, err := datadir.RelMap(h.ctx, h.store, key.GlobalTablespace, 0, at); err != nil || m[1] != 1 {
		t.Errorf("global relmap %v", err)
	}
	for _, k := range h.store.Keys() {
		if k.Field1 == 0 && k.Field2 == dflt && k.Field3 == db && k.Field4 == 0 && k.Field6 > 1 {
			t.Errorf("unexpected key %s", k)
		}
	}
	// The live key space covers exactly what was stored.
	ks, err := datadir.KeySpace(h.ctx, h.store, at)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range h.store.Keys() {
		if !covered(ks, k) {
			t.Errorf("stored key %s not in the key space", k)
		}
	}
	if covered(ks, key.RelBlock(pgClass, 2)) {
		t.Error("block past the end is in the key space")
	}

	// Refusals.
	bad := dataDir()
	bad["global/pg_control"].Data = controlFile(initialCheckpoint(), 6) // in production
	if _, err := Import(h.ctx, newStore(), bad); err == nil || !strings.Contains(err.Error(), "shut down") {
		t.Errorf("running cluster imported: %v", err)
	}
	bad = dataDir()
	bad["pg_tblspc/16500"] = &fstestFile
	if _, err := Import(h.ctx, newStore(), bad); err == nil || !strings.Contains(err.Error(), "tablespaces") {
		t.Errorf("tablespace imported: %v", err)
	}
}

func covered(ks []key.Range, k key.Key) bool {
	for _, r := range ks {
		if r.Contains(k) {
			return true
		}
	}
	return false
}

func TestFPIImageAndImplicitExtension(t *testing.T) {
	h := newHarness(t, Options{})
	// XLOG_FPI of block 3 of a relation in a database nobody announced:
	// the database, relation and blocks 0..2 (zero) appear.
	p := page(0xAB)
	r := h.do(walrecord.RmXLOG, pgrecords.XLOG_FPI, 0, nil, fpiBlock(0, tblA, 3, p))
	v, at := h.latest(key.RelBlock(tblA, 3))
	if !v.IsImage || at != r.EndLSN || pgpage.LSN(v.Image) != r.EndLSN || !bytes.Equal(v.Image[8:], p[8:]) {
		t.Fatalf("FPI not stored as an image with pd_lsn = end LSN: %+v", v.Record)
	}
	if pgpage.LSN(p) != 0 {
		t.Fatal("the record's image was modified")
	}
	if n := h.relSize(tblA); n != 4 {
		t.Fatalf("size %d, want 4", n)
	}
	for blk := range uint32(3) {
		v, _ := h.latest(key.RelBlock(tblA, blk))
		if !v.IsImage || !bytes.Equal(v.Image, make([]byte, 8192)) {
			t.Errorf("gap block %d is not a zero page", blk)
		}
	}
	if h.in.Stats().GapPagesZeroed != 3 {
		t.Errorf("stats %+v", h.in.Stats())
	}

	// A new (all-zero) page keeps pd_lsn 0; an image with a hole is rebuilt.
	other := key.Rel{Spc: dflt, DB: 16400, Rel: 16500}
	withHole := page(0xCD)
	clear(withHole[100:8000])
	b := fpiBlock(1, other, 0, append(slices.Clone(withHole[:100]), withHole[8000:]...))
	b.Image.Info |= walrecord.BKPIMAGE_HAS_HOLE
	b.Image.HoleOffset, b.Image.HoleLength = 100, 7900
	r = h.do(walrecord.RmXLOG, pgrecords.XLOG_FPI_FOR_HINT, 0, nil, fpiBlock(0, tblA, 4, make([]byte, 8192)), b)
	if v, _ := h.latest(key.RelBlock(tblA, 4)); pgpage.LSN(v.Image) != 0 {
		t.Error("new page got an LSN")
	}
	v, _ = h.latest(key.RelBlock(other, 0))
	pgpage.SetLSN(withHole, r.EndLSN)
	if !bytes.Equal(v.Image, withHole) {
		t.Error("image with a hole rebuilt wrongly")
	}
	dbs, _ := datadir.DBDir(h.ctx, h.store, h.last())
	if has, ok := dbs[value.DBKey{Spc: dflt, DB: 16400}]; !ok || has {
		t.Errorf("implicitly created database: present %v, relmap %v", ok, has)
	}
}

func TestBlockRecords(t *testing.T) {
	h := newHarness(t, Options{})
	plain := block(0, pgClass, 1)
	init := block(1, pgClass, 2)
	init.WillInit = true
	withImage := fpiBlock(2, pgClass, 0, page(1)) // a heap record's FPI: stored as a record
	r := h.do(walrecord.RmHeap, pgrecords.XLOG_HEAP_INSERT, 800, ingesttest.LE(uint16(1), uint8(0)), plain, init, withImage)
	for blk, willInit := range map[uint32]bool{0: true, 1: false, 2: true} {
		v, at := h.latest(key.RelBlock(pgClass, blk))
		if v.IsImage || v.Record.Kind != value.Postgres || v.Record.WillInit != willInit || at != r.EndLSN ||
			!bytes.Equal(v.Record.Raw, r.Raw) {
			t.Errorf("block %d: %+v", blk, v)
		}
	}
	if n := h.relSize(pgClass); n != 3 {
		t.Errorf("size %d", n)
	}
	// A record that does not initialise a block past the end gets a zero
	// base image just below it, as PostgreSQL's redo would extend.
	vm := fork(pgClass, key.ForkVM)
	r = h.do(walrecord.RmHeap2, pgrecords.XLOG_HEAP2_VISIBLE, 0, nil, block(0, vm, 0), block(1, pgClass, 0))
	if vs := h.store.Versions(key.RelBlock(vm, 0)); len(vs) != 2 || !vs[0].Value.IsImage || vs[0].LSN != r.EndLSN-1 ||
		vs[1].Value.IsImage || vs[1].LSN != r.EndLSN {
		t.Errorf("VM block versions %+v", vs)
	}
	// The nextXid moved to exactly 801.
	if cp := h.checkpoint(); cp.NextXid != 801 {
		t.Errorf("nextXid %d", cp.NextXid)
	}
	// An image that is not applied (wal_consistency_checking) does not
	// initialise the page.
	check := fpiBlock(0, pgClass, 1, page(2))
	check.Image.Info = 0
	h.do(walrecord.RmHeap, pgrecords.XLOG_HEAP_INSERT, 0, ingesttest.LE(uint16(1), uint8(0)), check)
	if v, _ := h.latest(key.RelBlock(pgClass, 1)); v.Record.WillInit {
		t.Error("consistency-check image taken as will_init")
	}
}

func TestErrorsNameTheLSNAndStop(t *testing.T) {
	for name, tc := range map[string]struct {
		rmid, info uint8
		main       []byte
		blocks     []walrecord.BlockRef
		want       string
	}{
		"user tablespace block": {walrecord.RmHeap, pgrecords.XLOG_HEAP_INSERT, ingesttest.LE(uint16(1), uint8(0)),
			[]walrecord.BlockRef{block(0, key.Rel{Spc: 16500, DB: db, Rel: 16384}, 0)}, "user tablespace 16500"},
		"tablespace record":  {walrecord.RmTablespace, pgrecords.XLOG_TBLSPC_CREATE, ingesttest.LE(uint32(16500)), nil, "not supported"},
		"bad fork":           {walrecord.RmBtree, 0, nil, []walrecord.BlockRef{block(0, fork(pgClass, 7), 0)}, "fork number 7"},
		"invalid block":      {walrecord.RmBtree, 0, nil, []walrecord.BlockRef{block(0, pgClass, 0xFFFFFFFF)}, "invalid block number"},
		"malformed smgr":     {walrecord.RmStorage, pgrecords.XLOG_SMGR_CREATE, ingesttest.LE(uint32(1)), nil, "XLOG_SMGR_CREATE"},
		"unknown rmgr":       {60, 0, nil, nil, "unknown resource manager 60"},
		"user tablespace db": {walrecord.RmDatabase, pgrecords.XLOG_DBASE_DROP, ingesttest.LE(uint32(16400), int32(1), uint32(16500)), nil, "user tablespace"},
	} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, Options{})
			r := h.record(tc.rmid, tc.info, 0, tc.main, tc.blocks...)
			err := h.in.Ingest(h.ctx, r)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), r.StartLSN.String()) {
				t.Fatalf("error %v, want one naming %s and %q", err, r.StartLSN, tc.want)
			}
			if err := h.in.Ingest(h.ctx, h.record(walrecord.RmXLOG, pgrecords.XLOG_NOOP, 0, nil)); !errors.Is(err, ErrBroken) {
				t.Errorf("ingester went on after an error: %v", err)
			}
			if err := h.in.Flush(h.ctx); !errors.Is(err, ErrBroken) {
				t.Errorf("flush after an error: %v", err)
			}
		})
	}
}

func TestSmgr(t *testing.T) {
	h := newHarness(t, Options{})
	create := func(r key.Rel) {
		h.do(walrecord.RmStorage, pgrecords.XLOG_SMGR_CREATE, 0, ingesttest.LE(rfn(r), int32(r.Fork)))
	}
	create(tblA)
	create(tblA) // an existing fork is fine, as in smgrcreate(isRedo)
	if !h.relExists(tblA) || h.relSize(tblA) != 0 {
		t.Fatal("created relation missing")
	}
	// 70000 heap blocks, a 30-page FSM and a 3-page VM, then truncate to 40000.
	fsm, vm := fork(tblA, key.ForkFSM), fork(tblA, key.ForkVM)
	h.do(walrecord.RmHeap2, pgrecords.XLOG_HEAP2_VISIBLE, 0, nil,
		block(0, vm, 2), block(1, fsm, 29), block(2, tblA, 69999))
	r := h.do(walrecord.RmStorage, pgrecords.XLOG_SMGR_TRUNCATE, 0, ingesttest.LE(uint32(40000), rfn(tblA), uint32(pgrecords.SMGR_TRUNCATE_ALL)))
	if n := h.relSize(tblA); n != 40000 {
		t.Errorf("heap size %d", n)
	}
	// FSM: logical page 40000/4069 = 9, physical 9+1+1+1-1 = 11, not at a
	// page boundary: page 11 zeroed, size 12.
	if n := h.relSize(fsm); n != 12 {
		t.Errorf("FSM size %d, want 12", n)
	}
	if v, at := h.latest(key.RelBlock(fsm, 11)); !v.IsImage || at != r.EndLSN || !bytes.Equal(v.Image, make([]byte, 8192)) {
		t.Error("last FSM page not zeroed")
	}
	// VM: page 40000/32672 = 1, byte (40000-32672)/4 = 1832, offset 0.
	if n := h.relSize(vm); n != 2 {
		t.Errorf("VM size %d, want 2", n)
	}
	tv := h.wantRecord(key.RelBlock(vm, 1), r.EndLSN, value.TruncateVisibilityMap)
	if tv.TruncByte != 1832 || tv.TruncOffs != 0 {
		t.Errorf("truncate record %+v", tv)
	}
	// Truncating "to" a larger size changes nothing (mdtruncate in recovery).
	h.do(walrecord.RmStorage, pgrecords.XLOG_SMGR_TRUNCATE, 0, ingesttest.LE(uint32(50000), rfn(tblA), uint32(pgrecords.SMGR_TRUNCATE_HEAP)))
	if n := h.relSize(tblA); n != 40000 {
		t.Errorf("heap grew to %d", n)
	}
	// At a VM page boundary no record, just the size.
	h.do(walrecord.RmStorage, pgrecords.XLOG_SMGR_TRUNCATE, 0, ingesttest.LE(uint32(32672), rfn(tblA), uint32(pgrecords.SMGR_TRUNCATE_VM)))
	if n := h.relSize(vm); n != 1 {
		t.Errorf("VM size %d, want 1", n)
	}
	// Forks that do not exist stay absent.
	other := key.Rel{Spc: dflt, DB: db, Rel: 17000}
	create(other)
	h.do(walrecord.RmStorage, pgrecords.XLOG_SMGR_TRUNCATE, 0, ingesttest.LE(uint32(5), rfn(other), uint32(pgrecords.SMGR_TRUNCATE_ALL)))
	if h.relExists(fork(other, key.ForkFSM)) || h.relExists(fork(other, key.ForkVM)) {
		t.Error("truncation created forks")
	}
}

func TestVisibilityMapClears(t *testing.T) {
	h := newHarness(t, Options{})
	vm := fork(tblA, key.ForkVM)
	// A VM of two pages; heap blocks 5 and 32672+7.
	h.do(walrecord.RmHeap2, pgrecords.XLOG_HEAP2_VISIBLE, 0, nil, block(0, vm, 1), block(1, tblA, 32672+7))

	insert := func(flags uint8, blk uint32) *walrecord.Record {
		return h.do(walrecord.RmHeap, pgrecords.XLOG_HEAP_INSERT, 900, ingesttest.LE(uint16(1), flags), block(0, tblA, blk))
	}
	r := insert(pgrecords.XLH_INSERT_ALL_VISIBLE_CLEARED, 5)
	c := h.wantRecord(key.RelBlock(vm, 0), r.EndLSN, value.ClearVisibilityMapFlags)
	if !c.HasNewHeapBlkno || c.NewHeapBlkno != 5 || c.HasOldHeapBlkno || c.Flags != 3 {
		t.Errorf("insert clear %+v", c)
	}
	// Vanilla update layout: flags at byte 7. Old page (last block) and new
	// page (block 0) on different VM pages: two records.
	upd := ingesttest.LE(uint32(900), uint16(1), uint8(0), uint8(3), uint32(0), uint16(2))
	r = h.do(walrecord.RmHeap, pgrecords.XLOG_HEAP_UPDATE, 901, upd, block(0, tblA, 32672+7), block(1, tblA, 6))
	n := h.wantRecord(key.RelBlock(vm, 1), r.EndLSN, value.ClearVisibilityMapFlags)
	o := h.wantRecord(key.RelBlock(vm, 0), r.EndLSN, value.ClearVisibilityMapFlags)
	if !n.HasNewHeapBlkno || n.NewHeapBlkno != 32672+7 || n.HasOldHeapBlkno || !o.HasOldHeapBlkno || o.OldHeapBlkno != 6 || o.HasNewHeapBlkno {
		t.Errorf("update clears %+v %+v", n, o)
	}
	// Same VM page: one record with both.
	r = h.do(walrecord.RmHeap, pgrecords.XLOG_HEAP_UPDATE, 902, upd, block(0, tblA, 8), block(1, tblA, 9))
	b := h.wantRecord(key.RelBlock(vm, 0), r.EndLSN, value.ClearVisibilityMapFlags)
	if b.NewHeapBlkno != 8 || b.OldHeapBlkno != 9 || !b.HasNewHeapBlkno || !b.HasOldHeapBlkno {
		t.Errorf("update same page %+v", b)
	}
	// Lock: ALL_FROZEN only, on block 0 as the old page.
	r = h.do(walrecord.RmHeap, pgrecords.XLOG_HEAP_LOCK, 903, ingesttest.LE(uint32(903), uint16(1), uint8(0), uint8(1)), block(0, tblA, 10))
	l := h.wantRecord(key.RelBlock(vm, 0), r.EndLSN, value.ClearVisibilityMapFlags)
	if !l.HasOldHeapBlkno || l.OldHeapBlkno != 10 || l.Flags != pgrecords.VISIBILITYMAP_ALL_FROZEN {
		t.Errorf("lock clear %+v", l)
	}
	// Multi-insert (flags at byte 0).
	r = h.do(walrecord.RmHeap2, pgrecords.XLOG_HEAP2_MULTI_INSERT|pgrecords.XLOG_HEAP_INIT_PAGE, 904, ingesttest.LE(uint8(1), uint8(0), uint16(3)), block(0, tblA, 11))
	h.wantRecord(key.RelBlock(vm, 0), r.EndLSN, value.ClearVisibilityMapFlags)
	// A heap page past the VM's end: skipped, counted.
	before := h.in.Stats().VMClearsSkipped
	insert(pgrecords.XLH_INSERT_ALL_VISIBLE_CLEARED, 2*32672)
	if h.in.Stats().VMClearsSkipped != before+1 || h.relSize(vm) != 2 {
		t.Error("clear past the VM end not skipped")
	}
	// Neon's fork layout (flags at 13 after t_cid) is not read: byte 7 = 0.
	r = h.do(walrecord.RmHeap, pgrecords.XLOG_HEAP_DELETE, 905, ingesttest.LE(uint32(905), uint16(1), uint8(0), uint8(0), uint32(0), uint8(0), uint8(1)), block(0, tblA, 12))
	if _, at := h.latest(key.RelBlock(vm, 0)); at == r.EndLSN {
		t.Error("delete without the vanilla flag cleared VM bits")
	}
	r = h.do(walrecord.RmHeap, pgrecords.XLOG_HEAP_DELETE, 906, ingesttest.LE(uint32(906), uint16(1), uint8(0), uint8(1)), block(0, tblA, 13))
	if d := h.wantRecord(key.RelBlock(vm, 0), r.EndLSN, value.ClearVisibilityMapFlags); d.NewHeapBlkno != 13 {
		t.Errorf("delete clear %+v", d)
	}
}

func TestXactCommitAbort(t *testing.T) {
	h := newHarness(t, Options{})
	h.do(walrecord.RmStorage, pgrecords.XLOG_SMGR_CREATE, 0, ingesttest.LE(rfn(tblA), int32(0)))
	h.do(walrecord.RmStorage, pgrecords.XLOG_SMGR_CREATE, 0, ingesttest.LE(rfn(tblA), int32(key.ForkInit)))
	// Commit of xid 32767 with subxacts 32768 (next CLOG page) and 32769,
	// dropping tblA (main and init forks exist) and pg_class of another
	// database that does not exist; with a replication origin.
	xinfo := uint32(pgrecords.XACT_XINFO_HAS_SUBXACTS | pgrecords.XACT_XINFO_HAS_RELFILENODES |
		pgrecords.XACT_XINFO_HAS_DROPPED_STATS | pgrecords.XACT_XINFO_HAS_ORIGIN)
	main := ingesttest.LE(int64(123456), xinfo, int32(2), uint32(32768), uint32(32769),
		int32(2), rfn(tblA), rfn(key.Rel{Spc: dflt, DB: 999, Rel: 1259}),
		int32(1), int32(1), uint32(5), uint32(16384), uint64(0xABC), int64(7))
	r := h.record(walrecord.RmTransaction, pgrecords.XLOG_XACT_COMMIT|pgrecords.XLOG_XACT_HAS_INFO, 32767, main)
	r.HasOrigin, r.Origin = true, 3
	h.ingest(r)
	h.flush()
	c0 := h.wantRecord(key.SlruBlock(key.Clog, 0, 0), r.EndLSN, value.ClogSetCommitted)
	c1 := h.wantRecord(key.SlruBlock(key.Clog, 0, 1), r.EndLSN, value.ClogSetCommitted)
	if !slices.Equal(c0.Xids, []uint32{32767}) || !slices.Equal(c1.Xids, []uint32{32768, 32769}) || c0.Timestamp != 123456 {
		t.Errorf("CLOG records %+v %+v", c0, c1)
	}
	if h.relExists(tblA) || h.relExists(fork(tblA, key.ForkInit)) {
		t.Error("dropped relation still exists")
	}
	if cp := h.checkpoint(); cp.NextXid != 32770 {
		t.Errorf("nextXid %d, want 32770 (past the subxacts, not rounded)", cp.NextXid)
	}
	if v, _ := h.latest(key.ReplOrigin(3)); binary.BigEndian.Uint64(v.Image) != 0xABC {
		t.Errorf("origin %x", v.Image)
	}
	// Abort.
	r = h.do(walrecord.RmTransaction, pgrecords.XLOG_XACT_ABORT, 40000, ingesttest.LE(int64(1)))
	a := h.wantRecord(key.SlruBlock(key.Clog, 0, 1), r.EndLSN, value.ClogSetAborted)
	if !slices.Equal(a.Xids, []uint32{40000}) {
		t.Errorf("abort %+v", a)
	}
}

func TestTwoPhase(t *testing.T) {
	h := newHarness(t, Options{})
	state := ingesttest.LE(uint32(0x57F94534), uint32(100), uint32(801), uint32(db), int64(1), uint32(10), make([]byte, 60))
	prep := h.do(walrecord.RmTransaction, pgrecords.XLOG_XACT_PREPARE, 801, state)
	if xids, _ := datadir.TwoPhaseXids(h.ctx, h.store, h.last()); !slices.Equal(xids, []uint32{801}) {
		t.Fatalf("prepared %v", xids)
	}
	if b, _ := datadir.TwoPhaseFile(h.ctx, h.store, 801, h.last()); !bytes.Equal(b, state) {
		t.Fatal("state file differs")
	}
	if bytes.Equal(prep.MainData[:4], []byte{0, 0, 0, 0}) {
		t.Fatal("test setup")
	}
	// A shutdown checkpoint now: oldestActiveXid = the prepared xid.
	cpr := initialCheckpoint()
	cpr.NextXid, cpr.OldestActiveXid = 802, 0
	sd := h.do(walrecord.RmXLOG, pgrecords.XLOG_CHECKPOINT_SHUTDOWN, 0, cpr.Encode())
	if cp := h.checkpoint(); cp.OldestActiveXid != 801 || cp.Redo != sd.EndLSN {
		t.Errorf("shutdown checkpoint merged to %+v", cp)
	}
	// Preparing the same xid again is an error.
	if err := h.in.Ingest(h.ctx, h.record(walrecord.RmTransaction, pgrecords.XLOG_XACT_PREPARE, 801, state)); err == nil {
		t.Fatal("duplicate prepare accepted")
	}
	h = newHarness(t, Options{})
	h.do(walrecord.RmTransaction, pgrecords.XLOG_XACT_PREPARE, 801, state)
	main := ingesttest.LE(int64(5), uint32(pgrecords.XACT_XINFO_HAS_TWOPHASE|pgrecords.XACT_XINFO_HAS_GID), uint32(801), []byte("g1\x00"))
	r := h.do(walrecord.RmTransaction, pgrecords.XLOG_XACT_COMMIT_PREPARED|pgrecords.XLOG_XACT_HAS_INFO, 900, main)
	if xids, _ := datadir.TwoPhaseXids(h.ctx, h.store, h.last()); len(xids) != 0 {
		t.Errorf("prepared after commit %v", xids)
	}
	c := h.wantRecord(key.SlruBlock(key.Clog, 0, 0), r.EndLSN, value.ClogSetCommitted)
	if !slices.Equal(c.Xids, []uint32{801}) {
		t.Errorf("commit prepared marks %v, want the prepared xid", c.Xids)
	}
}

func TestClog(t *testing.T) {
	h := newHarness(t, Options{})
	// Zero page 35: segment 1 appears with pages 0..3, 0..2 zero-filled.
	r := h.do(walrecord.RmCLOG, pgrecords.CLOG_ZEROPAGE, 0, ingesttest.LE(int32(35)))
	if n, err := datadir.SlruSegmentSize(h.ctx, h.store, key.Clog, 1, h.last()); err != nil || n != 4 {
		t.Fatalf("segment 1 size %d %v", n, err)
	}
	for blk := range uint32(4) {
		v, at := h.latest(key.SlruBlock(key.Clog, 1, blk))
		if !v.IsImage || len(v.Image) != 8192 || at != r.EndLSN {
			t.Errorf("page %d", blk)
		}
	}
	// Truncate before page 32 (segment 1's first): segment 0 goes.
	h.in.checkpoint.NextXid = 35 * 32768 // a latest page past the cutoff
	h.do(walrecord.RmCLOG, pgrecords.CLOG_TRUNCATE, 0, ingesttest.LE(int32(32), uint32(32*32768), uint32(5)))
	if segs, _ := datadir.SlruSegments(h.ctx, h.store, key.Clog, h.last()); !slices.Equal(segs, []uint32{1}) {
		t.Errorf("segments after truncate %v", segs)
	}
	if cp := h.checkpoint(); cp.OldestXid != 32*32768 || cp.OldestXidDB != 5 {
		t.Errorf("oldestXid %d/%d", cp.OldestXid, cp.OldestXidDB)
	}
	// Apparent wrap-around (nextXid's page precedes the cutoff): nothing.
	h.in.checkpoint.NextXid = 3
	h.do(walrecord.RmCLOG, pgrecords.CLOG_TRUNCATE, 0, ingesttest.LE(int32(64), uint32(64*32768), uint32(5)))
	if segs, _ := datadir.SlruSegments(h.ctx, h.store, key.Clog, h.last()); !slices.Equal(segs, []uint32{1}) {
		t.Errorf("segments after wrap-around truncate %v", segs)
	}
}

func TestMultiXact(t *testing.T) {
	h := newHarness(t, Options{})
	h.do(walrecord.RmMultiXact, pgrecords.XLOG_MULTIXACT_ZERO_MEM_PAGE, 0, ingesttest.LE(int32(1)))
	// Multixact 7 with 3 members from offset 1635: one on members page 0,
	// two on page 1.
	main := ingesttest.LE(uint32(7), uint32(1635), int32(3), uint32(800), uint32(0), uint32(801), uint32(1), uint32(950), uint32(5))
	r := h.do(walrecord.RmMultiXact, pgrecords.XLOG_MULTIXACT_CREATE_ID, 800, main)
	// Offsets: its own entry (one byte below the end LSN) and, as
	// PostgreSQL 15.15+ does, the next multixact's.
	offs := h.store.Versions(key.SlruBlock(key.MultiXactOffsets, 0, 0))
	if n := len(offs); n < 3 || offs[n-2].LSN != r.EndLSN-1 || offs[n-1].LSN != r.EndLSN {
		t.Fatalf("offsets versions %+v", offs)
	}
	own, off := offs[len(offs)-2].Value.Record, offs[len(offs)-1].Value.Record
	if own.Mid != 7 || own.Moff != 1635 || off.Mid != 8 || off.Moff != 1638 {
		t.Errorf("offset records %+v %+v", own, off)
	}
	if p, err := h.store.Page(h.ctx, key.SlruBlock(key.MultiXactOffsets, 0, 0), h.last()); err != nil ||
		binary.LittleEndian.Uint32(p[7*4:]) != 1635 || binary.LittleEndian.Uint32(p[8*4:]) != 1638 {
		t.Errorf("offsets page: %v", err)
	}
	m0 := h.wantRecord(key.SlruBlock(key.MultiXactMembers, 0, 0), r.EndLSN, value.MultixactMembersCreate)
	m1 := h.wantRecord(key.SlruBlock(key.MultiXactMembers, 0, 1), r.EndLSN, value.MultixactMembersCreate)
	if m0.Moff != 1635 || len(m0.Members) != 1 || m1.Moff != 1636 || len(m1.Members) != 2 {
		t.Errorf("records %+v %+v %+v", off, m0, m1)
	}
	cp := h.checkpoint()
	if cp.NextMulti != 8 || cp.NextMultiOffset != 1638 || cp.NextXid != 951 {
		t.Errorf("checkpoint next multi %d offset %d xid %d", cp.NextMulti, cp.NextMultiOffset, cp.NextXid)
	}
	// The last multixact of a page: the next entry is on the next page,
	// which is zeroed first if WAL never did (older minor versions).
	r = h.do(walrecord.RmMultiXact, pgrecords.XLOG_MULTIXACT_CREATE_ID, 0, ingesttest.LE(uint32(2047), uint32(1638), int32(1), uint32(800), uint32(0)))
	h.wantRecord(key.SlruBlock(key.MultiXactOffsets, 0, 0), r.EndLSN, value.MultixactOffsetCreate)
	h.wantRecord(key.SlruBlock(key.MultiXactOffsets, 0, 1), r.EndLSN, value.MultixactOffsetCreate)
	if p, err := h.store.Page(h.ctx, key.SlruBlock(key.MultiXactOffsets, 0, 1), h.last()); err != nil ||
		binary.LittleEndian.Uint32(p[0:]) != 1639 {
		t.Errorf("next offsets page: %v", err)
	}
	if n, _ := datadir.SlruSegmentSize(h.ctx, h.store, key.MultiXactOffsets, 0, h.last()); n != 2 {
		t.Errorf("offsets segment has %d pages", n)
	}
	// Members pages apply in Go on top of the stored zero pages.
	if p, err := h.store.Page(h.ctx, key.SlruBlock(key.MultiXactMembers, 0, 1), h.last()); err != nil ||
		binary.LittleEndian.Uint32(p[4:]) != 801 || binary.LittleEndian.Uint32(p[8:]) != 950 {
		t.Errorf("members page 1: %v", err)
	}
	// Truncation: members segment 0 .. segment of 1636*32 (1) exclusive,
	// offsets before the page of multixact 2048*32 (segment 1).
	h.do(walrecord.RmMultiXact, pgrecords.XLOG_MULTIXACT_ZERO_MEM_PAGE, 0, ingesttest.LE(int32(32)))
	h.do(walrecord.RmMultiXact, pgrecords.XLOG_MULTIXACT_ZERO_OFF_PAGE, 0, ingesttest.LE(int32(32)))
	h.do(walrecord.RmMultiXact, pgrecords.XLOG_MULTIXACT_TRUNCATE_ID, 0, ingesttest.LE(uint32(5), uint32(1), uint32(2048*32+1), uint32(0), uint32(1636*32)))
	for _, kind := range []key.SlruKind{key.MultiXactMembers, key.MultiXactOffsets} {
		if segs, _ := datadir.SlruSegments(h.ctx, h.store, kind, h.last()); !slices.Equal(segs, []uint32{1}) {
			t.Errorf("%s segments %v", kind, segs)
		}
	}
	if cp := h.checkpoint(); cp.OldestMulti != 2048*32+1 || cp.OldestMultiDB != 5 {
		t.Errorf("oldest multi %d", cp.OldestMulti)
	}
}

func TestRelmapAndDatabases(t *testing.T) {
	h := newHarness(t, Options{})
	// A relation first (database without a map), then the map.
	newDB := uint32(16400)
	rel := key.Rel{Spc: dflt, DB: newDB, Rel: 1259}
	h.do(walrecord.RmStorage, pgrecords.XLOG_SMGR_CREATE, 0, ingesttest.LE(rfn(rel), int32(0)))
	dbs, _ := datadir.DBDir(h.ctx, h.store, h.last())
	if has, ok := dbs[value.DBKey{Spc: dflt, DB: newDB}]; !ok || has {
		t.Fatal("database not added without a map")
	}
	h.do(walrecord.RmDatabase, pgrecords.XLOG_DBASE_CREATE_WAL_LOG, 0, ingesttest.LE(newDB, uint32(dflt)))
	h.do(walrecord.RmRelMap, pgrecords.XLOG_RELMAP_UPDATE, 0, ingesttest.LE(newDB, uint32(dflt), int32(512), relmapFile(9)))
	dbs, _ = datadir.DBDir(h.ctx, h.store, h.last())
	if !dbs[value.DBKey{Spc: dflt, DB: newDB}] || !h.relExists(rel) {
		t.Fatal("relmap did not flip has_relmap or lost the relations")
	}
	// A map for a new database creates it with an empty RelDir.
	h.do(walrecord.RmRelMap, pgrecords.XLOG_RELMAP_UPDATE, 0, ingesttest.LE(uint32(16401), uint32(dflt), int32(512), relmapFile(10)))
	if rels, err := datadir.ListRels(h.ctx, h.store, dflt, 16401, h.last()); err != nil || len(rels) != 0 {
		t.Fatalf("new database rels %v %v", rels, err)
	}
	// DROP DATABASE: gone from DbDir, its relations unreachable.
	h.do(walrecord.RmDatabase, pgrecords.XLOG_DBASE_DROP, 0, ingesttest.LE(newDB, int32(1), uint32(dflt)))
	if h.relExists(rel) {
		t.Error("relation of a dropped database exists")
	}
	// Re-created with the same OID: empty again.
	h.do(walrecord.RmRelMap, pgrecords.XLOG_RELMAP_UPDATE, 0, ingesttest.LE(newDB, uint32(dflt), int32(512), relmapFile(11)))
	if h.relExists(rel) {
		t.Error("relation resurrected")
	}
}

func TestCreateDatabaseFileCopy(t *testing.T) {
	h := newHarness(t, Options{})
	// A pending change to pg_class in the same batch: the copy must see it.
	h.ingest(h.record(walrecord.RmXLOG, pgrecords.XLOG_FPI, 0, nil, fpiBlock(0, pgClass, 1, page(0x77))))
	commits := h.store.Commits()
	r := h.record(walrecord.RmDatabase, pgrecords.XLOG_DBASE_CREATE_FILE_COPY, 0, ingesttest.LE(uint32(16500), uint32(dflt), uint32(db), uint32(dflt)))
	h.ingest(r)
	if h.store.Commits() != commits+1 {
		t.Fatal("the batch before CREATE_FILE_COPY was not committed")
	}
	h.flush()
	dst := key.Rel{Spc: dflt, DB: 16500, Rel: 1259}
	if h.relSize(dst) != 2 || !h.relExists(fork(dst, key.ForkFSM)) {
		t.Fatal("relations not copied")
	}
	v, at := h.latest(key.RelBlock(dst, 1))
	if !v.IsImage || at != r.EndLSN || !bytes.Equal(v.Image[8:], page(0x77)[8:]) {
		t.Error("block 1 not the current source page")
	}
	if m, _ := datadir.RelMap(h.ctx, h.store, dflt, 16500, h.last()); m[1] != 5 {
		t.Error("relmap not copied")
	}
}

func TestCheckpointRecords(t *testing.T) {
	h := newHarness(t, Options{})
	h.do(walrecord.RmXLOG, pgrecords.XLOG_NEXTOID, 0, ingesttest.LE(uint32(24576)))
	if cp := h.checkpoint(); cp.NextOid != 24576 {
		t.Errorf("nextOid %d", cp.NextOid)
	}
	rc := initialCheckpoint()
	rc.Redo, rc.NextXid, rc.NextOid, rc.OldestXid, rc.OldestActiveXid = 0x1000, 1<<32|900, 16000, 720, 899
	rc.NextMulti, rc.NextMultiOffset = 5, 10
	r := h.do(walrecord.RmXLOG, pgrecords.XLOG_CHECKPOINT_ONLINE, 0, rc.Encode())
	cp, at := h.checkpoint(), lsn.Invalid
	_, at = h.latest(key.Checkpoint())
	if at != r.EndLSN || cp.Redo != 0 || cp.NextOid != 24576 || cp.OldestXid != 720 || cp.OldestActiveXid != 899 ||
		cp.NextXid != 1<<32|900 || cp.NextMulti != 5 || cp.NextMultiOffset != 10 {
		t.Errorf("online checkpoint merged to %+v", cp)
	}
	// An older oldestXid does not move it back; the time is not copied.
	rc.OldestXid = 700
	h.do(walrecord.RmXLOG, pgrecords.XLOG_CHECKPOINT_ONLINE, 0, rc.Encode())
	if cp := h.checkpoint(); cp.OldestXid != 720 || cp.Time != initialCheckpoint().Time {
		t.Errorf("oldestXid %d time %d", cp.OldestXid, cp.Time)
	}
	// Running xacts set oldestActiveXid.
	h.do(walrecord.RmStandby, pgrecords.XLOG_RUNNING_XACTS, 0, ingesttest.LE(int32(0), int32(0), uint8(0), []byte{0, 0, 0}, uint32(950), uint32(940), uint32(949)))
	if cp := h.checkpoint(); cp.OldestActiveXid != 940 {
		t.Errorf("oldestActiveXid %d", cp.OldestActiveXid)
	}
	// A record without xid and without metadata writes no checkpoint.
	r = h.do(walrecord.RmXLOG, pgrecords.XLOG_NOOP, 0, nil)
	if _, at := h.latest(key.Checkpoint()); at == r.EndLSN {
		t.Error("checkpoint rewritten by a NOOP")
	}
}

func TestReplOrigin(t *testing.T) {
	h := newHarness(t, Options{})
	h.do(walrecord.RmReplicationOrigin, pgrecords.XLOG_REPLORIGIN_SET, 0, ingesttest.LE(uint64(0x5000), uint16(2), uint8(0), make([]byte, 5)))
	if v, _ := h.latest(key.ReplOrigin(2)); binary.BigEndian.Uint64(v.Image) != 0x5000 {
		t.Error("origin not set")
	}
	h.do(walrecord.RmReplicationOrigin, pgrecords.XLOG_REPLORIGIN_DROP, 0, ingesttest.LE(uint16(2)))
	if v, _ := h.latest(key.ReplOrigin(2)); binary.BigEndian.Uint64(v.Image) != 0 {
		t.Error("origin not dropped")
	}
}

func TestBatching(t *testing.T) {
	h := newHarness(t, Options{MaxBatchRecords: 3})
	base := h.store.Commits()
	// Two records in one batch: the second extends the relation the first
	// created, reading the first's pending metadata.
	h.ingest(h.record(walrecord.RmStorage, pgrecords.XLOG_SMGR_CREATE, 0, ingesttest.LE(rfn(tblA), int32(0))))
	h.ingest(h.record(walrecord.RmXLOG, pgrecords.XLOG_FPI, 0, nil, fpiBlock(0, tblA, 0, page(1))))
	if h.store.Commits() != base {
		t.Fatal("committed early")
	}
	if ok, err := datadir.RelExists(h.ctx, h.store, tblA, h.last()); ok || err != nil {
		t.Fatal("uncommitted relation visible in the store")
	}
	third := h.record(walrecord.RmXLOG, pgrecords.XLOG_FPI, 0, nil, fpiBlock(0, tblA, 1, page(2)))
	h.ingest(third)
	if h.store.Commits() != base+1 {
		t.Fatal("not committed after MaxBatchRecords")
	}
	last, prev := h.store.LastRecordLSN()
	if last != third.EndLSN || prev != third.StartLSN {
		t.Errorf("last/prev %s/%s, want %s/%s", last, prev, third.EndLSN, third.StartLSN)
	}
	if h.relSize(tblA) != 2 {
		t.Error("size")
	}
	// Flush with nothing pending commits nothing; a new Ingester resumes.
	h.flush()
	if h.store.Commits() != base+1 {
		t.Error("empty flush committed")
	}
	in2, err := New(h.ctx, h.store, h.store, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if e, s := in2.LastRecordLSN(); e != third.EndLSN || s != third.StartLSN {
		t.Errorf("resumed at %s/%s", e, s)
	}
	// MaxBatchBytes.
	h = newHarness(t, Options{MaxBatchBytes: 20000})
	base = h.store.Commits()
	h.ingest(h.record(walrecord.RmXLOG, pgrecords.XLOG_FPI, 0, nil, fpiBlock(0, tblA, 0, page(1))))
	if h.store.Commits() != base {
		t.Fatal("committed early")
	}
	h.ingest(h.record(walrecord.RmXLOG, pgrecords.XLOG_FPI, 0, nil, fpiBlock(0, tblA, 1, page(1)), fpiBlock(1, tblA, 2, page(1))))
	if h.store.Commits() != base+1 {
		t.Fatal("not committed after MaxBatchBytes")
	}
	// Records must advance.
	if err := h.in.Ingest(h.ctx, h.record(walrecord.RmXLOG, pgrecords.XLOG_NOOP, 0, nil)); err != nil {
		t.Fatal(err)
	}
	old := h.record(walrecord.RmXLOG, pgrecords.XLOG_NOOP, 0, nil)
	old.StartLSN, old.EndLSN = ckptLSN, ckptLSN+8
	if err := h.in.Ingest(h.ctx, old); err == nil {
		t.Error("record before the last one accepted")
	}
}

func TestBackupStartLSN(t *testing.T) {
	for _, tc := range []struct {
		label string
		want  lsn.LSN
		err   string
	}{
		{"START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\nCHECKPOINT LOCATION: 0/2000060\n", 0x2000028, ""},
		{"CHECKPOINT LOCATION: 0/2000060\nSTART WAL LOCATION: 1/A0\n", 0x1_000000A0, ""},
		{"CHECKPOINT LOCATION: 0/2000060\n", 0, "no START WAL LOCATION"},
		{"START WAL LOCATION: nonsense (file x)\n", 0, "bad START WAL LOCATION"},
		{"START WAL LOCATION: 0/0\n", 0, "bad START WAL LOCATION"},
	} {
		got, err := BackupStartLSN([]byte(tc.label))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want %q", tc.label, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: %v, %v; want %v", tc.label, got, err, tc.want)
		}
	}
}
