package walreceiver

import (
	"testing"
	"time"

	"strata.dev/libs/id"
	"strata.dev/libs/lsn"
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
