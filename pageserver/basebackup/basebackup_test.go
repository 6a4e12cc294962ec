package basebackup

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"strata.dev/libs/lsn"
	"strata.dev/libs/wal"
	"strata.dev/pageserver/ingest/ingesttest"
	"strata.dev/pageserver/ingest/pgrecords"
	"strata.dev/pageserver/key"
	"strata.dev/pageserver/pgcontrol"
	"strata.dev/pageserver/value"
)

const segSize = 16 << 20

// testStore holds a tiny cluster: the global catalog with one relation,
// database 5 with a heap of 2 blocks and an unlogged relation, one CLOG
// page and one prepared transaction.
func testStore(t *testing.T, at lsn.LSN) *ingesttest.MemStore {
	t.Helper()
	ctl := make([]byte, pgcontrol.DataSize)
	le := binary.LittleEndian
	le.PutUint64(ctl[pgcontrol.OffSystemID:], 7)
	le.PutUint32(ctl[pgcontrol.OffVersion:], pgcontrol.Version)
	le.PutUint32(ctl[pgcontrol.OffCatalogVersion:], pgcontrol.CatalogVersion)
	le.PutUint32(ctl[pgcontrol.OffBlcksz:], blockSize)
	le.PutUint32(ctl[pgcontrol.OffXLogBlcksz:], lsn.PageSize)
	le.PutUint32(ctl[pgcontrol.OffXLogSegSize:], segSize)
	cp := pgrecords.CheckPoint{NextXid: 800, NextOid: 20000, NextMulti: 1, OldestXid: 3}

	page := make([]byte, blockSize)
	le.PutUint16(page[14:], blockSize) // pd_upper: not a new page
	dbs := value.DBDir{{Spc: key.GlobalTablespace}: true, {Spc: key.DefaultTablespace, DB: 5}: true}
	heap := key.Rel{Spc: key.DefaultTablespace, DB: 5, Rel: 16384}
	unlogged := key.Rel{Spc: key.DefaultTablespace, DB: 5, Rel: 16390}
	unloggedInit := unlogged
	unloggedInit.Fork = key.ForkInit
	global := key.Rel{Spc: key.GlobalTablespace, Rel: 1262}
	var es []value.Entry
	put := func(k key.Key, b []byte) { es = append(es, value.Entry{Key: k, LSN: at, Value: value.NewImage(b)}) }
	put(key.ControlFile(), ctl)
	put(key.Checkpoint(), cp.Encode())
	put(key.DBDir(), dbs.Encode())
	put(key.RelMap(key.GlobalTablespace, 0), make([]byte, relMapSize))
	put(key.RelMap(key.DefaultTablespace, 5), make([]byte, relMapSize))
	put(key.RelDir(key.GlobalTablespace, 0), value.RelDir{{Rel: 1262}: {}}.Encode())
	put(key.RelDir(key.DefaultTablespace, 5), value.RelDir{{Rel: 16384}: {}, {Rel: 16390}: {}, {Rel: 16390, Fork: key.ForkInit}: {}}.Encode())
	for _, r := range []struct {
		rel key.Rel
		n   uint32
	}{{global, 1}, {heap, 2}, {unlogged, 0}, {unloggedInit, 1}} {
		put(key.RelSize(r.rel), value.EncodeSize(r.n))
		for blk := range r.n {
			put(key.RelBlock(r.rel, blk), page)
		}
	}
	for _, kind := range key.SlruKinds {
		segs := value.U32Set{}
		if kind == key.Clog {
			segs[0] = struct{}{}
			put(key.SlruSegSize(kind, 0), value.EncodeSize(1))
			put(key.SlruBlock(kind, 0, 0), make([]byte, blockSize+8))
		}
		put(key.SlruDir(kind), segs.Encode())
	}
	put(key.TwoPhaseDir(), value.U32Set{700: {}}.Encode())
	put(key.TwoPhaseFile(700), []byte("state"))

	s := ingesttest.NewMemStore()
	if err := s.Commit(es, at, at-0x40); err != nil {
		t.Fatal(err)
	}
	return s
}

type imageOnly struct{}

func (imageOnly) Reconstruct(_ context.Context, r value.Reconstruction) ([]byte, error) {
	return r.Image, nil
}

// failing rebuilds pages until after of them are done, then fails every
// time. Pages are read in parallel: the count is atomic.
type failing struct{ after atomic.Int64 }

func (f *failing) Reconstruct(_ context.Context, r value.Reconstruction) ([]byte, error) {
	if f.after.Add(-1) < 0 {
		return nil, errors.New("redo failed")
	}
	return r.Image, nil
}

func failingAfter(n int) *failing {
	f := &failing{}
	f.after.Store(int64(n))
	return f
}

func TestWrite(t *testing.T) {
	at := lsn.LSN(0x1_0000_0000 + 3*lsn.PageSize) // a page start: normalized
	s := testStore(t, at)
	var buf bytes.Buffer
	if err := Write(context.Background(), &buf, s, imageOnly{}, at, Options{PrevRecord: at - 0x40, Now: time.Unix(1e9, 0)}); err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	tr := tar.NewReader(&buf)
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		files[h.Name] = b
		names = append(names, h.Name)
	}
	for name, size := range map[string]int{
		"PG_VERSION": 3, "global/pg_filenode.map": 512, "global/1262": 8192,
		"base/5/PG_VERSION": 3, "base/5/pg_filenode.map": 512, "base/5/16384": 2 * 8192,
		"base/5/16390": 8192, "base/5/16390_init": 8192, "pg_xact/0000": 8192,
		"pg_twophase/000002BC": 9, "global/pg_control": 8192, "postgresql.conf": 0,
		"pg_wal/000000010000000100000000": segSize,
	} {
		if b, ok := files[name]; !ok || len(b) != size {
			t.Errorf("%s: %d bytes (present %v), want %d", name, len(b), ok, size)
		}
	}
	if n := len(names); names[n-2] != "global/pg_control" || names[n-1] != "pg_wal/000000010000000100000000" {
		t.Errorf("last entries %v, want pg_control then the WAL segment", names[n-2:])
	}
	if tp := files["pg_twophase/000002BC"]; binary.LittleEndian.Uint32(tp[5:]) != crc32.Checksum([]byte("state"), castagnoli) {
		t.Error("two-phase file CRC is wrong")
	}

	ctl := files["global/pg_control"]
	p := at + wal.ShortPageHeaderSize
	if got := lsn.LSN(binary.LittleEndian.Uint64(ctl[pgcontrol.OffCheckPoint:])); got != p {
		t.Errorf("checkPoint %s, want %s", got, p)
	}
	if binary.LittleEndian.Uint32(ctl[pgcontrol.OffCRC:]) != crc32.Checksum(ctl[:pgcontrol.OffCRC], castagnoli) {
		t.Error("pg_control CRC is wrong")
	}
	cp, err := pgrecords.DecodeCheckPoint(ctl[pgcontrol.OffCheckPointCopy : pgcontrol.OffCheckPointCopy+pgrecords.CheckPointSize])
	if err != nil || cp.Redo != p || cp.NextXid != 800 {
		t.Errorf("checkPointCopy %+v, %v", cp, err)
	}
	decodeCheckpoint(t, [][]byte{files["pg_wal/000000010000000100000000"]}, p, at-0x40)
}

// decodeCheckpoint decodes the record at p from the segments, in order.
func decodeCheckpoint(t *testing.T, segs [][]byte, p, prev lsn.LSN) {
	t.Helper()
	dec := wal.NewDecoder(p, 15, segSize)
	dec.Feed(segs[0][p.SegmentOffset(segSize):])
	for _, s := range segs[1:] {
		dec.Feed(s)
	}
	rec, ok, err := dec.Next()
	if err != nil || !ok {
		t.Fatalf("decode the checkpoint record at %s: ok %v, %v", p, ok, err)
	}
	if rec.Header.TotLen != checkpointRecordLen || rec.Header.Prev != prev || rec.Header.RmID != 0 || rec.Header.Info != 0 {
		t.Errorf("record at %s: header %+v", p, rec.Header)
	}
	if want := (p + checkpointRecordLen).Align8(); rec.EndLSN != want && p.PageOffset()+checkpointRecordLen <= lsn.PageSize {
		t.Errorf("record at %s ends at %s, want %s", p, rec.EndLSN, want)
	}
}

// TestWALSegments lays the record at the positions of PS §7.6's experiment.
func TestWALSegments(t *testing.T) {
	cp := pgrecords.CheckPoint{NextXid: 800}
	for _, p := range []lsn.LSN{0x1894A60, 0x1895FC8, 0x1896018, 0x2000028, 0x1FFFFD0, 0x5001230} {
		segs, err := walSegments(p, p-0x30, cp, 7, segSize)
		if err != nil {
			t.Fatal(err)
		}
		crossesSeg := (p + checkpointRecordLen).SegmentNumber(segSize) != p.SegmentNumber(segSize)
		if want := 1 + btoi(crossesSeg); len(segs) != want {
			t.Fatalf("%s: %d segments, want %d", p, len(segs), want)
		}
		if segs[0].name != wal.SegmentFileName(1, p.SegmentNumber(segSize), segSize) {
			t.Errorf("%s: segment %s", p, segs[0].name)
		}
		var data [][]byte
		for _, s := range segs {
			data = append(data, s.data)
		}
		decodeCheckpoint(t, data, p, p-0x30)
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestWriteFailureLeavesTarUnfinished checks that a failing page leaves a
// stream that does not read as a complete tar and has no pg_control.
func TestWriteFailureLeavesTarUnfinished(t *testing.T) {
	at := lsn.LSN(0x2000100)
	s := testStore(t, at)
	for after := range 6 {
		var buf bytes.Buffer
		err := Write(context.Background(), &buf, s, failingAfter(after), at, Options{})
		if err == nil {
			t.Fatalf("after %d pages: Write succeeded with a failing reconstructor", after)
		}
		// A page fails after its entry's header: the entry is cut short.
		tr := tar.NewReader(&buf)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				t.Errorf("after %d pages: the tar reads as complete", after)
				break
			}
			if err != nil {
				break
			}
			if h.Name == "global/pg_control" {
				t.Errorf("after %d pages: pg_control was written", after)
			}
		}
	}
}
