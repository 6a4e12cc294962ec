package timeline

// Benchmarks: Commit throughput (with the background flusher writing L0
// layers to disk) and Get latency from each kind of layer. Run with
//
//	go test -run XXX -bench . ./pageserver/timeline/

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"strata.dev/libs/lsn"
	"strata.dev/pageserver/key"
	"strata.dev/pageserver/value"
)

func benchTimeline(b *testing.B, distance uint64) *Timeline {
	opts := testOptions(b, 1)
	opts.CheckpointDistance = distance
	opts.ImageThreshold = 1
	tl, err := Create(tlDir(b.TempDir(), 1), opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { tl.Close() })
	return tl
}

// BenchmarkCommit commits batches of values to a timeline whose flusher
// writes 64 MiB L0 layers meanwhile; the flush of the rest is timed too.
func BenchmarkCommit(b *testing.B) {
	for _, c := range []struct {
		name  string
		size  int
		batch int
	}{{"8KiB-images", 8192, 16}, {"100B-records", 100, 64}} {
		b.Run(c.name, func(b *testing.B) {
			tl := benchTimeline(b, 64<<20)
			payload := make([]byte, c.size)
			es := make([]value.Entry, c.batch)
			l := lsn.LSN(0x100)
			n := 0
			b.SetBytes(int64(c.size * c.batch))
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				for j := range es {
					l += 8
					n++
					v := value.NewImage(payload)
					if c.size < 8192 {
						v = value.NewPostgres(payload, false)
					}
					es[j] = ent(blk(1, uint32(n%65536)), l, v)
				}
				if err := tl.Commit(es, l, l-8); err != nil {
					b.Fatal(err)
				}
			}
			mustFlush(b, tl)
			b.StopTimer()
			secs := time.Since(start).Seconds()
			b.ReportMetric(float64(c.size*c.batch*b.N)/(1<<20)/secs, "MiB/s")
			b.ReportMetric(float64(n)/secs, "values/s")
		})
	}
}

// BenchmarkGet reads one key whose versions are in the open in-memory
// layer, in an L0 delta file, in an image layer, or spread as an image and
// ten records over eleven L0 files.
func BenchmarkGet(b *testing.B) {
	page := make([]byte, 8192)
	const keys = 4096
	for _, where := range []string{"memory", "L0", "image-layer", "chain-of-11-L0s", "L0-parallel"} {
		b.Run(where, func(b *testing.B) {
			tl := benchTimeline(b, 1<<40)
			l := lsn.LSN(0x100)
			commitAll := func(v value.Value) {
				es := make([]value.Entry, keys)
				for i := range es {
					l += 8
					es[i] = ent(blk(1, uint32(i)), l, v)
				}
				if err := tl.Commit(es, l, l-8); err != nil {
					b.Fatal(err)
				}
			}
			commitAll(value.NewImage(page))
			switch where {
			case "L0", "L0-parallel":
				mustFlush(b, tl)
			case "image-layer", "chain-of-11-L0s":
				mustFlush(b, tl)
				for r := 0; r < 10; r++ {
					commitAll(value.NewPostgres([]byte("r"), false))
					mustFlush(b, tl)
				}
				if where == "image-layer" {
					err := tl.Compact(context.Background(), func(context.Context, lsn.LSN) ([]key.Range, error) {
						return []key.Range{{Start: blk(1, 0), End: blk(1, keys)}}, nil
					})
					if err != nil {
						b.Fatal(err)
					}
				}
			}
			ctx := context.Background()
			b.ResetTimer()
			if where == "L0-parallel" {
				b.RunParallel(func(pb *testing.PB) {
					i := 0
					for pb.Next() {
						i++
						if _, err := tl.Get(ctx, blk(1, uint32(i*7919%keys)), l); err != nil {
							b.Error(err)
							return
						}
					}
				})
				return
			}
			for i := 0; i < b.N; i++ {
				r, err := tl.Get(ctx, blk(1, uint32(i*7919%keys)), l)
				if err != nil {
					b.Fatal(err)
				}
				if want := map[string]int{"chain-of-11-L0s": 10}[where]; len(r.Records) != want {
					b.Fatal(fmt.Sprintf("%d records, want %d", len(r.Records), want))
				}
			}
		})
	}
}

// BenchmarkMemLayerPut: puts of small records with pgbench's key pattern
// (random pages of a large table and its index, a few hot pages, an
// appended table), into a layer of 300k versions, as ingest makes them.
func BenchmarkMemLayerPut(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	accounts := key.Rel{Spc: 1663, DB: 5, Rel: 16400}
	index := key.Rel{Spc: 1663, DB: 5, Rel: 16410}
	tellers := key.Rel{Spc: 1663, DB: 5, Rel: 16401}
	history := key.Rel{Spc: 1663, DB: 5, Rel: 16403}
	const n = 300_000
	keys := make([]key.Key, n)
	for i := range keys {
		switch i % 4 {
		case 0:
			keys[i] = key.RelBlock(accounts, rng.Uint32N(82_000))
		case 1:
			keys[i] = key.RelBlock(index, rng.Uint32N(14_000))
		case 2:
			keys[i] = key.RelBlock(tellers, rng.Uint32N(8))
		default:
			keys[i] = key.RelBlock(history, uint32(i/400))
		}
	}
	rec := value.NewPostgres(make([]byte, 100), false)
	b.ResetTimer()
	for r := 0; r < b.N; r += n {
		m := newMemLayer(newChunkPool(256 << 20))
		for i, k := range keys[:min(n, b.N-r)] {
			m.put(value.Entry{Key: k, LSN: lsn.LSN(8 * (i + 1)), Value: rec})
		}
	}
}
