package walstore

import (
	"bufio"
	"bytes"
	"errors"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"strata.dev/libs/lsn"
	"strata.dev/libs/wal"
	"strata.dev/libs/wal/walgen"
)

// Tests use 1 MiB segments so that many segments cost little, and NoSync
// except where fsync itself is under test.
const (
	testSegSize   = 1 << 20
	testPgVersion = 150004
	kib           = 1 << 10
)

func testOpts(dir string) Options {
	// RawIO for two processors: writes take the raw path while one token is
	// free, and the runtime's path when tests run stores in parallel.
	return Options{Dir: dir, SegSize: testSegSize, PgVersion: testPgVersion, SystemID: walgen.DefaultSystemID, NoSync: true,
		RawIO: NewRawIO(2)}
}

func segLSN(segno uint64) lsn.LSN { return lsn.SegmentLSN(segno, 0, testSegSize) }

func openStore(t testing.TB, opts Options, start lsn.LSN) *Store {
	t.Helper()
	s, err := Open(opts, start)
	if err != nil {
		t.Fatalf("Open(start %s): %v", start, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// storeWithStream opens a new store (no WAL yet) with opts and makes a
// stream of random records, drawn from r, from base up to fillTo.
func storeWithStream(t testing.TB, opts Options, base lsn.LSN, r *rand.Rand, fillTo lsn.LSN) (*Store, *walStream) {
	t.Helper()
	s := openStore(t, opts, 0)
	w := newWALStream(t, base)
	w.fill(r, fillTo)
	return s, w
}

// walStream models a timeline's WAL: every byte from base on, as the
// compute would stream it, and the records in it. After truncate it
// continues with new records from the truncation point.
type walStream struct {
	t    testing.TB
	base lsn.LSN
	data []byte // the stream from base
	recs []walgen.Record
	g    *walgen.Generator // makes what follows data
}

func newWALStream(t testing.TB, base lsn.LSN) *walStream {
	t.Helper()
	g, err := walgen.New(base, walgen.Options{SegSize: testSegSize, PgVersion: testPgVersion})
	if err != nil {
		t.Fatal(err)
	}
	return &walStream{t: t, base: base, g: g}
}

// end is the end of the stream made so far (the last record's End).
func (w *walStream) end() lsn.LSN { return w.base + lsn.LSN(len(w.data)) }

func (w *walStream) add(r walgen.Record) walgen.Record {
	w.recs = append(w.recs, r)
	w.data = append(w.data, w.g.Bytes()...)
	return r
}

func (w *walStream) msg(n int) walgen.Record  { return w.add(w.g.LogicalMessage(n)) }
func (w *walStream) noop(n int) walgen.Record { return w.add(w.g.Noop(n)) }
func (w *walStream) switchSeg() walgen.Record { return w.add(w.g.Switch()) }

// fill adds records of random sizes, some spanning pages, until the stream
// reaches at least to.
func (w *walStream) fill(r *rand.Rand, to lsn.LSN) {
	for w.end() < to {
		if r.IntN(8) == 0 {
			w.msg(8*kib + r.IntN(24*kib))
		} else {
			w.msg(r.IntN(600))
		}
	}
}

// fillExactly adds records so that the last one ends exactly at to, which
// must be a page end at least two pages ahead.
func (w *walStream) fillExactly(to lsn.LSN) {
	for w.end() < to-2*lsn.PageSize {
		w.noop(int(min(to.Sub(w.end())-2*lsn.PageSize, 200*kib)))
	}
	for w.end() != to {
		left := int(to.Sub(w.end()))
		switch {
		case left <= 0:
			w.t.Fatalf("fillExactly: stream at %s passed %s", w.end(), to)
		case w.end().PageStart() == (to-1).PageStart() && left >= 26:
			w.noop(left)
		default:
			w.noop(26 + 8*(left%3))
		}
	}
}

// bytes returns the stream's bytes in [from, to).
func (w *walStream) bytes(from, to lsn.LSN) []byte {
	if from < w.base || to > w.end() || from > to {
		w.t.Fatalf("bytes [%s, %s) outside the stream [%s, %s)", from, to, w.base, w.end())
	}
	return w.data[from-w.base : to-w.base]
}

// recordEndingAt is the index of the record ending at end, -1 for the stream start.
func (w *walStream) recordEndingAt(end lsn.LSN) int {
	if end == w.base {
		return -1
	}
	for i, r := range w.recs {
		if r.End == end {
			return i
		}
	}
	w.t.Fatalf("%s is not a record boundary of the stream", end)
	return 0
}

// truncate cuts the stream at the record boundary end; later records are
// new ones, different from those cut.
func (w *walStream) truncate(end lsn.LSN) {
	w.t.Helper()
	i := w.recordEndingAt(end)
	prev := lsn.LSN(0)
	if i >= 0 {
		prev = w.recs[i].Start
	}
	w.recs = w.recs[:i+1]
	w.data = w.data[:end-w.base]
	g, err := walgen.New(end, walgen.Options{SegSize: testSegSize, PgVersion: testPgVersion, Prev: prev})
	if err != nil {
		w.t.Fatal(err)
	}
	w.g = g
}

// lastEndWithin is the End of the last record whose bytes all lie below to
// (the stream's start if none).
func (w *walStream) lastEndWithin(to lsn.LSN) lsn.LSN {
	end := w.base
	for _, r := range w.recs {
		if physicalEnd(r) > to {
			break
		}
		end = r.End
	}
	return end
}

// physicalEnd is where r's last byte ends, page headers inside it counted.
func physicalEnd(r walgen.Record) lsn.LSN {
	p := r.Start
	left := uint64(r.TotLen)
	for {
		n := min(left, lsn.PageSize-p.PageOffset())
		p += lsn.LSN(n)
		left -= n
		if left == 0 {
			return p
		}
		hdr := uint64(wal.ShortPageHeaderSize)
		if p.IsSegmentStart(testSegSize) {
			hdr = wal.LongPageHeaderSize
		}
		p += lsn.LSN(hdr)
	}
}

// writeRange hands [from, to) of the stream to the store in pieces of the
// sizes chunk returns (all at once when chunk is nil).
func writeRange(t testing.TB, s *Store, w *walStream, from, to lsn.LSN, chunk func() int) {
	t.Helper()
	for p := from; p < to; {
		n := to.Sub(p)
		if chunk != nil {
			n = min(n, uint64(max(1, chunk())))
		}
		if err := s.Write(p, w.bytes(p, p+lsn.LSN(n))); err != nil {
			t.Fatalf("Write at %s (%d bytes): %v", p, n, err)
		}
		p += lsn.LSN(n)
	}
}

func randomChunks(r *rand.Rand, max int) func() int {
	return func() int { return 1 + r.IntN(max) }
}

// readDisk returns [from, to) from the segment files in dir, checking that
// every file read is exactly one segment long.
func readDisk(t testing.TB, dir string, from, to lsn.LSN) []byte {
	t.Helper()
	var out []byte
	for p := from; p < to; {
		segno := p.SegmentNumber(testSegSize)
		f, err := openSegment(dir, segno, testSegSize)
		if err != nil {
			t.Fatalf("read WAL at %s: %v", p, err)
		}
		fi, err := f.Stat()
		if err != nil || fi.Size() != testSegSize {
			f.Close()
			t.Fatalf("segment %s: size %d (%v), want %d", f.Name(), fi.Size(), err, testSegSize)
		}
		n := min(to.Sub(p), segLSN(segno+1).Sub(p))
		b := make([]byte, n)
		_, err = f.ReadAt(b, int64(p.SegmentOffset(testSegSize)))
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b...)
		p += lsn.LSN(n)
	}
	return out
}

// checkDisk checks the segment files against the model: bytes from `from`
// up to durable equal the stream; up to written they equal it or are still
// zero (written to the store, maybe not yet to the file); after written, to
// the end of its segment, they are zero.
func checkDisk(t testing.TB, dir string, w *walStream, from, durable, written lsn.LSN) {
	t.Helper()
	if got, want := readDisk(t, dir, from, durable), w.bytes(from, durable); !bytes.Equal(got, want) {
		t.Fatalf("disk [%s, %s) differs from the stream at %s", from, durable, from+lsn.LSN(firstDiff(got, want)))
	}
	if written > durable {
		got, want := readDisk(t, dir, durable, written), w.bytes(durable, written)
		for i := range got {
			if got[i] != want[i] && got[i] != 0 {
				t.Fatalf("disk at %s holds %#x: neither the stream's %#x nor zero", durable+lsn.LSN(i), got[i], want[i])
			}
		}
	}
	segEnd := (written + testSegSize).SegmentStart(testSegSize)
	if written.IsSegmentStart(testSegSize) {
		if _, err := openSegment(dir, written.SegmentNumber(testSegSize), testSegSize); errors.Is(err, fs.ErrNotExist) {
			return
		}
	}
	tail := readDisk(t, dir, written, segEnd)
	if i := bytes.IndexFunc(tail, func(r rune) bool { return r != 0 }); i >= 0 {
		t.Fatalf("disk after the end of WAL %s is not zero at %s", written, written+lsn.LSN(i))
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// segmentNames lists dir's segment files by number: name with suffix.
func segmentNames(t testing.TB, dir string) map[uint64]string {
	t.Helper()
	segs, err := listSegments(dir, testSegSize)
	if err != nil {
		t.Fatal(err)
	}
	out := map[uint64]string{}
	for _, s := range segs {
		if old, dup := out[s.segno]; dup {
			t.Fatalf("segment %d has two files: %s and %s", s.segno, old, s.name)
		}
		out[s.segno] = s.name
	}
	return out
}

// checkNames fails unless segments first..last-1 are complete files and
// segment last is a .partial one (or absent, if absentOK).
func checkNames(t testing.TB, dir string, first, last uint64, absentOK bool) {
	t.Helper()
	names := segmentNames(t, dir)
	for segno := first; segno <= last; segno++ {
		want := wal.SegmentFileName(1, segno, testSegSize)
		if segno == last {
			want += wal.PartialSuffix
			if _, ok := names[segno]; !ok && absentOK {
				continue
			}
		}
		if names[segno] != want {
			t.Fatalf("segment %d is %q, want %q (all: %v)", segno, names[segno], want, names)
		}
		delete(names, segno)
	}
	if len(names) > 0 {
		t.Fatalf("unexpected segment files %v (want %d..%d)", names, first, last)
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// waldumpStarts runs pg_waldump over the segment files of dir (copied under
// their complete names, as pg_waldump ignores .partial) from start to end,
// and returns the record starts it lists. It skips the test without
// pg_waldump.
func waldumpStarts(t *testing.T, dir string, start, end lsn.LSN) []lsn.LSN {
	t.Helper()
	bin := "/usr/lib/postgresql/15/bin"
	if d := os.Getenv("STRATA_PG_BINDIR"); d != "" {
		bin = d
	}
	waldump := filepath.Join(bin, "pg_waldump")
	if _, err := os.Stat(waldump); err != nil {
		t.Skipf("no pg_waldump: %v", err)
	}
	plain := t.TempDir()
	segs, err := listSegments(dir, testSegSize)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range segs {
		b, err := os.ReadFile(filepath.Join(dir, s.name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(plain, wal.SegmentFileName(1, s.segno, testSegSize)), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(waldump, "-p", plain, "--start="+start.String(), "--end="+end.String())
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("pg_waldump --start=%s --end=%s: %v\n%s", start, end, err, stderr.String())
	}
	var starts []lsn.LSN
	sc := bufio.NewScanner(&stdout)
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "first record is after ") {
			continue // pg_waldump's note when --start is not a record start
		}
		m := waldumpLSN.FindStringSubmatch(sc.Text())
		if m == nil {
			t.Fatalf("unparsed pg_waldump line %.200q", sc.Text())
		}
		starts = append(starts, lsn.MustParse(m[1]))
	}
	return starts
}

var waldumpLSN = regexp.MustCompile(`, lsn: ([0-9A-F]+/[0-9A-F]+), prev `)
