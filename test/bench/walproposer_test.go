package bench

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"strata.dev/libs/id"
	"strata.dev/libs/lsn"
	"strata.dev/test/daemons"
	"strata.dev/test/pgharness"
)

// benchPrimary is a primary set up like the baseline scripts' (fsync on,
// 1 GB shared buffers, pgbench scale 50).
func benchPrimary(b *testing.B, scale int) *pgharness.Cluster {
	c := pgharness.New(b, pgharness.WithFsync(true),
		pgharness.WithConf("shared_buffers", "1GB"), pgharness.WithConf("max_wal_size", "8GB"),
		pgharness.WithConf("checkpoint_timeout", "30min"), pgharness.WithConf("synchronous_commit", "on"))
	if scale > 0 {
		c.RunPgbench(b, "-i", "-s", strconv.Itoa(scale), "-q")
	}
	c.Exec(b, "CHECKPOINT")
	return c
}

// receivers starts n pg_receivewal --synchronous named rw1..rwn with slots;
// the returned func stops them and drops the slots.
func receivers(b *testing.B, c *pgharness.Cluster, n int) (pids []int, stop func()) {
	var cmds []*exec.Cmd
	for i := 1; i <= n; i++ {
		c.Exec(b, fmt.Sprintf("SELECT pg_create_physical_replication_slot('rs%d', true)", i))
		dir := c.MkdirShared(b, fmt.Sprintf("rw%d-%d", i, time.Now().UnixNano()))
		cmd := c.Command("pg_receivewal", "-d", fmt.Sprintf("host=127.0.0.1 port=%d user=postgres application_name=rw%d", c.Port(), i),
			"-D", dir, "-S", fmt.Sprintf("rs%d", i), "--synchronous", "-n")
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		cmds = append(cmds, cmd)
		pids = append(pids, cmd.Process.Pid)
	}
	waitUntil(b, "pg_receivewal to connect", 30*time.Second, func() bool {
		var k int
		c.QueryRow(b, "SELECT count(*) FROM pg_stat_replication WHERE application_name LIKE 'rw%'").Scan(&k)
		return k == n
	})
	return pids, func() {
		for _, cmd := range cmds {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
		for i := 1; i <= n; i++ {
			c.Exec(b, fmt.Sprintf("SELECT pg_drop_replication_slot('rs%d')", i))
		}
		c.Exec(b, "CHECKPOINT")
	}
}

func setSyncNames(b *testing.B, c *pgharness.Cluster, v string) {
	c.Exec(b, fmt.Sprintf("ALTER SYSTEM SET synchronous_standby_names = '%s'", v))
	c.Exec(b, "SELECT pg_reload_conf()")
	// The setting reaches the walsenders asynchronously; wait until a
	// commit reports it.
	waitUntil(b, "synchronous_standby_names to apply", 10*time.Second, func() bool {
		var s string
		c.QueryRow(b, "SHOW synchronous_standby_names").Scan(&s)
		return s == v
	})
	time.Sleep(500 * time.Millisecond)
}

// startStrata starts three safekeepers and a walproposer for a new timeline.
func startStrata(b *testing.B, c *pgharness.Cluster) (*daemons.Walproposer, []*daemons.Safekeeper, id.TenantTimeline) {
	var sks []*daemons.Safekeeper
	var args []string
	if m := os.Getenv("STRATA_BENCH_PREALLOC"); m != "" {
		args = append(args, "--wal-prealloc", m)
	}
	for i := 1; i <= 3; i++ {
		sks = append(sks, daemons.StartSafekeeper(b, 10+i, args...))
	}
	ttid := id.TenantTimeline{Tenant: id.Generate(), Timeline: id.Generate()}
	// The walproposer is a sidecar on the primary's host: it reaches
	// PostgreSQL through the Unix socket, as a deployment would.
	pgconn := fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres", c.SocketDir(), c.Port())
	wp := daemons.NewWalproposer(b, "--pgconn", pgconn, "--safekeepers", strings.Join(daemons.PGAddrs(sks), ","),
		"--tenant-id", ttid.Tenant.String(), "--timeline-id", ttid.Timeline.String(), "--slot", "wp")
	wp.Start()
	waitUntil(b, "the walproposer to stream", 30*time.Second, func() bool {
		var k int
		c.QueryRow(b, "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'walproposer' AND state = 'streaming'").Scan(&k)
		return k == 1
	})
	return wp, sks, ttid
}

// latencies is one pgbench run: TPS and per-transaction latencies.
type latencies struct {
	tps float64
	ms  []float64 // sorted
}

func (l latencies) pct(p float64) float64 {
	if len(l.ms) == 0 {
		return 0
	}
	return l.ms[min(len(l.ms)-1, int(float64(len(l.ms))*p))]
}

// runPgbench runs pgbench (tpcb-like, or the built-in script args choose,
// e.g. -S) with clients for seconds and reads its per-transaction log, as
// pg_baseline_4 does.
func runPgbench(b *testing.B, c *pgharness.Cluster, name string, clients, seconds int, args ...string) latencies {
	dir := c.MkdirShared(b, fmt.Sprintf("pgbench-%s-%d", name, time.Now().UnixNano()))
	out := c.RunPgbench(b, append([]string{"-c", strconv.Itoa(clients), "-j", strconv.Itoa(min(clients, 2)), "-T", strconv.Itoa(seconds), "-n",
		"--log", "--log-prefix", filepath.Join(dir, "log")}, args...)...)
	var l latencies
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(line, "tps = "); ok {
			l.tps, _ = strconv.ParseFloat(strings.Fields(v)[0], 64)
		}
	}
	files, _ := filepath.Glob(filepath.Join(dir, "log*"))
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			b.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			if fields := strings.Fields(sc.Text()); len(fields) >= 3 {
				us, _ := strconv.ParseFloat(fields[2], 64)
				l.ms = append(l.ms, us/1000)
			}
		}
		fh.Close()
		os.Remove(f)
	}
	slices.Sort(l.ms)
	if l.tps == 0 || len(l.ms) == 0 {
		b.Fatalf("pgbench %s: no tps or no transaction log:\n%s", name, out)
	}
	return l
}

// BenchmarkCommitLatency: pgbench tpcb-like, 1 and 8 clients, through the
// walproposer and three safekeepers, against vanilla PostgreSQL with
// synchronous_standby_names = 'ANY 2 (rw1,rw2,rw3)' over three
// pg_receivewal --synchronous (pg_baseline_4), and one synchronous receiver
// as the stretch reference (spec/benchmarks.md S2).
func BenchmarkCommitLatency(b *testing.B) {
	secs := int(envSize("STRATA_BENCH_SECONDS", 30))
	c := benchPrimary(b, int(envSize("STRATA_BENCH_SCALE", 50)))
	results := map[string]latencies{}
	var lines []string
	// measure runs pgbench and says how much CPU per transaction the
	// replication side (walsenders plus receivers) spent on it.
	measure := func(name, tag string, clients int, receiverPids []int) {
		senders := walsenderPids(b, c)
		s0 := cpuOf(senders)
		r0 := make([]time.Duration, len(receiverPids))
		for i, pid := range receiverPids {
			r0[i] = processCPU(pid)
		}
		r := runPgbench(b, c, tag, clients, secs)
		results[fmt.Sprintf("%s c=%d", name, clients)] = r
		perTxn := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(len(r.ms)) }
		var all time.Duration
		each := make([]string, len(receiverPids))
		for i, pid := range receiverPids {
			d := processCPU(pid) - r0[i]
			all += d
			each[i] = fmt.Sprintf("%.0f", perTxn(d))
		}
		lines = append(lines, fmt.Sprintf("cpu c=%d %-36s %4.0f µs a transaction in walsenders (%d) + %4.0f in receivers (%s)", clients, name,
			perTxn(cpuOf(senders)-s0), len(senders), perTxn(all), strings.Join(each, " + ")))
	}
	rwPids, stopRecv := receivers(b, c, 3)
	for _, q := range []struct{ name, names string }{{"vanilla ANY 2 of 3 pg_receivewal", "ANY 2 (rw1,rw2,rw3)"}, {"vanilla 1 sync pg_receivewal", "rw1"}} {
		setSyncNames(b, c, q.names)
		for _, clients := range []int{1, 8} {
			measure(q.name, fmt.Sprintf("v%d", clients), clients, rwPids)
		}
	}
	setSyncNames(b, c, "")
	stopRecv()
	wp, sks, _ := startStrata(b, c)
	setSyncNames(b, c, "walproposer")
	strataPids := []int{wp.Pid()}
	for _, sk := range sks {
		strataPids = append(strataPids, sk.Pid())
	}
	for _, clients := range []int{1, 8} {
		name := "strata walproposer + 3 safekeepers"
		wpSum0, wpN0 := daemons.Metric(wp.HTTPAddr, "walproposer_commit_latency_seconds_sum"), daemons.Metric(wp.HTTPAddr, "walproposer_commit_latency_seconds_count")
		fsSum0, fsN0 := daemons.Metric(sks[0].HTTPAddr, "safekeeper_flush_wal_seconds_sum"), daemons.Metric(sks[0].HTTPAddr, "safekeeper_flush_wal_seconds_count")
		ackSum0, ackN0 := daemons.Metric(sks[0].HTTPAddr, "safekeeper_append_ack_seconds_sum"), daemons.Metric(sks[0].HTTPAddr, "safekeeper_append_ack_seconds_count")
		appends0 := daemons.Metric(sks[0].HTTPAddr, appendsMetric)
		profile(b, wp.HTTPAddr, fmt.Sprintf("walproposer-c%d", clients), secs/2)
		profile(b, sks[0].HTTPAddr, fmt.Sprintf("safekeeper-c%d", clients), secs/2)
		measure(name, fmt.Sprintf("s%d", clients), clients, strataPids)
		lines = append(lines, fmt.Sprintf("       c=%d walproposer: WAL received to quorum flush %.0f µs on average; safekeeper 1: append received to acknowledged %.0f µs, fdatasync %.0f µs",
			clients, 1e6*(daemons.Metric(wp.HTTPAddr, "walproposer_commit_latency_seconds_sum")-wpSum0)/(daemons.Metric(wp.HTTPAddr, "walproposer_commit_latency_seconds_count")-wpN0),
			1e6*(daemons.Metric(sks[0].HTTPAddr, "safekeeper_append_ack_seconds_sum")-ackSum0)/(daemons.Metric(sks[0].HTTPAddr, "safekeeper_append_ack_seconds_count")-ackN0),
			1e6*(daemons.Metric(sks[0].HTTPAddr, "safekeeper_flush_wal_seconds_sum")-fsSum0)/(daemons.Metric(sks[0].HTTPAddr, "safekeeper_flush_wal_seconds_count")-fsN0)))
		txns := float64(len(results[fmt.Sprintf("%s c=%d", name, clients)].ms))
		lines = append(lines, fmt.Sprintf("       c=%d safekeeper 1: %.2f appends and %.2f fsyncs a transaction", clients,
			(daemons.Metric(sks[0].HTTPAddr, appendsMetric)-appends0)/txns, (daemons.Metric(sks[0].HTTPAddr, "safekeeper_flush_wal_seconds_count")-fsN0)/txns))
	}
	for _, clients := range []int{1, 8} {
		base := results[fmt.Sprintf("vanilla ANY 2 of 3 pg_receivewal c=%d", clients)]
		for _, name := range []string{"vanilla ANY 2 of 3 pg_receivewal", "vanilla 1 sync pg_receivewal", "strata walproposer + 3 safekeepers"} {
			r := results[fmt.Sprintf("%s c=%d", name, clients)]
			lines = append(lines, fmt.Sprintf("commit latency c=%d %-36s tps %8.1f (%.2fx)  p50 %6.3f ms (%.2fx)  p99 %6.3f ms (%.2fx)",
				clients, name, r.tps, r.tps/base.tps, r.pct(0.5), base.pct(0.5)/r.pct(0.5), r.pct(0.99), base.pct(0.99)/r.pct(0.99)))
		}
		s := results[fmt.Sprintf("strata walproposer + 3 safekeepers c=%d", clients)]
		b.ReportMetric(s.tps/base.tps, fmt.Sprintf("tps-ratio-c%d", clients))
		b.ReportMetric(base.pct(0.5)/s.pct(0.5), fmt.Sprintf("p50-ratio-c%d", clients))
	}
	lines = append(lines, "(ratios are against vanilla ANY 2 of 3 in the same run; above 1.0x is better for Strata: more TPS, lower latency)")
	for _, l := range lines {
		b.Log(l)
		fmt.Println(l)
	}
	writeResults(b, "commit_latency.txt", lines)
}

// appendsMetric counts the AppendRequests a safekeeper processed.
const appendsMetric = `safekeeper_proposer_acceptor_messages_total{outcome="append"}`

// walsenderPids are the primary's walsender processes.
func walsenderPids(b *testing.B, c *pgharness.Cluster) []int {
	var list string
	c.QueryRow(b, "SELECT coalesce(string_agg(pid::text, ','), '') FROM pg_stat_replication").Scan(&list)
	var pids []int
	for _, s := range strings.Split(list, ",") {
		if pid, err := strconv.Atoi(s); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

func cpuOf(pids []int) time.Duration {
	var d time.Duration
	for _, pid := range pids {
		d += processCPU(pid)
	}
	return d
}

// BenchmarkQuorumIngest: 2 GiB of logical messages flushed on a majority of
// three safekeepers through the walproposer, against three
// pg_receivewal --synchronous (spec/benchmarks.md S1, quorum flavour).
func BenchmarkQuorumIngest(b *testing.B) {
	volume := envSize("STRATA_BENCH_VOLUME", 2<<30)
	var lines []string
	for _, size := range []int{8192, 131072} {
		b.Run(fmt.Sprintf("msg=%dB", size), func(b *testing.B) {
			c := benchPrimary(b, 0)
			// Vanilla: three receivers; the time until two, and all three, flushed.
			rwPids, stopRecv := receivers(b, c, 3)
			rwCPU0 := cpuOf(rwPids)
			l0 := c.CurrentWALLSN(b)
			t0 := time.Now()
			emit(b, c, size, volume)
			l1 := c.CurrentWALLSN(b)
			var quorumAt time.Duration
			waitUntil(b, "pg_receivewal to flush", 10*time.Minute, func() bool {
				var flushed int
				c.QueryRow(b, fmt.Sprintf("SELECT count(*) FROM pg_stat_replication WHERE application_name LIKE 'rw%%' AND flush_lsn >= '%s'", l1)).Scan(&flushed)
				if flushed >= 2 && quorumAt == 0 {
					quorumAt = time.Since(t0)
				}
				return flushed == 3
			})
			allAt := time.Since(t0)
			rwCPU := cpuOf(rwPids) - rwCPU0
			stopRecv()
			vq := float64(l1-l0) / (1 << 20) / quorumAt.Seconds()
			lines = append(lines, fmt.Sprintf("quorum ingest msg=%-6d vanilla 3x pg_receivewal: 2 of 3 flushed %7.1f MiB/s, all 3 %7.1f MiB/s (%d MiB); cpu %.2f s/GiB each",
				size, vq, float64(l1-l0)/(1<<20)/allAt.Seconds(), (l1-l0)>>20, rwCPU.Seconds()/(float64(l1-l0)/(1<<30))/3))

			// Strata: the walproposer's flush position is the quorum LSN.
			wp, sks, ttid := startStrata(b, c)
			cpu0 := processCPU(wp.Pid())
			var skCPU0 time.Duration
			for _, sk := range sks {
				skCPU0 += processCPU(sk.Pid())
			}
			wpProf := profile(b, wp.HTTPAddr, fmt.Sprintf("quorum-walproposer-%d", size), 5)
			skProf := profile(b, sks[0].HTTPAddr, fmt.Sprintf("quorum-safekeeper-%d", size), 5)
			l0 = c.CurrentWALLSN(b)
			t0 = time.Now()
			emit(b, c, size, volume)
			l1 = c.CurrentWALLSN(b)
			waitUntil(b, "a safekeeper majority to flush", 10*time.Minute, func() bool {
				var flushed string
				c.QueryRow(b, "SELECT coalesce(flush_lsn::text, '0/0') FROM pg_stat_replication WHERE application_name = 'walproposer'").Scan(&flushed)
				f, _ := lsn.Parse(flushed)
				return f >= l1
			})
			el := time.Since(t0)
			wpProf()
			skProf()
			var skCPU time.Duration
			for _, sk := range sks {
				skCPU += processCPU(sk.Pid())
			}
			sq := float64(l1-l0) / (1 << 20) / el.Seconds()
			gib := float64(l1-l0) / (1 << 30)
			lines = append(lines, fmt.Sprintf("quorum ingest msg=%-6d strata walproposer + 3 safekeepers: majority flushed %7.1f MiB/s (%.2fx the 2-of-3 baseline); cpu walproposer %.2f s/GiB, safekeepers %.2f s/GiB each",
				size, sq, sq/vq, (processCPU(wp.Pid())-cpu0).Seconds()/gib, (skCPU-skCPU0).Seconds()/gib/3))
			b.ReportMetric(sq/vq, "ratio")
			b.Logf("timeline starts at %v, emit from %v to %v; per GiB safekeeper 1 did %.0f fsyncs of %.0f messages", lsn.LSN(sks[0].Timeline(b, ttid).TimelineStartLsn), l0, l1,
				daemons.Metric(sks[0].HTTPAddr, "safekeeper_flush_wal_seconds_count")/gib, daemons.Metric(sks[0].HTTPAddr, "safekeeper_write_wal_seconds_count")/gib)
		})
	}
	for _, l := range lines {
		fmt.Println(l)
	}
	writeResults(b, "quorum_ingest.txt", lines)
}
