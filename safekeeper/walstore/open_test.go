package walstore

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"strata.dev/libs/lsn"
	"strata.dev/libs/wal"
)

// TestReopen: after Close, Open from any earlier record boundary finds the
// end of the flushed WAL, and all four LSNs equal it (SK §4.4.2).
func TestReopen(t *testing.T) {
	dir := t.TempDir()
	base := segLSN(1) + 0x28
	r := rand.New(rand.NewPCG(11, 11))
	s, w := storeWithStream(t, testOpts(dir), base, r, segLSN(3)+300*kib)
	writeRange(t, s, w, base, w.end(), randomChunks(r, 128*kib))
	flush(t, s)
	end := w.end()

	// Unflushed WAL in the buffer is dropped by Close.
	w.fill(r, end+50*kib)
	writeRange(t, s, w, end, w.end(), randomChunks(r, 16*kib))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, start := range []lsn.LSN{base, w.recs[1].End, w.lastEndWithin(segLSN(2) + 10), w.lastEndWithin(segLSN(3) + 200*kib), end} {
		s := openStore(t, testOpts(dir), start)
		checkLSNs(t, "reopened from "+start.String(), s, lsns{end, end, end, end})
		s.Close()
	}

	// A Flush writes out a trailing partial record too; a reopen sees it is
	// torn and the truncation removes it.
	s = openStore(t, testOpts(dir), base)
	truncate(t, s, w, end)
	w.fill(r, end+30*kib)
	last := w.msg(20000)
	writeRange(t, s, w, end, last.Start+9000, nil)
	flush(t, s)
	if s.FlushRecordLSN() != last.Start {
		t.Fatalf("flush record LSN %s, want %s", s.FlushRecordLSN(), last.Start)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, testOpts(dir), end)
	checkLSNs(t, "reopened after a torn record", s, lsns{last.Start, last.Start, last.Start, last.Start})
	truncate(t, s, w, last.Start)
	checkDisk(t, dir, w, base, last.Start, last.Start)
}

// TestReopenSeesWrittenOut: Open on the directory of a store that is still
// running finds the end of what that store has handed to the kernel: a
// completed segment, or a flush, but not its buffer. (Whether written but
// unsynced bytes survive a machine crash cannot be tested here.)
func TestReopenSeesWrittenOut(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, testOpts(dir), 0)
	base := segLSN(1)
	w := newWALStream(t, base)
	r := rand.New(rand.NewPCG(12, 12))
	w.fill(r, segLSN(2)+100*kib)
	writeRange(t, s, w, base, w.end(), randomChunks(r, 128*kib))
	// Opening a second store removes temporary files: let the first one's
	// background spare be finished first.
	waitFor(t, "the spare segment", func() bool {
		fi, err := os.Stat(filepath.Join(dir, spareName))
		return err == nil && fi.Size() == testSegSize
	})

	other := openStore(t, testOpts(dir), base)
	if want := w.lastEndWithin(segLSN(2)); other.WriteLSN() != want {
		t.Fatalf("second store finds the end at %s, want %s (end of the completed segment)", other.WriteLSN(), want)
	}
	other.Close()

	flush(t, s)
	other = openStore(t, testOpts(dir), base)
	if other.WriteLSN() != s.FlushRecordLSN() {
		t.Fatalf("after a flush the second store finds the end at %s, want %s", other.WriteLSN(), s.FlushRecordLSN())
	}
	other.Close()
}

// TestOpenCleansUp: leftovers of interrupted segment creation are removed;
// a complete spare is reused and an incomplete one is not.
func TestOpenCleansUp(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, size int) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), make([]byte, size), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(tmpPrefix, 1000)
	write(tmpPrefix+".spare", testSegSize/2)
	write(tmpPrefix+"-other", 1)
	write("unrelated", 10)
	write(spareName, testSegSize)
	spare, err := os.Stat(filepath.Join(dir, spareName))
	if err != nil {
		t.Fatal(err)
	}

	s := openStore(t, testOpts(dir), 0)
	for _, name := range []string{tmpPrefix, tmpPrefix + ".spare", tmpPrefix + "-other"} {
		if _, err := os.Stat(filepath.Join(dir, name)); !os.IsNotExist(err) {
			t.Errorf("%s survived Open: %v", name, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "unrelated")); err != nil {
		t.Errorf("Open removed an unrelated file: %v", err)
	}
	w := newWALStream(t, segLSN(1))
	w.msg(100)
	writeRange(t, s, w, w.base, w.end(), nil)
	seg, err := os.Stat(filepath.Join(dir, wal.SegmentFileName(1, 1, testSegSize)+wal.PartialSuffix))
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(seg, spare) {
		t.Fatal("the complete spare was not used for the first segment")
	}
	s.Close()

	// A short spare (a crash while it was made, under an older version)
	// is not used; it is replaced by a complete one.
	dir = t.TempDir()
	write(spareName, testSegSize/3)
	short, err := os.Stat(filepath.Join(dir, spareName))
	if err != nil {
		t.Fatal(err)
	}
	s = openStore(t, testOpts(dir), 0)
	writeRange(t, s, w, w.base, w.end(), nil)
	seg, err = os.Stat(filepath.Join(dir, wal.SegmentFileName(1, 1, testSegSize)+wal.PartialSuffix))
	if err != nil {
		t.Fatal(err)
	}
	if os.SameFile(seg, short) || seg.Size() != testSegSize {
		t.Fatalf("the short spare became the segment (size %d)", seg.Size())
	}
	waitFor(t, "a complete spare", func() bool {
		fi, err := os.Stat(filepath.Join(dir, spareName))
		return err == nil && fi.Size() == testSegSize
	})
	flush(t, s)
	checkDisk(t, dir, w, w.base, w.end(), w.end())
}

func TestOpenRejects(t *testing.T) {
	dir := t.TempDir()
	for name, opts := range map[string]Options{
		"segment size": {Dir: dir, SegSize: 3 << 20, PgVersion: testPgVersion},
		"version":      {Dir: dir, SegSize: testSegSize, PgVersion: 90600},
		"no directory": {Dir: filepath.Join(dir, "missing"), SegSize: testSegSize, PgVersion: testPgVersion},
	} {
		if s, err := Open(opts, 0); err == nil {
			s.Close()
			t.Errorf("%s: Open accepted %+v", name, opts)
		}
	}
}
