package safekeeper_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"google.golang.org/grpc/codes"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"strata.dev/libs/id"
	"strata.dev/libs/lsn"
	"strata.dev/libs/wal/walgen"
	"strata.dev/libs/walproposer"
	pb "strata.dev/proto/safekeeper/v1"
	"strata.dev/test/daemons"
	"strata.dev/test/walcheck"
)

// WAL removal is driven by the pageserver's reported durable LSN (over the
// same gRPC call a pageserver uses), and never removes WAL a connected reader
// still needs.
func TestWALRemovalAndStatusAPI(t *testing.T) {
	sk := daemons.StartSafekeeper(t, 1)
	ttid := id.TenantTimeline{Tenant: id.Generate(), Timeline: id.Generate()}
	start := lsn.LSN(lsn.DefaultSegmentSize)
	g, err := walgen.New(start, walgen.Options{})
	if err != nil {
		t.Fatal(err)
	}
	buf := walproposer.NewWALBuffer(start)
	p := startProposer(t, []*daemons.Safekeeper{sk}, ttid, buf, start)
	end := generate(t, g, buf, start+6*lsn.DefaultSegmentSize+1000, 8000)
	p.waitCommit(t, end)
	ctx := context.Background()
	c := sk.Client()
	info := timeline(t, sk, ttid)
	if info.SegmentsOnDisk < 7 || lsn.LSN(info.RemovalHorizonLsn) > start {
		t.Fatalf("before any feedback: %d segments, horizon %v", info.SegmentsOnDisk, lsn.LSN(info.RemovalHorizonLsn))
	}

	// A WAL reader connected at the start holds the WAL back.
	host, port, _ := strings.Cut(sk.PGAddr, ":")
	rconn, err := pgconn.Connect(ctx, fmt.Sprintf("host=%s port=%s user=x sslmode=disable replication=true application_name=reader options='-c tenant_id=%s timeline_id=%s'",
		host, port, ttid.Tenant, ttid.Timeline))
	if err != nil {
		t.Fatal(err)
	}
	if err := pglogrepl.StartReplication(ctx, rconn, "ignored", pglogrepl.LSN(start), pglogrepl.StartReplicationOptions{Mode: pglogrepl.PhysicalReplication}); err != nil {
		t.Fatal(err)
	}
	report := func(rcl lsn.LSN) {
		if _, err := c.ReportPageserverFeedback(ctx, &pb.ReportPageserverFeedbackRequest{
			TenantId: ttid.Tenant.String(), TimelineId: ttid.Timeline.String(),
			LastReceivedLsn: uint64(rcl), DiskConsistentLsn: uint64(rcl), RemoteConsistentLsn: uint64(rcl),
		}); err != nil {
			t.Fatal(err)
		}
	}
	// A pageserver only ever has WAL the safekeeper calls committed.
	waitFor(t, "the safekeeper's commit LSN to reach the end", 10*time.Second, func() (bool, string) {
		c := lsn.LSN(timeline(t, sk, ttid).CommitLsn)
		return c >= end, c.String()
	})
	report(end)
	waitFor(t, "the reader to hold the horizon", 10*time.Second, func() (bool, string) {
		i := timeline(t, sk, ttid)
		return lsn.LSN(i.RemovalHorizonLsn) == start && len(i.Senders) == 1, fmt.Sprint(lsn.LSN(i.RemovalHorizonLsn), len(i.Senders))
	})
	// A report beyond the commit LSN is refused: it would remove WAL the
	// pageserver cannot have.
	_, err = c.ReportPageserverFeedback(ctx, &pb.ReportPageserverFeedbackRequest{TenantId: ttid.Tenant.String(), TimelineId: ttid.Timeline.String(), RemoteConsistentLsn: uint64(end + 1<<30)})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("feedback beyond commit: %v", err)
	}
	time.Sleep(1500 * time.Millisecond) // one removal pass (every second) must not remove anything
	if i := timeline(t, sk, ttid); i.SegmentsOnDisk < 7 || i.RemovedSegments != 0 {
		t.Fatalf("WAL removed under a connected reader: %d segments on disk, %d removed", i.SegmentsOnDisk, i.RemovedSegments)
	}
	rconn.Close(ctx)

	// Without the reader, segments wholly below the horizon go.
	waitFor(t, "old segments to be removed", 20*time.Second, func() (bool, string) {
		i := timeline(t, sk, ttid)
		return i.RemovedSegments >= 5, fmt.Sprintf("%d removed, %d on disk, horizon %v", i.RemovedSegments, i.SegmentsOnDisk, lsn.LSN(i.RemovalHorizonLsn))
	})
	dir := sk.TimelineDir(ttid.Tenant.String(), ttid.Timeline.String())
	for seg := start.SegmentNumber(lsn.DefaultSegmentSize); seg < end.SegmentNumber(lsn.DefaultSegmentSize); seg++ {
		if _, err := walcheck.ReadSegment(dir, seg, lsn.DefaultSegmentSize); !os.IsNotExist(err) {
			t.Fatalf("segment %d below the horizon still exists (%v)", seg, err)
		}
	}
	if _, err := walcheck.ReadSegment(dir, end.SegmentNumber(lsn.DefaultSegmentSize), lsn.DefaultSegmentSize); err != nil {
		t.Fatalf("the current segment was removed: %v", err)
	}

	// Status, list, watch, metrics, health and reflection.
	st, err := c.Status(ctx, &pb.StatusRequest{})
	if err != nil || st.NodeId != 1 || st.Timelines != 1 {
		t.Fatalf("Status = %+v, %v", st, err)
	}
	list, err := c.ListTimelines(ctx, &pb.ListTimelinesRequest{})
	if err != nil || len(list.Timelines) != 1 || list.Timelines[0].TimelineId != ttid.Timeline.String() {
		t.Fatalf("ListTimelines = %+v, %v", list, err)
	}
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	watch, err := c.WatchTimeline(wctx, &pb.WatchTimelineRequest{TenantId: ttid.Tenant.String(), TimelineId: ttid.Timeline.String(), MinIntervalMs: 10})
	if err != nil {
		t.Fatal(err)
	}
	first, err := watch.Recv()
	if err != nil {
		t.Fatal(err)
	}
	more := generate(t, g, buf, end+100000, 8000)
	for {
		u, err := watch.Recv()
		if err != nil {
			t.Fatalf("watch: %v", err)
		}
		if lsn.LSN(u.CommitLsn) >= more {
			break
		}
		if u.CommitLsn < first.CommitLsn {
			t.Fatalf("watched commit LSN went back from %v to %v", first.CommitLsn, u.CommitLsn)
		}
	}
	metrics := httpGet(t, "http://"+sk.HTTPAddr+"/metrics")
	for _, m := range []string{"safekeeper_commit_lsn{", "safekeeper_flush_lsn{", "safekeeper_flush_wal_seconds_bucket", "safekeeper_write_wal_seconds_bucket", "safekeeper_received_wal_bytes_total", "safekeeper_removed_wal_segments_total{"} {
		if !strings.Contains(metrics, m) {
			t.Errorf("/metrics lacks %s", m)
		}
	}
	refl, err := reflectionpb.NewServerReflectionClient(sk.GRPCConn()).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := refl.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := refl.Recv()
	if err != nil || !strings.Contains(resp.String(), "strata.safekeeper.v1.Safekeeper") || !strings.Contains(resp.String(), "grpc.health.v1.Health") {
		t.Fatalf("reflection: %v %v", resp, err)
	}

	// Deleting the timeline ends the proposer's session and removes the files.
	p.stop()
	del, err := c.DeleteTimeline(ctx, &pb.DeleteTimelineRequest{TenantId: ttid.Tenant.String(), TimelineId: ttid.Timeline.String()})
	if err != nil || !del.DirExisted {
		t.Fatalf("DeleteTimeline = %+v, %v", del, err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("timeline directory still there: %v", err)
	}
	if _, err := c.GetTimeline(ctx, &pb.GetTimelineRequest{TenantId: ttid.Tenant.String(), TimelineId: ttid.Timeline.String()}); status.Code(err) != codes.NotFound {
		t.Fatalf("GetTimeline after delete: %v", err)
	}
	if _, err := c.GetTimeline(ctx, &pb.GetTimelineRequest{TenantId: "nope", TimelineId: ttid.Timeline.String()}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("GetTimeline with a bad id: %v", err)
	}
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
