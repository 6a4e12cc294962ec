package pageserver_test

import (
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"strata.dev/libs/id"
	"strata.dev/libs/lsn"
	"strata.dev/libs/wal"
	"strata.dev/test/daemons"
	"strata.dev/test/pgharness"
	"strata.dev/test/walcheck"
)

// Acceptance 3 of issue 8: safekeepers remove WAL segments below the
// remote-consistent LSN the pageserver reports to each of them over gRPC,
// and never above it. The primary writes 1 MiB segments so that pgbench
// fills dozens; after a pageserver checkpoint every safekeeper removes the
// oldest ones. Then, on every safekeeper: what it was told is at most what
// the pageserver has durable, at least one segment below it is gone, and
// every segment from the one holding it up to the end of WAL is there,
// byte for byte the primary's. While the pageserver is stopped, new WAL
// makes nothing more go; restarted and checkpointed, it lets removal go on.
func TestWALRemovalFollowsPageserver(t *testing.T) {
	primary := pgharness.New(t, append([]pgharness.Option{pgharness.NoStart(), pgharness.WithWALSegSize(1)}, computeOptions()...)...)
	c := &cluster{primary: primary, ttid: id.TenantTimeline{Tenant: id.Generate(), Timeline: id.Generate()}}
	for i := 1; i <= 3; i++ {
		// Removal goes by persisted LSNs: persist them every second.
		c.sks = append(c.sks, daemons.StartSafekeeper(t, i, "--no-sync", "--control-file-save-interval", "1s"))
	}
	ps := c.startPageserver(t)
	if !slices.Contains(ps.Args, "--safekeepers-grpc") {
		t.Fatalf("the pageserver was started without --safekeepers-grpc: %v", ps.Args)
	}
	start := c.startFromInitdb(t, ps)
	segSize := primary.WALSegmentSize()

	primary.RunPgbench(t, "-i", "-s", "2", "-q")
	primary.RunPgbench(t, "-t", "300", "-c", "1", "-n")
	end := primary.RecordEndBound(t)
	ps.WaitLastRecord(t, c.ttid, end, time.Minute)
	if n := (end - start) / lsn.LSN(segSize); n < 10 {
		t.Fatalf("only %d segments of WAL: the test needs more to remove", n)
	}
	checkpoint(t, ps, c.ttid)
	for _, sk := range c.sks {
		walcheck.WaitFor(t, fmt.Sprintf("safekeeper %d to remove segments", sk.ID), time.Minute, func() (bool, string) {
			info := sk.Timeline(t, c.ttid)
			return info.RemovedSegments > 0, fmt.Sprintf("%d removed, remote_consistent_lsn %s, removal horizon %s",
				info.RemovedSegments, lsn.LSN(info.RemoteConsistentLsn), lsn.LSN(info.RemovalHorizonLsn))
		})
	}

	// Stop the pageserver: from now on nothing reports, so what the
	// safekeepers were told is final, and at most what it has durable.
	durable := ps.Timeline(t, c.ttid).RemoteConsistentLSN
	ps.Stop()
	told := checkRemoval(t, c, durable, segSize)

	// More WAL while the pageserver is down: commit, flush and peer
	// horizon move on, the remote-consistent LSN does not, and no segment
	// at or above it goes. (Segments below it may still go while the
	// other bounds of the removal horizon catch up: the baseline is taken
	// once every one of them is gone.)
	primary.Exec(t, "CREATE TABLE filler AS SELECT g, repeat('x', 500) AS pad FROM generate_series(1, 8000) g")
	more := primary.RecordEndBound(t)
	for id, l := range told {
		if more.SegmentNumber(segSize) < l.SegmentNumber(segSize)+3 {
			t.Fatalf("new WAL ends at %s, too close to safekeeper %d's remote_consistent_lsn %s to show anything", more, id, l)
		}
	}
	daemons.WaitFlushed(t, c.sks, c.ttid, more)
	for _, sk := range c.sks {
		walcheck.WaitFor(t, fmt.Sprintf("safekeeper %d to persist commit LSN %s", sk.ID, more), time.Minute, func() (bool, string) {
			info := sk.Timeline(t, c.ttid)
			return lsn.LSN(info.PersistedCommitLsn) >= more && lsn.LSN(info.PeerHorizonLsn) >= told[sk.ID], fmt.Sprintf("persisted commit %s, peer horizon %s",
				lsn.LSN(info.PersistedCommitLsn), lsn.LSN(info.PeerHorizonLsn))
		})
	}
	for _, sk := range c.sks {
		dir := sk.TimelineDir(c.ttid.Tenant.String(), c.ttid.Timeline.String())
		keep := told[sk.ID].SegmentNumber(segSize)
		walcheck.WaitFor(t, fmt.Sprintf("safekeeper %d to remove every segment below %s", sk.ID, told[sk.ID]), time.Minute, func() (bool, string) {
			var below []uint64
			for seg := range segmentsIn(t, dir, segSize) {
				if seg < keep {
					below = append(below, seg)
				}
			}
			return len(below) == 0, fmt.Sprintf("segments %v still there", below)
		})
	}
	removed := removedSegments(t, c)
	time.Sleep(3 * time.Second) // three more removal passes
	if got := removedSegments(t, c); !slices.Equal(got, removed) {
		t.Fatalf("segments removed while the pageserver was down: %v before, %v after", removed, got)
	}
	if again := checkRemoval(t, c, durable, segSize); !maps.Equal(again, told) {
		t.Fatalf("remote_consistent_lsn changed while the pageserver was down: %v, then %v", told, again)
	}

	// Back: it reports its new durable position and removal goes on.
	ps.Start()
	ps.WaitLastRecord(t, c.ttid, more, time.Minute)
	checkpoint(t, ps, c.ttid)
	for i, sk := range c.sks {
		walcheck.WaitFor(t, fmt.Sprintf("safekeeper %d to remove more", sk.ID), time.Minute, func() (bool, string) {
			info := sk.Timeline(t, c.ttid)
			return info.RemovedSegments > removed[i], fmt.Sprintf("%d removed", info.RemovedSegments)
		})
	}
	durable = ps.Timeline(t, c.ttid).RemoteConsistentLSN
	ps.Stop()
	if after := checkRemoval(t, c, durable, segSize); !greaterEverywhere(after, told) {
		t.Fatalf("remote_consistent_lsn %v after the restart, not above %v everywhere", after, told)
	}
	// The reports carry the timeline's logical size, computed without error.
	if log := ps.Log(); strings.Contains(log, "logical size for the safekeepers") {
		t.Errorf("computing the logical size failed:\n%s", log)
	}
}

// greaterEverywhere reports whether a[k] > b[k] for every key of b.
func greaterEverywhere(a, b map[int]lsn.LSN) bool {
	for k, v := range b {
		if a[k] <= v {
			return false
		}
	}
	return true
}

// checkRemoval checks every safekeeper's timeline directory against the
// remote-consistent LSN the pageserver reported to it (its
// remote_consistent_lsn), which must be positive and at most durable: no
// segment from the one holding it to the end of its WAL is missing, all
// are byte-identical to the primary's, and at least one segment below it
// was removed. It returns the reported LSN of each safekeeper, by id.
func checkRemoval(t *testing.T, c *cluster, durable lsn.LSN, segSize uint64) map[int]lsn.LSN {
	t.Helper()
	told := map[int]lsn.LSN{}
	for _, sk := range c.sks {
		info := sk.Timeline(t, c.ttid)
		rcl, flush := lsn.LSN(info.RemoteConsistentLsn), lsn.LSN(info.FlushLsn)
		told[sk.ID] = rcl
		if rcl == 0 || rcl > durable {
			t.Fatalf("safekeeper %d was told remote_consistent_lsn %s; the pageserver has %s durable", sk.ID, rcl, durable)
		}
		dir := sk.TimelineDir(c.ttid.Tenant.String(), c.ttid.Timeline.String())
		present := segmentsIn(t, dir, segSize)
		first := lsn.LSN(info.TimelineStartLsn).SegmentNumber(segSize)
		keep := rcl.SegmentNumber(segSize)
		last := (flush - 1).SegmentNumber(segSize)
		var gone []uint64
		for seg := first; seg <= last; seg++ {
			switch {
			case present[seg]:
			case seg >= keep:
				t.Fatalf("safekeeper %d removed segment %s, which ends above remote_consistent_lsn %s",
					sk.ID, wal.SegmentFileName(1, seg, segSize), rcl)
			default:
				gone = append(gone, seg)
			}
		}
		if len(gone) == 0 || info.RemovedSegments < uint64(len(gone)) {
			t.Fatalf("safekeeper %d: segments %d..%d below remote_consistent_lsn %s, none gone (removed_segments %d)",
				sk.ID, first, keep-1, rcl, info.RemovedSegments)
		}
		if int(info.SegmentsOnDisk) != len(present) {
			t.Errorf("safekeeper %d reports %d segments on disk, its directory has %d", sk.ID, info.SegmentsOnDisk, len(present))
		}
		walcheck.CompareWAL(t, fmt.Sprintf("safekeeper %d", sk.ID), c.primary.WALDir(), dir, rcl.SegmentStart(segSize), flush, segSize)
		t.Logf("safekeeper %d: remote_consistent_lsn %s (durable %s), %d segments below removed, segments %d..%d kept and equal to the primary's",
			sk.ID, rcl, durable, len(gone), keep, last)
	}
	return told
}

// segmentsIn lists the segment numbers of the WAL segment files in dir.
func segmentsIn(t *testing.T, dir string, segSize uint64) map[uint64]bool {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	segs := map[uint64]bool{}
	for _, e := range ents {
		if _, seg, _, err := wal.ParseSegmentFileName(e.Name(), segSize); err == nil {
			segs[seg] = true
		}
	}
	return segs
}

// removedSegments is every safekeeper's removed_segments, in order.
func removedSegments(t *testing.T, c *cluster) []uint64 {
	t.Helper()
	var out []uint64
	for _, sk := range c.sks {
		out = append(out, sk.Timeline(t, c.ttid).RemovedSegments)
	}
	return out
}

// checkpoint makes the pageserver write everything it ingested to layer
// files: its durable (remote-consistent) LSN moves up to the last record.
func checkpoint(t *testing.T, ps *daemons.Pageserver, ttid id.TenantTimeline) {
	t.Helper()
	if err := ps.Call("PUT", daemons.TimelinePath(ttid)+"/checkpoint", nil, nil); err != nil {
		t.Fatalf("checkpoint: %v", err)
	}
}
