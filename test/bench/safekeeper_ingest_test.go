// Package bench holds Strata's benchmarks. Each one measures the vanilla
// PostgreSQL baseline in the same run and prints the ratio, because absolute
// numbers on shared machines are noisy. Run them with `make bench`; results
// are also written to $STRATA_BENCH_DIR.
package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"

	"strata.dev/libs/id"
	"strata.dev/libs/lsn"
	"strata.dev/libs/pamsg"
	"strata.dev/libs/skclient"
	"strata.dev/libs/wal/walgen"
	"strata.dev/libs/walproposer"
	"strata.dev/test/daemons"
	"strata.dev/test/pgharness"
	"strata.dev/test/primarywal"
)

// result is one measured ingest run.
type result struct {
	what    string
	bytes   uint64
	elapsed time.Duration
	cpu     time.Duration // CPU time of the receiving process
}

func (r result) mibps() float64 { return float64(r.bytes) / (1 << 20) / r.elapsed.Seconds() }

func (r result) cpuPerGiB() float64 { return r.cpu.Seconds() / (float64(r.bytes) / (1 << 30)) }

// BenchmarkSafekeeperIngest: one safekeeper, fsync on, 2 GiB of WAL made of
// 8 KiB and of 128 KiB logical messages (spec/benchmarks.md S1), against
// unmodified pg_receivewal --synchronous receiving the same volume from
// PostgreSQL (baselines/pg_baseline_3_receivewal_throughput.sh).
//
//   - push: a Go proposer streams synthetic WAL in appends of the message
//     size: the safekeeper's own ingest rate;
//   - relay: a real primary emits the messages and the Go proposer relays
//     its replication stream: the path a walproposer sidecar takes.
func BenchmarkSafekeeperIngest(b *testing.B) {
	volume := envSize("STRATA_BENCH_VOLUME", 2<<30)
	var lines []string
	for _, size := range []int{8192, 131072} {
		b.Run(fmt.Sprintf("msg=%dB", size), func(b *testing.B) {
			primary := pgharness.New(b, pgharness.WithFsync(true),
				pgharness.WithConf("max_wal_size", "16GB"), pgharness.WithConf("checkpoint_timeout", "1h"),
				pgharness.WithConf("shared_buffers", "256MB"))
			base := baselineReceivewal(b, primary, size, volume)
			push := pushSynthetic(b, size, volume)
			relay := relayPrimary(b, primary, size, volume)
			for _, r := range []result{base, push, relay} {
				line := fmt.Sprintf("safekeeper ingest msg=%-6d %-34s %8.1f MiB/s  ratio %.2fx  cpu %.2f s/GiB  (%d MiB in %.2fs)",
					size, r.what, r.mibps(), r.mibps()/base.mibps(), r.cpuPerGiB(), r.bytes>>20, r.elapsed.Seconds())
				b.Log(line)
				lines = append(lines, line)
			}
			b.ReportMetric(push.mibps(), "push-MiB/s")
			b.ReportMetric(push.mibps()/base.mibps(), "push-ratio")
			b.ReportMetric(relay.mibps()/base.mibps(), "relay-ratio")
			b.ReportMetric(base.mibps(), "receivewal-MiB/s")
		})
	}
	writeResults(b, "safekeeper_ingest.txt", lines)
	for _, l := range lines {
		fmt.Println(l)
	}
}

func envSize(name string, def uint64) uint64 {
	if v := os.Getenv(name); v != "" {
		if n, err := strconv.ParseUint(v, 10, 64); err == nil && n > 0 {
			return n
		}
	}
	return def
}

func writeResults(b *testing.B, name string, lines []string) {
	dir := os.Getenv("STRATA_BENCH_DIR")
	if dir == "" || len(lines) == 0 {
		return
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	body := fmt.Sprintf("# %s\n%s\n", time.Now().Format(time.RFC3339), strings.Join(lines, "\n"))
	if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
		b.Fatal(err)
	}
}

// profile saves a CPU profile of seconds from the daemon at addr as
// $STRATA_BENCH_PROFILE/name.pprof, in the background, when that variable
// names a directory, and with $STRATA_BENCH_TRACE set an execution trace
// of the same seconds as name.trace (go tool trace: where goroutines
// wait); the returned func waits until they are written.
func profile(b *testing.B, addr, name string, seconds int) (wait func()) {
	dir := os.Getenv("STRATA_BENCH_PROFILE")
	if dir == "" {
		return func() {}
	}
	kinds := map[string]string{"profile": ".pprof"}
	if os.Getenv("STRATA_BENCH_TRACE") != "" {
		kinds["trace"] = ".trace"
	}
	type saved struct {
		path string
		err  error
	}
	done := make(chan saved, len(kinds))
	for kind, ext := range kinds {
		path := filepath.Join(dir, name+ext)
		go func() {
			done <- saved{path, fetchTo(fmt.Sprintf("http://%s/debug/pprof/%s?seconds=%d", addr, kind, seconds), path)}
		}()
	}
	return func() {
		for range kinds {
			s := <-done
			if s.err != nil {
				b.Logf("profile %s: %v", s.path, s.err)
				continue
			}
			b.Logf("%d s profile written to %s", seconds, s.path)
		}
	}
}

// fetchTo saves what url answers in path.
func fetchTo(url, path string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, resp.Body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// processCPU is the user+system CPU time of a process so far.
func processCPU(pid int) time.Duration {
	user, sys := cpuTimes(pid)
	return user + sys
}

// cpuTimes is a process's user and system CPU time so far.
func cpuTimes(pid int) (user, sys time.Duration) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0, 0
	}
	ut, _ := strconv.ParseUint(f[11], 10, 64)
	st, _ := strconv.ParseUint(f[12], 10, 64)
	const clkTck = 100 // USER_HZ on Linux
	return time.Duration(ut) * time.Second / clkTck, time.Duration(st) * time.Second / clkTck
}

// emit makes the primary write volume bytes of logical messages of size
// bytes each, without waiting for commits, as the baseline script does.
func emit(b *testing.B, c *pgharness.Cluster, size int, volume uint64) {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, c.ConnString("postgres"))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "SET synchronous_commit = off"); err != nil {
		b.Fatal(err)
	}
	n := volume / uint64(size)
	if _, err := conn.Exec(ctx, fmt.Sprintf("SELECT count(pg_logical_emit_message(false, '', repeat('x', %d))) FROM generate_series(1, %d)", size, n)); err != nil {
		b.Fatal(err)
	}
}

// waitUntil polls cond every 5 ms (fine enough for timing runs of
// seconds, rare enough not to steal the CPU being measured) for at most
// timeout.
func waitUntil(b *testing.B, what string, timeout time.Duration, cond func() bool) {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// baselineReceivewal is pg_baseline_3 with one receiver.
func baselineReceivewal(b *testing.B, c *pgharness.Cluster, size int, volume uint64) result {
	c.Exec(b, "SELECT pg_create_physical_replication_slot('rs1', true)")
	defer c.Exec(b, "SELECT pg_drop_replication_slot('rs1')")
	dir := c.MkdirShared(b, fmt.Sprintf("recv-%d", size))
	cmd := c.Command("pg_receivewal", "-h", "127.0.0.1", "-p", strconv.Itoa(c.Port()), "-U", "postgres",
		"-D", dir, "-S", "rs1", "--synchronous", "-n")
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		_ = os.RemoveAll(dir)
		c.Exec(b, "CHECKPOINT")
	}()
	waitUntil(b, "pg_receivewal to connect", 30*time.Second, func() bool {
		var n int
		c.QueryRow(b, "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'pg_receivewal'").Scan(&n)
		return n == 1
	})
	cpu0 := processCPU(cmd.Process.Pid)
	l0 := c.CurrentWALLSN(b)
	t0 := time.Now()
	emit(b, c, size, volume)
	l1 := c.CurrentWALLSN(b)
	waitUntil(b, "pg_receivewal to flush", 10*time.Minute, func() bool {
		var behind int64
		c.QueryRow(b, fmt.Sprintf("SELECT coalesce(max(pg_wal_lsn_diff('%s', flush_lsn)), 1)::bigint FROM pg_stat_replication WHERE application_name = 'pg_receivewal'", l1)).Scan(&behind)
		return behind <= 0
	})
	return result{what: "pg_receivewal --synchronous", bytes: uint64(l1 - l0), elapsed: time.Since(t0), cpu: processCPU(cmd.Process.Pid) - cpu0}
}

// handshake elects a lone proposer in term 1 on sk, starting WAL at start.
func handshake(b *testing.B, conn *skclient.PushConn, ttid id.TenantTimeline, start lsn.LSN) {
	send := func(m pamsg.ProposerMessage) pamsg.AcceptorMessage {
		if err := conn.Send(m); err != nil {
			b.Fatal(err)
		}
		if err := conn.Flush(); err != nil {
			b.Fatal(err)
		}
		if _, ok := m.(*pamsg.ProposerElected); ok {
			return nil
		}
		r, err := conn.Receive()
		if err != nil {
			b.Fatal(err)
		}
		return r
	}
	send(&pamsg.ProposerGreeting{TenantID: ttid.Tenant, TimelineID: ttid.Timeline, PgVersion: 150010, SystemID: walgen.DefaultSystemID, WalSegSize: lsn.DefaultSegmentSize})
	if v := send(&pamsg.VoteRequest{Term: 1}).(*pamsg.VoteResponse); !v.VoteGiven {
		b.Fatal("vote refused")
	}
	send(&pamsg.ProposerElected{Term: 1, StartStreamingAt: start, TermHistory: pamsg.TermHistory{{Term: 1, LSN: start}}})
}

// pushSynthetic streams generated WAL straight into one safekeeper.
func pushSynthetic(b *testing.B, size int, volume uint64) result {
	var args []string
	if m := os.Getenv("STRATA_BENCH_PREALLOC"); m != "" {
		args = append(args, "--wal-prealloc", m)
	}
	sk := daemons.StartSafekeeper(b, 1, args...)
	ttid := id.TenantTimeline{Tenant: id.Generate(), Timeline: id.Generate()}
	ctx := context.Background()
	conn, err := skclient.DialPush(ctx, skclient.Config{Addr: sk.PGAddr, TTID: ttid, AppName: "bench"}, pamsg.V3, true)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	start := lsn.LSN(lsn.DefaultSegmentSize)
	handshake(b, conn, ttid, start)
	gen, err := walgen.New(start, walgen.Options{})
	if err != nil {
		b.Fatal(err)
	}
	end := start + lsn.LSN(volume)
	stream := gen.Stream(end, func(g *walgen.Generator) { g.LogicalMessage(size) })

	var flushed atomic.Uint64
	recvErr := make(chan error, 1)
	go func() {
		for {
			m, err := conn.Receive()
			if err != nil {
				recvErr <- err
				return
			}
			if r, ok := m.(*pamsg.AppendResponse); ok {
				flushed.Store(uint64(r.FlushLSN))
			}
		}
	}()
	pid := sk.Pid()
	cpu0 := processCPU(pid)
	profile(b, sk.HTTPAddr, "safekeeper-ingest", 3)
	t0 := time.Now()
	pos := start
	for pos < end {
		chunk, err := stream.Chunk(size)
		if err != nil {
			b.Fatal(err)
		}
		a := &pamsg.AppendRequest{Term: 1, BeginLSN: pos, EndLSN: pos + lsn.LSN(len(chunk)), CommitLSN: lsn.LSN(flushed.Load()), WAL: chunk}
		if err := conn.SendAppend(a); err != nil {
			b.Fatal(err)
		}
		pos = a.EndLSN
	}
	if err := conn.Flush(); err != nil {
		b.Fatal(err)
	}
	// The last record may be torn at the limit; the safekeeper acknowledges
	// up to the last complete record.
	last := end - lsn.LSN(size+64)
	deadline := time.Now().Add(5 * time.Minute)
	for lsn.LSN(flushed.Load()) < last {
		select {
		case err := <-recvErr:
			b.Fatalf("safekeeper connection: %v\n%s", err, sk.Log())
		default:
		}
		if time.Now().After(deadline) {
			b.Fatal("safekeeper did not acknowledge the WAL in 5 minutes")
		}
		time.Sleep(time.Millisecond)
	}
	r := result{what: "strata safekeeper, push", bytes: volume, elapsed: time.Since(t0), cpu: processCPU(pid) - cpu0}
	b.Logf("safekeeper did %.0f fsyncs of WAL (%.0f KiB each on average)", daemons.Metric(sk.HTTPAddr, "safekeeper_flush_wal_seconds_count"),
		float64(volume)/1024/daemons.Metric(sk.HTTPAddr, "safekeeper_flush_wal_seconds_count"))
	return r
}

// relayPrimary streams a primary's WAL through the Go proposer into one safekeeper.
func relayPrimary(b *testing.B, c *pgharness.Cluster, size int, volume uint64) result {
	sk := daemons.StartSafekeeper(b, 2)
	ttid := id.TenantTimeline{Tenant: id.Generate(), Timeline: id.Generate()}
	c.Exec(b, "SELECT pg_create_physical_replication_slot('relay', true)")
	defer c.Exec(b, "SELECT pg_drop_replication_slot('relay')")
	start := primarywal.NextSegmentStart(b, c)
	buf := walproposer.NewWALBuffer(start)
	var sysid uint64
	c.QueryRow(b, "SELECT system_identifier FROM pg_control_system()").Scan(&sysid)
	prop := walproposer.New(walproposer.Config{
		Safekeepers: []string{sk.PGAddr}, TTID: ttid, PgVersion: 150010, SystemID: sysid,
		WalSegSize: uint32(c.WALSegmentSize()), StartLSN: start, AllowTimelineCreation: true,
		Log: zerolog.Nop(),
	}, buf)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errs := make(chan error, 3)
	go func() { errs <- prop.Run(ctx) }()
	go func() { errs <- primarywal.Stream(ctx, c, "relay", buf, prop) }()
	// Keep memory bounded: WAL the safekeeper has is not needed again.
	go func() {
		for ctx.Err() == nil {
			buf.Trim(prop.CommitLSN())
			time.Sleep(10 * time.Millisecond)
		}
	}()
	if _, err := prop.WaitElected(ctx); err != nil {
		b.Fatal(err)
	}
	pid := sk.Pid()
	cpu0 := processCPU(pid)
	l0 := c.CurrentWALLSN(b)
	t0 := time.Now()
	emit(b, c, size, volume)
	l1 := c.CurrentWALLSN(b)
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Minute)
	defer wcancel()
	if _, err := prop.WaitCommit(wctx, l1); err != nil {
		b.Fatalf("relay: %v", err)
	}
	r := result{what: "strata safekeeper, relay from primary", bytes: uint64(l1 - l0), elapsed: time.Since(t0), cpu: processCPU(pid) - cpu0}
	gib := float64(l1-l0) / (1 << 30)
	b.Logf("relay: per GiB the safekeeper did %.0f fsyncs and took %.0f messages", daemons.Metric(sk.HTTPAddr, "safekeeper_flush_wal_seconds_count")/gib,
		daemons.Metric(sk.HTTPAddr, "safekeeper_write_wal_seconds_count")/gib)
	return r
}
