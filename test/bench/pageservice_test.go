package bench

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"strata.dev/libs/lsn"
	"strata.dev/pageserver/key"
	"strata.dev/pageserver/pageservice"
	"strata.dev/test/daemons"
	"strata.dev/test/pgharness"
)

// The read path of issue 7 (spec/benchmarks.md S6 and S4): what a compute
// asks of the pageserver, against what vanilla PostgreSQL does for the same
// data in the same run. Both benchmarks bootstrap like
// BenchmarkPageserverIngest (a primary through a walproposer to one
// safekeeper, a pageserver following it) and load pgbench -i -s
// $STRATA_BENCH_SCALE (default 10; the spec's numbers are at 50).
//
//	go test -run '^$' -bench 'Basebackup|GetPage' -benchtime 1x ./test/bench/

// BenchmarkBasebackup: `basebackup <tenant> <timeline>` at the latest LSN
// over the pageserver's libpq port, the tar counted and dropped in Go,
// right after ingest (delta layers and the open layer) and after a
// pageserver checkpoint (flush + compact: image layers), and at an LSN far
// back (between two pgbench runs, after a checkpoint at the end); against
// `pg_basebackup -Ft -X none -D -` of the primary. Each is run twice and
// the faster counts. Scale $STRATA_BENCH_SCALE, default 50 as in the spec.
// Also a basebackup of a small (initdb-only) timeline, end to end from
// connecting (S6 goal: ≤ 50 ms), and a whole compute start from storage
// for it (goal ≤ 1 s). With $STRATA_BENCH_PROFILE set, CPU profiles of
// the pageserver during the runs with nothing imaged (2 s) and far back
// (3 s) are saved there.
func BenchmarkBasebackup(b *testing.B) {
	scale := int(envSize("STRATA_BENCH_SCALE", 50))
	e := newReadEnv(b, scale)
	const reps = 2
	run := func(f func() result) result {
		var rs []result
		for range reps {
			rs = append(rs, f())
		}
		return best(rs)
	}
	vanilla := run(func() result { return pgBasebackup(b, e.primary) })
	dl, il := e.layerCounts(b)
	waitDeltas := profile(b, e.ps.HTTPAddr, "pageserver-basebackup-deltas", 2)
	deltas := run(func() result { return pageserverBasebackup(b, e.ps, e.ttid, lsn.Invalid, nil) })
	waitDeltas()
	ckpt := e.checkpoint(b)
	dl2, il2 := e.layerCounts(b)
	images := run(func() result { return pageserverBasebackup(b, e.ps, e.ttid, lsn.Invalid, nil) })

	// An LSN far back: pgbench (tpcb-like) in two halves, the LSN between
	// them read after a checkpoint put image layers at the end. Pages the
	// first half changed are rebuilt from the older images and the deltas.
	e.primary.RunPgbench(b, "-c", "4", "-j", "2", "-T", "8", "-n")
	mid := e.primary.InsertWALLSN(b)
	e.primary.RunPgbench(b, "-c", "4", "-j", "2", "-T", "8", "-n")
	end := e.primary.InsertWALLSN(b)
	e.primary.Exec(b, "SELECT txid_current()")
	e.ps.WaitLastRecord(b, e.ttid, end, 10*time.Minute)
	e.primary.Exec(b, "CHECKPOINT")
	ckpt2 := e.checkpoint(b)
	dl3, il3 := e.layerCounts(b)
	waitProfile := profile(b, e.ps.HTTPAddr, "pageserver-basebackup-far", 3)
	redo0 := redoCounters(e.ps)
	far := run(func() result { return pageserverBasebackup(b, e.ps, e.ttid, mid, nil) })
	farRedo := redoCounters(e.ps).sub(redo0).per(reps)
	waitProfile()
	vanilla2 := run(func() result { return pgBasebackup(b, e.primary) })
	if vanilla2.mibps() > vanilla.mibps() {
		vanilla = vanilla2
	}

	var smalls []time.Duration
	var small result
	for range 5 {
		small = pageserverBasebackup(b, e.ps, e.small, lsn.Invalid, nil)
		smalls = append(smalls, small.elapsed)
	}
	slices.Sort(smalls)
	starts, phases := computeStarts(b, e, 3)

	line := func(name string, r result, ratio float64, extra string) string {
		return fmt.Sprintf("basebackup %-44s %7.1f MiB/s  ratio %.2fx  (%d MiB in %.3fs; %s)", name, r.mibps(), ratio, r.bytes>>20, r.elapsed.Seconds(), extra)
	}
	lines := []string{
		fmt.Sprintf("basebackup: pgbench -i -s %d, latest LSN %v; best of %d each", scale, e.ingested, reps),
		line("vanilla pg_basebackup -Ft -X none -D -", vanilla, 1.0, fmt.Sprintf("machine cpu %.2f s/GiB, fast checkpoint included", vanilla.cpuPerGiB())),
		line("strata pageserver, latest, deltas", deltas, deltas.mibps()/vanilla.mibps(),
			fmt.Sprintf("pageserver cpu %.2f s/GiB; %d delta + %d image layers", deltas.cpuPerGiB(), dl, il)),
		line("strata pageserver, latest, after checkpoint", images, images.mibps()/vanilla.mibps(),
			fmt.Sprintf("pageserver cpu %.2f s/GiB; %d delta + %d image layers; checkpoint took %.2fs", images.cpuPerGiB(), dl2, il2, ckpt.Seconds())),
		line(fmt.Sprintf("strata pageserver, far back (%s of %s)", mid, end), far, far.mibps()/vanilla.mibps(),
			fmt.Sprintf("pageserver cpu %.2f s/GiB; %d delta + %d image layers after pgbench -T 16; checkpoint took %.2fs; per backup %s", far.cpuPerGiB(), dl3, il3, ckpt2.Seconds(), farRedo)),
		fmt.Sprintf("basebackup small (initdb-only) timeline end to end: p50 %.1f ms, min %.1f ms, max %.1f ms over %d (%d KiB)  goal ≤ 50 ms",
			ms(smalls[len(smalls)/2]), ms(smalls[0]), ms(smalls[len(smalls)-1]), len(smalls), small.bytes>>10),
		fmt.Sprintf("compute start from storage, small database (basebackup, unpack, PostgreSQL accepting connections): p50 %.0f ms, max %.0f ms over %d (%s)  goal ≤ 1 s",
			ms(starts[len(starts)/2]), ms(starts[len(starts)-1]), len(starts), phases),
		"(ratio: MiB/s over pg_basebackup's in the same run; goal ≥ 1.0x with image layers, ≥ 0.5x when redo is needed)",
	}
	b.ReportMetric(deltas.mibps(), "deltas-MiB/s")
	b.ReportMetric(images.mibps(), "images-MiB/s")
	b.ReportMetric(vanilla.mibps(), "pg_basebackup-MiB/s")
	b.ReportMetric(images.mibps()/vanilla.mibps(), "images-ratio")
	b.ReportMetric(far.mibps()/vanilla.mibps(), "far-back-ratio")
	b.ReportMetric(ms(starts[len(starts)/2]), "compute-start-ms")
	b.ReportMetric(ms(smalls[len(smalls)/2]), "small-ms")
	for _, l := range lines {
		b.Log(l)
		fmt.Println(l)
	}
	writeResults(b, "basebackup.txt", lines)
}

// computeStarts times n compute starts from storage of the small
// timeline: the basebackup fetched, unpacked into a data directory, and
// vanilla PostgreSQL started on it until it accepts connections (pg_ctl
// start -w, which looks every 100 ms). It also says where each start's
// time went.
func computeStarts(b *testing.B, e *readEnv, n int) ([]time.Duration, string) {
	var out []time.Duration
	var phases []string
	for range n {
		c := pgharness.New(b, pgharness.NoStart())
		t0 := time.Now()
		var tarball bytes.Buffer
		pageserverBasebackup(b, e.ps, e.small, lsn.Invalid, &tarball)
		t1 := time.Now()
		c.ReplaceDataDir(b, &tarball)
		t2 := time.Now()
		c.Start(b)
		out = append(out, time.Since(t0))
		phases = append(phases, fmt.Sprintf("%.0f+%.0f+%.0f", ms(t1.Sub(t0)), ms(t2.Sub(t1)), ms(time.Since(t2))))
		c.Stop(b)
	}
	slices.Sort(out)
	return out, "basebackup+unpack+start ms: " + strings.Join(phases, ", ")
}

// BenchmarkGetPage (with $STRATA_BENCH_PROFILE set, CPU profiles of the
// pageserver in the 8-client cells are saved there): GetPage@LSN of uniformly random blocks of
// pgbench_accounts at the latest LSN through the pagestream v3 client,
// one request at a time per connection: latency with 1 client and
// throughput with 8, for $STRATA_BENCH_SECONDS (default 5) each, right
// after ingest and after a pageserver checkpoint (image layers); against
// pgbench -S (select-only, shared-buffer hits) with 1 and 8 clients on the
// primary (S4 goal: 8-client GetPage rate ≥ 1.0x pgbench -S TPS). CPU is
// per 10k requests: the pageserver process's, and the whole machine's
// (client included; for pgbench, pgbench and the backends).
func BenchmarkGetPage(b *testing.B) {
	scale := int(envSize("STRATA_BENCH_SCALE", 10))
	secs := int(envSize("STRATA_BENCH_SECONDS", 5))
	e := newReadEnv(b, scale)
	rel := relOf(b, e.primary, "pgbench_accounts")
	cl := dialPagestream(b, e)
	nblocks, err := cl.Nblocks(rel, lsn.Invalid)
	cl.Close()
	if err != nil || nblocks == 0 {
		b.Fatalf("nblocks of pgbench_accounts %s: %d, %v", rel, nblocks, err)
	}

	var vanilla [2]latencies
	var vanillaCPU [2]time.Duration
	for i, clients := range []int{1, 8} {
		m0 := machineBusy()
		vanilla[i] = runPgbench(b, e.primary, fmt.Sprintf("S-%d", clients), clients, secs, "-S")
		vanillaCPU[i] = machineBusy() - m0
	}
	per10k := func(d time.Duration, n int) float64 { return d.Seconds() / float64(n) * 1e4 }
	lines := []string{
		fmt.Sprintf("getpage: pgbench -i -s %d, pgbench_accounts %d blocks (%d MiB), uniform random blocks at the latest LSN, %ds per cell", scale, nblocks, nblocks>>7, secs),
	}
	for i, clients := range []int{1, 8} {
		v := vanilla[i]
		lines = append(lines, fmt.Sprintf("getpage %-38s c=%d %8.0f /s  p50 %.3f ms  p99 %.3f ms  machine cpu %.2f s/10k",
			"vanilla pgbench -S", clients, v.tps, v.pct(0.5), v.pct(0.99), per10k(vanillaCPU[i], len(v.ms))))
	}
	var rate8 [2]float64
	for round, name := range []string{"deltas", "after checkpoint"} {
		extra := ""
		if round == 1 {
			extra = fmt.Sprintf(" (checkpoint %.2fs)", e.checkpoint(b).Seconds())
		}
		dl, il := e.layerCounts(b)
		for i, clients := range []int{1, 8} {
			wait := func() {}
			if clients == 8 {
				wait = profile(b, e.ps.HTTPAddr, fmt.Sprintf("pageserver-getpage-%s", map[int]string{0: "deltas", 1: "images"}[round]), max(1, secs-1))
			}
			r := getPageLoad(b, e, rel, nblocks, clients, time.Duration(secs)*time.Second)
			wait()
			rate := float64(len(r.lat)) / r.elapsed.Seconds()
			if clients == 8 {
				rate8[round] = rate
			}
			lines = append(lines, fmt.Sprintf("getpage %-38s c=%d %8.0f /s  p50 %.3f ms  p99 %.3f ms  ratio %.2fx  pageserver cpu %.2f s/10k, machine %.2f s/10k; %d delta + %d image layers%s",
				"strata GetPage, "+name, clients, rate, ms(r.pct(0.5)), ms(r.pct(0.99)), rate/vanilla[i].tps,
				per10k(r.psCPU, len(r.lat)), per10k(r.machine, len(r.lat)), dl, il, extra))
			b.ReportMetric(rate, fmt.Sprintf("%s-c%d-req/s", map[int]string{0: "deltas", 1: "images"}[round], clients))
		}
	}
	lines = append(lines, fmt.Sprintf("getpage 8-client GetPage rate over pgbench -S TPS: %.2fx with deltas, %.2fx after checkpoint  (goal ≥ 1.0x)",
		rate8[0]/vanilla[1].tps, rate8[1]/vanilla[1].tps))
	b.ReportMetric(vanilla[1].tps, "pgbench-S-c8-tps")
	b.ReportMetric(rate8[1]/vanilla[1].tps, "c8-ratio")
	for _, l := range lines {
		b.Log(l)
		fmt.Println(l)
	}
	writeResults(b, "getpage.txt", lines)
}

func dialPagestream(b *testing.B, e *readEnv) *pageservice.Client {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := pageservice.Dial(ctx, e.ps.PGAddr, e.ttid, pageservice.V3)
	if err != nil {
		b.Fatal(err)
	}
	return cl
}

// getPageRun is one load cell: every request's latency, sorted.
type getPageRun struct {
	lat            []time.Duration
	elapsed        time.Duration
	psCPU, machine time.Duration
}

func (r getPageRun) pct(p float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	return r.lat[min(len(r.lat)-1, int(float64(len(r.lat))*p))]
}

// getPageLoad runs clients connections, each asking for one random block
// at a time at the latest LSN, for d.
func getPageLoad(b *testing.B, e *readEnv, rel key.Rel, nblocks uint32, clients int, d time.Duration) getPageRun {
	conns := make([]*pageservice.Client, clients)
	for i := range conns {
		conns[i] = dialPagestream(b, e)
		defer conns[i].Close()
		// Warm the connection (and the first lookups) outside the clock.
		if _, err := conns[i].GetPage(rel, 0, lsn.Invalid); err != nil {
			b.Fatalf("GetPage %s block 0: %v", rel, err)
		}
	}
	pid := e.ps.Pid()
	c0, m0 := processCPU(pid), machineBusy()
	t0 := time.Now()
	deadline := t0.Add(d)
	lats := make([][]time.Duration, clients)
	errs := make([]error, clients)
	var wg sync.WaitGroup
	for i, cl := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(i), uint64(t0.UnixNano())))
			for {
				s := time.Now()
				if s.After(deadline) {
					return
				}
				blk := rng.Uint32N(nblocks)
				if _, err := cl.GetPage(rel, blk, lsn.Invalid); err != nil {
					errs[i] = fmt.Errorf("GetPage %s block %d: %w", rel, blk, err)
					return
				}
				lats[i] = append(lats[i], time.Since(s))
			}
		}()
	}
	wg.Wait()
	r := getPageRun{elapsed: time.Since(t0), psCPU: processCPU(pid) - c0, machine: machineBusy() - m0}
	for i := range lats {
		if errs[i] != nil {
			b.Fatal(errs[i])
		}
		r.lat = append(r.lat, lats[i]...)
	}
	slices.Sort(r.lat)
	if len(r.lat) == 0 {
		b.Fatal("no GetPage answered")
	}
	return r
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// redoStats are the pageserver's WAL-redo counters.
type redoStats struct{ requests, records, native float64 }

func redoCounters(ps *daemons.Pageserver) redoStats {
	return redoStats{
		requests: daemons.Metric(ps.HTTPAddr, "pageserver_wal_redo_seconds_count"),
		records:  daemons.Metric(ps.HTTPAddr, "pageserver_replayed_wal_records_total"),
		native:   daemons.Metric(ps.HTTPAddr, "pageserver_wal_redo_native_total"),
	}
}

func (a redoStats) sub(b redoStats) redoStats {
	return redoStats{a.requests - b.requests, a.records - b.records, a.native - b.native}
}

func (a redoStats) per(n int) redoStats {
	return redoStats{a.requests / float64(n), a.records / float64(n), a.native / float64(n)}
}

func (a redoStats) String() string {
	return fmt.Sprintf("%.0f pages through redo processes (%.0f records), %.0f applied in Go", a.requests, a.records, a.native)
}
