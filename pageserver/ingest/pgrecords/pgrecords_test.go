package pgrecords

import (
	"encoding/binary"
	"errors"
	"reflect"
	"testing"

	"strata.dev/libs/lsn"
	"strata.dev/pageserver/ingest/ingesttest"
)

func TestCheckPointRoundTrip(t *testing.T) {
	c := CheckPoint{
		Redo: 0x1_6B9188, ThisTimeLineID: 1, PrevTimeLineID: 1, FullPageWrites: true,
		NextXid: 1<<32 | 745, NextOid: 24576, NextMulti: 1, NextMultiOffset: 0,
		OldestXid: 716, OldestXidDB: 1, OldestMulti: 1, OldestMultiDB: 1, Time: 1700000000,
		OldestCommitTsXid: 0, NewestCommitTsXid: 0, OldestActiveXid: 745,
	}
	b := c.Encode()
	if len(b) != CheckPointSize {
		t.Fatalf("encoded %d bytes", len(b))
	}
	// Spot-check the PG15 offsets of PS §7.5.2.
	if got := binary.LittleEndian.Uint64(b[24:]); got != c.NextXid {
		t.Errorf("nextXid at 24 = %x", got)
	}
	if got := binary.LittleEndian.Uint32(b[80:]); got != 745 {
		t.Errorf("oldestActiveXid at 80 = %d", got)
	}
	if b[16] != 1 || b[17] != 0 || b[60] != 0 || b[84] != 0 {
		t.Errorf("fullPageWrites/padding wrong: % x", b)
	}
	d, err := DecodeCheckPoint(b)
	if err != nil || d != c {
		t.Fatalf("decode = %+v, %v", d, err)
	}
	if _, err := DecodeCheckPoint(b[:87]); !errors.Is(err, ErrMalformed) {
		t.Errorf("short checkpoint: %v", err)
	}
}

func TestAdvanceNextXid(t *testing.T) {
	for _, tc := range []struct {
		next    uint64
		xid     uint32
		want    uint64
		changed bool
	}{
		{next: 745, xid: 744, want: 745},
		{next: 745, xid: 745, want: 746, changed: true},
		{next: 745, xid: 33791, want: 33792, changed: true}, // exact, never rounded to 1024
		{next: 745, xid: 1, want: 745},                      // bootstrap xid
		{next: 745, xid: 2, want: 745},                      // frozen xid
		{next: 3, xid: 3, want: 4, changed: true},
		{next: 0xFFFFFFF0, xid: 0xFFFFFFFF, want: 3 | 1<<32, changed: true}, // wraps into the next epoch, skipping special xids
		{next: 1<<32 | 10, xid: 0xFFFFFFF0, want: 1<<32 | 10},               // from before the wrap
		{next: 5<<32 | 0xFFFFFFFE, xid: 0xFFFFFFFE, want: 5<<32 | 0xFFFFFFFF, changed: true},
	} {
		c := CheckPoint{NextXid: tc.next}
		changed := c.AdvanceNextXid(tc.xid)
		if c.NextXid != tc.want || changed != tc.changed {
			t.Errorf("next %#x xid %d: got %#x %v, want %#x %v", tc.next, tc.xid, c.NextXid, changed, tc.want, tc.changed)
		}
	}
}

func TestAdvanceNextMulti(t *testing.T) {
	c := CheckPoint{NextMulti: 10, NextMultiOffset: 100}
	if c.AdvanceNextMulti(9, 99) || c.NextMulti != 10 || c.NextMultiOffset != 100 {
		t.Fatalf("went backwards: %+v", c)
	}
	if !c.AdvanceNextMulti(11, 103) || c.NextMulti != 11 || c.NextMultiOffset != 103 {
		t.Fatalf("did not advance: %+v", c)
	}
	c = CheckPoint{NextMulti: 0xFFFFFFFF, NextMultiOffset: 0xFFFFFFF0}
	if !c.AdvanceNextMulti(0, 5) || c.NextMulti != 0 || c.NextMultiOffset != 5 {
		t.Fatalf("did not wrap: %+v", c)
	}
}

func TestParseXact(t *testing.T) {
	rel := ingesttest.LE(uint32(1663), uint32(5), uint32(16384))
	for _, tc := range []struct {
		name string
		info uint8
		data []byte
		want Xact
	}{
		{
			name: "plain commit",
			info: XLOG_XACT_COMMIT,
			data: ingesttest.LE(int64(7)),
			want: Xact{Op: XLOG_XACT_COMMIT, XactTime: 7},
		},
		{
			name: "commit with everything, PG15 order",
			info: XLOG_XACT_COMMIT | XLOG_XACT_HAS_INFO,
			data: ingesttest.LE(int64(8),
				uint32(XACT_XINFO_HAS_DBINFO|XACT_XINFO_HAS_SUBXACTS|XACT_XINFO_HAS_RELFILENODES|
					XACT_XINFO_HAS_DROPPED_STATS|XACT_XINFO_HAS_INVALS|XACT_XINFO_HAS_ORIGIN),
				uint32(5), uint32(1663), // dbinfo
				int32(2), uint32(801), uint32(802), // subxacts
				int32(1), rel, // relfilenodes
				int32(1), int32(1), uint32(5), uint32(16384), // dropped stats
				int32(2), make([]byte, 32), // invals
				uint64(0xABCDEF), int64(99)), // origin
			want: Xact{Op: XLOG_XACT_COMMIT, XactTime: 8,
				XInfo: XACT_XINFO_HAS_DBINFO | XACT_XINFO_HAS_SUBXACTS | XACT_XINFO_HAS_RELFILENODES |
					XACT_XINFO_HAS_DROPPED_STATS | XACT_XINFO_HAS_INVALS | XACT_XINFO_HAS_ORIGIN,
				DBID: 5, TsID: 1663, Subxacts: []uint32{801, 802}, Rels: []RelFileNode{{Spc: 1663, DB: 5, Rel: 16384}},
				DroppedStats: []StatsItem{{1, 5, 16384}}, NInvals: 2, OriginLSN: 0xABCDEF, OriginTimestamp: 99},
		},
		{
			name: "commit prepared with GID before origin",
			info: XLOG_XACT_COMMIT_PREPARED | XLOG_XACT_HAS_INFO,
			data: ingesttest.LE(int64(9), uint32(XACT_XINFO_HAS_TWOPHASE|XACT_XINFO_HAS_GID|XACT_XINFO_HAS_ORIGIN),
				uint32(777), "my gid\x00", uint64(0x1234), int64(5)),
			want: Xact{Op: XLOG_XACT_COMMIT_PREPARED, XactTime: 9,
				XInfo:       XACT_XINFO_HAS_TWOPHASE | XACT_XINFO_HAS_GID | XACT_XINFO_HAS_ORIGIN,
				TwoPhaseXid: 777, GID: "my gid", OriginLSN: 0x1234, OriginTimestamp: 5},
		},
		{
			name: "abort has no invalidations section",
			info: XLOG_XACT_ABORT | XLOG_XACT_HAS_INFO,
			data: ingesttest.LE(int64(10), uint32(XACT_XINFO_HAS_INVALS|XACT_XINFO_HAS_RELFILENODES|XACT_XINFO_HAS_DROPPED_STATS),
				int32(1), rel, int32(0)),
			want: Xact{Op: XLOG_XACT_ABORT, XactTime: 10,
				XInfo: XACT_XINFO_HAS_INVALS | XACT_XINFO_HAS_RELFILENODES | XACT_XINFO_HAS_DROPPED_STATS,
				Rels:  []RelFileNode{{Spc: 1663, DB: 5, Rel: 16384}}, DroppedStats: []StatsItem{}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseXact(tc.info, tc.data)
			if err != nil {
				t.Fatal(err)
			}
			if got.Subxacts == nil && tc.want.Subxacts == nil {
				got.Subxacts = nil
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
			// Every strict prefix that cuts a section must fail.
			for n := 0; n < len(tc.data); n++ {
				if _, err := ParseXact(tc.info, tc.data[:n]); err == nil {
					t.Errorf("prefix of %d bytes parsed", n)
				}
			}
		})
	}
	if _, err := ParseXact(XLOG_XACT_PREPARE, ingesttest.LE(int64(1))); !errors.Is(err, ErrMalformed) {
		t.Errorf("prepare parsed as commit: %v", err)
	}
	if _, err := ParseXact(XLOG_XACT_COMMIT|XLOG_XACT_HAS_INFO, ingesttest.LE(int64(1), uint32(XACT_XINFO_HAS_SUBXACTS), int32(-1))); !errors.Is(err, ErrMalformed) {
		t.Errorf("negative count: %v", err)
	}
	if _, err := ParseXact(XLOG_XACT_COMMIT|XLOG_XACT_HAS_INFO, ingesttest.LE(int64(1), uint32(XACT_XINFO_HAS_SUBXACTS), int32(1<<30))); !errors.Is(err, ErrMalformed) {
		t.Errorf("huge count: %v", err)
	}
	x := Xact{XInfo: XACT_XINFO_HAS_TWOPHASE, TwoPhaseXid: 5}
	if x.Xid(9) != 5 || (&Xact{}).Xid(9) != 9 {
		t.Error("Xid does not prefer the two-phase xid")
	}
}

func TestParseTwoPhaseHeader(t *testing.T) {
	data := ingesttest.LE(uint32(0x57F94534), uint32(200), uint32(741), uint32(5), int64(123), uint32(10), make([]byte, 44))
	h, err := ParseTwoPhaseHeader(data)
	if err != nil || h.Xid != 741 || h.Database != 5 || h.PreparedAt != 123 || h.Owner != 10 || h.TotalLen != 200 {
		t.Fatalf("%+v %v", h, err)
	}
	if _, err := ParseTwoPhaseHeader(data[:27]); !errors.Is(err, ErrMalformed) {
		t.Errorf("short header: %v", err)
	}
}

func TestFixedLayouts(t *testing.T) {
	rel := ingesttest.LE(uint32(1663), uint32(5), uint32(16384))
	node := RelFileNode{Spc: 1663, DB: 5, Rel: 16384}
	check := func(name string, got any, err error, want any) {
		t.Helper()
		if err != nil {
			t.Errorf("%s: %v", name, err)
		} else if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: got %+v, want %+v", name, got, want)
		}
	}
	c, err := ParseSmgrCreate(ingesttest.LE(rel, int32(2)))
	check("smgr create", c, err, SmgrCreate{node, 2})
	tr, err := ParseSmgrTruncate(ingesttest.LE(uint32(40), rel, uint32(SMGR_TRUNCATE_ALL)))
	check("smgr truncate", tr, err, SmgrTruncate{40, node, SMGR_TRUNCATE_ALL})
	p, err := ParseClogZeroPage(ingesttest.LE(int32(3)))
	check("clog zero", p, err, int32(3))
	ct, err := ParseClogTruncate(ingesttest.LE(int32(4), uint32(100), uint32(1)))
	check("clog truncate", ct, err, ClogTruncate{4, 100, 1})
	fc, err := ParseDbaseCreateFileCopy(ingesttest.LE(uint32(16400), uint32(1663), uint32(1), uint32(1663)))
	check("dbase file copy", fc, err, DbaseCreateFileCopy{16400, 1663, 1, 1663})
	wl, err := ParseDbaseCreateWalLog(ingesttest.LE(uint32(16400), uint32(1663)))
	check("dbase wal log", wl, err, DbaseCreateWalLog{16400, 1663})
	dd, err := ParseDbaseDrop(ingesttest.LE(uint32(16400), int32(2), uint32(1663), uint32(1664)))
	check("dbase drop", dd, err, DbaseDrop{16400, []uint32{1663, 1664}})
	mc, err := ParseMultiXactCreate(ingesttest.LE(uint32(7), uint32(20), int32(2), uint32(800), uint32(0), uint32(801), uint32(5)))
	check("multixact create", mc, err, MultiXactCreate{7, 20, []MultiXactMember{{800, 0}, {801, 5}}})
	mt, err := ParseMultiXactTruncate(ingesttest.LE(uint32(1), uint32(2), uint32(3), uint32(4), uint32(5)))
	check("multixact truncate", mt, err, MultiXactTruncate{1, 2, 3, 4, 5})
	mapFile := make([]byte, RelMapFileSize)
	mapFile[0] = 0x27
	ru, err := ParseRelmapUpdate(ingesttest.LE(uint32(5), uint32(1663), int32(512), mapFile))
	check("relmap", ru, err, RelmapUpdate{5, 1663, mapFile})
	rx, err := ParseRunningXacts(ingesttest.LE(int32(1), int32(1), uint8(0), make([]byte, 3), uint32(750), uint32(745), uint32(749), uint32(745), uint32(746)))
	check("running xacts", rx, err, RunningXacts{1, 1, false, 750, 745, 749})
	rs, err := ParseReplOriginSet(ingesttest.LE(uint64(0x5000), uint16(3), uint8(1), make([]byte, 5)))
	check("replorigin set", rs, err, ReplOriginSet{lsn.LSN(0x5000), 3, true})
	rd, err := ParseReplOriginDrop(ingesttest.LE(uint16(3)))
	check("replorigin drop", rd, err, uint16(3))
	lm, err := ParseLogicalMessage(ingesttest.LE(uint32(5), uint8(1), make([]byte, 3), uint64(5), uint64(3), "pfx\x00\x00", "abc"))
	if err == nil {
		t.Errorf("logical message with two NULs in its prefix parsed: %+v", lm)
	}
	lm, err = ParseLogicalMessage(ingesttest.LE(uint32(5), uint8(1), make([]byte, 3), uint64(4), uint64(3), "pfx\x00", "abc"))
	check("logical message", lm, err, LogicalMessage{5, true, "pfx", []byte("abc")})
	no, err := ParseNextOid(ingesttest.LE(uint32(24576)))
	check("nextoid", no, err, uint32(24576))

	// Wrong sizes are errors.
	for name, f := range map[string]func() error{
		"smgr create short":   func() error { _, err := ParseSmgrCreate(rel); return err },
		"smgr create fork 4":  func() error { _, err := ParseSmgrCreate(ingesttest.LE(rel, int32(4))); return err },
		"dbase drop trailing": func() error { _, err := ParseDbaseDrop(ingesttest.LE(uint32(1), int32(0), uint32(9))); return err },
		"relmap short map": func() error {
			_, err := ParseRelmapUpdate(ingesttest.LE(uint32(5), uint32(1663), int32(4), "abcd"))
			return err
		},
		"relmap bad nbytes": func() error {
			_, err := ParseRelmapUpdate(ingesttest.LE(uint32(5), uint32(1663), int32(600), mapFile))
			return err
		},
		"running xacts count": func() error {
			_, err := ParseRunningXacts(ingesttest.LE(int32(3), int32(0), make([]byte, 16)))
			return err
		},
		"multixact trailing": func() error {
			_, err := ParseMultiXactCreate(ingesttest.LE(uint32(1), uint32(2), int32(0), uint8(1)))
			return err
		},
		"clog negative page": func() error { _, err := ParseClogZeroPage(ingesttest.LE(int32(-1))); return err },
	} {
		if err := f(); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestHeapVMClear(t *testing.T) {
	for _, tc := range []struct {
		name  string
		heap2 bool
		info  uint8
		data  []byte
		want  HeapVMClear
	}{
		{"insert", false, XLOG_HEAP_INSERT, ingesttest.LE(uint16(1), uint8(XLH_INSERT_ALL_VISIBLE_CLEARED)),
			HeapVMClear{NewBlock0: true, Flags: 3}},
		{"insert init page", false, XLOG_HEAP_INSERT | XLOG_HEAP_INIT_PAGE, ingesttest.LE(uint16(1), uint8(0)),
			HeapVMClear{Flags: 3}},
		// Vanilla PG15: flags at byte 7; a t_cid after them (Neon's fork) is not read.
		{"delete", false, XLOG_HEAP_DELETE, ingesttest.LE(uint32(9), uint16(1), uint8(0), uint8(1)),
			HeapVMClear{NewBlock0: true, Flags: 3}},
		{"update both", false, XLOG_HEAP_UPDATE, ingesttest.LE(uint32(9), uint16(1), uint8(0), uint8(3), uint32(0), uint16(2)),
			HeapVMClear{NewBlock0: true, OldLastBlock: true, Flags: 3}},
		{"hot update old", false, XLOG_HEAP_HOT_UPDATE, ingesttest.LE(uint32(9), uint16(1), uint8(0), uint8(1), uint32(0), uint16(2)),
			HeapVMClear{OldLastBlock: true, Flags: 3}},
		{"lock", false, XLOG_HEAP_LOCK, ingesttest.LE(uint32(9), uint16(1), uint8(0), uint8(1)),
			HeapVMClear{OldBlock0: true, Flags: VISIBILITYMAP_ALL_FROZEN}},
		{"truncate", false, XLOG_HEAP_TRUNCATE, nil, HeapVMClear{}},
		{"multi insert", true, XLOG_HEAP2_MULTI_INSERT, ingesttest.LE(uint8(1), uint8(0), uint16(2), uint16(1), uint16(2)),
			HeapVMClear{NewBlock0: true, Flags: 3}},
		{"multi insert init", true, XLOG_HEAP2_MULTI_INSERT | XLOG_HEAP_INIT_PAGE, ingesttest.LE(uint8(1), uint8(0), uint16(2)),
			HeapVMClear{NewBlock0: true, Flags: 3}},
		{"lock updated", true, XLOG_HEAP2_LOCK_UPDATED, ingesttest.LE(uint32(9), uint16(1), uint8(0), uint8(1)),
			HeapVMClear{OldBlock0: true, Flags: VISIBILITYMAP_ALL_FROZEN}},
		{"visible", true, XLOG_HEAP2_VISIBLE, nil, HeapVMClear{}},
	} {
		parse := ParseHeapVMClear
		if tc.heap2 {
			parse = ParseHeap2VMClear
		}
		got, err := parse(tc.info, tc.data)
		if err != nil || got != tc.want {
			t.Errorf("%s: got %+v, %v; want %+v", tc.name, got, err, tc.want)
		}
		if len(tc.data) > 0 {
			if _, err := parse(tc.info, tc.data[:len(tc.data)-1]); !errors.Is(err, ErrMalformed) {
				t.Errorf("%s: short payload: %v", tc.name, err)
			}
		}
	}
	if _, err := ParseHeapVMClear(XLOG_HEAP_UPDATE, make([]byte, 13)); !errors.Is(err, ErrMalformed) {
		t.Errorf("13-byte update: %v", err)
	}
}

func TestSlruHelpers(t *testing.T) {
	// CLOGPagePrecedes: page 0 precedes 1; not itself; the wrap-around
	// half of the page space follows.
	if !ClogPagePrecedes(0, 1) || ClogPagePrecedes(1, 0) || ClogPagePrecedes(5, 5) {
		t.Error("ClogPagePrecedes basic order")
	}
	const pages = 1 << 32 / ClogXactsPerPage // 131072
	if ClogPagePrecedes(0, pages/2+1) {
		t.Error("page 0 should follow a page more than half the space ahead")
	}
	if !SlruMayDeleteSegment(ClogPagePrecedes, 0, 32) || SlruMayDeleteSegment(ClogPagePrecedes, 0, 31) {
		t.Error("SlruMayDeleteSegment: segment 0 goes only when page 32 is the cutoff")
	}
	if !MultiXactOffsetPagePrecedes(0, 1) || MultiXactOffsetPagePrecedes(1, 1) {
		t.Error("MultiXactOffsetPagePrecedes")
	}
	if MultiXactMemberSegment(0) != 0 || MultiXactMemberSegment(1636*32) != 1 || MultiXactMemberSegment(0xFFFFFFFF) != 82040 {
		t.Errorf("MultiXactMemberSegment(max) = %d", MultiXactMemberSegment(0xFFFFFFFF))
	}
}
