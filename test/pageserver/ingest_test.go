// End-to-end tests of bin/pageserver: an unmodified PostgreSQL 15 primary,
// the real walproposer and safekeepers, and real pageservers streaming the
// timeline from the safekeepers. The oracle is the primary itself: after a
// shutdown checkpoint its data files are final, and every relation size
// and every page the pageserver stores as an image (or an image plus
// records Go applies) must match them (test/pagecheck).
package pageserver_test

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"strata.dev/libs/id"
	"strata.dev/libs/lsn"
	"strata.dev/pageserver/datadir"
	"strata.dev/pageserver/httpapi"
	"strata.dev/pageserver/key"
	"strata.dev/pageserver/timeline"
	"strata.dev/test/daemons"
	"strata.dev/test/pagecheck"
	"strata.dev/test/pgharness"
	"strata.dev/test/walcheck"
)

// cluster is a primary, three safekeepers and a walproposer for one timeline.
type cluster struct {
	primary *pgharness.Cluster
	sks     []*daemons.Safekeeper
	wp      *daemons.Walproposer
	ttid    id.TenantTimeline
}

func newCluster(t *testing.T, primary *pgharness.Cluster) *cluster {
	c := &cluster{primary: primary, ttid: id.TenantTimeline{Tenant: id.Generate(), Timeline: id.Generate()}}
	for i := 1; i <= 3; i++ {
		c.sks = append(c.sks, daemons.StartSafekeeper(t, i, "--no-sync"))
	}
	return c
}

func (c *cluster) addrs() string { return strings.Join(daemons.PGAddrs(c.sks), ",") }

// startWalproposer streams the primary's WAL from start (a segment start)
// to the safekeepers.
func (c *cluster) startWalproposer(t *testing.T, start lsn.LSN) {
	c.wp = daemons.NewWalproposer(t, "--pgconn", c.primary.ConnString("postgres"), "--safekeepers", c.addrs(),
		"--tenant-id", c.ttid.Tenant.String(), "--timeline-id", c.ttid.Timeline.String(),
		"--start-lsn", start.String(), "--reconnect-delay", "50ms", "--heartbeat-interval", "200ms")
	c.wp.Start()
	walcheck.WaitFor(t, "the walproposer to stream", 30*time.Second, func() (bool, string) {
		return daemons.Metric(c.wp.HTTPAddr, "walproposer_primary_connected") == 1, c.wp.Log()
	})
}

// startPageserver starts a pageserver following the safekeepers, with
// extra arguments.
func (c *cluster) startPageserver(t *testing.T, extra ...string) *daemons.Pageserver {
	// Small layers and frequent compaction: restarts and reads cross many
	// layer files.
	args := append(daemons.SafekeeperArgs(c.sks), "--no-sync", "--checkpoint-distance", "1048576", "--compaction-period", "1s")
	return daemons.StartPageserver(t, append(args, extra...)...)
}

// startFromInitdb imports the primary's data directory (created NoStart:
// as initdb left it) into each pageserver at its shutdown checkpoint
// record, then starts the primary and a walproposer streaming from that
// record's segment. It returns the record's LSN.
func (c *cluster) startFromInitdb(t *testing.T, pss ...*daemons.Pageserver) lsn.LSN {
	t.Helper()
	start := walcheck.LatestCheckpoint(t, c.primary)
	upload := daemons.DataDirTar(t, c.primary.DataDir())
	for _, ps := range pss {
		if err := ps.ImportBasebackup(c.ttid, bytes.NewReader(upload), start, 0); err != nil {
			t.Fatalf("import: %v", err)
		}
	}
	c.primary.Start(t)
	c.startWalproposer(t, start.SegmentStart(c.primary.WALSegmentSize()))
	return start
}

// openTimeline opens a stopped pageserver's timeline in the test process.
func openTimeline(t *testing.T, ps *daemons.Pageserver, ttid id.TenantTimeline) *timeline.Timeline {
	tl, err := timeline.Open(ps.TimelineDir(ttid), timeline.Options{TenantTimeline: ttid, Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tl.Close() })
	return tl
}

var loadedLine = regexp.MustCompile(`timeline loaded disk_consistent_lsn=(\S+) last_record_lsn=(\S+)`)

// Acceptance 2 and 3 of the pageserver issue. Two pageservers follow the
// same timeline through the safekeepers while the primary runs pgbench and
// DDL; one is killed with SIGKILL mid-ingest and restarted. Both must end
// with the primary's relation sizes and pages, and with the same values.
func TestIngestThroughSafekeepers(t *testing.T) {
	ctx := context.Background()
	primary := pgharness.New(t, append([]pgharness.Option{pgharness.NoStart(),
		pgharness.WithConf("synchronous_standby_names", "walproposer"),
		pgharness.WithConf("synchronous_commit", "on"),
		pgharness.WithConf("wal_keep_size", "4GB"),     // the walproposer starts at initdb's segment
		pgharness.WithConf("max_wal_size", "4GB"),      // no checkpoints but the test's
		pgharness.WithConf("checkpoint_timeout", "1h"), // ditto
		pgharness.WithConf("wal_compression", "lz4"),
	}, pagecheck.ClusterOptions()...)...)
	c := newCluster(t, primary)

	// The timeline starts as initdb left the data directory, imported into
	// both pageservers.
	// Distinct ids: a safekeeper keeps the WAL the one furthest behind
	// reported it needs, so the restarted one finds its WAL.
	steady, killed := c.startPageserver(t, "--id", "1"), c.startPageserver(t, "--id", "2")
	start := c.startFromInitdb(t, steady, killed)

	// Kill one pageserver once it has written layers and is ingesting
	// more: a goroutine watches while pgbench runs.
	var killedAt atomic.Uint64
	stopWatch := make(chan struct{})
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		for {
			select {
			case <-stopWatch:
				return
			case <-time.After(20 * time.Millisecond):
			}
			// Not Timeline: that fails the test, which only its own
			// goroutine may do.
			var ti httpapi.TimelineInfo
			if killed.Call("GET", daemons.TimelinePath(c.ttid), nil, &ti) != nil {
				continue
			}
			if ti.DiskConsistentLSN > start+4<<20 && ti.LastRecordLSN > ti.DiskConsistentLSN {
				killedAt.Store(uint64(ti.LastRecordLSN))
				_ = syscall.Kill(killed.Pid(), syscall.SIGKILL)
				return
			}
		}
	}()
	primary.RunPgbench(t, "-i", "-s", "3", "-q")
	for i := 0; i < 60 && killedAt.Load() == 0; i++ {
		primary.RunPgbench(t, "-c", "2", "-T", "1", "-n")
	}
	close(stopWatch)
	<-watchDone
	if killedAt.Load() == 0 {
		t.Fatal("the pageserver never had layers on disk while ingesting: nothing was killed mid-ingest")
	}
	killed.Kill() // reaps it
	loadedBefore := len(loadedLine.FindAllStringSubmatch(killed.Log(), -1))
	killed.Start()
	loaded := loadedLine.FindAllStringSubmatch(killed.Log(), -1)
	if len(loaded) <= loadedBefore {
		t.Fatalf("no \"timeline loaded\" line after the restart:\n%s", killed.Log())
	}
	dcl, last := loaded[len(loaded)-1][1], loaded[len(loaded)-1][2]
	if dcl != last {
		t.Errorf("restarted at last_record_lsn %s, disk_consistent_lsn %s: want the same", last, dcl)
	}
	t.Logf("killed at last_record_lsn %s; restarted at disk_consistent_lsn %s", lsn.LSN(killedAt.Load()), dcl)

	w := pagecheck.Workload(t, ctx, primary)
	snapshot := pagecheck.SnapshotSQL(t, ctx, primary)
	primary.Stop(t)
	end := walcheck.LatestCheckpoint(t, primary)
	for _, ps := range []*daemons.Pageserver{steady, killed} {
		ti := ps.WaitLastRecord(t, c.ttid, end+1, time.Minute)
		t.Logf("pageserver ingested %d records, %d WAL bytes in this run; at %s", ti.RecordsIngested, ti.WALBytesReceived, ti.LastRecordLSN)
	}
	// A checkpoint (flush, then compaction over tens of 1 MiB delta
	// layers) materialises pages through the daemon's WAL-redo pool (in Go
	// for the records goredo knows, in redo processes for the rest); the
	// background compaction may or may not have got there yet.
	if err := steady.Call("PUT", daemons.TimelinePath(c.ttid)+"/checkpoint", nil, nil); err != nil {
		t.Fatalf("checkpoint: %v", err)
	}
	launches := steady.Metric(t, "pageserver_wal_redo_process_launches_total")
	inGo := steady.Metric(t, "pageserver_wal_redo_go_records_total")
	t.Logf("compaction: %v WAL-redo processes started, %v records applied in Go", launches, inGo)
	if n := steady.Metric(t, "pageserver_replayed_wal_records_total"); n < 1 || launches+inGo < 1 {
		t.Errorf("the pageserver replayed %v WAL records (%v processes, %v in Go), want some (compaction materialises pages)", n, launches, inGo)
	}
	if n := steady.Metric(t, "pageserver_wal_redo_process_failures_total"); n != 0 {
		t.Errorf("%v WAL-redo failures", n)
	}
	steady.Stop()
	killed.Stop()
	tls := []*timeline.Timeline{openTimeline(t, steady, c.ttid), openTimeline(t, killed, c.ttid)}
	pool := daemons.NewRedoPool(t, daemons.RedoOptions(t, 2))
	for _, tl := range tls {
		pagecheck.Compare(t, ctx, primary, tl, pool, snapshot, w, end)
	}
	compareTimelines(t, ctx, pool, tls[0], tls[1])
}

// value reads k at l from tl and rebuilds it.
func value(ctx context.Context, rc pagecheck.Reconstructor, tl *timeline.Timeline, k key.Key, l lsn.LSN) ([]byte, error) {
	r, err := tl.Get(ctx, k, l)
	if err != nil {
		return nil, err
	}
	if r.ImageOnly() {
		return r.Image, nil
	}
	return rc.Reconstruct(ctx, r)
}

// compareTimelines checks that two timelines give the same values for
// every key of the live key space at their last record LSN. How the
// values are stored may differ: compaction ran at other times in each.
func compareTimelines(t *testing.T, ctx context.Context, rc pagecheck.Reconstructor, a, b *timeline.Timeline) {
	la, _ := a.LastRecordLSN()
	if lb, _ := b.LastRecordLSN(); la != lb {
		t.Fatalf("last record LSN %s and %s", la, lb)
	}
	ranges, err := datadir.KeySpace(ctx, a, la)
	if err != nil {
		t.Fatal(err)
	}
	keys := 0
	for _, r := range ranges {
		if r.Start.IsSparse() {
			continue // not dense: a range of possible keys (aux files)
		}
		for k := r.Start; k.Less(r.End); k = k.Next() {
			keys++
			va, errA := value(ctx, rc, a, k, la)
			vb, errB := value(ctx, rc, b, k, la)
			if errA != nil || errB != nil {
				t.Fatalf("key %s: %v and %v", k, errA, errB)
			}
			if !bytes.Equal(va, vb) {
				t.Fatalf("key %s differs (%d and %d bytes) at byte %d", k, len(va), len(vb), pagecheck.FirstDiff(va, vb))
			}
		}
	}
	t.Logf("both pageservers hold the same values for all %d keys at %s", keys, la)
}
