package walreceiver

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"strata.dev/libs/id"
	"strata.dev/libs/lsn"
	pb "strata.dev/proto/safekeeper/v1"
)

// Reports go out the first time, when a durable position advances, and
// every interval otherwise; the received position alone waits.
func TestReportDue(t *testing.T) {
	t0 := time.Unix(1000, 0)
	p := Positions{LastReceived: 0x5000, DiskConsistent: 0x4000, RemoteConsistent: 0x4000}
	sent := reportState{p: p, at: t0}
	for _, tc := range []struct {
		name  string
		s     reportState
		after time.Duration
		p     Positions
		want  bool
	}{
		{"first", reportState{}, 0, p, true},
		{"nothing new", sent, 500 * time.Millisecond, p, false},
		{"received more", sent, 500 * time.Millisecond, Positions{LastReceived: 0x9000, DiskConsistent: 0x4000, RemoteConsistent: 0x4000}, false},
		{"disk consistent advanced", sent, 100 * time.Millisecond, Positions{LastReceived: 0x5000, DiskConsistent: 0x4800, RemoteConsistent: 0x4000}, true},
		{"remote consistent advanced", sent, 100 * time.Millisecond, Positions{LastReceived: 0x5000, DiskConsistent: 0x4000, RemoteConsistent: 0x4800}, true},
		{"interval", sent, time.Second, p, true},
	} {
		if got := tc.s.due(t0.Add(tc.after), tc.p, time.Second); got != tc.want {
			t.Errorf("%s: due = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// The request carries every position; the remote-consistent LSN is never
// above the sink's, and not above a safekeeper's known commit LSN.
func TestFeedbackRequest(t *testing.T) {
	ttid := id.TenantTimeline{Tenant: id.Generate(), Timeline: id.Generate()}
	p := Positions{LastReceived: 0x9000, DiskConsistent: 0x8000, RemoteConsistent: 0x8000, TimelineSize: 123 << 13}
	for _, tc := range []struct {
		commit lsn.LSN
		want   uint64
	}{{0, 0x8000}, {0xA000, 0x8000}, {0x8000, 0x8000}, {0x7000, 0x7000}} {
		r := feedbackRequest(ttid, 4, p, tc.commit)
		if r.TenantId != ttid.Tenant.String() || r.TimelineId != ttid.Timeline.String() || r.PageserverId != 4 ||
			r.LastReceivedLsn != 0x9000 || r.DiskConsistentLsn != 0x8000 || r.CurrentTimelineSize != 123<<13 || r.RemoteConsistentLsn != tc.want {
			t.Errorf("commit %v: %v, want remote_consistent_lsn %#x", tc.commit, r, tc.want)
		}
	}
}

// A mailbox holds only the newest positions.
func TestPostReplaces(t *testing.T) {
	box := make(chan Positions, 1)
	for i := 1; i <= 3; i++ {
		post(box, Positions{DiskConsistent: lsn.LSN(i)})
	}
	select {
	case p := <-box:
		if p.DiskConsistent != 3 {
			t.Fatalf("got %v, want the newest", p)
		}
	default:
		t.Fatal("empty mailbox")
	}
	select {
	case p := <-box:
		t.Fatalf("a second report %v", p)
	default:
	}
}

// The logical size is computed when the disk-consistent LSN moved, at
// most every sizeInterval.
func TestSizeDue(t *testing.T) {
	t0 := time.Unix(1000, 0)
	done := sizeState{at: 0x4000, when: t0}
	for _, tc := range []struct {
		name  string
		s     sizeState
		after time.Duration
		dcl   lsn.LSN
		want  bool
	}{
		{"first", sizeState{}, 0, 0x4000, true},
		{"no position yet", sizeState{}, 0, 0, false},
		{"same position", done, time.Hour, 0x4000, false},
		{"moved, too soon", done, sizeInterval - time.Second, 0x8000, false},
		{"moved", done, sizeInterval, 0x8000, true},
	} {
		if got := tc.s.due(t0.Add(tc.after), tc.dcl); got != tc.want {
			t.Errorf("%s: due = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// failingThenOK answers the first fails calls of ReportPageserverFeedback
// with NotFound (a safekeeper that has not created the timeline yet), then
// accepts; got receives every accepted report.
type failingThenOK struct {
	pb.SafekeeperClient
	fails atomic.Int32
	calls atomic.Int32
	got   chan *pb.ReportPageserverFeedbackRequest
}

func (f *failingThenOK) ReportPageserverFeedback(_ context.Context, req *pb.ReportPageserverFeedbackRequest, _ ...grpc.CallOption) (*pb.ReportPageserverFeedbackResponse, error) {
	f.calls.Add(1)
	if f.fails.Add(-1) >= 0 {
		return nil, status.Error(codes.NotFound, "timeline not found")
	}
	f.got <- req
	return &pb.ReportPageserverFeedbackResponse{}, nil
}

// A report that failed is sent again soon, not at the next due report
// (an hour away here): until one lands, the safekeeper keeps no WAL for us.
func TestReportRetriedAfterFailure(t *testing.T) {
	sk := &failingThenOK{got: make(chan *pb.ReportPageserverFeedbackRequest, 1)}
	sk.fails.Store(3)
	r := New(Config{Safekeepers: []string{"127.0.0.1:1"}, SafekeeperClients: []pb.SafekeeperClient{sk},
		ReportInterval: time.Hour, NodeID: 7,
		TTID: id.TenantTimeline{Tenant: id.Generate(), Timeline: id.Generate()}, Log: zerolog.Nop()}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	box := make(chan Positions, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.sendReports(ctx, 0, box)
	}()
	post(box, Positions{LastReceived: 0x3000, DiskConsistent: 0x2000, RemoteConsistent: 0x2000})
	select {
	case req := <-sk.got:
		if req.RemoteConsistentLsn != 0x2000 || req.PageserverId != 7 {
			t.Fatalf("report %+v", req)
		}
		if n := sk.calls.Load(); n != 4 {
			t.Fatalf("%d calls, want 3 refused and 1 accepted", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no report landed 10 s after %d failed ones", sk.calls.Load())
	}
	cancel()
	<-done
}
