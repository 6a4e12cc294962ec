package pageserver_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"strata.dev/libs/id"
	pb "strata.dev/proto/pageserver/v1"
	"strata.dev/test/daemons"
	"strata.dev/test/walcheck"
)

// DeleteTimeline of a timeline that streams WAL from the safekeepers ends
// its WAL receiver (no safekeeper sends it WAL any more) and its files
// stay gone while the primary goes on writing.
func TestGRPCDeleteStreamingTimeline(t *testing.T) {
	ctx := context.Background()
	c, ps := startWithStorage(t)
	c.primary.Exec(t, "CREATE TABLE marker (id int PRIMARY KEY)")
	c.primary.Exec(t, "INSERT INTO marker VALUES (1)")
	ps.WaitLastRecord(t, c.ttid, c.primary.RecordEndBound(t), time.Minute)
	readers := func() (n int, where string) {
		var s []string
		for _, sk := range c.sks {
			for _, snd := range sk.Timeline(t, c.ttid).Senders {
				if snd.Kind == "pageserver" && !snd.Recovery {
					n++
					s = append(s, snd.Addr)
				}
			}
		}
		return n, strings.Join(s, ", ")
	}
	if n, _ := readers(); n == 0 {
		t.Fatal("no safekeeper streams to the pageserver")
	}

	gc := ps.GRPC()
	if _, err := gc.DeleteTimeline(ctx, &pb.DeleteTimelineRequest{TenantId: c.ttid.Tenant.String(), TimelineId: c.ttid.Timeline.String()}); err != nil {
		t.Fatalf("DeleteTimeline: %v", err)
	}
	walcheck.WaitFor(t, "the safekeepers to stop streaming to the deleted timeline", 30*time.Second, func() (bool, string) {
		n, where := readers()
		return n == 0, where
	})

	// Commits still reach the safekeepers; nothing comes back on the pageserver.
	c.primary.Exec(t, "INSERT INTO marker SELECT generate_series(2, 1000)")
	daemons.WaitFlushed(t, c.sks, c.ttid, c.primary.RecordEndBound(t))
	if n, where := readers(); n != 0 {
		t.Errorf("after more WAL, safekeepers stream to the pageserver again: %s", where)
	}
	if _, err := os.Stat(ps.TimelineDir(c.ttid)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the deleted timeline's directory: %v", err)
	}
	_, err := gc.GetTimeline(ctx, &pb.GetTimelineRequest{TenantId: c.ttid.Tenant.String(), TimelineId: c.ttid.Timeline.String()})
	wantCode(t, "GetTimeline of the deleted timeline", err, codes.NotFound)
	var he *daemons.HTTPError
	if err := ps.Call("GET", daemons.TimelinePath(c.ttid), nil, nil); !errors.As(err, &he) || he.Status != 404 {
		t.Errorf("HTTP GET of the deleted timeline: %v", err)
	}
	if l, err := gc.ListTimelines(ctx, &pb.ListTimelinesRequest{TenantId: c.ttid.Tenant.String()}); err != nil || len(l.Timelines) != 0 {
		t.Errorf("ListTimelines after the delete = %v, %v", l, err)
	}
	// The tenant stays, and takes a new timeline.
	if _, err := gc.CreateTimeline(ctx, &pb.CreateTimelineRequest{TenantId: c.ttid.Tenant.String(), TimelineId: id.Generate().String(),
		Source: &pb.CreateTimelineRequest_Bootstrap{Bootstrap: &pb.Bootstrap{}}}); err != nil {
		t.Errorf("bootstrap in the tenant after the delete: %v", err)
	}
}
