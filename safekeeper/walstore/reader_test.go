package walstore

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"strata.dev/libs/lsn"
	"strata.dev/libs/wal"
)

func readerOpts(dir string, timelineStart, localStart lsn.LSN) ReaderOptions {
	return ReaderOptions{
		Dir: dir, SegSize: testSegSize, PgVersion: testPgVersion, SystemID: testOpts(dir).SystemID,
		TimelineStartLSN: timelineStart, LocalStartLSN: localStart,
	}
}

func newReader(t *testing.T, o ReaderOptions, start lsn.LSN) *Reader {
	t.Helper()
	rd, err := NewReader(o, start)
	if err != nil {
		t.Fatalf("NewReader(%s): %v", start, err)
	}
	t.Cleanup(func() { rd.Close() })
	return rd
}

// readTo reads from rd up to end in pieces of random sizes, checking that
// no read crosses a segment boundary, and returns the bytes.
func readTo(t *testing.T, rd *Reader, r *rand.Rand, end lsn.LSN) []byte {
	t.Helper()
	var out []byte
	for rd.Pos() < end {
		pos := rd.Pos()
		p := make([]byte, min(end.Sub(pos), uint64(1+r.IntN(300*kib))))
		n, err := rd.Read(p)
		if err != nil {
			t.Fatalf("Read at %s: %v", pos, err)
		}
		if n == 0 || rd.Pos() != pos+lsn.LSN(n) {
			t.Fatalf("Read at %s returned %d bytes and moved to %s", pos, n, rd.Pos())
		}
		if pos.SegmentNumber(testSegSize) != (pos + lsn.LSN(n) - 1).SegmentNumber(testSegSize) {
			t.Fatalf("Read at %s of %d bytes crosses a segment boundary", pos, n)
		}
		if want := min(len(p), int(segLSN(pos.SegmentNumber(testSegSize)+1).Sub(pos))); n != want {
			t.Fatalf("Read at %s returned %d bytes, want %d", pos, n, want)
		}
		out = append(out, p[:n]...)
	}
	return out
}

// TestReader: a reader serves the synthetic image before the timeline
// start, then the segment files' bytes, one segment at a time, also while
// the store completes and renames the segment it reads (SK §5.2).
func TestReader(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, testOpts(dir), 0)
	base := segLSN(1) + 5*lsn.PageSize + 0x100
	w := newWALStream(t, base)
	r := rand.New(rand.NewPCG(13, 13))
	w.fill(r, segLSN(5)+100*kib)
	writeRange(t, s, w, base, segLSN(4)+200*kib, randomChunks(r, 128*kib))
	flush(t, s)
	o := readerOpts(dir, base, base)

	rd := newReader(t, o, segLSN(1))
	prefix, err := wal.InitialImage{Start: base, SystemID: o.SystemID, PGVersion: testPgVersion, SegSize: testSegSize}.Prefix()
	if err != nil {
		t.Fatal(err)
	}
	if got := readTo(t, rd, r, base); !bytes.Equal(got, prefix) {
		t.Fatal("bytes before the timeline start differ from the synthetic image")
	}
	// Into the .partial segment 4, which is then completed and renamed.
	if got := readTo(t, rd, r, segLSN(4)+100*kib); !bytes.Equal(got, w.bytes(base, segLSN(4)+100*kib)) {
		t.Fatal("reader bytes differ from the stream")
	}
	writeRange(t, s, w, s.WriteLSN(), w.end(), randomChunks(r, 128*kib))
	flush(t, s)
	checkNames(t, dir, 1, 5, false)
	if got := readTo(t, rd, r, w.end()); !bytes.Equal(got, w.bytes(segLSN(4)+100*kib, w.end())) {
		t.Fatal("reader bytes across the rename differ from the stream")
	}

	// Random positions, the complete file this time, half of them with
	// read-ahead to the end.
	for i := range 20 {
		from := base + lsn.LSN(r.Uint64N(w.end().Sub(base)))
		to := min(w.end(), from+lsn.LSN(r.IntN(400*kib)))
		rd := newReader(t, o, from)
		if i%2 == 0 {
			rd.SetEnd(w.end())
		}
		if got := readTo(t, rd, r, to); !bytes.Equal(got, w.bytes(from, to)) {
			t.Fatalf("reading [%s, %s) differs from the stream", from, to)
		}
		rd.Close()
	}

	// A segment removed (by WAL removal) is reported as missing.
	if err := os.Remove(filepath.Join(dir, wal.SegmentFileName(1, 2, testSegSize))); err != nil {
		t.Fatal(err)
	}
	rd = newReader(t, o, segLSN(2)+100)
	if _, err := rd.Read(make([]byte, 10)); !errors.Is(err, ErrSegmentMissing) {
		t.Fatalf("read of a removed segment: %v, want ErrSegmentMissing", err)
	}
}

func TestReaderBeforeLocalStart(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, testOpts(dir), 0)
	base := segLSN(1) + 0x28
	w := newWALStream(t, base)
	w.fill(rand.New(rand.NewPCG(14, 14)), segLSN(3)+10*kib)
	writeRange(t, s, w, base, w.end(), nil)
	flush(t, s)

	// This safekeeper's WAL begins in segment 3: segment 2 is not its own,
	// even though a file is there.
	o := readerOpts(dir, base, segLSN(3)+0x100)
	rd := newReader(t, o, segLSN(2)+0x100)
	if _, err := rd.Read(make([]byte, 10)); !errors.Is(err, ErrSegmentMissing) {
		t.Fatalf("read before the local start: %v, want ErrSegmentMissing", err)
	}
	// Within the local start's segment the file is read.
	rd = newReader(t, o, segLSN(3))
	p := make([]byte, 0x100)
	if _, err := rd.Read(p); err != nil || !bytes.Equal(p, w.bytes(segLSN(3), segLSN(3)+0x100)) {
		t.Fatalf("read in the local start's segment: %v", err)
	}

	if _, err := NewReader(readerOpts(dir, base, 0), base); err == nil {
		t.Fatal("reader of a timeline without WAL accepted")
	}
	if _, err := NewReader(o, segLSN(0)+0x100); err == nil {
		t.Fatal("reader before the timeline's first segment accepted")
	}
}

// TestReaderReadAhead: with blocks smaller than a segment, a reader whose
// end is far ahead reads the next block while the caller consumes the
// current one; the bytes are the stream's, across segments and seeks. A
// block that ends mid-page at the end is not read past: once more WAL is
// written there, the reader returns the new bytes.
func TestReaderReadAhead(t *testing.T) {
	dir := t.TempDir()
	base := segLSN(1) + 0x28
	r := rand.New(rand.NewPCG(15, 15))
	s, w := storeWithStream(t, testOpts(dir), base, r, segLSN(4)+300*kib)
	mid := segLSN(3) + 123*kib + 77 // not on a page boundary
	writeRange(t, s, w, base, mid, randomChunks(r, 128*kib))
	flush(t, s)
	o := readerOpts(dir, base, base)

	rd := newReader(t, o, base)
	rd.blockSize = 64 * kib
	rd.SetEnd(mid)
	if got := readTo(t, rd, r, mid); !bytes.Equal(got, w.bytes(base, mid)) {
		t.Fatal("bytes read with read-ahead differ from the stream")
	}
	if rd.spare == nil {
		t.Fatal("the reader never read ahead")
	}
	writeRange(t, s, w, mid, w.end(), randomChunks(r, 128*kib))
	flush(t, s)
	rd.SetEnd(w.end())
	if got := readTo(t, rd, r, w.end()); !bytes.Equal(got, w.bytes(mid, w.end())) {
		t.Fatal("bytes after the old end differ from the stream")
	}

	// A new reader at random positions: read-ahead is dropped when the
	// position moves elsewhere (a new segment) and restarted.
	for range 10 {
		from := base + lsn.LSN(r.Uint64N(w.end().Sub(base)))
		to := min(w.end(), from+lsn.LSN(r.IntN(int(testSegSize))))
		rd := newReader(t, o, from)
		rd.blockSize = 32 * kib
		rd.SetEnd(w.end())
		if got := readTo(t, rd, r, to); !bytes.Equal(got, w.bytes(from, to)) {
			t.Fatalf("reading [%s, %s) with read-ahead differs from the stream", from, to)
		}
		rd.Close()
	}
}
