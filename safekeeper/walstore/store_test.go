package walstore

import (
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"strata.dev/libs/lsn"
	"strata.dev/libs/wal"
)

type lsns struct{ write, writeRecord, flush, flushRecord lsn.LSN }

func lsnsOf(s *Store) lsns {
	return lsns{s.WriteLSN(), s.WriteRecordLSN(), s.FlushLSN(), s.FlushRecordLSN()}
}

func checkLSNs(t *testing.T, step string, s *Store, want lsns) {
	t.Helper()
	if got := lsnsOf(s); got != want {
		t.Fatalf("%s: write %s, write record %s, flush %s, flush record %s; want %s, %s, %s, %s", step,
			got.write, got.writeRecord, got.flush, got.flushRecord, want.write, want.writeRecord, want.flush, want.flushRecord)
	}
}

// TestRecordLSNs: the record LSNs end on record boundaries, and the flush
// ones move only on Flush or when a segment is completed (SK §4.3, §4.4.3).
func TestRecordLSNs(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, testOpts(dir), 0)
	base := segLSN(1)
	w := newWALStream(t, base)
	w.msg(100)
	r2 := w.msg(3000)
	r3 := w.msg(20000) // spans three pages

	mid := r3.Start + 5000
	writeRange(t, s, w, base, mid, nil)
	checkLSNs(t, "written up to inside a record", s, lsns{mid, r2.End, 0, 0})
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	checkLSNs(t, "flushed inside a record", s, lsns{mid, r2.End, mid, r2.End})
	checkDisk(t, dir, w, base, mid, mid)

	writeRange(t, s, w, mid, r3.End, nil)
	checkLSNs(t, "rest of the record written", s, lsns{r3.End, r3.End, mid, r2.End})
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	checkLSNs(t, "flushed", s, lsns{r3.End, r3.End, r3.End, r3.End})
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	checkLSNs(t, "flushed again", s, lsns{r3.End, r3.End, r3.End, r3.End})

	// A record whose length is not a multiple of 8: its End, the next
	// record's start, lies a few bytes past its last byte. Like Neon, the
	// store reports that End as soon as the last byte arrives.
	r4 := w.msg(1)
	phys := physicalEnd(r4)
	if phys == r4.End {
		t.Fatalf("record at %s of %d bytes ends aligned", r4.Start, r4.TotLen)
	}
	writeRange(t, s, w, r3.End, phys, nil)
	checkLSNs(t, "written up to a record's unaligned end", s, lsns{phys, r4.End, r3.End, r3.End})
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	checkLSNs(t, "flushed up to a record's unaligned end", s, lsns{phys, r4.End, phys, r4.End})
	writeRange(t, s, w, phys, r4.End, nil) // the padding
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	// Nothing more to promise, so nothing was synced.
	checkLSNs(t, "padding written and flushed", s, lsns{r4.End, r4.End, phys, r4.End})

	// Completing a segment makes it durable without Flush.
	r := rand.New(rand.NewPCG(1, 1))
	w.fill(r, segLSN(2)+100*kib)
	writeRange(t, s, w, r4.End, segLSN(2)+50*kib, randomChunks(r, 64*kib))
	want := lsns{segLSN(2) + 50*kib, w.lastEndWithin(segLSN(2) + 50*kib), segLSN(2), w.lastEndWithin(segLSN(2))}
	checkLSNs(t, "segment 1 completed, no Flush", s, want)
	checkNames(t, dir, 1, 2, false)
	checkDisk(t, dir, w, base, segLSN(2), want.write)
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	want.flush, want.flushRecord = want.write, want.writeRecord
	checkLSNs(t, "flushed in segment 2", s, want)
	checkDisk(t, dir, w, base, want.write, want.write)
}

// TestWriteRefused: rewrites, gaps and undecodable WAL are refused, and so
// is everything after a restart until the truncation (SK §4.4.2, §4.4.3).
func TestWriteRefused(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, testOpts(dir), 0)
	base := segLSN(1)
	w := newWALStream(t, base)
	w.fill(rand.New(rand.NewPCG(2, 2)), base+100*kib)
	end := w.recs[len(w.recs)-2].End
	writeRange(t, s, w, base, end, nil)
	before := lsnsOf(s)

	if err := s.Write(end-16, w.bytes(end-16, end+16)); err == nil {
		t.Fatal("a rewrite of written WAL was accepted")
	}
	if err := s.Write(end+8, w.bytes(end+8, end+16)); err == nil {
		t.Fatal("a write leaving a gap was accepted")
	}
	checkLSNs(t, "after refused writes", s, before)

	// Bytes that do not decode are not acknowledged as records.
	garbage := make([]byte, 64)
	for i := range garbage {
		garbage[i] = 0xA5
	}
	bad := t.TempDir()
	sb := openStore(t, testOpts(bad), 0)
	writeRange(t, sb, w, base, end, nil)
	if err := sb.Write(end, garbage); err == nil {
		t.Fatal("undecodable WAL was accepted")
	}
	if sb.WriteRecordLSN() != end {
		t.Fatalf("write record LSN %s after undecodable WAL, want %s", sb.WriteRecordLSN(), end)
	}

	writeRange(t, s, w, end, w.end(), nil)
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openStore(t, testOpts(dir), w.recs[3].End)
	checkLSNs(t, "reopened", s, lsns{w.end(), w.end(), w.end(), w.end()})
	next := w.msg(50)
	if err := s.Write(next.Start, w.bytes(next.Start, next.End)); !errors.Is(err, ErrTruncationPending) {
		t.Fatalf("write after reopen: %v, want ErrTruncationPending", err)
	}
	if err := s.Truncate(next.Start + 8); err == nil {
		t.Fatal("truncation beyond the end of WAL accepted")
	}
	if err := s.Truncate(next.Start); err != nil {
		t.Fatal(err)
	}
	writeRange(t, s, w, next.Start, next.End, nil)
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	checkLSNs(t, "written after truncation", s, lsns{next.End, next.End, next.End, next.End})
	checkDisk(t, dir, w, base, next.End, next.End)
}

// TestSegmentFiles: segments are exactly SegSize bytes, the one being written
// is .partial, completed ones have their final name, the bytes are the
// stream's, and the spare file prepared in the background becomes the next
// segment (SK §4.2, §4.4.1).
func TestSegmentFiles(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, testOpts(dir), 0)
	base := segLSN(1) + 3*lsn.PageSize + 200 // any record boundary will do
	w := newWALStream(t, base)
	r := rand.New(rand.NewPCG(3, 3))
	w.fill(r, segLSN(6))
	writeRange(t, s, w, base, segLSN(4)+300*kib, randomChunks(r, 128*kib))
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	checkNames(t, dir, 1, 4, false)
	checkDisk(t, dir, w, base, s.FlushLSN(), s.WriteLSN())

	spare := filepath.Join(dir, spareName)
	var spareInfo os.FileInfo
	waitFor(t, "the spare segment", func() bool {
		fi, err := os.Stat(spare)
		spareInfo = fi
		return err == nil && fi.Size() == testSegSize
	})
	writeRange(t, s, w, s.WriteLSN(), segLSN(5)+10, randomChunks(r, 128*kib))
	seg5, err := os.Stat(filepath.Join(dir, wal.SegmentFileName(1, 5, testSegSize)+wal.PartialSuffix))
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(seg5, spareInfo) {
		t.Fatal("segment 5 was not made from the spare file")
	}
	checkNames(t, dir, 1, 5, false)
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	checkDisk(t, dir, w, base, s.FlushLSN(), s.WriteLSN())
}

// TestWithFsync runs a write, truncate and restart cycle with real fsyncs.
func TestWithFsync(t *testing.T) {
	dir := t.TempDir()
	opts := testOpts(dir)
	opts.NoSync = false
	s := openStore(t, opts, 0)
	base := segLSN(2)
	w := newWALStream(t, base)
	r := rand.New(rand.NewPCG(4, 4))
	w.fill(r, segLSN(4)+200*kib)
	writeRange(t, s, w, base, w.end(), randomChunks(r, 128*kib))
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	cut := w.lastEndWithin(segLSN(3) + 5*kib)
	if err := s.Truncate(cut); err != nil {
		t.Fatal(err)
	}
	w.truncate(cut)
	checkNames(t, dir, 2, cut.SegmentNumber(testSegSize), false)
	w.fill(r, segLSN(4)+10*kib)
	writeRange(t, s, w, cut, w.end(), randomChunks(r, 128*kib))
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	end := s.FlushRecordLSN()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, opts, w.recs[0].End)
	checkLSNs(t, "reopened", s, lsns{end, end, end, end})
	if err := s.Truncate(end); err != nil {
		t.Fatal(err)
	}
	checkDisk(t, dir, w, base, end, end)
}
