package walstore

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"strata.dev/libs/lsn"
	"strata.dev/libs/wal"
)

// recordEndIn picks a record End strictly inside segment segno.
func recordEndIn(t *testing.T, w *walStream, r *rand.Rand, segno uint64) lsn.LSN {
	t.Helper()
	var ends []lsn.LSN
	for _, rec := range w.recs {
		if rec.End > segLSN(segno) && rec.End < segLSN(segno+1) {
			ends = append(ends, rec.End)
		}
	}
	if len(ends) == 0 {
		t.Fatalf("no record ends inside segment %d", segno)
	}
	return ends[r.IntN(len(ends))]
}

func truncate(t *testing.T, s *Store, w *walStream, end lsn.LSN) {
	t.Helper()
	if err := s.Truncate(end); err != nil {
		t.Fatalf("Truncate(%s): %v", end, err)
	}
	checkLSNs(t, fmt.Sprintf("truncated at %s", end), s, lsns{end, end, end, end})
	w.truncate(end)
}

func flush(t *testing.T, s *Store) {
	t.Helper()
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
}

// TestTruncateIntoCompletedSegment: truncating back into a completed segment
// deletes the later segments, renames it back to .partial and zeroes it
// after the new end; writing then resumes there (SK §4.4.5).
func TestTruncateIntoCompletedSegment(t *testing.T) {
	for _, tc := range []struct {
		name  string
		until lsn.LSN // how far WAL is written before the truncation
	}{
		{"later segments exist", segLSN(4) + 300*kib},
		{"segment was the last one", segLSN(3)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openStore(t, testOpts(dir), 0)
			base := segLSN(1)
			w := newWALStream(t, base)
			r := rand.New(rand.NewPCG(5, 5))
			if tc.until.IsSegmentStart(testSegSize) {
				w.fill(r, tc.until-100*kib)
				w.fillExactly(tc.until)
			} else {
				w.fill(r, tc.until)
			}
			writeRange(t, s, w, base, tc.until, randomChunks(r, 128*kib))
			flush(t, s)
			checkNames(t, dir, 1, tc.until.SegmentNumber(testSegSize), true)

			cut := recordEndIn(t, w, r, 2)
			truncate(t, s, w, cut)
			checkNames(t, dir, 1, 2, false)
			checkDisk(t, dir, w, base, cut, cut)

			w.fill(r, segLSN(3)+100*kib)
			writeRange(t, s, w, cut, w.end(), randomChunks(r, 128*kib))
			flush(t, s)
			checkNames(t, dir, 1, 3, false)
			checkDisk(t, dir, w, base, w.end(), w.end())
		})
	}
}

// TestTruncateAtSegmentBoundary: at exactly a segment start the segment
// before stays complete and the one at the boundary is empty.
func TestTruncateAtSegmentBoundary(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, testOpts(dir), 0)
	base := segLSN(1)
	w := newWALStream(t, base)
	r := rand.New(rand.NewPCG(6, 6))
	w.fill(r, segLSN(3)-100*kib)
	w.fillExactly(segLSN(3))
	w.fill(r, segLSN(4)+50*kib)
	writeRange(t, s, w, base, w.end(), randomChunks(r, 128*kib))
	flush(t, s)

	truncate(t, s, w, segLSN(3))
	checkNames(t, dir, 1, 3, false)
	checkDisk(t, dir, w, base, segLSN(3), segLSN(3))

	// The stream restarts with a long page header at the segment start.
	w.fill(r, segLSN(3)+20*kib)
	writeRange(t, s, w, segLSN(3), w.end(), randomChunks(r, 128*kib))
	flush(t, s)
	checkDisk(t, dir, w, base, w.end(), w.end())

	// Where the last segment ended exactly at the boundary, there is nothing
	// to do: the next segment is not even created.
	dir2 := t.TempDir()
	s2 := openStore(t, testOpts(dir2), 0)
	w.truncate(segLSN(3))
	writeRange(t, s2, w, base, segLSN(3), randomChunks(r, 128*kib))
	checkLSNs(t, "segment 2 completed", s2, lsns{segLSN(3), segLSN(3), segLSN(3), segLSN(3)})
	truncate(t, s2, w, segLSN(3))
	checkNames(t, dir2, 1, 3, true)
}

// TestTruncateKeepsBufferedWAL: WAL accepted by Write but still in the
// store's buffer survives a truncation at or after it.
func TestTruncateKeepsBufferedWAL(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, testOpts(dir), 0)
	base := segLSN(1)
	w := newWALStream(t, base)
	r := rand.New(rand.NewPCG(7, 7))
	w.fill(r, base+30*kib)
	writeRange(t, s, w, base, w.end(), randomChunks(r, 4*kib))
	flush(t, s)
	w.fill(r, base+200*kib)
	writeRange(t, s, w, s.WriteLSN(), w.end(), randomChunks(r, 4*kib))

	// Up to a record in the unflushed part, then up to the very end.
	for _, last := range []bool{false, true} {
		cut := w.recs[len(w.recs)-3].End
		if last {
			cut = w.end()
		}
		truncate(t, s, w, cut)
		checkDisk(t, dir, w, base, cut, cut)
		w.fill(r, cut+40*kib)
		writeRange(t, s, w, cut, w.end(), randomChunks(r, 4*kib))
	}
	flush(t, s)
	checkDisk(t, dir, w, base, w.end(), w.end())
}

// TestTruncateAfterReopen: after a restart nothing is known about the bytes
// after the end of WAL (a torn write, stale data), so the truncation zeroes
// the rest of the segment.
func TestTruncateAfterReopen(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, testOpts(dir), 0)
	base := segLSN(1)
	w := newWALStream(t, base)
	r := rand.New(rand.NewPCG(8, 8))
	w.fill(r, segLSN(2)+100*kib)
	writeRange(t, s, w, base, w.end(), randomChunks(r, 128*kib))
	flush(t, s)
	end := w.end()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Half of a record that never completed, and stale bytes far behind it.
	torn := w.msg(20000)
	name := filepath.Join(dir, wal.SegmentFileName(1, 2, testSegSize)+wal.PartialSuffix)
	f, err := os.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(w.bytes(torn.Start, torn.Start+9000), int64(torn.Start.SegmentOffset(testSegSize))); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(bytes.Repeat([]byte{0xEE}, 5000), testSegSize-6000); err != nil {
		t.Fatal(err)
	}
	f.Close()

	s = openStore(t, testOpts(dir), w.recs[2].End)
	checkLSNs(t, "reopened", s, lsns{end, end, end, end})
	truncate(t, s, w, end)
	checkDisk(t, dir, w, base, end, end)
	checkNames(t, dir, 1, 2, false)
}

// TestTruncateFastPath: truncating at the end of fully flushed WAL does not
// touch the files.
func TestTruncateFastPath(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, testOpts(dir), 0)
	base := segLSN(1)
	w := newWALStream(t, base)
	w.fill(rand.New(rand.NewPCG(9, 9)), base+50*kib)
	writeRange(t, s, w, base, w.end(), nil)
	flush(t, s)
	// A marker after the end that a real truncation would zero.
	name := filepath.Join(dir, wal.SegmentFileName(1, 1, testSegSize)+wal.PartialSuffix)
	f, err := os.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{0xEE}, testSegSize-1); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := s.Truncate(w.end()); err != nil {
		t.Fatal(err)
	}
	if b := readDisk(t, dir, segLSN(2)-1, segLSN(2)); b[0] != 0xEE {
		t.Fatal("the fast path truncation rewrote the segment")
	}
	// With unflushed WAL it is a real truncation, which zeroes what the
	// store wrote after the new end.
	end := w.end()
	w.msg(100)
	w.msg(30000)
	writeRange(t, s, w, end, w.end(), nil)
	truncate(t, s, w, end)
	if got := readDisk(t, dir, end, segLSN(2)-1); slices.ContainsFunc(got, func(b byte) bool { return b != 0 }) {
		t.Fatal("the truncation left WAL after the new end")
	}
}

// TestInitializeFirstSegment: the synthetic headers written in front of the
// timeline start, followed by the truncation every election does and the
// compute's WAL, make a segment PostgreSQL's pg_waldump reads from the start
// on (SK §4.4.4).
func TestInitializeFirstSegment(t *testing.T) {
	seg := segLSN(3)
	for _, start := range []lsn.LSN{
		seg,                                      // segment start
		seg + 0x100,                              // inside the first page
		seg + 5*lsn.PageSize + 0x238,             // inside a later page
		seg + 6*lsn.PageSize,                     // at a later page's start
		seg + testSegSize - lsn.PageSize + 0x400, // WAL crosses into the next segment
	} {
		t.Run(start.String(), func(t *testing.T) {
			dir := t.TempDir()
			s := openStore(t, testOpts(dir), 0)
			if err := s.InitializeFirstSegment(start); err != nil {
				t.Fatal(err)
			}
			truncate(t, s, newWALStream(t, start), start)
			w := newWALStream(t, start)
			r := rand.New(rand.NewPCG(uint64(start), 10))
			w.fill(r, start+60*kib)
			writeRange(t, s, w, start, w.end(), randomChunks(r, 16*kib))
			flush(t, s)
			checkDisk(t, dir, w, start, w.end(), w.end())
			prefix, err := wal.InitialImage{Start: start, SystemID: testOpts(dir).SystemID, PGVersion: testPgVersion, SegSize: testSegSize}.Prefix()
			if err != nil {
				t.Fatal(err)
			}
			if got := readDisk(t, dir, seg, start); !bytes.Equal(got, prefix) {
				t.Fatalf("segment before %s differs from the synthetic image", start)
			}

			got := waldumpStarts(t, dir, start, w.end())
			var want []lsn.LSN
			for _, rec := range w.recs {
				want = append(want, rec.Start)
			}
			if !slices.Equal(got, want) {
				t.Fatalf("pg_waldump lists %d records %v..., generated %d %v...", len(got), got[:min(3, len(got))], len(want), want[:3])
			}
		})
	}
}

// TestTruncateAfterRestartWithoutCommit: a safekeeper that crashed before
// it ever persisted a commit LSN reopens with start 0, yet its directory
// holds WAL. The truncation of the next election must still zero all of it
// after the new end: stale WAL there could chain onto the new records and be
// taken for this term's WAL at the next restart.
func TestTruncateAfterRestartWithoutCommit(t *testing.T) {
	dir := t.TempDir()
	start := segLSN(1) + 0x40
	s := openStore(t, testOpts(dir), 0)
	if err := s.InitializeFirstSegment(start); err != nil {
		t.Fatal(err)
	}
	w := newWALStream(t, start)
	truncate(t, s, w, start)
	w.fill(rand.New(rand.NewPCG(15, 15)), start+300*kib)
	writeRange(t, s, w, start, w.end(), nil)
	flush(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openStore(t, testOpts(dir), 0)
	if err := s.InitializeFirstSegment(start); err != nil {
		t.Fatal(err)
	}
	truncate(t, s, w, start)
	checkDisk(t, dir, w, start, start, start)
	if end := findEnd(t, dir, start); end != start {
		t.Fatalf("after the truncation the WAL ends at %s, want %s", end, start)
	}
}

// An XLOG_SWITCH whose zero padding never arrived leaves WAL ending at a
// segment boundary; truncating there completes the switch's segment.
func TestTruncateAtSwitchCompletesSegment(t *testing.T) {
	dir := t.TempDir()
	w := newWALStream(t, segLSN(1))
	w.msg(1000)
	sw := w.switchSeg()
	s := openStore(t, testOpts(dir), 0)
	if err := s.InitializeFirstSegment(segLSN(1)); err != nil {
		t.Fatal(err)
	}
	if err := s.Truncate(segLSN(1)); err != nil {
		t.Fatal(err)
	}
	// Only the switch record itself arrives, not the padding after it.
	writeRange(t, s, w, segLSN(1), physicalEnd(sw), nil)
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	if s.FlushRecordLSN() != segLSN(2) {
		t.Fatalf("flush record LSN after a switch = %s, want %s", s.FlushRecordLSN(), segLSN(2))
	}
	if err := s.Truncate(segLSN(2)); err != nil {
		t.Fatal(err)
	}
	checkNames(t, dir, 1, 2, false)
}
