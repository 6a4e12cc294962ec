package walgen_test

import (
	"errors"
	"fmt"
	"io"
	"testing"

	"strata.dev/libs/lsn"
	"strata.dev/libs/wal/walgen"
)

// BenchmarkStream measures generation the way an ingest benchmark consumes
// it: logical messages of a fixed size, handed out in 1 MiB chunks.
func BenchmarkStream(b *testing.B) {
	for _, payload := range []int{100, 8 << 10, 128 << 10} {
		b.Run(fmt.Sprintf("msg=%d", payload), func(b *testing.B) {
			const chunk = 1 << 20
			g, err := walgen.New(0x1000000, walgen.Options{})
			if err != nil {
				b.Fatal(err)
			}
			s := g.Stream(lsn.Max, func(g *walgen.Generator) { g.LogicalMessage(payload) })
			b.SetBytes(chunk)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Chunk(chunk); err != nil && !errors.Is(err, io.EOF) {
					b.Fatal(err)
				}
			}
		})
	}
}
