package walrecord

import (
	"testing"
)

// BenchmarkDecode decodes the real sample records in a loop, as ingest does
// (DecodeInto into one Record); it reports records/s and allocations.
func BenchmarkDecode(b *testing.B) {
	recs := loadRealRecords(b)
	var bytes int64
	for _, rr := range recs {
		bytes += int64(len(rr.raw))
	}
	var r Record
	b.SetBytes(bytes / int64(len(recs)))
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	for b.Loop() {
		rr := &recs[n%len(recs)]
		if err := DecodeInto(&r, rr.raw, rr.start, rr.end); err != nil {
			b.Fatal(err)
		}
		n++
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkPage rebuilds real images, per compression method.
func BenchmarkPage(b *testing.B) {
	images := map[Compression][]BlockImage{}
	for _, rr := range loadRealRecords(b) {
		r, err := Decode(rr.raw, rr.start, rr.end)
		if err != nil {
			b.Fatal(err)
		}
		for _, blk := range r.Blocks {
			if blk.HasImage {
				images[blk.Image.Compression()] = append(images[blk.Image.Compression()], blk.Image)
			}
		}
	}
	for _, c := range []Compression{CompressionNone, CompressionPGLZ, CompressionLZ4, CompressionZstd} {
		ims := images[c]
		b.Run(c.String(), func(b *testing.B) {
			if len(ims) == 0 {
				b.Skip("no images")
			}
			page := make([]byte, BlockSize)
			b.SetBytes(BlockSize)
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				if _, err := ims[n%len(ims)].Page(page); err != nil {
					b.Fatal(err)
				}
				n++
			}
		})
	}
}
