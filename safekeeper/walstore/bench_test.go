package walstore

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"strata.dev/libs/lsn"
	"strata.dev/libs/wal"
	"strata.dev/libs/wal/walgen"
)

// BenchmarkStoreWrite measures the append path the way a walproposer drives
// it: appends of a fixed size, a Flush (fdatasync) after every MiB, 16 MiB
// segments, real fsyncs. The WAL is 1 KB logical messages, about what an
// OLTP workload writes. Segments two behind are deleted so that long runs
// do not fill the disk.
func BenchmarkStoreWrite(b *testing.B) {
	const segSize = 16 << 20
	for _, size := range []int{8 * kib, 128 * kib} {
		b.Run(fmt.Sprintf("append=%dKiB", size/kib), func(b *testing.B) {
			dir := b.TempDir()
			s, err := Open(Options{Dir: dir, SegSize: segSize, PgVersion: testPgVersion, SystemID: walgen.DefaultSystemID}, 0)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			start := lsn.SegmentLSN(1, 0, segSize)
			g, err := walgen.New(start, walgen.Options{SegSize: segSize, PgVersion: testPgVersion})
			if err != nil {
				b.Fatal(err)
			}
			stream := g.Stream(lsn.Max, func(g *walgen.Generator) { g.LogicalMessage(1000) })
			pos, flushed := start, start
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				chunk, err := stream.Chunk(size)
				if err != nil {
					b.Fatal(err)
				}
				if err := s.Write(pos, chunk); err != nil {
					b.Fatal(err)
				}
				next := pos + lsn.LSN(len(chunk))
				if next.Sub(flushed) >= 1<<20 {
					if err := s.Flush(); err != nil {
						b.Fatal(err)
					}
					flushed = next
				}
				if seg := next.SegmentNumber(segSize); seg != pos.SegmentNumber(segSize) && seg >= 3 {
					os.Remove(filepath.Join(dir, wal.SegmentFileName(1, seg-3, segSize)))
				}
				pos = next
			}
		})
	}
}
