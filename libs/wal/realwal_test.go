package wal

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"strata.dev/libs/lsn"
)

// The testdata comes from a real PostgreSQL 15 (testdata/gen regenerates it);
// records.txt is pg_waldump's view of it and is the oracle here.

type realPiece struct {
	File  string  `json:"file"`
	Start lsn.LSN `json:"start"`
	End   lsn.LSN `json:"end"`
}

type realStream struct {
	Name     string   `json:"name"`
	Start    lsn.LSN  `json:"start"`
	Pieces   []string `json:"pieces"`
	EndOfWAL lsn.LSN  `json:"end_of_wal"`
}

type realWAL struct {
	PGVersionNum uint32       `json:"pg_version_num"`
	SystemID     string       `json:"system_id"`
	SegmentSize  uint64       `json:"segment_size"`
	Pieces       []realPiece  `json:"pieces"`
	Streams      []realStream `json:"streams"`
	Records      string       `json:"records"`

	oracle []oracleRecord
	bytes  map[string][]byte
}

type oracleRecord struct {
	start      lsn.LSN
	totLen     uint32
	rmgr, desc string
}

func (o oracleRecord) isSwitch() bool { return o.rmgr == "XLOG" && o.desc == "SWITCH" }

func loadRealWAL(tb testing.TB) *realWAL {
	tb.Helper()
	js, err := os.ReadFile("testdata/manifest.json")
	if err != nil {
		tb.Fatal(err)
	}
	m := &realWAL{bytes: map[string][]byte{}}
	if err := json.Unmarshal(js, m); err != nil {
		tb.Fatal(err)
	}
	for _, p := range m.Pieces {
		f, err := os.Open(filepath.Join("testdata", p.File))
		if err != nil {
			tb.Fatal(err)
		}
		zr, err := gzip.NewReader(f)
		if err != nil {
			tb.Fatal(err)
		}
		b, err := io.ReadAll(zr)
		f.Close()
		if err != nil {
			tb.Fatal(err)
		}
		if uint64(len(b)) != p.End.Sub(p.Start) {
			tb.Fatalf("%s: %d bytes, manifest says [%s, %s)", p.File, len(b), p.Start, p.End)
		}
		m.bytes[p.File] = b
	}
	f, err := os.Open(filepath.Join("testdata", m.Records))
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 {
			tb.Fatalf("bad oracle line %q", sc.Text())
		}
		n, err := strconv.ParseUint(fields[1], 10, 32)
		if err != nil {
			tb.Fatal(err)
		}
		m.oracle = append(m.oracle, oracleRecord{lsn.MustParse(fields[0]), uint32(n), fields[2], fields[3]})
	}
	if err := sc.Err(); err != nil {
		tb.Fatal(err)
	}
	return m
}

func (m *realWAL) stream(tb testing.TB, name string) (realStream, []byte) {
	for _, s := range m.Streams {
		if s.Name != name {
			continue
		}
		var b []byte
		pos := s.Start
		for _, file := range s.Pieces {
			for _, p := range m.Pieces {
				if p.File == file {
					b = append(b, make([]byte, p.Start.Sub(pos))...) // XLOG_SWITCH padding
					b = append(b, m.bytes[file]...)
					pos = p.End
				}
			}
		}
		return s, b
	}
	tb.Fatalf("no stream %q", name)
	return realStream{}, nil
}

// physicalEnd is where a record of totLen bytes starting at start ends, page
// headers included (worked out from the layout rules, not by the decoder).
func physicalEnd(start lsn.LSN, totLen uint32, segSize uint64) lsn.LSN {
	pos, rem := uint64(start), uint64(totLen)
	for {
		n := min(lsn.PageSize-pos%lsn.PageSize, rem)
		pos, rem = pos+n, rem-n
		if rem == 0 {
			return lsn.LSN(pos)
		}
		pos += ShortPageHeaderSize
		if (pos-ShortPageHeaderSize)%segSize == 0 {
			pos += LongPageHeaderSize - ShortPageHeaderSize
		}
	}
}

// expected lists the oracle records a decoder started at from and fed up to
// fedEnd must return, with their end LSNs.
func (m *realWAL) expected(from, fedEnd lsn.LSN) (recs []oracleRecord, ends []lsn.LSN) {
	for _, o := range m.oracle {
		if o.start < from {
			continue
		}
		end := physicalEnd(o.start, o.totLen, m.SegmentSize)
		if end > fedEnd {
			break
		}
		next := end.Align8()
		if o.isSwitch() {
			next = (end + lsn.LSN(m.SegmentSize) - 1).SegmentStart(m.SegmentSize)
		}
		recs, ends = append(recs, o), append(ends, next)
	}
	return recs, ends
}

func checkAgainstOracle(t *testing.T, m *realWAL, got []Record, from, fedEnd lsn.LSN, keep bool) {
	t.Helper()
	want, ends := m.expected(from, fedEnd)
	if len(got) != len(want) {
		t.Fatalf("decoded %d records from %s, pg_waldump lists %d", len(got), from, len(want))
	}
	for i, o := range want {
		g := got[i]
		if g.StartLSN != o.start || g.Header.TotLen != o.totLen || g.EndLSN != ends[i] {
			t.Fatalf("record %d: got %s len %d end %s; pg_waldump: %s len %d (%s %s), end %s",
				i, g.StartLSN, g.Header.TotLen, g.EndLSN, o.start, o.totLen, o.rmgr, o.desc, ends[i])
		}
		if g.Header.IsSwitch() != o.isSwitch() {
			t.Fatalf("record at %s: IsSwitch %v, pg_waldump says %s %s", o.start, g.Header.IsSwitch(), o.rmgr, o.desc)
		}
		if keep && (len(g.Data) != int(o.totLen) || ValidateRecord(g.Data) != nil) {
			t.Fatalf("record at %s: bad data", o.start)
		}
		// The next record starts at EndLSN, or past the page header there.
		if i+1 < len(want) {
			next, e := want[i+1].start, g.EndLSN
			if next != e && !(e.IsPageStart() && next == e+lsn.LSN(pageHeaderSizeAt(e, m.SegmentSize))) {
				t.Fatalf("record at %s ends at %s but the next starts at %s", o.start, e, next)
			}
		}
	}
}

func TestRealWAL(t *testing.T) {
	m := loadRealWAL(t)
	var sawSwitch, sawSegmentSpan, sawPageSpan bool
	for _, o := range m.oracle {
		end := physicalEnd(o.start, o.totLen, m.SegmentSize)
		sawSwitch = sawSwitch || o.isSwitch()
		sawPageSpan = sawPageSpan || end.PageStart() != o.start.PageStart()
		sawSegmentSpan = sawSegmentSpan || end.SegmentStart(m.SegmentSize) != o.start.SegmentStart(m.SegmentSize)
	}
	if !sawSwitch || !sawPageSpan || !sawSegmentSpan {
		t.Fatalf("testdata lacks a case: switch %v, page span %v, segment span %v", sawSwitch, sawPageSpan, sawSegmentSpan)
	}

	for _, name := range []string{"switch", "span"} {
		s, data := m.stream(t, name)
		fedEnd := s.Start + lsn.LSN(len(data))
		for _, keep := range []bool{true, false} {
			for _, split := range []string{"whole", "8KiB", "random"} {
				t.Run(fmt.Sprintf("%s/keep=%v/%s", name, keep, split), func(t *testing.T) {
					var chunk func() int
					switch split {
					case "8KiB":
						chunk = func() int { return 8192 }
					case "random":
						chunk = randomChunks(rand.New(rand.NewPCG(uint64(len(name)), 7)), 200<<10)
					}
					d := newDecoder(s.Start, m.PGVersionNum, m.SegmentSize, keep)
					got := decodeInChunks(t, d, data, chunk)
					checkAgainstOracle(t, m, got.recs, s.Start, fedEnd, keep)
					if s.EndOfWAL == 0 {
						if got.err != nil || d.FedLSN() != fedEnd {
							t.Fatalf("stream ends inside a record: got %v, fed to %s", got.err, d.FedLSN())
						}
						return
					}
					var de *DecodeError
					if !errors.As(got.err, &de) || !IsEndOfWAL(got.err) || de.LSN != s.EndOfWAL {
						t.Fatalf("final error %v; pg_waldump ends at %s", got.err, s.EndOfWAL)
					}
					if want := fmt.Sprintf("record at %s: xl_tot_len 0 (end of WAL)", s.EndOfWAL); got.err.Error() != want {
						t.Fatalf("error %q; want %q", got.err, want)
					}
				})
			}
		}
	}
}

// TestRealWALRandomSplits: the same bytes in random-size chunks give
// byte-identical results.
func TestRealWALRandomSplits(t *testing.T) {
	m := loadRealWAL(t)
	s, data := m.stream(t, "span")
	ref := decodeInChunks(t, NewDecoder(s.Start, m.PGVersionNum, m.SegmentSize), data, nil)
	for seed := range uint64(8) {
		r := rand.New(rand.NewPCG(seed, 42))
		got := decodeInChunks(t, NewDecoder(s.Start, m.PGVersionNum, m.SegmentSize), data, randomChunks(r, 200<<10))
		if len(got.recs) != len(ref.recs) || got.err.Error() != ref.err.Error() {
			t.Fatalf("seed %d: %d records, %v; want %d, %v", seed, len(got.recs), got.err, len(ref.recs), ref.err)
		}
		for i := range got.recs {
			g, w := got.recs[i], ref.recs[i]
			if g.StartLSN != w.StartLSN || g.EndLSN != w.EndLSN || g.Header != w.Header || !bytes.Equal(g.Data, w.Data) {
				t.Fatalf("seed %d: record %d differs", seed, i)
			}
		}
	}
}

// TestRealWALStartAnywhere starts at many record boundaries (start and end
// LSNs, including ends on page boundaries) and at page starts inside records.
func TestRealWALStartAnywhere(t *testing.T) {
	m := loadRealWAL(t)
	s, data := m.stream(t, "switch")
	fedEnd := s.Start + lsn.LSN(len(data))
	ref := decodeInChunks(t, NewBoundaryDecoder(s.Start, m.PGVersionNum, m.SegmentSize), data, nil)
	var starts []lsn.LSN
	pageEnds := 0
	for i, r := range ref.recs {
		if i%97 == 0 || r.EndLSN.IsPageStart() {
			starts = append(starts, r.StartLSN, r.EndLSN)
		}
		if r.EndLSN.IsPageStart() {
			pageEnds++
		}
		// Page starts strictly inside a record: the decoder must skip the tail.
		for p := r.StartLSN.PageStart() + lsn.PageSize; p < r.StartLSN+lsn.LSN(r.Header.TotLen) && i%5 == 0; p += lsn.PageSize {
			starts = append(starts, p)
		}
	}
	for _, start := range starts {
		if start >= fedEnd {
			continue
		}
		d := NewDecoder(start, m.PGVersionNum, m.SegmentSize)
		got := decodeInChunks(t, d, data[start-s.Start:], nil)
		if got.err != nil {
			t.Fatalf("from %s: %v", start, got.err)
		}
		// Starting at a page start inside a record begins with the next record.
		from := start
		for _, r := range ref.recs {
			if r.StartLSN < start && start < r.StartLSN+lsn.LSN(r.Header.TotLen) {
				from = r.EndLSN
			}
		}
		checkAgainstOracle(t, m, got.recs, from, fedEnd, true)
	}
	t.Logf("%d start positions, %d records ending on a page boundary", len(starts), pageEnds)
}

// TestRealWALDamage flips bytes in real records and page headers.
func TestRealWALDamage(t *testing.T) {
	m := loadRealWAL(t)
	s, data := m.stream(t, "span")
	ref := decodeInChunks(t, NewDecoder(s.Start, m.PGVersionNum, m.SegmentSize), data, nil)
	at := func(l lsn.LSN) int { return int(l - s.Start) }

	// A byte inside every tenth record (and inside the record across the
	// segment boundary): CRC error naming the record's LSN.
	for i, r := range ref.recs {
		if i%10 != 0 && r.EndLSN.SegmentStart(m.SegmentSize) == r.StartLSN.SegmentStart(m.SegmentSize) {
			continue
		}
		off := RecordHeaderSize + int(r.Header.TotLen-RecordHeaderSize)/2
		pos := r.StartLSN + lsn.LSN(off)
		if end := physicalEnd(r.StartLSN, uint32(off), m.SegmentSize); end != pos {
			pos = end // skip over the page headers in between
			if pos.IsPageStart() {
				pos += lsn.LSN(pageHeaderSizeAt(pos, m.SegmentSize))
			}
		}
		bad := bytes.Clone(data)
		bad[at(pos)] ^= 0x40
		got := decodeInChunks(t, NewBoundaryDecoder(s.Start, m.PGVersionNum, m.SegmentSize), bad, nil)
		want := fmt.Sprintf("record at %s: CRC mismatch", r.StartLSN)
		if !errors.Is(got.err, ErrCorrupt) || !strings.Contains(fmt.Sprint(got.err), want) || len(got.recs) != i {
			t.Fatalf("flipped byte at %s: %d records, %v; want %d, %q", pos, len(got.recs), got.err, i, want)
		}
	}

	// Every page header, damaged in turn.
	for p := (s.Start + lsn.PageSize - 1).PageStart(); p < ref.recs[len(ref.recs)-1].EndLSN; p += lsn.PageSize {
		bad := bytes.Clone(data)
		binary.LittleEndian.PutUint64(bad[at(p)+8:], uint64(p-lsn.PageSize))
		got := decodeInChunks(t, NewBoundaryDecoder(s.Start, m.PGVersionNum, m.SegmentSize), bad, nil)
		want := fmt.Sprintf("invalid page header at %s: pageaddr %s, want %s", p, p-lsn.PageSize, p)
		if !errors.Is(got.err, ErrCorrupt) || got.err.Error() != want {
			t.Fatalf("page %s: %v; want %q", p, got.err, want)
		}
		var de *DecodeError
		if !errors.As(got.err, &de) || de.LSN != p {
			t.Fatalf("page %s: error LSN %v", p, got.err)
		}
	}
}

// TestRealRecordCRC: RecordCRC matches PostgreSQL's xl_crc on real records.
func TestRealRecordCRC(t *testing.T) {
	m := loadRealWAL(t)
	s, data := m.stream(t, "switch")
	got := decodeInChunks(t, NewDecoder(s.Start, m.PGVersionNum, m.SegmentSize), data, nil)
	if len(got.recs) < 100 {
		t.Fatalf("only %d records", len(got.recs))
	}
	for _, r := range got.recs {
		if c := RecordCRC(r.Data); c != r.Header.CRC {
			t.Fatalf("record at %s: RecordCRC %08X, xl_crc %08X", r.StartLSN, c, r.Header.CRC)
		}
	}
}
