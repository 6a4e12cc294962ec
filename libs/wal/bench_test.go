package wal

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"strata.dev/libs/lsn"
)

// BenchmarkDecoder measures decoding throughput the way the safekeeper and
// the pageserver feed the decoder: fixed-size chunks, drained after each.
//
// "real" is segment A of the testdata (PostgreSQL 15: inserts of many sizes,
// full-page images, 100 KB messages; 1.4 MB), "small" is synthetic WAL of
// 30..250-byte records (OLTP-like, the per-record worst case).
func BenchmarkDecoder(b *testing.B) {
	m := loadRealWAL(b)
	realStart := m.Pieces[0].Start
	realData := m.bytes[m.Pieces[0].File]

	w := newWALWriter(b, 0x1000000, 16<<20)
	r := rand.New(rand.NewPCG(5, 5))
	for len(w.buf) < 16<<20-lsn.PageSize {
		w.noop(4 + r.IntN(220))
	}

	for _, in := range []struct {
		name  string
		start lsn.LSN
		data  []byte
	}{{"real", realStart, realData}, {"small", 0x1000000, w.buf}} {
		for _, keep := range []bool{false, true} {
			mode := "boundary"
			if keep {
				mode = "data"
			}
			for _, chunk := range []int{8 << 10, 128 << 10} {
				b.Run(fmt.Sprintf("%s/%s/%dKiB", in.name, mode, chunk>>10), func(b *testing.B) {
					d := newDecoder(in.start, 15, 16<<20, keep)
					b.SetBytes(int64(len(in.data)))
					b.ReportAllocs()
					records := 0
					for b.Loop() {
						d.Reset(in.start)
						records = 0
						for off := 0; off < len(in.data); off += chunk {
							d.Feed(in.data[off:min(off+chunk, len(in.data))])
							for {
								_, ok, err := d.Next()
								if err != nil {
									b.Fatal(err)
								}
								if !ok {
									break
								}
								records++
							}
						}
					}
					b.ReportMetric(float64(records), "records/op")
				})
			}
		}
	}
}
