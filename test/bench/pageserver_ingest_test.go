package bench

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"strata.dev/libs/id"
	"strata.dev/libs/lsn"
	"strata.dev/test/daemons"
	"strata.dev/test/pgharness"
	"strata.dev/test/walcheck"
)

// BenchmarkPageserverIngest: the pageserver re-ingesting WAL a safekeeper
// already holds ("recover": no compute, the pageserver alone catches up)
// against vanilla PostgreSQL's hot standby replaying the same WAL from the
// primary's pg_wal, in the same run (spec/benchmarks.md S3,
// baselines/pg_baseline_2_replay_recovery.sh). Two kinds of WAL:
//
//   - copy: pgbench -i -s $STRATA_BENCH_SCALE (default 50, ~600 MiB of
//     mostly COPY WAL);
//   - tpcb: pgbench -c 8 -j 2 -T $STRATA_BENCH_SECONDS (default 30)
//     tpcb-like right after a CHECKPOINT: FPI-heavy WAL.
//
// Each round starts with the standby and the pageserver stopped and caught
// up to the same LSN L0, just past a checkpoint. The WAL L0→L1 is generated
// and committed on the safekeeper; then the standby is started and timed
// from pg_ctl start returning until pg_last_wal_replay_lsn() ≥ L1, and
// stopped; then the pageserver is started and timed from being up until
// its last_record_lsn ≥ L1, and stopped. Bytes are L1 minus where each was
// when the clock started. CPU is the standby's startup (recovery) process
// and the whole pageserver process over the same interval. "from launch"
// is the rate over the whole catch-up instead: from where each was stopped,
// timed from launching it (startup included).
//
// With $STRATA_BENCH_PROFILE naming a directory, a CPU profile of the
// pageserver's catch-up in each round is saved there as
// pageserver-ingest-<round>.pprof, $STRATA_BENCH_PROFILE_SECONDS long (by
// default the standby's catch-up time in whole seconds, plus one); the
// pageserver is stopped only once it is written.
//
//	go test -run '^$' -bench PageserverIngest -benchtime 1x -count 3 ./test/bench/
//
// takes about a minute per count with the defaults.
func BenchmarkPageserverIngest(b *testing.B) {
	scale := int(envSize("STRATA_BENCH_SCALE", 50))
	secs := int(envSize("STRATA_BENCH_SECONDS", 30))
	e := newIngestEnv(b)
	rounds := []struct {
		name, what string
		generate   func()
	}{
		{"copy", fmt.Sprintf("pgbench -i -s %d", scale), func() {
			e.primary.RunPgbench(b, "-i", "-s", strconv.Itoa(scale), "-q")
		}},
		{"tpcb", fmt.Sprintf("pgbench -c 8 -j 2 -T %d -n after CHECKPOINT", secs), func() {
			e.primary.RunPgbench(b, "-c", "8", "-j", "2", "-T", strconv.Itoa(secs), "-n")
		}},
	}
	var lines []string
	for _, r := range rounds {
		l0 := e.settle(b)
		r.generate()
		l1 := e.primary.CurrentWALLSN(b)
		// A committed transaction past L1: every record up to L1 is then
		// flushed, streamed and committed on the safekeeper.
		e.primary.Exec(b, "SELECT txid_current()")
		waitUntil(b, "the safekeeper to commit the round's WAL", 10*time.Minute, func() bool {
			return lsn.LSN(e.sk.Timeline(b, e.ttid).CommitLsn) >= l1
		})
		sb := e.measureStandby(b, l1)
		ps := e.measurePageserver(b, l1, r.name, sb.elapsed)
		lines = append(lines,
			fmt.Sprintf("pageserver ingest %s: %s, WAL %d MiB (%v..%v)", r.name, r.what, (l1-l0)>>20, l0, l1),
			fmt.Sprintf("pageserver ingest %-4s %-38s %7.1f MiB/s  ratio %.2fx  cpu %5.2f s/GiB (1.00x, %2.0f%% sys)  (%d MiB in %.2fs; pg_ctl start %.2fs; from launch %.1f MiB/s; machine %.0f%% busy, %.0f%% I/O wait)",
				r.name, "vanilla standby replay (startup proc)", sb.mibps(), 1.0, sb.cpuPerGiB(), 100*sb.sysShare(), sb.bytes>>20, sb.elapsed.Seconds(), sb.start.Seconds(), sb.fromLaunch, 100*sb.busy, 100*sb.iowait),
			fmt.Sprintf("pageserver ingest %-4s %-38s %7.1f MiB/s  ratio %.2fx  cpu %5.2f s/GiB (%.2fx, %2.0f%% sys)  (%d MiB in %.2fs; start %.2fs; from launch %.1f MiB/s; %d records, layer files +%d MiB, SIGTERM flush %.2fs; safekeeper cpu %.2f s/GiB, machine %.0f%% busy, %.0f%% I/O wait)",
				r.name, "strata pageserver recover from 1 SK", ps.mibps(), ps.mibps()/sb.mibps(), ps.cpuPerGiB(), ps.cpuPerGiB()/sb.cpuPerGiB(), 100*ps.sysShare(),
				ps.bytes>>20, ps.elapsed.Seconds(), ps.start.Seconds(), ps.fromLaunch, ps.records, ps.diskGrowth>>20, ps.stop.Seconds(), ps.feeder.Seconds()/(float64(ps.bytes)/(1<<30)), 100*ps.busy, 100*ps.iowait))
		b.ReportMetric(ps.mibps(), r.name+"-ps-MiB/s")
		b.ReportMetric(sb.mibps(), r.name+"-standby-MiB/s")
		b.ReportMetric(ps.mibps()/sb.mibps(), r.name+"-ratio")
		b.ReportMetric(ps.cpuPerGiB()/sb.cpuPerGiB(), r.name+"-cpu-ratio")
	}
	lines = append(lines, "(ratio: pageserver MiB/s over the standby's, above 1.0x is better for Strata; cpu ratio: pageserver CPU per GiB over the startup process's, below 1.0x is better)")
	for _, l := range lines {
		b.Log(l)
		fmt.Println(l)
	}
	writeResults(b, "pageserver_ingest.txt", lines)
}

// ingestEnv is a primary streaming through a walproposer to one
// safekeeper, a pageserver following the timeline from that safekeeper,
// and a vanilla standby streaming from the primary.
type ingestEnv struct {
	primary, standby *pgharness.Cluster
	sk               *daemons.Safekeeper
	ps               *daemons.Pageserver
	ttid             id.TenantTimeline
	// Where the standby's replay and the pageserver's ingest were when
	// they were last stopped.
	standbyAt, psAt lsn.LSN
}

// replayResult is one catch-up: a result plus what else was seen.
type replayResult struct {
	result
	start      time.Duration // pg_ctl start / pageserver start until up
	stop       time.Duration // pageserver SIGTERM (flushes the in-memory layer) until gone
	records    uint64
	diskGrowth int64
	sys        time.Duration // of cpu, the part spent in the kernel
	// fromLaunch is MiB/s over the whole catch-up: from where it was
	// stopped, timed from launching it.
	fromLaunch float64
	// busy is the share of the machine's CPUs in use over the catch-up
	// (every process): near 100% the rate is bound by CPU, not by waits;
	// iowait the share idle with disk I/O outstanding.
	busy, iowait float64
	// feeder is the safekeeper's CPU over the pageserver's catch-up.
	feeder time.Duration
}

func (r replayResult) sysShare() float64 { return r.sys.Seconds() / max(r.cpu.Seconds(), 1e-9) }

// machineShares are the shares of the machine's CPUs busy and in I/O wait
// since machineTimes gave busy0 and io0, el ago.
func machineShares(busy0, io0, el time.Duration) (busy, iowait float64) {
	b, io := machineTimes()
	all := el.Seconds() * float64(runtime.NumCPU())
	return (b - busy0).Seconds() / all, (io - io0).Seconds() / all
}

func benchConf() []pgharness.Option {
	return []pgharness.Option{pgharness.WithFsync(true),
		pgharness.WithConf("shared_buffers", "256MB"), pgharness.WithConf("max_wal_size", "16GB"),
		pgharness.WithConf("checkpoint_timeout", "1h")}
}

func newIngestEnv(b *testing.B) *ingestEnv {
	e := &ingestEnv{ttid: id.TenantTimeline{Tenant: id.Generate(), Timeline: id.Generate()}}
	// The standby is stopped while WAL is generated: the primary keeps it.
	e.primary = pgharness.New(b, append(benchConf(), pgharness.NoStart(), pgharness.WithConf("wal_keep_size", "64GB"))...)
	e.sk = daemons.StartSafekeeper(b, 1)
	e.ps = daemons.StartPageserver(b, append(daemons.SafekeeperArgs([]*daemons.Safekeeper{e.sk}), extraPageserverArgs()...)...)
	// The timeline starts as initdb left the data directory.
	startFromInitdb(b, e.primary, e.sk, e.ps, e.ttid)
	e.standby = pgharness.NewStandby(b, e.primary, append(benchConf(),
		pgharness.WithConf("primary_conninfo", fmt.Sprintf("host=127.0.0.1 port=%d user=postgres application_name=standby", e.primary.Port())))...)
	return e
}

// startFromInitdb imports the data directory of primary (created NoStart:
// as initdb left it) into ps as each of ttids, at its shutdown checkpoint
// record; then starts primary and a walproposer streaming it to sk, from
// that record's segment, as ttids[0].
func startFromInitdb(b *testing.B, primary *pgharness.Cluster, sk *daemons.Safekeeper, ps *daemons.Pageserver, ttids ...id.TenantTimeline) {
	start := walcheck.LatestCheckpoint(b, primary)
	upload := daemons.DataDirTar(b, primary.DataDir())
	for _, ttid := range ttids {
		if err := ps.ImportBasebackup(ttid, bytes.NewReader(upload), start, 0); err != nil {
			b.Fatalf("import %s: %v", ttid, err)
		}
	}
	primary.Start(b)
	wp := daemons.NewWalproposer(b, "--pgconn", primary.ConnString("postgres"), "--safekeepers", sk.PGAddr,
		"--tenant-id", ttids[0].Tenant.String(), "--timeline-id", ttids[0].Timeline.String(),
		"--start-lsn", start.SegmentStart(primary.WALSegmentSize()).String(), "--heartbeat-interval", "200ms")
	wp.Start()
	waitUntil(b, "the walproposer to stream", 30*time.Second, func() bool {
		return daemons.Metric(wp.HTTPAddr, "walproposer_primary_connected") == 1
	})
}

// settle checkpoints the primary and brings the standby and the pageserver
// just past the checkpoint (the standby's shutdown restartpoint is then at
// it, so a restart replays nothing twice), and leaves both stopped. It
// returns the LSN after the checkpoint.
func (e *ingestEnv) settle(b *testing.B) lsn.LSN {
	e.primary.Exec(b, "CHECKPOINT")
	l0 := e.primary.CurrentWALLSN(b)
	e.primary.Exec(b, "SELECT txid_current()")
	if !e.standbyRunning() {
		e.standby.Start(b)
	}
	conn := e.standby.MustConnect(b)
	waitUntil(b, "the standby to replay the checkpoint", 10*time.Minute, func() bool { return replayLSN(b, conn) >= l0 })
	e.standbyAt = replayLSN(b, conn)
	conn.Close(context.Background())
	e.standby.Stop(b)
	if !e.ps.Running() {
		e.ps.Start()
	}
	e.psAt = e.ps.WaitLastRecord(b, e.ttid, l0, 10*time.Minute).LastRecordLSN
	e.ps.Stop()
	return l0
}

func (e *ingestEnv) standbyRunning() bool {
	_, err := os.Stat(filepath.Join(e.standby.DataDir(), "postmaster.pid"))
	return err == nil
}

// replayLSN is the standby's pg_last_wal_replay_lsn().
func replayLSN(b *testing.B, conn *pgx.Conn) lsn.LSN {
	var s string
	if err := conn.QueryRow(context.Background(), "SELECT coalesce(pg_last_wal_replay_lsn()::text, '0/0')").Scan(&s); err != nil {
		b.Fatal(err)
	}
	l, err := lsn.Parse(s)
	if err != nil {
		b.Fatal(err)
	}
	return l
}

// measureStandby starts the stopped standby, times its replay up to l1
// from pg_ctl start returning, and stops it.
func (e *ingestEnv) measureStandby(b *testing.B, l1 lsn.LSN) replayResult {
	t0 := time.Now()
	e.standby.Start(b)
	t1 := time.Now()
	conn := e.standby.MustConnect(b)
	defer conn.Close(context.Background())
	var pid int
	if err := conn.QueryRow(context.Background(), "SELECT pid FROM pg_stat_activity WHERE backend_type = 'startup'").Scan(&pid); err != nil {
		b.Fatalf("the standby's startup process: %v", err)
	}
	u0, s0 := cpuTimes(pid)
	busy0, io0 := machineTimes()
	r1 := replayLSN(b, conn)
	if r1 >= l1 {
		b.Fatalf("the standby replayed all %d MiB while starting: too little WAL to time; raise STRATA_BENCH_SCALE or STRATA_BENCH_SECONDS", (l1-e.standbyAt)>>20)
	}
	waitUntil(b, "the standby to replay the round's WAL", 30*time.Minute, func() bool { return replayLSN(b, conn) >= l1 })
	el := time.Since(t1)
	u1, s1 := cpuTimes(pid)
	r := replayResult{result: result{what: "standby", bytes: uint64(l1 - r1), elapsed: el, cpu: u1 + s1 - u0 - s0}, start: t1.Sub(t0), sys: s1 - s0,
		fromLaunch: float64(l1-e.standbyAt) / (1 << 20) / time.Since(t0).Seconds()}
	r.busy, r.iowait = machineShares(busy0, io0, el)
	conn.Close(context.Background())
	e.standby.Stop(b)
	return r
}

// measurePageserver starts the stopped pageserver, times its ingest up to
// l1 from its being up, and stops it (SIGTERM: it writes out what it holds
// in memory, so nothing is re-ingested at the next start).
func (e *ingestEnv) measurePageserver(b *testing.B, l1 lsn.LSN, round string, standbyTook time.Duration) replayResult {
	size0 := dirSize(e.ps.TimelineDir(e.ttid))
	t0 := time.Now()
	e.ps.Start()
	t1 := time.Now()
	pid := e.ps.Pid()
	u0, s0 := cpuTimes(pid)
	busy0, io0 := machineTimes()
	sk0 := processCPU(e.sk.Pid())
	r1 := e.ps.Timeline(b, e.ttid).LastRecordLSN
	if r1 >= l1 {
		b.Fatalf("the pageserver ingested all %d MiB while starting: too little WAL to time; raise STRATA_BENCH_SCALE or STRATA_BENCH_SECONDS", (l1-e.psAt)>>20)
	}
	// The profile should cover the catch-up and little idle time after it.
	secs := int(envSize("STRATA_BENCH_PROFILE_SECONDS", uint64(min(120, int(standbyTook.Seconds())+1))))
	profiled := profile(b, e.ps.HTTPAddr, "pageserver-ingest-"+round, secs)
	var records uint64
	waitUntil(b, "the pageserver to ingest the round's WAL", 30*time.Minute, func() bool {
		ti := e.ps.Timeline(b, e.ttid)
		if ti.State == "Broken" {
			b.Fatalf("pageserver timeline broken: %s", ti.StateError)
		}
		records = ti.RecordsIngested
		return ti.LastRecordLSN >= l1
	})
	el := time.Since(t1)
	u1, s1 := cpuTimes(pid)
	r := replayResult{result: result{what: "pageserver", bytes: uint64(l1 - r1), elapsed: el, cpu: u1 + s1 - u0 - s0},
		start: t1.Sub(t0), records: records, sys: s1 - s0, fromLaunch: float64(l1-e.psAt) / (1 << 20) / time.Since(t0).Seconds(),
		feeder: processCPU(e.sk.Pid()) - sk0}
	r.busy, r.iowait = machineShares(busy0, io0, el)
	profiled()
	t2 := time.Now()
	e.ps.Stop()
	r.stop = time.Since(t2)
	r.diskGrowth = dirSize(e.ps.TimelineDir(e.ttid)) - size0
	return r
}

// dirSize is the total size of the regular files under dir.
func dirSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}
