package wal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"strata.dev/libs/lsn"
)

// decoded is everything a decoder produced for one input.
type decoded struct {
	recs []Record // Data copied
	err  error
}

// decodeInChunks feeds data in pieces of the sizes chunk returns (the whole
// rest when chunk is nil) and drains Next after each, scribbling over each
// piece once Next has reported it needs more, to prove nothing retains it.
func decodeInChunks(tb testing.TB, d *Decoder, data []byte, chunk func() int) decoded {
	tb.Helper()
	var out decoded
	for off := 0; off < len(data) && out.err == nil; {
		n := len(data) - off
		if chunk != nil {
			n = min(n, max(1, chunk()))
		}
		piece := bytes.Clone(data[off : off+n])
		off += n
		d.Feed(piece)
		for {
			rec, ok, err := d.Next()
			if err != nil {
				out.err = err
				break
			}
			if !ok {
				clear(piece)
				break
			}
			checkProgress(tb, d, out.recs, rec)
			rec.Data = bytes.Clone(rec.Data)
			out.recs = append(out.recs, rec)
		}
	}
	return out
}

// checkProgress fails unless rec lies after the records before it and
// within the bytes fed: together these bound the number of Next calls.
func checkProgress(tb testing.TB, d *Decoder, before []Record, rec Record) {
	tb.Helper()
	if n := len(before); n > 0 && rec.StartLSN < before[n-1].EndLSN {
		tb.Fatalf("record at %s overlaps the previous one ending at %s", rec.StartLSN, before[n-1].EndLSN)
	}
	if rec.Header.TotLen < RecordHeaderSize || rec.StartLSN+lsn.LSN(rec.Header.TotLen) > d.FedLSN() || rec.EndLSN <= rec.StartLSN {
		tb.Fatalf("record [%s, %s) len %d beyond the fed %s", rec.StartLSN, rec.EndLSN, rec.Header.TotLen, d.FedLSN())
	}
	if rec.Data != nil && (len(rec.Data) != int(rec.Header.TotLen) || ValidateRecord(rec.Data) != nil) {
		tb.Fatalf("record at %s: data of %d bytes does not validate", rec.StartLSN, len(rec.Data))
	}
}

func randomChunks(r *rand.Rand, max int) func() int {
	return func() int {
		switch r.IntN(3) {
		case 0:
			return 1 + r.IntN(16)
		case 1:
			return 1 + r.IntN(8192)
		}
		return 1 + r.IntN(max)
	}
}

// checkWritten compares decoded records with what a walWriter wrote.
func checkWritten(t *testing.T, got []Record, want []writtenRecord, keepData bool) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("decoded %d records, wrote %d", len(got), len(want))
	}
	for i, w := range want {
		g := got[i]
		if g.StartLSN != w.start || g.EndLSN != w.end || g.Header.TotLen != uint32(len(w.data)) {
			t.Fatalf("record %d: got [%s, %s) len %d; want [%s, %s) len %d", i, g.StartLSN, g.EndLSN, g.Header.TotLen, w.start, w.end, len(w.data))
		}
		if keepData && !bytes.Equal(g.Data, w.data) {
			t.Fatalf("record %d at %s: data differs", i, w.start)
		}
		if !keepData && g.Data != nil {
			t.Fatalf("record %d: boundary decoder returned data", i)
		}
	}
}

// syntheticStream writes records of random sizes (some spanning many pages,
// some XLOG_SWITCH) from base and ends with a page of zeros.
func syntheticStream(t testing.TB, r *rand.Rand, base lsn.LSN, segSize uint64, total int) *walWriter {
	w := newWALWriter(t, base, segSize)
	for len(w.buf) < total {
		switch k := r.IntN(100); {
		case k < 2:
			w.add(RM_XLOG_ID, XLOG_SWITCH, nil)
		case k < 10:
			w.noop(r.IntN(40000))
		case k < 12:
			w.noop(8192 - 24 - 24 + r.IntN(48) - 24) // around one page
		default:
			w.noop(r.IntN(300))
		}
	}
	w.zeros(lsn.PageSize)
	return w
}

// endOfWALAt is where a decoder must report end of WAL after w's records.
func endOfWALAt(w *walWriter) lsn.LSN {
	return w.recs[len(w.recs)-1].end
}

func TestDecoderSynthetic(t *testing.T) {
	for _, segSize := range []uint64{1 << 20, 16 << 20} {
		for seed := range uint64(4) {
			r := rand.New(rand.NewPCG(seed, segSize))
			base := lsn.LSN(3 * segSize)
			w := syntheticStream(t, r, base, segSize, 6<<20)
			for _, keep := range []bool{true, false} {
				name := fmt.Sprintf("seg=%d/seed=%d/keep=%v", segSize, seed, keep)
				t.Run(name, func(t *testing.T) {
					d := newDecoder(base, 15, segSize, keep)
					got := decodeInChunks(t, d, w.buf, randomChunks(r, 200<<10))
					checkWritten(t, got.recs, w.recs, keep)
					var de *DecodeError
					if !errors.As(got.err, &de) || !de.EndOfWAL || !IsEndOfWAL(got.err) || de.LSN != endOfWALAt(w) {
						t.Fatalf("final error %v; want end of WAL at %s", got.err, endOfWALAt(w))
					}
				})
			}
		}
	}
}

// fillPage adds records until one ends exactly at a page end, so that the
// next page starts between records.
func (w *walWriter) fillPage() {
	for {
		p := w.pos().Align8()
		left := int(lsn.PageSize - p.PageOffset())
		switch {
		case p.IsPageStart():
			return
		case left < 64:
			w.noop(0)
		case left-26 < 256:
			w.noop(left - 26) // 24 + 2 + n bytes
			return
		default:
			w.noop(left - 29) // 24 + 5 + n bytes
			return
		}
	}
}

// TestDecoderErrors damages a synthetic stream in one place each and checks
// the error: its text, its LSN, its kind, the records before it, stickiness.
func TestDecoderErrors(t *testing.T) {
	const segSize = 1 << 20
	base := lsn.LSN(segSize) // 0/100000
	build := func() *walWriter {
		w := newWALWriter(t, base, segSize)
		w.noop(100)   // 0: 0/100028
		w.noop(20000) // 1: 0/1000A8, continues on pages 0/102000 and 0/104000
		w.noop(8)     // 2
		w.fillPage()  // 3..: the last one ends at a page end
		w.noop(50)    // first record of a page that starts between records
		for w.pos() < base+segSize-20000 {
			w.noop(3000)
		}
		w.noop(40000) // continues across the segment boundary at 0/200000
		w.noop(50)
		w.zeros(lsn.PageSize)
		return w
	}
	w0 := build()
	rec := func(i int) lsn.LSN { return w0.recs[i].start }
	var between lsn.LSN // page starting between records
	for _, r := range w0.recs {
		if r.end.IsPageStart() && between == 0 {
			between = r.end
		}
	}
	spanning := w0.recs[len(w0.recs)-2].start
	if rec(1) != 0x1000A8 || between == 0 || spanning.SegmentStart(segSize) != base {
		t.Fatalf("unexpected layout: %s %s %s", rec(1), between, spanning)
	}
	at := func(l lsn.LSN) int { return int(l - base) }
	put16 := func(b []byte, l lsn.LSN, v uint16) { binary.LittleEndian.PutUint16(b[at(l):], v) }
	put32 := func(b []byte, l lsn.LSN, v uint32) { binary.LittleEndian.PutUint32(b[at(l):], v) }
	put64 := func(b []byte, l lsn.LSN, v uint64) { binary.LittleEndian.PutUint64(b[at(l):], v) }
	r2 := rec(2)

	for _, tc := range []struct {
		name   string
		damage func(b []byte)
		errLSN lsn.LSN
		end    bool
		msg    string
	}{
		{"magic", func(b []byte) { put16(b, 0x104000, 0xD10D) }, 0x104000, false,
			"invalid page header at 0/104000: magic D10D, want D110"},
		{"pageaddr", func(b []byte) { put64(b, 0x102000+8, 0x100000) }, 0x102000, false,
			"invalid page header at 0/102000: pageaddr 0/100000, want 0/102000"},
		{"contrecord cleared", func(b []byte) { put16(b, 0x102000+2, 0) }, 0x102000, false,
			"invalid page header at 0/102000: XLP_FIRST_IS_CONTRECORD not set, but record at 0/1000A8 continues"},
		{"rem_len", func(b []byte) { put32(b, 0x104000+16, 12345) }, 0x104000, false,
			"invalid page header at 0/104000: rem_len 12345, want"},
		{"contrecord between records", func(b []byte) { put16(b, between+2, XLP_FIRST_IS_CONTRECORD) }, between, false,
			fmt.Sprintf("invalid page header at %s: XLP_FIRST_IS_CONTRECORD set between records", between)},
		{"rem_len between records", func(b []byte) { put32(b, between+16, 8) }, between, false,
			fmt.Sprintf("invalid page header at %s: rem_len 8 between records", between)},
		{"unknown info bit", func(b []byte) { put16(b, 0x104000+2, 0x11) }, 0x104000, false,
			"invalid page header at 0/104000: info bits 0011"},
		{"long flag on short page", func(b []byte) { put16(b, 0x104000+2, XLP_LONG_HEADER|XLP_FIRST_IS_CONTRECORD) }, 0x104000, false,
			"want XLP_LONG_HEADER clear"},
		{"short header on segment start", func(b []byte) { put16(b, 0x200000+2, XLP_FIRST_IS_CONTRECORD) }, 0x200000, false,
			"want XLP_LONG_HEADER set"},
		{"segment size", func(b []byte) { put32(b, 0x200000+32, 16<<20) }, 0x200000, false,
			"invalid page header at 0/200000: xlp_seg_size 16777216, want 1048576"},
		{"blcksz", func(b []byte) { put32(b, 0x100000+36, 16384) }, 0x100000, false,
			"xlp_xlog_blcksz 16384, want 8192"},
		{"body byte", func(b []byte) { b[at(0x1000A8+5000)] ^= 0x20 }, 0x1000A8, false,
			"record at 0/1000A8: CRC mismatch"},
		{"crc byte", func(b []byte) { b[at(r2+21)] ^= 1 }, r2, false,
			fmt.Sprintf("record at %s: CRC mismatch", r2)},
		{"xl_prev", func(b []byte) {
			// Rewrite record 2 with a wrong prev and a matching CRC.
			copy(b[at(r2):], makeRecord(RM_XLOG_ID, 0x20, 0, 0x100028, noopPayload(8)))
		}, r2, false, fmt.Sprintf("record at %s: xl_prev 0/100028, want 0/1000A8", r2)},
		{"tot_len zero", func(b []byte) { put32(b, r2, 0) }, r2, true,
			fmt.Sprintf("record at %s: xl_tot_len 0 (end of WAL)", r2)},
		{"tot_len small", func(b []byte) { put32(b, r2, 23) }, r2, false,
			fmt.Sprintf("record at %s: xl_tot_len 23, want at least 24", r2)},
		{"tot_len huge", func(b []byte) { put32(b, r2, 0xFFFFFFF0) }, r2, false,
			"exceeds the maximum"},
		{"zero page inside record", func(b []byte) { clear(b[at(0x104000):at(0x104000+24)]) }, 0x104000, true,
			"page at 0/104000: header is zero inside record at 0/1000A8 (end of WAL)"},
		{"zero page between records", func(b []byte) { clear(b[at(between):]) }, between, true,
			fmt.Sprintf("page at %s: header is zero (end of WAL)", between)},
		{"zero segment start inside record", func(b []byte) { clear(b[at(0x200000):at(0x200000+40)]) }, 0x200000, true,
			fmt.Sprintf("header is zero inside record at %s", spanning)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := build()
			tc.damage(w.buf)
			for _, keep := range []bool{true, false} {
				d := newDecoder(base, 150004, segSize, keep)
				got := decodeInChunks(t, d, w.buf, randomChunks(rand.New(rand.NewPCG(1, 2)), 64<<10))
				var de *DecodeError
				if !errors.As(got.err, &de) {
					t.Fatalf("error %v; want a DecodeError", got.err)
				}
				if !strings.Contains(de.Error(), tc.msg) || de.LSN != tc.errLSN || de.EndOfWAL != tc.end ||
					errors.Is(got.err, ErrEndOfWAL) != tc.end || errors.Is(got.err, ErrCorrupt) == tc.end {
					t.Fatalf("error %q at %s (end of WAL %v); want %q at %s (end of WAL %v)",
						de.Error(), de.LSN, de.EndOfWAL, tc.msg, tc.errLSN, tc.end)
				}
				want := 0 // every record that ends before the damaged header or record
				for _, r := range w0.recs {
					if r.start < tc.errLSN && r.start+lsn.LSN(len(r.data)) <= tc.errLSN {
						want++
					}
				}
				checkWritten(t, got.recs, w0.recs[:want], keep)
				if _, ok, err := d.Next(); ok || err != got.err {
					t.Fatalf("error not sticky: %v, %v", ok, err)
				}
			}
		})
	}
}

func TestDecoderStartPositions(t *testing.T) {
	const segSize = 1 << 20
	base := lsn.LSN(segSize)
	w := newWALWriter(t, base, segSize)
	w.noop(30)    // 0/100028, 54 bytes: ends 0/10005E, unaligned
	w.noop(30000) // 0/100060, continues on pages 0/102000 .. 0/106000
	w.noop(100)
	for w.pos() < base+3*lsn.PageSize+100 {
		w.noop(r7(len(w.recs)))
	}
	w.zeros(lsn.PageSize)
	all := w.recs

	decodeFrom := func(start lsn.LSN) decoded {
		d := NewDecoder(start, 15, segSize)
		return decodeInChunks(t, d, w.buf[start-base:], nil)
	}
	// From the unaligned physical end of the first record.
	got := decodeFrom(0x10005E)
	checkWritten(t, got.recs, all[1:], true)
	// From a page start inside the big record: its tail is skipped, the
	// next record is found (XLogFindNextRecord's behaviour).
	for _, p := range []lsn.LSN{0x102000, 0x104000, 0x106000} {
		got = decodeFrom(p)
		checkWritten(t, got.recs, all[2:], true)
		if !IsEndOfWAL(got.err) {
			t.Fatalf("from %s: %v", p, got.err)
		}
	}
	// From the segment start and from just past the long header.
	checkWritten(t, decodeFrom(base).recs, all, true)
	checkWritten(t, decodeFrom(base+LongPageHeaderSize).recs, all, true)
	// Inside a page header.
	for _, p := range []lsn.LSN{base + 8, base + 39, 0x102000 + 1, 0x102000 + 23} {
		d := NewDecoder(p, 15, segSize)
		d.Feed(make([]byte, 100))
		if _, _, err := d.Next(); err == nil || !strings.Contains(err.Error(), "inside a page header") {
			t.Errorf("start %s: %v", p, err)
		}
	}
}

func r7(i int) int { return (i * 7919) % 500 }

func TestDecoderOverwriteContrecord(t *testing.T) {
	const segSize = 1 << 20
	base := lsn.LSN(segSize)
	w := newWALWriter(t, base, segSize)
	w.noop(100)
	lost := w.noop(20000) // spans pages 0/102000 and 0/104000
	// A crash lost everything from page 0/102000 on; recovery wrote an
	// XLOG_OVERWRITE_CONTRECORD (rmid 0, info 0xD0) there instead.
	w.buf = w.buf[:0x102000-base]
	w.recs, w.prev = w.recs[:1], w.recs[0].start
	w.buf = PageHeader{Magic: w.magic, Info: XLP_FIRST_IS_OVERWRITE_CONTRECORD, TLI: 1, PageAddr: 0x102000}.Append(w.buf)
	w.add(RM_XLOG_ID, 0xD0, noopPayload(16))
	w.noop(50)
	w.zeros(100)
	got := decodeInChunks(t, NewDecoder(base, 15, segSize), w.buf, randomChunks(rand.New(rand.NewPCG(3, 4)), 4096))
	checkWritten(t, got.recs, w.recs, true)
	if !IsEndOfWAL(got.err) {
		t.Fatalf("lost record %s: final error %v", lost.start, got.err)
	}
}

func TestDecoderFeedBeforeDrainAndReset(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	w := syntheticStream(t, r, 0x1000000, 16<<20, 1<<20)
	d := NewDecoder(0x1000000, 15, 16<<20)
	// Three feeds before the first Next: the decoder has to keep copies.
	third := len(w.buf) / 3
	d.Feed(w.buf[:100])
	d.Feed(w.buf[100:third])
	d.Feed(w.buf[third : 2*third])
	if d.FedLSN() != 0x1000000+lsn.LSN(2*third) {
		t.Fatalf("FedLSN %s", d.FedLSN())
	}
	got := decodeInChunks(t, d, w.buf[2*third:], randomChunks(r, 1000))
	checkWritten(t, got.recs, w.recs, true)

	// Reset to a record start in the middle and decode the rest again.
	mid := w.recs[len(w.recs)/2]
	d.Reset(mid.start)
	got = decodeInChunks(t, d, w.buf[mid.start-0x1000000:], nil)
	checkWritten(t, got.recs, w.recs[len(w.recs)/2:], true)
	if !IsEndOfWAL(got.err) {
		t.Fatal(got.err)
	}
	// Reset clears a sticky error.
	d.Reset(mid.start)
	if _, ok, err := d.Next(); ok || err != nil {
		t.Fatalf("after Reset: %v %v", ok, err)
	}
}

func TestDecoderConfigErrors(t *testing.T) {
	for _, d := range []*Decoder{NewDecoder(0x1000000, 13, 16<<20), NewBoundaryDecoder(0x1000000, 15, 3<<20)} {
		d.Feed([]byte{1, 2, 3})
		_, ok, err := d.Next()
		var de *DecodeError
		if ok || err == nil || errors.As(err, &de) {
			t.Errorf("Next = %v, %v; want a configuration error", ok, err)
		}
		d.Reset(0x1000000)
		if _, _, err2 := d.Next(); err2 == nil {
			t.Error("Reset cleared a configuration error")
		}
	}
}

// The zero-length and empty-feed cases: nothing to do is not an error.
func TestDecoderEmpty(t *testing.T) {
	d := NewDecoder(0x1000000, 15, 16<<20)
	d.Feed(nil)
	if _, ok, err := d.Next(); ok || err != nil {
		t.Fatalf("%v %v", ok, err)
	}
	// A long header arriving one byte at a time, then zeros: end of WAL
	// right after the header.
	h := PageHeader{Magic: 0xD110, Info: XLP_LONG_HEADER, TLI: 1, PageAddr: 0x1000000, SegSize: 16 << 20, XLogBlcksz: 8192}
	b := append(h.Append(nil), make([]byte, 16)...)
	got := decodeInChunks(t, d, b, func() int { return 1 })
	var de *DecodeError
	if !errors.As(got.err, &de) || de.LSN != 0x1000028 || !de.EndOfWAL {
		t.Fatalf("%v", got.err)
	}
	if got.err.Error() != "record at 0/1000028: xl_tot_len 0 (end of WAL)" {
		t.Fatalf("message %q", got.err)
	}
}
