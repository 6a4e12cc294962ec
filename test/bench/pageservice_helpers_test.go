package bench

import (
	"bytes"
	"context"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"strata.dev/libs/id"
	"strata.dev/libs/lsn"
	"strata.dev/pageserver/httpapi"
	"strata.dev/test/daemons"
	"strata.dev/test/pgharness"
)

// readEnv is the read path's setup: a primary streaming through a
// walproposer to one safekeeper and a pageserver following the timeline,
// with pgbench -i at some scale ingested; and a second timeline that is
// only the initdb data directory (a small database).
type readEnv struct {
	primary     *pgharness.Cluster
	sk          *daemons.Safekeeper
	ps          *daemons.Pageserver
	ttid, small id.TenantTimeline
	// ingested is the pageserver's last record LSN after pgbench -i.
	ingested lsn.LSN
}

func newReadEnv(b *testing.B, scale int) *readEnv {
	e := &readEnv{
		ttid:  id.TenantTimeline{Tenant: id.Generate(), Timeline: id.Generate()},
		small: id.TenantTimeline{Tenant: id.Generate(), Timeline: id.Generate()},
	}
	e.primary = pgharness.New(b, append(benchConf(), pgharness.NoStart(), pgharness.WithConf("wal_keep_size", "16GB"))...)
	e.sk = daemons.StartSafekeeper(b, 1)
	// One delta layer over a key range is enough for compaction to write
	// an image layer: after checkpoint the timeline is fully imaged.
	args := append(daemons.SafekeeperArgs([]*daemons.Safekeeper{e.sk}), "--image-creation-threshold", "1")
	e.ps = daemons.StartPageserver(b, append(args, extraPageserverArgs()...)...)
	startFromInitdb(b, e.primary, e.sk, e.ps, e.ttid, e.small)
	e.primary.RunPgbench(b, "-i", "-s", strconv.Itoa(scale), "-q")
	e.primary.Exec(b, "VACUUM ANALYZE")
	l1 := e.primary.CurrentWALLSN(b)
	// A commit past l1 makes every record up to it reach the safekeeper.
	e.primary.Exec(b, "SELECT txid_current()")
	e.ingested = e.ps.WaitLastRecord(b, e.ttid, l1, 10*time.Minute).LastRecordLSN
	// The primary's own pages are on disk too, as the pageserver's are
	// in layer files (pg_basebackup's fast checkpoint then has little to
	// write).
	e.primary.Exec(b, "CHECKPOINT")
	return e
}

// checkpoint makes the pageserver flush its open layer and compact: the
// timeline is then image layers. It returns how long that took.
func (e *readEnv) checkpoint(b *testing.B) time.Duration {
	t0 := time.Now()
	if err := e.ps.Call("PUT", daemons.TimelinePath(e.ttid)+"/checkpoint", nil, nil); err != nil {
		b.Fatalf("pageserver checkpoint: %v", err)
	}
	return time.Since(t0)
}

// layerCounts is how many delta and image layers the timeline has.
func (e *readEnv) layerCounts(b *testing.B) (deltas, images int) {
	var ls struct{ Layers []httpapi.LayerInfo }
	if err := e.ps.Call("GET", daemons.TimelinePath(e.ttid)+"/layer", nil, &ls); err != nil {
		b.Logf("layer listing: %v", err)
		return -1, -1
	}
	for _, l := range ls.Layers {
		if l.Kind == "Image" {
			images++
		} else {
			deltas++
		}
	}
	return deltas, images
}

// byteCounter is an io.Writer that only counts.
type byteCounter struct{ n uint64 }

func (c *byteCounter) Write(p []byte) (int, error) {
	c.n += uint64(len(p))
	return len(p), nil
}

// pageserverBasebackup times `basebackup <tenant> <timeline> [<at>]` over
// the pageserver's libpq port (at 0: the last record), from connecting to
// the last byte of the tar, which is counted and dropped (or kept in keep,
// if not nil). cpu is the pageserver's.
func pageserverBasebackup(b *testing.B, ps *daemons.Pageserver, ttid id.TenantTimeline, at lsn.LSN, keep *bytes.Buffer) result {
	pid := ps.Pid()
	c0 := processCPU(pid)
	t0 := time.Now()
	var args []string
	if at != lsn.Invalid {
		args = append(args, at.String())
	}
	n := &byteCounter{}
	var w io.Writer = n
	if keep != nil {
		w = io.MultiWriter(n, keep)
	}
	if err := ps.Basebackup(context.Background(), w, ttid, args...); err != nil {
		b.Fatal(err)
	}
	return result{what: "pageserver basebackup", bytes: n.n, elapsed: time.Since(t0), cpu: processCPU(pid) - c0}
}

// pgBasebackup times `pg_basebackup -Ft -X none -D - -c fast` of c, its tar
// counted and dropped in Go. cpu is the whole machine's busy time (the
// walsender is not our child).
func pgBasebackup(b *testing.B, c *pgharness.Cluster) result {
	cmd := c.Command("pg_basebackup", "-Ft", "-X", "none", "-D", "-", "-c", "fast")
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	m0 := machineBusy()
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	var n byteCounter
	_, cerr := io.Copy(&n, out)
	if err := cmd.Wait(); err != nil || cerr != nil {
		b.Fatalf("pg_basebackup: %v %v\n%s", err, cerr, stderr.String())
	}
	return result{what: "pg_basebackup", bytes: n.n, elapsed: time.Since(t0), cpu: machineBusy() - m0}
}

// best is the fastest of results.
func best(rs []result) result {
	r := rs[0]
	for _, o := range rs[1:] {
		if o.mibps() > r.mibps() {
			r = o
		}
	}
	return r
}

// extraPageserverArgs are the flags $STRATA_BENCH_PS_ARGS adds to the
// benchmarks' pageservers, for experiments.
func extraPageserverArgs() []string { return strings.Fields(os.Getenv("STRATA_BENCH_PS_ARGS")) }
