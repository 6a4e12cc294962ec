package wal

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"strata.dev/libs/lsn"
)

// FuzzDecoder: arbitrary bytes never panic or hang, every record returned is
// valid and in order, and splitting the input differently changes nothing.
func FuzzDecoder(f *testing.F) {
	const segSize = 1 << 20
	r := rand.New(rand.NewPCG(1, 1))
	w := syntheticStream(f, r, segSize, segSize, 3*lsn.PageSize)
	f.Add(w.buf, uint64(segSize), uint16(100), true)
	f.Add(w.buf[:5000], uint64(segSize), uint16(1), false)
	bad := bytes.Clone(w.buf)
	bad[lsn.PageSize+3] ^= 1
	f.Add(bad, uint64(segSize), uint16(4096), true)
	w2 := newWALWriter(f, 2*segSize-lsn.PageSize, segSize)
	w2.header(0)
	w2.noop(20000) // across a segment boundary
	w2.add(RM_XLOG_ID, XLOG_SWITCH, nil)
	f.Add(w2.buf, uint64(2*segSize-lsn.PageSize), uint16(333), true)
	f.Add([]byte{}, uint64(0), uint16(0), false)
	f.Add(make([]byte, 100), uint64(segSize+40), uint16(7), true)

	f.Fuzz(func(t *testing.T, data []byte, start uint64, split uint16, keep bool) {
		if len(data) > 1<<20 {
			return
		}
		whole := fuzzDecode(t, newDecoder(lsn.LSN(start), 15, segSize, keep), data, len(data)+1)
		split1 := fuzzDecode(t, newDecoder(lsn.LSN(start), 15, segSize, keep), data, int(split)%4096+1)
		if len(whole.recs) != len(split1.recs) || (whole.err == nil) != (split1.err == nil) ||
			(whole.err != nil && whole.err.Error() != split1.err.Error()) {
			t.Fatalf("whole: %d records, %v; split by %d: %d records, %v",
				len(whole.recs), whole.err, int(split)%4096+1, len(split1.recs), split1.err)
		}
		for i := range whole.recs {
			a, b := whole.recs[i], split1.recs[i]
			if a.StartLSN != b.StartLSN || a.EndLSN != b.EndLSN || a.Header != b.Header || !bytes.Equal(a.Data, b.Data) {
				t.Fatalf("record %d differs: %+v vs %+v", i, a, b)
			}
		}
	})
}

func fuzzDecode(t *testing.T, d *Decoder, data []byte, chunk int) decoded {
	var out decoded
	for off := 0; off < len(data) && out.err == nil; off += chunk {
		piece := data[off:min(off+chunk, len(data))]
		d.Feed(piece)
		// Each record holds at least 24 fed bytes, so this bounds a loop.
		for calls := 0; ; calls++ {
			if calls > len(data)/RecordHeaderSize+2 {
				t.Fatalf("Next returned more records than the input can hold")
			}
			rec, ok, err := d.Next()
			if err != nil {
				out.err = err
				if _, ok2, err2 := d.Next(); ok2 || err2 != err {
					t.Fatal("error not sticky")
				}
				break
			}
			if !ok {
				break
			}
			checkProgress(t, d, out.recs, rec)
			rec.Data = bytes.Clone(rec.Data)
			out.recs = append(out.recs, rec)
		}
	}
	return out
}

// FuzzParseSegmentFileName: parsing never panics, and whatever parses formats
// back to the same name.
func FuzzParseSegmentFileName(f *testing.F) {
	for _, s := range []string{"000000010000000000000001", "0000000100000002000000FF.partial",
		"00000001000000000000000a", "000000010000000000000100", "", ".partial", "FFFFFFFFFFFFFFFFFFFFFFFF"} {
		f.Add(s, uint8(4))
	}
	f.Fuzz(func(t *testing.T, name string, shift uint8) {
		segSize := uint64(1) << (20 + shift%11) // 1 MiB .. 1 GiB
		tli, segno, partial, err := ParseSegmentFileName(name, segSize)
		if err != nil {
			return
		}
		if !IsSegmentFileName(name) {
			t.Fatalf("%q parses but IsSegmentFileName is false", name)
		}
		back := SegmentFileName(tli, segno, segSize)
		if partial {
			back += PartialSuffix
		}
		if back != name {
			t.Fatalf("%q -> (%d, %#x, %v) -> %q", name, tli, segno, partial, back)
		}
	})
}
