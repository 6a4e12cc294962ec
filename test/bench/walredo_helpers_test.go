package bench

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"strata.dev/libs/lsn"
	"strata.dev/libs/wal"
	"strata.dev/libs/walrecord"
	"strata.dev/pageserver/ingest"
	"strata.dev/pageserver/redo"
	"strata.dev/test/pgharness"
	"strata.dev/test/walcheck"
)

// ingestWAL decodes the stopped cluster c's pg_wal from start (a record)
// through the record that starts at last, and ingests every record with in,
// flushing at the end of each segment and at the end, as
// pagecheck.IngestWAL does (which needs a *testing.T). It returns the start
// LSN of every record, in order.
func ingestWAL(b *testing.B, ctx context.Context, c *pgharness.Cluster, in *ingest.Ingester, start, last lsn.LSN) []lsn.LSN {
	segSize := c.WALSegmentSize()
	dec := wal.NewDecoder(start, 15, segSize)
	var rec walrecord.Record
	var starts []lsn.LSN
	for pos := start; ; pos = pos.SegmentStart(segSize) + lsn.LSN(segSize) {
		seg, err := walcheck.ReadSegment(c.WALDir(), pos.SegmentNumber(segSize), segSize)
		if err != nil {
			b.Fatalf("segment of %s: %v (the record at %s was not reached)", pos, err, last)
		}
		dec.Feed(seg[pos.SegmentOffset(segSize):])
		for {
			r, ok, err := dec.Next()
			if err != nil {
				b.Fatalf("decode: %v", err)
			}
			if !ok {
				break
			}
			if err := walrecord.DecodeInto(&rec, r.Data, r.StartLSN, r.EndLSN); err != nil {
				b.Fatal(err)
			}
			if err := in.Ingest(ctx, &rec); err != nil {
				b.Fatal(err)
			}
			starts = append(starts, rec.StartLSN)
			if rec.StartLSN == last {
				if err := in.Flush(ctx); err != nil {
					b.Fatal(err)
				}
				return starts
			}
		}
		if err := in.Flush(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// poolCounters reads a pool's metrics: round trips to its processes that
// succeeded (pings included) and pages it rebuilt in Go alone.
type poolCounters struct{ reg *prometheus.Registry }

func newPoolCounters(b *testing.B, p *redo.Pool) poolCounters {
	reg := prometheus.NewRegistry()
	for _, c := range p.Collectors() {
		if err := reg.Register(c); err != nil {
			b.Fatal(err)
		}
	}
	return poolCounters{reg}
}

func (c poolCounters) read(b *testing.B) (roundTrips, native uint64) {
	mfs, err := c.reg.Gather()
	if err != nil {
		b.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch mf.GetName() {
			case "pageserver_wal_redo_seconds":
				roundTrips = m.GetHistogram().GetSampleCount()
			case "pageserver_wal_redo_native_total":
				native = uint64(m.GetCounter().GetValue())
			}
		}
	}
	return roundTrips, native
}

// childCPU is the user+system CPU time so far of this process's running
// children called postgres: the redo pool's processes (the clusters'
// servers are started by pg_ctl and are not our children).
func childCPU() time.Duration {
	self := os.Getpid()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	var d time.Duration
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		s, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		open, close := strings.IndexByte(string(s), '('), strings.LastIndexByte(string(s), ')')
		if open < 0 || close < open || string(s[open+1:close]) != "postgres" {
			continue
		}
		f := strings.Fields(string(s[close+1:]))
		if len(f) < 2 || f[1] != strconv.Itoa(self) {
			continue
		}
		d += processCPU(pid)
	}
	return d
}

// machineBusy is the CPU time all processes of the machine used so far
// (/proc/stat: everything but idle and iowait).
func machineBusy() time.Duration {
	busy, _ := machineTimes()
	return busy
}

// machineTimes is the machine's busy CPU time so far (as machineBusy) and
// its time idle with I/O outstanding (iowait).
func machineTimes() (busy, iowait time.Duration) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0
	}
	const clkTck = 100 // USER_HZ on Linux
	var ticks uint64
	for i, v := range f[1:9] {
		n, _ := strconv.ParseUint(v, 10, 64)
		switch i {
		case 3: // idle
		case 4:
			iowait = time.Duration(n) * time.Second / clkTck
		default:
			ticks += n
		}
	}
	return time.Duration(ticks) * time.Second / clkTck, iowait
}

// pgRecovery is what PostgreSQL logs about a redo it ran: the first and
// last record replayed, and the time and CPU of the redo loop
// (pg_rusage_show, 10 ms resolution).
type pgRecovery struct {
	from, to            lsn.LSN
	elapsed, user, sys  time.Duration
	startLine, doneLine string
}

var (
	redoStartsRE = regexp.MustCompile(`redo starts at ([0-9A-F]+/[0-9A-F]+)`)
	redoDoneRE   = regexp.MustCompile(`redo done at ([0-9A-F]+/[0-9A-F]+) system usage: CPU: user: ([0-9.]+) s, system: ([0-9.]+) s, elapsed: ([0-9.]+) s`)
)

// parseRecovery reads the redo of a server log (the part of one start).
func parseRecovery(log string) (pgRecovery, error) {
	var r pgRecovery
	for _, line := range strings.Split(log, "\n") {
		if m := redoStartsRE.FindStringSubmatch(line); m != nil {
			l, err := lsn.Parse(m[1])
			if err != nil {
				return r, err
			}
			r.from, r.startLine = l, line
		}
		if m := redoDoneRE.FindStringSubmatch(line); m != nil {
			l, err := lsn.Parse(m[1])
			if err != nil {
				return r, err
			}
			r.to, r.doneLine = l, line
			secs := func(s string) time.Duration {
				f, _ := strconv.ParseFloat(s, 64)
				return time.Duration(f * float64(time.Second))
			}
			r.user, r.sys, r.elapsed = secs(m[2]), secs(m[3]), secs(m[4])
		}
	}
	if r.startLine == "" || r.doneLine == "" {
		return r, fmt.Errorf("no \"redo starts at\" and \"redo done at\" lines in the server log:\n%s", log)
	}
	return r, nil
}

// readLogFrom is the server log of c from byte offset on.
func readLogFrom(b *testing.B, c *pgharness.Cluster, offset int64) string {
	s, err := os.ReadFile(c.LogFile())
	if err != nil {
		b.Fatal(err)
	}
	if offset > int64(len(s)) {
		offset = 0
	}
	return string(s[offset:])
}

// copyDir copies the directory src to dst (which must not exist), keeping
// owners and modes: dst is a data directory for the server's user.
func copyDir(b *testing.B, src, dst string) {
	if out, err := exec.Command("cp", "-a", src, dst).CombinedOutput(); err != nil {
		b.Fatalf("cp -a %s %s: %v\n%s", src, dst, err, out)
	}
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}
