package walgen_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"testing"

	"strata.dev/libs/lsn"
	"strata.dev/libs/wal"
	"strata.dev/libs/wal/walgen"
)

const (
	mib = 1 << 20
	kib = 1 << 10
)

// decoded is what wal.NewDecoder made of a generated stream.
type decoded struct {
	recs []wal.Record // Data copied
	err  error        // the first error, after the stream was followed by zeros
}

// decode feeds data (starting at start) in random pieces, then a page of
// zeros, as the end of a pre-allocated segment would be.
func decode(t *testing.T, r *rand.Rand, start lsn.LSN, segSize uint64, data []byte) decoded {
	t.Helper()
	d := wal.NewDecoder(start, 15, segSize)
	var out decoded
	feed := func(b []byte) bool {
		d.Feed(b)
		for {
			rec, ok, err := d.Next()
			if err != nil {
				out.err = err
				return false
			}
			if !ok {
				return true
			}
			rec.Data = bytes.Clone(rec.Data)
			out.recs = append(out.recs, rec)
		}
	}
	for off := 0; off < len(data); {
		n := min(len(data)-off, 1+r.IntN(3*lsn.PageSize))
		if !feed(data[off : off+n]) {
			t.Fatalf("decode error inside the generated stream: %v", out.err)
		}
		off += n
	}
	feed(make([]byte, lsn.PageSize))
	return out
}

// checkDecoded fails unless the decoder found exactly the records made, at
// their positions, with the stream ending cleanly after the last one.
func checkDecoded(t *testing.T, got decoded, want []walgen.Record) {
	t.Helper()
	if len(got.recs) != len(want) {
		t.Fatalf("decoded %d records, generated %d (error %v)", len(got.recs), len(want), got.err)
	}
	for i, w := range want {
		g := got.recs[i]
		if g.StartLSN != w.Start || g.EndLSN != w.End || g.Header.TotLen != w.TotLen {
			t.Fatalf("record %d: decoded [%s, %s) len %d; generated [%s, %s) len %d",
				i, g.StartLSN, g.EndLSN, g.Header.TotLen, w.Start, w.End, w.TotLen)
		}
		if err := wal.ValidateRecord(g.Data); err != nil {
			t.Fatalf("record %d at %s: %v", i, w.Start, err)
		}
	}
	var de *wal.DecodeError
	if !wal.IsEndOfWAL(got.err) || !errors.As(got.err, &de) {
		t.Fatalf("stream followed by zeros ends with %v, want end of WAL", got.err)
	}
	if n := len(want); n > 0 && de.LSN != want[n-1].End {
		t.Fatalf("end of WAL found at %s, want %s", de.LSN, want[n-1].End)
	}
}

// script makes records with a generator.
type script func(g *walgen.Generator) []walgen.Record

// mixed makes records of every kind and size class, up to about total
// bytes: mostly small ones, many spanning pages, a few XLOG_SWITCHes and one
// record longer than a segment.
func mixed(seed uint64, total int) script {
	return func(g *walgen.Generator) []walgen.Record {
		r := rand.New(rand.NewPCG(seed, 1))
		var recs []walgen.Record
		start := g.LSN()
		huge := false
		for g.LSN().Sub(start) < uint64(total) {
			var rec walgen.Record
			switch k := r.IntN(1000); {
			case !huge && g.LSN().Sub(start) > uint64(total/3):
				rec = g.Noop(int(g.SegSize()) + r.IntN(int(g.SegSize()))) // longer than a segment
				huge = true
			case k < 600:
				rec = g.LogicalMessage(r.IntN(300))
			case k < 850:
				rec = g.Noop(26 + r.IntN(9000))
			case k < 985:
				rec = g.LogicalMessage(8*kib + r.IntN(40*kib)) // several pages
			case k < 990:
				rec = g.Switch()
			default:
				rec = g.Record(walgen.RM_LOGICALMSG_ID+1, 0x10, walgen.MainData([]byte("generic")))
			}
			recs = append(recs, rec)
		}
		return recs
	}
}

// fitting makes records that end exactly at a page end, at a segment end,
// and one whose header is split across pages.
func fitting(g *walgen.Generator) []walgen.Record {
	var recs []walgen.Record
	fill := func(to lsn.LSN) { // end the last record exactly at to
		for {
			left := int(to.Sub(g.LSN()))
			if left < 26 || left > 8000 {
				// Too close to fit a record, or one that would not stay on
				// this page: step with a small record first.
				recs = append(recs, g.Noop(26+8*(left%3)))
				if g.LSN() > to {
					return
				}
				continue
			}
			if g.LSN().PageStart() != (to - 1).PageStart() {
				recs = append(recs, g.Noop(100))
				continue
			}
			recs = append(recs, g.Noop(left))
			return
		}
	}
	for range 3 {
		pageEnd := g.LSN().PageStart() + lsn.PageSize
		fill(pageEnd)
		if g.LSN() == pageEnd {
			break
		}
	}
	if g.LSN().PageOffset() != 0 {
		panic(fmt.Sprintf("fitting: could not end a record at a page end, at %s", g.LSN()))
	}
	// Header split: start a record 8 bytes before a page end.
	pageEnd := g.LSN() + lsn.PageSize
	hdr := wal.ShortPageHeaderSize
	if g.LSN().IsSegmentStart(g.SegSize()) {
		hdr = wal.LongPageHeaderSize
	}
	recs = append(recs, g.Noop(lsn.PageSize-hdr-8))
	if g.LSN() != pageEnd-8 {
		panic(fmt.Sprintf("fitting: at %s, want %s", g.LSN(), pageEnd-8))
	}
	recs = append(recs, g.LogicalMessage(1000))
	// A record ending exactly at the segment end: cover the rest with one
	// long record that stops a page early, then fit the last page.
	segEnd := (g.LSN() + lsn.LSN(g.SegSize())).SegmentStart(g.SegSize())
	for g.LSN() < segEnd-2*lsn.PageSize {
		recs = append(recs, g.Noop(int(min(segEnd.Sub(g.LSN())-2*lsn.PageSize, 300*kib))))
	}
	fill(segEnd)
	if g.LSN() != segEnd {
		panic(fmt.Sprintf("fitting: at %s, want %s", g.LSN(), segEnd))
	}
	recs = append(recs, g.LogicalMessage(10))
	return recs
}

func TestDecodeGenerated(t *testing.T) {
	for _, tc := range []struct {
		name    string
		segSize uint64
		start   lsn.LSN
		run     script
	}{
		{"16MiB/segment-start", 16 * mib, 0x1000000, mixed(1, 24*mib)},
		{"16MiB/mid-page", 16 * mib, 0x2345678, mixed(2, 20*mib)},
		{"1MiB/segment-start", mib, 0x300000, mixed(3, 6*mib)},
		{"1MiB/page-start", mib, 0x306000, mixed(4, 6*mib)},
		{"1MiB/mid-page", mib, 0x306F28, mixed(5, 6*mib)},
		{"1MiB/unaligned", mib, 0x306F2B, mixed(6, 3*mib)},
		{"1MiB/first-page", mib, 0x300040, mixed(7, 3*mib)},
		{"1MiB/fitting", mib, 0x300000, fitting},
		{"16MiB/fitting", 16 * mib, 0x10FFE000, fitting},
		{"1MiB/huge", mib, 0x300000, func(g *walgen.Generator) []walgen.Record {
			return []walgen.Record{g.LogicalMessage(10), g.LogicalMessage(3*mib + 5), g.Noop(2 * mib), g.Switch(), g.Noop(50)}
		}},
		{"1MiB/switch-at-segment-start", mib, 0x300000, func(g *walgen.Generator) []walgen.Record {
			return []walgen.Record{g.Switch(), g.Switch(), g.Noop(40), g.Switch(), g.LogicalMessage(1)}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, err := walgen.New(tc.start, walgen.Options{SegSize: tc.segSize})
			if err != nil {
				t.Fatal(err)
			}
			recs := tc.run(g)
			data := g.Bytes()
			if got := tc.start + lsn.LSN(len(data)); got != g.LSN() || g.LSN() != recs[len(recs)-1].End {
				t.Fatalf("stream [%s, %s), generator at %s, last record ends %s", tc.start, got, g.LSN(), recs[len(recs)-1].End)
			}
			checkDecoded(t, decode(t, rand.New(rand.NewPCG(9, 9)), tc.start, tc.segSize, data), recs)
			// A decoder may also start at any record boundary.
			mid := recs[len(recs)/2].Start
			checkDecoded(t, decode(t, rand.New(rand.NewPCG(9, 9)), mid, tc.segSize, data[mid-tc.start:]), recs[len(recs)/2:])
		})
	}
}

func TestSizes(t *testing.T) {
	g, err := walgen.New(0x1000000, walgen.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var recs []walgen.Record
	for n := 0; n < 600; n++ {
		if r := g.Noop(n); r.TotLen != uint32(max(n, 26)) {
			t.Fatalf("Noop(%d): xl_tot_len %d", n, r.TotLen)
		}
		r := g.LogicalMessage(n)
		if r.TotLen != uint32(walgen.LogicalMessageSize(n)) {
			t.Fatalf("LogicalMessage(%d): xl_tot_len %d, LogicalMessageSize says %d", n, r.TotLen, walgen.LogicalMessageSize(n))
		}
		recs = append(recs, r)
	}
	// The bodies are what pg_logical_emit_message writes.
	got := decode(t, rand.New(rand.NewPCG(1, 1)), 0x1000000, 16*mib, g.Bytes())
	seen := map[string]bool{}
	n := 0
	for _, rec := range got.recs {
		if rec.Header.RmID != walgen.RM_LOGICALMSG_ID {
			continue
		}
		body := rec.Data[wal.RecordHeaderSize:]
		var main []byte
		switch body[0] {
		case walgen.XLR_BLOCK_ID_DATA_SHORT:
			main = body[2:]
			if int(body[1]) != len(main) {
				t.Fatalf("record at %s: main data length %d, have %d", rec.StartLSN, body[1], len(main))
			}
		case walgen.XLR_BLOCK_ID_DATA_LONG:
			main = body[5:]
			if int(binary.LittleEndian.Uint32(body[1:])) != len(main) {
				t.Fatalf("record at %s: long main data length wrong", rec.StartLSN)
			}
		default:
			t.Fatalf("record at %s: block id %d", rec.StartLSN, body[0])
		}
		prefixLen := binary.LittleEndian.Uint64(main[8:])
		msgLen := binary.LittleEndian.Uint64(main[16:])
		prefix := main[24 : 24+prefixLen]
		msg := main[24+prefixLen:]
		if string(prefix) != walgen.MessagePrefix+"\x00" || msgLen != uint64(n) || len(msg) != n {
			t.Fatalf("record at %s: prefix %q, message_size %d (%d bytes), want %d", rec.StartLSN, prefix, msgLen, len(msg), n)
		}
		if n >= 12 {
			if seen[string(msg)] {
				t.Fatalf("record at %s: same payload as an earlier record", rec.StartLSN)
			}
			seen[string(msg)] = true
		}
		n++
	}
	if n != len(recs) {
		t.Fatalf("found %d messages, made %d", n, len(recs))
	}
}

func TestNewRejects(t *testing.T) {
	for _, tc := range []struct {
		start lsn.LSN
		opts  walgen.Options
	}{
		{0x1000010, walgen.Options{}},                          // inside a long header
		{0x1002008, walgen.Options{}},                          // inside a short header
		{0x100000, walgen.Options{SegSize: mib, PgVersion: 9}}, // unsupported version
		{0x100000, walgen.Options{SegSize: 3 * mib}},           // not a power of two
	} {
		if _, err := walgen.New(tc.start, tc.opts); err == nil {
			t.Errorf("New(%s, %+v) accepted", tc.start, tc.opts)
		}
	}
}

// TestStream: reading through Stream, in any piece sizes, gives the same
// bytes as Bytes, up to the limit even when it cuts a record.
func TestStream(t *testing.T) {
	const segSize = mib
	start := lsn.LSN(0x500000)
	next := func() func(*walgen.Generator) {
		r := rand.New(rand.NewPCG(3, 3))
		return func(g *walgen.Generator) {
			if r.IntN(50) == 0 {
				g.Switch()
				return
			}
			g.LogicalMessage(r.IntN(70 * kib))
		}
	}
	limit := start + 5*segSize + 12345

	ref, err := walgen.New(start, walgen.Options{SegSize: segSize})
	if err != nil {
		t.Fatal(err)
	}
	gen := next()
	for ref.LSN() < limit {
		gen(ref)
	}
	want := ref.Bytes()[:limit-start]

	g, _ := walgen.New(start, walgen.Options{SegSize: segSize})
	s := g.Stream(limit, next())
	r := rand.New(rand.NewPCG(4, 4))
	var got []byte
	for {
		p := make([]byte, 1+r.IntN(200*kib))
		n, err := s.Read(p)
		got = append(got, p[:n]...)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Stream.Read gave %d bytes, Bytes %d; equal prefix differs", len(got), len(want))
	}

	g, _ = walgen.New(start, walgen.Options{SegSize: segSize})
	var buf bytes.Buffer
	if n, err := io.Copy(&buf, g.Stream(limit, next())); err != nil || n != int64(len(want)) || !bytes.Equal(buf.Bytes(), want) {
		t.Fatalf("io.Copy of a stream: %d bytes, %v; equal %v", n, err, bytes.Equal(buf.Bytes(), want))
	}

	g, _ = walgen.New(start, walgen.Options{SegSize: segSize})
	if _, err := g.Stream(limit, func(*walgen.Generator) {}).Read(make([]byte, 10)); err == nil {
		t.Fatal("a next function that makes nothing was not reported")
	}
}

// TestStreamMemory: pushing a long stream through Chunk allocates about one
// record and one chunk, not the stream.
func TestStreamMemory(t *testing.T) {
	const total = 256 * mib
	g, err := walgen.New(0x1000000, walgen.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s := g.Stream(0x1000000+total, func(g *walgen.Generator) { g.LogicalMessage(128 * kib) })
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	n := 0
	for {
		b, err := s.Chunk(mib)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		n += len(b)
	}
	runtime.ReadMemStats(&after)
	if n != total {
		t.Fatalf("streamed %d bytes, want %d", n, total)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16*mib {
		t.Fatalf("streaming %d MiB allocated %d MiB", total/mib, alloc/mib)
	}
}
