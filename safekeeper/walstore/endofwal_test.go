package walstore

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"strata.dev/libs/lsn"
	"strata.dev/libs/wal"
	"strata.dev/libs/wal/walgen"
)

// layout stores the stream's bytes [w.base, to) in dir the way the store
// would have left them: complete segments, then a .partial one holding to
// (none when to is a segment start), zeros everywhere else.
func layout(t *testing.T, dir string, w *walStream, to lsn.LSN) {
	t.Helper()
	for segno := w.base.SegmentNumber(testSegSize); segLSN(segno) < to; segno++ {
		seg := make([]byte, testSegSize)
		from := max(segLSN(segno), w.base)
		copy(seg[from.SegmentOffset(testSegSize):], w.bytes(from, min(to, segLSN(segno+1))))
		name := wal.SegmentFileName(1, segno, testSegSize)
		if to < segLSN(segno+1) {
			name += wal.PartialSuffix
		}
		if err := os.WriteFile(filepath.Join(dir, name), seg, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// corrupt flips a byte in the body of rec on disk, so that its CRC fails.
func corrupt(t *testing.T, dir string, rec walgen.Record) {
	t.Helper()
	at := rec.Start + wal.RecordHeaderSize + 2
	if at.PageOffset() < wal.RecordHeaderSize+2 {
		t.Fatalf("record at %s: byte to corrupt is not in its first page", rec.Start)
	}
	f, err := openSegment(dir, at.SegmentNumber(testSegSize), testSegSize)
	if err != nil {
		t.Fatal(err)
	}
	name := f.Name()
	f.Close()
	f, err = os.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	off := int64(at.SegmentOffset(testSegSize))
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x5A
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func findEnd(t *testing.T, dir string, start lsn.LSN) lsn.LSN {
	t.Helper()
	end, err := FindEndOfWAL(dir, testSegSize, testPgVersion, start)
	if err != nil {
		t.Fatalf("FindEndOfWAL(%s): %v", start, err)
	}
	return end
}

// inSegment returns a record lying whole in segment segno, away from its
// page boundaries' headers.
func inSegment(t *testing.T, w *walStream, segno uint64) walgen.Record {
	t.Helper()
	for _, r := range w.recs[1:] {
		if r.Start > segLSN(segno)+lsn.PageSize && physicalEnd(r) < segLSN(segno+1) && r.Start.PageOffset() < lsn.PageSize-64 {
			return r
		}
	}
	t.Fatalf("no record inside segment %d", segno)
	return walgen.Record{}
}

// TestFindEndOfWAL: the end is that of the last complete, intact record
// (SK §4.5), wherever and however the WAL stops.
func TestFindEndOfWAL(t *testing.T) {
	base := segLSN(1) + 2*lsn.PageSize + 0x130
	for _, tc := range []struct {
		name string
		// build makes the WAL in dir and returns where the scan starts and
		// the end it must find.
		build func(t *testing.T, dir string, w *walStream) (start, end lsn.LSN)
	}{
		{"zeros after the last record", func(t *testing.T, dir string, w *walStream) (lsn.LSN, lsn.LSN) {
			layout(t, dir, w, w.end())
			return base, w.end()
		}},
		{"torn record", func(t *testing.T, dir string, w *walStream) (lsn.LSN, lsn.LSN) {
			last := w.msg(300)
			layout(t, dir, w, last.Start+100)
			return base, last.Start
		}},
		{"torn record spanning pages", func(t *testing.T, dir string, w *walStream) (lsn.LSN, lsn.LSN) {
			last := w.msg(30000)
			layout(t, dir, w, last.Start+lsn.PageSize+100)
			return w.recs[3].End, last.Start
		}},
		{"torn across a segment boundary, next segment missing", func(t *testing.T, dir string, w *walStream) (lsn.LSN, lsn.LSN) {
			w.fill(rand.New(rand.NewPCG(1, 1)), segLSN(2)-lsn.PageSize)
			last := w.noop(3 * lsn.PageSize)
			layout(t, dir, w, segLSN(2))
			return base, last.Start
		}},
		{"torn across a segment boundary, next segment zero", func(t *testing.T, dir string, w *walStream) (lsn.LSN, lsn.LSN) {
			w.fill(rand.New(rand.NewPCG(1, 1)), segLSN(2)-lsn.PageSize)
			last := w.noop(3 * lsn.PageSize)
			w.msg(10)
			layout(t, dir, w, segLSN(2)+lsn.PageSize)
			zero := make([]byte, testSegSize)
			if err := os.WriteFile(filepath.Join(dir, wal.SegmentFileName(1, 2, testSegSize)+wal.PartialSuffix), zero, 0o600); err != nil {
				t.Fatal(err)
			}
			return base, last.Start
		}},
		{"corrupted record", func(t *testing.T, dir string, w *walStream) (lsn.LSN, lsn.LSN) {
			layout(t, dir, w, w.end())
			bad := w.recs[len(w.recs)/2]
			for i := len(w.recs) / 2; bad.Start.PageOffset() >= lsn.PageSize-64; i++ {
				bad = w.recs[i]
			}
			corrupt(t, dir, bad)
			return base, bad.Start
		}},
		{"XLOG_SWITCH ends the WAL", func(t *testing.T, dir string, w *walStream) (lsn.LSN, lsn.LSN) {
			sw := w.switchSeg()
			layout(t, dir, w, w.end())
			return base, sw.End
		}},
		{"XLOG_SWITCH without its padding", func(t *testing.T, dir string, w *walStream) (lsn.LSN, lsn.LSN) {
			sw := w.switchSeg()
			layout(t, dir, w, sw.Start+wal.RecordHeaderSize)
			return base, sw.End
		}},
		{"WAL after XLOG_SWITCH", func(t *testing.T, dir string, w *walStream) (lsn.LSN, lsn.LSN) {
			w.switchSeg()
			w.fill(rand.New(rand.NewPCG(2, 2)), segLSN(2)+40*kib)
			layout(t, dir, w, w.end())
			return base, w.end()
		}},
		{"start at the end", func(t *testing.T, dir string, w *walStream) (lsn.LSN, lsn.LSN) {
			layout(t, dir, w, w.end())
			return w.end(), w.end()
		}},
		{"start past the end", func(t *testing.T, dir string, w *walStream) (lsn.LSN, lsn.LSN) {
			layout(t, dir, w, w.end())
			return w.end() + 4*lsn.PageSize, w.end() + 4*lsn.PageSize
		}},
		{"start in a missing segment", func(t *testing.T, dir string, w *walStream) (lsn.LSN, lsn.LSN) {
			layout(t, dir, w, w.end())
			return segLSN(7) + 0x28, segLSN(7) + 0x28
		}},
		{"no WAL at all", func(t *testing.T, dir string, w *walStream) (lsn.LSN, lsn.LSN) {
			return base, base
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			w := newWALStream(t, base)
			w.fill(rand.New(rand.NewPCG(3, 3)), base+100*kib)
			start, want := tc.build(t, dir, w)
			if got := findEnd(t, dir, start); got != want {
				t.Fatalf("FindEndOfWAL(%s) = %s, want %s", start, got, want)
			}
		})
	}
}

// TestFindEndOfWALBoundedScan: with many segments behind the end, the scan
// does not start at a start far back but near the last segment, so restart
// time does not grow with the WAL kept. A damaged record far behind (which a
// full scan would stop at) shows where the scan started.
func TestFindEndOfWALBoundedScan(t *testing.T) {
	const lastSeg = 6 // segments 1..5 complete, 6 partial
	for _, tc := range []struct {
		name  string
		shape func(w *walStream, r *rand.Rand) // WAL up to the last segment
	}{
		{"records inside segments", func(w *walStream, r *rand.Rand) {
			w.fill(r, segLSN(lastSeg))
		}},
		{"last segment starts inside a record", func(w *walStream, r *rand.Rand) {
			w.fill(r, segLSN(lastSeg)-lsn.PageSize)
			w.noop(3 * lsn.PageSize)
		}},
		{"record longer than a segment", func(w *walStream, r *rand.Rand) {
			w.fill(r, segLSN(lastSeg-2)+500*kib)
			w.noop(testSegSize + 700*kib) // covers all of segment 5
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, badSeg := range []uint64{1, 2} {
				dir := t.TempDir()
				base := segLSN(1)
				w := newWALStream(t, base)
				r := rand.New(rand.NewPCG(badSeg, 4))
				tc.shape(w, r)
				w.fill(r, segLSN(lastSeg)+200*kib)
				layout(t, dir, w, w.end())
				checkNames(t, dir, 1, lastSeg, false)
				bad := inSegment(t, w, badSeg)
				corrupt(t, dir, bad)

				start := w.recs[1].End
				if got := findEnd(t, dir, start); got != w.end() {
					t.Fatalf("damage in segment %d: FindEndOfWAL(%s) = %s, want %s", badSeg, start, got, w.end())
				}
				// A scan from start would have stopped at the damage.
				if got, err := scanForward(dir, testSegSize, testPgVersion, start); err != nil || got != bad.Start {
					t.Fatalf("full scan from %s: %s, %v; want %s", start, got, err, bad.Start)
				}
			}

			// Damage in the segments the scan does read is still found.
			for _, badSeg := range []uint64{lastSeg - 1, lastSeg} {
				dir := t.TempDir()
				w := newWALStream(t, segLSN(1))
				r := rand.New(rand.NewPCG(badSeg, 5))
				tc.shape(w, r)
				w.fill(r, segLSN(lastSeg)+200*kib)
				layout(t, dir, w, w.end())
				var bad walgen.Record
				for _, rec := range w.recs {
					if rec.Start > segLSN(lastSeg)+100*kib && rec.Start.PageOffset() < lsn.PageSize-64 {
						bad = rec
						break
					}
				}
				if badSeg == lastSeg-1 && tc.name != "record longer than a segment" {
					bad = inSegment(t, w, badSeg)
				}
				corrupt(t, dir, bad)
				if got := findEnd(t, dir, w.recs[1].End); got != bad.Start {
					t.Fatalf("damage at %s: FindEndOfWAL = %s", bad.Start, got)
				}
			}
		})
	}
}
