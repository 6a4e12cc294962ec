package safekeeper_test

import (
	"bytes"
	"context"
	"os"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"strata.dev/libs/id"
	"strata.dev/libs/lsn"
	"strata.dev/libs/pamsg"
	"strata.dev/libs/wal"
	"strata.dev/libs/wal/walgen"
	"strata.dev/libs/walproposer"
	"strata.dev/test/daemons"
	"strata.dev/test/walcheck"
)

// proposerRun is a proposer running in the background over some safekeepers.
type proposerRun struct {
	p      *walproposer.Proposer
	buf    *walproposer.WALBuffer
	cancel context.CancelFunc
	done   chan error
}

func startProposer(t *testing.T, sks []*daemons.Safekeeper, ttid id.TenantTimeline, buf *walproposer.WALBuffer, start lsn.LSN) *proposerRun {
	t.Helper()
	p := walproposer.New(walproposer.Config{
		Safekeepers: daemons.PGAddrs(sks), TTID: ttid, Version: pamsg.V3, PgVersion: 150010, SystemID: walgen.DefaultSystemID,
		WalSegSize: lsn.DefaultSegmentSize, StartLSN: start, AllowTimelineCreation: true,
		ReconnectDelay: 50 * time.Millisecond, HeartbeatInterval: 50 * time.Millisecond,
		Log: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
	}, buf)
	ctx, cancel := context.WithCancel(context.Background())
	r := &proposerRun{p: p, buf: buf, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- p.Run(ctx) }()
	t.Cleanup(r.stop)
	return r
}

func (r *proposerRun) stop() {
	if r.cancel != nil {
		r.cancel()
		<-r.done
		r.cancel = nil
	}
}

func (r *proposerRun) waitCommit(t *testing.T, l lsn.LSN) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := r.p.WaitCommit(ctx, l); err != nil {
		t.Fatalf("commit of %v: %v (commit at %v)", l, err, r.p.CommitLSN())
	}
}

// generate appends records to buf with g until it reaches at least to; it
// returns the end of the last record.
func generate(t *testing.T, g *walgen.Generator, buf *walproposer.WALBuffer, to lsn.LSN, size int) lsn.LSN {
	t.Helper()
	var end lsn.LSN
	for g.LSN() < to {
		end = g.LogicalMessage(size).End
		buf.Append(g.Bytes())
	}
	return end
}

// SK §10.4 check 4 at the daemon level: safekeeper 3 gets an uncommitted
// tail while the others are down; a new proposer elected by the other two
// writes different WAL; when safekeeper 3 returns it must truncate its
// divergent tail and end byte-identical to the others.
func TestHigherTermTruncatesUncommittedTail(t *testing.T) {
	sks := []*daemons.Safekeeper{daemons.StartSafekeeper(t, 1), daemons.StartSafekeeper(t, 2), daemons.StartSafekeeper(t, 3)}
	ttid := id.TenantTimeline{Tenant: id.Generate(), Timeline: id.Generate()}
	start := lsn.LSN(lsn.DefaultSegmentSize)

	// Term 1: common WAL on all three.
	gA, err := walgen.New(start, walgen.Options{})
	if err != nil {
		t.Fatal(err)
	}
	bufA := walproposer.NewWALBuffer(start)
	a := startProposer(t, sks, ttid, bufA, start)
	x := generate(t, gA, bufA, start+3<<20, 3000)
	a.waitCommit(t, x)
	// Safekeepers 1 and 2 go down; safekeeper 3 alone receives a tail that
	// reaches into a later segment and can never be committed.
	sks[0].Kill()
	sks[1].Kill()
	y := generate(t, gA, bufA, x+20<<20, 7000)
	waitFor(t, "safekeeper 3 to hold the uncommitted tail", 30*time.Second, func() (bool, string) {
		f := lsn.LSN(timeline(t, sks[2], ttid).FlushLsn)
		return f >= y, f.String()
	})
	if c := a.p.CommitLSN(); c >= y {
		t.Fatalf("tail committed (%v) without a majority", c)
	}
	a.stop()
	sks[2].Kill()

	// Term 2: safekeepers 1 and 2 elect a new proposer, which continues at x
	// with different WAL.
	sks[0].Start()
	sks[1].Start()
	gB, err := walgen.New(x, walgen.Options{Prev: gA.Prev()})
	if err != nil {
		t.Fatal(err)
	}
	bufB := walproposer.NewWALBuffer(x)
	b := startProposer(t, sks, ttid, bufB, start)
	z := generate(t, gB, bufB, x+2<<20, 500)
	b.waitCommit(t, z)
	if info := timeline(t, sks[0], ttid); info.Term < 2 {
		t.Fatalf("new proposer did not take a higher term: %+v", info)
	}

	// Safekeeper 3 returns: the proposer truncates it at x and catches it up.
	sks[2].Start()
	daemons.WaitFlushed(t, sks, ttid, z)
	b.stop()
	segSize := uint64(lsn.DefaultSegmentSize)
	dirs := make([]string, 3)
	for i, sk := range sks {
		dirs[i] = sk.TimelineDir(ttid.Tenant.String(), ttid.Timeline.String())
	}
	for seg := start.SegmentNumber(segSize); seg <= z.SegmentNumber(segSize); seg++ {
		want, err := walcheck.ReadSegment(dirs[0], seg, segSize)
		if err != nil {
			t.Fatal(err)
		}
		got, err := walcheck.ReadSegment(dirs[2], seg, segSize)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("segment %s differs between safekeepers 1 and 3 after truncation", wal.SegmentFileName(1, seg, segSize))
		}
	}
	// The divergent tail's later segments are gone.
	for seg := z.SegmentNumber(segSize) + 1; seg <= y.SegmentNumber(segSize); seg++ {
		if _, err := walcheck.ReadSegment(dirs[2], seg, segSize); !os.IsNotExist(err) {
			t.Fatalf("segment %s of the divergent tail still exists on safekeeper 3 (%v)", wal.SegmentFileName(1, seg, segSize), err)
		}
	}
	// And the truncated part of z's segment reads as zeros after z.
	last, _ := walcheck.ReadSegment(dirs[2], z.SegmentNumber(segSize), segSize)
	if tail := last[z.SegmentOffset(segSize):]; !bytes.Equal(tail, make([]byte, len(tail))) {
		t.Fatal("bytes after the end of WAL on safekeeper 3 are not zeros")
	}
}
