// The receiver with the safekeepers' gRPC clients: it chooses from their
// WatchTimeline streams, and reports its positions to every one of them
// with ReportPageserverFeedback.
package walreceiver_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"strata.dev/libs/id"
	"strata.dev/libs/lsn"
	"strata.dev/libs/wal"
	"strata.dev/pageserver/walreceiver"
	pb "strata.dev/proto/safekeeper/v1"
	"strata.dev/test/daemons"
	"strata.dev/test/walcheck"
)

// Candidates come from the watch streams: of three safekeepers the one
// with the most WAL has no watch stream (its gRPC client points where
// nothing listens), so it is unusable although it answers TIMELINE_STATUS
// on its libpq port, and the receiver streams from the next best.
func TestWatchChoosesFromStreams(t *testing.T) {
	e := newEnv(t, startSafekeepers(t, 3))
	a := e.generate(e.start + 512<<10)
	b := e.generate(a + 512<<10)
	c := e.generate(b + 512<<10)
	e.pushEach(a, c, b)
	addrs := daemons.GRPCAddrs(e.sks)
	addrs[1] = daemons.FreePort(t)
	log := &logBuffer{}
	cfg := e.config(t, log)
	cfg.SafekeeperClients = dialClients(t, addrs)
	sink := newRecordingSink(e.start)
	r := walreceiver.New(cfg, sink)
	run(t, r)
	waitReceived(t, sink, b)
	if st := r.Status(); st.Safekeeper != e.sks[2].PGAddr || st.Connections != 1 {
		t.Fatalf("status %+v, want one connection to safekeeper 3 (%s): safekeeper 2 has no watch stream", st, e.sks[2].PGAddr)
	}
	e.checkSink(sink, e.start+wal.LongPageHeaderSize, b, 2)
	if l := log.String(); !strings.Contains(l, "safekeeper unusable") || !strings.Contains(l, e.sks[1].PGAddr) || strings.Contains(l, "TIMELINE_STATUS") {
		t.Fatalf("want safekeeper 2 logged unusable, and no TIMELINE_STATUS polling:\n%s", l)
	}
}

// kill -9 of the safekeeper streamed from: its stream and its watch break,
// the receiver streams from another at once and the sink gets every byte.
// Restarted, the killed safekeeper is watched again, and once it alone
// gets new WAL the receiver moves back to it (lagging_wal_timeout).
func TestWatchKillAndReturn(t *testing.T) {
	e := newEnv(t, startSafekeepers(t, 3))
	first := e.generate(e.start + 1<<20)
	e.pushAll(first)
	sink := newRecordingSink(e.start)
	log := &logBuffer{}
	cfg := e.watchConfig(t, log)
	cfg.LaggingWALTimeout = time.Second
	r := walreceiver.New(cfg, sink)
	run(t, r)
	waitReceived(t, sink, first)
	killed := e.index(r.Status().Safekeeper)
	if killed < 0 {
		t.Fatalf("streaming from an unknown safekeeper: %+v", r.Status())
	}
	e.sks[killed].Kill()
	killedAt := time.Now()
	walcheck.WaitFor(t, "the receiver to stream from another safekeeper", 30*time.Second, func() (bool, string) {
		st := r.Status()
		return st.Safekeeper != "" && st.Safekeeper != e.sks[killed].PGAddr, fmt.Sprintf("%+v", st)
	})
	t.Logf("streaming from %s %v after the kill", r.Status().Safekeeper, time.Since(killedAt).Round(time.Millisecond))
	more := e.generate(first + 1<<20)
	e.pushAll(more)
	waitReceived(t, sink, more)
	e.checkSink(sink, e.start+wal.LongPageHeaderSize, more)

	// Back: its proposer reconnects and catches it up; its watch streams
	// again. Then only it gets new WAL.
	e.sks[killed].Start()
	e.push(killed, more)
	e.waitCommit(killed, more)
	walcheck.WaitFor(t, "the restarted safekeeper's watch", 30*time.Second, func() (bool, string) {
		return strings.Contains(log.String(), "WatchTimeline streams again"), log.String()
	})
	last := e.generate(more + 256<<10)
	e.push(killed, last)
	waitReceived(t, sink, last)
	if st := r.Status(); st.Safekeeper != e.sks[killed].PGAddr {
		t.Fatalf("status %+v, want streaming from the restarted safekeeper %s", st, e.sks[killed].PGAddr)
	}
	e.checkSink(sink, e.start+wal.LongPageHeaderSize, last, killed)
}

// The positions reach every safekeeper over gRPC, not only the one
// streamed from: each records the sink's remote-consistent LSN, or its own
// commit LSN when that is lower (it had less WAL), never more than the sink
// reported. When the positions advance, every safekeeper learns it.
func TestReportsToEverySafekeeper(t *testing.T) {
	e := newEnv(t, startSafekeepers(t, 3))
	short := e.generate(e.start + 256<<10)
	full := e.generate(short + 1<<20)
	e.pushEach(full, full, short)

	sink := newRecordingSink(e.start)
	sink.positions = func(last lsn.LSN) walreceiver.Positions {
		return walreceiver.Positions{LastReceived: last, DiskConsistent: last - 0x100, RemoteConsistent: last - 0x200, TimelineSize: 8192}
	}
	cfg := e.watchConfig(t, &logBuffer{})
	cfg.ReportInterval = 200 * time.Millisecond
	r := walreceiver.New(cfg, sink)
	run(t, r)
	waitReceived(t, sink, full)
	cur := e.index(r.Status().Safekeeper)
	if cur != 0 && cur != 1 {
		t.Fatalf("streaming from safekeeper %d, want one with all the WAL", cur+1)
	}
	want := []lsn.LSN{full - 0x200, full - 0x200, short}
	waitRemoteConsistent(t, e, want)
	other := 1 - cur
	for _, s := range e.timeline(other).Senders {
		if s.AppName == "pageserver-7" {
			t.Fatalf("safekeeper %d has a pageserver sender %+v: the report must have come over gRPC", other+1, s)
		}
	}

	// More WAL everywhere: every safekeeper hears of the new positions.
	end := e.generate(full + 256<<10)
	e.pushAll(end)
	waitReceived(t, sink, end)
	waitRemoteConsistent(t, e, []lsn.LSN{end - 0x200, end - 0x200, end - 0x200})
}

// waitRemoteConsistent waits until safekeeper i reports remote_consistent_lsn
// want[i], failing at once if one reports more than the largest want.
func waitRemoteConsistent(t *testing.T, e *env, want []lsn.LSN) {
	t.Helper()
	walcheck.WaitFor(t, fmt.Sprintf("remote_consistent_lsn %v on the safekeepers", want), 30*time.Second, func() (bool, string) {
		var got []lsn.LSN
		ok := true
		for i := range e.sks {
			l := lsn.LSN(e.timeline(i).RemoteConsistentLsn)
			if l > want[i] {
				t.Fatalf("safekeeper %d has remote_consistent_lsn %v, above the %v reported", i+1, l, want[i])
			}
			got = append(got, l)
			ok = ok && l == want[i]
		}
		return ok, fmt.Sprint(got)
	})
}

// A timeline no safekeeper has yet (NOT_FOUND on every watch) is waited
// for without streaming; once a proposer creates it the receiver streams
// within seconds.
func TestWatchTimelineAppears(t *testing.T) {
	sks := startSafekeepers(t, 2)
	ttid := id.TenantTimeline{Tenant: id.Generate(), Timeline: id.Generate()}
	log := &logBuffer{}
	cfg := walreceiver.Config{
		Safekeepers: daemons.PGAddrs(sks), SafekeeperClients: dialClients(t, daemons.GRPCAddrs(sks)), TTID: ttid, NodeID: 7,
		StatusInterval: 200 * time.Millisecond, BackoffMin: 50 * time.Millisecond, BackoffMax: 5 * time.Second,
		Log: testLogger(t, log),
	}
	sink := newRecordingSink(segSize)
	r := walreceiver.New(cfg, sink)
	run(t, r)
	walcheck.WaitFor(t, "NOT_FOUND from the watch streams", 30*time.Second, func() (bool, string) {
		return strings.Count(log.String(), "does not have the timeline") >= len(sks), log.String()
	})
	// Long enough for the backoff to pass notFoundMax.
	time.Sleep(2 * time.Second)
	if st := r.Status(); st.Connections != 0 {
		t.Fatalf("streamed a timeline nobody has: %+v", st)
	}
	e := newEnvWithToken(t, sks, ttid, "")
	end := e.generate(e.start + 256<<10)
	began := time.Now()
	e.pushAll(end)
	waitReceived(t, sink, end)
	t.Logf("streaming %v after the timeline was created", time.Since(began).Round(time.Millisecond))
	e.checkSink(sink, e.start+wal.LongPageHeaderSize, end)
}

// ReportPageserverFeedback as the safekeeper sees it, straight from a
// client: the receiver relies on its refusing a remote-consistent LSN
// above its commit LSN (that is why reports are lowered to it).
func TestReportAboveCommitRefused(t *testing.T) {
	e := newEnv(t, startSafekeepers(t, 1))
	end := e.generate(e.start + 64<<10)
	e.pushAll(end)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req := &pb.ReportPageserverFeedbackRequest{TenantId: e.ttid.Tenant.String(), TimelineId: e.ttid.Timeline.String(), RemoteConsistentLsn: uint64(end + 8)}
	if _, err := e.sks[0].Client().ReportPageserverFeedback(ctx, req); err == nil || !strings.Contains(err.Error(), "beyond the timeline's commit LSN") {
		t.Fatalf("a report above the commit LSN: %v, want it refused", err)
	}
}
